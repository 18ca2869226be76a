"""`gpt2zh prepare`: raw files -> clean text -> vocabulary -> token shards + report.

One straight pipeline, each step handing the next what it needs, in memory that does not
grow with the corpus (what is kept per document is its signature and a few counts):

    survey         a file larger than 16 MB is read in pieces (`decode.survey`): its
                   encoding found by a streaming pass, its pieces cut at line or paragraph breaks
    read + learn   every piece's raw documents scanned for corpus-level patterns (boilerplate
                   that recurs across files), in worker processes, folded file by file
    clean + split  every piece through the rule pipeline, split 90/10 per document, written
                   to a work directory as code points, with a signature and character counts
    dedup          near-duplicate documents named and dropped; unpunctuated ones flagged
    vocab          from the kept training text's counts (or a given vocabulary)
    encode         character vocabularies through a lookup table, others through the tokenizer,
                   streamed into the shards as they fill
    write          shards + val + manifest + report.json + report.html, renamed into place
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .clean import Learner, merge_pieces
from .clean.dedup import Signature, find_duplicates, low_punctuation, signature
from .clean.report import DETAILED_FILES, UNFINISHED_WARN, SamplePool, summarize
from .corpus import CleanOptions, CorpusError, FileReport, clean_piece, find_inputs, scan_piece, split_document, why_empty
from .decode import Piece, Source, read_whole, survey
from .locks import DirLock
from .shards import HashedFile, ShardWriter, atomic_output_dir, encode_documents, shard_file, token_dtype, write_array, write_manifest
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
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    progress: bool = True
    report_seed: int = 0         # which drops report.html shows
    piece_bytes: int = 16 << 20  # a larger file is read and cleaned in pieces of about this size

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
        if self.piece_bytes < 1 << 16:
            raise ValueError(f"piece_bytes must be at least 64 KiB, got {self.piece_bytes}")


@dataclass
class DocInfo:
    name: str
    chars: int                  # kept characters (train + val + the break cut at the split)
    train: tuple[int, int]      # [start, end) of its training text in the piece's train stream (with its NUL)
    val: tuple[int, int]        # ... and of its validation text in the val stream
    signature: Signature

    @property
    def train_chars(self) -> int:
        return max(0, self.train[1] - self.train[0] - 1)

    @property
    def val_chars(self) -> int:
        return max(0, self.val[1] - self.val[0] - 1)


@dataclass
class CleanedPiece:
    """What a worker sends back for one piece (a whole small file, or a piece of a large one):
    the report, where its clean split documents wait on disk, each document's facts for the
    corpus-level steps, and the character counts of its training text (a character vocabulary
    only; the parent adds them up and lets them go). On disk, two streams of code points (train
    and val): each document's text followed by NUL, uint16 when the piece has no character
    beyond the BMP (2 bytes a character, less than the UTF-8 of hanzi)."""

    file: int                    # index of its file in the input list
    report: FileReport
    path: Path | None            # work-dir prefix of the streams; None when nothing was kept
    docs: list[DocInfo] = field(default_factory=list)
    dtype: str = "uint16"
    counts: tuple | None = None

    def stream(self, which: int) -> np.ndarray:
        return np.fromfile(f"{self.path}.{'train' if which == 0 else 'val'}", dtype=self.dtype)


# ----------------------------------------------------------------------------
# Workers


def _survey(args) -> Source:
    path, replace, piece_bytes = args
    return survey(Path(path), replace, piece_bytes)


def _scan(args) -> tuple[dict, int]:
    piece, opts, replace = args
    return scan_piece(piece, opts, replace)


def _clean(args) -> CleanedPiece:
    """Clean and split one piece in a worker; write its documents to the work dir so that
    memory holds one piece at a time however large the corpus."""
    index, file, piece, first_doc, opts, replace, val_fraction, work, learned, char_vocab = args
    report, docs = clean_piece(piece, opts, replace, learned, first_doc)
    if not docs:
        return CleanedPiece(file, report, None)
    trains, vals, infos = [], [], []
    t_pos = v_pos = 0
    for d in docs:
        tr, va = split_document(d.text, val_fraction)
        t_len, v_len = (len(tr) + 1 if tr else 0), (len(va) + 1 if va else 0)   # (+1: its NUL)
        trains += [tr] if tr else []
        vals += [va] if va else []
        infos.append(DocInfo(d.source, len(d.text), (t_pos, t_pos + t_len), (v_pos, v_pos + v_len),
                             signature(d.source, d.text)))
        t_pos, v_pos = t_pos + t_len, v_pos + v_len
    del docs
    out = Path(work) / f"{index:06d}"
    streams = [_code_points(trains), _code_points(vals)]
    counts = None
    if char_vocab:
        n = np.bincount(streams[0])
        n[0] = 0   # the NULs that end documents
        cps = np.flatnonzero(n)
        counts = (cps, n[cps])
    dtype = "uint16" if all(int(a.max(initial=0)) < 0x10000 for a in streams) else "uint32"
    for a, suffix in zip(streams, ("train", "val")):
        write_array(Path(f"{out}.{suffix}"), a.astype(dtype))
    return CleanedPiece(file, report, out, infos, dtype, counts)


def _indexed(args):
    fn, i, job = args
    return i, fn(job)


def run_parallel(pool, fn, jobs: list, sizes: list[int], desc: str, progress: bool, unit: str = "file"):
    """(index, fn(job)) for every job, in `pool` (None: here), as they finish; the largest are
    handed out first so that no worker is left with a big one at the end."""
    from .progress import progress_bar

    order = sorted(range(len(jobs)), key=lambda i: -sizes[i])
    with progress_bar(total=sum(sizes), desc=desc, unit="B", unit_scale=True, disable=not progress,
                      leave=False) as bar:
        if pool is not None and len(jobs) > 1:
            chunk = max(1, min(64, len(jobs) // (pool._processes * 16)))
            results = pool.imap_unordered(_indexed, [(fn, i, jobs[i]) for i in order], chunksize=chunk)
        else:
            results = (_indexed((fn, i, jobs[i])) for i in order)
        for i, r in results:
            bar.update(sizes[i])
            yield i, r


def _quiet_worker() -> None:
    """A worker ends on SIGTERM without a traceback, and leaves Ctrl-C (sent to the whole
    process group) to the parent, which ends the pool and removes the temporary directory."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def worker_pool(workers: int, n_jobs: int):
    """One pool of forked workers for every parallel step (starting one costs ~20 ms)."""
    if workers <= 1 or n_jobs <= 1:
        yield None
        return
    pool = get_context("fork").Pool(min(workers, n_jobs), initializer=_quiet_worker)
    try:
        yield pool
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


