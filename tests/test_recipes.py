"""Training recipes (issue 16): Muon on the blocks' matrices with AdamW on the rest, a
cool-down that a longer run can continue from, exact resume, and the GPU-only branches
(torch.compile, bf16 autocast, fused AdamW) run on the CPU against the eager fp32 path."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY
from gpt2zh.config import ConfigError, RunConfig
from gpt2zh.optim import Muon, Schedule, fast_dtype, hidden_matrices, make_optimizers, orthogonalize
from gpt2zh.train import TrainingError, TrainJob, checkpoints, train


def tiny(*extra) -> RunConfig:
    return RunConfig.from_name("tiny").override(TINY + list(extra))


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def small_model():
    from gpt2zh.model import build_model

    return build_model(tiny().model, 500, 0, 1)


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = small_model()
    muon, adamw = make_optimizers(model, tiny("optimizer=muon").train, fused=False)
    assert isinstance(muon, Muon) and isinstance(adamw, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = sorted(names[id(p)] for g in muon.param_groups for p in g["params"])
    assert in_muon == sorted(hidden_matrices(model)) and len(in_muon) == 4 * 2   # 4 matrices in each of 2 layers
    assert all(n.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")) for n in in_muon)
    in_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight"} <= in_adamw
    assert not in_adamw & set(in_muon)
    assert {g["blocks"] for g in muon.param_groups} == {3, 1}           # Q, K and V each on its own
    only_adamw = make_optimizers(model, tiny().train, fused=False)
    assert len(only_adamw) == 1 and isinstance(only_adamw[0], torch.optim.AdamW)


def test_muons_update_reads_the_same_in_either_layout():
    """Conv1D keeps (in, out) where nn.Linear keeps (out, in): the step must not care."""
    torch.manual_seed(0)
    w, g = torch.randn(64, 192), torch.randn(64, 192)
    a, b = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.T.clone())
    a.grad, b.grad = g.clone(), g.T.clone()
    Muon([a], lr=0.01).step()
    Muon([b], lr=0.01).step()
    assert torch.allclose(a.detach(), b.detach().T, atol=1e-5)
    # and c_attn's three blocks are orthogonalized as three matrices
    q = torch.nn.Parameter(w.clone())
    q.grad = g.clone()
    Muon([{"params": [q], "blocks": 3}], lr=0.01, momentum=0.0, nesterov=False, ns_dtype=torch.float32).step()
    parts = [orthogonalize(g[:, i * 64:(i + 1) * 64]) for i in range(3)]
    expected = w - 0.01 * 0.2 * math.sqrt(64) * torch.cat(parts, dim=1)
    assert torch.allclose(q.detach(), expected, atol=1e-5)
    s = torch.linalg.svdvals(orthogonalize(g))                            # roughly orthogonal
    assert 0.5 < s.min() and s.max() < 1.3
    # in bf16 (what Muon uses where the hardware multiplies in it): the same matrix, to bf16's precision
    fast = orthogonalize(g, dtype=torch.bfloat16)
    assert fast.dtype == g.dtype and (fast - orthogonalize(g)).norm() / orthogonalize(g).norm() < 0.05
    s = torch.linalg.svdvals(fast)
    assert 0.5 < s.min() and s.max() < 1.3
    assert fast_dtype(torch.device("cpu")) in (torch.bfloat16, torch.float32)


def test_newton_schulz_folded_into_baddbmm_is_the_textbook_iteration():
    """orthogonalize folds the scalings into its products; the plain quintic, written out."""
    torch.manual_seed(1)
    a, b, c = 3.4445, -4.7750, 2.0315
    for shape in [(48, 80), (80, 48), (3, 32, 40)]:   # wide, tall (transposed inside), a batch
        g = torch.randn(*shape, dtype=torch.float64)
        x = g.mT if shape[-2] > shape[-1] else g
        x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
        for _ in range(5):
            s = x @ x.mT
            x = a * x + (b * s + c * s @ s) @ x
        expected = x.mT if shape[-2] > shape[-1] else x
        got = orthogonalize(g, dtype=torch.float64)
        assert got.shape == g.shape and torch.allclose(got, expected, atol=1e-10)


def test_the_schedule_warms_up_holds_and_cools_by_steps_or_time():
    s = Schedule(warmup=10, cooldown=0.25, total=100)
    assert s.factor(0) == pytest.approx(0.1) and s.factor(9) == 1.0 and s.factor(74) == 1.0
    assert s.cooldown_start == 75 and not s.cooling(74) and s.cooling(75)
    assert s.factor(75) == pytest.approx(1.0) and s.factor(87) == pytest.approx(13 / 25) and s.factor(99) == 0.04
    timed = Schedule(warmup=0, cooldown=0.5, total=10 ** 9, budget_s=60)   # the time budget ends this run
    assert timed.factor(10, elapsed_s=20) == 1.0 and not timed.cooling(10, elapsed_s=29)
    assert timed.cooling(10, elapsed_s=31) and timed.factor(10, elapsed_s=45) == pytest.approx(0.5)
    assert Schedule(0, 0.0, 100).factor(99) == 1.0                        # the notes' recipe: fixed


def test_bad_recipe_settings_are_config_errors():
    with pytest.raises(ConfigError, match="optimizer"):
        tiny("optimizer=sgd")
    with pytest.raises(ConfigError, match="cooldown"):
        tiny("cooldown=1.5")
    with pytest.raises(ConfigError, match="muon_precision must be auto, fp32 or bf16"):
        tiny("muon_precision=fp16")



def test_muon_resumes_exactly(novel_shards, tmp_path):
    cfg = tiny("optimizer=muon", "dropout=0.1", "save_steps=5", "eval_interval=100")
    train(TrainJob(str(novel_shards), str(tmp_path / "straight"), cfg.override(["max_steps=10"]), progress=False))
    train(TrainJob(str(novel_shards), str(tmp_path / "split"), cfg.override(["max_steps=5"]), progress=False))
    train(TrainJob(str(novel_shards), str(tmp_path / "split"), cfg.override(["max_steps=10"]), resume=True,
                   progress=False))
    a = {r["step"]: r["loss"] for r in records(tmp_path / "straight") if "loss" in r}
    b = {r["step"]: r["loss"] for r in records(tmp_path / "split") if "loss" in r}
    assert sorted(a) == sorted(b) == list(range(1, 11))
    for step in a:
        assert abs(a[step] - b[step]) < 1e-5, (step, a[step], b[step])


def test_a_cooled_run_continues_from_where_its_cool_down_began(novel_shards, tmp_path, capsys):
    out = tmp_path / "wsd"
    cfg = tiny("cooldown=0.25", "save_steps=4", "eval_interval=100", "warmup_steps=0")
    train(TrainJob(str(novel_shards), str(out), cfg.override(["max_steps=16"]), progress=False))
    lrs = {r["step"]: r["lr"] for r in records(out) if "lr" in r}
    assert lrs[12] == pytest.approx(1e-3) and lrs[16] == pytest.approx(1e-3 / 4)   # cooled over steps 12-16
    assert [c.name for c in checkpoints(out)] == ["step-00000012", "step-00000016"]
    assert (out / "checkpoints" / "step-00000012" / "PRE_COOLDOWN").exists()
    with pytest.raises(TrainingError, match="resume with --optimizer adamw"):   # refused: nothing is lost
        train(TrainJob(str(novel_shards), str(out), cfg.override(["max_steps=24", "optimizer=muon"]), resume=True,
                       progress=False))
    assert [c.name for c in checkpoints(out)] == ["step-00000012", "step-00000016"]
    capsys.readouterr()
    train(TrainJob(str(novel_shards), str(out), cfg.override(["max_steps=24"]), resume=True, progress=False))
    said = capsys.readouterr().err
    assert "cooled down after step 12" in said and "continues from the checkpoint where the cool-down began" in said
    lrs = {r["step"]: r["lr"] for r in records(out) if "lr" in r}
    assert lrs[16] == pytest.approx(1e-3) and lrs[18] == pytest.approx(1e-3)      # the fixed rate again
    assert lrs[24] == pytest.approx(1e-3 / 6)                                     # and cooled over 18-24
    assert (out / "checkpoints" / "step-00000018" / "PRE_COOLDOWN").exists()


# ----------------------------------------------------------------------------
# The GPU-only branches, as far as a CPU runs them


def _losses(novel_shards, out: Path, *extra) -> tuple[list[float], str]:
    """Four steps in a process of their own (Accelerate fixes the precision once per process)."""
    sets = [f"--set={o}" for o in TINY + ["max_steps=4", "eval_interval=100", *extra]]
    p = subprocess.run([sys.executable, "-m", "gpt2zh", "train", "--data", str(novel_shards), "--out", str(out),
                        "--quiet", *sets], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return [r["loss"] for r in records(out) if "loss" in r], p.stderr


@pytest.fixture(scope="module")
def eager(novel_shards, tmp_path_factory) -> list[float]:
    losses, said = _losses(novel_shards, tmp_path_factory.mktemp("eager") / "run", "compile=off", "precision=fp32",
                           "fused_adamw=off")
    assert "precision fp32, compile False" in said
    return losses


@pytest.mark.parametrize("branch, shows, tolerance", [
    ("compile=on", "compile True", 1e-3),         # inductor on the CPU: the same maths, fused kernels
    ("precision=bf16", "precision bf16", 0.05),   # bf16 autocast: 8 bits of mantissa in the matmuls
    ("fused_adamw=on", "fused AdamW", 1e-4),      # the fused AdamW kernel
])
def test_a_gpu_only_branch_trains_as_the_eager_fp32_path_does(novel_shards, tmp_path, eager, branch, shows,
                                                             tolerance):
    other, said = _losses(novel_shards, tmp_path / "branch", branch)
    assert shows in said and len(eager) == len(other) == 4
    for a, b in zip(eager, other):
        assert abs(a - b) < tolerance * max(1.0, abs(a)), (branch, eager, other)
