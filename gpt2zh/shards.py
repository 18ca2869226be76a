"""Binary token shards: writing, verifying, loading into one in-RAM array, and
importing GPT2-Chinese's text shards.

A shard set is a directory:
    train_000.bin ... train_099.bin   raw little-endian token ids (uint16 or uint32)
    val.bin                           the validation tokens (absent with --val-fraction 0)
    tokenizer.json, tokenizer_config.json
    manifest.json                     format, dtype, tokenizer hash, per-shard counts and sha256
    report.json                       the cleaning report
Raw arrays with the facts in the manifest (as nanoGPT's .bin files): loading is one
readinto() per shard into a preallocated array, 2 bytes of RAM per token for uint16.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from tokenizers import Tokenizer

from .vocab import specials_of, tokenizer_hash

FORMAT_VERSION = 1
CHUNK_CHARS = 1 << 13  # measured: 8 K-character chunks encode ~20% faster than 64 K on 2 cores


class ShardError(Exception):
    """A shard set that is missing, incomplete, or does not match its manifest."""


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


# ----------------------------------------------------------------------------
# Encoding


def _chunks(text: str) -> Iterator[str]:
    # Cut long documents, at line breaks where there are any, so that batches spread
    # over both cores and a word-level tokenizer rarely sees a cut inside a word.
    start = 0
    while start < len(text):
        end = start + CHUNK_CHARS
        if end < len(text):
            nl = text.rfind("\n", start, end)
            end = nl + 1 if nl > start else end
        yield text[start:end]
        start = end


def encode_documents(tok: Tokenizer, docs: list[str], dtype: np.dtype, progress: bool = True,
                     desc: str = "tokenize") -> np.ndarray:
    """All documents as one id array, each followed by the end-of-text token.
    Runs in batches through the Rust tokenizer, which uses every core."""
    from .progress import progress_bar

    eos = np.array([tok.token_to_id(specials_of(tok).eos)], dtype=dtype)
    pieces: list[tuple[str, bool]] = []  # (chunk, ends a document)
    for doc in docs:
        chunks = list(_chunks(doc))
        pieces += [(c, i == len(chunks) - 1) for i, c in enumerate(chunks)]
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    out: list[np.ndarray] = []
    batch = 64
    total_chars = sum(len(c) for c, _ in pieces)
    with progress_bar(total=total_chars, desc=desc, unit="char", unit_scale=True, disable=not progress,
                      leave=False) as bar:
        for i in range(0, len(pieces), batch):
            part = pieces[i:i + batch]
            for (_, ends), enc in zip(part, encode([c for c, _ in part], add_special_tokens=False)):
                out.append(np.array(enc.ids, dtype=dtype))
                if ends:
                    out.append(eos)
            bar.update(sum(len(c) for c, _ in part))
    return np.concatenate(out) if out else np.zeros(0, dtype=dtype)


# ----------------------------------------------------------------------------
# Writing


def _sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(arr)).cast("B")).hexdigest()


def holds_shards(path: Path) -> bool:
    return (path / "manifest.json").exists() or any(path.glob("*.bin"))


@contextmanager
def atomic_output_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `out`; on success it replaces `out` in one
    rename, so an interrupted run never leaves a half-written shard set behind."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise ShardError(f"--out {out}: exists and is not a directory")
        if holds_shards(out) and not overwrite:
            raise ShardError(f"--out {out}: already holds shards; pass --overwrite to replace them")
        if any(out.iterdir()) and not holds_shards(out) and not overwrite:
            raise ShardError(f"--out {out}: directory is not empty; choose another or pass --overwrite")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise ShardError(f"--out {out}: cannot write there: {e.strerror}") from None
    try:
        yield tmp
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class HashedFile:
    """Token ids appended to one file, counted and hashed on the way. A write that fails (a
    full disk, a file-size limit) is a ShardError naming the file."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.path, self.dtype = path, np.dtype(dtype)
        self.tokens = 0
        self._hash = hashlib.sha256()
        try:
            self._f = open(path, "wb")
        except OSError as e:
            raise write_error(path, e) from None

    def write(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=self.dtype)
        view = memoryview(ids).cast("B")
        try:
            self._f.write(view)
        except OSError as e:
            raise write_error(self.path, e) from None
        self._hash.update(view)
        self.tokens += len(ids)

    def close(self) -> dict:
        try:
            self._f.close()
        except OSError as e:
            raise write_error(self.path, e) from None
        return {"file": self.path.name, "tokens": self.tokens, "sha256": self._hash.hexdigest()}


