"""The run directory on disk: checkpoints (a Hugging Face model directory plus the trainer's
state, written atomically), best/, and the clean-up of what an interrupted save or delete left.
Read by `train`, and by `generate`, `eval` and `serve` to find a run's model.

Layout: RUN/checkpoints/step-N/ (config.json, model.safetensors, tokenizer, trainer_state.pt,
rng_rankR.pt; PRE_COOLDOWN where a cool-down began), RUN/best/, RUN/log.jsonl, RUN/loss.png.
A folder is written under a temporary name and renamed into place; an old one is renamed
aside before it is deleted: a kill at any moment leaves whole folders or none.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
from pathlib import Path

import numpy as np
import torch

from .data import Position
from .degeneration import copy_to as copy_calibration

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


_FAULT_HITS: dict[str, int] = {}


def fault(point: str) -> None:
    """Fault injection for the crash tests: GPT2ZH_FAULT=point[@n] kills this process
    (SIGKILL, no clean-up) the n-th time (default: first) it gets there, e.g. inside a
    checkpoint save or delete."""
    want = os.environ.get("GPT2ZH_FAULT")
    if not want or want.split("@")[0] != point:
        return
    _FAULT_HITS[point] = _FAULT_HITS.get(point, 0) + 1
    if _FAULT_HITS[point] == int(want.split("@")[1] if "@" in want else 1):
        os.kill(os.getpid(), signal.SIGKILL)


MODEL_FILES = ("config.json", "model.safetensors")


def _complete(ckpt: Path) -> bool:
    return all((ckpt / f).exists() for f in MODEL_FILES + ("trainer_state.pt",))


def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = out / "checkpoints"
    if not root.exists():
        return []
    done = [p for p in root.glob("step-*") if p.name[5:].isdigit() and _complete(p)]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def sweep(out: Path) -> list[str]:
    """Remove what an interrupted save or delete left behind: temporary and retired folders,
    and step folders that are not complete (older versions deleted in place). A `best/` caught
    between its two renames is put back. Returns what was removed."""
    removed = []
    best = out / "best"
    retired_best = sorted(out.glob(".retired-best*"))
    if not best.exists() and retired_best and all((retired_best[-1] / f).exists() for f in MODEL_FILES):
        retired_best[-1].rename(best)
    root = out / "checkpoints"
    leftovers = [p for p in out.glob(".tmp-*")] + [p for p in out.glob(".retired-*")] + \
                [p for p in out.glob(".old-*")]
    if root.exists():
        leftovers += [p for p in root.iterdir() if p.name.startswith((".tmp-", ".retired-", ".old-"))
                      or (p.name.startswith("step-") and not _complete(p))]
    for p in leftovers:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        removed.append(str(p.relative_to(out)))
    return removed
def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])




def _write_model_dir(path: Path, raw_model, data_dir: Path, info: dict) -> None:
    raw_model.save_pretrained(path, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(data_dir / name, path / name)
    # the chapter measures' human bands travel with the model
    copy_calibration(path.parent.parent if path.parent.name == "checkpoints" else path.parent, path)
    (path / "gpt2zh.json").write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")


def _set_aside(path: Path) -> Path:
    """Rename a folder out of the way (atomic): a kill at any moment leaves either the whole
    folder under its name or none of it; the start-up sweep deletes what was set aside."""
    gone = path.with_name(f".retired-{path.name}-{os.getpid()}")
    path.rename(gone)
    return gone


def retire(path: Path) -> None:
    gone = _set_aside(path)
    fault("delete:renamed")
    shutil.rmtree(gone, ignore_errors=True)


def _replace_dir(tmp: Path, final: Path) -> None:
    gone = _set_aside(final) if final.exists() else None
    tmp.rename(final)
    if gone is not None:
        shutil.rmtree(gone, ignore_errors=True)


PRE_COOLDOWN = "PRE_COOLDOWN"   # marks the checkpoint where a cool-down began: never retired (one kept)


def starts_cooldown(ckpt: Path) -> bool:
    return (ckpt / PRE_COOLDOWN).exists()


def save_checkpoint(accelerator, raw_model, optimizers, out: Path, data_dir: Path, step: int,
                    pos: Position, info: dict, keep_last: int, pre_cooldown: bool = False) -> Path:
    root = out / "checkpoints"
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng_rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        _write_model_dir(tmp, raw_model, data_dir, info)
        fault("save:model-written")
        torch.save({"optimizers": [o.state_dict() for o in optimizers],
                    "optimizer_kinds": [type(getattr(o, "optimizer", o)).__name__ for o in optimizers],
                    "step": step, "epoch": pos.epoch, "batch": pos.batch,
                    "best_val_loss": info.get("best_val_loss"), "world_size": accelerator.num_processes},
                   tmp / "trainer_state.pt")
        if pre_cooldown:
            (tmp / PRE_COOLDOWN).write_text(f"the fixed-rate phase ended at step {step}\n", encoding="utf-8")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _replace_dir(tmp, final)
        older = checkpoints(out)[:-keep_last]
        kept = [c for c in older if starts_cooldown(c)][-1:]   # the newest start of a cool-down stays
        for old in older:
            if old not in kept:
                retire(old)
    accelerator.wait_for_everyone()
    return final


def save_best(accelerator, raw_model, out: Path, data_dir: Path, info: dict) -> None:
    if accelerator.is_main_process:
        tmp = out / ".tmp-best"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _write_model_dir(tmp, raw_model, data_dir, info)
        _replace_dir(tmp, out / "best")


def step_of(ckpt: Path) -> int:
    return int(ckpt.name.split("-")[1])


def schedule_of(ckpt: Path) -> dict:
    try:
        return json.loads((ckpt / "gpt2zh.json").read_text(encoding="utf-8")).get("schedule") or {}
    except (OSError, ValueError):
        return {}


