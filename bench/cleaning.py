"""Cleaning against ground truth: precision and recall per noise class and per rule.

Clean base texts (the three shared novels after cleaning, and the People's Daily default
corpus: classical and modern prose) get every kind of noise that bench/noise.py makes,
one kind at a time and all together, with seeds the tests never use. The cleaned output
is aligned with the truth (paragraphs first, characters inside the paragraphs that
differ) to count:

    noise left       noise characters still in the output         -> recall per class
    truth lost       true characters missing from the output      -> precision (target <= 0.05%)
    breaks left      wrapped or page-broken line breaks not rejoined -> rejoin recall (target >= 99%)
    merged           paragraph breaks of the truth that vanished  (a heading merged counts apart)

Per rule, on the all-noise text: characters the rule dropped (from the report) and its
false positives (the true characters that come back when the rule alone is switched off).
Then the real pairs: each shared noisy copy against the clean edition of the same novel.

    python bench/cleaning.py [--corpora ../shared/corpora] [--seeds 100 101 102] [--quick]
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import noise  # noqa: E402
from gpt2zh.clean import CleanOptions, FileReport, clean_text  # noqa: E402
from gpt2zh.clean.base import is_heading  # noqa: E402
from gpt2zh.corpus import clean_file  # noqa: E402

CLASSES = {   # noise class -> the kinds of bench/noise.py it runs (wrapping needs its line breaks counted)
    "hard wraps": ("wrap",),
    "blocks set apart (unwrapped)": ("blocks",),
    "blocks set apart in wrapped text": ("wrap", "blocks"),
    "page markers (unwrapped)": ("page_markers",),
    "page markers in wrapped text": ("wrap", "page_markers"),
    "navigation blocks": ("navigation",),
    "site notices": ("notices",),
    "separators": ("separators",),
    "inline adverts": ("adverts",),
    "html": ("html",),
    "mojibake": ("mojibake",),
    "lost characters": ("debris",),
    "masks": ("masks",),
    "prose traps (true text)": ("prose_traps",),
    "unpunctuated lines (true text)": ("unpunctuated",),
}
ALL = tuple(noise.KINDS)
END = set("。！？!?…”’」』）)》：；—~～")


def mid_sentence_share(text: str) -> float:
    lines = [ln for ln in text.split("\n") if len(ln) >= 15 and not is_heading(ln)]
    return sum(1 for ln in lines if ln[-1] not in END) / max(1, len(lines))


BLANKS = re.compile(r"\s+")


def runs_on(text: str, other: str) -> tuple[float, float]:
    """Of the kept lines of `text` (15+ characters, not headings), the share that end
    mid-sentence where the other edition runs on into the next line (a break cleaning left),
    and the share that end mid-sentence where the other edition goes on with different text
    (text missing from this copy, or another wording)."""
    flat = BLANKS.sub("", other)
    lines = text.split("\n")
    kept = left = differs = 0
    for i, ln in enumerate(lines):
        if len(ln) < 15 or is_heading(ln):
            continue
        kept += 1
        if ln[-1] in END or i + 1 >= len(lines):
            continue
        tail, head = BLANKS.sub("", ln)[-8:], BLANKS.sub("", lines[i + 1])[:6]
        if tail + head in flat:
            left += 1
        elif tail in flat:
            differs += 1
    return left / max(1, kept), differs / max(1, kept)


SENTENCE_SPLIT = re.compile(r"(\n|[^。！？!?\n]*[。！？!?]+[”’」』）)]*)")


def _tokens(s: str) -> list[str]:
    return [t for t in SENTENCE_SPLIT.split(s) if t]


def _count(a: str, b: str, c: Counter) -> None:
    """Characters and line breaks of `a` (truth) missing from `b` (output), and extra in `b`."""
    for op, x1, x2, y1, y2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op in ("replace", "delete"):
            lost = a[x1:x2]
            c["truth_lost"] += len(lost) - lost.count("\n")
            c["merged"] += lost.count("\n")
        if op in ("replace", "insert"):
            left = b[y1:y2]
            c["noise_left"] += len(left) - left.count("\n")
            c["breaks_left"] += left.count("\n")


def compare(truth: str, out: str) -> Counter:
    """Align the output with the truth, by paragraphs, then sentences, then characters
    (a character-level diff of whole chapters finds poor alignments); count what is left
    over and what is lost."""
    c = Counter()
    T, O = truth.split("\n"), out.split("\n")
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, T, O, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag == "insert":
            c["noise_left"] += sum(len(x) for x in O[j1:j2])
            c["lines_left"] += j2 - j1
            continue
        if tag == "delete":
            c["truth_lost"] += sum(len(x) for x in T[i1:i2])
            c["merged"] += i2 - i1
            continue
        a, b = "\n".join(T[i1:i2]), "\n".join(O[j1:j2])
        if a.replace("\n", "") == b.replace("\n", ""):   # only line breaks differ: count them exactly
            pa, pb = set(_breaks(a)), set(_breaks(b))
            c["breaks_left"] += len(pb - pa)
            c["merged"] += len(pa - pb)
            continue
        ta, tb = _tokens(a), _tokens(b)
        for op, x1, x2, y1, y2 in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
            if op != "equal":
                _count("".join(ta[x1:x2]), "".join(tb[y1:y2]), c)
    heads = Counter(x for x in T if is_heading(x))
    have = Counter(x for x in O if is_heading(x))
    c["headings_lost"] = sum(max(0, n - have[h]) for h, n in heads.items())
    return c


def _breaks(s: str) -> list[int]:
    """Positions of the line breaks in `s`, counted in characters that are not line breaks."""
    out, k = [], 0
    for ch in s:
        if ch == "\n":
            out.append(k)
        else:
            k += 1
    return out


def clean(text: str, opts: CleanOptions | None = None) -> tuple[str, FileReport]:
    report = FileReport("bench")
    return clean_text(text, opts or CleanOptions(), report), report


def bases(corpora: Path, quick: bool) -> dict[str, list[str]]:
    from gpt2zh.default_corpus import materialize

    out = {}
    paths = [corpora / n for n in ("xiyouji.gbk.txt", "sanguoyanyi.gbk.txt", "shuihuzhuan.txt")]
    for path in paths + [materialize() / "renmin_ribao_199801.txt"]:
        text = clean_file(path, CleanOptions())[1][0].text
        if quick:
            text = "\n".join(text.split("\n")[: text.count("\n") // 6])
        for _ in range(3):  # the truth is a fixed point of the cleaner: what it keeps of itself
            again, _ = clean(text)
            if again == text:
                break
            text = again
        out[path.name.split(".")[0].replace("_199801", "")] = text.split("\n")
    return out


def run_class(paras: list[str], kinds: tuple, seed: int) -> dict:
    n = noise.make(paras, kinds, seed)
    t0 = time.perf_counter()
    out, report = clean(n.text)
    secs = time.perf_counter() - t0
    c = compare(n.truth, out)
    injected = sum(n.noise.values())
    return {"injected": injected, "breaks": n.breaks, "truth_chars": len(n.truth) - n.truth.count("\n"),
            "paragraph_breaks": n.truth.count("\n"), "seconds": secs, "dropped": dict(report.dropped), **c}


def ablation(paras: list[str], seed: int) -> dict:
    """Per rule, on the text with every kind of noise: what it dropped, and the true
    characters (and paragraph breaks) that come back when it alone is off."""
    n = noise.make(paras, ALL, seed)
    out, report = clean(n.text)
    base = compare(n.truth, out)
    rows = {}
    for rule in CleanOptions.rule_names():
        if not getattr(CleanOptions(), rule):
            continue
        off, _ = clean(n.text, CleanOptions(**{rule: False}))
        c = compare(n.truth, off)
        rows[rule] = {"dropped": report.dropped.get(rule, 0),
                      "false_pos": max(0, base["truth_lost"] - c["truth_lost"]),
                      "merged_by": max(0, base["merged"] - c["merged"])}
    return rows


def fmt_pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default=str(Path(__file__).resolve().parents[2] / "shared" / "corpora"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])  # the tests use 0-9
    ap.add_argument("--quick", action="store_true", help="a sixth of each base text")
    args = ap.parse_args()
    corpora = Path(args.corpora)
    texts = bases(corpora, args.quick)
    print("bases: " + ", ".join(f"{k} ({sum(map(len, v)):,} chars)" for k, v in texts.items())
          + f"; seeds {args.seeds}\n")

    print(f"{'noise class':<30} {'injected':>9} {'recall':>8} {'truth lost':>11} {'rejoined':>9} {'merged':>7} "
          f"{'headings':>8}   (merged: paragraph breaks of the truth lost, share of all of them)")
    totals = {}
    for name, kinds in list(CLASSES.items()) + [("ALL TOGETHER", ALL)]:
        agg = Counter()
        for base, paras in texts.items():
            for seed in args.seeds:
                r = run_class(paras, kinds, seed)
                for k, v in r.items():
                    if isinstance(v, (int, float)):
                        agg[k] += v
        totals[name] = agg
        recall = 1 - agg["noise_left"] / agg["injected"] if agg["injected"] else float("nan")
        rejoin = 1 - agg["breaks_left"] / agg["breaks"] if agg["breaks"] else float("nan")
        print(f"{name:<30} {agg['injected']:>9,} {fmt_pct(recall) if agg['injected'] else '—':>8} "
              f"{fmt_pct(agg['truth_lost'] / agg['truth_chars']):>11} "
              f"{fmt_pct(rejoin) if agg['breaks'] else '—':>9} {fmt_pct(agg['merged'] / agg['paragraph_breaks']):>7} "
              f"{agg['headings_lost']:>8}")

    print("\nper rule, all noise together (first seed):")
    print(f"{'rule':<14} {'dropped':>9} {'false pos.':>10} {'precision':>9} {'paragraphs merged':>18}")
    per_rule = Counter()
    fp = Counter()
    merged = Counter()
    for base, paras in texts.items():
        for rule, row in ablation(paras, args.seeds[0]).items():
            per_rule[rule] += row["dropped"]
            fp[rule] += row["false_pos"]
            merged[rule] += row["merged_by"]
    for rule in CleanOptions.rule_names():
        if rule in per_rule:
            d = per_rule[rule]
            prec = 1 - fp[rule] / d if d else float("nan")
            print(f"{rule:<14} {d:>9,} {fp[rule]:>10,} {fmt_pct(prec) if d else '—':>9} {merged[rule]:>18,}")

    print("\nreal pairs: a shared noisy copy against the clean edition of the same novel")
    print("(left: mid-sentence lines where the other edition runs on into the next line, a break cleaning left;")
    print(" text differs: mid-sentence lines where the other edition goes on with other text)")
    print(f"{'file':<34} {'mid-sentence lines':>18} {'clean edition':>14} {'difference':>10} {'left':>6} "
          f"{'text differs':>12}")
    pairs = [("noisy/xiyouji_rain8.gbk.txt", "xiyouji.gbk.txt"),
             ("noisy/sanguoyanyi_updatetime.txt", "sanguoyanyi.gbk.txt"),
             ("noisy/shuihuzhuan_tianya.txt", "shuihuzhuan.txt")]
    for noisy_name, clean_name in pairs:
        a = "\n".join(d.text for d in clean_file(corpora / noisy_name, CleanOptions())[1])
        b = "\n".join(d.text for d in clean_file(corpora / clean_name, CleanOptions())[1])
        ma, mb = mid_sentence_share(a), mid_sentence_share(b)
        best = min(ma, mb)
        for name, m, (left, differs) in ((noisy_name, ma, runs_on(a, b)), (clean_name, mb, runs_on(b, a))):
            print(f"{name:<34} {m:>18.3f} {best:>14.3f} {m - best:>10.3f} {left:>6.3f} {differs:>12.3f}")


if __name__ == "__main__":
    main()
