"""`gpt2zh prepare`: raw files -> clean text -> vocabulary -> token shards + report.

One straight pipeline, each step handing the next what it needs, in memory that does not
grow with the corpus (kept per document: ~400 bytes of counts and signature facts, in arrays;
per file: its place in the input and in the work directory's report spill):

    survey         a file larger than 16 MB (a .jsonl: 4 MB) is read in pieces (`decode.survey`): its
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

import gc
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

from .clean import Learner, build_tables, merge_pieces
from .clean.dedup import BINS, FACTS, SignatureTable, facts, find_duplicates, low_punctuation, signature
from .clean.report import DETAILED_FILES, ReportSpill, ReportWriter, SamplePool, unfinished_warning
from .corpus import BAD_LINES, CleanOptions, CorpusError, FileReport, clean_piece, find_inputs, scan_piece, split_document, why_empty
from .decode import Piece, Source, SourceTable, read_whole, survey
from .locks import DirLock
from .shards import (HashedFile, ShardWriter, atomic_output_dir, encode_documents, shard_file, token_dtype,
                     write_array, write_error, write_manifest)
from .vocab import build_corpus_char_tokenizer, char_counts_sparse, counts_to_counter, resolve_vocab, specials_of

BATCH_CHARS = 8 << 20     # characters per encoding batch: large enough for both cores, small enough for RAM
MAX_SHARDS = 100_000      # more files than this is a mistake, not a plan
MIN_SHARD_TOKENS = 256    # fewer shards than asked when each would hold less than this
CHUNK_JOBS = 4            # jobs handed to a worker at a time (see run_parallel)
RENEW_BYTES = 64 << 20    # a cleaning worker is replaced after about this much input (see clean_all)


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


# one row per kept document of a piece: its characters, and where its text lies in the
# piece's train and val streams ([start, end), with its NUL)
SPANS = np.dtype([("chars", "i8"), ("train", "i8", 2), ("val", "i8", 2)])


@dataclass
class CleanedPiece:
    """What a worker sends back for one piece (a whole small file, or a piece of a large one):
    the report, how many documents it kept, and the character counts of its training text (a
    character vocabulary only; the parent adds them up and lets them go). Its documents wait in
    the work directory: two streams of code points (train and val; each document followed by
    NUL, uint16 when the piece has no character beyond the BMP, 2 bytes a character, less than
    the UTF-8 of hanzi); each kept document's facts for the corpus-level steps as rows of two
    small arrays (SPANS, FACTS), read back once every piece is cleaned; and each document's
    minhash and name, read back only for the documents that deduplication compares or names."""

    file: int                    # index of its file in the input list
    report: FileReport
    documents: int = 0
    wide: bool = False           # its streams are uint32
    counts: tuple | None = None


class Cleaned:
    """Every cleaned piece: per piece how many documents it kept and the width of its streams
    (which wait in the work directory under its number); once every piece is in (`close`), per
    document (numbered across the corpus in input order) its SPANS and FACTS rows. While the
    workers clean, this process holds ~17 bytes a piece and nothing per document, so that the
    peak of the whole run (the workers at work) does not grow with the corpus; afterwards ~360
    bytes a document."""

    def __init__(self, work: Path, pieces: int):
        self.work = work
        self.count = np.zeros(pieces, dtype=np.int64)   # documents kept
        self.wide = np.zeros(pieces, dtype=bool)
        self.first = np.zeros(pieces, dtype=np.int64)   # the number of its first document

    def __len__(self) -> int:
        return len(self.count)

    def add(self, p: int, c: CleanedPiece) -> None:
        self.count[p], self.wide[p] = c.documents, c.wide

    def close(self) -> None:
        """Every piece's rows read back, in input order."""
        n = self.count
        self.first = np.cumsum(n) - n
        self.spans, self.facts = np.zeros(int(n.sum()), dtype=SPANS), np.zeros(int(n.sum()), dtype=FACTS)
        for p in np.flatnonzero(n):
            d = self.docs(int(p))
            self.spans[d] = np.fromfile(f"{self.path(int(p))}.spans", dtype=SPANS)
            self.facts[d] = np.fromfile(f"{self.path(int(p))}.facts", dtype=FACTS)

    @property
    def documents(self) -> int:
        return len(self.spans)

    def docs(self, p: int) -> slice:
        return slice(int(self.first[p]), int(self.first[p] + self.count[p]))

    def piece_of(self, i: int) -> int:
        # the last of the pieces whose first document is i or before: pieces that kept nothing
        # share their first with the next, so `right` passes over them
        return int(self.piece_of_all(np.array([i]))[0])

    def piece_of_all(self, docs: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.first, docs, side="right") - 1

    def path(self, p: int) -> str:
        return str(self.work / f"{p:06d}")

    def stream(self, p: int, which: int) -> np.ndarray:
        return np.fromfile(f"{self.path(p)}.{'train' if which == 0 else 'val'}",
                           dtype=np.uint32 if self.wide[p] else np.uint16)

    def minhash(self, i: int) -> np.ndarray:
        p = self.piece_of(i)
        return np.fromfile(f"{self.path(p)}.minhash", dtype=np.uint64, count=BINS,
                           offset=(i - int(self.first[p])) * BINS * 8)

    def names(self, p: int) -> list[str]:
        return json.loads(Path(f"{self.path(p)}.names").read_text(encoding="utf-8"))

    def remove(self) -> None:
        """Every piece's files gone (six a piece: 80,000 files at 4 GB of input take tens of
        seconds to remove, which the report's time should count)."""
        for p in np.flatnonzero(self.count):
            for suffix in ("train", "val", "minhash", "spans", "facts", "names"):
                Path(f"{self.path(int(p))}.{suffix}").unlink(missing_ok=True)

    def kept(self, p: int, dropped: np.ndarray) -> np.ndarray:
        """Which of the piece's documents stay."""
        return ~dropped[self.docs(p)]


