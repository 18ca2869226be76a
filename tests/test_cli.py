"""The command line as a user meets it: help texts and the main job."""
from __future__ import annotations

import subprocess
import sys

import pytest

from gpt2zh.cli import main


@pytest.mark.parametrize("cmd", ["prepare", "train", "eval", "generate", "serve", "demo", "import-gpt2chinese"])
def test_help_explains_every_command(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert len(capsys.readouterr().out) > 300


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "gpt2zh", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "prepare" in out.stdout and "generate" in out.stdout


def test_bad_config_is_a_clear_error(novel_shards, tmp_path, capsys):
    code = main(["train", "--data", str(novel_shards), "--out", str(tmp_path / "r"), "--set", "n_head=3"])
    assert code == 2 and "divisible" in capsys.readouterr().err
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert code == 2 and "manifest.json" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()   # a failed start leaves no --out behind


def test_demo_runs_every_stage_on_the_default_corpus(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code = main(["demo", "--out", str(tmp_path / "demo"), "--minutes", "0.05", "--length", "600"])
    assert code == 0
    out = capsys.readouterr().out
    assert "every character accounted for: yes" in out and "validation perplexity" in out
    assert "8-gram rep" in out
    assert (tmp_path / "demo" / "run" / "loss.png").exists()
    chapter = (tmp_path / "demo" / "chapter" / "sample_000.txt").read_text(encoding="utf-8")
    assert chapter.startswith("在新的一年里，") and len(chapter) > 600
    assert (tmp_path / "demo" / "corpus" / "renmin_ribao_199801.txt").exists()   # everything under --out
    assert not (tmp_path / "cache" / "gpt2zh").exists()
