"""`gpt2zh prepare`: raw files -> clean text -> vocabulary -> token shards + report."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path


from .corpus import CleanOptions, CorpusError, FileReport, find_inputs, load_corpus, split_document
from .shards import atomic_output_dir, encode_documents, token_dtype, write_shard_set
from .vocab import build_corpus_char_tokenizer, char_counts_sparse, counts_to_counter, resolve_vocab, specials_of

BATCH_CHARS = 8 << 20  # characters per tokenizer batch: large enough for both cores, small enough for RAM


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

    def __post_init__(self):
        if not self.inputs:
            raise ValueError("no inputs given")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {self.num_shards}")
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")


@dataclass
class CleanedFile:
    """What a worker sends back: the report, and where the clean split documents wait on disk."""

    report: FileReport
    path: Path | None            # pickled (train_docs, val_docs), None when nothing was kept
    train_chars: int = 0
    val_chars: int = 0
    boundary_breaks: int = 0
    codepoints: object = None    # (code points, counts) of the training text, for a char vocabulary


def _clean_file(args) -> CleanedFile:
    """Clean and split one input file in a worker; write its documents to the work dir so
    that memory holds one file at a time however large the corpus."""
    index, path, opts, replace, val_fraction, work = args
    report, docs = next(load_corpus([path], opts, replace))
    if not docs:
        return CleanedFile(report, None)
    train, val = [], []
    for d in docs:
        tr, va = split_document(d.text, val_fraction)
        train += [tr] if tr else []
        val += [va] if va else []
    out = Path(work) / f"{index:06d}.pkl"
    with open(out, "wb") as f:
        pickle.dump((train, val), f, protocol=pickle.HIGHEST_PROTOCOL)
    kept = sum(len(d.text) for d in docs)
    return CleanedFile(report, out, sum(map(len, train)), sum(map(len, val)),
                       kept - sum(map(len, train)) - sum(map(len, val)), char_counts_sparse(train))


def clean_all(cfg: PrepareConfig, work: Path) -> list[CleanedFile]:
    from tqdm import tqdm

    files = find_inputs(cfg.inputs)
    jobs = [(i, str(p), cfg.clean, cfg.replace_bad_bytes, cfg.val_fraction, str(work)) for i, p in enumerate(files)]
    bar = tqdm(total=len(jobs), desc="clean", unit="file", disable=not cfg.progress, leave=False)
    results = []
    if cfg.workers > 1 and len(jobs) > 1:
        chunk = max(1, len(jobs) // (cfg.workers * 8))
        with ProcessPoolExecutor(cfg.workers, mp_context=get_context("fork")) as pool:
            for r in pool.map(_clean_file, jobs, chunksize=chunk):
                results.append(r)
                bar.update()
    else:
        for job in jobs:
            results.append(_clean_file(job))
            bar.update()
    bar.close()
    return results


def _load_docs(cleaned: list[CleanedFile]):
    for c in cleaned:
        if c.path is not None:
            with open(c.path, "rb") as f:
                yield pickle.load(f)


def _merged_counts(cleaned: list[CleanedFile]) -> Counter:
    import numpy as np

    total = np.zeros(0x110000, dtype=np.int64)  # summed in numpy: 100,000 small files stay cheap
    for c in cleaned:
        if c.codepoints is not None:
            cps, n = c.codepoints
            total[cps] += n
    nz = np.flatnonzero(total)
    return counts_to_counter(nz, total[nz])


def tokenize_to_file(tok, cleaned: list[CleanedFile], which: int, dtype, out: Path, progress: bool,
                     desc: str) -> tuple[int, int]:
    """Encode every file's train (which=0) or val (which=1) documents, in batches of
    several MB, appending ids to `out`. Returns (tokens, unknown tokens)."""
    unk = tok.token_to_id(specials_of(tok).unk)
    n_tok = n_unk = 0
    batch: list[str] = []
    size = 0
    with open(out, "wb") as f:
        def flush():
            nonlocal n_tok, n_unk, batch, size
            if batch:
                ids = encode_documents(tok, batch, dtype, progress, desc)
                ids.tofile(f)
                n_tok += len(ids)
                n_unk += int((ids == unk).sum())
            batch, size = [], 0

        for docs in _load_docs(cleaned):
            batch += docs[which]
            size += sum(map(len, docs[which]))
            if size >= BATCH_CHARS:
                flush()
        flush()
    return n_tok, n_unk


def summarize(reports: list[FileReport]) -> dict:
    total = FileReport(path="(all files)")
    for r in reports:
        total.merge(r)
    return {
        "files": [r.to_dict() for r in reports],
        "total": {k: v for k, v in total.to_dict().items() if k not in ("path", "encoding", "examples")},
        "balanced": all(r.balanced() for r in reports),
    }


def prepare(cfg: PrepareConfig) -> dict:
    """Run the whole stage; return the manifest. Raises CorpusError / ShardError / VocabError.
    Streams through a work directory: clean documents and token ids wait on disk, so memory
    holds about one input file (plus the token ids, memory-mapped, when sharding)."""
    import numpy as np

    t0 = time.time()
    with atomic_output_dir(cfg.out, cfg.overwrite) as tmp:  # fail early on an unusable --out
        work = tmp / ".work"
        work.mkdir()
        cleaned = clean_all(cfg, work)
        reports = [c.report for c in cleaned]
        if all(c.path is None for c in cleaned):
            reasons = "; ".join(f"{r.path}: {r.skipped}" for r in reports if r.skipped)
            raise CorpusError(f"nothing usable to prepare ({reasons or 'no text'})")
        if cfg.vocab == "char":
            tok = build_corpus_char_tokenizer(_merged_counts(cleaned), cfg.min_count)
        else:
            texts = [d for docs in _load_docs(cleaned) for d in docs[0]] if cfg.vocab == "words" else []
            tok = resolve_vocab(cfg.vocab, texts, cfg.min_count)
        dtype = token_dtype(tok.get_vocab_size())
        n_train, unk_train = tokenize_to_file(tok, cleaned, 0, dtype, work / "train.ids", cfg.progress,
                                              "tokenize train")
        n_val, unk_val = tokenize_to_file(tok, cleaned, 1, dtype, work / "val.ids", cfg.progress, "tokenize val")
        train_ids = np.memmap(work / "train.ids", dtype=dtype, mode="r") if n_train else np.zeros(0, dtype)
        val_ids = np.fromfile(work / "val.ids", dtype=dtype) if n_val else None
        report = summarize(reports)
        report["split"] = {
            "val_fraction": cfg.val_fraction,
            "train_chars": sum(c.train_chars for c in cleaned),
            "val_chars": sum(c.val_chars for c in cleaned),
            "boundary_breaks": sum(c.boundary_breaks for c in cleaned),
        }
        n_unk = unk_train + unk_val
        report["tokens"] = {"train": n_train, "val": n_val, "vocab_size": tok.get_vocab_size(), "unknown": n_unk,
                            "unknown_rate": n_unk / max(1, n_train + n_val)}
        report["seconds"] = round(time.time() - t0, 3)
        (tmp / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        manifest = write_shard_set(tmp, tok, train_ids, val_ids, cfg.num_shards, {
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
    t = rep["total"]
    lines.append(f"{'total':<44} {'':<9} {t['input_chars']:>10,} {t['kept_chars']:>10,}  "
                 + ", ".join(f"{k} {v:,}" for k, v in t["dropped"].items() if v))
    lines.append("every character accounted for: " + ("yes" if rep["balanced"] else "NO (bug: please report)"))
    s, tk = rep["split"], rep["tokens"]
    lines.append(f"split: {s['train_chars']:,} train / {s['val_chars']:,} val characters "
                 f"(val fraction {s['val_fraction']}, {s['boundary_breaks']} paragraph breaks at the cuts)")
    lines.append(f"tokens: {tk['train']:,} train in {len(manifest['shards'])} shards, {tk['val']:,} val; "
                 f"vocab {tk['vocab_size']:,} ({manifest['vocab']}), unknown rate {tk['unknown_rate']:.4%}")
    return "\n".join(lines)


def print_report(manifest: dict, out: str) -> None:
    print(format_report(manifest))
    print(f"wrote {out} (manifest.json, report.json, tokenizer.json) in {manifest['cleaning']['seconds']} s",
          file=sys.stderr)