# ----------------------------------------------------------------------------
# The steps


def survey_all(pool, files: list[Path], sizes: list[int], cfg: PrepareConfig) -> list[Source]:
    """Every file's pieces; only files larger than a piece need a pass over their bytes."""
    whole = [read_whole(p, n, cfg.piece_bytes) for p, n in zip(files, sizes)]
    sources = [survey(p, cfg.replace_bad_bytes, cfg.piece_bytes) if w else None for p, w in zip(files, whole)]
    big = [i for i, w in enumerate(whole) if not w]
    jobs = [(str(files[i]), cfg.replace_bad_bytes, cfg.piece_bytes) for i in big]
    for k, source in run_parallel(pool, _survey, jobs, [sizes[i] for i in big], "survey", cfg.progress):
        sources[big[k]] = source
    return sources


def piece_list(sources: list[Source]) -> list[tuple[int, Piece]]:
    return [(f, piece) for f, s in enumerate(sources) for piece in s.pieces]


def piece_size(source: Source, piece: Piece) -> int:
    return source.size if piece.whole else piece.end - piece.start


def learn_corpus(pool, sources: list[Source], cfg: PrepareConfig) -> tuple[dict | None, list[int]]:
    """(what the corpus-level rules learn from every piece, the number of each piece's first
    document in its file). A corpus of one small file learns from itself while it is cleaned
    (None), as a file cleaned alone does."""
    pieces = piece_list(sources)
    if len(pieces) == 1 and pieces[0][1].whole:
        return None, [0]
    learner = Learner(cfg.clean)
    partial: dict[int, list] = {}        # file -> [its scan so far, pieces still to come, documents]
    n_docs = [0] * len(pieces)
    jobs = [(piece, cfg.clean, cfg.replace_bad_bytes) for _, piece in pieces]
    sizes = [piece_size(sources[f], piece) for f, piece in pieces]
    for i, (scan, docs) in run_parallel(pool, _scan, jobs, sizes, "read", cfg.progress):
        f = pieces[i][0]
        n_docs[i] = docs
        mine = partial.setdefault(f, [None, len(sources[f].pieces), 0])
        mine[0], mine[1], mine[2] = merge_pieces(mine[0], scan), mine[1] - 1, mine[2] + docs
        if mine[1] == 0:   # the file is complete: fold it into the corpus's summary
            learner.add_file(mine[0], mine[2])
            del partial[f]
    first = [0] * len(pieces)
    for i in range(1, len(pieces)):
        if pieces[i][0] == pieces[i - 1][0]:
            first[i] = first[i - 1] + n_docs[i - 1]
    return learner.learned(), first


