"""Hugging Face Hub IDs wherever a model or vocabulary path is taken (issue 17), without network:
two tiny models placed in a Hub-cache layout (HF_HUB_CACHE), HF_HUB_OFFLINE=1. One is shaped
like uer/gpt2-chinese-cluecorpussmall (a BERT vocab.txt, PyTorch weights), the other like a
gpt2zh model (tokenizer.json, safetensors)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CORPORA

BERT_ID, TOK_ID = "test-org/gpt2-chinese-tiny", "test-org/gpt2zh-tiny"
COMMITS = {"main": "a" * 40, "v1": "b" * 40}


def hub_entry(cache: Path, repo: str, files: dict[str, Path | bytes], ref: str = "main") -> Path:
    """One snapshot of `repo` in huggingface_hub's cache layout: blobs, a snapshot folder of
    links to them, and the ref naming the snapshot's commit."""
    root = cache / f"models--{repo.replace('/', '--')}"
    commit = COMMITS[ref]
    snap = root / "snapshots" / commit
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        import hashlib

        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    return snap


def bert_style_model(dest: Path, novel_text: str) -> Path:
    """A GPT2LMHeadModel over a BERT vocab.txt, saved the old way (pytorch_model.bin), as uer's is."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    chars = sorted(set(novel_text) - {"\n", " ", "\r"})
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 4)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
    dest.mkdir(parents=True)
    (dest / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=32, n_layer=1, n_head=2))
    model.save_pretrained(dest, safe_serialization=False)
    (dest / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}', encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, tiny_run) -> Path:
    base = tmp_path_factory.mktemp("hub")
    text = (CORPORA / "shuihuzhuan.txt").read_text(encoding="utf-8")[:60_000]
    bert = bert_style_model(base / "bert", text)
    cache = base / "cache"
    hub_entry(cache, BERT_ID, {f.name: f for f in bert.iterdir()})
    best = tiny_run / "best"
    hub_entry(cache, TOK_ID, {f.name: f for f in best.iterdir() if f.is_file()})
    # another revision of the second model: only its tokenizer differs in name (a tag "v1")
    hub_entry(cache, TOK_ID, {f.name: f for f in best.iterdir() if f.is_file()} | {"README.md": b"v1"}, ref="v1")
    corpus = base / "corpus"
    corpus.mkdir()
    (corpus / "shuihu.txt").write_text(text, encoding="utf-8")
    return cache


def gpt2zh(hub_cache: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "gpt2zh", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_a_bert_vocab_model_by_hub_id_prepares_trains_and_writes(hub_cache, tmp_path):
    """The uer flow: shards with the Hub model's vocabulary, fine-tune from it, write from the run,
    evaluate and write from the Hub model itself."""
    data, run = tmp_path / "data", tmp_path / "run"
    p = gpt2zh(hub_cache, "prepare", str(hub_cache.parent / "corpus"), "--out", str(data), "--vocab", BERT_ID,
               "--num-shards", "4")
    assert p.returncode == 0, p.stderr
    p = gpt2zh(hub_cache, "train", "--data", str(data), "--out", str(run), "--init-from", BERT_ID, "--quiet",
               "--max-steps", "3", "--batch-size", "4", "--eval-interval", "3",
               *(f"--set={kv}" for kv in ("n_ctx=64", "eval_max_tokens=2048")))
    assert p.returncode == 0, p.stderr
    assert (run / "best" / "config.json").exists()
    p = gpt2zh(hub_cache, "eval", "--model", BERT_ID, "--data", str(data))
    assert p.returncode == 0 and "total: ppl " in p.stdout, p.stderr
    p = gpt2zh(hub_cache, "generate", "--model", BERT_ID, "--prompt", "话说", "--length", "30", "--seed", "1")
    assert p.returncode == 0, p.stderr
    assert "\n话说" in p.stdout and len(p.stdout.split("\n")[1]) >= 30


def test_a_tokenizer_json_model_by_hub_id_and_revision(hub_cache, tiny_run, monkeypatch):
    from gpt2zh.decoding import resolve_model_dir
    from gpt2zh.serve import Studio
    from gpt2zh.vocab import resolve_vocab, tokenizer_hash

    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    main, v1 = resolve_model_dir(TOK_ID), resolve_model_dir(TOK_ID + "@v1")
    assert main.name == COMMITS["main"] and v1.name == COMMITS["v1"] and (v1 / "README.md").exists()
    assert (main / "model.safetensors").exists() and (main / "calibration.json").exists()
    assert tokenizer_hash(resolve_vocab(TOK_ID, [])) == tokenizer_hash(resolve_vocab(str(tiny_run / "best"), []))
    assert Studio._model_id(TOK_ID + "@v1", v1) == TOK_ID   # what serve calls it: the ID, not the commit


def test_serve_by_hub_id(hub_cache, monkeypatch):
    from openai import OpenAI

    from test_serve import Server

    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    srv = Server(Path(TOK_ID))
    try:
        client = OpenAI(base_url=srv.url + "/v1", api_key="-", max_retries=0, timeout=60)
        assert client.models.list().data[0].id == TOK_ID
        assert client.completions.create(model=TOK_ID, prompt="话说", max_tokens=4, seed=1).choices[0].text
    finally:
        rc, out = srv.stop()
    assert rc == 0, out


def test_an_id_neither_cached_nor_reachable_fails_fast_and_says_how(hub_cache, novel_shards):
    for args in (["generate", "--model", "nobody/not-cached", "--prompt", "话说"],
                 ["prepare", str(hub_cache.parent / "corpus"), "--out", str(hub_cache.parent / "x"),
                  "--vocab", "nobody/not-cached@v2"]):
        t0 = time.perf_counter()
        p = gpt2zh(hub_cache, *args)
        took = time.perf_counter() - t0
        assert p.returncode == 2, p.stderr
        assert "nobody/not-cached" in p.stderr and "hf download nobody/not-cached" in p.stderr
        assert "HF_HUB_OFFLINE is set" in p.stderr and "Traceback" not in p.stderr
        assert took < 30   # (Python's and torch's start-up: the lookup itself is timed below)
    p = gpt2zh(hub_cache, "train", "--data", str(novel_shards), "--out", str(hub_cache.parent / "r"),
               "--init-from", "nobody/not-cached")
    assert p.returncode == 2 and "hf download nobody/not-cached" in p.stderr
    assert not (hub_cache.parent / "r").exists()


def test_the_lookup_itself_takes_under_a_few_seconds(hub_cache, monkeypatch):
    from gpt2zh.hub import HubError, fetch

    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    for offline in ("1", "0"):   # offline, and (on a machine without network) the Hub unreachable
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        t0 = time.perf_counter()
        with pytest.raises(HubError) as e:
            fetch("nobody/not-cached")
        assert time.perf_counter() - t0 < 15 and "hf download nobody/not-cached" in str(e.value)
    with pytest.raises(HubError, match="no such model directory"):
        fetch("./not/here")
