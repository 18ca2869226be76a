"""Decoding and cleaning on the real novels and their noisy copies."""
from __future__ import annotations

import codecs
import json
import re

import pytest

from conftest import NOVELS
from gpt2zh.corpus import (CleanOptions, CorpusError, FileReport, clean_text, decode_bytes, find_inputs,
                           load_corpus, read_documents, split_document)


def clean_file(path, **opts):
    report, docs = next(load_corpus([path], CleanOptions(**opts)))
    assert report.balanced(), report.to_dict()
    return report, "\n".join(d.text for d in docs)


@pytest.mark.parametrize("name", sorted(NOVELS))
def test_novels_decode_with_the_right_encoding(corpora, name):
    enc, chars = NOVELS[name]
    docs, got_enc, _, bad = read_documents(corpora / name)
    assert got_enc == enc and bad == 0
    assert len(docs[0]) == chars  # the README's decoded character count


def test_every_shared_file_decodes_to_chinese(corpora):
    for path in find_inputs([corpora]):
        report, text = clean_file(path)
        assert report.encoding in ("utf-8", "gb18030")
        assert len(re.findall("[\u4e00-\u9fff]", text)) > 0.8 * len(text)


def test_boms_and_line_ends_give_the_same_text(corpora):
    raw = (corpora / "shuihuzhuan.txt").read_bytes()[:200_000].decode("utf-8", errors="ignore")
    reference = clean_text(raw, CleanOptions(), FileReport("ref"))
    variants = {
        "utf-8-sig": codecs.BOM_UTF8 + raw.encode("utf-8"),
        "utf-16-le": codecs.BOM_UTF16_LE + raw.encode("utf-16-le"),
        "utf-16-be": codecs.BOM_UTF16_BE + raw.encode("utf-16-be"),
        "gb18030-lf": raw.replace("\r\n", "\n").encode("gb18030"),
        "utf-8-cr": raw.replace("\r\n", "\r").encode("utf-8"),
    }
    for name, data in variants.items():
        text, _, _ = decode_bytes(data, name)
        report = FileReport(name)
        assert clean_text(text, CleanOptions(), report) == reference, name
        assert report.balanced()


