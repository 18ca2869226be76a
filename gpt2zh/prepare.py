"""`gpt2zh prepare`: raw files -> clean text -> vocabulary -> token shards + report."""
from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path


from .corpus import CleanOptions, CorpusError, Document, FileReport, find_inputs, load_corpus, split_document
from .shards import atomic_output_dir, encode_documents, token_dtype, write_shard_set
from .vocab import resolve_vocab, specials_of


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


def _clean_file(args) -> tuple[FileReport, list[Document]]:
    path, opts, replace = args
    return next(load_corpus([path], opts, replace))


def clean_all(cfg: PrepareConfig) -> tuple[list[FileReport], list[Document]]:
    from tqdm import tqdm

    files = find_inputs(cfg.inputs)
    jobs = [(str(p), cfg.clean, cfg.replace_bad_bytes) for p in files]
    bar = tqdm(total=len(jobs), desc="clean", unit="file", disable=not cfg.progress, leave=False)
    results = []
    if cfg.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(cfg.workers, mp_context=get_context("fork")) as pool:
            for r in pool.map(_clean_file, jobs):
                results.append(r)
                bar.update()
    else:
        for job in jobs:
            results.append(_clean_file(job))
            bar.update()
    bar.close()
    reports = [r for r, _ in results]
    docs = [d for _, ds in results for d in ds]
    return reports, docs


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
    """Run the whole stage; return the manifest. Raises CorpusError / ShardError / VocabError."""
    t0 = time.time()
    with atomic_output_dir(cfg.out, cfg.overwrite) as tmp:  # fail early on an unusable --out
        reports, docs = clean_all(cfg)
        if not docs:
            reasons = "; ".join(f"{r.path}: {r.skipped}" for r in reports if r.skipped)
            raise CorpusError(f"nothing usable to prepare ({reasons or 'no text'})")
        train_docs, val_docs = [], []
        for d in docs:
            tr, va = split_document(d.text, cfg.val_fraction)
            if tr:
                train_docs.append(tr)
            if va:
                val_docs.append(va)
        tok = resolve_vocab(cfg.vocab, train_docs, cfg.min_count)
        dtype = token_dtype(tok.get_vocab_size())
        train_ids = encode_documents(tok, train_docs, dtype, cfg.progress, "tokenize train")
        val_ids = encode_documents(tok, val_docs, dtype, cfg.progress, "tokenize val") if val_docs else None
        unk = tok.token_to_id(specials_of(tok).unk)
        n_unk = int((train_ids == unk).sum()) + (int((val_ids == unk).sum()) if val_ids is not None else 0)
        n_tok = len(train_ids) + (len(val_ids) if val_ids is not None else 0)
        report = summarize(reports)
        report["split"] = {
            "val_fraction": cfg.val_fraction,
            "train_chars": sum(map(len, train_docs)),
            "val_chars": sum(map(len, val_docs)),
            "boundary_breaks": sum(len(d.text) for d in docs) - sum(map(len, train_docs)) - sum(map(len, val_docs)),
        }
        report["tokens"] = {"train": len(train_ids), "val": 0 if val_ids is None else len(val_ids),
                            "vocab_size": tok.get_vocab_size(), "unknown": n_unk,
                            "unknown_rate": n_unk / max(1, n_tok)}
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



