"""What cleaning did to each file, character by character.

Every rule that removes text adds the number of characters it removed to
`FileReport.dropped[rule]`, so that for each file
    input_chars == kept_chars + sum(dropped)
Substitutions that keep the length (a full-width space becoming a space, traditional
to simplified) count into `normalized`. Each rule also keeps a seeded random sample of
its drops with the text around them, so that a person can check its precision
(`report.html`), and the garbage rule lists the passages it flagged.
"""
from __future__ import annotations

import json
import pickle
import random
import textwrap
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..shards import write_error

SAMPLES_PER_RULE = 8       # kept per file and rule (reservoir sampling)
CONTEXT = 40               # characters of context on each side of a sampled drop
MAX_SHOWN = 240            # a dropped span longer than this is shown cut in the middle
MAX_FLAGGED = 40           # flagged passages listed per file
UNFINISHED_WARN = 0.10    # share of paragraphs stopping mid-sentence that the summary warns about
UNSAMPLED = {"line_ends", "blank_lines", "bom", "whitespace"}  # drops with nothing to look at
DETAILED_FILES = 1000      # files whose own report keeps its samples; the rest pool theirs (SamplePool)


def _clip(text: str) -> str:
    if len(text) <= MAX_SHOWN:
        return text
    half = MAX_SHOWN // 2
    return f"{text[:half]} …[{len(text) - 2 * half} more]… {text[-half:]}"


@dataclass
class FileReport:
    path: str
    encoding: str = ""
    bytes: int = 0
    documents: int = 0
    input_chars: int = 0
    kept_chars: int = 0
    dropped: Counter = field(default_factory=Counter)
    normalized: int = 0
    bad_bytes_replaced: int = 0
    skipped: str | None = None       # why the whole file contributed nothing
    paragraphs: dict = field(default_factory=dict)   # how hard wraps were read (widths, style)
    samples: dict = field(default_factory=dict)      # rule -> {"seen": n, "items": [[before, dropped, after]]}
    flagged: list = field(default_factory=list)      # garbage passages: {"doc", "text", "before", "after", "scope"}
    duplicates: list = field(default_factory=list)   # documents of this file dropped as near duplicates
    low_punctuation: list = field(default_factory=list)
    # kept paragraphs (15+ characters, not headings) and those of them that stop mid-sentence,
    # with a sample: text missing from the copy, or a line break that was not rejoined
    unfinished: dict = field(default_factory=lambda: {"paragraphs": 0, "seen": 0, "items": []})

    # -- accounting

    def add_drop(self, rule: str, text: str, before: str = "", after: str = "", count: int | None = None) -> None:
        """Count a drop of `text` under `rule` (`count` characters of it when it was replaced
        by something shorter), and maybe keep it, with context, as a sample."""
        n = len(text) if count is None else count
        if n <= 0:
            return
        self.dropped[rule] += n
        if rule in UNSAMPLED:
            return
        self._keep(self.samples.setdefault(rule, {"seen": 0, "items": []}),
                   [before[-CONTEXT:], _clip(text), after[:CONTEXT]])

    def _keep(self, reservoir: dict, item: list) -> None:
        """Reservoir sampling: every item offered equally likely to be kept."""
        reservoir["seen"] += 1
        if len(reservoir["items"]) < SAMPLES_PER_RULE:
            reservoir["items"].append(item)
            return
        j = self._rng().randrange(reservoir["seen"])
        if j < SAMPLES_PER_RULE:
            reservoir["items"][j] = item

    def add_drops(self, rule: str, chars: int, events: int) -> None:
        """Count many drops at once, without sampling them (the caller samples a few with add_drop)."""
        self.dropped[rule] += chars
        if events and rule not in UNSAMPLED:
            self.samples.setdefault(rule, {"seen": 0, "items": []})["seen"] += events

    def __getstate__(self) -> dict:
        # a report crossing from a worker leaves its random generator behind (2.5 kB each, and
        # the parent keeps one report per file); one is seeded again from the path when needed
        return {k: v for k, v in self.__dict__.items() if k != "_random"}

    def _rng(self) -> random.Random:
        if not hasattr(self, "_random"):
            self._random = random.Random(zlib.crc32(self.path.encode("utf-8", "replace")))  # seeded per file
        return self._random

    def flag(self, doc: str, text: str, before: str, after: str, scope: str) -> None:
        if len(self.flagged) < MAX_FLAGGED:
            self.flagged.append({"doc": doc, "text": _clip(text), "before": before[-CONTEXT:],
                                 "after": after[:CONTEXT], "scope": scope})

    def note_unfinished(self, paragraphs: int, cases: list[tuple[str, str]]) -> None:
        """Count the paragraphs checked and the (end, next start) of those that stop mid-sentence."""
        self.unfinished["paragraphs"] += paragraphs
        for end, nxt in cases:
            self._keep(self.unfinished, [end[-CONTEXT:], "\n", nxt[:CONTEXT]])

    def balanced(self) -> bool:
        return self.input_chars == self.kept_chars + sum(self.dropped.values())

    def merge(self, other: "FileReport", listed: bool = True) -> None:
        """Add another report (a document of this file, or a file into the total). `listed`:
        its duplicates and unpunctuated documents too (the corpus total leaves them out: they
        are listed file by file, and would grow with the corpus)."""
        self.bytes += other.bytes
        self.documents += other.documents
        self.input_chars += other.input_chars
        self.kept_chars += other.kept_chars
        self.dropped.update(other.dropped)
        self.normalized += other.normalized
        self.bad_bytes_replaced += other.bad_bytes_replaced
        for k, v in other.paragraphs.items():
            if isinstance(v, (int, float)):
                self.paragraphs[k] = self.paragraphs.get(k, 0) + v
            elif isinstance(v, list):
                self.paragraphs.setdefault(k, [])
                self.paragraphs[k] += [x for x in v if x not in self.paragraphs[k]]
        for rule, s in other.samples.items():
            mine = self.samples.setdefault(rule, {"seen": 0, "items": []})
            mine["items"] = merge_samples(mine, s, self._rng())
            mine["seen"] += s["seen"]
        self.flagged += other.flagged[: max(0, MAX_FLAGGED - len(self.flagged))]
        if listed:
            self.duplicates += other.duplicates
            self.low_punctuation += other.low_punctuation
        mine, theirs = self.unfinished, other.unfinished
        mine["items"] = merge_samples(mine, theirs, self._rng())
        mine["seen"] += theirs["seen"]
        mine["paragraphs"] += theirs["paragraphs"]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dropped"] = dict(sorted(self.dropped.items()))
        return d