def text_chars(spans: np.ndarray, which: str) -> np.ndarray:
    """Characters of each document's train or val text (its NUL not counted)."""
    return np.maximum(0, spans[which][:, 1] - spans[which][:, 0] - 1)


# ----------------------------------------------------------------------------
# Workers


@dataclass(frozen=True)
class Step:
    """What every job of a parallel step shares: handed to the workers once, when they are
    forked (`worker_pool`), instead of pickled into each of 100,000 jobs (the boilerplate
    learned from the corpus may be thousands of lines)."""

    opts: CleanOptions
    replace_bad_bytes: bool = False
    piece_bytes: int = 16 << 20
    val_fraction: float = 0.1
    work: str = ""
    learned: dict | None = None
    char_vocab: bool = False


_STEP: list[Step] = []   # the step running (set before the workers fork; they inherit it)


def _survey(path: str) -> Source:
    step = _STEP[0]
    return survey(Path(path), step.replace_bad_bytes, step.piece_bytes)


def _scan(piece: Piece) -> tuple[dict, int]:
    step = _STEP[0]
    return scan_piece(piece, step.opts, step.replace_bad_bytes)


def _clean(args) -> CleanedPiece:
    """Clean and split one piece in a worker; write its documents to the work dir so that
    memory holds one piece at a time however large the corpus."""
    index, file, piece, first_doc = args
    step = _STEP[0]
    val_fraction, work, char_vocab = step.val_fraction, step.work, step.char_vocab
    report, docs = clean_piece(piece, step.opts, step.replace_bad_bytes, step.learned, first_doc)
    if not docs:
        return CleanedPiece(file, report)
    trains, vals, names = [], [], []
    spans, rows = np.zeros(len(docs), dtype=SPANS), np.zeros(len(docs), dtype=FACTS)
    minhashes = np.zeros((len(docs), BINS), dtype=np.uint64)
    t_pos = v_pos = 0
    for k in range(len(docs)):
        d, docs[k] = docs[k], None   # (its text goes once split: a worker's peak is a few copies of its piece)
        tr, va = split_document(d.text, val_fraction)
        t_len, v_len = (len(tr) + 1 if tr else 0), (len(va) + 1 if va else 0)   # (+1: its NUL)
        trains += [tr] if tr else []
        vals += [va] if va else []
        spans[k] = len(d.text), (t_pos, t_pos + t_len), (v_pos, v_pos + v_len)
        sig = signature(d.source, d.text)
        rows[k] = facts(sig)
        if sig.minhash is not None:
            minhashes[k] = sig.minhash
        names.append(d.source)
        t_pos, v_pos = t_pos + t_len, v_pos + v_len
    del docs
    out = str(Path(work) / f"{index:06d}")
    streams = [_code_points(trains)]
    del trains
    streams.append(_code_points(vals))
    del vals
    counts = None
    if char_vocab:
        n = char_histogram(streams[0])
        n[0] = 0   # the NULs that end documents
        cps = np.flatnonzero(n)
        counts = (cps, n[cps])
    wide = any(a.dtype == np.uint32 for a in streams)
    for a, suffix in zip(streams, ("train", "val")):
        write_array(Path(f"{out}.{suffix}"), a.astype(np.uint32, copy=False) if wide else a)
    write_array(Path(f"{out}.minhash"), minhashes)
    write_array(Path(f"{out}.spans"), spans)
    write_array(Path(f"{out}.facts"), rows)
    names_path = Path(f"{out}.names")
    try:
        names_path.write_text(json.dumps(names, ensure_ascii=False), encoding="utf-8")
    except OSError as e:
        raise write_error(names_path, e) from None
    return CleanedPiece(file, report, len(spans), wide, counts)


