"""Loading shards into RAM: gpt2zh's binary shards against the popular loader that
parses GPT2-Chinese text shards (tokenized_train_{i}.txt) into one Python list of ints.

Both sets hold the same >= 50 M tokens (the three novels' tokens tiled). Each loader
runs in a fresh child process so that its resident memory can be measured alone;
bytes per token = RSS after the first load - RSS before, over the token count. Times
are the best of the runs (the baseline: 2, ours: 5), files in the page cache.
Then memory per machine with several local processes (as `accelerate launch` starts one per
GPU): 1, 2 and 4 processes each load the training tokens, once as every process for itself
(load_tokens) and once shared (shared_tokens: the first reads and verifies into shared
memory, the others map it). Memory is the sum over the processes of the growth of their
PSS (proportional set size: a shared page counts 1/N in each of N processes), against one
copy of the tokens; start-up is the time until every process holds the tokens.
Then (--ranks) the same on real `gpt2zh train` ranks: `accelerate launch --num_processes 4`
(CPU processes here) trains the tiny preset for a few steps, once on the novels and once on
the tiled shard set; a sampler reads each rank's PSS while they train. Memory beyond the
small run, over one copy of the tokens, is what the ranks hold because the corpus is large:
the shared copy itself, and whatever else grows with it (1.0 means nothing else).
  python bench/load.py [--tokens 50000000] [--procs 1 2 4] [--ranks 4] [--only-ranks]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time, os
sys.path.insert(0, {root!r})
import numpy as np, psutil
from pathlib import Path
proc = psutil.Process()
kind, path = sys.argv[1], Path(sys.argv[2])
if kind != "baseline":
    from gpt2zh.shards import load_tokens
def load():
    if kind == "baseline":
        tokens = []
        for i in range(len(list(path.glob("tokenized_train_*.txt")))):
            with open(path / f"tokenized_train_{{i}}.txt") as f:
                line = f.read().strip()
            tokens.extend(int(x) for x in line.split())
        return tokens
    return load_tokens(path, verify=(kind == "ours-verified"))
before = proc.memory_info().rss
t0 = time.perf_counter()
tokens = load()
times = [time.perf_counter() - t0]
after = proc.memory_info().rss
n = len(tokens)
for _ in range(int(sys.argv[3])):  # further runs: files in the page cache for everyone alike
    del tokens
    t0 = time.perf_counter()
    tokens = load()
    times.append(time.perf_counter() - t0)
print(json.dumps({{"seconds": min(times), "first": times[0], "tokens": n, "bytes_per_token": (after - before) / n}}))
"""


SHARED_CHILD = r"""
import json, sys, time, os
sys.path.insert(0, {root!r})
import numpy as np, psutil
from pathlib import Path
from gpt2zh.shards import load_tokens, read_manifest, shared_tokens
kind, path, rank, barrier_dir, nprocs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])
calls = [0]
def barrier():  # a file barrier between the sibling processes
    calls[0] += 1
    (barrier_dir / f"{{calls[0]}}-{{rank}}").touch()
    while len(list(barrier_dir.glob(f"{{calls[0]}}-*"))) < nprocs:
        time.sleep(0.001)
proc = psutil.Process()
manifest = read_manifest(path)
barrier()
before = proc.memory_full_info().pss
t0 = time.perf_counter()
if kind == "shared":
    tokens = shared_tokens(path, "train", manifest, "gpt2zh-bench", rank == 0, barrier)
else:
    tokens = load_tokens(path, "train", manifest=manifest)
total = int(tokens.sum(dtype=np.int64))  # touch every page, as training does
seconds = time.perf_counter() - t0
barrier()
after = proc.memory_full_info().pss
barrier()
print(json.dumps({{"pss": after - before, "seconds": seconds, "tokens": len(tokens), "bytes": tokens.nbytes}}))
"""


def run_shared(kind: str, path: Path, nprocs: int) -> dict:
    barrier_dir = Path(tempfile.mkdtemp(prefix="gpt2zh-barrier-"))
    procs = [subprocess.Popen([sys.executable, "-c", SHARED_CHILD.format(root=str(ROOT)), kind, str(path), str(r),
                               str(barrier_dir), str(nprocs)], stdout=subprocess.PIPE, text=True)
             for r in range(nprocs)]
    outs = [json.loads(p.communicate()[0]) for p in procs]
    import shutil

    shutil.rmtree(barrier_dir)
    return {"pss": sum(o["pss"] for o in outs), "seconds": max(o["seconds"] for o in outs),
            "bytes": outs[0]["bytes"]}


