"""Training on real shards with tiny shapes: learning, exact resume, two processes,
corruption, kills, signals, divergence, and loading the result with transformers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY, corrupted_copy
from gpt2zh.config import RunConfig
from gpt2zh.shards import ShardError
from gpt2zh.train import TrainingError, TrainJob, checkpoints, train


def tiny(*extra) -> RunConfig:
    return RunConfig.from_name("tiny").override(TINY + list(extra))


def losses(run_dir: Path) -> dict[int, float]:
    out = {}
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = rec["loss"]
    return out


def test_loss_falls(tiny_run):
    ls = losses(tiny_run)
    first = sum(ls[s] for s in range(1, 6)) / 5
    last = sum(ls[s] for s in range(56, 61)) / 5
    assert last < first - 1.0, (first, last)
    res = json.loads((tiny_run / "results.json").read_text())
    assert res["status"] == "finished" and res["steps"] == 60 and res["val_ppl"] < 2000
    assert (tiny_run / "loss.png").stat().st_size > 1000
    assert [c.name for c in checkpoints(tiny_run)] == ["step-00000030", "step-00000060"]
    assert (tiny_run / "best" / "model.safetensors").exists()


def test_resume_gives_the_same_losses(novel_shards, tmp_path):
    # dropout on, so that restoring the RNG state matters too
    cfg = tiny("dropout=0.1", "save_steps=10", "eval_interval=10")
    train(TrainJob(str(novel_shards), str(tmp_path / "straight"), cfg.override(["max_steps=20"]), progress=False))
    train(TrainJob(str(novel_shards), str(tmp_path / "split"), cfg.override(["max_steps=10"]), progress=False))
    train(TrainJob(str(novel_shards), str(tmp_path / "split"), cfg.override(["max_steps=20"]), resume=True,
                   progress=False))
    a, b = losses(tmp_path / "straight"), losses(tmp_path / "split")
    assert sorted(a) == sorted(b) == list(range(1, 21))
    for step in a:
        assert abs(a[step] - b[step]) < 1e-5, (step, a[step], b[step])


def _accelerate(args, env_extra=None, timeout=600):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "gpt2zh", "train", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("recipe", [[], ["--optimizer", "muon", "--grad-accum", "2", "--cooldown", "0.25"]],
                         ids=["adamw", "muon-accum-cooldown"])
def test_two_processes_train_as_one_job(novel_shards, tmp_path, recipe):
    common = ["--data", str(novel_shards), "--config", "tiny", "--max-steps", "8", "--quiet",
              *[f"--set={o}" for o in TINY], "--set=eval_interval=4", "--set=save_steps=4", *recipe]
    proc = _accelerate(common + ["--out", str(tmp_path / "ddp")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert res["world_size"] == 2
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "gpt2zh", "train", *common, "--out", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = losses(tmp_path / "ddp"), losses(tmp_path / "one")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in a:  # same global batch, split over two ranks: the same job
        assert abs(a[step] - b[step]) < 1e-4, (step, a[step], b[step])
    assert json.loads((tmp_path / "one" / "results.json").read_text())["world_size"] == 1


def test_corrupted_shard_stops_before_training(novel_shards, tmp_path):
    data = corrupted_copy(novel_shards, tmp_path / "data", "train_013.bin")
    with pytest.raises(ShardError, match="train_013.bin"):
        train(TrainJob(str(data), str(tmp_path / "run"), tiny("max_steps=2"), progress=False))
    assert not (tmp_path / "run" / "checkpoints").exists()


def _start_training(novel_shards, out: Path, steps: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gpt2zh", "train", "--data", str(novel_shards), "--out", str(out),
           "--max-steps", str(steps), "--save-steps", "5", "--quiet", *[f"--set={o}" for o in TINY],
           "--set=eval_interval=1000"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(out: Path, proc: subprocess.Popen, timeout=120):
    t0 = time.time()
    while not checkpoints(out):
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() - t0 < timeout
        time.sleep(0.2)


def test_killed_run_resumes_from_last_complete_checkpoint(novel_shards, tmp_path):
    out = tmp_path / "run"
    proc = _start_training(novel_shards, out, 100_000)
    _wait_for_checkpoint(out, proc)
    time.sleep(1.0)
    proc.kill()  # no chance to clean up
    proc.wait()
    last = checkpoints(out)[-1]
    step = int(last.name.split("-")[1])
    res = train(TrainJob(str(novel_shards), str(out), tiny(f"max_steps={step + 3}", "eval_interval=1000"),
                         resume=True, progress=False))
    assert res["steps"] == step + 3
    logged = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert logged == list(range(1, step + 4))  # what the killed run logged past its checkpoint is gone


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(novel_shards, tmp_path):
    out = tmp_path / "run"
    proc = _start_training(novel_shards, out, 100_000)
    _wait_for_checkpoint(out, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err[-2000:]   # interrupted, resumable: not 0 like a finished run
    assert "interrupted" in err and "--resume" in err
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "interrupted"
    assert int(checkpoints(out)[-1].name.split("-")[1]) == res["steps"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(novel_shards, tmp_path, monkeypatch):
    import gpt2zh.train as T

    real = T.lm_loss
    calls = {"n": 0}

    def poisoned(model, x, y, reduction="mean"):
        loss = real(model, x, y, reduction)
        if model.training:
            calls["n"] += 1
            if calls["n"] >= 7:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(T, "lm_loss", poisoned)
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match="diverged"):
        train(TrainJob(str(novel_shards), str(out), tiny("max_steps=20", "save_steps=5"), progress=False))
    ckpts = checkpoints(out)
    assert [c.name for c in ckpts] == ["step-00000005"]
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(ckpts[0] / "model.safetensors").values())


def test_checkpoint_loads_in_transformers_and_pipeline(tiny_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    model = AutoModelForCausalLM.from_pretrained(str(tiny_run / "best"))
    tok = AutoTokenizer.from_pretrained(str(tiny_run / "best"))
    assert model.config.vocab_size % 64 == 0
    gen = pipeline("text-generation", model=model, tokenizer=tok, device="cpu")
    out = gen("话说", max_new_tokens=10, do_sample=True)[0]["generated_text"]
    assert out.startswith("话说") and len(out) > 2


def test_fine_tune_from_a_checkpoint(tiny_run, novel_shards, tmp_path, corpora):
    res = train(TrainJob(str(novel_shards), str(tmp_path / "ft"), tiny("max_steps=3"),
                         init_from=str(tiny_run / "best"), progress=False))
    assert res["status"] == "finished"
    from gpt2zh.prepare import PrepareConfig, prepare

    other = tmp_path / "other"
    prepare(PrepareConfig(inputs=[str(corpora / "xiyouji.gbk.txt")], out=str(other), num_shards=2, progress=False))
    with pytest.raises(TrainingError, match="tokenizer differs"):
        train(TrainJob(str(other), str(tmp_path / "ft2"), tiny("max_steps=3"), init_from=str(tiny_run / "best"),
                       progress=False))


def test_gradient_accumulation_matches_the_full_batch(novel_shards, tmp_path):
    runs = {}
    for accum in (1, 2):
        out = tmp_path / f"accum{accum}"
        train(TrainJob(str(novel_shards), str(out), tiny("max_steps=6", f"grad_accum={accum}", "eval_interval=1000"),
                       progress=False))
        runs[accum] = losses(out)
    for step in runs[1]:
        assert abs(runs[1][step] - runs[2][step]) < 1e-4, (step, runs[1][step], runs[2][step])


# ----------------------------------------------------------------------------
# Unattended runs: kills anywhere, damaged logs, a second trainer, exit codes


def _train_cli(novel_shards, out: Path, steps: int, save_steps: int, env_extra=None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gpt2zh", "train", "--data", str(novel_shards), "--out", str(out), "--resume",
           "--max-steps", str(steps), "--save-steps", str(save_steps), "--quiet", *[f"--set={o}" for o in TINY],
           "--set=eval_interval=1000", "--set=keep_last=2"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})})


def _every_folder_loads(out: Path) -> list[int]:
    """Each step-N folder under checkpoints/ is complete and loads; returns their steps.
    Dot-folders are leftovers that the next start sweeps (checked after it)."""
    from gpt2zh.model import load_model

    steps = []
    for p in sorted((out / "checkpoints").iterdir()):
        if p.name.startswith("."):
            continue
        load_model(p)
        state = torch.load(p / "trainer_state.pt", weights_only=False)
        steps.append(state["step"])
    return steps


def _latest(out: Path) -> int:
    """The newest complete checkpoint's step (safe to call while the trainer runs)."""
    done = checkpoints(out)
    return int(done[-1].name.split("-")[1]) if done else 0


