"""Raw files -> clean documents, with a report that accounts for every character.

Reading: `.txt` in UTF-8 (with or without BOM), GBK/GB18030, UTF-16/32 with BOM,
any line ends; `.json` (a list of strings, GPT2-Chinese's train.json) and
`.jsonl` (a string or {"text": ...} per line). Directories are walked recursively.

Cleaning is a fixed sequence of named rules. Every rule that removes text adds
the number of characters it removed to `report.dropped[rule]`, so that for each
file  input_chars == kept_chars + sum(dropped).  Rules that only substitute one
character for another (a full-width space becoming a space, traditional to
simplified) count into `report.normalized` and keep the length unchanged.
"""
from __future__ import annotations

import codecs
import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator


class CorpusError(Exception):
    """Bad input that the user must fix; the message names the file."""


class BinaryFileError(CorpusError):
    """Not text at all (an image in the corpus folder): skipped and reported, not fatal."""


TEXT_SUFFIXES = (".txt",)
JSON_SUFFIXES = (".json", ".jsonl")
CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RE = re.compile(f"[{CJK}]")
SPACE = " \t\u3000\xa0\u2002\u2003\u200b\ufeff"  # kinds of blank a scanned or web text carries

# ----------------------------------------------------------------------------
# Options and report


@dataclass
class CleanOptions:
    """Each cleaning rule can be switched off; all but the opt-in ones are on."""

    page_markers: bool = True   # "- 12 -", "第12页", "---- Page 12 ----", a number alone on a line
    boilerplate: bool = True    # URLs, site names, download adverts, typist credits, disclaimers
    toc: bool = True            # "《》目录 " debris and tables of contents
    hard_wrap: bool = True      # rejoin lines cut at a near-constant width
    whitespace: bool = True     # indentation, full-width spaces, tabs, blank lines
    junk_runs: bool = True      # "z茧P": ASCII letters around a character where a rare one was lost
    placeholders: bool = False  # "□" and "?" standing for lost characters (opt-in)
    to_simplified: bool = False  # traditional -> simplified with OpenCC (opt-in)

    @classmethod
    def rule_names(cls) -> list[str]:
        return [f for f in cls.__dataclass_fields__]


RULE_HELP = {
    "page_markers": 'page markers and bare page numbers ("- 12 -", "第12页", "---- Page 12 ----", "12")',
    "boilerplate": "URLs with their site names, download adverts, disclaimers, typist credits, "
                   "update-time lines, separator lines, running headers",
    "toc": 'tables of contents and "《》目录" debris before chapter headings',
    "hard_wrap": "lines hard-wrapped at a near-constant width are rejoined into paragraphs",
    "whitespace": "indentation, full-width spaces, tabs, runs of blank lines",
    "junk_runs": 'mojibake runs where a rare character was lost ("z茧P", "y中T")',
    "placeholders": '"□" and "?" standing for lost characters',
    "to_simplified": "traditional to simplified characters (OpenCC t2s)",
}


@dataclass
class FileReport:
    path: str
    encoding: str = ""
    bytes: int = 0
    documents: int = 0
    input_chars: int = 0
    kept_chars: int = 0
    dropped: Counter = field(default_factory=Counter)
    normalized: int = 0
    bad_bytes_replaced: int = 0
    hard_wrap_width: int | None = None
    skipped: str | None = None  # why the whole file contributed nothing
    examples: dict = field(default_factory=dict)  # rule -> a few dropped snippets, for the user to check

    def add_drop(self, rule: str, text: str) -> None:
        if not text:
            return
        self.dropped[rule] += len(text)
        ex = self.examples.setdefault(rule, [])
        if len(ex) < 3 and text.strip():
            ex.append(text.strip()[:60])

    def balanced(self) -> bool:
        return self.input_chars == self.kept_chars + sum(self.dropped.values())

    def merge(self, other: "FileReport") -> None:
        self.documents += other.documents
        self.input_chars += other.input_chars
        self.kept_chars += other.kept_chars
        self.dropped.update(other.dropped)
        self.normalized += other.normalized
        self.bad_bytes_replaced += other.bad_bytes_replaced
        self.hard_wrap_width = self.hard_wrap_width or other.hard_wrap_width
        for rule, ex in other.examples.items():
            mine = self.examples.setdefault(rule, [])
            mine.extend(ex[: 3 - len(mine)])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dropped"] = dict(sorted(self.dropped.items()))
        return d


@dataclass
class Document:
    source: str
    text: str


# ----------------------------------------------------------------------------
# Finding and decoding files