def _indexed(args):
    fn, i, job = args
    return i, fn(job)


def run_parallel(pool, fn, job, sizes: np.ndarray, desc: str, progress: bool):
    """(i, fn(job(i))) for every job i < len(sizes), in `pool` (None: here), as they finish;
    the largest are handed out first so that no worker is left with a big one at the end.
    Each job is made as it is handed out: none is held for the whole step."""
    from .progress import progress_bar

    sizes = np.asarray(sizes, dtype=np.int64)
    order = np.argsort(-sizes, kind="stable")
    with progress_bar(total=int(sizes.sum()), desc=desc, unit="B", unit_scale=True, disable=not progress,
                      leave=False) as bar:
        jobs = ((fn, int(i), job(int(i))) for i in order)
        if pool is not None and len(sizes) > 1:
            # A few jobs at a time: a worker sends a chunk's results (reports with their drop
            # samples) in one message that both ends hold whole, so a chunk that grew with the
            # corpus (up to 64) made the memory grow with it (1 GB of .txt files: 123 MB at the
            # peak with 64, 99 MB with 4)
            results = pool.imap_unordered(_indexed, jobs, chunksize=chunk_size(len(sizes), pool._processes))
        else:
            results = map(_indexed, jobs)
        for i, r in results:
            bar.update(int(sizes[i]))
            yield i, r


