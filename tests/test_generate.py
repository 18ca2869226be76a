"""Long-form generation: the static-cache decoder, sampling controls, generation past
n_ctx, and the repetition detector and its countermeasures on a model that loops."""
from __future__ import annotations

import random
import re

import pytest
import torch

from gpt2zh.generate import (LongFormGenerator, SamplingConfig, StaticDecoder, apply_repetition_penalty,
                             filter_logits, sample_token)
from gpt2zh.repetition import (RepetitionConfig, SuffixAutomaton, longest_repeated_substring, ngram_repetition,
                               repetition_report)


def brute_repeated_suffix(s) -> int:
    for n in range(len(s) - 1, 0, -1):
        suffix = s[-n:]
        if any(s[i:i + n] == suffix for i in range(len(s) - n)):
            return n
    return 0


def test_suffix_automaton_matches_brute_force():
    rng = random.Random(0)
    for _ in range(30):
        s = [rng.choice("ab。c") for _ in range(rng.randint(1, 80))]
        sam = SuffixAutomaton()
        for i, c in enumerate(s):
            assert sam.extend(c) == brute_repeated_suffix(s[: i + 1])
        assert longest_repeated_substring(s) == max(brute_repeated_suffix(s[: i + 1]) for i in range(len(s)))


def test_dry_penalty_matches_its_definition():
    rng = random.Random(1)
    for _ in range(20):
        s = [rng.choice("abc") for _ in range(60)]
        pen = SuffixAutomaton(s).dry_penalties(allowed=3, base=2.0, multiplier=1.0)
        for t in "abc":
            # longest L such that the last L symbols followed by t occurred earlier
            L = max((n for n in range(1, len(s)) if any(s[i:i + n] == s[-n:] and s[i + n] == t
                                                         for i in range(len(s) - n))), default=0)
            assert pen.get(t, 0.0) == (2.0 ** (min(L, 64) - 3) if L >= 3 else 0.0), (t, L)


def test_repetition_penalty_is_sign_aware():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    apply_repetition_penalty(logits, [[0, 1]], 2.0)
    assert logits.tolist() == [[1.0, -4.0, 1.0]]  # both repeated tokens became less likely


def test_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, 2, 1.0)[0, 2:]).all()
    kept = ~torch.isinf(filter_logits(logits, 0, 0.7)[0])
    assert kept.tolist() == [True, True, False, False]


