"""Chapters that stay alive: the degeneration measures on real human text and on the failures
they are for, the reference model, the human bands stored with a trained model, and the 异火
test: a tiny model trained until it fixates on one word is caught, and the guard brings it back."""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY

from gpt2zh.decode import read_text_file
from gpt2zh.degeneration import (CALIBRATION_FILE, COLLAPSE_LIMIT, REFERENCE_FILE, Calibration, collapse,
                                 fixation, flagged_spans, function_chars, report, window_starts)
from gpt2zh.reference import CharNgram


@pytest.fixture(scope="module")
def xiyouji(corpora) -> str:
    return read_text_file(corpora / "xiyouji.gbk.txt").replace("\r", "")


def test_collapse_and_fixation_on_human_text_and_on_the_failures(xiyouji):
    shares = [collapse(xiyouji[i:i + 200])[0] for i in window_starts(len(xiyouji), 200)]
    assert len(shares) > 7000 and max(shares) <= COLLAPSE_LIMIT   # no human window collapses
    assert np.percentile(shares, 90) < 0.07
    demo = "…民族族族族民族族族社族族族族族…" * 14          # the demo's collapse, from the issue
    share, char = collapse(demo)
    assert char == "族" and share > 0.6
    assert collapse("，，，。，，“，，" * 20)[0] > 0.5     # a collapse onto punctuation counts too

    stop = frozenset(function_chars(xiyouji))
    assert {"了", "不", "一"} <= stop and "悟" not in stop
    human = [fixation(xiyouji[i:i + 1000], stop)[0] for i in window_starts(len(xiyouji), 1000)]
    sentences = [s for s in re.split(r"(?<=[。！？])", xiyouji[20000:26000]) if len(s) > 4]
    yihuo = "".join(s[:3] + "异火" + s[3:] for s in sentences)   # every sentence names the same word
    share, char, word = fixation(yihuo[:1000], stop)
    assert share > np.percentile(human, 99) + 0.2 and word == "异火" and char in word


