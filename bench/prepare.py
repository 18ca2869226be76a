"""Prepare throughput, end to end, against a baseline that works the way GPT2-Chinese does.

Baseline (GPT2-Chinese's build_files): read and decode each file, turn line breaks into
[SEP], look every character up in a Python dict, write the ids as space-separated text
into 100 tokenized_train_{i}.txt files. No cleaning at all.
Ours: gpt2zh.prepare.prepare: decode with detection, every cleaning rule, 90/10 split,
a character vocabulary built from the text, tokenization in the Rust tokenizer,
100 binary shards + val + manifest with sha256, the report.

Same process, same files, best of --repeat runs each; prints characters per second and the ratio.
  python bench/prepare.py [--corpora ../shared/corpora] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpt2zh.corpus import decode_bytes  # noqa: E402
from gpt2zh.prepare import PrepareConfig, prepare  # noqa: E402

NOVELS = ["xiyouji.gbk.txt", "sanguoyanyi.gbk.txt", "shuihuzhuan.txt"]


def baseline(files: list[Path], out: Path, num_pieces: int = 100) -> int:
    texts = []
    for f in files:
        text, _, _ = decode_bytes(f.read_bytes(), str(f))  # GPT2-Chinese assumed UTF-8; decoding is needed here
        texts.append(text.replace("\r\n", "\n").replace("\n", " [SEP] "))
    # its vocabulary: every character seen, as a dict
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    for t in texts:
        for ch in t:
            vocab.setdefault(ch, len(vocab))
    single = "".join(texts)
    n_chars = sum(len(t) for t in texts)
    step = len(single) // num_pieces + 1
    for i in range(num_pieces):
        piece = single[i * step:(i + 1) * step]
        ids = [vocab.get(ch, 1) for ch in piece]  # the per-character Python lookup
        with open(out / f"tokenized_train_{i}.txt", "w") as f:
            f.write(" ".join(str(x) for x in ids))
    return n_chars


def ours(files: list[Path], out: Path) -> int:
    m = prepare(PrepareConfig(inputs=[str(f) for f in files], out=str(out), overwrite=True, progress=False))
    return m["cleaning"]["total"]["input_chars"]


def best_of(fn, files, repeat):
    times = []
    for _ in range(repeat):
        tmp = Path(tempfile.mkdtemp())
        t0 = time.perf_counter()
        n = fn(files, tmp / "out" if fn is ours else tmp)
        times.append(time.perf_counter() - t0)
        shutil.rmtree(tmp)
    return n, min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default=str(Path(__file__).resolve().parents[2] / "shared" / "corpora"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    files = [Path(args.corpora) / n for n in NOVELS]
    ours(files, Path(tempfile.mkdtemp()) / "warm")  # imports and first-call costs out of the timing
    nb, tb = best_of(baseline, files, args.repeat)
    no, to = best_of(ours, files, args.repeat)
    print(f"input: {len(files)} novels, {no:,} characters; {os.cpu_count()} CPUs")
    print(f"baseline (GPT2-Chinese way, no cleaning): {tb:.3f} s = {nb / tb / 1e6:.2f} M chars/s")
    print(f"gpt2zh prepare (clean + vocab + shards):  {to:.3f} s = {no / to / 1e6:.2f} M chars/s")
    print(f"ratio (ours / baseline throughput): {(no / to) / (nb / tb):.2f}x")


if __name__ == "__main__":
    main()
