"""`gpt2zh prepare`: raw files -> clean text -> vocabulary -> token shards + report.

One straight pipeline, each step handing the next what it needs:

    read + learn   every file's raw documents scanned for corpus-level patterns (boilerplate
                   that recurs across files), in worker processes
    clean + split  every file through the rule pipeline, split 90/10 per document, written
                   to a work directory (memory holds one file at a time), with a signature
    dedup          near-duplicate documents named and dropped; unpunctuated ones flagged
    vocab          from the kept training text (or a given vocabulary)
    encode         character vocabularies through a lookup table, others through the tokenizer
    write          100 shards + val + manifest + report.json + report.html, renamed into place
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .corpus import CleanOptions, CorpusError, FileReport, clean_file, find_inputs, scan_file, split_document
from .clean import learn
from .clean.dedup import Signature, find_duplicates, low_punctuation, signature
from .clean.report import UNFINISHED_WARN, summarize
from .locks import DirLock
from .shards import atomic_output_dir, encode_documents, token_dtype, write_shard_set
from .vocab import build_corpus_char_tokenizer, char_counts_sparse, counts_to_counter, resolve_vocab, specials_of

BATCH_CHARS = 8 << 20     # characters per encoding batch: large enough for both cores, small enough for RAM
MAX_SHARDS = 100_000      # more files than this is a mistake, not a plan
MIN_SHARD_TOKENS = 256    # fewer shards than asked when each would hold less than this


@dataclass
class PrepareConfig:
    inputs: list[str]
    out: str
    vocab: str = "char"          # char | gb2312 | words | path to vocab.txt / tokenizer.json
    min_count: int = 1
    num_shards: int = 100
    val_fraction: float = 0.1
    clean: CleanOptions = field(default_factory=CleanOptions)
    replace_bad_bytes: bool = False
    overwrite: bool = False
    workers: int = min(2, os.cpu_count() or 1)
    progress: bool = True
    report_seed: int = 0         # which drops report.html shows

    def __post_init__(self):
        if not self.inputs:
            raise ValueError("no inputs given")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 1 <= self.num_shards <= MAX_SHARDS:
            raise ValueError(f"num_shards must be between 1 and {MAX_SHARDS:,}, got {self.num_shards}")
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


@dataclass
class DocInfo:
    name: str
    chars: int                  # kept characters (train + val + the break cut at the split)
    train: tuple[int, int]      # [start, end) of its training text in the file's train stream (with its NUL)
    val: tuple[int, int]        # ... and of its validation text in the val stream
    signature: Signature
    counts: tuple | None = None  # (code points, counts) of the training text, for a character vocabulary

    @property
    def train_chars(self) -> int:
        return max(0, self.train[1] - self.train[0] - 1)

    @property
    def val_chars(self) -> int:
        return max(0, self.val[1] - self.val[0] - 1)


@dataclass
class CleanedFile:
    """What a worker sends back: the report, where the clean split documents wait on disk,
    and each document's facts for the corpus-level steps. On disk, per file, two streams of
    code points (train and val): each document's text followed by NUL, uint16 when the file
    has no character beyond the BMP (2 bytes a character, less than the UTF-8 of hanzi)."""

    report: FileReport
    path: Path | None            # work-dir prefix of the streams; None when nothing was kept
    docs: list[DocInfo] = field(default_factory=list)
    dtype: str = "uint16"

    def stream(self, which: int) -> np.ndarray:
        return np.fromfile(f"{self.path}.{'train' if which == 0 else 'val'}", dtype=self.dtype)


# ----------------------------------------------------------------------------
# Workers


def _scan(args):
    path, opts, replace = args
    return scan_file(Path(path), opts, replace)


def _clean(args) -> CleanedFile:
    """Clean and split one input file in a worker; write its documents to the work dir so
    that memory holds one file at a time however large the corpus."""
    index, path, opts, replace, val_fraction, work, learned, char_vocab = args
    report, docs = clean_file(Path(path), opts, replace, learned)
    if not docs:
        return CleanedFile(report, None)
    trains, vals, infos = [], [], []
    t_pos = v_pos = 0
    for d in docs:
        tr, va = split_document(d.text, val_fraction)
        t_len, v_len = (len(tr) + 1 if tr else 0), (len(va) + 1 if va else 0)   # (+1: its NUL)
        trains += [tr] if tr else []
        vals += [va] if va else []
        infos.append(DocInfo(d.source, len(d.text), (t_pos, t_pos + t_len), (v_pos, v_pos + v_len),
                             signature(d.source, d.text), char_counts_sparse([tr]) if char_vocab else None))
        t_pos, v_pos = t_pos + t_len, v_pos + v_len
    out = Path(work) / f"{index:06d}"
    streams = [_code_points(trains), _code_points(vals)]
    dtype = "uint16" if all(int(a.max(initial=0)) < 0x10000 for a in streams) else "uint32"
    for a, suffix in zip(streams, ("train", "val")):
        a.astype(dtype).tofile(f"{out}.{suffix}")
    return CleanedFile(report, out, infos, dtype)


def run_parallel(pool, fn, jobs: list, sizes: list[int], desc: str, progress: bool) -> list:
    """fn over jobs, in `pool` (None: here), largest first so that no worker is left with a
    big file at the end; results in the order of `jobs`."""
    from .progress import progress_bar

    order = sorted(range(len(jobs)), key=lambda i: -sizes[i])
    results: list = [None] * len(jobs)
    with progress_bar(total=len(jobs), desc=desc, unit="file", disable=not progress, leave=False) as bar:
        if pool is not None and len(jobs) > 1:
            chunk = max(1, len(jobs) // (pool._max_workers * 8))
            for i, r in zip(order, pool.map(fn, [jobs[i] for i in order], chunksize=chunk)):
                results[i] = r
                bar.update()
        else:
            for i in order:
                results[i] = fn(jobs[i])
                bar.update()
    return results


@contextmanager
def worker_pool(workers: int, n_files: int):
    """One pool of forked workers for every parallel step (starting one costs ~20 ms)."""
    if workers <= 1 or n_files <= 1:
        yield None
        return
    with ProcessPoolExecutor(min(workers, n_files), mp_context=get_context("fork")) as pool:
        yield pool


# ----------------------------------------------------------------------------
# The steps


def learn_corpus(pool, files: list[Path], sizes: list[int], cfg: PrepareConfig) -> dict | None:
    """What the corpus-level rules learn from every file. A single file learns from itself
    while it is cleaned (None)."""
    if len(files) == 1:
        return None
    scans = run_parallel(pool, _scan, [(str(p), cfg.clean, cfg.replace_bad_bytes) for p in files], sizes,
                         "read", cfg.progress)
    return learn([s for s, _ in scans], sum(n for _, n in scans), cfg.clean)


def clean_all(pool, files: list[Path], sizes: list[int], cfg: PrepareConfig, work: Path,
              learned: dict | None) -> list[CleanedFile]:
    jobs = [(i, str(p), cfg.clean, cfg.replace_bad_bytes, cfg.val_fraction, str(work), learned, cfg.vocab == "char")
            for i, p in enumerate(files)]
    return run_parallel(pool, _clean, jobs, sizes, "clean", cfg.progress)


def dedup(cleaned: list[CleanedFile], keep_duplicates: bool) -> set[tuple[int, int]]:
    """Drop near-duplicate documents (recorded in their file's report); flag documents with
    far less punctuation than the corpus. Returns the (file, document) pairs dropped."""
    where = [(f, d) for f, c in enumerate(cleaned) for d in range(len(c.docs))]
    sigs = [cleaned[f].docs[d].signature for f, d in where]
    dropped = {} if keep_duplicates else find_duplicates(sigs)
    for i, (keep, sim) in dropped.items():
        f, d = where[i]
        doc, kept = cleaned[f].docs[d], cleaned[where[keep][0]].docs[where[keep][1]]
        r = cleaned[f].report
        r.kept_chars -= doc.chars
        r.dropped["duplicate"] += doc.chars
        r.duplicates.append({"doc": doc.name, "duplicate_of": kept.name, "similarity": sim, "chars": doc.chars})
    for i, (rate, corpus) in low_punctuation(sigs, set(dropped)).items():
        f, d = where[i]
        cleaned[f].report.low_punctuation.append({"doc": cleaned[f].docs[d].name, "punctuation_per_hanzi": rate,
                                                  "corpus": corpus})
    gone = {where[i] for i in dropped}
    for f, c in enumerate(cleaned):
        if c.docs and all((f, d) in gone for d in range(len(c.docs))):
            c.report.skipped = "duplicate of another document"
    return gone


def kept_streams(cleaned: list[CleanedFile], dropped: set, which: int):
    """The train (which=0) or val (which=1) code points of every kept document (each
    followed by NUL), one file at a time."""
    for f, c in enumerate(cleaned):
        if c.path is None:
            continue
        stream = c.stream(which)
        spans = [doc.train if which == 0 else doc.val for d, doc in enumerate(c.docs) if (f, d) not in dropped]
        if len(spans) < len(c.docs):
            stream = np.concatenate([stream[a:b] for a, b in spans]) if spans else stream[:0]
        if len(stream):
            yield stream


def stream_texts(stream: np.ndarray) -> list[str]:
    text = stream.astype(np.uint32).tobytes().decode("utf-32-le")
    return text.split("\x00")[:-1]


def char_lookup(tok, dtype) -> np.ndarray | None:
    """A code point -> id table when the tokenizer is a plain character vocabulary (BPE with
    no merges, no normalizer, no pre-tokenizer: ours, gb2312, a vocab.txt); None otherwise.
    Index 0 (NUL, never left in clean text) stands for the end of a document."""
    spec = json.loads(tok.to_str())
    model = spec["model"]
    if (model.get("type") != "BPE" or model.get("merges") or spec.get("normalizer") or spec.get("pre_tokenizer")
            or model.get("fuse_unk") or model.get("byte_fallback") or model.get("continuing_subword_prefix")
            or model.get("end_of_word_suffix") or model.get("dropout")):
        return None
    sp = specials_of(tok)
    lut = np.full(0x110000, tok.token_to_id(sp.unk), dtype=dtype)
    for piece, i in tok.get_vocab().items():
        if len(piece) == 1:
            lut[ord(piece)] = i
    lut[0] = tok.token_to_id(sp.eos)
    return lut


def _code_points(texts: list[str]) -> np.ndarray:
    # each document followed by NUL, the end-of-document mark of char_lookup
    if not texts:
        return np.zeros(0, dtype=np.uint32)
    return np.frombuffer(("\x00".join(texts) + "\x00").encode("utf-32-le"), dtype=np.uint32)


def vocabulary(cfg: PrepareConfig, cleaned: list[CleanedFile], dropped: set):
    if cfg.vocab == "char":
        total = np.zeros(0x110000, dtype=np.int64)  # summed in numpy: thousands of small files stay cheap
        for f, c in enumerate(cleaned):
            for d, doc in enumerate(c.docs):
                if (f, d) not in dropped:
                    cps, n = doc.counts
                    total[cps] += n
        nz = np.flatnonzero(total)
        return build_corpus_char_tokenizer(counts_to_counter(nz, total[nz]), cfg.min_count)
    texts = [t for st in kept_streams(cleaned, dropped, 0) for t in stream_texts(st)] if cfg.vocab == "words" else []
    return resolve_vocab(cfg.vocab, texts, cfg.min_count)


def encode_to_file(tok, cleaned: list[CleanedFile], dropped: set, which: int, dtype, out: Path,
                   progress: bool, desc: str) -> tuple[int, int]:
    """Encode every kept document's train (which=0) or val (which=1) text, each followed by
    the end-of-text token, appending ids to `out`. Returns (tokens, unknown tokens)."""
    lut = char_lookup(tok, dtype)
    unk = tok.token_to_id(specials_of(tok).unk)
    n_tok = n_unk = 0
    batch: list[str] = []
    size = 0
    with open(out, "wb") as f:
        def put(ids: np.ndarray) -> None:
            nonlocal n_tok, n_unk
            ids.tofile(f)
            n_tok += len(ids)
            n_unk += int((ids == unk).sum())

        def flush():
            nonlocal batch, size
            if batch:
                put(encode_documents(tok, batch, dtype, progress, desc))
            batch, size = [], 0

        for stream in kept_streams(cleaned, dropped, which):
            if lut is not None:   # a character vocabulary: one table lookup, no tokenizer
                put(lut[stream])
                continue
            batch += stream_texts(stream)
            size += len(stream)
            if size >= BATCH_CHARS:
                flush()
        flush()
    return n_tok, n_unk


@contextmanager
def terminate_as_interrupt():
    """SIGTERM unwinds like Ctrl-C, so that the temporary directory is removed on the way out."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def shard_count(requested: int, n_train: int) -> tuple[int, str | None]:
    most = max(1, n_train // MIN_SHARD_TOKENS)
    if requested <= most:
        return requested, None
    return most, (f"--num-shards {requested} capped to {most}: {n_train:,} training tokens make shards of at "
                  f"least {MIN_SHARD_TOKENS} tokens")


def prepare(cfg: PrepareConfig) -> dict:
    """Run the whole stage; return the manifest. Raises CorpusError / ShardError / VocabError /
    LockError. Memory holds about one input file (plus the token ids, memory-mapped, when sharding)."""
    from .clean.html_report import write_html_report

    t0 = time.time()
    out = Path(cfg.out)
    files = find_inputs(cfg.inputs)
    with DirLock(out.parent / f".{out.name}.lock", f"--out {out}"), terminate_as_interrupt(), \
            atomic_output_dir(out, cfg.overwrite) as tmp:
        work = tmp / ".work"
        work.mkdir()
        sizes = [p.stat().st_size for p in files]
        with worker_pool(cfg.workers, len(files)) as pool:
            learned = learn_corpus(pool, files, sizes, cfg)
            cleaned = clean_all(pool, files, sizes, cfg, work, learned)
        reports = [c.report for c in cleaned]
        if all(c.path is None for c in cleaned):
            reasons = "; ".join(f"{r.path}: {r.skipped}" for r in reports if r.skipped)
            raise CorpusError(f"nothing usable to prepare ({reasons or 'no text'})")
        dropped = dedup(cleaned, cfg.clean.keep_duplicates)
        tok = vocabulary(cfg, cleaned, dropped)
        dtype = token_dtype(tok.get_vocab_size())
        n_train, unk_train = encode_to_file(tok, cleaned, dropped, 0, dtype, work / "train.ids", cfg.progress,
                                            "tokenize train")
        n_val, unk_val = encode_to_file(tok, cleaned, dropped, 1, dtype, work / "val.ids", cfg.progress,
                                        "tokenize val")
        if n_train == 0:
            raise CorpusError("no training text left after cleaning and deduplication")
        train_ids = np.memmap(work / "train.ids", dtype=dtype, mode="r")
        val_ids = np.fromfile(work / "val.ids", dtype=dtype) if n_val else None
        num_shards, capped = shard_count(cfg.num_shards, n_train)
        if capped:
            print(f"gpt2zh prepare: {capped}", file=sys.stderr)
        kept = [(f, d) for f, c in enumerate(cleaned) for d in range(len(c.docs)) if (f, d) not in dropped]
        report = summarize(reports)
        report["split"] = {
            "val_fraction": cfg.val_fraction,
            "train_chars": sum(cleaned[f].docs[d].train_chars for f, d in kept),
            "val_chars": sum(cleaned[f].docs[d].val_chars for f, d in kept),
            "boundary_breaks": sum(cleaned[f].docs[d].chars - cleaned[f].docs[d].train_chars
                                   - cleaned[f].docs[d].val_chars for f, d in kept),
        }
        report["tokens"] = {"train": n_train, "val": n_val, "vocab_size": tok.get_vocab_size(),
                            "train_unknown": unk_train, "val_unknown": unk_val,
                            # the same figure `gpt2zh eval --data` reports for val.bin
                            "val_unknown_rate": unk_val / n_val if n_val else None}
        report["shards"] = {"requested": cfg.num_shards, "written": num_shards, "capped": capped}
        report["seconds"] = round(time.time() - t0, 3)
        (tmp / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        write_html_report(report, tmp / "report.html", seed=cfg.report_seed)
        manifest = write_shard_set(tmp, tok, train_ids, val_ids, num_shards, {
            "sources": [{"path": r.path, "encoding": r.encoding, "bytes": r.bytes, "documents": r.documents,
                         "skipped": r.skipped} for r in reports],
            "vocab": cfg.vocab,
            "val_fraction": cfg.val_fraction,
            "val_chars": report["split"]["val_chars"],
            "train_chars": report["split"]["train_chars"],
            "cleaning": report,
        })
        del train_ids
        shutil.rmtree(work)
    return manifest


def format_report(manifest: dict) -> str:
    """The human summary printed at the end of `prepare`."""
    rep = manifest["cleaning"]
    lines = [f"{'file':<44} {'enc':<9} {'input':>10} {'kept':>10}  dropped by rule"]
    for f in rep["files"]:
        name = f["path"] if len(f["path"]) <= 44 else "…" + f["path"][-43:]
        drops = ", ".join(f"{k} {v:,}" for k, v in f["dropped"].items() if v) or "-"
        if f["skipped"]:
            drops = f"SKIPPED ({f['skipped']}); " + drops
        lines.append(f"{name:<44} {f['encoding']:<9} {f['input_chars']:>10,} {f['kept_chars']:>10,}  {drops}")
        for d in f["duplicates"]:
            lines.append(f"    duplicate dropped: {d['doc']} ~ {d['duplicate_of']} (similarity {d['similarity']})")
    t = rep["total"]
    lines.append(f"{'total':<44} {'':<9} {t['input_chars']:>10,} {t['kept_chars']:>10,}  "
                 + ", ".join(f"{k} {v:,}" for k, v in t["dropped"].items() if v))
    lines.append("every character accounted for: " + ("yes" if rep["balanced"] else "NO (bug: please report)"))
    flagged = sum(len(f["flagged"]) for f in rep["files"])
    low = [d for f in rep["files"] for d in f["low_punctuation"]]
    if flagged or low:
        lines.append(f"flagged: {flagged} garbage passages dropped"
                     + (f"; {len(low)} documents with little punctuation kept: "
                        + ", ".join(d["doc"] for d in low[:5]) if low else "") + " (see report.html)")
    for f in rep["files"]:
        u = f["unfinished"]
        if f["kept_chars"] and u["seen"] >= 20 and u["seen"] >= UNFINISHED_WARN * u["paragraphs"]:
            lines.append(f"{f['path']}: {u['seen']:,} of {u['paragraphs']:,} paragraphs ({u['seen'] / u['paragraphs']:.1%}) "
                         "stop mid-sentence: text missing from this copy, or line breaks not rejoined "
                         "(examples in report.html)")
    s, tk = rep["split"], rep["tokens"]
    lines.append(f"split: {s['train_chars']:,} train / {s['val_chars']:,} val characters "
                 f"(val fraction {s['val_fraction']}, {s['boundary_breaks']} paragraph breaks at the cuts)")
    rate = tk["val_unknown_rate"]
    lines.append(f"tokens: {tk['train']:,} train in {len(manifest['shards'])} shards, {tk['val']:,} val; "
                 f"vocab {tk['vocab_size']:,} ({manifest['vocab']}), unknown rate on validation tokens "
                 + (f"{rate:.4%}" if rate is not None else "n/a (no validation split)"))
    return "\n".join(lines)


def print_report(manifest: dict, out: str) -> None:
    print(format_report(manifest))
    print(f"wrote {out} (manifest.json, report.json, report.html, tokenizer.json) in "
          f"{manifest['cleaning']['seconds']} s", file=sys.stderr)
