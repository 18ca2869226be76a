"""Chapters against human text: do long samples stay alive, and what does keeping them alive cost?

For each model (a run directory with its shards), 5 prompts x 3 seeds x --length characters
per sampling set-up, written together in one engine (a slot per sample; a sample's text does
not depend on the others). Per set-up and model:

  collapsed   windows where one character holds more than 20% of a 200-character window's hanzi
              (no human window does)
  out of band the share of windows outside the human p1-p99 band, per measure (collapse,
              fixation, 4-gram repetition, distinct-2; bands from the model's validation split)
  guard       the share of 500-character windows whose reference perplexity (character 5-gram
              of the training text) is inside the human p5-p95 band
  own NLL     the model's own loss on what it wrote, against its loss on 5,000-token pieces of
              human validation text (share of samples inside the human p5-p95)
  tokens/s    all samples together

Prompts 0-2 with seeds 1-2 are the tuning set; prompts 3-4 and seed 3 are held out and
reported separately. A last table shows which guard separates human text, collapse and salad:
for each of the reference models (5-gram, and the 3-gram of the first probe) and the model's
own NLL, the share of collapsed (`off`) and salad (`salad`: penalties far too strong) windows
outside the human band.

  python bench/chapters.py --model demo=RUN_DIR:DATA_DIR:news --model novels=RUN:DATA:novel ...
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpt2zh.degeneration import COLLAPSE_LIMIT, GUARD, window_starts  # noqa: E402
from gpt2zh.engine import Engine, Request  # noqa: E402
from gpt2zh.sampling import SamplingConfig  # noqa: E402

PROMPTS = {
    "news": ["在新的一年里，", "本报北京１月５日讯", "新华社北京１月１０日电", "今年以来，我省", "记者从有关部门获悉，"],
    "novel": ["第一回　宴桃园豪杰三结义", "话说", "却说宋江", "且说那孙悟空", "林冲道："],
}
SEEDS = (1, 2, 3)
TUNING = {(p, s) for p in range(3) for s in (1, 2)}

# name -> (knob values, lexical detectors on)
OLD = {"repetition_penalty": 1.0, "penalty_window": 64}   # the sampling defaults before this benchmark
SETUPS = {
    "off": ({**OLD, "repetition": "off", "dry_multiplier": 0.0}, False),
    "today": (OLD, False),                   # the defaults before collapse and fixation were watched
    "detect": (OLD, True),                   # + collapse and fixation detected, rollback and focus penalty
    "new": ({}, True),                       # the defaults it chose: rp 1.3 over 128 tokens + detect
    "density": ({**OLD, "density_penalty": 3.0}, True),
    "rp1.2": ({**OLD, "repetition_penalty": 1.2}, True),
    "rp1.2+density": ({**OLD, "repetition_penalty": 1.2, "density_penalty": 1.0}, True),
    "rp1.2w256": ({"repetition_penalty": 1.2, "penalty_window": 256}, True),
    "rp1.3w128": ({"repetition_penalty": 1.3, "penalty_window": 128}, True),
    "rp1.2+presence": ({**OLD, "repetition_penalty": 1.2, "presence_penalty": 0.3}, True),
    "presence": ({**OLD, "presence_penalty": 0.5, "frequency_penalty": 0.05}, True),
    "salad": ({"repetition_penalty": 2.0, "penalty_window": 512, "presence_penalty": 1.5}, True),
}


def config(setup: str, length: int, base: SamplingConfig) -> SamplingConfig:
    knobs, lexical = SETUPS[setup]
    cfg = base.with_knobs(knobs, length=length)
    return replace(cfg, repetition=replace(cfg.repetition, lexical=lexical))


def own_nll(engine: Engine, ids: list[int]) -> float:
    from gpt2zh.evaluate import score_tokens

    lens = np.array([len(p) for p in engine.table.pieces])
    r = score_tokens(engine.model, np.array(ids), engine.n_ctx, engine.n_ctx // 2, 8, lens)
    return r["nll"] / max(r["tokens"], 1)


def human_nll_band(engine: Engine, data_dir: Path, piece: int = 5000) -> tuple[float, float]:
    from gpt2zh.shards import load_tokens

    val = load_tokens(data_dir, "val", verify=False)
    pieces = [val[i:i + piece].tolist() for i in range(0, len(val) - piece + 1, piece)][:40]
    losses = [own_nll(engine, p) for p in pieces]
    return tuple(np.percentile(losses, [5, 95]))


def run_setup(engine: Engine, setup: str, prompts: list[str], length: int, seeds=SEEDS) -> tuple[list, float]:
    cfg = config(setup, length, SamplingConfig())
    reqs = [Request(p, cfg, seed=s, tag=(i, s)) for i, p in enumerate(prompts) for s in seeds]
    engine.reserve(len(reqs))
    t0 = time.perf_counter()
    results = engine.run(reqs)
    seconds = time.perf_counter() - t0
    return results, sum(r["tokens"] for r in results) / seconds


def summarize(results: list[dict]) -> dict:
    win = {}
    collapsed = total_short = 0
    for r in results:
        for name, w in r["measures"]["windows"].items():
            n_out, n = win.get(name, (0, 0))
            win[name] = (n_out + w.get("out", 0), n + len(w["values"]))
        c = r["measures"]["windows"]["collapse"]["values"]
        collapsed += sum(v > COLLAPSE_LIMIT for v in c)
        total_short += len(c)
    return {"collapsed": collapsed, "short_windows": total_short,
            "out_share": {k: round(a / max(b, 1), 4) for k, (a, b) in win.items()},
            "failed": sum(r["status"] not in ("ok",) for r in results),
            "statuses": sorted({r["status"].split(" from ")[0] for r in results})}


def guard_table(engine: Engine, data_dir: Path, runs: dict, band_nll) -> list[str]:
    """Which guard separates human, collapse and salad: share of windows outside the human p5-p95."""
    from gpt2zh.degeneration import shard_texts
    from gpt2zh.reference import CharNgram

    train_text, val_text = shard_texts(data_dir)
    refs = {"5-gram": engine.reference, "3-gram": CharNgram.train([train_text], order=3)}
    rows = []

    def windows(text):
        return [text[i:i + GUARD] for i in window_starts(len(text), GUARD)]

    human = windows(val_text)[:400]
    for name, ref in refs.items():
        h = np.array([ref.perplexity(w) for w in human])
        lo, hi = np.percentile(h, [5, 95])
        cells = []
        for setup in ("off", "salad"):
            ws = [w for r in runs[setup] for w in windows(r["text"])]
            v = np.array([ref.perplexity(w) for w in ws])
            cells.append(f"{((v < lo) | (v > hi)).mean():.0%} (median {np.median(v):.0f})")
        rows.append(f"| reference {name} perplexity | {lo:.0f}–{hi:.0f} | {cells[0]} | {cells[1]} |")
    lo, hi = band_nll
    cells = []
    for setup in ("off", "salad"):
        v = np.array([r["own_nll"] for r in runs[setup]])
        cells.append(f"{((v < lo) | (v > hi)).mean():.0%} of samples (median {np.median(v):.2f})")
    rows.append(f"| the model's own NLL per token | {lo:.2f}–{hi:.2f} | {cells[0]} | {cells[1]} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="NAME=RUN_DIR:DATA_DIR:news|novel")
    ap.add_argument("--setups", default=",".join(SETUPS))
    ap.add_argument("--length", type=int, default=5000)
    ap.add_argument("--json", help="write every sample's summary here")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    setups = args.setups.split(",")
    dump = {}
    for spec in args.model:
        name, rest = spec.split("=", 1)
        run_dir, data_dir, kind = rest.split(":")
        engine = Engine(run_dir, slots=1)
        if engine.calibration is None:
            sys.exit(f"{run_dir}: no calibration (run gpt2zh calibrate --data {data_dir} --model {run_dir})")
        band_nll = human_nll_band(engine, Path(data_dir))
        print(f"\n## {name}: {engine.model_dir} (n_ctx {engine.n_ctx}); own NLL on human 5,000-token pieces "
              f"p5–p95 {band_nll[0]:.2f}–{band_nll[1]:.2f}\n")
        print("| set-up | part | collapsed windows | collapse out | fixation out | 4-gram out | distinct-2 out "
              "| guard inside p5–p95 | own NLL inside | statuses | tokens/s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        runs = {}
        for setup in setups:
            results, tps = run_setup(engine, setup, PROMPTS[kind], args.length)
            for r in results:
                r["own_nll"] = own_nll(engine, engine.encode(PROMPTS[kind][r["sample"][0]] + r["text"]))
            runs[setup] = results
            for part, keep in (("tuning", lambda r: r["sample"] in TUNING),
                               ("held out", lambda r: r["sample"] not in TUNING)):
                rs = [r for r in results if keep(r)]
                s = summarize(rs)
                o = s["out_share"]
                nll_in = np.mean([band_nll[0] <= r["own_nll"] <= band_nll[1] for r in rs])
                print(f"| {setup} | {part} ({len(rs)}) | {s['collapsed']}/{s['short_windows']} | "
                      f"{o.get('collapse', 0):.1%} | {o.get('fixation', 0):.1%} | {o.get('rep4', 0):.1%} | "
                      f"{o.get('distinct2', 0):.1%} | {1 - o.get('guard', 0):.1%} | {nll_in:.0%} | "
                      f"{', '.join(s['statuses'])} | {tps:,.0f} |", flush=True)
            dump.setdefault(name, {})[setup] = [
                {"prompt": r["sample"][0], "seed": r["sample"][1], "status": r["status"], "own_nll": r["own_nll"],
                 "report": r["report"],
                 "out": {k: [w.get("below"), w.get("above"), len(w["values"])] for k, w in r["measures"]["windows"].items()},
                 "head": r["text"][:300]} for r in results]
        if "off" in runs and "salad" in runs:
            print("\n| guard | human band (p5–p95) | collapse (`off`) outside | salad (`salad`) outside |")
            print("|---|---|---|---|")
            for row in guard_table(engine, Path(data_dir), runs, band_nll):
                print(row)
    if args.json:
        Path(args.json).write_text(json.dumps(dump, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