def test_kill_9_anywhere_leaves_nothing_broken(novel_shards, tmp_path):
    """kill -9 inside a checkpoint save, inside the delete of an old checkpoint, and at random
    moments: every resume succeeds, every step-N folder loads, leftovers are swept, and at
    most one save interval of steps is lost."""
    import random

    out, save = tmp_path / "run", 3
    rng = random.Random(0)
    kills = [("save:model-written@2", None), ("delete:renamed", None), (None, 2.0 + 2 * rng.random()),
             (None, 2.0 + 2 * rng.random()), (None, 2.0 + 2 * rng.random())]
    target = 10_000
    for fault, after in kills:
        before = _latest(out)
        proc = _train_cli(novel_shards, out, target, save, {"GPT2ZH_FAULT": fault} if fault else None)
        if fault is None:
            deadline = time.time() + 120
            while _latest(out) <= before:   # a kill after a new checkpoint, at a random moment
                assert proc.poll() is None, proc.stderr.read()[-2000:]
                assert time.time() < deadline
                time.sleep(0.1)
            time.sleep(after)
            proc.kill()
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, err[-2000:]
        steps = _every_folder_loads(out)
        assert steps and steps == sorted(steps)
        if fault and fault.startswith("save:"):
            assert any(p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir())
        if fault == "delete:renamed":
            assert any(p.name.startswith(".retired-") for p in (out / "checkpoints").iterdir())
        logged = max((json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines() if x.strip()
                      and x.startswith("{")), default=0)
        assert logged - max(steps) <= save   # what is lost: at most one save interval
    last = max(_every_folder_loads(out))
    proc = _train_cli(novel_shards, out, last + 4, save)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "leftover" in err or not any(p.name.startswith(".") for p in (out / "checkpoints").iterdir())
    assert not [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]   # swept
    assert not [p.name for p in out.iterdir() if p.name.startswith((".tmp", ".retired"))]
    assert _every_folder_loads(out)[-1] == last + 4
    logged = [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert logged == list(range(1, last + 5))   # one unbroken history


def test_damaged_last_log_line_is_skipped_with_a_warning(novel_shards, tmp_path):
    out = tmp_path / "run"
    cfg = tiny("save_steps=4", "eval_interval=1000")
    train(TrainJob(str(novel_shards), str(out), cfg.override(["max_steps=4"]), progress=False))
    with open(out / "log.jsonl", "ab") as f:
        f.write(b'{"step": 5, "loss": 3.1, "lr\x00\x00')   # power lost mid-write
    with pytest.warns(UserWarning, match=r"log\.jsonl.*damaged"):
        res = train(TrainJob(str(novel_shards), str(out), cfg.override(["max_steps=6"]), resume=True,
                             progress=False))
    assert res["steps"] == 6
    assert sorted(losses(out)) == list(range(1, 7))   # the damaged record is gone, the rest kept


def test_a_second_trainer_on_the_same_run_is_refused(novel_shards, tmp_path):
    out = tmp_path / "run"
    first = _train_cli(novel_shards, out, 100_000, 5)
    try:
        _wait_for_checkpoint(out, first)
        second = subprocess.run([sys.executable, "-m", "gpt2zh", "train", "--data", str(novel_shards), "--out",
                                 str(out), "--resume"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert f"in use by PID {first.pid}" in second.stderr
        assert first.poll() is None   # the first one is undisturbed
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 3, err[-2000:]
    assert not (out / ".lock").exists()
    # a lock left by a process that died is taken over
    (out / ".lock").write_text(json.dumps({"pid": 999_999_999, "host": __import__("socket").gethostname()}))
    steps = _latest(out) + 2
    res = train(TrainJob(str(novel_shards), str(out), tiny("eval_interval=1000", f"max_steps={steps}"), resume=True,
                         progress=False))
    assert res["status"] == "finished" and res["steps"] == steps


def test_diverged_run_exits_4(novel_shards, tmp_path, monkeypatch, capsys):
    import gpt2zh.train as T
    from gpt2zh.cli import main

    real = T.lm_loss
    monkeypatch.setattr(T, "lm_loss", lambda model, x, y, reduction="mean": real(model, x, y, reduction) *
                        (float("nan") if model.training else 1.0))
    code = main(["train", "--data", str(novel_shards), "--out", str(tmp_path / "run"), "--max-steps", "3",
                 "--quiet", *[f"--set={o}" for o in TINY]])
    assert code == 4 and "diverged" in capsys.readouterr().err


def test_fsdp_and_deepspeed_are_refused_at_once():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from gpt2zh.train import refuse_unsupported

    for kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        with pytest.raises(TrainingError, match="not supported.*DDP"):
            refuse_unsupported(SimpleNamespace(distributed_type=kind))
    refuse_unsupported(SimpleNamespace(distributed_type=DistributedType.MULTI_CPU))


def test_loss_plot_after_the_first_evaluation(tiny_run):
    """loss.png is drawn from the log: a training point per log interval, validation markers."""
    from gpt2zh.train import plot_run, read_log

    records = read_log(tiny_run / "log.jsonl")
    assert sum("loss" in r for r in records) == 60 and sum("val_loss" in r for r in records) == 2
    png = tiny_run / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    plot_run(records[:31], png.with_name("first_eval.png"))   # as it stood after the first evaluation
    assert png.with_name("first_eval.png").stat().st_size > 10_000


def _two_machines(args_for_rank, timeout=600):
    """`accelerate launch --num_machines 2` twice on this host (one process per 'machine',
    gloo on 127.0.0.1), as two nodes of a cluster would run it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "2", "--machine_rank", str(r), "--main_process_ip", "127.0.0.1", "--main_process_port",
         str(port), "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "gpt2zh", "train", *args_for_rank(r)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [p.returncode for p in procs], [o[1] for o in outs]


def test_two_machines_train_and_resume_as_one_process(novel_shards, tmp_path):
    common = ["--data", str(novel_shards), "--config", "tiny", "--quiet", *[f"--set={o}" for o in TINY],
              "--set=eval_interval=4", "--set=save_steps=4"]
    out = str(tmp_path / "cluster")
    codes, errs = _two_machines(lambda r: common + ["--out", out, "--max-steps", "4"])
    assert codes == [0, 0], errs[0][-3000:] + errs[1][-3000:]
    codes, errs = _two_machines(lambda r: common + ["--out", out, "--max-steps", "8", "--resume"])
    assert codes == [0, 0], errs[0][-3000:] + errs[1][-3000:]
    assert "resuming from" in errs[0]
    res = json.loads((tmp_path / "cluster" / "results.json").read_text())
    assert res["world_size"] == 2 and res["steps"] == 8
    single = subprocess.run([sys.executable, "-m", "gpt2zh", "train", *common, "--out", str(tmp_path / "one"),
                             "--max-steps", "8"], env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = losses(tmp_path / "cluster"), losses(tmp_path / "one")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in a:  # same global batch over two machines, resumed half-way: the same job
        assert abs(a[step] - b[step]) < 1e-4, (step, a[step], b[step])


def test_machines_that_do_not_share_the_run_directory_are_told(novel_shards, tmp_path):
    common = ["--data", str(novel_shards), "--config", "tiny", "--quiet", *[f"--set={o}" for o in TINY],
              "--max-steps", "2"]
    # each 'machine' sees its own folder at the path: what a --out on local disks looks like
    codes, errs = _two_machines(lambda r: common + ["--out", str(tmp_path / f"local{r}")])
    assert codes[0] != 0 and codes[1] != 0
    assert "filesystem they all share" in errs[0] and "cannot see" in errs[0]
    assert "cannot see" in errs[1] and "does not" in errs[1]   # the machine that cannot see it says so
    assert not (tmp_path / "local0" / "checkpoints").exists()
