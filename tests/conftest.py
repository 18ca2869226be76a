"""Shared fixtures: the real novels in ../shared/corpora, a shard set made from them,
and a tiny model trained on it (once per session)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPORA = Path(os.environ.get("GPT2ZH_CORPORA", ROOT.parent / "shared" / "corpora"))
NOVELS = {
    "xiyouji.gbk.txt": ("gb18030", 732_153),
    "sanguoyanyi.gbk.txt": ("gb18030", 624_874),
    "shuihuzhuan.txt": ("utf-8", 899_304),
}
# Tiny shapes so that a real training step takes milliseconds on 2 CPU cores.
# (the tests' recipe is pinned: the notes' fixed-rate AdamW, not the preset's Muon + cool-down; the
# tests that exercise Muon or the cool-down ask for it)
TINY = ["n_layer=2", "n_head=4", "n_embd=64", "n_ctx=64", "batch_size=8", "dropout=0.0",
        "eval_max_tokens=4096", "log_interval=1", "prefetch=2", "optimizer=adamw", "cooldown=0", "lr=1e-3"]


def pytest_configure(config):
    if not CORPORA.is_dir():
        raise pytest.UsageError(f"shared corpora not found at {CORPORA} (set GPT2ZH_CORPORA)")


@pytest.fixture(scope="session")
def corpora() -> Path:
    return CORPORA


@pytest.fixture(scope="session")
def novel_shards(tmp_path_factory) -> Path:
    """All six shared files (three novels, three noisy copies) in 100 shards, char vocabulary."""
    from gpt2zh.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("shards") / "novels"
    prepare(PrepareConfig(inputs=[str(CORPORA)], out=str(out), progress=False))
    return out


@pytest.fixture(scope="session")
def tiny_run(novel_shards, tmp_path_factory) -> Path:
    """A tiny model trained for 60 steps on the novels."""
    from gpt2zh.config import RunConfig
    from gpt2zh.train import TrainJob, train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    run = RunConfig.from_name("tiny").override(TINY + ["max_steps=60", "eval_interval=30", "save_steps=30",
                                                       "lr=1e-3"])
    train(TrainJob(data=str(novel_shards), out=str(out), run=run, progress=False))
    return out


def corrupted_copy(shards: Path, dest: Path, shard: str) -> Path:
    """A copy of a shard set with one bit of `shard` flipped (its sha256 no longer matches)."""
    import shutil

    shutil.copytree(shards, dest)
    data = bytearray((dest / shard).read_bytes())
    data[5] ^= 1
    (dest / shard).write_bytes(bytes(data))
    return dest