def chunk_size(n_jobs: int, processes: int) -> int:
    return max(1, min(CHUNK_JOBS, n_jobs // (processes * 16)))


def renew_after(sizes: np.ndarray, workers: int) -> int:
    """How many chunks of jobs a worker cleans before it is replaced: about RENEW_BYTES of input."""
    per_chunk = chunk_size(len(sizes), workers) * max(1.0, float(np.mean(sizes))) if len(sizes) else 1.0
    return max(1, round(RENEW_BYTES / per_chunk))


def _quiet_worker() -> None:
    """A worker ends on SIGTERM by unwinding, without a traceback, and leaves Ctrl-C (sent to
    the whole process group) to the parent, which ends the pool and removes the temporary
    directory. Unwinding, not dying where it stands: a worker waiting for its next job holds
    the pool's queue lock, which the pool's `terminate` takes, so a worker killed there by a
    SIGTERM sent to the whole group (a service manager stopping the job) left prepare waiting
    for that lock forever."""
    signal.signal(signal.SIGTERM, _exit_unwinding)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _exit_unwinding(signum, frame):
    raise SystemExit(128 + signum)


@contextmanager
def worker_pool(workers: int, n_jobs: int, step: Step, renew: int | None = None):
    """A pool of forked workers for one parallel step (starting one costs ~20 ms), or None to
    run it here; either way the jobs find `step` in _STEP. With `renew`, each worker is
    replaced by a fresh fork after that many chunks of jobs."""
    _STEP[:] = [step]
    try:
        if workers <= 1 or n_jobs <= 1:
            yield None
            return
        build_tables()   # once, here: the workers share the pages
        # The workers inherit this process's objects. Frozen, they are left out of every
        # garbage collection: a collection in a worker writes into each object it visits,
        # which copies their pages into that worker and unshares them from this one.
        gc.freeze()
        pool = get_context("fork").Pool(min(workers, n_jobs), initializer=_quiet_worker, maxtasksperchild=renew)
        try:
            yield pool
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
            gc.unfreeze()
    finally:
        _STEP.clear()


# ----------------------------------------------------------------------------
# The steps


def survey_all(files: list[Path], cfg: PrepareConfig) -> SourceTable:
    """Every file's pieces; only files larger than a piece need a pass over their bytes."""
    sizes = [f.stat().st_size for f in files]
    big = [i for i, (f, n) in enumerate(zip(files, sizes)) if not read_whole(f, n, cfg.piece_bytes)]
    surveyed: dict[int, Source] = {}   # (at most one per PIECE_BYTES of input)
    step = Step(cfg.clean, cfg.replace_bad_bytes, cfg.piece_bytes)
    with worker_pool(cfg.workers, len(big) + bool(big), step) as pool:   # (one too: its pass leaves its heap in a worker)
        for k, source in run_parallel(pool, _survey, lambda k: str(files[big[k]]), [sizes[i] for i in big],
                                      "survey", cfg.progress):
            surveyed[big[k]] = source
    return SourceTable(surveyed.pop(i) if i in surveyed else survey(f, cfg.replace_bad_bytes, cfg.piece_bytes)
                       for i, f in enumerate(files))


def learns_while_cleaning(table: SourceTable) -> bool:
    """A corpus of one small file learns from itself while it is cleaned, as a file cleaned alone does."""
    return len(table.pieces) == 1 and table.piece(0).whole


def learn_corpus(pool, table: SourceTable, cfg: PrepareConfig) -> tuple[dict | None, np.ndarray]:
    """(what the corpus-level rules learn from every piece, the number of each piece's first
    document in its file); None when it `learns_while_cleaning`."""
    if learns_while_cleaning(table):
        return None, np.zeros(1, dtype=np.int64)
    file_of = table.pieces["file"]
    learner = Learner(cfg.clean)
    partial: dict[int, list] = {}        # file -> [its scan so far, pieces still to come, documents]
    n_docs = np.zeros(len(file_of), dtype=np.int64)
    for i, (scan, docs) in run_parallel(pool, _scan, table.piece, table.piece_sizes(), "read", cfg.progress):
        f = int(file_of[i])
        n_docs[i] = docs
        mine = partial.setdefault(f, [None, int(table.piece_count[f]), 0])
        mine[0], mine[1], mine[2] = merge_pieces(mine[0], scan), mine[1] - 1, mine[2] + docs
        if mine[1] == 0:   # the file is complete: fold it into the corpus's summary
            learner.add_file(mine[0], mine[2])
            del partial[f]
    # a piece's first document: the documents of the pieces before it in its file
    before = np.cumsum(n_docs) - n_docs
    file_start = np.flatnonzero(np.diff(file_of, prepend=-1) != 0)
    first = before - np.repeat(before[file_start], np.diff(np.append(file_start, len(file_of))))
    return learner.learned(), first


def _learn_with_pool(table: SourceTable, cfg: PrepareConfig) -> tuple[dict | None, np.ndarray]:
    with worker_pool(cfg.workers, len(table.pieces), Step(cfg.clean, cfg.replace_bad_bytes)) as pool:
        return learn_corpus(pool, table, cfg)


def learn_apart(table: SourceTable, cfg: PrepareConfig) -> tuple[dict | None, np.ndarray]:
    """`learn_corpus` in a forked child with workers of its own: the boilerplate table it
    fills (up to its cap, more of it the larger the corpus) would leave its heap behind in
    this process for the rest of the run, fragmented past what malloc_trim can return (16 MB
    more at 4 GB than at 1 GB, measured)."""
    if learns_while_cleaning(table):
        return None, np.zeros(1, dtype=np.int64)
    if cfg.workers > 1:
        build_tables()   # (before the fork: shared by this process, the child and its workers)
    return in_child(_learn_with_pool, (table, cfg), "learning the corpus")


def _survey_inputs(cfg: PrepareConfig) -> SourceTable:
    return survey_all(find_inputs(cfg.inputs), cfg)


def survey_apart(cfg: PrepareConfig) -> SourceTable:
    """Every input found and surveyed in a forked child, only the table sent back: a path, a
    `Source` and a list entry per file (~600 bytes each) would leave holes in this process's
    heap that the rest of the run keeps resident (13,400 files held 4 MB more than 3,400
    while the workers cleaned, measured)."""
    return in_child(_survey_inputs, (cfg,), "surveying the inputs")


def in_child(fn, args: tuple, what: str):
    """fn(*args) in a forked child, its result (or its exception) sent back through a pipe."""
    ctx = get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_send_result, args=(send, fn, args), name="gpt2zh-child")
    gc.freeze()   # (as for a pool of workers: the child's collections leave this process's pages shared)
    child.start()
    send.close()
    try:
        ok, value = recv.recv()
    except EOFError:
        child.join()
        raise RuntimeError(f"gpt2zh prepare: the process {what} ended without a result "
                           f"(exit code {child.exitcode}; out of memory?)") from None
    except BaseException:   # Ctrl-C or SIGTERM here: the child ends its workers and goes too
        child.terminate()
        raise
    finally:
        recv.close()
        child.join()
        gc.unfreeze()
    if not ok:
        raise value
    return value


def _send_result(send, fn, args) -> None:
    try:
        result = (True, fn(*args))
    except BaseException as e:   # the parent raises it (a bad JSONL line names its file and line)
        result = (False, e)
    # its workers are gone: a signal from here on ends it quietly (a KeyboardInterrupt raised
    # while it sends would print a traceback)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        try:
            send.send(result)
        except OSError:   # the parent has stopped listening (interrupted)
            pass
        except Exception:   # an exception that does not pickle: its message, at least
            send.send((False, RuntimeError(f"{type(result[1]).__name__}: {result[1]}")))
    finally:
        send.close()


def clean_all(table: SourceTable, first_docs: np.ndarray, cfg: PrepareConfig, work: Path,
              learned: dict | None, char_counts: np.ndarray | None, samples: SamplePool,
              spill: ReportSpill) -> Cleaned:
    """Every piece cleaned, in a pool forked for it (from this process as it is after
    learning, which ran in a child of its own); the character counts added into
    `char_counts`, the examples of files past DETAILED_FILES moved into `samples`, every
    report into `spill`."""
    file_of = table.pieces["file"]
    step = Step(cfg.clean, cfg.replace_bad_bytes, cfg.piece_bytes, cfg.val_fraction, str(work), learned,
                char_counts is not None)
    cleaned = Cleaned(work, len(file_of))

    def job(i: int) -> tuple:
        return i, int(file_of[i]), table.piece(i), int(first_docs[i])

    # A worker holds more the more it has cleaned (its heap fragmented by pieces of every size,
    # and small leftovers of each): a worker of 4 MB JSONL pieces went from 45 MB to 54 MB over
    # 2 GB of input. Replaced after every RENEW_BYTES of input, it stays near where it started.
    sizes = table.piece_sizes()
    renew = renew_after(sizes, min(cfg.workers, len(sizes)))
    with worker_pool(cfg.workers, len(file_of), step, renew=renew) as pool:
        for i, c in run_parallel(pool, _clean, job, sizes, "clean", cfg.progress):
            if c.counts is not None:
                char_counts[c.counts[0]] += c.counts[1]
            if c.file >= DETAILED_FILES:
                samples.take(c.report)
            spill.put(i, c.report)
            cleaned.add(i, c)
    cleaned.close()
    return cleaned


@dataclass
class Amendment:
    """What deduplication adds to one piece's report once every piece is cleaned."""
    duplicate_chars: int = 0
    duplicates: list = field(default_factory=list)
    low_punctuation: list = field(default_factory=list)

    def apply(self, r: FileReport) -> None:
        r.kept_chars -= self.duplicate_chars
        if self.duplicates:
            r.dropped["duplicate"] += self.duplicate_chars
        r.duplicates += self.duplicates
        r.low_punctuation += self.low_punctuation


def file_reports(table: SourceTable, cleaned: Cleaned, dropped: np.ndarray, spill: ReportSpill,
                 amend: dict[int, Amendment]):
    """One report per input file, in order, one at a time: a small file's is its piece's; a
    large file's pieces' are added up under its name, encoding and size."""
    p = 0
    for f in range(len(table)):
        if f in table.skipped:
            yield FileReport(path=table.path(f), bytes=int(table.size[f]), skipped=table.skipped[f])
            continue
        r, kept, any_docs = None, False, False
        for _ in range(table.piece_count[f]):
            piece_report = spill.get(p)
            if p in amend:
                amend[p].apply(piece_report)
            kept |= bool(cleaned.kept(p, dropped).any())
            any_docs |= bool(cleaned.count[p])
            if r is None:
                r = piece_report
            else:
                r.merge(piece_report)
            p += 1
        if table.encoding(f):   # read in pieces
            r.encoding, r.bytes = table.encoding(f), int(table.size[f])
            if not r.documents:
                r.skipped = "no JSON line holds a document" if r.dropped.get(BAD_LINES) else "empty file"
            elif not any_docs:
                r.skipped = why_empty(r)
        if r.skipped is None and not kept:
            r.skipped = "duplicate of another document"
        yield r


def dedup(cleaned: Cleaned, keep_duplicates: bool) -> tuple[np.ndarray, dict[int, Amendment]]:
    """Near-duplicate documents to drop; documents with far less punctuation than the corpus to
    flag. Returns which documents are dropped (by corpus-wide number) and what each piece's
    report gains."""
    table = SignatureTable(cleaned.facts, cleaned.minhash)
    found = {} if keep_duplicates else find_duplicates(table)
    dropped = np.zeros(len(table), dtype=bool)
    dropped[list(found)] = True
    low = low_punctuation(table, set(found))
    names: dict[int, list[str]] = {}   # of the pieces named below, read once each

    def name(i: int) -> str:
        p = cleaned.piece_of(i)
        if p not in names:
            names[p] = cleaned.names(p)
        return names[p][i - int(cleaned.first[p])]

    amend: dict[int, Amendment] = {}
    for i, (keep, sim) in found.items():
        chars = int(cleaned.spans["chars"][i])
        a = amend.setdefault(cleaned.piece_of(i), Amendment())
        a.duplicate_chars += chars
        a.duplicates.append({"doc": name(i), "duplicate_of": name(keep), "similarity": sim, "chars": chars})
    for i, (rate, corpus) in low.items():
        amend.setdefault(cleaned.piece_of(i), Amendment()).low_punctuation.append(
            {"doc": name(i), "punctuation_per_hanzi": rate, "corpus": corpus})
    return dropped, amend


def kept_streams(cleaned: Cleaned, dropped: np.ndarray, which: int):
    """The train (which=0) or val (which=1) code points of every kept document (each
    followed by NUL), one piece at a time."""
    for p in range(len(cleaned)):
        if not cleaned.count[p]:
            continue
        stream = cleaned.stream(p, which)
        kept = cleaned.kept(p, dropped)
        if not kept.all():
            spans = cleaned.spans[cleaned.docs(p)]["train" if which == 0 else "val"][kept]
            stream = np.concatenate([stream[a:b] for a, b in spans]) if len(spans) else stream[:0]
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
    """The texts' code points, each text followed by NUL (the end-of-document mark of
    char_lookup): uint16 when every character is in the BMP (its UTF-16 is then one unit a
    character: half the memory of UTF-32, and no copy to narrow it), uint32 otherwise."""
    if not texts:
        return np.zeros(0, dtype=np.uint16)
    joined = "\x00".join([*texts, ""])
    units = joined.encode("utf-16-le")
    if len(units) == 2 * len(joined):   # no surrogate pair: nothing beyond the BMP
        return np.frombuffer(units, dtype=np.uint16)
    del units
    return np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)


