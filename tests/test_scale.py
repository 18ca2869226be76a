"""`prepare` on files larger than memory should need: files read in pieces, the corpus-level
summaries capped, shards written as they fill, and the errors a large job meets."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt2zh import decode
from gpt2zh import prepare as prepare_module
from gpt2zh.clean.lines import Recurrence
from gpt2zh.corpus import clean_file, CleanOptions
from gpt2zh.decode import CorpusError, Source, SourceTable, read_piece, read_text_file, survey
from gpt2zh.prepare import PrepareConfig, _clean, prepare
from gpt2zh.shards import ShardError, ShardWriter, _sha256, load_tokens, read_manifest

PIECE = 256 << 10


def novel_jsonl(corpora: Path, dest: Path, doc_chars: int = 5000) -> Path:
    """The three novels as JSON lines of `doc_chars` characters (with a raw U+2028 in one)."""
    lines = []
    for name in ("xiyouji.gbk.txt", "sanguoyanyi.gbk.txt", "shuihuzhuan.txt"):
        text = read_text_file(corpora / name)
        lines += [json.dumps({"text": text[i:i + doc_chars]}, ensure_ascii=False) for i in range(0, len(text), doc_chars)]
    lines[3] = json.dumps({"text": "他说\u2028道：“好。”" + json.loads(lines[3])["text"]}, ensure_ascii=False)
    dest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def figures(out: Path) -> dict:
    """The report's figures, without the random samples of drops or the time taken."""
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    rep.pop("seconds")
    rep.pop("timing")
    rep.pop("samples")
    for f in rep["files"]:
        f.pop("samples")
        f["unfinished"].pop("items")
        f["duplicates"].sort(key=lambda d: d["doc"])
    return rep


def shard_bytes(out: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(out.glob("*.bin"))]