def clean_all(pool, sources: list[Source], first_docs: list[int], cfg: PrepareConfig, work: Path,
              learned: dict | None, char_counts: np.ndarray | None, samples: SamplePool) -> list[CleanedPiece]:
    """Every piece cleaned, in input order; the character counts added into `char_counts`, the
    examples of files past DETAILED_FILES moved into `samples`."""
    pieces = piece_list(sources)
    jobs = [(i, f, piece, first_docs[i], cfg.clean, cfg.replace_bad_bytes, cfg.val_fraction, str(work), learned,
             char_counts is not None) for i, (f, piece) in enumerate(pieces)]
    sizes = [piece_size(sources[f], piece) for f, piece in pieces]
    cleaned: list = [None] * len(jobs)
    for i, c in run_parallel(pool, _clean, jobs, sizes, "clean", cfg.progress):
        if c.counts is not None:
            char_counts[c.counts[0]] += c.counts[1]
            c.counts = None
        if c.file >= DETAILED_FILES:
            samples.take(c.report)
        cleaned[i] = c
    return cleaned


def file_reports(sources: list[Source], cleaned: list[CleanedPiece], dropped: set) -> list[FileReport]:
    """One report per input file: a small file's is its piece's; a large file's pieces' are
    added up under its name, encoding and size."""
    reports: list[FileReport | None] = [FileReport(path=s.path, bytes=s.size, skipped=s.skipped) if s.skipped
                                        else None for s in sources]
    kept, any_docs = [False] * len(sources), [False] * len(sources)
    for p, c in enumerate(cleaned):
        kept[c.file] |= any((p, d) not in dropped for d in range(len(c.docs)))
        any_docs[c.file] |= bool(c.docs)
        if reports[c.file] is None:
            reports[c.file] = c.report
        else:
            reports[c.file].merge(c.report)
    for f, (source, r) in enumerate(zip(sources, reports)):
        if source.skipped:
            continue
        if source.encoding:   # read in pieces
            r.encoding, r.bytes = source.encoding, source.size
            if not r.documents:
                r.skipped = "empty file"
            elif not any_docs[f]:
                r.skipped = why_empty(r)
        if r.skipped is None and not kept[f]:
            r.skipped = "duplicate of another document"
    return reports


def dedup(cleaned: list[CleanedPiece], keep_duplicates: bool) -> set[tuple[int, int]]:
    """Drop near-duplicate documents (recorded in their piece's report); flag documents with
    far less punctuation than the corpus. Returns the (piece, document) pairs dropped."""
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
    return {where[i] for i in dropped}


def kept_streams(cleaned: list[CleanedPiece], dropped: set, which: int):
    """The train (which=0) or val (which=1) code points of every kept document (each
    followed by NUL), one piece at a time."""
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


