"""`gpt2zh plan` and `train --auto` (issue 16): a shape and a recipe from the corpus and the
budget, measured on this machine, with the reasons printed; bad input before torch loads."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from conftest import CORPORA
from gpt2zh.config import RunConfig
from gpt2zh.plan import Candidate, PlanError, Shape, choose, make_plan, parse_budget


def test_budgets_read_as_people_write_them():
    assert parse_budget("15m") == 900 and parse_budget("2h") == 7200 and parse_budget("1h30m") == 5400
    assert parse_budget("90s") == 90 and parse_budget("20") == 1200
    for bad in ("soon", "5x", "", "30s"):
        with pytest.raises(PlanError):
            parse_budget(bad)


def test_a_bigger_shape_is_chosen_only_while_the_budget_feeds_it():
    small, big = Shape(2, 2, 128, 128, 16), Shape(6, 6, 384, 256, 16)
    fast = [Candidate(small, small.params(), 10_000), Candidate(big, big.params(), 9_000)]
    assert choose(fast, 3600, 10 ** 9).shape == big          # speed nearly alike: the bigger one
    slow = [Candidate(small, small.params(), 10_000), Candidate(big, big.params(), 200)]
    assert choose(slow, 3600, 10 ** 9).shape == small        # the bigger one would be starved
    assert "starved" in slow[1].why
    with pytest.raises(ValueError):
        Shape(4, 6, 384, 256, 16)                             # more heads than layers: not by the notes' rules


def test_plan_measures_and_says_why(novel_shards):
    shapes = [Shape(2, 2, 64, 64, 8), Shape(2, 2, 128, 64, 8)]
    plan = make_plan(str(novel_shards), 600, shapes=shapes, progress=False)
    assert [c.shape for c in plan.candidates] == shapes and all(c.tokens_per_s > 0 for c in plan.candidates)
    assert plan.chosen.predicted == min(c.predicted for c in plan.candidates)
    text = plan.report()
    for needed in ("block params", "tok/s", "tokens/param", "epochs over the data", "finished around",
                   "--set optimizer=muon", "--set cooldown=0.25"):
        assert needed in text, text
    run = RunConfig.from_name("tiny").override(plan.overrides)     # the settings are valid as they are
    assert run.model.n_embd == plan.chosen.shape.n_embd and run.train.optimizer == "muon"


def test_a_corpus_too_small_for_any_shape_says_so(tmp_path):
    from gpt2zh.prepare import PrepareConfig, prepare

    (tmp_path / "in").mkdir()
    text = (CORPORA / "shuihuzhuan.txt").read_text(encoding="utf-8")[10_000:13_000]
    (tmp_path / "in" / "a.txt").write_text(text, encoding="utf-8")
    prepare(PrepareConfig(inputs=[str(tmp_path / "in")], out=str(tmp_path / "data"), progress=False))
    with pytest.raises(PlanError, match="too few for any shape; the smallest"):
        make_plan(str(tmp_path / "data"), 900, progress=False)


def test_bad_plan_and_auto_options_stop_before_torch(novel_shards, tmp_path):
    for args in (["plan", "--data", str(novel_shards), "--budget", "soon"],
                 ["plan", "--data", str(tmp_path), "--budget", "15m"],
                 ["train", "--data", str(novel_shards), "--out", str(tmp_path / "r"), "--auto"],
                 ["train", "--data", str(novel_shards), "--out", str(tmp_path / "r"), "--optimizer", "sgd"],
                 ["train", "--data", str(novel_shards), "--out", str(tmp_path / "r"), "--cooldown", "2"]):
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "gpt2zh", *args], capture_output=True, text=True)
        assert p.returncode == 2 and "Traceback" not in p.stderr, (args, p.stderr)
        assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "r").exists()


def test_train_auto_writes_the_plan_into_the_run(novel_shards, tmp_path):
    out = tmp_path / "auto"
    p = subprocess.run([sys.executable, "-m", "gpt2zh", "train", "--data", str(novel_shards), "--out", str(out),
                        "--auto", "--max-minutes", "0.3", "--quiet", "--set", "eval_max_tokens=4096"],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "gpt2zh plan:" in p.stderr and "chosen:" in p.stderr
    saved = json.loads((out / "run_config.json").read_text())
    assert saved["train"]["optimizer"] == "muon" and saved["train"]["cooldown"] == 0.25
    assert saved["train"]["eval_max_tokens"] == 4096                 # --set still wins over the plan
    assert (out / "best" / "config.json").exists()