def write_error(path: Path, e: OSError) -> ShardError:
    """The error for a write that failed, naming the file (a full disk is the usual cause)."""
    full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or e.errno is None  # (numpy's short write)
    return ShardError(f"{path}: cannot write: {e.strerror or e}" + ("; is the disk full? Free some space or "
                                                                    "write elsewhere, and run again" if full else ""))


def write_array(path: Path, array: np.ndarray) -> None:
    try:
        array.tofile(path)
    except OSError as e:
        raise write_error(path, e) from None


class ShardWriter:
    """`total` token ids streamed into `num_shards` files train_000.bin ... in order, cut where
    np.array_split would cut them (the first total % num_shards one token longer), so that
    memory holds only what is being written."""

    def __init__(self, out: Path, dtype: np.dtype, total: int, num_shards: int):
        num_shards = max(1, min(num_shards, total))
        base, extra = divmod(total, num_shards)
        self.sizes = [base + (i < extra) for i in range(num_shards)]
        self.out, self.dtype = out, np.dtype(dtype)
        self.entries: list[dict] = []
        self._file: HashedFile | None = None

    def write(self, ids: np.ndarray) -> None:
        while len(ids):
            if self._file is None:
                if len(self.entries) == len(self.sizes):
                    raise ValueError(f"ShardWriter: more than the {sum(self.sizes)} tokens announced")
                self._file = HashedFile(self.out / f"train_{len(self.entries):03d}.bin", self.dtype)
            room = self.sizes[len(self.entries)] - self._file.tokens
            self._file.write(ids[:room])
            ids = ids[room:]
            if self._file.tokens == self.sizes[len(self.entries)]:
                self.entries.append(self._file.close())
                self._file = None

    def close(self) -> list[dict]:
        if sum(self.sizes) == 0 and not self.entries:   # no tokens: one empty shard, as array_split gives
            self.entries.append(HashedFile(self.out / "train_000.bin", self.dtype).close())
        if len(self.entries) != len(self.sizes):
            raise ValueError(f"ShardWriter: {sum(e['tokens'] for e in self.entries)} tokens written, "
                             f"{sum(self.sizes)} announced")
        return self.entries


COPY_TOKENS = 1 << 24   # tokens per read when cutting a file of ids into shards


def shard_file(src: Path, out: Path, dtype: np.dtype, num_shards: int) -> list[dict]:
    """Cut a file of token ids into shards, reading it a chunk at a time."""
    dtype = np.dtype(dtype)
    total = src.stat().st_size // dtype.itemsize
    writer = ShardWriter(out, dtype, total, num_shards)
    with open(src, "rb") as f:
        while chunk := f.read(COPY_TOKENS * dtype.itemsize):
            writer.write(np.frombuffer(chunk, dtype=dtype))
    return writer.close()


def write_manifest(out: Path, tok: Tokenizer, dtype: np.dtype, shards: list[dict], val: dict | None,
                   extra: dict) -> dict:
    """tokenizer.json, tokenizer_config.json and manifest.json beside the shards."""
    from .vocab import save_tokenizer

    save_tokenizer(tok, out)
    sp = specials_of(tok)
    manifest = {
        "format_version": FORMAT_VERSION,
        "dtype": np.dtype(dtype).name,
        "vocab_size": tok.get_vocab_size(),
        "tokenizer_sha256": tokenizer_hash(tok),
        "special_tokens": {"eos": sp.eos, "unk": sp.unk, "pad": sp.pad, "newline": sp.newline},
        "train_tokens": sum(e["tokens"] for e in shards),
        "shards": shards,
        "val": val,
        **extra,
    }
    path = out / "manifest.json"
    try:
        # streamed: with an indent, json builds the text from millions of small pieces, and
        # json.dumps holds them all at once (17 MB for a manifest of 6 MB: the peak of a run)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(manifest, f, ensure_ascii=False, indent=1)
    except OSError as e:
        raise write_error(path, e) from None
    return manifest