def find_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and directories (recursively) into a sorted list of readable inputs."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise CorpusError(f"{p}: no such file or directory")
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES + JSON_SUFFIXES)
            if not files:
                raise CorpusError(f"{p}: directory holds no .txt, .json or .jsonl files")
            found.extend(files)
        else:
            found.append(p)
    return found


_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # before UTF-16: FF FE 00 00 starts both
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
]


def decode_bytes(data: bytes, name: str, replace_bad_bytes: bool = False) -> tuple[str, str, int]:
    """Return (text, encoding, bad_bytes_replaced). The BOM, if any, stays in the text
    (as U+FEFF) so that the cleaning report can count it."""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(enc)
            except UnicodeDecodeError as e:
                if not replace_bad_bytes:
                    raise CorpusError(f"{name}: invalid {enc} at byte offset {e.start}") from None
                text = data.decode(enc, errors="replace")
                return "\ufeff" + text, enc, text.count("\ufffd")
            return "\ufeff" + text, enc, 0
    nul = data.find(b"\x00")
    if nul >= 0:
        raise BinaryFileError(f"{name}: looks like a binary file, not text (NUL byte at offset {nul})")
    try:
        return data.decode("utf-8"), "utf-8", 0
    except UnicodeDecodeError as e8:
        try:
            return data.decode("gb18030"), "gb18030", 0
        except UnicodeDecodeError as eg:
            # Report the encoding that got further: that is most likely the intended one.
            enc, err = ("utf-8", e8) if e8.start >= eg.start else ("gb18030", eg)
            if not replace_bad_bytes:
                raise CorpusError(
                    f"{name}: cannot decode as UTF-8 or GB18030; first bad byte at offset {err.start} "
                    f"(as {enc}). Fix the file or pass --replace-bad-bytes to replace undecodable bytes"
                ) from None
            before = data[: err.start].decode(enc).count("\ufffd")
            text = data.decode(enc, errors="replace")
            return text, enc, text.count("\ufffd") - before


