"""Raw files -> documents: finding inputs, detecting the encoding, reading JSON.

`.txt` in UTF-8 (with or without BOM), GBK/GB18030, UTF-16/32 with BOM, any line
ends; `.json` (a list of strings, GPT2-Chinese's train.json) and `.jsonl` (a string
or {"text": ...} per line). Directories are walked recursively.

A file up to PIECE_BYTES (a .jsonl: JSONL_PIECE_BYTES) is read whole. A larger one is read
in pieces of about that size (`survey`): its encoding is found in one streaming pass, and
the pieces end at line breaks (a `.jsonl`) or at paragraph breaks (a `.txt`: before a
chapter heading, else at a blank line, else before an indented line, else at a line break),
so that no input has to fit in memory and a big file's pieces are cleaned in parallel. Each
piece of a `.txt` is a document of its own.
"""
from __future__ import annotations

import codecs
import json
import os
import re
import stat
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np


class CorpusError(Exception):
    """Bad input that the user must fix; the message names the file."""


class BinaryFileError(CorpusError):
    """Not text at all (an image in the corpus folder): skipped and reported, not fatal."""


TEXT_SUFFIXES = (".txt",)
JSON_SUFFIXES = (".json", ".jsonl")


def find_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and directories (recursively) into a sorted list of readable inputs."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        try:
            mode = p.stat().st_mode
        except FileNotFoundError:
            raise CorpusError(f"{p}: no such file or directory") from None
        except OSError as e:
            raise CorpusError(f"{p}: cannot read: {e.strerror}") from None
        if stat.S_ISDIR(mode):
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in TEXT_SUFFIXES + JSON_SUFFIXES
                           and f.is_file())  # is_file: FIFOs and devices inside a folder are passed over
            if not files:
                raise CorpusError(f"{p}: directory holds no .txt, .json or .jsonl files")
            found.extend(files)
        elif stat.S_ISREG(mode):
            found.append(p)
        else:  # reading a FIFO would wait forever for a writer
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise CorpusError(f"{p}: is {kind}, not a regular file; copy the text into a file first")
    return found


_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # before UTF-16: FF FE 00 00 starts both
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
]


def decode_bytes(data: bytes, name: str, replace_bad_bytes: bool = False) -> tuple[str, str, int]:
    """Return (text, encoding, bad_bytes_replaced). The BOM, if any, stays in the text
    (as U+FEFF) so that the cleaning report can count it."""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(enc)
            except UnicodeDecodeError as e:
                if not replace_bad_bytes:
                    raise CorpusError(f"{name}: invalid {enc} at byte offset {e.start}") from None
                text = data.decode(enc, errors="replace")
                return "\ufeff" + text, enc, text.count("\ufffd")
            return "\ufeff" + text, enc, 0
    nul = data.find(b"\x00")
    if nul >= 0:
        raise BinaryFileError(f"{name}: looks like a binary file, not text (NUL byte at offset {nul})")
    try:
        return data.decode("utf-8"), "utf-8", 0
    except UnicodeDecodeError as e8:
        try:
            return data.decode("gb18030"), "gb18030", 0
        except UnicodeDecodeError as eg:
            # Report the encoding that got further: that is most likely the intended one.
            enc, err = ("utf-8", e8) if e8.start >= eg.start else ("gb18030", eg)
            if not replace_bad_bytes:
                raise CorpusError(
                    f"{name}: cannot decode as UTF-8 or GB18030; first bad byte at offset {err.start} "
                    f"(as {enc}). Fix the file or pass --replace-bad-bytes to replace undecodable bytes"
                ) from None
            before = data[: err.start].decode(enc).count("\ufffd")
            text = data.decode(enc, errors="replace")
            return text, enc, text.count("\ufffd") - before