def test_undecodable_file_names_file_and_offset(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes("第一回 正文".encode("utf-8") + b"\xff\xfe\xfd\x80" + "后文".encode("utf-8"))
    with pytest.raises(CorpusError, match=r"bad\.txt.*offset 1\d"):
        read_documents(bad)
    docs, enc, _, replaced = read_documents(bad, replace_bad_bytes=True)
    assert replaced >= 1
    report, docs = next(load_corpus([bad], replace_bad_bytes=True))
    assert report.dropped["bad_bytes"] >= 1 and report.balanced()


def test_binary_file_is_refused(tmp_path):
    png = tmp_path / "cover.txt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(CorpusError, match="binary"):
        read_documents(png)


def test_sanguo_hard_wraps_are_rejoined(corpora):
    report, text = clean_file(corpora / "sanguoyanyi.gbk.txt")
    assert "80 columns" in report.paragraphs["wrap_widths"]  # 40 full-width characters
    assert report.dropped["hard_wrap"] > 10_000 and report.paragraphs["rejoined_breaks"] > 10_000
    assert "及秦灭之后，楚、汉分争，又并入于汉。汉朝自高祖斩白蛇而起义，一统天下，后来光武中兴" in text
    assert "www.rain8.com" not in text and "雨枫轩" not in text
    assert text.count("\n第") >= 119  # chapter headings stay on their own lines


def test_xiyouji_toc_debris_removed_and_headings_kept(corpora):
    report, text = clean_file(corpora / "xiyouji.gbk.txt")
    assert "《》目录" not in text and report.dropped["toc"] == 101 * len("《》目录 ")  # 100 chapters + 附录
    assert text.startswith("《西游记》\n第一回 灵根育孕源流出 心性修持大道生")
    assert len(re.findall(r"^第[一二三四五六七八九十百]+回", text, re.M)) == 100


def test_shuihu_junk_runs_removed_text_around_them_kept(corpora):
    report, text = clean_file(corpora / "shuihuzhuan.txt")
    assert report.dropped["line_ends"] == 14_038  # CRLF
    assert report.dropped["junk_runs"] > 150
    assert "z茧P" not in text and "y中T" not in text
    assert "且说军买了福物煮熟" in text  # only the junk went
    assert "\t" not in text and "\u3000" not in text
    # placeholders are kept unless asked for
    assert "□" in text
    report2, text2 = clean_file(corpora / "shuihuzhuan.txt", placeholders=True)
    assert "□" not in text2 and report2.dropped["placeholders"] >= 163


def test_noisy_copies_lose_site_noise(corpora):
    report, text = clean_file(corpora / "noisy" / "xiyouji_rain8.gbk.txt")
    assert "oldbook" not in text and "输入：" not in text and "rain8" not in text
    assert "电子书" not in text and "吴承恩--西游记--" not in text
    assert "第001回" not in text  # the table of contents went; the chapters did not
    assert "第一回 灵根育孕源流出 心性修持大道生" in text
    report, text = clean_file(corpora / "noisy" / "sanguoyanyi_updatetime.txt")
    assert "更新时间" not in text and "本章字数" not in text and "章节内容开始" not in text
    assert "正版" not in text and "第一回 宴桃园豪杰三结义 斩黄巾英雄首立功" in text
    report, text = clean_file(corpora / "noisy" / "shuihuzhuan_tianya.txt")
    assert "tianyabook" not in text and "天涯在线书库" not in text
    assert text.endswith("千古蓼埋玉地，落花啼鸟总关愁。")


def test_page_markers_and_switches():
    raw = "第一回 开篇\n话说天下大势。\n- 12 -\n第12页\n-------- Page 13 --------\n  14\n分久必合，合久必分。\n"
    report = FileReport("x")
    assert clean_text(raw, CleanOptions(), report) == "第一回 开篇\n话说天下大势。\n分久必合，合久必分。"
    assert report.dropped["page_markers"] == len("- 12 -\n第12页\n-------- Page 13 --------\n  14\n")
    assert report.balanced()
    kept = clean_text(raw, CleanOptions(page_markers=False, separators=False, repeated=False), FileReport("y"))
    assert "第12页" in kept and "- 12 -" in kept


def test_traditional_to_simplified_is_opt_in():
    raw = "話說天下大勢，分久必合。"
    assert clean_text(raw, CleanOptions(), FileReport("a")) == raw
    report = FileReport("b")
    assert clean_text(raw, CleanOptions(to_simplified=True), report) == "话说天下大势，分久必合。"
    assert report.normalized == 3 and report.balanced()


def test_split_is_90_10_at_a_paragraph_break(corpora):
    _, text = clean_file(corpora / "xiyouji.gbk.txt")
    train, val = split_document(text, 0.1)
    assert train + "\n" + val == text
    assert abs(len(val) / len(text) - 0.1) < 0.01
    assert split_document(text, 0.1) == (train, val)
    assert split_document(text, 0.0) == (text, "")


def test_json_and_jsonl_inputs(tmp_path):
    (tmp_path / "train.json").write_text(json.dumps(["第一篇文章。", "第二篇文章。"], ensure_ascii=False), encoding="utf-8")
    (tmp_path / "more.jsonl").write_text('{"text": "第三篇。"}\n"第四篇。"\n', encoding="utf-8")
    docs = [d.text for _, ds in load_corpus([tmp_path]) for d in ds]
    assert sorted(docs) == sorted(["第一篇文章。", "第二篇文章。", "第三篇。", "第四篇。"])
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CorpusError, match="broken.json"):
        list(load_corpus([tmp_path / "broken.json"]))


@pytest.mark.parametrize("raw", ["12", "12\n话说", "话说\n12", "------\n------\n话说\n第3页\n话", "第一回 甲\n第二回 乙\n第三回 丙\n正文",
                                 "\n\n第5页\n\n", "话说\n\n- 7 -\n\n天下"])
def test_line_rules_balance_at_the_edges(raw):
    report = FileReport("x")
    out = clean_text(raw, CleanOptions(), report)
    assert report.balanced(), (raw, out, dict(report.dropped))
    assert not re.search(r"\d", out)