def run_child(kind: str, path: Path, repeat: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), kind, str(path), str(repeat)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def rank_pss(data: Path, out: Path, nprocs: int, steps: int) -> tuple[int, float]:
    """(largest sum over the ranks of their PSS while training, seconds) for `gpt2zh train`."""
    import os
    import threading

    import psutil

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(nprocs),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "gpt2zh", "train", "--data", str(data), "--out", str(out), "--config", "tiny",
           "--max-steps", str(steps), "--eval-interval", str(steps), "--save-steps", str(steps * 10), "--quiet",
           "--no-compile", "--set", "eval_max_tokens=65536"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    launcher = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, done = [0], threading.Event()

    def sample():
        parent = psutil.Process(launcher.pid)
        while not done.is_set():
            total = 0
            for p in parent.children(recursive=True):
                try:
                    if "gpt2zh" in " ".join(p.cmdline()) and p.pid != launcher.pid:
                        total += p.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            peak[0] = max(peak[0], total)
            done.wait(0.25)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = launcher.communicate()
    done.set()
    t.join()
    if launcher.returncode:
        raise SystemExit(f"gpt2zh train failed: {err[-3000:]}")
    return peak[0], time.perf_counter() - t0


def main():
    import numpy as np

    from gpt2zh.prepare import PrepareConfig, prepare
    from gpt2zh.shards import load_tokenizer, load_tokens, write_shard_set

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default=str(ROOT.parent / "shared" / "corpora"))
    ap.add_argument("--tokens", type=int, default=50_000_000)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--only-shared", action="store_true", help="skip the text-shard baseline")
    ap.add_argument("--ranks", type=int, default=4, help="training processes for the real-ranks measurement")
    ap.add_argument("--rank-steps", type=int, default=20)
    ap.add_argument("--only-ranks", action="store_true", help="only the real-ranks measurement")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpt2zh-bench-load-"))
    novels = [str(Path(args.corpora) / n) for n in ("xiyouji.gbk.txt", "sanguoyanyi.gbk.txt", "shuihuzhuan.txt")]
    prepare(PrepareConfig(inputs=novels, out=str(work / "novels"), progress=False))
    base = load_tokens(work / "novels")
    tokens = np.tile(base, args.tokens // len(base) + 1)[: args.tokens]
    binary = work / "binary"
    binary.mkdir()
    write_shard_set(binary, load_tokenizer(work / "novels"), tokens, None, 100, {})
    text = work / "text"
    text.mkdir()
    if not (args.only_ranks or args.only_shared):
        for i, part in enumerate(np.array_split(tokens, 100)):
            (text / f"tokenized_train_{i}.txt").write_text(" ".join(map(str, part.tolist())))
    # a validation split a tenth of the training tokens, as prepare writes (the novels' tiled)
    from gpt2zh.shards import HashedFile

    val_base = load_tokens(work / "novels", "val")
    f = HashedFile(binary / "val.bin", val_base.dtype)
    f.write(np.tile(val_base, args.tokens // 10 // len(val_base) + 1)[: args.tokens // 10])
    manifest = json.loads((binary / "manifest.json").read_text())
    manifest["val"] = f.close()
    (binary / "manifest.json").write_text(json.dumps(manifest))
    token_bytes = tokens.nbytes + manifest["val"]["tokens"] * tokens.itemsize
    del tokens
    if args.ranks and not args.only_shared:
        small, _ = rank_pss(work / "novels", work / "run-small", args.ranks, args.rank_steps)
        large, sec = rank_pss(binary, work / "run-large", args.ranks, args.rank_steps)
        print(f"{args.ranks} `gpt2zh train` ranks (tiny, {args.rank_steps} steps): peak PSS summed over the ranks "
              f"{small / 1e6:,.0f} MB on the novels, {large / 1e6:,.0f} MB on {args.tokens:,} tokens; beyond the "
              f"small run: {(large - small) / token_bytes:.2f} copies of the tokens (train + val, {token_bytes / 1e6:,.0f} MB)")
    if args.only_ranks:
        shutil.rmtree(work)
        return
    print(f"{args.tokens:,} training tokens; memory = sum of PSS growth over the processes; start-up = until "
          "the last process holds every token")
    print(f"{'processes':>9}  {'each loads (x one copy)':>24}  {'shared (x one copy)':>20}  {'each: s':>8}  "
          f"{'shared: s':>9}")
    for n in args.procs:
        e, sh = run_shared("each", binary, n), run_shared("shared", binary, n)
        print(f"{n:>9}  {e['pss'] / e['bytes']:>24.2f}  {sh['pss'] / sh['bytes']:>20.2f}  {e['seconds']:>8.3f}  "
              f"{sh['seconds']:>9.3f}")
    if args.only_shared:
        shutil.rmtree(work)
        return
    b = run_child("baseline", text, 1)  # two runs
    o = run_child("ours", binary, 4)
    v = run_child("ours-verified", binary, 4)
    print(f"{b['tokens']:,} tokens in 100 shards; best of runs (first run in brackets)")
    print(f"baseline (text shards -> Python list): {b['seconds']:.2f} s ({b['first']:.2f} s), "
          f"{b['bytes_per_token']:.1f} bytes/token")
    for label, r in (("gpt2zh load_tokens, no checksum", o), ("gpt2zh load_tokens + sha256 (as train does)", v)):
        print(f"{label}: {r['seconds']:.3f} s ({r['first']:.3f} s), {r['bytes_per_token']:.2f} bytes/token -> "
              f"{b['seconds'] / r['seconds']:.0f}x faster ({b['first'] / r['first']:.0f}x on first runs)")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
