"""`gpt2zh prepare` at scale: time and peak memory of the whole process tree on large corpora
that do not repeat.

The corpus is generated from the three shared novels: each document is 100,000 characters of
their paragraphs in a random order, every hanzi enciphered by a substitution of its own
(seeded per document: the novels' hanzi ranked by frequency, shuffled within bands of 32
ranks), so that no line recurs and no document deduplicates against another, while paragraph
lengths, punctuation and the frequency profile stay those of real prose (a common character
stays common: a cipher over all hanzi alike reads as garbage to the cleaning rules). Two layouts of the same documents:
    jsonl   one file, {"text": ...} per line (the usual shape of a scraped corpus)
    txt     one .txt file per document, in folders of 1,000
Each size runs `python -m gpt2zh prepare` in a child process; a sampler reads the PSS and
RSS of the process and all its children every 0.2 s (PSS counts a page shared by forked
workers once; RSS counts it in each), the parent's own PSS and the largest of one child (a
worker, or the child that learns the corpus); the step of prepare running
at the peak is read from report.json's timing. Throughput is input bytes per second of wall
time.
  python bench/scale.py [--sizes 0.25 1 4] [--layouts jsonl txt] [--workers 2] [--work DIR --keep]
                        [--trace DIR]   (every memory sample of each run, as CSV)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOVELS = ["xiyouji.gbk.txt", "sanguoyanyi.gbk.txt", "shuihuzhuan.txt"]
DOC_CHARS = 100_000
BAND = 32


def novel_paragraphs(corpora: Path) -> list[np.ndarray]:
    from gpt2zh.decode import read_text_file

    paras = []
    for name in NOVELS:
        for p in read_text_file(corpora / name).split("\n"):
            p = p.strip()
            if len(p) >= 10:
                paras.append(np.frombuffer(p.encode("utf-32-le"), dtype=np.uint32))
    return paras


class Generator:
    """Documents of enciphered novel paragraphs, the same ones for every layout and seed."""

    def __init__(self, corpora: Path, seed: int = 0):
        self.paras = novel_paragraphs(corpora)
        allc = np.concatenate(self.paras)
        hanzi, counts = np.unique(allc[(allc >= 0x4E00) & (allc <= 0x9FFF)], return_counts=True)
        self.ranked = hanzi[np.argsort(-counts, kind="stable")]
        self.seed = seed

    def document(self, i: int) -> str:
        rng = np.random.default_rng((self.seed, i))
        lut = np.arange(0x10000, dtype=np.uint32)
        for b in range(0, len(self.ranked), BAND):
            band = self.ranked[b:b + BAND]
            lut[band] = rng.permutation(band)
        out, n = [], 0
        newline = np.array([10], dtype=np.uint32)
        while n < DOC_CHARS:
            p = self.paras[rng.integers(len(self.paras))]
            out += [lut[p], newline]
            n += len(p) + 1
        return np.concatenate(out).tobytes().decode("utf-32-le")

    def write(self, layout: str, dest: Path, n_bytes: int) -> int:
        """Documents until `n_bytes` of UTF-8 are written; returns the bytes written."""
        dest.mkdir(parents=True, exist_ok=True)
        written, i = 0, 0
        jsonl = open(dest / "corpus.jsonl", "w", encoding="utf-8") if layout == "jsonl" else None
        try:
            while written < n_bytes:
                doc = self.document(i)
                if jsonl is not None:
                    line = json.dumps({"text": doc}, ensure_ascii=False) + "\n"
                    jsonl.write(line)
                    written += len(line.encode("utf-8"))
                else:
                    folder = dest / f"{i // 1000:04d}"
                    folder.mkdir(exist_ok=True)
                    data = doc.encode("utf-8")
                    (folder / f"{i:07d}.txt").write_bytes(data)
                    written += len(data)
                i += 1
        finally:
            if jsonl is not None:
                jsonl.close()
        return written


def tree_memory(proc) -> tuple[int, int, int, list[int]]:
    """(PSS, RSS) summed over a process and its children, the process's own PSS, and the PSS
    of each of its children (workers, or the child that learns the corpus)."""
    import psutil

    pss = rss = own = 0
    children = []
    try:
        tree = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:   # it has just ended: the sampler stops on the next turn
        return 0, 0, 0, []
    for p in tree:
        try:
            m = p.memory_full_info()
            pss, rss = pss + m.pss, rss + m.rss
            if p is proc:
                own = m.pss
            else:
                children.append(m.pss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return pss, rss, own, children


def run_prepare(inputs: Path, out: Path, workers: int, extra: list[str], trace: Path | None = None) -> dict:
    """Time and peak memory of one `prepare`; with `trace`, every sample of the tree's memory
    written there as CSV (seconds, tree PSS, parent PSS, each child's PSS, in MB)."""
    import psutil

    cmd = [sys.executable, "-m", "gpt2zh", "prepare", str(inputs), "--out", str(out), "--overwrite", "--quiet",
           "--workers", str(workers), *extra]
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc = psutil.Process(child.pid)
    peak = {"pss": 0, "rss": 0, "at": 0.0, "parent_pss": 0, "worker_pss": 0}
    done = threading.Event()
    samples = []

    def sample():
        while not done.is_set():
            pss, rss, own, children = tree_memory(proc)
            now = time.perf_counter() - t0
            if pss > peak["pss"]:
                peak.update(pss=pss, at=now)
            peak["rss"], peak["parent_pss"] = max(peak["rss"], rss), max(peak["parent_pss"], own)
            peak["worker_pss"] = max([peak["worker_pss"], *children])
            if trace is not None and pss:
                samples.append((now, pss, own, *sorted(children, reverse=True)))
            done.wait(0.2)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = child.communicate()
    seconds = time.perf_counter() - t0
    done.set()
    t.join()
    if child.returncode:
        raise SystemExit(f"prepare failed ({child.returncode}): {err[-2000:]}")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    if trace is not None:
        trace.write_text("".join(",".join(f"{x / 1e6:.1f}" if k else f"{x:.2f}" for k, x in enumerate(row)) + "\n"
                                 for row in samples))
    return {"seconds": seconds, "peak_pss": peak["pss"], "peak_rss": peak["rss"], "parent_pss": peak["parent_pss"],
            "worker_pss": peak["worker_pss"],
            "peak_step": step_at(peak["at"] - (seconds - report["seconds"]), report["timing"])}


def step_at(t: float, laps: dict[str, float]) -> str:
    """The step of prepare (report.json's timing) running `t` seconds after prepare began
    (the child's start-up before it is counted as the first step; what follows the last as
    "report")."""
    end = 0.0
    for step, s in laps.items():
        end += s
        if t <= end:
            return step
    return "report"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default=os.environ.get("GPT2ZH_CORPORA", str(ROOT.parent / "shared" / "corpora")))
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1, 4], help="input sizes in GB (10^9 bytes)")
    ap.add_argument("--layouts", nargs="+", default=["jsonl", "txt"], choices=["jsonl", "txt"])
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--work", default=None, help="where corpora and outputs go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated corpora")
    ap.add_argument("--prepare-args", default="", help="extra arguments for prepare, e.g. '--vocab gb2312'")
    ap.add_argument("--trace", default=None, help="a folder for each run's memory samples (CSV: seconds, tree, "
                                                   "parent and each child's PSS in MB)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="gpt2zh-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    gen = Generator(Path(args.corpora))
    import psutil

    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"{DOC_CHARS:,}-character documents")
    print(f"{'layout':<6} {'GB':>6} {'workers':>7} {'seconds':>8} {'MB/s':>6} {'s/GB':>6} "
          f"{'peak PSS MB':>11} {'peak RSS MB':>11} {'parent PSS MB':>13} {'worker PSS MB':>13}  peak during")
    for size in args.sizes:
        for layout in args.layouts:
            corpus = work / f"{layout}-{size:g}"
            if not corpus.exists():
                n = gen.write(layout, corpus, int(size * 1e9))
            else:
                n = sum(f.stat().st_size for f in corpus.rglob("*") if f.is_file())
            for w in args.workers:
                out = work / "out"
                trace = Path(args.trace) / f"{layout}-{size:g}-w{w}.csv" if args.trace else None
                if trace is not None:
                    trace.parent.mkdir(parents=True, exist_ok=True)
                r = run_prepare(corpus, out, w, args.prepare_args.split(), trace)
                mbps = n / 1e6 / r["seconds"]
                print(f"{layout:<6} {n / 1e9:>6.2f} {w:>7} {r['seconds']:>8.1f} {mbps:>6.1f} "
                      f"{r['seconds'] / (n / 1e9):>6.0f} {r['peak_pss'] / 1e6:>11.0f} {r['peak_rss'] / 1e6:>11.0f} "
                      f"{r['parent_pss'] / 1e6:>13.0f} {r['worker_pss'] / 1e6:>13.0f}  {r['peak_step']}",
                      flush=True)
                shutil.rmtree(out, ignore_errors=True)
            if not args.keep:
                shutil.rmtree(corpus)
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