def read_text_file(path: str | Path, name: str | None = None) -> str:
    """A whole text file decoded as `prepare` decodes it (GBK/GB18030, UTF-8, BOMs),
    line ends normalized: for prompts and other single inputs."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"{name or path}: cannot read: {e.strerror}") from None
    text, _, _ = decode_bytes(data, str(name or path))
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


class BadLines:
    """The lines of a JSON-lines file that hold no document (not JSON, or no "text" string),
    skipped under --skip-bad-lines: how many, their characters, and the first few."""
    SHOWN = 8
    EDGE = 100          # characters kept of each end of a long line shown (one may be 64 MB)

    def __init__(self):
        self.lines, self.chars, self.samples = 0, 0, []   # samples: (line number, the line shown, its length, why)

    def add(self, lineno: int, line: str, why: str) -> None:
        self.lines += 1
        self.chars += len(line)
        if len(self.samples) < self.SHOWN:
            e = self.EDGE
            shown = line if len(line) <= 2 * e else f"{line[:e]} …[{len(line) - 2 * e:,} more]… {line[-e:]}"
            self.samples.append((lineno, shown, len(line), why))


def read_documents(path: Path, replace_bad_bytes: bool = False,
                   bad_lines: BadLines | None = None) -> tuple[list[str], str, int, int]:
    """Return (raw documents, encoding, bytes, bad bytes replaced) for one input file. A JSON
    line that holds no document stops with its file and line, or, given `bad_lines`, is
    skipped and counted there."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"{path}: cannot read: {e.strerror}") from None
    if not data.strip():
        return [], "", len(data), 0
    text, enc, bad = decode_bytes(data, str(path), replace_bad_bytes)
    suffix = path.suffix.lower()
    if suffix == ".json":
        docs = _json_documents(path, text)
    elif suffix == ".jsonl":
        docs = _jsonl_documents(path, text.lstrip("\ufeff"), bad_lines=bad_lines)
    else:
        docs = [text]
    return docs, enc, len(data), bad


# An escaped UTF-16 surrogate without its partner: json.loads accepts it, but the string
# it gives cannot be encoded, and would fail far from here.
_LONE_SURROGATE_RE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])|(?<![0-9a-fA-F]{4})\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def _lone_surrogate(path: Path, text: str, first_line: int = 1) -> CorpusError:
    m = _LONE_SURROGATE_RE.search(text)
    line = first_line + (text.count("\n", 0, m.start()) if m else 0)
    what = f" ({m.group(0)})" if m else ""
    return CorpusError(f"{path}:{line}: an escaped lone surrogate{what} is not a character; "
                       "the file was cut inside a UTF-16 pair. Fix or delete that item")


def _json_documents(path: Path, text: str) -> list[str]:
    try:
        obj = json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as e:
        raise CorpusError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(obj, list) or not all(isinstance(x, str) for x in obj):
        raise CorpusError(f"{path}: expected a JSON list of strings (GPT2-Chinese train.json format)")
    for item in obj:
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise _lone_surrogate(path, text) from None
    return obj


def _jsonl_documents(path: Path, text: str, first_line: int = 1, bad_lines: BadLines | None = None) -> list[str]:
    # Lines end at "\n" only: JSON allows a raw U+2028 or \x85 inside a string, and
    # str.splitlines() would cut the line there. (A file with old Mac line ends has no "\n".)
    if "\n" not in text:
        text = text.replace("\r", "\n")
    docs = []
    for i, line in enumerate(text.split("\n"), first_line):
        if not line.strip():
            continue
        try:
            docs.append(_jsonl_item(path, i, line))
        except BadLine as e:
            if bad_lines is None:
                raise CorpusError(str(e)) from None
            bad_lines.add(i, line, e.why)
    return docs