def char_histogram(stream: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """np.bincount of `stream` a chunk at a time: bincount widens its input to int64 first
    (8 bytes a character, four times a uint16 stream)."""
    n = np.zeros(int(stream.max(initial=0)) + 1, dtype=np.int64)
    for i in range(0, len(stream), chunk):
        part = np.bincount(stream[i:i + chunk])
        n[:len(part)] += part
    return n


def vocabulary(cfg: PrepareConfig, cleaned: Cleaned, dropped: np.ndarray, char_counts: np.ndarray | None):
    if cfg.vocab == "char":
        for p in np.unique(cleaned.piece_of_all(np.flatnonzero(dropped))):   # the duplicates' characters out again
            spans = cleaned.spans[cleaned.docs(p)]
            gone = spans["train"][~cleaned.kept(p, dropped) & (text_chars(spans, "train") > 0)]
            if len(gone):
                stream = cleaned.stream(p, 0)
                for a, b in gone:
                    n = np.bincount(stream[a:b - 1])
                    char_counts[:len(n)] -= n
        nz = np.flatnonzero(char_counts)
        return build_corpus_char_tokenizer(counts_to_counter(nz, char_counts[nz]), cfg.min_count)
    texts = [t for st in kept_streams(cleaned, dropped, 0) for t in stream_texts(st)] if cfg.vocab == "words" else []
    return resolve_vocab(cfg.vocab, texts, cfg.min_count)


def encode_stream(tok, cleaned: Cleaned, dropped: np.ndarray, which: int, dtype, progress: bool, desc: str):
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


def write_train(tok, cleaned: Cleaned, dropped: np.ndarray, dtype, requested: int, work: Path, out: Path,
                progress: bool) -> tuple[list[dict], TokenCount, str | None]:
    """The training ids streamed into shards. With a character vocabulary the number of tokens
    is known before encoding (one per character and per document), so ids go straight into
    the shards; otherwise they go to one file first, then are cut into shards from it."""
    count = TokenCount(tok.token_to_id(specials_of(tok).unk))
    ids = (count(a) for a in encode_stream(tok, cleaned, dropped, 0, dtype, progress, "tokenize train"))
    if char_lookup(tok, dtype) is not None:
        total = int(np.diff(cleaned.spans["train"][~dropped], axis=1).sum())
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


def write_val(tok, cleaned: Cleaned, dropped: np.ndarray, dtype, out: Path,
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
    with DirLock(out.parent / f".{out.name}.lock", f"--out {out}"), terminate_as_interrupt(), \
            atomic_output_dir(out, cfg.overwrite) as tmp:
        work = tmp / ".work"
        work.mkdir()
        char_counts = np.zeros(0x110000, dtype=np.int64) if cfg.vocab == "char" else None
        samples = SamplePool()
        table = survey_apart(cfg)
        clock.lap("survey")
        learned, first_docs = learn_apart(table, cfg)
        clock.lap("read + learn")
        spill = ReportSpill(work / "reports.pickle", len(table.pieces))
        cleaned = clean_all(table, first_docs, cfg, work, learned, char_counts, samples, spill)
        clock.lap("clean + split")
        if not cleaned.documents:
            raise CorpusError(f"nothing usable to prepare ({why_nothing(file_reports(table, cleaned, np.zeros(0, bool), spill, {}))})")
        dropped, amend = dedup(cleaned, cfg.clean.keep_duplicates)
        clock.lap("dedup")
        tok = vocabulary(cfg, cleaned, dropped, char_counts)
        clock.lap("vocab")
        dtype = token_dtype(tok.get_vocab_size())
        shards, train_count, capped = write_train(tok, cleaned, dropped, dtype, cfg.num_shards, work, tmp,
                                                  cfg.progress)
        val, val_count = write_val(tok, cleaned, dropped, dtype, tmp, cfg.progress)
        clock.lap("encode + write")
        cleaned.remove()
        clock.lap("remove work files")
        n_train, n_val = train_count.tokens, val_count.tokens
        if capped:
            print(f"gpt2zh prepare: {capped}", file=sys.stderr)
        split = {"val_fraction": cfg.val_fraction, **split_counts(cleaned, dropped)}
        tokens = {"train": n_train, "val": n_val, "vocab_size": tok.get_vocab_size(),
                  "train_unknown": train_count.unknown, "val_unknown": val_count.unknown,
                  # the same figure `gpt2zh eval --data` reports for val.bin
                  "val_unknown_rate": val_count.unknown / n_val if n_val else None}
        writer = ReportWriter(tmp / "report.json", samples, DETAILED_FILES)
        sources_shown = []
        try:
            for r in file_reports(table, cleaned, dropped, spill, amend):
                writer.add(r)
                if len(sources_shown) < DETAILED_FILES:
                    sources_shown.append({"path": r.path, "encoding": r.encoding, "bytes": r.bytes,
                                          "documents": r.documents, "skipped": r.skipped})
            report = writer.finish({"split": split, "tokens": tokens,
                                    "shards": {"requested": cfg.num_shards, "written": len(shards), "capped": capped},
                                    "seconds": round(time.time() - t0, 3),
                                    "timing": clock.laps})   # seconds per step: where a long run spent its time
        except OSError as e:
            writer.abort()
            raise write_error(tmp / "report.json", e) from None
        spill.close()
        write_html_report(report, tmp / "report.html", seed=cfg.report_seed)
        manifest = write_manifest(tmp, tok, dtype, shards, val, {
            # the first DETAILED_FILES files, as in report["files"]; report.json lists every one
            "sources": sources_shown,
            "vocab": cfg.vocab,
            "val_fraction": cfg.val_fraction,
            "val_chars": split["val_chars"],
            "train_chars": split["train_chars"],
            "cleaning": report,
        })
        shutil.rmtree(work)
    return manifest


def split_counts(cleaned: Cleaned, dropped: np.ndarray) -> dict:
    """Characters of the kept documents in train and val, and the paragraph breaks cut at the split."""
    kept = cleaned.spans[~dropped]
    train, val = int(text_chars(kept, "train").sum()), int(text_chars(kept, "val").sum())
    return {"train_chars": train, "val_chars": val, "boundary_breaks": int(kept["chars"].sum()) - train - val}


def why_nothing(reports, shown: int = 20) -> str:
    """Why no file gave any text: the first `shown` reasons, and how many more."""
    reasons, more = [], 0
    for r in reports:
        if r.skipped:
            if len(reasons) < shown:
                reasons.append(f"{r.path}: {r.skipped}")
            else:
                more += 1
    return "; ".join(reasons) + (f"; and {more:,} more" if more else "") if reasons else "no text"


PRINTED_FILES = 40   # files listed in the printed summary; report.json and report.html list the rest


def format_report(manifest: dict) -> str:
    """The human summary printed at the end of `prepare`."""
    rep = manifest["cleaning"]
    files, later = rep["files"], rep.get("other_files", {})
    count = rep.get("file_count", len(files))
    lines = [f"{'file':<44} {'enc':<9} {'input':>10} {'kept':>10}  dropped by rule"]
    for f in files[:PRINTED_FILES]:
        name = f["path"] if len(f["path"]) <= 44 else "…" + f["path"][-43:]
        drops = ", ".join(f"{k} {v:,}" for k, v in f["dropped"].items() if v) or "-"
        if f["skipped"]:
            drops = f"SKIPPED ({f['skipped']}); " + drops
        lines.append(f"{name:<44} {f['encoding']:<9} {f['input_chars']:>10,} {f['kept_chars']:>10,}  {drops}")
        for d in f["duplicates"]:
            lines.append(f"    duplicate dropped: {d['doc']} ~ {d['duplicate_of']} (similarity {d['similarity']})")
    if count > PRINTED_FILES:
        skipped = sum(1 for f in files[PRINTED_FILES:] if f["skipped"])
        dups = (sum(len(f["duplicates"]) for f in files[PRINTED_FILES:])
                + later.get("counts", {}).get("duplicates", 0))
        lines.append(f"... and {count - PRINTED_FILES:,} more files" + (f" ({dups:,} duplicates dropped)" if dups else "")
                     + (f", {skipped:,} of the next {len(files) - PRINTED_FILES:,} skipped" if skipped else "")
                     + ": every file in report.json, the first " + f"{len(files):,} in report.html")
    t = rep["total"]
    lines.append(f"{'total':<44} {'':<9} {t['input_chars']:>10,} {t['kept_chars']:>10,}  "
                 + ", ".join(f"{k} {v:,}" for k, v in t["dropped"].items() if v))
    lines.append("every character accounted for: " + ("yes" if rep["balanced"] else "NO (bug: please report)"))
    flagged = sum(len(f["flagged"]) for f in files) + len(later.get("flagged", []))
    low = [d for f in files for d in f["low_punctuation"]] + later.get("low_punctuation", [])
    n_low = len(low) - len(later.get("low_punctuation", [])) + later.get("counts", {}).get("low_punctuation", 0)
    if flagged or low:
        lines.append(f"flagged: {flagged} garbage passages dropped"
                     + (f"; {n_low} documents with little punctuation kept: "
                        + ", ".join(d["doc"] for d in low[:5]) if low else "") + " (see report.html)")
    warned = [(f["path"], f["unfinished"]["seen"], f["unfinished"]["paragraphs"]) for f in files
              if unfinished_warning(f["kept_chars"], f["unfinished"])]
    warned += [(f["path"], f["seen"], f["paragraphs"]) for f in later.get("unfinished_files", [])]
    for path, seen, paragraphs in warned[:PRINTED_FILES]:
        lines.append(f"{path}: {seen:,} of {paragraphs:,} paragraphs ({seen / paragraphs:.1%}) stop mid-sentence: "
                     "text missing from this copy, or line breaks not rejoined (examples in report.html)")
    if len(warned) > PRINTED_FILES:
        lines.append(f"... and {len(warned) - PRINTED_FILES:,} more files that stop mid-sentence often (report.json)")
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
