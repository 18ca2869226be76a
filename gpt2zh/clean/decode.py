"""Raw files -> documents: finding inputs, detecting the encoding, reading JSON.

`.txt` in UTF-8 (with or without BOM), GBK/GB18030, UTF-16/32 with BOM, any line
ends; `.json` (a list of strings, GPT2-Chinese's train.json) and `.jsonl` (a string
or {"text": ...} per line). Directories are walked recursively.
"""
from __future__ import annotations

import codecs
import json
import os
import re
import stat
from pathlib import Path
from typing import Iterable


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


def read_documents(path: Path, replace_bad_bytes: bool = False) -> tuple[list[str], str, int, int]:
    """Return (raw documents, encoding, bytes, bad bytes replaced) for one input file."""
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
        docs = [_jsonl_item(path, i, line) for i, line in enumerate(text.lstrip("\ufeff").splitlines(), 1)
                if line.strip()]
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


def _jsonl_item(path: Path, lineno: int, line: str) -> str:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise CorpusError(f"{path}:{lineno}: invalid JSON: {e.msg}") from None
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        text = obj["text"]
    elif isinstance(obj, str):
        text = obj
    else:
        raise CorpusError(f'{path}:{lineno}: expected a string or an object with a "text" string')
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _lone_surrogate(path, line, lineno) from None
    return text