def test_fixation_names_the_same_character_whatever_the_hash_seed():
    # 异 and 火 stand in every sentence together: the tie goes to the one written first, in every
    # process (a set's order follows PYTHONHASHSEED; it made the same --seed write another chapter)
    code = ("from gpt2zh.degeneration import fixation; "
            "print(fixation('他说火异不好。' + '我见异火了。' * 5 + '异火烧山。', frozenset('了')))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout for h in range(6)}
    assert len(outs) == 1 and "'火'" in outs.pop()


def test_the_reference_is_a_distribution_and_prefers_human_text(xiyouji, tmp_path):
    cut = int(len(xiyouji) * 0.9)
    ref = CharNgram.train([xiyouji[:cut]], order=5)
    held_out = xiyouji[cut:cut + 20000]
    ctx = held_out[:40]
    # P(c | context) over the whole alphabet and the unknown character sums to one
    probs = [np.exp(ref.logprobs(ctx + c)[-1]) for c in ref.chars] + [np.exp(ref.logprobs(ctx + "\U0002a6a5")[-1])]
    assert sum(probs) == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(0)
    shuffled = "".join(rng.permutation(list(held_out)))
    assert ref.perplexity(held_out) < 250 < 5 * 250 < ref.perplexity(shuffled)
    assert ref.perplexity(held_out) < CharNgram.train([xiyouji[:cut]], order=1).perplexity(held_out) / 2
    ref.save(tmp_path / "ref.npz")
    again = CharNgram.load(tmp_path / "ref.npz")
    assert np.array_equal(again.logprobs(held_out[:3000]), ref.logprobs(held_out[:3000]))


def test_training_stores_the_human_bands_with_the_model(tiny_run):
    for d in (tiny_run, tiny_run / "best"):
        assert (d / CALIBRATION_FILE).exists() and (d / REFERENCE_FILE).exists(), d
    cal = Calibration.load(tiny_run / "best" / CALIBRATION_FILE)
    assert set(cal.percentiles) == {"collapse", "fixation", "rep4", "distinct2", "guard"}
    p = cal.percentiles
    assert p["collapse"]["p99"] < COLLAPSE_LIMIT and p["collapse"]["windows"] > 1000
    assert p["guard"]["p5"] < p["guard"]["p50"] < p["guard"]["p95"]


def test_a_sample_that_collapsed_is_never_ok(tiny_run):
    cal = Calibration.load(tiny_run / CALIBRATION_FILE)
    text = "话说那猴王领着众猴，" * 8 + "国" * 300 + "民族族族族民族族族社族族族" * 20
    r = report(text, cal)
    assert r["failure"]["kind"] == "collapsed" and r["failure"]["unit"] == "国"
    assert r["failure"]["at"] <= 80
    assert r["windows"]["collapse"]["out"] >= 3
    spans = flagged_spans(r)
    assert spans and spans[0][2] == "collapse" and spans[0][0] <= 100


def test_a_model_without_bands_generates_with_a_notice(tiny_run, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_run / "best", bare, ignore=shutil.ignore_patterns(CALIBRATION_FILE, REFERENCE_FILE))
    out = subprocess.run([sys.executable, "-m", "gpt2zh", "generate", "--model", str(bare), "--prompt", "话说",
                          "--length", "300", "--seed", "1", "--out-dir", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "has no human bands" in out.stderr and "gpt2zh calibrate --data" in out.stderr
    sample = json.loads((tmp_path / "out" / "sample_000.json").read_text(encoding="utf-8"))
    assert "band" not in sample["measures"]["windows"]["collapse"]
    assert "largest one-character share of a window" in out.stderr   # the report still says what it can


def test_the_settings_are_range_checked_by_name(tiny_run):
    out = subprocess.run([sys.executable, "-m", "gpt2zh", "generate", "--model", str(tiny_run), "--prompt", "话说",
                          "--presence-penalty", "3"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--presence-penalty must be <= 2.0" in out.stderr
    out = subprocess.run([sys.executable, "-m", "gpt2zh", "generate", "--model", str(tiny_run), "--prompt", "话说",
                          "--density-penalty", "-1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--density-penalty must be >= 0.0" in out.stderr


# ----------------------------------------------------------------------------
# The 异火 test


@pytest.fixture(scope="module")
def yihuo_run(xiyouji, novel_shards, tmp_path_factory):
    """A tiny model trained on text in which every sentence names 异火, calibrated on human text
    (the novels), as a user's model that fixates would be."""
    from gpt2zh.config import RunConfig
    from gpt2zh.degeneration import calibrate_shards, copy_to
    from gpt2zh.prepare import PrepareConfig, prepare
    from gpt2zh.train import TrainJob, train

    work = tmp_path_factory.mktemp("yihuo")
    sentences = [s for s in re.split(r"(?<=[。！？])", xiyouji[:300_000]) if len(s) > 4]
    (work / "yihuo.txt").write_text("".join(s[:3] + "异火" + s[3:] for s in sentences), encoding="utf-8")
    prepare(PrepareConfig(inputs=[str(work / "yihuo.txt")], out=str(work / "data"), progress=False))
    run = RunConfig.from_name("tiny").override(TINY + ["max_steps=250", "eval_interval=250", "save_steps=250",
                                                       "lr=3e-3", "log_interval=50"])
    train(TrainJob(data=str(work / "data"), out=str(work / "run"), run=run, progress=False))
    calibrate_shards(novel_shards, work / "run")   # the human bands: the novels, not the 异火 text
    copy_to(work / "run", work / "run" / "best")
    return work / "run"


def test_the_yihuo_model_is_caught_and_brought_back(yihuo_run):
    from gpt2zh.generate import LongFormGenerator, SamplingConfig
    from gpt2zh.repetition import RepetitionConfig

    gen = LongFormGenerator(yihuo_run)
    off = gen.generate("却说那大圣", SamplingConfig(length=3000, seed=1, repetition_penalty=1.0,
                                                  repetition=RepetitionConfig(mode="off", dry_multiplier=0)))[0]
    assert off["status"].startswith("fixated on "), off["status"]   # the measure names it, and where it began
    assert "异" in off["status"] or "火" in off["status"]
    w_off = off["measures"]["windows"]
    assert w_off["fixation"]["share_out"] >= 0.5
    # the guard's own countermeasures (detection, rollback, focus penalty), the repetition penalty
    # off: on a model this small the default penalty (1.3) buys the fixation back with salad (the
    # reference judged 73% of its windows out of band; bench/RESULTS.md has the same on the
    # over-trained model)
    # several seeds: a countermeasure that holds on one trajectory only is luck (seeds 4-8 are
    # kept out of the test; bench/RESULTS.md has all eight)
    for seed in (1, 2, 3):
        on = gen.generate("却说那大圣", SamplingConfig(length=3000, seed=seed, repetition_penalty=1.0))[0]
        w_on = on["measures"]["windows"]
        assert on["report"]["fired_by"].get("fixation", 0) >= 1, seed          # the detector fired on it
        assert not on["status"].startswith("fixated"), (seed, on["status"])
        # back inside the human band after the first window (the detector needs 1,000 characters)
        assert w_on["fixation"]["share_out"] <= 0.2, seed
        assert max(w_on["collapse"]["values"]) <= COLLAPSE_LIMIT, seed
        # ... without buying it with salad: the reference judges no more windows out of band than before
        assert w_on["guard"]["share_out"] <= w_off["guard"]["share_out"] + 0.1, seed


def test_the_fixation_penalty_rises_while_the_word_persists_and_spares_the_cure():
    from gpt2zh.decoding import TokenTable
    from gpt2zh.guard import Guard
    from gpt2zh.sampling import SamplingConfig

    rng = random.Random(0)
    filler = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉"
    chars = sorted(set(filler + "异火。"))
    table = TokenTable(tok=None, pieces=chars, banned=[], eos_id=None)
    ids = {c: i for i, c in enumerate(chars)}
    cal = Calibration({"fixation": {"p1": 0.1, "p99": 0.5}}, stop="", source={})
    cfg = SamplingConfig(length=3000, repetition_penalty=1.0)
    step = cfg.repetition.focus_penalty
    guard = Guard(cfg, table, prompt=[], sentence_end_ids={ids["。"]}, calibration=cal, vocab_size=len(chars))
    tokens: list[int] = []

    def write(word: str) -> int:
        """One sentence, as the engine writes it: a rollback cuts the tokens the guard asks."""
        s = "".join(rng.sample(filler, 9))
        for c in s[:3] + word + s[3:] + "。":
            tokens.append(ids[c])
            back = guard.observe(tokens, len(tokens), unstreamed=len(tokens))
            if back:
                removed = tokens[-back:]
                del tokens[-back:]
                guard.forget(tokens, removed, len(tokens))
                return back
        return 0

    def penalty(c: str) -> float:
        return guard.focus[ids[c]][0]

    while not write("异火"):                          # every sentence names 异火 until the detector fires
        assert len(tokens) < 1200
    assert len(tokens) >= 1000 - 12 and guard.events.reasons["rollback:fixation"] == 1
    assert penalty("异") == penalty("火") == step     # the whole word, not one of its characters
    # a sentence without the word is the cure: kept, not a firing, the penalty held where it is
    fired = guard.events.fired
    assert write("") == 0 and guard.events.fired == fired and penalty("异") == step
    # the word again while the window is still fixated: rolled back, and the penalty a step higher
    assert write("异火") == 12 and penalty("异") == penalty("火") == 2 * step
    for _ in range(6):
        write("异火")
    assert penalty("异") == 4 * step                  # and no higher