def merge_samples(a: dict, b: dict, rng: random.Random, k: int = SAMPLES_PER_RULE) -> list:
    """Two reservoirs into one of size k, each item weighted by how many drops it stands for."""
    pool = [(it, a["seen"] / max(1, len(a["items"]))) for it in a["items"]]
    pool += [(it, b["seen"] / max(1, len(b["items"]))) for it in b["items"]]
    if len(pool) <= k:
        return [it for it, _ in pool]
    # Efraimidis-Spirakis weighted sampling without replacement
    keyed = sorted(pool, key=lambda p: rng.random() ** (1.0 / p[1]), reverse=True)
    return [it for it, _ in keyed[:k]]


class SamplePool:
    """The samples of drops, flagged passages and unfinished paragraphs of the files past the
    first DETAILED_FILES, pooled in weighted reservoirs as a file's are, so that a corpus of
    100,000 files holds one set of samples for them, not 100,000. Their reports keep every
    count (and how many drops each rule saw), only the examples move here."""

    def __init__(self):
        self.report = FileReport(path="(other files)")
        self.files = 0

    def take(self, r: FileReport) -> None:
        pool = self.report
        for rule, theirs in r.samples.items():
            mine = pool.samples.setdefault(rule, {"seen": 0, "items": []})
            mine["items"] = merge_samples(mine, theirs, pool._rng())
            mine["seen"] += theirs["seen"]
            theirs["items"] = []
        pool.flagged += r.flagged[: max(0, MAX_FLAGGED - len(pool.flagged))]
        r.flagged = []
        mine, theirs = pool.unfinished, r.unfinished
        mine["items"] = merge_samples(mine, theirs, pool._rng())
        mine["seen"] += theirs["seen"]
        mine["paragraphs"] += theirs["paragraphs"]
        theirs["items"] = []
        self.files += 1

    def to_dict(self) -> dict:
        r = self.report
        return {"files": self.files, "samples": r.samples, "flagged": r.flagged, "unfinished": r.unfinished}


