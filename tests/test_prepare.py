"""`gpt2zh prepare` end to end: shards, manifest, vocabularies, migration, bad input."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from conftest import corrupted_copy
from gpt2zh.cli import main
from gpt2zh.corpus import CleanOptions, find_inputs, learn_corpus, load_corpus, split_document
from gpt2zh.shards import ShardError, _sha256, import_gpt2_chinese, load_tokenizer, load_tokens, read_manifest
from gpt2zh.vocab import load_tokenizer_json, load_vocab_txt, resolve_vocab, GB2312_TOKENIZER


def expected_train_text(inputs, val_fraction=0.1, eos="<|endoftext|>", dropped=()):
    """The training text prepare should write: every file cleaned with what the corpus-level
    rules learn from all inputs, less the documents it dropped as duplicates."""
    parts = []
    learned = learn_corpus(inputs, CleanOptions()) if len(find_inputs(inputs)) > 1 else None
    for _, docs in load_corpus(inputs, CleanOptions(), learned=learned):
        for d in docs:
            if d.source not in dropped:
                parts.append(split_document(d.text, val_fraction)[0] + eos)
    return "".join(parts)


def duplicates(manifest):
    return {d["doc"] for f in manifest["cleaning"]["files"] for d in f["duplicates"]}


def test_novels_round_trip_through_100_shards(novel_shards, corpora):
    m = read_manifest(novel_shards)
    assert len(m["shards"]) == 100 and m["dtype"] == "uint16" and m["val"]["tokens"] > 0
    assert m["cleaning"]["balanced"]
    total = m["cleaning"]["total"]
    assert total["input_chars"] == total["kept_chars"] + sum(total["dropped"].values())
    assert total["input_chars"] == sum(f["input_chars"] for f in m["cleaning"]["files"])
    tokens = load_tokens(novel_shards)
    assert len(tokens) == m["train_tokens"] == sum(s["tokens"] for s in m["shards"])
    tok = load_tokenizer(novel_shards)
    decoded = tok.decode(tokens.tolist(), skip_special_tokens=False)
    # the three noisy copies are other editions of the three novels: named and dropped
    assert sorted(Path(d).name for d in duplicates(m)) == ["sanguoyanyi_updatetime.txt", "shuihuzhuan_tianya.txt",
                                                           "xiyouji_rain8.gbk.txt"]
    assert decoded == expected_train_text([corpora], dropped=duplicates(m))  # exactly the cleaned training text
    assert m["cleaning"]["tokens"]["val_unknown"] > 0  # val-only characters are unknown: counted, not hidden
    report = json.loads((novel_shards / "report.json").read_text(encoding="utf-8"))
    assert 0 < report["tokens"]["val_unknown_rate"] < 0.005


def test_shards_load_in_transformers(novel_shards):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(novel_shards))
    text = "话说天下大势，分久必合，合久必分。\n第一回"
    ours = load_tokenizer(novel_shards).encode(text, add_special_tokens=False).ids
    assert hf(text, add_special_tokens=False)["input_ids"] == ours
    assert hf.decode(ours) == text and hf.eos_token == "<|endoftext|>"


def test_gb2312_vocabulary_is_built_in():
    tok = load_tokenizer_json(GB2312_TOKENIZER)
    vocab = tok.get_vocab()
    hanzi = [t for t in vocab if len(t) == 1 and "\u4e00" <= t <= "\u9fff"]
    assert len(hanzi) == 6763
    for ch in "，。！？：；“”、《》（）0aZ\n ":
        assert ch in vocab, ch
    assert vocab["啊"] == load_tokenizer_json(GB2312_TOKENIZER).get_vocab()["啊"]  # fixed ids


def test_word_vocabulary_falls_back_to_characters(corpora):
    docs = [d.text for _, ds in load_corpus([corpora / "xiyouji.gbk.txt"]) for d in ds]
    train = [split_document(d, 0.1)[0] for d in docs]
    tok = resolve_vocab("words", train)
    vocab = tok.get_vocab()
    assert "行者" in vocab and "师父" in vocab
    ids = tok.encode(train[0][:5000], add_special_tokens=False).ids
    assert tok.token_to_id("<unk>") not in ids
    assert len(ids) < 0.9 * 5000  # words, not characters (jieba itself: ~0.78 on this classical text)
    assert tok.decode(ids, skip_special_tokens=False) == train[0][:5000]


def test_word_shards_reload_with_their_tokenizer(tmp_path, capsys, corpora):
    assert run_cli(capsys, corpora / "sanguoyanyi.gbk.txt", "--out", tmp_path / "w", "--vocab", "words",
                   "--num-shards", 3)[0] == 0
    tok = load_tokenizer(tmp_path / "w")  # the manifest's hash matches the saved tokenizer
    text = tok.decode(load_tokens(tmp_path / "w").tolist(), skip_special_tokens=False)
    assert text == expected_train_text([corpora / "sanguoyanyi.gbk.txt"])


def test_vocab_txt_like_gpt2_chinese(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "，", "。"] + list("话说天下大势分久必合")
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = load_vocab_txt(tmp_path / "vocab.txt")
    ids = tok.encode("话说天下大势，\n分久必合。", add_special_tokens=False).ids
    assert ids[:3] == [7, 8, 9] and ids[7] == 3  # the line break sits at [SEP]'s id
    assert tok.decode(ids, skip_special_tokens=False) == "话说天下大势，\n分久必合。"


def test_import_gpt2_chinese_shards(tmp_path, corpora):
    text = (corpora / "shuihuzhuan.txt").read_text(encoding="utf-8")[:20000].replace("\r\n", "\n")
    chars = sorted(set(text) - {"\n"})
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars),
                                        encoding="utf-8")
    tok = load_vocab_txt(tmp_path / "vocab.txt")
    ids = tok.encode(text, add_special_tokens=False).ids
    src = tmp_path / "tokenized"
    src.mkdir()
    for i, part in enumerate(np.array_split(np.array(ids), 3)):  # GPT2-Chinese's format: ids as text
        (src / f"tokenized_train_{i}.txt").write_text(" ".join(map(str, part.tolist())), encoding="utf-8")
    m = import_gpt2_chinese(src, tmp_path / "vocab.txt", tmp_path / "out")
    assert len(m["shards"]) == 3
    assert load_tokens(tmp_path / "out").tolist() == ids
    assert load_tokenizer(tmp_path / "out").decode(ids, skip_special_tokens=False) == text


def test_corrupted_shard_is_named(novel_shards, tmp_path):
    copy = corrupted_copy(novel_shards, tmp_path / "copy", "train_042.bin")
    with pytest.raises(ShardError, match="train_042.bin"):
        load_tokens(copy)
    shard = copy / "train_042.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(ShardError, match="train_042.bin.*bytes"):
        load_tokens(copy)


# ----------------------------------------------------------------------------
# Bad input through the CLI: a clear message, a non-zero exit, no traceback, nothing half-written


def run_cli(capsys, *args):
    code = main(["prepare", "--quiet", *map(str, args)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_bad_inputs_get_clear_errors(tmp_path, capsys, corpora):
    empty_dir = tmp_path / "empty_dir"
    empty_dir.mkdir()
    code, err = run_cli(capsys, empty_dir, "--out", tmp_path / "o1")
    assert code == 2 and "no .txt" in err

    (tmp_path / "empty.txt").write_bytes(b"")
    code, err = run_cli(capsys, tmp_path / "empty.txt", "--out", tmp_path / "o2")
    assert code == 2 and "empty file" in err

    (tmp_path / "cover.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    code, err = run_cli(capsys, tmp_path / "cover.txt", "--out", tmp_path / "o3")
    assert code == 2 and "binary" in err and "cover.txt" in err

    (tmp_path / "english.txt").write_text("No Chinese here at all.\nJust English.\n", encoding="utf-8")
    code, err = run_cli(capsys, tmp_path / "english.txt", "--out", tmp_path / "o4")
    assert code == 2 and "no Chinese text" in err

    (tmp_path / "a_file").write_text("x")
    code, err = run_cli(capsys, corpora / "xiyouji.gbk.txt", "--out", tmp_path / "a_file" / "sub")
    assert code == 2 and "a_file" in err
    for o in ("o1", "o2", "o3", "o4"):
        assert not (tmp_path / o).exists()
    assert not list(tmp_path.glob(".o*.tmp-*"))  # no half-written shard set left behind


def test_existing_shards_need_overwrite(tmp_path, capsys, corpora):
    src = corpora / "sanguoyanyi.gbk.txt"
    out = tmp_path / "out"
    assert run_cli(capsys, src, "--out", out, "--num-shards", 5)[0] == 0
    before = (out / "manifest.json").read_text()
    code, err = run_cli(capsys, src, "--out", out)
    assert code == 2 and "--overwrite" in err
    assert (out / "manifest.json").read_text() == before
    assert run_cli(capsys, src, "--out", out, "--num-shards", 7, "--overwrite")[0] == 0
    assert len(read_manifest(out)["shards"]) == 7


def test_mixed_encodings_in_one_directory(tmp_path, capsys, corpora):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(corpora / "xiyouji.gbk.txt", mixed / "a.txt")
    shutil.copy(corpora / "shuihuzhuan.txt", mixed / "b.txt")
    code, _ = run_cli(capsys, mixed, "--out", tmp_path / "out", "--num-shards", 4)
    assert code == 0
    m = read_manifest(tmp_path / "out")
    assert [s["encoding"] for s in m["sources"]] == ["gb18030", "utf-8"]
    text = load_tokenizer(tmp_path / "out").decode(load_tokens(tmp_path / "out").tolist())
    assert "美猴王" in text and "宋江" in text


def test_50mb_file_without_line_breaks(tmp_path, capsys, corpora):
    chunk = re.sub(r"\s+", "", (corpora / "shuihuzhuan.txt").read_text(encoding="utf-8"))
    data = (chunk * (50_000_000 // len(chunk.encode("utf-8")) + 1)).encode("utf-8")[:50_000_000]
    data = data[: len(data.decode("utf-8", errors="ignore").encode("utf-8"))]
    (tmp_path / "big.txt").write_bytes(data)
    del data
    code, err = run_cli(capsys, tmp_path / "big.txt", "--out", tmp_path / "out", "--num-shards", 10)
    assert code == 0, err
    m = read_manifest(tmp_path / "out")
    assert m["train_tokens"] + m["val"]["tokens"] > 15_000_000
    assert m["cleaning"]["balanced"]
    assert all(s["sha256"] == _sha256(np.fromfile(tmp_path / "out" / s["file"], dtype=np.uint16))
               for s in m["shards"][:2])


def test_a_binary_file_inside_a_corpus_folder_is_skipped_and_reported(tmp_path, capsys, corpora):
    folder = tmp_path / "books"
    folder.mkdir()
    shutil.copy(corpora / "xiyouji.gbk.txt", folder / "a.txt")
    (folder / "cover.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    code, err = run_cli(capsys, folder, "--out", tmp_path / "out", "--num-shards", 3)
    assert code == 0, err
    files = read_manifest(tmp_path / "out")["cleaning"]["files"]
    assert files[1]["path"].endswith("cover.txt") and "binary" in files[1]["skipped"]


def test_lone_surrogates_in_json_name_file_and_line(tmp_path, capsys):
    (tmp_path / "a.jsonl").write_text('{"text": "第一篇。"}\n{"text": "坏\\ud800了"}\n', encoding="utf-8")
    code, err = run_cli(capsys, tmp_path / "a.jsonl", "--out", tmp_path / "o1")
    assert code == 2 and "a.jsonl:2" in err and "surrogate" in err
    (tmp_path / "b.json").write_text('[\n"第一篇。",\n"坏\\udc00了"\n]', encoding="utf-8")
    code, err = run_cli(capsys, tmp_path / "b.json", "--out", tmp_path / "o2")
    assert code == 2 and "b.json:3" in err and "surrogate" in err


def test_a_fifo_is_refused_not_waited_on(tmp_path, capsys):
    import os

    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    code, err = run_cli(capsys, fifo, "--out", tmp_path / "o")
    assert code == 2 and "FIFO" in err and "pipe.txt" in err


def test_num_shards_is_checked_and_capped(tmp_path, capsys, corpora):
    code, err = run_cli(capsys, corpora / "xiyouji.gbk.txt", "--out", tmp_path / "o1", "--num-shards", "1000000")
    assert code == 2 and "num_shards" in err
    small = tmp_path / "small.txt"
    small.write_text("话说天下大势，分久必合，合久必分。\n" * 100, encoding="utf-8")  # ~1,600 tokens
    code, err = run_cli(capsys, small, "--out", tmp_path / "o2", "--num-shards", "100")
    assert code == 0 and "capped" in err
    m = read_manifest(tmp_path / "o2")
    assert len(m["shards"]) == m["cleaning"]["shards"]["written"] < 100


def test_a_second_prepare_into_the_same_out_refuses(tmp_path, capsys, corpora):
    from gpt2zh.locks import DirLock

    out = tmp_path / "out"
    with DirLock(tmp_path / ".out.lock", "--out"):  # another prepare is writing there
        code, err = run_cli(capsys, corpora / "sanguoyanyi.gbk.txt", "--out", out)
    assert code == 2 and "in use" in err and str(os.getpid()) in err
    assert not out.exists()
    # a lock left by a process that died is taken over
    (tmp_path / ".out.lock").write_text(json.dumps({"pid": 2 ** 22 + 7, "host": socket.gethostname()}))
    code, err = run_cli(capsys, corpora / "sanguoyanyi.gbk.txt", "--out", out, "--num-shards", "3")
    assert code == 0 and not (tmp_path / ".out.lock").exists()


def start_prepare_on_sixty_novels(tmp_path, corpora, *args, group: bool = False):
    """`gpt2zh prepare` in a subprocess on 60 copies of a novel (80 MB): long enough to interrupt
    (with `group`, in a process group of its own)."""
    import subprocess
    import sys

    big = tmp_path / "big"
    big.mkdir()
    text = (corpora / "shuihuzhuan.txt").read_bytes()
    for i in range(60):
        (big / f"{i:02d}.txt").write_bytes(text)
    return subprocess.Popen([sys.executable, "-m", "gpt2zh", "prepare", str(big), "--out", str(tmp_path / "out"),
                             "--quiet", *args], stderr=subprocess.PIPE, text=True, start_new_session=group)


def test_sigterm_during_prepare_leaves_no_temporary_directory(tmp_path, corpora):
    import signal
    import time

    proc = start_prepare_on_sixty_novels(tmp_path, corpora)
    deadline = time.time() + 30
    while time.time() < deadline and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]:
        time.sleep(0.05)  # until it is writing its temporary directory
    time.sleep(1.0)
    assert proc.poll() is None, "prepare finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], list(tmp_path.iterdir())


def test_sigterm_to_the_whole_group_while_cleaning_ends_every_process(tmp_path, corpora):
    """A service manager stops a job by sending SIGTERM to every process of its group at once:
    the workers then end as prepare does, by unwinding (one killed while it waited for a job
    held the pool's queue lock, and prepare waited for it forever)."""
    import signal
    import time

    import psutil

    proc = start_prepare_on_sixty_novels(tmp_path, corpora, "--workers", "2", group=True)
    me, deadline = psutil.Process(proc.pid), time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:   # cleaning: prepare's own two workers (learning and surveying run in a child)
            if len(me.children()) == 2 and not any(c.children() for c in me.children()):
                break
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.01)
    time.sleep(0.5)
    assert proc.poll() is None, "prepare finished before it could be interrupted"
    family = me.children(recursive=True)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err, err
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, alive
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out") or p.name == "out"]


def test_unknown_rate_is_the_same_in_prepare_and_eval(novel_shards, tiny_run):
    from gpt2zh.evaluate import evaluate_model

    m = read_manifest(novel_shards)
    r = evaluate_model(tiny_run, data=str(novel_shards))
    assert r["files"][0]["unknown_rate"] == pytest.approx(m["cleaning"]["tokens"]["val_unknown_rate"])


def test_sigterm_while_learning_ends_the_learning_child_and_its_workers(tmp_path, corpora):
    """Learning runs in a forked child with workers of its own: a SIGTERM to prepare then must
    end all three, print no traceback and leave no output."""
    import signal
    import time

    import psutil

    proc = start_prepare_on_sixty_novels(tmp_path, corpora, "--workers", "2")
    me, learning, deadline = psutil.Process(proc.pid), None, time.time() + 60
    while learning is None and time.time() < deadline and proc.poll() is None:
        try:   # the learning child: the one child of prepare that has workers of its own
            learning = next((c for c in me.children() if c.children()), None)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.01)
    assert learning is not None, f"prepare never learned in a child of its own (exit {proc.poll()})"
    family = [learning, *learning.children()]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err, err
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, alive
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out") or p.name == "out"]