class BadLine(ValueError):
    """A JSON line that holds no document."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


def _jsonl_item(path: Path, lineno: int, line: str) -> str:
    skip = " (or skip such lines with --skip-bad-lines)"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise BadLine(f"{path}:{lineno}: invalid JSON: {e.msg}{skip}", f"invalid JSON: {e.msg}") from None
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        text = obj["text"]
    elif isinstance(obj, str):
        text = obj
    else:
        raise BadLine(f'{path}:{lineno}: expected a string or an object with a "text" string{skip}',
                      'not a string or an object with a "text" string')
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadLine(str(_lone_surrogate(path, line, lineno)) + skip, "an escaped lone surrogate") from None
    return text


# ----------------------------------------------------------------------------
# Large files, in pieces

PIECE_BYTES = 16 << 20        # a file larger than this is read and cleaned in pieces of about this size
# A .jsonl piece is only a batch of whole documents (a .txt piece is a document of its own), so
# it can be smaller: a worker holds a few copies of its piece (about 50 MB at 16 MB, measured),
# and at 4 MB a 1 GB corpus was cleaned as fast with 29 MB less at the peak.
JSONL_PIECE_BYTES = 4 << 20
MAX_LINE_BYTES = 64 << 20     # a longer line in a .jsonl is refused: no document should be that long
BLOCK = 4 << 20               # bytes read at a time while surveying
_PARAGRAPH_WINDOW = 1 << 20   # how far past a piece's nominal end a paragraph break is looked for

@dataclass(frozen=True, slots=True)   # (slots: one per input file; a corpus may have 100,000)
class Piece:
    """Bytes [start, end) of one input file, decoded with `codec` (None: the whole file, read
    as small files always are). The first piece of a file with a BOM starts with it."""

    path: str
    number: int
    start: int
    end: int
    codec: str | None = None
    first_line: int = 1         # line number of its first line in the file

    @property
    def whole(self) -> bool:
        return self.codec is None


@dataclass(slots=True)
class Source:
    """One input file as `prepare` reads it: its encoding and the pieces it is read in."""

    path: str
    size: int
    encoding: str = ""          # as reported ("" until a whole file is read)
    pieces: list[Piece] = field(default_factory=list)
    skipped: str | None = None  # why a large file is not read at all (not text)


class SourceTable:
    """Every input file and the pieces it is read in, as columns: about 100 bytes a file
    (its path's UTF-8 and a row of numbers a piece), where a `Source`, a `Piece` and a path
    string cost about 350, and the jobs made of them as much again. `prepare` holds this for
    the whole run and forks its workers from it: a corpus of 100,000 files should cost a few
    MB here, not 70. A `Piece` or a file's path is made when it is asked for."""

    PIECES = np.dtype([("file", np.int64), ("number", np.int64), ("start", np.int64), ("end", np.int64),
                       ("first_line", np.int64), ("codec", np.int16)])

    def __init__(self, sources: Iterable[Source]):
        blob, ends, sizes, encodings, rows = bytearray(), array("q"), array("q"), array("h"), array("q")
        self._names: list[str] = [""]            # encodings and codecs: a few distinct strings
        self.skipped: dict[int, str] = {}        # file -> why it is not read (rare)
        for f, s in enumerate(sources):
            blob += s.path.encode("utf-8", "surrogateescape")   # (a path that is not UTF-8 comes back as it was)
            ends.append(len(blob))
            sizes.append(s.size)
            encodings.append(self._code(s.encoding))
            if s.skipped:
                self.skipped[f] = s.skipped
            for piece in s.pieces:
                rows.extend((f, piece.number, piece.start, piece.end, piece.first_line,
                             self._code(piece.codec or "")))
        self._blob = np.frombuffer(bytes(blob), dtype=np.uint8)
        self._ends = np.frombuffer(ends, dtype=np.int64) if ends else np.zeros(0, np.int64)
        self.size = np.frombuffer(sizes, dtype=np.int64) if sizes else np.zeros(0, np.int64)
        self._encoding = np.frombuffer(encodings, dtype=np.int16) if encodings else np.zeros(0, np.int16)
        raw = np.asarray(rows, dtype=np.int64).reshape(-1, 6)
        self.pieces = np.zeros(len(raw), dtype=self.PIECES)
        for k, name in enumerate(self.PIECES.names):
            self.pieces[name] = raw[:, k]
        self.piece_count = np.bincount(self.pieces["file"], minlength=len(self.size))   # pieces of each file

    def _code(self, name: str) -> int:
        if name not in self._names:
            self._names.append(name)
        return self._names.index(name)

    def __len__(self) -> int:
        return len(self.size)

    def path(self, f: int) -> str:
        start = int(self._ends[f - 1]) if f else 0
        return self._blob[start:int(self._ends[f])].tobytes().decode("utf-8", "surrogateescape")

    def encoding(self, f: int) -> str:
        return self._names[self._encoding[f]]

    def piece(self, p: int) -> Piece:
        row = self.pieces[p]
        codec = self._names[row["codec"]] or None
        return Piece(self.path(int(row["file"])), int(row["number"]), int(row["start"]), int(row["end"]), codec,
                     int(row["first_line"]))

    def piece_sizes(self) -> np.ndarray:
        """Bytes of each piece (a piece read whole: its file's size)."""
        whole = self.pieces["codec"] == 0
        return np.where(whole, self.size[self.pieces["file"]], self.pieces["end"] - self.pieces["start"])


def piece_size(path: Path, piece_bytes: int = PIECE_BYTES) -> int:
    """The size of `path`'s pieces: `piece_bytes`, at most JSONL_PIECE_BYTES for a .jsonl."""
    return min(piece_bytes, JSONL_PIECE_BYTES) if path.suffix.lower() == ".jsonl" else piece_bytes


def read_whole(path: Path, size: int, piece_bytes: int = PIECE_BYTES) -> bool:
    """A file of up to its piece size, or a .json (one list, not cut), is read whole."""
    return size <= piece_size(path, piece_bytes) or path.suffix.lower() == ".json"


def survey(path: Path, replace_bad_bytes: bool = False, piece_bytes: int = PIECE_BYTES) -> Source:
    """The file's pieces. A file of up to its `piece_size` (or a .json: one list, not cut) is
    one piece, read whole later; a larger one has its encoding found here, by a streaming pass."""
    size = path.stat().st_size
    piece_bytes = piece_size(path, piece_bytes)
    if read_whole(path, size, piece_bytes):
        name = str(path)
        return Source(name, size, "", [Piece(name, 0, 0, size)])
    try:
        encoding, codec, unit = _streaming_encoding(path, replace_bad_bytes)
    except BinaryFileError as e:   # skipped and reported, as a small binary file is
        return Source(str(path), size, "", [], skipped=str(e).split(": ", 1)[1])
    newline = "\n".encode(codec)
    jsonl = path.suffix.lower() == ".jsonl"
    pieces, start, line = [], 0, 1
    with open(path, "rb") as f:
        while start < size:
            end = size if size - start <= piece_bytes * 3 // 2 else _piece_end(f, start + piece_bytes, size, newline,
                                                                              unit, codec, jsonl)
            if jsonl and end - start > MAX_LINE_BYTES:
                _refuse_long_line(f, path, start, end, line, newline, unit)
            pieces.append(Piece(str(path), len(pieces), start, end, codec, line))
            line += _count(f, start, end, newline, unit)
            start = end
    return Source(str(path), size, encoding, pieces)


