"""Cleaning as a pipeline of named rules.

Each rule lives in a module of this package (a class registered with `@register`, see
`base.py`); every module here is imported below, so adding a rule is adding a file. The
registry gives the order of the pipeline, the `CleanOptions` switches, the CLI flags and
the report's keys:

    repeated    learned boilerplate (lines.py)     html, adverts, notices, urls, navigation,
    separators, toc, page_markers (lines.py)       hard_wrap, whitespace (paragraphs.py)
    junk_runs, masks, garbage, placeholders (garbage.py)      to_simplified (convert.py)

Near-duplicate documents are found across the corpus after cleaning (`dedup.py`), and
`report.py` keeps the accounting: for each file, input = kept + every rule's drops.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import field, make_dataclass

from .base import CJK_RE, RULES, Doc, Rule, cut_pattern, register  # noqa: F401
from ..decode import BinaryFileError, CorpusError, decode_bytes, find_inputs, read_documents, read_text_file  # noqa: F401
from .report import FileReport  # noqa: F401

for _m in pkgutil.iter_modules(__path__):
    if _m.name not in ("base", "report", "dedup", "html_report"):
        importlib.import_module(f"{__name__}.{_m.name}")

from .paragraphs import note_unfinished  # noqa: E402  (after every rule is registered)

# The pipeline's order, in one place. Why each stands where it does:
ORDER = [
    "repeated",       # learned boilerplate first: it knows whole lines as the site wrote them
    "html",           # tags and entities, before any rule reads a line's words or width
    "notices",        # whole lines: site notices, credits, update times
    "navigation",     # whole lines: 首页 | 上一页 …
    "separators",     # whole lines: ------
    "toc",            # a table of contents (before page_markers: its page numbers are the toc's)
    "page_markers",   # page numbers and page breaks: hard_wrap joins across the breaks they leave
    "hard_wrap",      # lines rejoined into paragraphs (reads soft_breaks, shortened_lines)
    "adverts",        # after hard_wrap: an advert cut by a wrap is one sentence again
    "urls",           # after hard_wrap: a URL cut by a wrap is whole again
    "garbage",        # mojibake and keyboard noise, judged per paragraph
    "junk_runs",      # debris where a conversion lost a rare hanzi (a lone kana or Cyrillic letter too)
    "masks",          # 口口口 / ××× masked words
    "placeholders",   # (off by default) [图片] and the like
    "whitespace",     # last of the removals: blanks left by everything above
    "to_simplified",  # a substitution, not a removal: after everything that reads the text
]
_missing, _unknown = set(RULES) - set(ORDER), set(ORDER) - set(RULES)
if _missing or _unknown:
    raise RuntimeError(f"gpt2zh.clean: ORDER and the registered rules disagree (not in ORDER: {sorted(_missing)}; "
                       f"not registered: {sorted(_unknown)})")
GARBAGE_SCOPES = ("span", "paragraph")


def _rule_names(cls) -> list[str]:
    return list(ORDER)


def _validate(self) -> None:
    if self.garbage_scope not in GARBAGE_SCOPES:
        raise ValueError(f"garbage_scope must be one of {', '.join(GARBAGE_SCOPES)}, got {self.garbage_scope!r}")


CleanOptions = make_dataclass(
    "CleanOptions",
    [(name, bool, field(default=RULES[name].default)) for name in ORDER]
    + [("garbage_scope", str, field(default="span")), ("keep_duplicates", bool, field(default=False)),
       ("skip_bad_lines", bool, field(default=False))],   # JSON lines that do not parse: skipped and counted
    namespace={"rule_names": classmethod(_rule_names), "__post_init__": _validate,
               "__doc__": "Which rules run (one switch per registered rule) and how."},
)
CleanOptions.__module__ = __name__  # so that worker processes can unpickle it
RULE_HELP = {name: RULES[name].help for name in ORDER}


def pipeline(opts) -> list[Rule]:
    return [RULES[name]() for name in ORDER if getattr(opts, name)]


def build_tables() -> None:
    """Build the code-point tables the rules otherwise build on first use (~7 MB: a flag, a
    class or a script for each of the 1.1 M code points). A process that forks workers calls
    this first, so that its workers share one copy of those pages instead of each building a
    private one (and a worker that is replaced starts with them)."""
    from .dedup import _kinds
    from .garbage import class_tables
    from .paragraphs import _char_flags

    _char_flags()
    class_tables()
    _kinds()


def scan(texts: list[str], opts) -> dict:
    """What the corpus-level rules need from one file's raw documents (line ends normalized),
    or from one piece of a large file."""
    out = {}
    for rule in pipeline(opts):
        s = rule.scan(texts)
        if s is not None:
            out[rule.name] = s
    return out


def merge_pieces(file_scan: dict | None, piece_scan: dict) -> dict:
    """A large file's scan, its pieces' added up as they come."""
    if file_scan is None:
        return piece_scan
    for name, s in piece_scan.items():
        if name in file_scan:
            file_scan[name].add_piece(s)
        else:
            file_scan[name] = s
    return file_scan


class Learner:
    """What the corpus-level rules learn, folded in one file's scan at a time, so that the
    parent never holds every file's summary (each rule's summary caps its own size)."""

    def __init__(self, opts):
        self.rules = pipeline(opts)
        self.corpus: dict = {}
        self.n_docs = 0

    def add_file(self, file_scan: dict, n_docs: int) -> None:
        self.n_docs += n_docs
        for name, s in file_scan.items():
            if name in self.corpus:
                self.corpus[name].add_file(s)
            else:
                self.corpus[name] = s

    def learned(self) -> dict:
        """What `clean_text` passes to the rules."""
        return {r.name: r.finish(self.corpus[r.name], self.n_docs) for r in self.rules if r.name in self.corpus}


def learn(scans: list[dict], n_docs: int, opts) -> dict:
    """Every file's scan merged into what `clean_text` passes to the rules."""
    learner = Learner(opts)
    for s in scans:
        learner.add_file(s, 0)
    learner.n_docs = n_docs
    return learner.learned()


REPLACED_RE = re.compile("\ufffd")
CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalize_line_ends(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def clean_text(text: str, opts=None, report: FileReport | None = None, learned: dict | None = None,
               name: str = "") -> str:
    """Apply every enabled rule to one document; update `report`; return the clean text,
    paragraphs separated by single line breaks."""
    opts = opts or CleanOptions()
    report = report if report is not None else FileReport(name)
    report.input_chars += len(text)
    report.documents += 1
    if text.startswith("\ufeff"):
        report.dropped["bom"] += 1
        text = text[1:]
    report.dropped["line_ends"] += text.count("\r\n")
    text = normalize_line_ends(text)
    doc = Doc(name or report.path, report, opts, learned or {})
    if "\ufffd" in text:  # bytes that --replace-bad-bytes replaced
        text = cut_pattern(REPLACED_RE, text, "bad_bytes", doc)
    if CONTROL_RE.search(text):
        report.normalized += text.count("\f")
        text = cut_pattern(CONTROL_RE, text.replace("\f", "\n"), "control_chars", doc)  # a form feed breaks the page
    for rule in pipeline(opts):
        text = rule.apply(text, doc)
    note_unfinished(text, doc)
    report.kept_chars += len(text)
    return text


def has_cjk(text: str) -> bool:
    return CJK_RE.search(text) is not None