def read_documents(path: Path, replace_bad_bytes: bool = False) -> tuple[list[str], str, int, int]:
    """Return (raw documents, encoding, bytes, bad bytes replaced) for one input file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"{path}: cannot read: {e.strerror}") from None
    if not data.strip():
        return [], "", len(data), 0
    text, enc, bad = decode_bytes(data, str(path), replace_bad_bytes)
    suffix = path.suffix.lower()
    if suffix == ".json":
        docs = _json_documents(path, text)
    elif suffix == ".jsonl":
        docs = [_jsonl_item(path, i, line) for i, line in enumerate(text.lstrip("\ufeff").splitlines(), 1) if line.strip()]
    else:
        docs = [text]
    return docs, enc, len(data), bad


def _json_documents(path: Path, text: str) -> list[str]:
    try:
        obj = json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as e:
        raise CorpusError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(obj, list) or not all(isinstance(x, str) for x in obj):
        raise CorpusError(f"{path}: expected a JSON list of strings (GPT2-Chinese train.json format)")
    return obj


def _jsonl_item(path: Path, lineno: int, line: str) -> str:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise CorpusError(f"{path}:{lineno}: invalid JSON: {e.msg}") from None
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return obj["text"]
    if isinstance(obj, str):
        return obj
    raise CorpusError(f'{path}:{lineno}: expected a string or an object with a "text" string')


# ----------------------------------------------------------------------------
# Cleaning rules. Patterns work on the whole text with re.M: far faster than a
# Python loop over lines, which matters on multi-GB corpora.

_S = f"[{SPACE}]"
_NUM_CN = "0-9０-９零〇一二三四五六七八九十百千两"
HEADING = (
    rf"{_S}*(?:正文{_S}*)?(?:第{_S}*[{_NUM_CN}]+{_S}*[回章节卷集部篇]|楔子|序章|引子|尾声|附{_S}*录)"
)
HEADING_RE = re.compile(HEADING)

# Whole-line patterns match "\n" + the line (see drop_lines): a pattern that starts with
# a literal is searched from newline to newline, several times faster than "^" with re.M.
PAGE_MARKER_RE = re.compile(
    rf"\n{_S}*[-—–=_*·.]*{_S}*(?:第{_S}*\d+{_S}*页|[Pp]age{_S}*\d+|\d{{1,4}}){_S}*[-—–=_*·.]*{_S}*(?=\n)"
)
_DOMAIN = r"(?:https?://)?(?:www\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:com|net|org|cn|cc|info|la|tw|hk|me|io|tv)\b(?:/[\w./?=&%#-]*)?"
SITE_URL_RE = re.compile(rf"《?{_DOMAIN}》?")
TLD_RE = re.compile(r"\.(?:com|net|org|cn|cc|info|la|tw|hk|me|io|tv)\b")
# A site name just before a URL ("天涯在线书库《www...》", "雨枫轩:http://...") goes with it.
SITE_NAME_BEFORE_RE = re.compile(rf"[{CJK}]{{0,8}}(?:书库|书屋|书城|书吧|书网|小说网|文学网|中文网|网|轩|阁)[:：]?{_S}*$")
BOILERPLATE_LINE_RE = re.compile(
    r"^(?=[^\n]{0,120}(?:\n|$))[^\n]*?(?:"
    r"电子书|TXT|txt|(?:下载|阅读)[^\n]{0,6}(?:请访问|请到|尽在)|请访问|购买正版|正版图书|版权(?:声明|归|所有|为)|"
    r"仅供[^\n]{0,8}(?:学习|研究|预览|交流|参考)|商业用途|网友提供|侵犯了?您的|立即删除|小时内删除|"
    r"整理校对|转载请保留|章节内容开始|更新时间[:：]|本章字数[:：]|本书由|本书来自|本作品来自|手打团|首发于|"
    r"^[ \t\u3000]*(?:输入|录入|校对|扫描|制作|作者)[:：]|"
    r"^[ \t\u3000]*[^\s\-]{1,12}--[^\s\-]{1,20}--"
    r")[^\n]*(?:\n|$)",
    re.M,
)
# Every literal that can start a BOILERPLATE_LINE_RE match: lines are only examined
# where one of these occurs (one scan of the text instead of a pattern at every line).
BOILERPLATE_HINT_RE = re.compile(
    r"电子书|TXT|txt|下载|阅读|请访问|正版|版权|仅供|商业用途|网友|侵犯|删除|整理|转载|章节内容|更新时间|"
    r"本章字数|本书|本作品|手打|首发|输入|录入|校对|扫描|制作|作者|--"
)
SEPARATOR_LINE_RE = re.compile(rf"\n{_S}*[-=*_—~#]{{6,}}{_S}*(?=\n)")
TEXT_PREFIX_RE = re.compile(rf"^{_S}*正文(?={_S}*第)", re.M)  # "正文 第一回" -> "第一回"
TOC_DEBRIS_RE = re.compile(rf"《》目录{_S}*")
TOC_BLOCK_RE = re.compile(rf"\n{HEADING}[^\n]*(?:\n{HEADING}[^\n]*){{2,}}(?=\n)")
# Mojibake left where a GBK extension character was lost: "z茧P", "y中T", "yA", "*ψw",
# "z⒐陧A". Only inside Chinese text (the character before is not ASCII). Each branch
# starts with a plain character class and checks behind afterwards: twice as fast.
JUNK_RUN_RE = re.compile(
    r"[yz*](?<=[^\x00-\x7f][yz*])[^\sA-Za-z0-9，。！？、：；“”‘’「」,.!?;:\"']{0,4}[A-Za-z|?](?![A-Za-z0-9])"
    rf"|[A-Za-z](?<![A-Za-z0-9][A-Za-z])[{CJK}][A-Za-z](?![A-Za-z0-9])"
)
PLACEHOLDER_RE = re.compile(rf"□|(?<=[{CJK}])\?(?=[{CJK}])")
INNER_SPACE_RE = re.compile(rf"{_S}+")
BLANK_RUN_RE = re.compile(r"\n{2,}")


def _drop(pattern: re.Pattern, text: str, rule: str, report: FileReport) -> str:
    def cut(m: re.Match) -> str:
        report.add_drop(rule, m.group(0))
        return ""

    return pattern.sub(cut, text)


def drop_site_urls(text: str, report: FileReport) -> str:
    # Find top-level domains first (one literal-led scan, fast), then match the whole
    # URL and a site name just before it only around each: ~10x faster than a URL
    # pattern tried at every character.
    out, pos = [], 0
    for tld in TLD_RE.finditer(text):
        if tld.start() < pos:
            continue
        line_start = text.rfind("\n", 0, tld.start()) + 1
        m = SITE_URL_RE.search(text, max(pos, line_start, tld.start() - 80), tld.end() + 200)
        if not m or m.start() > tld.start():
            continue
        start = m.start()
        name = SITE_NAME_BEFORE_RE.search(text, max(pos, start - 12), start)
        if name:
            start = name.start()
        out.append(text[pos:start])
        report.add_drop("boilerplate", text[start:m.end()])
        pos = m.end()
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def drop_lines(text: str, rules: list[tuple[re.Pattern, str]], report: FileReport) -> str:
    """Drop whole lines matched by patterns of the form "\n" + line (+ lookahead "\n"),
    on the text framed by a newline at each end. Each match removes a line and the
    newline before it; the first line's "newline before" is the frame, which is no
    input character, so it is not counted and the first line's own newline is."""
    if not rules:
        return text
    text = "\n" + text + "\n"
    frame = {"alive": True, "rule": None}
    for pattern, rule in rules:
        def cut(m: re.Match, rule=rule) -> str:
            gone = m.group(0)
            if m.start() == 0 and frame["alive"]:
                frame["alive"], frame["rule"] = False, rule
                gone = gone[1:]
            report.add_drop(rule, gone)
            return ""

        text = pattern.sub(cut, text)
    text = text[:-1]  # the closing frame: every pattern leaves the final newline alone
    if frame["alive"]:
        return text[1:]
    if text.startswith("\n"):  # the newline that ended the dropped first line
        report.dropped[frame["rule"]] += 1
        return text[1:]
    return text


