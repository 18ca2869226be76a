"""Generation speed: gpt2zh's long-form sampler against transformers' generate() on the
same model, same sampling settings (temperature 0.9, top-k 40, top-p 0.95), same process.

Reports tokens/s (best of --repeat interleaved runs) for one sequence and for a batch,
time to first token, and gpt2zh's
time per token over the first n_ctx tokens and after 10 x n_ctx (generate() cannot go
past n_positions at all: GPT-2's position table ends there).
  python bench/generate.py --config tiny --tokens 500          # CPU
  python bench/generate.py --config small --tokens 500         # GPU
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from gpt2zh.config import RunConfig  # noqa: E402
from gpt2zh.generate import LongFormGenerator, RepetitionConfig, SamplingConfig  # noqa: E402

SAMPLING = dict(temperature=0.9, top_k=40, top_p=0.95)


def make_model(config: str, corpora: Path, work: Path, overrides: list[str]) -> Path:
    """A model of the config's shape with the novels' tokenizer (speed does not depend on the weights)."""
    from gpt2zh.model import build_model
    from gpt2zh.prepare import PrepareConfig, prepare
    from gpt2zh.shards import load_tokenizer
    from gpt2zh.vocab import save_tokenizer, specials_of

    prepare(PrepareConfig(inputs=[str(corpora / "xiyouji.gbk.txt")], out=str(work / "data"), progress=False))
    tok = load_tokenizer(work / "data")
    sp = specials_of(tok)
    run = RunConfig.from_name(config).override(overrides)
    torch.manual_seed(0)
    model = build_model(run.model, tok.get_vocab_size(), tok.token_to_id(sp.eos), tok.token_to_id(sp.pad))
    model.save_pretrained(work / "model")
    save_tokenizer(tok, work / "model")
    return work / "model"


def hf_generate(gen: LongFormGenerator, prompt_ids: list[int], new: int, batch: int) -> tuple[float, float]:
    model = gen.model
    x = torch.tensor([prompt_ids] * batch, device=gen.device)
    kw = dict(do_sample=True, max_new_tokens=new, min_new_tokens=new, pad_token_id=0, **SAMPLING)
    sync = torch.cuda.synchronize if gen.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    model.generate(x, **{**kw, "max_new_tokens": 1, "min_new_tokens": 1})
    sync()
    ttft = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = model.generate(x, **kw)
    sync()
    dt = time.perf_counter() - t0
    assert out.shape[1] == len(prompt_ids) + new
    return batch * new / dt, ttft


def ours(gen: LongFormGenerator, prompt: str, chars: int, batch: int, mode: str) -> dict:
    # "off": no countermeasure at all; "rollback": the defaults, every measure and countermeasure on
    extra = {"repetition_penalty": 1.0} if mode == "off" else {}
    cfg = SamplingConfig(length=chars, seed=0, num_samples=batch, batch_size=batch,
                         repetition=RepetitionConfig(mode=mode), **SAMPLING, **extra)
    s = gen.generate(prompt, cfg)
    return {"tokens_per_s": s[0]["tokens_per_s"], "ttft": s[0]["time_to_first_token_s"], "steps": gen.step_times}


def per_token_ms(stamps: list[float], lo: int, hi: int) -> float:
    return (stamps[hi] - stamps[lo]) / (hi - lo) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default=str(ROOT.parent / "shared" / "corpora"))
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--tokens", type=int, default=200, help="new tokens per sequence for the speed comparison")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repeats; the best of each is reported")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpt2zh-bench-gen-"))
    model_dir = make_model(args.config, Path(args.corpora), work, args.overrides)
    gen = LongFormGenerator(model_dir)
    n_ctx = gen.n_ctx
    prompt = "第一回 灵根育孕源流出 心性修持大道生\n诗曰："
    prompt_ids = gen.table.encode(prompt)
    new = min(args.tokens, n_ctx - len(prompt_ids) - 1)
    ours(gen, prompt, 20, 1, "off")  # warm-up
    hf_generate(gen, prompt_ids, 8, 1)
    name = torch.cuda.get_device_name() if gen.device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    c = gen.model.config
    print(f"{name}; config {args.config}: {c.n_layer} layers x {c.n_embd}, n_ctx {n_ctx}, vocab {c.vocab_size}, "
          f"{gen.dtype}; {new} new tokens per sequence")
    # Interleaved repeats, best of each: a shared 2-core machine is noisy.
    runs = {"hf1": [], "hfb": [], "o1": [], "ob": [], "od": []}
    for _ in range(args.repeat):
        runs["hf1"].append(hf_generate(gen, prompt_ids, new, 1))
        runs["o1"].append(ours(gen, prompt, new, 1, "off"))
        runs["od"].append(ours(gen, prompt, new, 1, "rollback"))
        runs["hfb"].append(hf_generate(gen, prompt_ids, new, args.batch))
        runs["ob"].append(ours(gen, prompt, new, args.batch, "off"))
    hf1, hf_ttft = max(r[0] for r in runs["hf1"]), min(r[1] for r in runs["hf1"])
    hfb = max(r[0] for r in runs["hfb"])
    best = lambda key: max(runs[key], key=lambda r: r["tokens_per_s"])  # noqa: E731
    o1, ob, od = best("o1"), best("ob"), best("od")
    o1 = {**o1, "ttft": min(r["ttft"] for r in runs["o1"])}
    print(f"generate(), 1 sequence:     {hf1:8.1f} tokens/s, first token {hf_ttft * 1e3:.1f} ms")
    print(f"gpt2zh,     1 sequence:     {o1['tokens_per_s']:8.1f} tokens/s, first token {o1['ttft'] * 1e3:.1f} ms "
          f"-> {o1['tokens_per_s'] / hf1:.2f}x")
    print(f"gpt2zh + repetition control: {od['tokens_per_s']:8.1f} tokens/s -> {od['tokens_per_s'] / hf1:.2f}x")
    print(f"generate(), batch {args.batch}:      {hfb:8.1f} tokens/s")
    print(f"gpt2zh,     batch {args.batch}:      {ob['tokens_per_s']:8.1f} tokens/s -> {ob['tokens_per_s'] / hfb:.2f}x")
    long = ours(gen, prompt, 11 * n_ctx, 1, "rollback")["steps"]
    start = per_token_ms(long, 1, min(n_ctx, len(long) - 1))
    late = per_token_ms(long, 10 * n_ctx, min(11 * n_ctx, len(long) - 1))
    print(f"gpt2zh time per token: {start:.2f} ms over the first n_ctx tokens, {late:.2f} ms after 10 x n_ctx "
          f"({late / start:.2f}x); generate() stops at n_positions = {n_ctx}")


if __name__ == "__main__":
    main()
