"""report.html: what cleaning did, in a form a person can check.

A table per file, then for every rule a seeded random sample of its drops shown in their
context with the dropped part highlighted (so a false positive is visible), the garbage
passages flagged, the duplicates dropped and the documents with little punctuation.
One self-contained file: no scripts, no fonts or styles from the network.
"""
from __future__ import annotations

import html
import random
from pathlib import Path

from .base import RULES
from .report import UNFINISHED_WARN

BUILTIN_HELP = {
    "bom": "byte-order marks",
    "line_ends": "the carriage return of CRLF line ends",
    "bad_bytes": "undecodable bytes replaced with --replace-bad-bytes",
    "bad_json_lines": "lines of a .jsonl that hold no document (not JSON, or no \"text\" string), skipped with "
                      "--skip-bad-lines",
    "control_chars": "control characters (NUL, escape, ...)",
    "blank_lines": "runs of blank lines, and blank lines at the start and end",
    "no_chinese": "documents with no Chinese text at all",
    "duplicate": "documents that are near duplicates of another (another edition of the same work)",
    "whitespace": RULES["whitespace"].help if "whitespace" in RULES else "whitespace",
}
SHOWN_PER_RULE = 12

CSS = """
body { font-family: "Noto Serif CJK SC", "Source Han Serif SC", "Songti SC", "SimSun", serif;
       margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; line-height: 1.5; }
h1, h2, h3 { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", sans-serif; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f3f3f3; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #176b2c; font-weight: bold; } .bad { color: #b00020; font-weight: bold; }
.sample { font-size: 0.95em; margin: 0.2em 0; padding: 0.3em 0.6em; background: #fafafa; border-left: 3px solid #ddd;
          white-space: pre-wrap; word-break: break-all; }
.sample mark .br { color: #b00020; }
mark { background: #ffd2d2; text-decoration: line-through; text-decoration-color: #b00020; }
.stop { color: #b00020; } .ctx { color: #666; } .br { color: #999; } .muted { color: #777; font-size: 0.9em; }
"""


def _e(s: str) -> str:
    # a line break shows as ⏎ and breaks nothing: each sample stays one line of context
    return html.escape(s).replace("\n", '<span class="br">⏎</span>')


def _sample(before: str, dropped: str, after: str) -> str:
    return (f'<div class="sample"><span class="ctx">{_e(before)}</span><mark>{_e(dropped)}</mark>'
            f'<span class="ctx">{_e(after)}</span></div>')


def _help(rule: str) -> str:
    if rule in RULES:
        return RULES[rule].help
    return BUILTIN_HELP.get(rule, "")


def _count(listed: list, other: dict, key: str) -> str:
    """How many there are, and how many of them are listed when the files past the first are capped."""
    n = len(listed) - len(other.get(key, [])) + other.get("counts", {}).get(key, 0)
    return f"{n:,}" if n == len(listed) else f"{n:,}; {len(listed):,} listed, every one in report.json"


