"""Training throughput: gpt2zh's trainer against the GPT2-Chinese way, same shapes, same process.

Baseline (GPT2-Chinese's train.py): GPT2LMHeadModel with eager attention, fp32, plain
AdamW, the corpus as a Python list of ints, each batch built with a Python loop over
window starts and torch.tensor, loss from `labels=`.
Ours: gpt2zh.train.train (SDPA, bf16 + fused AdamW + torch.compile on GPU, fp32 on CPU,
binary shards in RAM, vectorized gather, background prefetch), checkpointing and
evaluation pushed past the end so that only training is timed.

Reports tokens/s (steady state: the first --warmup steps are not timed), MFU on GPUs,
peak GPU memory, and the share of step time spent waiting for data.
  python bench/train.py --config tiny --steps 60            # CPU
  python bench/train.py --config small --steps 300          # GPU
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from gpt2zh.config import RunConfig  # noqa: E402
from gpt2zh.model import flops_per_token, peak_flops  # noqa: E402


def baseline(tokens: list[int], run: RunConfig, vocab: int, steps: int, warmup: int, device: torch.device) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel

    mc, tc = run.model, run.train
    cfg = GPT2Config(vocab_size=vocab, n_positions=mc.n_positions, n_embd=mc.n_embd, n_layer=mc.n_layer,
                     n_head=mc.n_head, resid_pdrop=mc.dropout, embd_pdrop=mc.dropout, attn_pdrop=mc.dropout,
                     bos_token_id=2, eos_token_id=2)
    torch.manual_seed(0)
    model = GPT2LMHeadModel._from_config(cfg, attn_implementation="eager").to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr)
    n_ctx, bs = mc.n_ctx, tc.batch_size
    starts = list(range(0, len(tokens) - n_ctx, n_ctx // 2))
    import random

    random.seed(0)
    random.shuffle(starts)
    data_time = total = 0.0
    timed = 0
    for step in range(steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t_start = time.perf_counter()
            data_time = 0.0
        t0 = time.perf_counter()
        batch = [tokens[s:s + n_ctx] for s in starts[step * bs:(step + 1) * bs]]
        x = torch.tensor(batch).long().to(device)
        data_time += time.perf_counter() - t0
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if step >= warmup:
            timed += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - t_start
    tps = timed * bs * n_ctx / total
    out = {"tokens_per_s": tps, "data_wait_share": data_time / total, "final_loss": loss.item(),
           "flops_per_token": flops_per_token(model, n_ctx)}
    if device.type == "cuda":
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return out


def ours(data: Path, run: RunConfig, steps: int, warmup: int, device: torch.device) -> dict:
    from gpt2zh.train import TrainJob, train

    out = Path(tempfile.mkdtemp(prefix="gpt2zh-bench-train-"))
    run = run.override([f"max_steps={steps}", f"log_interval={warmup}", f"eval_interval={steps + 1}",
                        f"save_steps={steps + 1}"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    res = train(TrainJob(str(data), str(out), run, progress=False))
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steady = [r for r in logs if "tokens_per_s" in r][1:]  # the first window holds compile and warm-up
    tps = len(steady) * warmup * run.train.batch_size * run.model.n_ctx / sum(
        warmup * run.train.batch_size * run.model.n_ctx / r["tokens_per_s"] for r in steady)
    wait = sum(r["data_wait"] for r in steady) / len(steady)
    out_d = {"tokens_per_s": tps, "data_wait_share": wait, "final_loss": steady[-1]["loss"]}
    if "peak_memory_gb" in res:
        out_d["peak_memory_gb"] = res["peak_memory_gb"]
    return out_d


def main():
    from gpt2zh.prepare import PrepareConfig, prepare
    from gpt2zh.shards import load_tokens, read_manifest

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default=str(ROOT.parent / "shared" / "corpora"))
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()
    args.warmup = max(1, min(args.warmup, args.steps // 3))  # at least two timed log windows remain
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(tempfile.mkdtemp(prefix="gpt2zh-bench-"))
    novels = [str(Path(args.corpora) / n) for n in ("xiyouji.gbk.txt", "sanguoyanyi.gbk.txt", "shuihuzhuan.txt")]
    prepare(PrepareConfig(inputs=novels, out=str(work / "data"), progress=False))
    # the baseline's optimizer (AdamW, a fixed rate) whatever the preset's recipe: throughput of the same maths
    run = RunConfig.from_name(args.config).override(["optimizer=adamw", "cooldown=0"] + args.overrides + ["dropout=0.0"])
    vocab = run.model.padded_vocab(read_manifest(work / "data")["vocab_size"])
    tokens = load_tokens(work / "data").tolist()
    b = baseline(tokens, run, vocab, args.steps, args.warmup, device)
    o = ours(work / "data", run, args.steps, args.warmup, device)
    peak = peak_flops(device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    mc = run.model
    print(f"{name}; config {args.config}: {mc.n_layer} layers x {mc.n_embd}, {mc.n_head} heads, n_ctx {mc.n_ctx}, "
          f"batch {run.train.batch_size}, vocab {vocab}; {args.steps} steps, first {args.warmup} untimed")
    for label, r in (("baseline (GPT2-Chinese way)", b), ("gpt2zh train", o)):
        mfu = f", MFU {r['tokens_per_s'] * b['flops_per_token'] / peak:.3f}" if peak else ""
        mem = f", peak memory {r['peak_memory_gb']:.2f} GB" if "peak_memory_gb" in r else ""
        print(f"{label:<28} {r['tokens_per_s']:>10,.0f} tokens/s{mfu}{mem}, data wait "
              f"{r['data_wait_share']:.2%} of step time, loss {r['final_loss']:.3f}")
    print(f"ratio (ours / baseline): {o['tokens_per_s'] / b['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
