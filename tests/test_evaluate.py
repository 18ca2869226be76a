"""Perplexity: the sliding window scores every token once, with the context it should."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from gpt2zh.cli import main
from gpt2zh.evaluate import EvalConfig, evaluate_model, score_tokens, sliding_windows
from gpt2zh.generate import load_token_table, resolve_model_dir
from gpt2zh.model import load_model
from gpt2zh.train import token_char_lengths


def test_windows_cover_every_target_once():
    for n, n_ctx, stride in [(10, 4, 2), (100, 64, 32), (65, 64, 64), (7, 64, 32), (200, 16, 1)]:
        targets = []
        for b, e, first in sliding_windows(n, n_ctx, stride):
            assert e - b <= n_ctx and b < first <= e
            targets += list(range(first, e))
        assert targets == list(range(1, n))


def brute_nll(model, ids, n_ctx, stride):
    """Each target scored alone with exactly the context its sliding window gives it."""
    total = 0.0
    for b, e, first in sliding_windows(len(ids), n_ctx, stride):
        for t in range(first, e):
            x = torch.tensor(ids[b:t])[None]
            logp = F.log_softmax(model(input_ids=x).logits[0, -1].float(), -1)
            total -= logp[ids[t]].item()
    return total


def test_sliding_window_equals_brute_force(tiny_run, novel_shards):
    model_dir = resolve_model_dir(tiny_run)
    model = load_model(model_dir).eval()
    table = load_token_table(model_dir, model.config.vocab_size)
    ids = np.array(table.encode("话说天下大势，分久必合，合久必分。周末七国分争，并入于秦。及秦灭之后，楚、汉分争，"
                                "又并入于汉。汉朝自高祖斩白蛇而起义，一统天下，后来光武中兴，传至献帝，遂分为三国。"))
    assert len(ids) > 64
    char_len = token_char_lengths(table.tok, model.config.vocab_size)
    with torch.no_grad():
        for stride in (32, 63):
            s = score_tokens(model, ids, 64, stride, batch_size=3, char_len=char_len)
            assert s["tokens"] == len(ids) - 1 and s["chars"] == len(ids) - 1
            assert math.isclose(s["nll"], brute_nll(model, ids, 64, stride), rel_tol=1e-4)


def test_eval_of_files_and_shards(tiny_run, novel_shards, corpora, capsys, tmp_path):
    gbk = tmp_path / "sanguo_part.txt"  # a GBK file, cleaned (hard wraps and all) as in prepare
    gbk.write_bytes((corpora / "sanguoyanyi.gbk.txt").read_bytes()[:100_000])
    r = evaluate_model(tiny_run, files=[str(gbk)], cfg=EvalConfig(batch_size=16))
    assert r["files"][0]["tokens"] > 45_000 and 1 < r["ppl"] < 5000
    assert abs(r["ppl_char"] - r["ppl"]) / r["ppl"] < 0.05  # a character vocabulary: nearly equal
    assert 0 <= r["unknown_rate"] < 0.01
    assert main(["eval", "--model", str(tiny_run), "--data", str(novel_shards)]) == 0
    out = capsys.readouterr().out
    assert "ppl" in out and "unknown rate" in out


def test_generate_cli(tiny_run, tmp_path, capsys):
    code = main(["generate", "--model", str(tiny_run), "--prompt", "话说", "--length", "300", "--seed", "1",
                 "--num-samples", "2", "--out-dir", str(tmp_path)])
    assert code == 0
    cap = capsys.readouterr()
    assert cap.out.count("=== sample") == 2 and "8-gram rep" in cap.err
    assert (tmp_path / "sample_001.txt").read_text(encoding="utf-8").startswith("话说")
    assert main(["generate", "--model", str(tmp_path / "nowhere"), "--prompt", "x"]) == 2   # bad input