def render(report: dict, seed: int = 0) -> str:
    rng = random.Random(seed)
    files, total = report["files"], report["total"]
    other = report.get("other_files") or {}   # past the first files, examples are pooled
    out = ["<!doctype html><html lang=\"zh\"><head><meta charset=\"utf-8\">",
           "<title>gpt2zh prepare — cleaning report</title>", f"<style>{CSS}</style></head><body>",
           "<h1>Cleaning report</h1>"]
    balanced = report.get("balanced")
    tk = report.get("tokens", {})
    rate = tk.get("val_unknown_rate")
    count = report.get("file_count", len(files))
    out.append(
        f"<p>{count:,} files, {total['bytes']:,} bytes, {total['input_chars']:,} characters in; "
        f"<b>{total['kept_chars']:,}</b> kept ({total['kept_chars'] / max(1, total['input_chars']):.2%}), "
        f"{sum(total['dropped'].values()):,} dropped. Every character accounted for: "
        + ('<span class="ok">yes</span>' if balanced else '<span class="bad">NO</span>') + ".")
    if tk:
        out.append(f" {tk['train']:,} training and {tk['val']:,} validation tokens; vocabulary {tk['vocab_size']:,}; "
                   "unknown rate on validation tokens "
                   + (f"{rate:.4%}" if rate is not None else "n/a") + ".")
    out.append("</p>")

    # -- files
    rules = sorted((r for r, n in total["dropped"].items() if n), key=lambda r: -total["dropped"][r])
    out.append("<h2>Files</h2>" + (f"<p class=muted>The first {len(files):,} of {count:,}; report.json lists "
                                   "every file.</p>" if count > len(files) else "") + "<table><tr><th>file</th><th>encoding</th><th>docs</th><th>input</th><th>kept</th>"
               "<th>dropped by rule</th><th>paragraphs</th></tr>")
    for f in files:
        drops = ", ".join(f"{r} {f['dropped'][r]:,}" for r in rules if f["dropped"].get(r)) or "—"
        if f.get("skipped"):
            drops = f'<span class="bad">skipped: {html.escape(f["skipped"])}</span>; ' + drops
        para = f.get("paragraphs") or {}
        wrap = (f"{para.get('rejoined_breaks', 0):,} wrapped line breaks rejoined ("
                + html.escape(", ".join(para.get("wrap_widths", []))) + ")") if para.get("rejoined_breaks") else "—"
        u = f.get("unfinished") or {}
        if u.get("paragraphs"):
            share = u["seen"] / u["paragraphs"]
            wrap += (f"; {u['seen']:,} of {u['paragraphs']:,} ({share:.1%}) stop mid-sentence"
                     if share < UNFINISHED_WARN else
                     f'; <span class="bad">{u["seen"]:,} of {u["paragraphs"]:,} ({share:.1%}) stop mid-sentence</span>')
        out.append(f"<tr><td>{html.escape(f['path'])}</td><td>{f['encoding']}</td><td class=n>{f['documents']:,}</td>"
                   f"<td class=n>{f['input_chars']:,}</td><td class=n>{f['kept_chars']:,}</td><td>{drops}</td>"
                   f"<td>{wrap}</td></tr>")
    out.append("</table>")

    # -- rules with samples
    out.append("<h2>What each rule dropped</h2><p class=muted>A random sample of each rule's drops (seed "
               f"{seed}), in context; the dropped part is <mark>marked</mark>, ⏎ is a line break.</p>")
    for rule in rules:
        seen = report.get("samples", {}).get(rule, {}).get("seen", 0)
        out.append(f"<h3>{html.escape(rule)} — {total['dropped'][rule]:,} characters"
                   + (f" in {seen:,} drops" if seen else "") + "</h3>"
                   f"<p class=muted>{html.escape(_help(rule))}</p>")
        items = [it for f in files for it in f["samples"].get(rule, {}).get("items", [])]
        items += other.get("samples", {}).get(rule, {}).get("items", [])
        rng.shuffle(items)
        out += [_sample(*it) for it in items[:SHOWN_PER_RULE]]

    # -- garbage, duplicates, punctuation
    flagged = [(f["path"], x) for f in files for x in f.get("flagged", [])]
    flagged += [("", x) for x in other.get("flagged", [])]
    out.append(f"<h2>Garbage passages flagged ({len(flagged)})</h2>")
    if flagged:
        out.append("<p class=muted>Text the character model read as mojibake; dropped as a span or, where most of "
                   "a paragraph was damaged, with its paragraph.</p>")
        for path, x in flagged:
            out.append(f"<div class=muted>{html.escape(x['doc'] or path)} ({x['scope']})</div>"
                       + _sample(x["before"], x["text"], x["after"]))
    unfinished = [(f["path"], f["unfinished"]) for f in files
                  if f.get("unfinished", {}).get("seen") and f["kept_chars"] and f["unfinished"]["items"]]
    if other.get("unfinished", {}).get("seen"):
        unfinished.append((f"the other {other['files']:,} files", other["unfinished"]))
    out.append(f"<h2>Paragraphs that stop mid-sentence ({sum(u['seen'] for _, u in unfinished):,})</h2>")
    if unfinished:
        out.append("<p class=muted>Kept paragraphs (15+ characters, not headings) that end without closing "
                   "their sentence, and how the next one starts (⏎ is the paragraph break). A few per cent is "
                   "normal (titles, lists, verse); many means text is missing from the copy or its line "
                   "breaks were not rejoined.</p>")
        for path, u in unfinished:
            out.append(f"<h3>{html.escape(path)} — {u['seen']:,} of {u['paragraphs']:,} "
                       f"({u['seen'] / max(1, u['paragraphs']):.1%})</h3>")
            out += [f'<div class="sample"><span class="ctx">{_e(a)}</span><b class=stop>⏎</b>'
                    f'<span class="ctx">{_e(c)}</span></div>' for a, _, c in u["items"]]
    dups = [d for f in files for d in f.get("duplicates", [])] + other.get("duplicates", [])
    out.append(f"<h2>Duplicates dropped ({_count(dups, other, 'duplicates')})</h2>")
    if dups:
        out.append("<table><tr><th>dropped</th><th>near duplicate of (kept)</th><th>similarity</th><th>characters</th></tr>")
        out += [f"<tr><td>{html.escape(d['doc'])}</td><td>{html.escape(d['duplicate_of'])}</td>"
                f"<td class=n>{d['similarity']:.3f}</td><td class=n>{d['chars']:,}</td></tr>" for d in dups]
        out.append("</table>")
    low = [d for f in files for d in f.get("low_punctuation", [])] + other.get("low_punctuation", [])
    out.append(f"<h2>Documents with little punctuation ({_count(low, other, 'low_punctuation')})</h2>")
    if low:
        out.append("<p class=muted>Kept, but punctuated far less than the rest of the corpus (a copy with its "
                   "punctuation stripped?).</p><table><tr><th>document</th><th>punctuation per hanzi</th>"
                   "<th>corpus</th></tr>")
        out += [f"<tr><td>{html.escape(d['doc'])}</td><td class=n>{d['punctuation_per_hanzi']}</td>"
                f"<td class=n>{d['corpus']}</td></tr>" for d in low]
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def write_html_report(report: dict, path: str | Path, seed: int = 0) -> None:
    Path(path).write_text(render(report, seed), encoding="utf-8")