class ReportSpill:
    """Each piece's report written to one work-directory file as it arrives, and read back
    when the reports are written, one file's pieces at a time: the parent process holds two
    numbers per piece instead of a report per file."""

    def __init__(self, path: Path, pieces: int):
        self.path = path
        self.spans = np.zeros((pieces, 2), dtype=np.int64)   # (offset, length) of each piece's pickle
        self._f = open(path, "w+b")
        self._end = 0

    def put(self, piece: int, report: FileReport) -> None:
        data = pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._f.seek(self._end)
            self._f.write(data)
        except OSError as e:
            raise write_error(self.path, e) from None
        self.spans[piece] = self._end, len(data)
        self._end += len(data)

    def get(self, piece: int) -> FileReport:
        start, n = self.spans[piece]
        self._f.seek(int(start))
        return pickle.loads(self._f.read(int(n)))

    def close(self) -> None:
        self._f.close()


def _json_body(d: dict, depth: int) -> str:
    """`json.dumps(d, indent=1)` as it reads nested `depth` levels down."""
    return textwrap.indent(json.dumps(d, ensure_ascii=False, indent=1), " " * depth)


class ReportWriter:
    """The cleaning part of report.json, written as the file reports come (one in memory at a
    time; the same text `json.dumps(..., indent=1)` gives), with their total and whether
    every file balances. What report.html, the manifest and the printed summary show is kept,
    bounded: the first `detailed` files' rows, and of the files after them, the duplicates,
    unpunctuated documents and mid-sentence warnings, up to `detailed` of each."""

    def __init__(self, path: Path, pool: SamplePool, detailed: int = DETAILED_FILES):
        self.path, self.pool, self.detailed = path, pool, detailed
        self.total = FileReport(path="(all files)")
        self.balanced, self.count = True, 0
        self.rows: list[dict] = []                        # the first `detailed` files
        self.later = {"duplicates": [], "low_punctuation": [], "unfinished_files": []}
        self.later_counts = dict.fromkeys(self.later, 0)
        self._f = open(path, "w", encoding="utf-8")
        self._f.write('{\n "files": [')

    def add(self, r: FileReport) -> None:
        row = r.to_dict()
        self._f.write(("," if self.count else "") + "\n" + _json_body(row, 2))
        self.count += 1
        self.total.merge(r, listed=False)
        self.balanced &= r.balanced()
        if len(self.rows) < self.detailed:
            self.rows.append(row)
            return
        u = r.unfinished
        late = {"duplicates": r.duplicates, "low_punctuation": r.low_punctuation,
                "unfinished_files": [{"path": r.path, "paragraphs": u["paragraphs"], "seen": u["seen"]}]
                if unfinished_warning(r.kept_chars, u) else []}
        for k, items in late.items():
            self.later_counts[k] += len(items)
            self.later[k] += items[: max(0, self.detailed - len(self.later[k]))]

    def finish(self, extra: dict) -> dict:
        """Close report.json with the total and `extra` (split, tokens, timing, ...); return the
        summary: what report.json holds, with the first files' rows only."""
        total = self.total
        if self.pool.files:
            for rule, theirs in self.pool.report.samples.items():   # the pooled examples, weighted by their drops
                mine = total.samples.setdefault(rule, {"seen": 0, "items": []})
                detailed = {"seen": mine["seen"] - theirs["seen"], "items": mine["items"]}
                mine["items"] = merge_samples(detailed, theirs, total._rng())
        skip = ("path", "encoding", "samples", "flagged", "duplicates", "low_punctuation", "skipped", "unfinished")
        rest = {"total": {k: v for k, v in total.to_dict().items() if k not in skip},
                "samples": total.samples, "balanced": self.balanced}
        if self.pool.files or self.count > self.detailed:
            rest["other_files"] = {**self.pool.to_dict(), **self.later, "counts": self.later_counts}
        rest.update(extra)
        body = _json_body(rest, 0)
        self._f.write(("\n ],\n" if self.count else "],\n") + body[2:])   # (the rest's own "{\n" dropped)
        self._f.close()
        return {"files": self.rows, "file_count": self.count, **rest}

    def abort(self) -> None:
        self._f.close()


def unfinished_warning(kept_chars: int, u: dict) -> bool:
    """Whether a file stops mid-sentence often enough to warn about (text missing, or breaks not rejoined)."""
    return bool(kept_chars) and u["seen"] >= 20 and u["seen"] >= UNFINISHED_WARN * u["paragraphs"]
