"""Training recipes on the three shared novels, same data, seed and data order (issue 16).

Part 1, recipes at a fixed number of steps (tiny shape 4 x 256, n_ctx 128, batch 16, lr 1e-3
after 50 warm-up steps): the notes' fixed-rate AdamW against + a cool-down, Muon + a cool-down
and Muon at a fixed rate. For each: the final validation loss (all validation tokens), the
steps it took to reach the fixed-rate recipe's final loss (interpolated between evaluations),
and the time per step.

Part 2, a grid of shapes x learning rates under one time budget each (Muon + cool-down, the
winner of part 1 unless --grid-optimizer says otherwise), against `train --auto`'s single pick
under the same budget: the best validation loss of each.

  python bench/recipes.py                          # both parts, 300 steps, a 15-minute grid
  python bench/recipes.py --parts 1 --steps 300
  python bench/recipes.py --parts 1 --recipes 2 --repeat 2   # fixed, Muon, Muon, fixed: drift cancels
  python bench/recipes.py --parts 2 --budget 3     # a shorter grid (minutes per run)
  taskset -c 0 python bench/recipes.py --parts 2 --threads 1 --cells 2x128-0.001 baseline --json a.json &
  taskset -c 1 python bench/recipes.py --parts 2 --threads 1 --cells 2x128-0.003 auto --json b.json; wait
  python bench/recipes.py --merge a.json b.json   # two lanes side by side, one core each
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOVELS = ["xiyouji.gbk.txt", "sanguoyanyi.gbk.txt", "shuihuzhuan.txt"]
RECIPES = {
    "fixed (AdamW, the notes)": ["optimizer=adamw", "cooldown=0"],
    "AdamW + cool-down 25%": ["optimizer=adamw", "cooldown=0.25"],
    "Muon + cool-down 25%": ["optimizer=muon", "cooldown=0.25"],
    "Muon, fixed": ["optimizer=muon", "cooldown=0"],
    "Muon + cool-down 25%, fp32 Newton-Schulz": ["optimizer=muon", "cooldown=0.25", "muon_precision=fp32"],
}
SHAPES = {"2x128": ["n_layer=2", "n_head=2", "n_embd=128"], "4x256": ["n_layer=4", "n_head=4", "n_embd=256"],
          "6x384": ["n_layer=6", "n_head=6", "n_embd=384"]}
LRS = [1e-3, 3e-3]
BASELINE_SHAPE, BASELINE_LR = "4x256", 1e-3


def prepare_novels(corpora: Path, work: Path) -> Path:
    from gpt2zh.prepare import PrepareConfig, prepare

    data = work / "data"
    prepare(PrepareConfig(inputs=[str(corpora / n) for n in NOVELS], out=str(data), progress=False))
    return data


def run(data: Path, out: Path, items: list[str], max_minutes: float | None = None, preset: str = "tiny") -> dict:
    """One training run, quietly; its log and results."""
    from gpt2zh.config import RunConfig
    from gpt2zh.train import TrainJob, train

    cfg = RunConfig.from_name(preset).override(items)
    with contextlib.redirect_stdout(io.StringIO()):
        res = train(TrainJob(str(data), str(out), cfg, progress=False, max_minutes=max_minutes, live_plot=False))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {"results": res, "evals": [(r["step"], r["val_loss"]) for r in log if "val_loss" in r],
            "tokens_per_step": cfg.train.batch_size * cfg.model.n_ctx}


def steps_to_reach(evals: list[tuple[int, float]], target: float) -> float | None:
    """The first step where the validation loss reaches `target`, interpolated between evaluations."""
    prev = None
    for step, loss in evals:
        if loss <= target:
            if prev is None or prev[1] == loss:
                return float(step)
            s0, l0 = prev
            return s0 + (l0 - target) / (l0 - loss) * (step - s0)
        prev = (step, loss)
    return None


# part 1's shapes: the CPU benchmark's (the issue's probe), and on a GPU the `small` preset at its own
# shape, batch and the notes' rate
PART1 = {"tiny": ["n_layer=4", "n_head=4", "n_embd=256", "n_ctx=128", "batch_size=16", "lr=1e-3", "dropout=0.1"],
         "small": ["lr=3e-4"]}


def part1(data: Path, work: Path, steps: int, eval_every: int, config: str,
          only: list[str] | None = None, repeat: int = 1) -> list[dict]:
    """Every recipe (or those named in `only`; the first is the one the others are measured
    against), `repeat` times in a palindromic order (A B B A ...): this machine's speed drifts by
    more than the differences between recipes, and the order cancels a steady drift. The time per
    step is the mean over the repeats; the loss is the same in every repeat (same seed)."""
    common = PART1[config] + ["warmup_steps=50", f"max_steps={steps}", f"eval_interval={eval_every}",
                              "eval_max_tokens=none", f"save_steps={steps}", "log_interval=25", "seed=1337"]
    names = [n for n in RECIPES if not only or n in only]
    rows = {}
    for rep in range(repeat):
        for name in names if rep % 2 == 0 else names[::-1]:
            t0 = time.time()
            r = run(data, work / f"recipe-{names.index(name)}-{rep}", common + RECIPES[name], preset=config)
            row = rows.setdefault(name, {"recipe": name, "final_val_loss": r["evals"][-1][1], "evals": r["evals"],
                                         "step_s_each": [], "wall_s": 0.0})
            if r["evals"][-1][1] != row["final_val_loss"]:
                print(f"  {name}: repeat {rep} ended at {r['evals'][-1][1]:.4f}, not "
                      f"{row['final_val_loss']:.4f}", file=sys.stderr)
            row["step_s_each"].append(r["tokens_per_step"] / r["results"]["tokens_per_s"])
            row["wall_s"] += time.time() - t0
            print(f"  {name} ({rep + 1}/{repeat}): final validation loss {r['evals'][-1][1]:.4f}, "
                  f"{row['step_s_each'][-1]:.3f} s/step", file=sys.stderr)
    rows = [rows[n] for n in names]
    target = rows[0]["final_val_loss"]
    for row in rows:
        row["step_s"] = sum(row["step_s_each"]) / len(row["step_s_each"])
        row["steps_to_fixed_final"] = steps_to_reach(row["evals"], target)
    return rows


GRID_RECIPE = ["cooldown=0.25", "warmup_steps=50", "n_ctx=128", "batch_size=16", "dropout=0.1",
               "max_steps=1000000", "eval_interval=1000000", "eval_max_tokens=none", "save_steps=1000000",
               "log_interval=50"]


def grid_cells(optimizer: str) -> dict[str, list[str] | None]:
    """Part 2's runs by name: the grid (shape x lr with the grid's optimizer and a cool-down), the
    notes' fixed-rate AdamW at the CPU benchmark's shape (the same day and machine, so that the
    optimizer is compared in equal time too), and --auto (None: its settings come from the plan)."""
    cells: dict[str, list[str] | None] = {
        f"{shape}-{lr:g}": [f"optimizer={optimizer}"] + GRID_RECIPE + items + [f"lr={lr:g}"]
        for shape, items in SHAPES.items() for lr in LRS}
    fixed = [i for i in GRID_RECIPE if not i.startswith("cooldown=")] + ["optimizer=adamw", "cooldown=0"]
    cells["baseline"] = fixed + SHAPES[BASELINE_SHAPE] + [f"lr={BASELINE_LR:g}"]
    cells["auto"] = None
    return cells


def run_cell(name: str, items: list[str] | None, data: Path, work: Path, budget_min: float) -> dict:
    if items is not None:
        r = run(data, work / name, items, max_minutes=budget_min)
        row = {"cell": name, "val_loss": r["results"]["best_val_loss"], "steps": r["results"]["steps"],
               "tokens_per_s": r["results"]["tokens_per_s"]}
        print(f"  {name}: validation loss {row['val_loss']:.4f} after {row['steps']} steps", file=sys.stderr)
        return row
    from gpt2zh.plan import make_plan

    t0 = time.time()
    plan = make_plan(str(data), budget_min * 60, progress=False)
    planning_s = time.time() - t0
    print(plan.report(), file=sys.stderr)
    # --auto's run: the plan's settings in the same budget, less the time the plan itself took
    r = run(data, work / "auto", plan.overrides + ["eval_interval=1000000", "eval_max_tokens=none",
                                                    "save_steps=1000000", "max_steps=1000000"],
            max_minutes=budget_min - planning_s / 60)
    return {"cell": "auto", "pick": plan.chosen.shape.label(), "lr": plan.lr, "dropout": plan.dropout,
            "val_loss": r["results"]["best_val_loss"], "steps": r["results"]["steps"],
            "tokens_per_s": r["results"]["tokens_per_s"], "planning_s": planning_s, "report": plan.report()}


def part2(data: Path, work: Path, budget_min: float, optimizer: str, only: list[str] | None = None) -> dict:
    cells = grid_cells(optimizer)
    unknown = set(only or []) - set(cells)
    if unknown:
        raise SystemExit(f"unknown cells {sorted(unknown)}; the cells are {', '.join(cells)}")
    rows = [run_cell(name, items, data, work, budget_min) for name, items in cells.items()
            if only is None or name in only]
    return {"budget_min": budget_min, "optimizer": optimizer, "cells": rows}


def merged(parts: list[dict]) -> dict:
    """Part 2 from several lanes (--cells run side by side), in the grid's order."""
    order = list(grid_cells(parts[0]["optimizer"]))
    rows = sorted((r for p in parts for r in p["cells"]), key=lambda r: order.index(r["cell"]))
    return {**parts[0], "cells": rows}