def vocabulary(cfg: PrepareConfig, cleaned: list[CleanedPiece], dropped: set, char_counts: np.ndarray | None):
    if cfg.vocab == "char":
        for f, c in enumerate(cleaned):   # the duplicates' characters out again
            gone = [doc.train for d, doc in enumerate(c.docs) if (f, d) in dropped and doc.train_chars]
            if gone:
                stream = c.stream(0)
                for a, b in gone:
                    n = np.bincount(stream[a:b - 1])
                    char_counts[:len(n)] -= n
        nz = np.flatnonzero(char_counts)
        return build_corpus_char_tokenizer(counts_to_counter(nz, char_counts[nz]), cfg.min_count)
    texts = [t for st in kept_streams(cleaned, dropped, 0) for t in stream_texts(st)] if cfg.vocab == "words" else []
    return resolve_vocab(cfg.vocab, texts, cfg.min_count)


def encode_stream(tok, cleaned: list[CleanedPiece], dropped: set, which: int, dtype, progress: bool, desc: str):
    """Every kept document's train (which=0) or val (which=1) text as token ids, each document
    followed by the end-of-text token: arrays in order, a piece (or a batch) at a time."""
    lut = char_lookup(tok, dtype)
    batch: list[str] = []
    size = 0
    for stream in kept_streams(cleaned, dropped, which):
        if lut is not None:   # a character vocabulary: one table lookup, no tokenizer
            yield lut[stream]
            continue
        batch += stream_texts(stream)
        size += len(stream)
        if size >= BATCH_CHARS:
            yield encode_documents(tok, batch, dtype, progress, desc)
            batch, size = [], 0
    if batch:
        yield encode_documents(tok, batch, dtype, progress, desc)


class TokenCount:
    """Tokens and unknown tokens seen on the way to a file."""

    def __init__(self, unk: int):
        self.unk_id, self.tokens, self.unknown = unk, 0, 0

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        self.tokens += len(ids)
        self.unknown += int(np.count_nonzero(ids == self.unk_id))
        return ids


def write_train(tok, cleaned: list[CleanedPiece], dropped: set, dtype, requested: int, work: Path, out: Path,
                progress: bool) -> tuple[list[dict], TokenCount, str | None]:
    """The training ids streamed into shards. With a character vocabulary the number of tokens
    is known before encoding (one per character and per document), so ids go straight into
    the shards; otherwise they go to one file first, then are cut into shards from it."""
    count = TokenCount(tok.token_to_id(specials_of(tok).unk))
    ids = (count(a) for a in encode_stream(tok, cleaned, dropped, 0, dtype, progress, "tokenize train"))
    if char_lookup(tok, dtype) is not None:
        total = sum(doc.train[1] - doc.train[0] for f, c in enumerate(cleaned) for d, doc in enumerate(c.docs)
                    if (f, d) not in dropped)
        if total == 0:
            raise CorpusError("no training text left after cleaning and deduplication")
        num_shards, capped = shard_count(requested, total)
        writer = ShardWriter(out, dtype, total, num_shards)
        for a in ids:
            writer.write(a)
        return writer.close(), count, capped
    spill = HashedFile(work / "train.ids", dtype)
    for a in ids:
        spill.write(a)
    spill.close()
    if count.tokens == 0:
        raise CorpusError("no training text left after cleaning and deduplication")
    num_shards, capped = shard_count(requested, count.tokens)
    shards = shard_file(work / "train.ids", out, dtype, num_shards)
    (work / "train.ids").unlink()
    return shards, count, capped


def write_val(tok, cleaned: list[CleanedPiece], dropped: set, dtype, out: Path,
              progress: bool) -> tuple[dict | None, TokenCount]:
    count = TokenCount(tok.token_to_id(specials_of(tok).unk))
    f = HashedFile(out / "val.bin", dtype)
    for a in encode_stream(tok, cleaned, dropped, 1, dtype, progress, "tokenize val"):
        f.write(count(a))
    entry = f.close()
    if not count.tokens:
        (out / "val.bin").unlink()
        return None, count
    return entry, count


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


class Laps:
    def __init__(self):
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.laps[step] = round(now - self._t, 3)
        self._t = now