def test_a_jsonl_is_read_in_smaller_pieces_than_a_txt(corpora, tmp_path):
    """A .jsonl piece is a batch of whole documents, so it is cut smaller (a worker holds a
    few copies of its piece); a .txt piece is a document of its own and keeps its size."""
    src = novel_jsonl(corpora, tmp_path / "novels.jsonl")
    size = src.stat().st_size
    assert decode.JSONL_PIECE_BYTES < size < decode.PIECE_BYTES
    pieces = survey(src).pieces
    assert len(pieces) == round(size / decode.JSONL_PIECE_BYTES)
    assert all(p.end - p.start <= decode.JSONL_PIECE_BYTES * 3 // 2 for p in pieces)
    txt = tmp_path / "novels.txt"
    txt.write_bytes(src.read_bytes())
    assert len(survey(txt).pieces) == 1 and survey(txt).pieces[0].whole


_CLEANED_BY: list[Path] = []   # where _clean_noting_pid writes the worker's pid (set before the fork)


def _clean_noting_pid(args):
    with open(_CLEANED_BY[0], "a") as f:
        f.write(f"{os.getpid()}\n")
    return _clean(args)


def test_jsonl_in_pieces_gives_the_same_shards_and_report(corpora, tmp_path, monkeypatch):
    src = novel_jsonl(corpora, tmp_path / "novels.jsonl")
    assert len(survey(src, piece_bytes=PIECE).pieces) >= 10
    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    with monkeypatch.context() as m:   # (this 6.6 MB .jsonl is otherwise read in 4 MB pieces)
        m.setattr(decode, "JSONL_PIECE_BYTES", decode.PIECE_BYTES)
        assert len(survey(src).pieces) == 1
        prepare(PrepareConfig(inputs=[str(src)], out=str(whole), progress=False, workers=1))
    # in pieces, by two workers each replaced after every chunk of pieces: a fresh fork
    # cleans as the first one did (the step and what was learned are still there)
    monkeypatch.setattr(prepare_module, "RENEW_BYTES", 1)
    monkeypatch.setattr(prepare_module, "_clean", _clean_noting_pid)
    monkeypatch.setattr(sys.modules[__name__], "_CLEANED_BY", [tmp_path / "pids"])
    prepare(PrepareConfig(inputs=[str(src)], out=str(pieces), progress=False, workers=2, piece_bytes=PIECE))
    pids = (tmp_path / "pids").read_text().split()
    assert len(pids) == len(survey(src, piece_bytes=PIECE).pieces) and len(set(pids)) > 2
    assert shard_bytes(whole) == shard_bytes(pieces)
    assert figures(whole) == figures(pieces)
    assert (whole / "tokenizer.json").read_bytes() == (pieces / "tokenizer.json").read_bytes()
    assert multiprocessing.active_children() == []   # the learning child and every worker are gone
    # the line with a raw U+2028 inside its string is one document, not two broken lines
    text = load_tokens(whole)
    assert figures(whole)["files"][0]["documents"] == len(src.read_text(encoding="utf-8").split("\n")) - 1
    assert len(text) > 0


def test_large_text_file_is_cut_at_chapter_headings_and_cleaned_like_the_whole(corpora, tmp_path):
    src = corpora / "xiyouji.gbk.txt"          # GB18030, 1.4 MB
    source = survey(src, piece_bytes=PIECE)
    assert source.encoding == "gb18030" and len(source.pieces) >= 4
    assert source.pieces[0].start == 0 and source.pieces[-1].end == src.stat().st_size
    assert all(a.end == b.start for a, b in zip(source.pieces, source.pieces[1:]))
    whole_text = read_text_file(src)
    joined = "".join(read_piece(p)[0][0] for p in source.pieces)
    assert joined.replace("\r\n", "\n") == whole_text            # not a character lost or doubled at a cut
    for a, b in zip(source.pieces, source.pieces[1:]):   # its headings have a prefix: cut at paragraph starts
        assert read_piece(a)[0][0].endswith("\n") and read_piece(b)[0][0].startswith("    ")
    for name in ("shuihuzhuan.txt", "sanguoyanyi.gbk.txt"):   # headings of their own: cut before a chapter
        pieces = survey(corpora / name, piece_bytes=PIECE).pieces
        assert len(pieces) >= 4 and all(read_piece(p)[0][0].startswith("第") for p in pieces[1:])
    out = tmp_path / "out"
    m = prepare(PrepareConfig(inputs=[str(src)], out=str(out), progress=False, piece_bytes=PIECE))
    f = m["cleaning"]["files"][0]
    assert f["encoding"] == "gb18030" and f["bytes"] == src.stat().st_size and f["skipped"] is None
    assert f["documents"] == len(source.pieces) and m["cleaning"]["balanced"]
    # the same clean text as cleaning the file whole, up to the few characters at the cuts
    whole_kept = len(clean_file(src, CleanOptions())[1][0].text)
    assert abs(f["kept_chars"] - whole_kept) <= 0.002 * whole_kept, (f["kept_chars"], whole_kept)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_pieces_of_files_with_a_byte_order_mark(corpora, tmp_path, encoding):
    text = read_text_file(corpora / "sanguoyanyi.gbk.txt")[:300_000]
    src = tmp_path / "book.txt"
    src.write_bytes(text.encode(encoding))
    source = survey(src, piece_bytes=1 << 16)
    assert source.encoding == encoding and len(source.pieces) > 3
    docs = [read_piece(p)[0][0] for p in source.pieces]
    assert docs[0].startswith("\ufeff") and "".join(docs)[1:] == text


def test_survey_refuses_what_it_cannot_read(tmp_path, monkeypatch):
    good = "第一回 开篇\n　　话说天下大势，分久必合，合久必分。\n".encode("utf-8") * 5000
    bad = tmp_path / "bad.txt"
    bad.write_bytes(good + b"\xff\xfe\xfa" + good)
    with pytest.raises(CorpusError, match=rf"bad.txt: cannot decode as UTF-8 or GB18030; first bad byte at offset {len(good)}"):
        survey(bad, piece_bytes=1 << 16)
    assert survey(bad, replace_bad_bytes=True, piece_bytes=1 << 16).encoding == "utf-8"
    binary = tmp_path / "image.txt"
    binary.write_bytes(good + b"\x00\x01")
    skipped = survey(binary, piece_bytes=1 << 16)      # skipped and reported, as a small binary file is
    assert not skipped.pieces and f"NUL byte at offset {len(good)}" in skipped.skipped
    (tmp_path / "corpus").mkdir()
    binary.rename(tmp_path / "corpus" / "image.txt")
    (tmp_path / "corpus" / "story.txt").write_bytes(good)
    m = prepare(PrepareConfig(inputs=[str(tmp_path / "corpus")], out=str(tmp_path / "out"), progress=False,
                              piece_bytes=1 << 16))
    image = next(f for f in m["cleaning"]["files"] if f["path"].endswith("image.txt"))
    assert "binary file" in image["skipped"] and image["bytes"] == len(good) + 2 and m["cleaning"]["balanced"]
    monkeypatch.setattr(decode, "MAX_LINE_BYTES", 1 << 16)
    long = tmp_path / "long.jsonl"
    long.write_text('{"text": "短"}\n{"text": "' + "长" * 200_000 + '"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"long.jsonl:2: a line of 600,013 bytes, longer than"):
        survey(long, piece_bytes=1 << 16)


def test_source_table_gives_back_every_file_and_piece(corpora, tmp_path):
    """The columns `prepare` holds instead of a Source per file: the same paths (one that is
    not UTF-8 too), sizes, encodings, skipped files and pieces come back out."""
    big = tmp_path / "大书.txt"
    big.write_bytes(read_text_file(corpora / "sanguoyanyi.gbk.txt")[:200_000].encode("utf-16"))
    odd = tmp_path / "b\udcff.txt"        # a name that is not UTF-8 (byte 0xff)
    odd.write_bytes("短文。\n".encode("utf-8"))
    sources = [survey(big, piece_bytes=1 << 16), survey(odd),
               Source(str(tmp_path / "image.txt"), 12, "", [], skipped="binary file"), survey(corpora / "shuihuzhuan.txt")]
    table = SourceTable(iter(sources))
    pieces = [p for s in sources for p in s.pieces]
    assert len(table) == 4 and len(table.pieces) == len(pieces) > 3
    assert [table.path(f) for f in range(4)] == [s.path for s in sources]
    assert [table.encoding(f) for f in range(4)] == [s.encoding for s in sources] and table.encoding(0) == "utf-16"
    assert list(table.size) == [s.size for s in sources] and table.skipped == {2: "binary file"}
    assert list(table.piece_count) == [len(s.pieces) for s in sources]
    assert [table.piece(p) for p in range(len(pieces))] == pieces
    assert list(table.piece_sizes()) == [s.size if p.whole else p.end - p.start for s in sources for p in s.pieces]
    assert read_piece(table.piece(1)) == read_piece(pieces[1])


def test_jsonl_error_names_the_line_in_a_later_piece(tmp_path):
    lines = [json.dumps({"text": f"第{i}段。" + "天下大势，分久必合。" * 30}, ensure_ascii=False) for i in range(2000)]
    lines[1500] = '{"text": "cut off'
    src = tmp_path / "c.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"c.jsonl:1501: invalid JSON"):
        prepare(PrepareConfig(inputs=[str(src)], out=str(tmp_path / "out"), progress=False, piece_bytes=1 << 16))
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    assert multiprocessing.active_children() == []   # raised in the learning child, which is gone


def test_recurrence_table_is_capped_and_keeps_boilerplate(monkeypatch):
    monkeypatch.setattr(Recurrence, "CAP", 1000)
    corpus = Recurrence()
    for f in range(40):                  # 40 files of 200 unique lines each, and one site line in every file
        rec = Recurrence()
        for i in range(200):
            rec.add(f"第{f}卷独有的一行{i}", before=f"{f}-{i}")
            rec.end_document({f"第{f}卷独有的一行{i}"})
        for k in range(3):
            rec.add("本站网址 www.example.com", before=f"place {k}")
        rec.end_document({"本站网址 www.example.com"})
        corpus.add_file(rec)
        assert len(corpus.places) <= 1000
    assert corpus.forgotten > 0
    assert "本站网址 www.example.com" in corpus.learned(n_docs=40 * 201)


@pytest.mark.parametrize("total,shards", [(0, 1), (7, 3), (1000, 100), (1001, 100), (5, 9), (123_457, 10)])
def test_shard_writer_cuts_where_array_split_does(tmp_path, total, shards):
    ids = np.arange(total, dtype=np.uint16)
    writer = ShardWriter(tmp_path, ids.dtype, total, shards)
    rng = np.random.default_rng(total)
    pos = 0
    while pos < total:                    # in pieces of any size, as a stream brings them
        n = int(rng.integers(1, 50))
        writer.write(ids[pos:pos + n])
        pos += n
    entries = writer.close()
    expected = np.array_split(ids, max(1, min(shards, total)))
    assert [e["tokens"] for e in entries] == [len(p) for p in expected]
    for e, part in zip(entries, expected):
        assert np.fromfile(tmp_path / e["file"], dtype=np.uint16).tolist() == part.tolist()
        assert e["sha256"] == _sha256(part)


def test_a_full_disk_leaves_no_output_and_names_the_file(corpora, tmp_path):
    """A file-size limit stands in for a full disk: the write fails the same way (an OSError)."""
    script = f"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
from gpt2zh.cli import main
sys.exit(main(["prepare", {str(corpora / 'shuihuzhuan.txt')!r}, "--out", {str(tmp_path / 'out')!r},
               "--num-shards", "2", "--quiet"]))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "cannot write" in r.stderr and ("train_000.bin" in r.stderr or "train_001.bin" in r.stderr
                                           or ".work" in r.stderr), r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_workers_default_to_every_core():
    from gpt2zh.cli import build_parser

    args = build_parser().parse_args(["prepare", "x", "--out", "y"])
    import os

    assert args.workers == os.cpu_count()
    assert PrepareConfig(inputs=["x"], out="y").workers == os.cpu_count()


def test_many_files_and_a_large_one_together(corpora, tmp_path):
    """Small files read whole and a large one in pieces, in one corpus, through two workers."""
    m = prepare(PrepareConfig(inputs=[str(corpora)], out=str(tmp_path / "out"), progress=False, workers=2,
                              piece_bytes=1 << 20))
    files = {Path(f["path"]).name: f for f in m["cleaning"]["files"]}
    assert files["shuihuzhuan.txt"]["documents"] >= 2 and files["xiyouji.gbk.txt"]["documents"] >= 1
    assert m["cleaning"]["balanced"]
    assert read_manifest(tmp_path / "out")["train_tokens"] == len(load_tokens(tmp_path / "out"))


def test_past_the_detailed_files_examples_are_pooled_and_every_count_kept(corpora, tmp_path, monkeypatch):
    from gpt2zh import prepare as prepare_module

    full = prepare(PrepareConfig(inputs=[str(corpora)], out=str(tmp_path / "full"), progress=False))
    monkeypatch.setattr(prepare_module, "DETAILED_FILES", 2)
    pooled = prepare(PrepareConfig(inputs=[str(corpora)], out=str(tmp_path / "pooled"), progress=False))
    a, b = full["cleaning"], pooled["cleaning"]
    assert a["total"] == b["total"] and a["balanced"] and b["balanced"]
    # the summary (and the manifest) lists the first files; report.json every one, streamed
    rows = {k: json.loads((tmp_path / k / "report.json").read_text(encoding="utf-8"))["files"]
            for k in ("full", "pooled")}
    assert len(rows["full"]) == len(rows["pooled"]) == b["file_count"] == a["file_count"] == len(a["files"]) > 2
    assert b["files"] == rows["pooled"][:2] and len(pooled["sources"]) == 2
    for fa, fb in zip(rows["full"][2:], rows["pooled"][2:]):    # counts, and how many drops each rule saw
        assert fa["dropped"] == fb["dropped"] and fb["samples"] and all(not s["items"] for s in fb["samples"].values())
        assert {r: s["seen"] for r, s in fa["samples"].items()} == {r: s["seen"] for r, s in fb["samples"].items()}
    other = b["other_files"]
    assert other["files"] == b["file_count"] - 2 and "other_files" not in a
    assert sum(s["seen"] for s in other["samples"].values()) == sum(
        s["seen"] for f in rows["pooled"][2:] for s in f["samples"].values())
    # the duplicates of the files past the first are listed there, as in the full report's rows
    assert other["duplicates"] == [d for f in rows["full"][2:] for d in f["duplicates"]]
    assert other["counts"]["duplicates"] == len(other["duplicates"]) > 0
    assert all(len(s["items"]) <= 8 for s in other["samples"].values())
    html = (tmp_path / "pooled" / "report.html").read_text(encoding="utf-8")
    assert f"the other {other['files']:,} files" in html or not other["unfinished"]["seen"]
    assert shard_bytes(tmp_path / "full") == shard_bytes(tmp_path / "pooled")


def test_documents_sharing_one_whole_band_are_candidates_and_a_band_with_an_empty_bin_is_not():
    from gpt2zh.clean.dedup import _EMPTY, BAND, BINS, Signature, SignatureTable, candidates

    rng = np.random.default_rng(7)
    base = rng.integers(0, 2**57, BINS, dtype=np.uint64)
    unlike = [rng.integers(0, 2**57, BINS, dtype=np.uint64) for _ in range(3)]
    one_band = unlike[0].copy()
    one_band[5 * BAND:6 * BAND] = base[5 * BAND:6 * BAND]     # agrees with base on band 5 only
    holed = unlike[1].copy()
    holed[:BAND] = base[:BAND]
    holed[0] = _EMPTY                                           # agrees on band 0, but with an empty bin there
    base_holed = base.copy()
    base_holed[0] = _EMPTY                                      # and its twin: band 0 holed in both
    mins = [base, unlike[2], one_band, holed, base_holed]
    sigs = [Signature(f"d{i}", 100, str(i), m, 0.1) for i, m in enumerate(mins)]
    sigs.append(Signature("short", 10, "s", None, 0.1))         # compared whole, never banded
    pairs = {(a, b) for g in candidates(SignatureTable.of(sigs)) for k, a in enumerate(g) for b in g[k + 1:]}
    assert pairs == {(0, 2), (0, 4), (2, 4)}    # 2 and 4 meet in band 5; 3 and 4 share only the holed band


@pytest.mark.parametrize("piece_bytes", [None, 1 << 16])   # read whole, and in pieces
def test_skip_bad_lines_counts_the_lines_that_hold_no_document(corpora, tmp_path, piece_bytes):
    text = (corpora / "shuihuzhuan.txt").read_text(encoding="utf-8", errors="replace")
    good = [json.dumps({"text": text[i:i + 3000]}, ensure_ascii=False) for i in range(0, 120_000, 3000)]
    bad = ['{"text": "宋江听罢，', '{"title": "第一回"}', '{"text": "\\ud800 半个"}', "[1, 2"]
    lines = good[:10] + bad[:2] + good[10:30] + bad[2:] + good[30:]
    src = tmp_path / "web.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    extra = {} if piece_bytes is None else {"piece_bytes": piece_bytes}
    # (in pieces, the piece that fails first names its line: 11 or 33)
    with pytest.raises(CorpusError, match=r"web.jsonl:(11: invalid JSON|33: an escaped lone).*--skip-bad-lines"):
        prepare(PrepareConfig(inputs=[str(src)], out=str(tmp_path / "strict"), progress=False, **extra))
    m = prepare(PrepareConfig(inputs=[str(src)], out=str(tmp_path / "out"), progress=False,
                              clean=CleanOptions(skip_bad_lines=True), **extra))
    rep = m["cleaning"]
    f = rep["files"][0]
    assert f["dropped"]["bad_json_lines"] == sum(len(b) for b in bad) and rep["balanced"]
    assert f["documents"] == len(good) and not f["skipped"]
    shown = f["samples"]["bad_json_lines"]
    assert shown["seen"] == 4 and {it[0].rstrip(": ") for it in shown["items"]} == {"line 11", "line 12", "line 33",
                                                                                       "line 34"}
    assert "bad_json_lines" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_a_jsonl_of_bad_lines_only_is_skipped_and_says_why(tmp_path):
    src = tmp_path / "broken.jsonl"
    src.write_text('{"text": "宋江\n{"title": 1}\n', encoding="utf-8")
    from gpt2zh.corpus import raw_documents

    report, raw = raw_documents(src, skip_bad_lines=True)
    assert raw == [] and report.skipped == "no JSON line holds a document" and report.balanced()


def test_report_json_written_file_by_file_reads_as_one_json_dump(tmp_path):
    from collections import Counter

    from gpt2zh.clean.report import FileReport, ReportWriter, SamplePool

    reports = [FileReport(path=f"dir/{i}.txt", encoding="utf-8", bytes=100 + i, documents=1, input_chars=90,
                          kept_chars=80, dropped=Counter({"hard_wrap": 4, "urls": 6}),
                          paragraphs={"wrap_widths": ["40 columns"]}) for i in range(3)]
    reports[1].duplicates.append({"doc": "dir/1.txt", "duplicate_of": "dir/0.txt", "similarity": 0.9, "chars": 80})
    writer = ReportWriter(tmp_path / "report.json", SamplePool(), detailed=2)
    rows = [r.to_dict() for r in reports]
    for r in reports:
        writer.add(r)
    summary = writer.finish({"split": {"train_chars": 1}, "timing": {"dedup": 0.1}})
    whole = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert (tmp_path / "report.json").read_text(encoding="utf-8") == json.dumps(whole, ensure_ascii=False, indent=1)
    assert whole["files"] == rows and whole["balanced"] and whole["total"]["input_chars"] == 270
    assert list(whole) == ["files", "total", "samples", "balanced", "other_files", "split", "timing"]
    assert summary["files"] == rows[:2] and summary["file_count"] == 3 and summary["total"] == whole["total"]
    assert whole["other_files"]["duplicates"] == [] and whole["other_files"]["counts"]["duplicates"] == 0


def test_a_long_bad_line_is_counted_whole_and_shown_cut(tmp_path):
    from gpt2zh.corpus import raw_documents

    src = tmp_path / "long.jsonl"
    long_line = '{"text": "' + "梁山泊" * 20_000   # never closed: 60,010 characters of invalid JSON
    src.write_text('{"text": "宋江"}\n' + long_line + "\n", encoding="utf-8")
    report, raw = raw_documents(src, skip_bad_lines=True)
    assert raw == ["宋江"] and report.dropped["bad_json_lines"] == len(long_line)
    (before, shown, after), = report.samples["bad_json_lines"]["items"]
    assert before == "line 2: " and len(shown) < 300 and "more]…" in shown and "invalid JSON" in after