def spread(row: dict, base: dict) -> str:
    """With repeats: each repeat's time per step against the baseline's in the same round."""
    each = row.get("step_s_each", [])
    if len(each) < 2 or row is base:
        return ""
    ratios = [t / b for t, b in zip(each, base["step_s_each"])]
    return f"; rounds {min(ratios):.2f}–{max(ratios):.2f}×"


def markdown(p1: list[dict] | None, p2: dict | None, steps: int) -> str:
    out = [f"machine: {platform.processor() or platform.machine()}, {platform.system()}"]
    if p1:
        out += ["", f"| recipe ({steps} steps) | final validation loss (ppl) | steps to the fixed recipe's final loss "
                    "| time per step |", "|---|---|---|---|"]
        base_step = p1[0]["step_s"]
        for r in p1:
            reach = r["steps_to_fixed_final"]
            reach_s = f"{reach:.0f} ({reach / steps:.2f}×)" if reach is not None else "not reached"
            out.append(f"| {r['recipe']} | {r['final_val_loss']:.4f} ({math.exp(r['final_val_loss']):.1f}) | "
                       f"{reach_s} | {r['step_s']:.3f} s ({r['step_s'] / base_step:.2f}×){spread(r, p1[0])} |")
    if p2:
        out += ["", f"| run ({p2['optimizer']} + cool-down 25% unless named) | validation loss (ppl) in "
                    f"{p2['budget_min']:g} min | steps | tokens/s |", "|---|---|---|---|"]
        grid = [r for r in p2["cells"] if r["cell"] not in ("baseline", "auto")]
        best = min((r["val_loss"] for r in grid), default=None)
        for r in p2["cells"]:
            name = {"baseline": f"fixed AdamW (the notes) {BASELINE_SHAPE} lr {BASELINE_LR:g}"}.get(r["cell"], r["cell"])
            if r["cell"] == "auto":
                name = f"**--auto**: {r['pick']}, lr {r['lr']:g}, dropout {r['dropout']:g}"
            vs = f" ({(r['val_loss'] / best - 1) * 100:+.1f}% against the grid's best)" if best and r["cell"] == "auto" else ""
            out.append(f"| {name} | {r['val_loss']:.4f} ({math.exp(r['val_loss']):.1f}){vs} | {r['steps']} | "
                       f"{r['tokens_per_s']:,.0f} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default=str(ROOT.parent / "shared" / "corpora"))
    ap.add_argument("--parts", default="12", help="1, 2 or 12")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--config", default="tiny", choices=sorted(PART1),
                    help="part 1's shape: tiny (4 x 256, n_ctx 128, batch 16: the CPU benchmark) or small (the "
                         "preset: for a GPU)")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--recipes", type=int, nargs="+", choices=range(len(RECIPES)), metavar="N",
                    help="part 1: only these recipes, by number ("
                         + "; ".join(f"{i}: {n}" for i, n in enumerate(RECIPES)).replace("%", "%%") + "); 0 always runs")
    ap.add_argument("--repeat", type=int, default=1,
                    help="part 1: run the recipes this many times in the order A B .. B A .., the time per step "
                         "the mean (the loss is the same each time)")
    ap.add_argument("--budget", type=float, default=15.0, help="minutes per grid run")
    ap.add_argument("--grid-optimizer", default="muon")
    ap.add_argument("--cells", nargs="+", help="part 2: only these runs (e.g. 2x128-0.001 baseline auto), so that "
                                               "lanes can run side by side, one pinned core each (taskset, --threads 1)")
    ap.add_argument("--threads", type=int, help="torch threads in this process")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="print part 2 from the --json files of several lanes")
    ap.add_argument("--json", help="write the raw results here")
    args = ap.parse_args()
    if args.merge:
        parts = [json.loads(Path(f).read_text(encoding="utf-8"))["part2"] for f in args.merge]
        print(markdown(None, merged(parts), args.steps))
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="gpt2zh-recipes-") as tmp:
        work = Path(tmp)
        data = prepare_novels(Path(args.corpora), work)
        only = [list(RECIPES)[i] for i in sorted({0, *args.recipes})] if args.recipes else None
        p1 = part1(data, work, args.steps, args.eval_every, args.config, only, args.repeat) if "1" in args.parts else None
        p2 = part2(data, work, args.budget, args.grid_optimizer, args.cells) if "2" in args.parts else None
    if args.json:
        Path(args.json).write_text(json.dumps({"part1": p1, "part2": p2}, indent=1), encoding="utf-8")
    print(markdown(p1, p2, args.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