def prepare(cfg: PrepareConfig) -> dict:
    """Run the whole stage; return the manifest. Raises CorpusError / ShardError / VocabError /
    LockError. Memory holds about one piece per worker, and a signature per document."""
    from .clean.html_report import write_html_report

    t0 = time.time()
    clock = Laps()
    out = Path(cfg.out)
    files = find_inputs(cfg.inputs)
    with DirLock(out.parent / f".{out.name}.lock", f"--out {out}"), terminate_as_interrupt(), \
            atomic_output_dir(out, cfg.overwrite) as tmp:
        work = tmp / ".work"
        work.mkdir()
        char_counts = np.zeros(0x110000, dtype=np.int64) if cfg.vocab == "char" else None
        samples = SamplePool()
        sizes = [f.stat().st_size for f in files]
        big = not all(read_whole(f, n, cfg.piece_bytes) for f, n in zip(files, sizes))   # pieces to spread out
        with worker_pool(cfg.workers, len(files) + (cfg.workers if big else 0)) as pool:
            sources = survey_all(pool, files, sizes, cfg)
            clock.lap("survey")
            learned, first_docs = learn_corpus(pool, sources, cfg)
            clock.lap("read + learn")
            cleaned = clean_all(pool, sources, first_docs, cfg, work, learned, char_counts, samples)
            clock.lap("clean + split")
        if all(c.path is None for c in cleaned):
            reports = file_reports(sources, cleaned, set())
            reasons = "; ".join(f"{r.path}: {r.skipped}" for r in reports if r.skipped)
            raise CorpusError(f"nothing usable to prepare ({reasons or 'no text'})")
        dropped = dedup(cleaned, cfg.clean.keep_duplicates)
        clock.lap("dedup")
        reports = file_reports(sources, cleaned, dropped)
        tok = vocabulary(cfg, cleaned, dropped, char_counts)
        clock.lap("vocab")
        dtype = token_dtype(tok.get_vocab_size())
        shards, train_count, capped = write_train(tok, cleaned, dropped, dtype, cfg.num_shards, work, tmp,
                                                  cfg.progress)
        val, val_count = write_val(tok, cleaned, dropped, dtype, tmp, cfg.progress)
        clock.lap("encode + write")
        n_train, n_val = train_count.tokens, val_count.tokens
        if capped:
            print(f"gpt2zh prepare: {capped}", file=sys.stderr)
        kept = [c.docs[d] for f, c in enumerate(cleaned) for d in range(len(c.docs)) if (f, d) not in dropped]
        report = summarize(reports, samples)
        report["split"] = {
            "val_fraction": cfg.val_fraction,
            "train_chars": sum(doc.train_chars for doc in kept),
            "val_chars": sum(doc.val_chars for doc in kept),
            "boundary_breaks": sum(doc.chars - doc.train_chars - doc.val_chars for doc in kept),
        }
        report["tokens"] = {"train": n_train, "val": n_val, "vocab_size": tok.get_vocab_size(),
                            "train_unknown": train_count.unknown, "val_unknown": val_count.unknown,
                            # the same figure `gpt2zh eval --data` reports for val.bin
                            "val_unknown_rate": val_count.unknown / n_val if n_val else None}
        report["shards"] = {"requested": cfg.num_shards, "written": len(shards), "capped": capped}
        report["seconds"] = round(time.time() - t0, 3)
        report["timing"] = clock.laps   # seconds per step: where a long run spent its time
        (tmp / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        write_html_report(report, tmp / "report.html", seed=cfg.report_seed)
        manifest = write_manifest(tmp, tok, dtype, shards, val, {
            "sources": [{"path": r.path, "encoding": r.encoding, "bytes": r.bytes, "documents": r.documents,
                         "skipped": r.skipped} for r in reports],
            "vocab": cfg.vocab,
            "val_fraction": cfg.val_fraction,
            "val_chars": report["split"]["val_chars"],
            "train_chars": report["split"]["train_chars"],
            "cleaning": report,
        })
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
    flagged = sum(len(f["flagged"]) for f in rep["files"]) + len(rep.get("other_files", {}).get("flagged", []))
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
