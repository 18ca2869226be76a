"""Documents: raw files in, clean documents out (with their reports), and the
train / validation split. The cleaning itself is the rule pipeline in `gpt2zh.clean`."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .clean import (RULE_HELP, BinaryFileError, CleanOptions, CorpusError, FileReport, clean_text, decode_bytes,  # noqa: F401
                    find_inputs, has_cjk, learn, normalize_line_ends, read_documents, scan)
from .decode import BadLines, Piece, read_piece

BAD_LINES = "bad_json_lines"   # the report's name for JSON lines skipped under --skip-bad-lines


@dataclass
class Document:
    source: str
    text: str


def raw_documents(path: Path, replace_bad_bytes: bool = False,
                  skip_bad_lines: bool = False) -> tuple[FileReport, list[str]]:
    """The file's documents as decoded, and a report that knows its encoding and size
    (or why it was skipped)."""
    bad_lines = BadLines() if skip_bad_lines else None
    try:
        raw, enc, nbytes, bad = read_documents(path, replace_bad_bytes, bad_lines)
    except BinaryFileError as e:
        return FileReport(path=str(path), bytes=path.stat().st_size, skipped=str(e).split(": ", 1)[1]), []
    report = FileReport(path=str(path), encoding=enc, bytes=nbytes, bad_bytes_replaced=bad)
    count_bad_lines(report, bad_lines)
    if not raw:
        report.skipped = "no JSON line holds a document" if bad_lines and bad_lines.lines else "empty file"
    return report, raw


def piece_documents(piece: Piece, replace_bad_bytes: bool = False,
                    skip_bad_lines: bool = False) -> tuple[FileReport, list[str]]:
    """The raw documents of one piece (a whole file, or a piece of a large one) and a report
    for them (a large file's encoding and size go on its first piece's report, by the caller)."""
    if piece.whole:
        return raw_documents(Path(piece.path), replace_bad_bytes, skip_bad_lines)
    bad_lines = BadLines() if skip_bad_lines else None
    raw, bad = read_piece(piece, replace_bad_bytes, bad_lines)
    report = FileReport(path=piece.path, bad_bytes_replaced=bad)
    count_bad_lines(report, bad_lines)
    return report, raw


def count_bad_lines(report: FileReport, bad_lines: BadLines | None) -> None:
    """Skipped JSON lines are input dropped under their own name, with the first few shown."""
    if not bad_lines or not bad_lines.lines:
        return
    report.input_chars += bad_lines.chars
    shown = 0
    for lineno, shown_text, n, why in bad_lines.samples:
        report.add_drop(BAD_LINES, shown_text, before=f"line {lineno:,}: ", after=f"  ({why})", count=n)
        shown += n
    report.add_drops(BAD_LINES, bad_lines.chars - shown, bad_lines.lines - len(bad_lines.samples))


def _scan(raw: list[str], opts: CleanOptions) -> dict:
    return scan([normalize_line_ends(t.lstrip("\ufeff")) for t in raw], opts)


def scan_file(path: Path, opts: CleanOptions, replace_bad_bytes: bool = False) -> tuple[dict, int]:
    """(what corpus-level rules learn from this file, its number of documents)."""
    _, raw = raw_documents(path, replace_bad_bytes, opts.skip_bad_lines)
    return _scan(raw, opts), len(raw)


def scan_piece(piece: Piece, opts: CleanOptions, replace_bad_bytes: bool = False) -> tuple[dict, int]:
    """(what corpus-level rules learn from this piece, its number of documents)."""
    _, raw = piece_documents(piece, replace_bad_bytes, opts.skip_bad_lines)
    return _scan(raw, opts), len(raw)


def clean_documents(raw: list[str], names: list[str], report: FileReport, opts: CleanOptions,
                    learned: dict) -> list[Document]:
    """Every raw document through the rules, each one's report merged into `report`."""
    docs: list[Document] = []
    for text, name in zip(raw, names):
        part = FileReport(path=name)
        clean = clean_text(text, opts, part, learned, name)
        if clean and not has_cjk(clean):
            # Chinese models gain nothing from it; say so rather than train on it.
            part.dropped["no_chinese"] += len(clean)
            part.kept_chars -= len(clean)
            clean = ""
        report.merge(part)
        if clean:
            docs.append(Document(name, clean))
    return docs


def why_empty(report: FileReport) -> str:
    return "no Chinese text" if report.dropped.get("no_chinese") else "nothing left after cleaning"


def clean_file(path: Path, opts: CleanOptions, replace_bad_bytes: bool = False,
               learned: dict | None = None) -> tuple[FileReport, list[Document]]:
    """Clean every document of one file. Without `learned` (knowledge from the whole
    corpus), the corpus-level rules learn from this file alone."""
    report, raw = raw_documents(path, replace_bad_bytes, opts.skip_bad_lines)
    if not raw:
        return report, []
    if learned is None:
        learned = learn([_scan(raw, opts)], len(raw), opts)
    names = [report.path] if len(raw) == 1 else [f"{report.path}[{i}]" for i in range(len(raw))]
    docs = clean_documents(raw, names, report, opts, learned)
    if not docs:
        report.skipped = why_empty(report)
    return report, docs


def clean_piece(piece: Piece, opts: CleanOptions, replace_bad_bytes: bool, learned: dict | None,
                first_doc: int) -> tuple[FileReport, list[Document]]:
    """Clean one piece: a whole file as `clean_file` does, or a piece of a large file, whose
    documents are named by their place in the file (`first_doc` is the piece's first)."""
    if piece.whole:
        return clean_file(Path(piece.path), opts, replace_bad_bytes, learned)
    report, raw = piece_documents(piece, replace_bad_bytes, opts.skip_bad_lines)
    names = [f"{piece.path}[{first_doc + i}]" for i in range(len(raw))]
    return report, clean_documents(raw, names, report, opts, learned or {})


def learn_corpus(inputs: Iterable[str | os.PathLike], opts: CleanOptions | None = None,
                 replace_bad_bytes: bool = False) -> dict:
    """What the corpus-level rules learn from all of `inputs` (as `prepare` does, in one process)."""
    opts = opts or CleanOptions()
    scans = [scan_file(p, opts, replace_bad_bytes) for p in find_inputs(inputs)]
    return learn([s for s, _ in scans], sum(n for _, n in scans), opts)


def load_corpus(inputs: Iterable[str | os.PathLike], opts: CleanOptions | None = None,
                replace_bad_bytes: bool = False, learned: dict | None = None
                ) -> Iterator[tuple[FileReport, list[Document]]]:
    """Yield (report, clean documents) per input file. Raises CorpusError on unreadable input."""
    opts = opts or CleanOptions()
    for path in find_inputs(inputs):
        yield clean_file(path, opts, replace_bad_bytes, learned)


# ----------------------------------------------------------------------------
# Train / validation split


def split_document(text: str, val_fraction: float) -> tuple[str, str]:
    """First (1 - val_fraction) for training, the rest for validation, cut at the
    paragraph break nearest the cut point (deterministic). The break itself is dropped."""
    if val_fraction <= 0:
        return text, ""
    cut = int(len(text) * (1 - val_fraction))
    after = text.find("\n", cut)
    before = text.rfind("\n", 0, cut)
    candidates = [i for i in (before, after) if i > 0]
    if not candidates:  # one paragraph: cut inside it at a sentence end, else exactly
        ends = [m.end() for m in re.finditer("[。！？!?]", text)]
        i = min(ends, key=lambda e: abs(e - cut)) if ends else cut
        return text[:i], text[i:]
    i = min(candidates, key=lambda c: abs(c - cut))
    return text[:i], text[i + 1:]