def drop_boilerplate_lines(text: str, report: FileReport) -> str:
    out, pos, seen = [], 0, -1
    for hint in BOILERPLATE_HINT_RE.finditer(text):
        start = text.rfind("\n", 0, hint.start()) + 1
        if start == seen or start < pos:
            continue
        seen = start
        m = BOILERPLATE_LINE_RE.match(text, start)
        if m:
            out.append(text[pos:start])
            report.add_drop("boilerplate", m.group(0))
            pos = m.end()
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def display_width(line: str) -> int:
    # GB18030 spends two bytes on a full-width character and one on ASCII: exactly
    # the column count that hard-wrapping tools used, computed in C.
    return len(line.encode("gb18030", errors="replace"))


def detect_wrap_width(widths: list[int]) -> int | None:
    """Width at which the text was hard-wrapped, or None if it was not."""
    long = [w for w in widths if w >= 40]
    nonblank = sum(1 for w in widths if w > 0)
    if len(long) < 10 or nonblank == 0:
        return None
    mode = Counter(long).most_common(1)[0][0]
    near = sum(1 for w in long if mode - 4 <= w <= mode)
    over = sum(1 for w in long if w > mode)
    # A wrapped text has a crowd of lines at the width and almost none past it.
    if near >= 0.3 * nonblank and over <= 0.01 * nonblank:
        return mode
    return None


def rejoin_hard_wraps(text: str, report: FileReport) -> str:
    lines = text.split("\n")
    # Decide on a sample first: most texts are not wrapped and need no full pass.
    if detect_wrap_width([display_width(line.rstrip(SPACE)) for line in lines[:3000]]) is None:
        return text
    widths = [display_width(line.rstrip(SPACE)) for line in lines]
    width = detect_wrap_width(widths)
    if width is None:
        return text
    report.hard_wrap_width = width
    out = [lines[0]]
    for prev_width, line in zip(widths, lines[1:]):
        # A line that reached the wrap width continues in the next line unless that
        # one starts a new paragraph (indented, blank, or a chapter heading).
        if prev_width >= width - 4 and line and line[0] not in SPACE and not HEADING_RE.match(line):
            prev = out[-1]
            stripped = prev.rstrip(SPACE)
            report.add_drop("whitespace", prev[len(stripped):])
            report.dropped["hard_wrap"] += 1  # the line break itself
            out[-1] = stripped + line
        else:
            out.append(line)
    return "\n".join(out)


def normalize_spaces(text: str, report: FileReport) -> str:
    # Indentation and trailing blanks: str.strip per line runs in C, 5x faster than a regex.
    stripped = "\n".join(line.strip(SPACE) for line in text.split("\n"))
    report.dropped["whitespace"] += len(text) - len(stripped)
    text = stripped

    def one_space(m: re.Match) -> str:
        run = m.group(0)
        if run != " ":
            report.add_drop("whitespace", run[1:])
            report.normalized += run[0] != " "
        return " "

    return INNER_SPACE_RE.sub(one_space, text)


def collapse_blank_lines(text: str, report: FileReport) -> str:
    def one_break(m: re.Match) -> str:
        report.dropped["blank_lines"] += len(m.group(0)) - 1
        return "\n"

    text = BLANK_RUN_RE.sub(one_break, text)
    stripped = text.strip("\n")
    report.dropped["blank_lines"] += len(text) - len(stripped)
    return stripped


_opencc = None