def _streaming_encoding(path: Path, replace_bad_bytes: bool) -> tuple[str, str, int]:
    """(reported encoding, codec for the pieces, code unit size) found without reading the
    whole file into memory: the same answer `decode_bytes` gives on the whole file."""
    with open(path, "rb") as f:
        head = f.read(4)
    for bom, enc in _BOMS:
        if head.startswith(bom):
            if enc == "utf-8-sig":
                return enc, "utf-8", 1
            unit = 2 if enc == "utf-16" else 4
            endian = "le" if bom in (codecs.BOM_UTF16_LE, codecs.BOM_UTF32_LE) else "be"
            codec = f"{enc}-{endian}"
            bad = _first_bad(path, codec)
            if bad is not None and not replace_bad_bytes:
                raise CorpusError(f"{path}: invalid {enc} at byte offset {bad}")
            return enc, codec, unit
    with open(path, "rb") as f:
        pos = 0
        while block := f.read(BLOCK):
            nul = block.find(b"\x00")
            if nul >= 0:
                raise BinaryFileError(f"{path}: looks like a binary file, not text (NUL byte at offset {pos + nul})")
            pos += len(block)
    bad8 = _first_bad(path, "utf-8")
    if bad8 is None:
        return "utf-8", "utf-8", 1
    badg = _first_bad(path, "gb18030")
    if badg is None:
        return "gb18030", "gb18030", 1
    enc, at = ("utf-8", bad8) if bad8 >= badg else ("gb18030", badg)
    if not replace_bad_bytes:
        raise CorpusError(
            f"{path}: cannot decode as UTF-8 or GB18030; first bad byte at offset {at} "
            f"(as {enc}). Fix the file or pass --replace-bad-bytes to replace undecodable bytes")
    return enc, enc, 1


def _first_bad(path: Path, codec: str) -> int | None:
    """Byte offset of the first byte `codec` cannot decode, or None."""
    dec = codecs.getincrementaldecoder(codec)()
    pos = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(BLOCK)
            pending = len(dec.getstate()[0])
            try:
                dec.decode(block, final=not block)
            except UnicodeDecodeError as e:
                return pos - pending + e.start
            if not block:
                return None
            pos += len(block)