def test_sample_token_draws_from_the_filtered_distribution():
    """The top-k fast path samples the same distribution as filter_logits + softmax."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, generator=g) * 2
    for top_k, top_p in ((10, 1.0), (10, 0.8), (0, 0.9)):
        expected = filter_logits(logits[None] / 0.7, top_k, top_p)[0].softmax(-1)
        counts = torch.zeros(500)
        for _ in range(20000):
            counts[sample_token(logits, 0.7, top_k, top_p, g)] += 1
        assert counts[expected == 0].sum() == 0              # nothing outside the filter
        assert (counts / 20000 - expected).abs().max() < 0.015


def test_report_metrics():
    r = repetition_report("天下大势分久必合合久必分天下大势")
    assert r["longest_repeat"] == 4 and r["rep_4gram"] > 0 and 0 < r["distinct_2"] < 1
    assert ngram_repetition("一二三四五六七八九十", 4) == 0.0


def test_static_decoder_matches_transformers(tiny_run):
    gen = LongFormGenerator(tiny_run, device="cpu")
    model = gen.model
    ids = torch.randint(0, 3000, (2, 50))
    ref = model(input_ids=ids).logits
    dec = StaticDecoder(model, 2)
    dec.forward(ids[:1, :20], torch.tensor([0]), rows=slice(0, 1))  # rows prefilled to different lengths
    dec.forward(ids[1:, :30], torch.tensor([0]), rows=slice(1, 2))
    pos = torch.tensor([20, 30])
    for _ in range(15):
        step = torch.stack([ids[0, pos[0]], ids[1, pos[1]]])[:, None]
        out = dec.forward(step, pos)
        assert torch.allclose(out[0], ref[0, pos[0]], atol=1e-4)
        assert torch.allclose(out[1], ref[1, pos[1]], atol=1e-4)
        pos = pos + 1


def test_static_shape_step_equals_the_dynamic_one(tiny_run):
    """The step a CUDA graph records (attention over the whole cache, masked) gives the same
    logits as the CPU path (attention over the filled part)."""
    gen = LongFormGenerator(tiny_run, device="cpu")
    ids = torch.randint(0, 3000, (2, 40))
    a, b = StaticDecoder(gen.model, 2), StaticDecoder(gen.model, 2)
    for dec in (a, b):
        dec.forward(ids[:1, :10], torch.tensor([0]), rows=slice(0, 1))
        dec.forward(ids[1:, :25], torch.tensor([0]), rows=slice(1, 2))
    pos = torch.tensor([10, 25])
    for _ in range(10):
        step = torch.stack([ids[0, pos[0]], ids[1, pos[1]]])[:, None]
        assert torch.allclose(a.forward(step, pos), b.step_static(step, pos), atol=1e-5)
        pos = pos + 1
    assert a.capture() is False  # no CUDA here: nothing to capture, eager steps


def test_static_decoder_follows_gpt2_attention_options():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=3, n_head=4,
                     scale_attn_by_inverse_layer_idx=True, activation_function="gelu", n_inner=48)
    torch.manual_seed(0)
    model = GPT2LMHeadModel._from_config(cfg, attn_implementation="eager").eval()
    ids = torch.randint(0, 64, (1, 20))
    dec = StaticDecoder(model, 1)
    out = dec.forward(ids, torch.tensor([0]))
    assert torch.allclose(out[0], model(input_ids=ids).logits[0, -1], atol=1e-4)


def test_generation_far_past_the_context(tiny_run):
    gen = LongFormGenerator(tiny_run, device="cpu")
    assert gen.n_ctx == 64
    streamed = []
    cfg = SamplingConfig(length=600, seed=7)
    s = gen.generate("话说天下大势，", cfg, on_text=lambda i, t: streamed.append(t))[0]
    assert len(s["text"]) == 600 and s["refills"] >= 10  # ten windows' worth, re-anchored
    assert "".join(streamed)[:600] == s["text"]
    assert "<|endoftext|>" not in s["text"] and "<unk>" not in s["text"] and "<pad>" not in s["text"]
    assert not re.search(r"[\u4e00-\u9fff] [\u4e00-\u9fff]", s["text"])
    again = gen.generate("话说天下大势，", cfg)[0]
    assert again["text"] == s["text"]  # the seed makes it repeatable


def test_samples_in_a_batch_differ(tiny_run):
    gen = LongFormGenerator(tiny_run, device="cpu")
    out = gen.generate("宋江", SamplingConfig(length=80, seed=3, num_samples=4, batch_size=4))
    assert len({s["text"] for s in out}) == 4
    assert [s["sample"] for s in out] == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def looping_model(corpora, tmp_path_factory):
    """A tiny model over-trained on three sentences repeated a thousand times: it loops."""
    from gpt2zh.config import RunConfig
    from gpt2zh.prepare import PrepareConfig, prepare
    from gpt2zh.train import TrainJob, train

    text = (corpora / "shuihuzhuan.txt").read_text(encoding="utf-8").replace("\r\n", "\n")
    paras = [p.strip()[:40] for p in text.split("\n") if len(p.strip()) > 40][20:23]
    d = tmp_path_factory.mktemp("loop")
    (d / "loop.txt").write_text("\n".join(["\n".join(paras)] * 1000), encoding="utf-8")
    prepare(PrepareConfig(inputs=[str(d / "loop.txt")], out=str(d / "shards"), num_shards=4, progress=False))
    run = RunConfig.from_name("tiny").override(["n_layer=2", "n_embd=64", "n_head=4", "n_ctx=64", "batch_size=16",
                                                "dropout=0.0", "max_steps=300", "lr=3e-3", "optimizer=adamw", "cooldown=0",
                                                "eval_interval=300", "save_steps=300", "log_interval=100"])
    train(TrainJob(str(d / "shards"), str(d / "run"), run, progress=False))
    return LongFormGenerator(d / "run", device="cpu"), paras[0][:10]


@pytest.mark.parametrize("counter", [
    RepetitionConfig(mode="penalize"),                      # DRY alone
    RepetitionConfig(mode="rollback", dry_multiplier=0.0),  # rollback and resample alone
    RepetitionConfig(mode="rollback"),                      # the default: both
])
def test_countermeasures_break_the_loop(looping_model, counter):
    gen, prompt = looping_model
    # (the repetition penalty off too: these are the repetition guard's own countermeasures)
    off = gen.generate(prompt, SamplingConfig(length=1500, seed=3, temperature=0.8, repetition_penalty=1.0,
                                              repetition=RepetitionConfig(mode="off")))[0]["report"]
    assert off["rep_8gram"] > 0.3 and off["longest_repeat"] > 40  # it loops
    on = gen.generate(prompt, SamplingConfig(length=1500, seed=3, temperature=0.8, repetition_penalty=1.0,
                                             repetition=counter))[0]
    rep = on["report"]
    assert rep["rep_8gram"] < off["rep_8gram"] / 2, rep
    assert rep["longest_repeat"] <= counter.max_copy + 10, rep
    if counter.dry_multiplier == 0.0:
        assert rep["rolled_back"] > 0 and rep["detector_fired"] >= rep["rolled_back"]


def test_repeated_failures_stop_with_a_status(looping_model):
    gen, prompt = looping_model
    rc = RepetitionConfig(mode="rollback", dry_multiplier=0.0, max_copy=3, max_failures=2, boost=0.0)
    s = gen.generate(prompt, SamplingConfig(length=1500, seed=3, temperature=0.3, repetition_penalty=1.0,
                                            repetition=rc))[0]
    assert s["status"] == "stopped: repetition" and s["report"]["stopped"]
    assert len(s["text"]) < 1500


def test_a_gpt2_chinese_style_model_directory(corpora, tmp_path):
    """A GPT2LMHeadModel directory with only a BERT vocab.txt beside it (GPT2-Chinese's layout)."""
    import shutil

    from gpt2zh.config import RunConfig
    from gpt2zh.prepare import PrepareConfig, prepare
    from gpt2zh.train import TrainJob, train

    text = (corpora / "shuihuzhuan.txt").read_text(encoding="utf-8")
    chars = sorted(set(text) - set("\r\n"))
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars),
                                        encoding="utf-8")
    prepare(PrepareConfig(inputs=[str(corpora / "shuihuzhuan.txt")], out=str(tmp_path / "data"),
                          vocab=str(tmp_path / "vocab.txt"), num_shards=2, progress=False))
    run = RunConfig.from_name("tiny").override(["n_layer=1", "n_embd=32", "n_head=2", "n_ctx=32", "max_steps=5"])
    train(TrainJob(str(tmp_path / "data"), str(tmp_path / "run"), run, progress=False))
    model = tmp_path / "gpt2-chinese-model"
    shutil.copytree(tmp_path / "run" / "best", model)
    for name in ("tokenizer.json", "tokenizer_config.json", "gpt2zh.json"):
        (model / name).unlink()
    shutil.copy(tmp_path / "vocab.txt", model / "vocab.txt")
    gen = LongFormGenerator(model, device="cpu")
    s = gen.generate("宋江", SamplingConfig(length=200, seed=1))[0]
    assert len(s["text"]) == 200
    assert "[" not in s["text"] and "#" not in s["text"]  # no [SEP]/[CLS]/[UNK] or ## debris


def test_a_top_p_below_float32s_range_keeps_the_best_token():
    """Found by bench/fuzz_serve.py: top_p 1e-308 rounds to 0 in a float32 comparison, which
    dropped every token (an invalid multinomial) instead of keeping the best one."""
    import torch

    from gpt2zh.decoding import sample_token

    logits = torch.randn(300, generator=torch.Generator().manual_seed(0))
    best = int(logits.argmax())
    assert sample_token(logits.clone(), 1.0, 40, 1e-308) == best
    assert sample_token(logits.clone(), 1.0, 0, 1e-308) == best