def to_simplified(text: str, report: FileReport) -> str:
    global _opencc
    if _opencc is None:
        import opencc

        _opencc = opencc.OpenCC("t2s")
    out = _opencc.convert(text)
    if len(out) == len(text):
        report.normalized += sum(a != b for a, b in zip(text, out))
        return out
    # Phrase-level conversion changed the length: account for it as a drop so the
    # balance still holds (rare; OpenCC's t2s is almost always character for character).
    report.dropped["to_simplified"] += len(text) - len(out)
    return out


def clean_text(text: str, opts: CleanOptions, report: FileReport) -> str:
    """Apply every enabled rule to one document. Updates `report`; returns the clean text,
    paragraphs separated by single newlines."""
    report.input_chars += len(text)
    report.documents += 1
    if text.startswith("\ufeff"):
        report.dropped["bom"] += 1
        text = text[1:]
    report.dropped["line_ends"] += text.count("\r\n")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\ufffd" in text:
        text = _drop(re.compile("\ufffd"), text, "bad_bytes", report)
    if opts.boilerplate:
        text = drop_site_urls(text, report)
        text = drop_boilerplate_lines(text, report)
        text = _drop(TEXT_PREFIX_RE, text, "boilerplate", report)
    if opts.toc:
        text = _drop(TOC_DEBRIS_RE, text, "toc", report)
    line_rules = [(SEPARATOR_LINE_RE, "boilerplate")] if opts.boilerplate else []
    line_rules += [(PAGE_MARKER_RE, "page_markers")] if opts.page_markers else []
    line_rules += [(TOC_BLOCK_RE, "toc")] if opts.toc else []
    text = drop_lines(text, line_rules, report)
    if opts.junk_runs:
        text = _drop(JUNK_RUN_RE, text, "junk_runs", report)
    if opts.placeholders:
        text = _drop(PLACEHOLDER_RE, text, "placeholders", report)
    if opts.hard_wrap:
        text = rejoin_hard_wraps(text, report)
    if opts.whitespace:
        text = normalize_spaces(text, report)
        text = collapse_blank_lines(text, report)
    if opts.to_simplified:
        text = to_simplified(text, report)
    report.kept_chars += len(text)
    return text


def has_cjk(text: str) -> bool:
    return CJK_RE.search(text) is not None


def load_corpus(
    inputs: Iterable[str | os.PathLike],
    opts: CleanOptions | None = None,
    replace_bad_bytes: bool = False,
) -> Iterator[tuple[FileReport, list[Document]]]:
    """Yield (report, clean documents) per input file. Raises CorpusError on unreadable input."""
    opts = opts or CleanOptions()
    for path in find_inputs(inputs):
        try:
            raw, enc, nbytes, bad = read_documents(path, replace_bad_bytes)
        except BinaryFileError as e:
            yield FileReport(path=str(path), bytes=path.stat().st_size, skipped=str(e).split(": ", 1)[1]), []
            continue
        report = FileReport(path=str(path), encoding=enc, bytes=nbytes, bad_bytes_replaced=bad)
        docs: list[Document] = []
        if not raw:
            report.skipped = "empty file"
        for i, text in enumerate(raw):
            part = FileReport(path=report.path)
            clean = clean_text(text, opts, part)
            if clean and not has_cjk(clean):
                # Chinese models gain nothing from it; say so rather than train on it.
                part.dropped["no_chinese"] += len(clean)
                part.kept_chars -= len(clean)
                clean = ""
            report.merge(part)
            if clean:
                name = report.path if len(raw) == 1 else f"{report.path}[{i}]"
                docs.append(Document(name, clean))
        if raw and not docs:
            report.skipped = "no Chinese text" if report.dropped.get("no_chinese") else "nothing left after cleaning"
        yield report, docs


# ----------------------------------------------------------------------------
# Train / validation split


def split_document(text: str, val_fraction: float) -> tuple[str, str]:
    """First (1 - val_fraction) for training, the rest for validation, cut at the
    paragraph break nearest the cut point (deterministic). The break itself is dropped."""
    if val_fraction <= 0:
        return text, ""
    cut = int(len(text) * (1 - val_fraction))
    after = text.find("\n", cut)
    before = text.rfind("\n", 0, cut)
    candidates = [i for i in (before, after) if i > 0]
    if not candidates:  # one paragraph: cut inside it at a sentence end, else exactly
        ends = [m.end() for m in re.finditer("[。！？!?]", text)]
        i = min(ends, key=lambda e: abs(e - cut)) if ends else cut
        return text[:i], text[i:]
    i = min(candidates, key=lambda c: abs(c - cut))
    return text[:i], text[i + 1:]
