"""The rule protocol, the registry, and the helpers that keep the accounting.

A rule is a small class with a name (its report key and its `--no-NAME` flag), a help
line, a default and `apply(text, doc) -> text`; its place in the pipeline is in
`gpt2zh.clean.ORDER`, the one list of every rule in order. It removes
text only through `cut_spans` / `cut_pattern` / `drop_lines`, which count every
removed character under the rule's name and sample the drops for the report.

Rules that learn from the whole corpus (boilerplate that recurs across files) also
implement `scan(texts)`, run on every file's raw documents before cleaning starts (in
the worker processes), and `finish(summary, n_docs)`, run once in the parent on the
summaries folded together (`learn(scans, n_docs)` does both for a list); what it
returns reaches `apply` as `doc.learned[name]`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from .report import FileReport

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RE = re.compile(f"[{CJK}]")
SPACE = " \t\u3000\xa0\u2002\u2003\u200b\ufeff"  # kinds of blank a scanned or web text carries
_S = f"[{SPACE}]"
INNER_SPACE_RE = re.compile(f"{_S}+")   # a run of blanks inside a line
_NUM_CN = "0-9０-９零〇一二三四五六七八九十百千两"
HEADING = (
    rf"{_S}*(?:正文{_S}*)?(?:第{_S}*[{_NUM_CN}]+{_S}*[回章节卷集部篇]|楔子|序章|引子|尾声|后记|番外|附{_S}*录)"
)
HEADING_RE = re.compile(HEADING)
SENTENCE_END = "。！？!?…”’」』）)》"   # a line ending in one of these ends a sentence (or a quotation)
PUNCTUATION = "，。、；：？！“”‘’《》（）…—·「」『』〈〉【】～,.;:?!\"'()"


HEADING_START = "正第楔序引尾后番附"   # the first character of every heading HEADING matches


def is_heading(line: str) -> bool:
    """A chapter heading: structure to keep on its own line, never merged or dropped."""
    s = line.strip(SPACE)
    return bool(s) and len(s) <= 60 and HEADING_RE.match(s) is not None


def headings(lines: list[str]) -> list[bool]:
    """is_heading of every line, the regular expression asked only where the first character
    can start a heading (a novel has 20,000 lines and a few hundred headings)."""
    return [line.lstrip(SPACE)[:1] in HEADING_START and is_heading(line) if line else False for line in lines]


class Rule:
    name: ClassVar[str]
    help: ClassVar[str]
    default: ClassVar[bool] = True

    def apply(self, text: str, doc: "Doc") -> str:
        raise NotImplementedError

    # Corpus-level learning (optional): scan each file's raw documents (or each piece of a
    # large file) into a summary with add_piece(other) and add_file(other); `finish` turns the
    # corpus's summary into what `apply` reads as doc.learned[name].
    def scan(self, texts: list[str]):
        return None

    def learn(self, scans: list, n_docs: int):
        return None

    def finish(self, summary, n_docs: int):
        return None


RULES: dict[str, type[Rule]] = {}


def register(cls: type[Rule]) -> type[Rule]:
    if cls.name in RULES:
        raise ValueError(f"two cleaning rules named {cls.name!r}")
    RULES[cls.name] = cls
    return cls


@dataclass
class Doc:
    """One document on its way through the pipeline: where drops are counted, what the
    corpus-level rules learned, and what one rule tells a later one."""

    name: str
    report: FileReport
    options: object                       # CleanOptions
    learned: dict = field(default_factory=dict)
    # page_markers -> hard_wrap: lines (by index after its drops) followed by a removed page
    # break, so that the break is read as a wrap, not as a paragraph end
    soft_breaks: set[int] = field(default_factory=set)
    # html -> hard_wrap: a line that lost tags -> (characters, display columns) it lost, so
    # that it is measured at the width it was wrapped at
    shortened_lines: dict[str, tuple[int, int]] = field(default_factory=dict)
    # the LineTable of the text last measured, shared by the rules that read the same text
    line_table: tuple | None = None


# ----------------------------------------------------------------------------
# Removing text with the accounting kept


def cut_spans(text: str, spans, rule: str, doc: Doc) -> str:
    """Remove [start, end) spans (sorted, not overlapping) from `text`, counting and
    sampling each under `rule`."""
    out, pos = [], 0
    for s, e in spans:
        if e <= s:
            continue
        out.append(text[pos:s])
        doc.report.add_drop(rule, text[s:e], text[max(0, s - 40):s], text[e:e + 40])
        pos = e
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def cut_pattern(pattern: re.Pattern, text: str, rule: str, doc: Doc) -> str:
    return cut_spans(text, ((m.start(), m.end()) for m in pattern.finditer(text)), rule, doc)


def replace_pattern(pattern: re.Pattern, text: str, replacement, rule: str, doc: Doc) -> str:
    """Replace each match by `replacement(match)` (never longer than the match); the
    characters that disappear count as dropped by `rule`."""
    def sub(m: re.Match) -> str:
        new = replacement(m)
        gone = m.group(0)
        doc.report.add_drop(rule, gone, m.string[max(0, m.start() - 40):m.start()],
                            m.string[m.end():m.end() + 40], count=len(gone) - len(new))
        return new

    return pattern.sub(sub, text)


def drop_lines(lines: list[str], drop: dict[int, str], doc: Doc) -> list[str]:
    """Remove the lines whose index is in `drop` (index -> rule). Each dropped line takes
    one line break with it; when every line goes, there is one break fewer to count."""
    if not drop:
        return lines
    kept = [line for i, line in enumerate(lines) if i not in drop]
    last = max(drop)
    for i in sorted(drop):
        gone = lines[i] + ("\n" if (kept or i != last) else "")
        before = lines[i - 1] if i > 0 else ""
        after = lines[i + 1] if i + 1 < len(lines) else ""
        doc.report.add_drop(drop[i], gone, before + "\n", "\n" + after)
    return kept