def write_shard_set(out: Path, tok: Tokenizer, train_ids: np.ndarray, val_ids: np.ndarray | None,
                    num_shards: int, extra: dict) -> dict:
    """Write shards, tokenizer and manifest into `out` (normally a temporary directory) from arrays."""
    writer = ShardWriter(out, train_ids.dtype, len(train_ids), num_shards)
    writer.write(train_ids)
    val = None
    if val_ids is not None and len(val_ids):
        f = HashedFile(out / "val.bin", train_ids.dtype)
        f.write(val_ids)
        val = f.close()
    return write_manifest(out, tok, train_ids.dtype, writer.close(), val, extra)


# ----------------------------------------------------------------------------
# Reading


def read_manifest(shard_dir: str | Path) -> dict:
    path = Path(shard_dir) / "manifest.json"
    if not path.exists():
        raise ShardError(f"{shard_dir}: no manifest.json; run `gpt2zh prepare` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}: corrupt manifest ({e.msg})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ShardError(f"{path}: format version {manifest.get('format_version')}, expected {FORMAT_VERSION}")
    return manifest


def _split_entries(manifest: dict, split: str) -> list[dict]:
    return manifest["shards"] if split == "train" else [manifest["val"]] if manifest.get("val") else []


def split_size(manifest: dict, split: str) -> tuple[int, np.dtype]:
    return sum(e["tokens"] for e in _split_entries(manifest, split)), np.dtype(manifest["dtype"])


def load_tokens(shard_dir: str | Path, split: str = "train", verify: bool = True,
                manifest: dict | None = None, into: np.ndarray | None = None) -> np.ndarray:
    """Every shard of `split` ('train' or 'val') in one contiguous array (`into`, when given:
    e.g. a shared-memory mapping), each checked against the manifest's token count and (with
    verify) its sha256."""
    shard_dir = Path(shard_dir)
    manifest = manifest or read_manifest(shard_dir)
    entries = _split_entries(manifest, split)
    n_total, dtype = split_size(manifest, split)
    tokens = into if into is not None else np.empty(n_total, dtype=dtype)
    if tokens.shape != (n_total,) or tokens.dtype != dtype:
        raise ValueError(f"load_tokens: `into` must be {n_total} x {dtype}")
    offsets = np.cumsum([0] + [e["tokens"] for e in entries])

    def read_one(i: int) -> None:
        e, n = entries[i], entries[i]["tokens"]
        path = shard_dir / e["file"]
        view = tokens[offsets[i]:offsets[i] + n]
        try:
            size = path.stat().st_size
            if size != n * dtype.itemsize:
                raise ShardError(f"shard {path}: {size} bytes, manifest says {n} tokens "
                                 f"({n * dtype.itemsize} bytes); the shard set is damaged")
            with open(path, "rb") as f:
                f.readinto(memoryview(view).cast("B"))
        except FileNotFoundError:
            raise ShardError(f"shard {path}: missing (listed in manifest.json)") from None
        if verify and _sha256(view) != e["sha256"]:
            raise ShardError(f"shard {path}: sha256 does not match manifest.json; the shard is corrupted")

    # Reads and sha256 release the GIL: threads spread them over the cores.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for _ in pool.map(read_one, range(len(entries))):
            pass
    return tokens


def shared_tokens(shard_dir: str | Path, split: str, manifest: dict, name: str, first: bool, barrier,
                  verify: bool = True) -> np.ndarray:
    """One copy of a split per machine, for every process on it: the first local process
    reads and verifies the shards into a file in shared memory (/dev/shm: RAM, not disk);
    every process maps it read-only; once all have mapped it, the file's name is removed
    (the memory lives until the last process ends, and a crash leaves nothing behind after
    that). `barrier` must be called by every local process (e.g. accelerator.wait_for_everyone)."""
    n, dtype = split_size(manifest, split)
    if n == 0:
        return np.empty(0, dtype=dtype)
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    path, failed = root / f"{name}-{split}.tokens", root / f"{name}-{split}.error"
    error: BaseException | None = None
    if first:
        try:
            mm = np.lib.format.open_memmap(path.with_suffix(".tmp"), mode="w+", dtype=dtype, shape=(n,))
            load_tokens(shard_dir, split, verify, manifest, into=mm)
            mm.flush()
            del mm
            os.replace(path.with_suffix(".tmp"), path)
        except Exception as e:   # the others must not wait for a file that never comes
            path.with_suffix(".tmp").unlink(missing_ok=True)
            failed.write_text(str(e), encoding="utf-8")
            error = e
    barrier()
    message = failed.read_text(encoding="utf-8") if failed.exists() else None
    barrier()   # everyone has looked
    if message is not None:
        if first:
            failed.unlink(missing_ok=True)
            raise error
        raise ShardError(message)
    tokens = np.load(path, mmap_mode="r")
    barrier()   # everyone has mapped it
    if first:
        path.unlink(missing_ok=True)
    return tokens


def load_tokenizer(shard_dir: str | Path, manifest: dict | None = None) -> Tokenizer:
    shard_dir = Path(shard_dir)
    manifest = manifest or read_manifest(shard_dir)
    tok = Tokenizer.from_file(str(shard_dir / "tokenizer.json"))
    if tokenizer_hash(tok) != manifest["tokenizer_sha256"]:
        raise ShardError(f"{shard_dir}/tokenizer.json does not match the manifest's tokenizer hash")
    return tok


# ----------------------------------------------------------------------------
# GPT2-Chinese migration


def read_gpt2_chinese_shard(path: Path) -> list[int]:
    """The popular loader's way: the whole file parsed into a Python list of ints."""
    with open(path, encoding="utf-8") as f:
        return [int(x) for x in f.read().split()]


def import_gpt2_chinese(tokenized_dir: str | Path, vocab_txt: str | Path, out: str | Path,
                        val_fraction: float = 0.0, overwrite: bool = False) -> dict:
    """Convert GPT2-Chinese's tokenized_train_{i}.txt (+ its vocab.txt) into a shard set.
    One binary shard per text shard; with val_fraction > 0 the last tokens become val.bin."""
    from .vocab import load_vocab_txt

    tokenized_dir = Path(tokenized_dir)
    files = sorted(tokenized_dir.glob("tokenized_train_*.txt"),
                   key=lambda p: int(re.search(r"(\d+)\.txt$", p.name).group(1)))
    if not files:
        raise ShardError(f"{tokenized_dir}: no tokenized_train_*.txt files")
    tok = load_vocab_txt(vocab_txt)
    dtype = token_dtype(tok.get_vocab_size())
    arrays = []
    for p in files:
        text = p.read_text(encoding="utf-8")
        try:
            ids = np.array(text.split(), dtype=np.int64)
        except ValueError:
            raise ShardError(f"{p}: not a GPT2-Chinese token file (non-integer entries)") from None
        if len(ids) and (ids.min() < 0 or ids.max() >= tok.get_vocab_size()):
            raise ShardError(f"{p}: token id {int(ids.max())} outside vocab.txt ({tok.get_vocab_size()} entries)")
        arrays.append(ids.astype(dtype))
    train = np.concatenate(arrays)
    val = None
    if val_fraction > 0:
        cut = int(len(train) * (1 - val_fraction))
        train, val = train[:cut], train[cut:]
    with atomic_output_dir(out, overwrite) as tmp:
        manifest = write_shard_set(tmp, tok, train, val, len(files), {
            "sources": [{"path": str(p), "format": "gpt2-chinese tokenized"} for p in files],
            "imported_from": "GPT2-Chinese",
        })
    return manifest