def _find_newline(f, pos: int, size: int, newline: bytes, unit: int) -> int:
    """Offset just past the first line break at or after `pos` (aligned to the code unit)."""
    pos += (-pos) % unit
    while pos < size:
        f.seek(pos)
        block = f.read(BLOCK)
        i = block.find(newline)
        while i >= 0 and (pos + i) % unit:
            i = block.find(newline, i + 1)
        if i >= 0:
            return pos + i + len(newline)
        pos += max(unit, len(block) - len(newline) + 1)
        pos += (-pos) % unit
    return size


_CUT_RES = [re.compile(r"\n(?=[ \t\u3000]*(?:正文[ \t\u3000]*)?(?:第[ \t\u3000]*[0-9０-９零〇一二三四五六七八九十百千两]+[ \t\u3000]*[回章节卷集部篇]|楔子|序章|尾声))"),
            re.compile(r"\n[ \t\u3000\r]*\n"),            # a blank line
            re.compile(r"\n(?=[ \t\u3000]{2}|\u3000)")]      # an indented line


def _piece_end(f, target: int, size: int, newline: bytes, unit: int, codec: str, jsonl: bool) -> int:
    """Where a piece that should end near `target` ends: a line break for JSON lines; for text,
    the first paragraph break within a window after it (a heading, a blank line, an indented
    line, in that order), else a line break."""
    at = _find_newline(f, target, size, newline, unit)
    if jsonl or at >= size:
        return at
    f.seek(at)
    window = f.read(_PARAGRAPH_WINDOW)
    last = window.rfind(newline)
    while last >= 0 and last % unit:
        last = window.rfind(newline, 0, last)
    if last <= 0:
        return at
    try:
        text = window[:last + len(newline)].decode(codec)
    except UnicodeDecodeError:
        return at
    for pattern in _CUT_RES:
        m = pattern.search(text)
        if m:
            return at + len(text[:m.start() + 1].encode(codec))
    return at


def _refuse_long_line(f, path: Path, start: int, end: int, line: int, newline: bytes, unit: int) -> None:
    """A CorpusError naming the first line of [start, end) longer than MAX_LINE_BYTES, if any."""
    pos = start
    while pos < end:
        nxt = _find_newline(f, pos, end, newline, unit)
        if nxt - pos > MAX_LINE_BYTES:
            raise CorpusError(f"{path}:{line}: a line of {nxt - pos:,} bytes, longer than the "
                              f"{MAX_LINE_BYTES / 2**20:g} MB a document may be; is this a JSON-lines file?")
        pos, line = nxt, line + 1


def _count(f, start: int, end: int, newline: bytes, unit: int) -> int:
    f.seek(start)
    n, pos = 0, start
    while pos < end:
        block = f.read(min(BLOCK, end - pos))
        if unit == 1:
            n += block.count(newline)
        else:
            n += sum(1 for m in re.finditer(re.escape(newline), block) if (pos + m.start()) % unit == 0)
        pos += len(block)
    return n


def read_piece(piece: Piece, replace_bad_bytes: bool = False,
               bad_lines: BadLines | None = None) -> tuple[list[str], int]:
    """(raw documents, bad bytes replaced) of one piece of a large file."""
    path = Path(piece.path)
    try:
        with open(path, "rb") as f:
            f.seek(piece.start)
            data = f.read(piece.end - piece.start)
    except OSError as e:
        raise CorpusError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text, bad = data.decode(piece.codec), 0
    except UnicodeDecodeError as e:
        if not replace_bad_bytes:
            raise CorpusError(f"{path}: invalid {piece.codec} at byte offset {piece.start + e.start}") from None
        text = data.decode(piece.codec, errors="replace")
        bad = text.count("\ufffd") - data.count("\ufffd".encode(piece.codec))   # (not the file's own U+FFFD)
    del data
    if path.suffix.lower() == ".jsonl":
        text = text.lstrip("\ufeff") if piece.number == 0 else text
        return _jsonl_documents(path, text, piece.first_line, bad_lines), bad
    return ([text] if text.strip() else []), bad
