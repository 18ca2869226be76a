"""Site debris: boilerplate learned from repetition, HTML, adverts, notices, URLs,
navigation, separators, tables of contents and page markers.

Keyword rules only fire where the context says "notice, not prose": a line of a notice
carries a strong phrase (更新时间:2007…, 不得用作商业用途) or two weaker signals and does not
read as a sentence; an advert inside a paragraph is a sentence with a call to action for
a site. Boilerplate that no list foresaw is found by repetition: a line (with its digits
folded) that recurs through a file, or across many documents, and does not read as prose.
"""
from __future__ import annotations

import html
import re
import zlib
from collections import Counter

import numpy as np

from .base import (_S, CJK, HEADING_RE, HEADING_START, INNER_SPACE_RE, SENTENCE_END, SPACE, Doc, Rule, cut_pattern,
                   cut_spans, drop_lines, headings, is_heading, register, replace_pattern)

# ----------------------------------------------------------------------------
# What prose looks like


PROSE_END = set("。！？!?…”’」』：:；;，,、~～—")
MID_WORD_END_RE = re.compile(f"[{CJK}A-Za-z0-9０-９，、]$")
BRACKETED_RE = re.compile(r"^[（(【\[〔].*[）)】\]〕]$")
CJK_PUNCT_RE = re.compile("[，。！？；：、“”]")


def reads_as_prose(s: str) -> bool:
    """A stripped line that reads as a sentence: it ends like one, or it is long and
    punctuated like running text (a hard-wrapped line ends anywhere). A line wholly in
    brackets is a note (（本章完）, 【求推荐票】), not prose."""
    if not s:
        return False
    if BRACKETED_RE.match(s):
        return False
    if s[-1] in PROSE_END:
        return True
    return len(s) >= 16 and (s.count("，") + s.count("。") >= 2 or len(CJK_PUNCT_RE.findall(s)) >= 2)


# ----------------------------------------------------------------------------
# repeated: boilerplate learned from repetition


HEADING_START_RE = re.compile(f"[{HEADING_START}]")
DIGITS_RE = re.compile(r"[0-9０-９]+")
MAX_TEMPLATE = 100


def line_template(line: str) -> str | None:
    """The shape of a line that could be boilerplate (digits folded, blanks collapsed,
    a chapter heading after a prefix replaced by §), or None for prose and headings."""
    s = line.strip(SPACE)
    if not 2 <= len(s) <= MAX_TEMPLATE or s[-1] in PROSE_END and not BRACKETED_RE.match(s):
        return None
    if reads_as_prose(s):
        return None
    if HEADING_START_RE.search(s):
        if is_heading(s):
            return None
        h = heading_inside(s)
        if h:  # "吴承恩--西游记--第一回 …": the running header before a heading
            return INNER_SPACE_RE.sub(" ", DIGITS_RE.sub("0", s[:h].rstrip(SPACE))) + "§"
    if len(s) <= 40 and (PAGE_MARKER_RE.fullmatch(s) or SEPARATOR_RE.fullmatch(s)):
        return None  # the page_markers and separators rules know these (and where a page broke)
    return INNER_SPACE_RE.sub(" ", DIGITS_RE.sub("0", s))


def heading_inside(s: str) -> int:
    """Where a chapter heading starts after a prefix in the line, or 0."""
    for m in HEADING_START_RE.finditer(s, 1):
        if s[m.start() - 1] not in SPACE and HEADING_RE.match(s, m.start()):
            return m.start()
    return 0


class Recurrence:
    """How often a template recurs, and in how many different places: what comes just
    before it. Boilerplate recurs in many places (after every chapter's last line, at every
    page top); a line shared by two editions of the same book, or by a file given twice,
    recurs in one place only, and is not boilerplate.

    One summary per piece of a file, added up into the file's (`add_piece`), files folded
    into the corpus's (`add_file`: a count is the most one file holds). Its table is capped
    at CAP templates: when it fills, the templates held by the fewest documents are forgotten
    (those already recurring within one file in enough places are kept), so that memory does
    not grow with the corpus; `forgotten` says how many."""

    MIN_IN_FILE = 3            # occurrences within one file
    MIN_DOC_SHARE = 1 / 200    # ... or documents of the corpus holding it (and at least 3)
    MIN_PLACES = 3             # ... in at least this many different places
    KEEP_PLACES = 4
    # templates in the table: ~350 B each with their counts, places and the heap's slack, so
    # 18 MB at the cap (at 100,000 it was the largest thing in prepare's peak at 4 GB of input);
    # a book holds a few hundred, and boilerplate, held by many documents, outlives every pruning
    CAP = 50_000

    def __init__(self):
        self.count: Counter = Counter()     # occurrences in this file
        self.docs: Counter = Counter()      # documents holding it
        # template -> a few crc32s of what came before it, as a tuple: the table holds up to CAP
        # of them, and a tuple of one is 48 bytes where a set is 216
        self.places: dict[str, tuple] = {}
        self.forgotten = 0

    def add(self, template: str, before: str) -> None:
        self.count[template] += 1
        places = self.places.get(template, ())
        if len(places) < self.KEEP_PLACES:
            crc = zlib.crc32(before.encode("utf-8", "replace"))
            self.places[template] = places if crc in places else places + (crc,)

    def end_document(self, seen: set) -> None:
        self.docs.update(seen)
        self._bound()

    def add_piece(self, other: "Recurrence") -> None:
        """Another piece of the same file."""
        self.count.update(other.count)
        self._absorb(other)

    def add_file(self, other: "Recurrence") -> None:
        """Another file of the corpus."""
        count = self.count
        for t, n in other.count.items():
            if n > count.get(t, 0):
                count[t] = n
        self._absorb(other)

    def _absorb(self, other: "Recurrence") -> None:
        self.docs.update(other.docs)
        places = self.places
        for t, p in other.places.items():
            mine = places.get(t, ())
            if len(mine) < self.KEEP_PLACES:
                places[t] = tuple(set(mine).union(p)) if mine else p
        self.forgotten += other.forgotten
        self._bound()

    def _bound(self) -> None:
        if len(self.places) <= self.CAP:
            return
        docs, count, places = self.docs, self.count, self.places
        sure = {t for t, p in places.items() if len(p) >= self.MIN_PLACES and count[t] >= self.MIN_IN_FILE}
        # lines held by one document go first (one pass, no sorting: most candidates are those);
        # only when too few of them are the least shared of the rest sorted out
        gone = [t for t in places if docs[t] <= 1 and t not in sure]
        if len(places) - len(gone) > self.CAP // 2:
            rest = sorted((t for t in places if docs[t] > 1 and t not in sure), key=lambda t: (docs[t], t))
            gone += rest[: len(places) - len(gone) - self.CAP // 2]
        for t in gone:
            del places[t]
            count.pop(t, None)
            docs.pop(t, None)
        self.forgotten += len(gone)

    def learned(self, n_docs: int) -> frozenset:
        need = max(3, n_docs * self.MIN_DOC_SHARE)
        count, docs = self.count, self.docs
        learned = {t for t, p in self.places.items()
                   if len(p) >= self.MIN_PLACES and (count[t] >= self.MIN_IN_FILE or docs[t] >= need)}
        # two letters or characters alone recur in ordinary dialogue ("嗯", "啊啊")
        return frozenset(t for t in learned if len(t) >= 3 or not t.isalpha())

    @classmethod
    def learn(cls, scans: list, n_docs: int) -> frozenset:
        corpus = cls()
        for scan in scans:
            if scan is not None:
                corpus.add_file(scan)
        return corpus.learned(n_docs)


class LearnsRecurrence(Rule):
    """A rule that learns what recurs across the corpus (scan -> learn) before it cleans."""

    def learn(self, scans: list, n_docs: int):
        return Recurrence.learn(scans, n_docs)

    def finish(self, summary: Recurrence, n_docs: int):
        return summary.learned(n_docs)

    def learned(self, text: str, doc: Doc) -> frozenset:
        learned = doc.learned.get(self.name)
        if learned is None:  # cleaning one file on its own: learn from it alone
            learned = self.learn([self.scan([text])], 1)
        return learned


@register
class Repeated(LearnsRecurrence):
    name = "repeated"
    help = ("lines that recur through a file or across many documents, in many places, and do not read as "
            "prose (site navigation, typist credits, running headers, update-time lines), learned from the corpus")

    def scan(self, texts: list[str]):
        rec = Recurrence()
        for text in texts:
            seen = set()
            before = ""
            for line in text.split("\n"):
                if len(line) <= MAX_TEMPLATE + 20:  # (most lines of a book are longer: paragraphs)
                    t = line_template(line)
                    if t is not None:
                        rec.add(t, before)
                        seen.add(t)
                before = line.strip(SPACE) or before
            rec.end_document(seen)
        return rec

    def apply(self, text: str, doc: Doc) -> str:
        learned = self.learned(text, doc)
        if not learned:
            return text
        lines = text.split("\n")
        drop = {}
        inside = InParagraph(text, lines, doc)
        hits = [(i, t) for i, t in ((i, line_template(line)) for i, line in enumerate(lines)) if t in learned]
        language = self._words(text, lines, hits)
        for i, t in hits:
            if i in inside or t in language:
                continue
            line = lines[i]
            if t.endswith("§"):  # keep the heading, drop the header before it
                start = len(line) - len(line.lstrip(SPACE))
                head = line[start + heading_inside(line.strip(SPACE)):]
                doc.report.add_drop(self.name, line[: len(line) - len(head)], "", head)
                lines[i] = head
            else:
                drop[i] = self.name
        return "\n".join(drop_lines(lines, drop, doc))

    @staticmethod
    def _words(text: str, lines: list[str], hits: list[tuple[int, str]]) -> set[str]:
        """Learned lines that are pieces of the language, not boilerplate: the tail of a
        wrapped headline ("省省长" after "…当选福建") recurs as a line of its own, and also
        inside sentences of the text, which a site's line never does."""
        alone = Counter(t for _, t in hits)
        out = set()
        for t, n in alone.items():
            if "0" in t or "§" in t or len(t) > 12 or text.count(t) - n < max(2, n):
                continue
            within = sum(1 for line in lines
                         if t in line and len(line) > len(t) + 4 and reads_as_prose(line.strip(SPACE)))
            if within >= max(2, n):   # inside sentences as often as alone
                out.add(t)
        return out


class InParagraph:
    """Which lines are pieces of a hard-wrapped paragraph, so that a line rule does not take
    a piece of a sentence for a line of its own: a line that reaches the wrap width (it goes
    on in the next line), or the tail of a sentence the line before began. Measured once,
    and only if a line rule has a candidate."""

    def __init__(self, text: str, lines: list[str], doc: Doc):
        self.text, self.lines, self.doc = text, lines, doc
        self._full: set[int] | None = None

    def __contains__(self, i: int) -> bool:
        if self._full is None:
            from .paragraphs import full_lines, line_table

            self._full = full_lines(line_table(self.text, self.doc))
        if i in self._full:
            return True
        line = self.lines[i].rstrip(SPACE)
        k = i - 1
        while k >= 0 and not self.lines[k].strip(SPACE):
            k -= 1
        return (bool(line) and k >= 0 and line[-1] in SENTENCE_END
                and MID_WORD_END_RE.search(self.lines[k].rstrip(SPACE)) is not None)


# ----------------------------------------------------------------------------
# html: tags and entities


# A hard-wrapped page of HTML can cut a tag or an entity in two: one line break (and the
# indentation after it) is allowed inside either.
_NL = r"(?:\n[ \t\u3000]*)?"
BLOCK_TAG_RE = re.compile(rf"<{_NL}(?:b{_NL}r|p|d{_NL}i{_NL}v|l{_NL}i|t{_NL}r|h{_NL}[1-6])\b[^<>]{{0,300}}>"
                          rf"|<{_NL}/{_NL}(?:p|d{_NL}i{_NL}v|l{_NL}i|t{_NL}r|h{_NL}[1-6]){_NL}>", re.I)
TAG_RE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>|<!--.*?-->"
                    rf"|<{_NL}/?{_NL}[A-Za-z][A-Za-z0-9]*(?:\n[ \t\u3000]*[A-Za-z0-9]+)?(?:\s[^<>]{{0,300}})?/?{_NL}>"
                    r"|\[/?(?:img|url|b|i|u|color|size|font|quote)(?:=[^\]\n]{0,200})?\]", re.I | re.S)
ENTITY_RE = re.compile(r"&[A-Za-z0-9#]{0,8}(?:\n[ \t\u3000]*)?[A-Za-z0-9#]{0,8};")


@register
class Html(Rule):
    name = "html"
    help = "HTML and BBCode tags (<br> and <p> become line breaks, images and scripts go) and entities (&nbsp; &#20320;)"

    def apply(self, text: str, doc: Doc) -> str:
        if "<" not in text and "[" not in text and "&" not in text:
            return text
        text = replace_pattern(BLOCK_TAG_RE, text, lambda m: "\n", self.name, doc)
        before = text
        # a tag or an entity cut by a hard wrap keeps the wrap's line break: the line
        # structure stays, for the hard_wrap rule to read
        text = replace_pattern(TAG_RE, text, lambda m: "\n" * m.group(0).count("\n"), self.name, doc)

        def entity(m: re.Match) -> str:
            whole = INNER_SPACE_RE.sub("", m.group(0).replace("\n", ""))
            out = html.unescape(whole)
            if len(out) < len(whole) and not out.startswith("&"):
                return out + "\n" * m.group(0).count("\n")
            return m.group(0)

        text = replace_pattern(ENTITY_RE, text, entity, self.name, doc)
        if text is not before:
            self._note_shortened(before, text, doc)
        return text

    @staticmethod
    def _note_shortened(before: str, after: str, doc: Doc) -> None:
        """The lines that lost a tag or an entity inside them, with what they lost (characters,
        columns): a hard-wrapping tool counted those, so the hard_wrap rule adds them back
        when it measures the line."""
        old, new = before.split("\n"), after.split("\n")
        if len(old) != len(new):   # (defensive: every replacement above keeps its line breaks)
            return
        from .paragraphs import display_width

        for a, b in zip(old, new):
            if a != b and b.strip(SPACE):
                doc.shortened_lines[b] = (len(a) - len(b), display_width(a) - display_width(b))


# ----------------------------------------------------------------------------
# URLs and e-mail addresses, bounded by what can be in one (never a hanzi)


_TLD = r"com|net|org|cn|cc|info|la|tw|hk|me|io|tv|biz|us|top|xyz|vip|club|co|in|edu|gov|mobi|name"
_URL = (rf"(?:https?://|ftp://)[A-Za-z0-9.-]+(?::\d+)?(?:/[A-Za-z0-9_./?=&%#~+:@!$,;-]*)?"
        rf"|(?:www\.)?(?:[A-Za-z0-9][A-Za-z0-9-]*\.)+(?:{_TLD})(?:\.(?:cn|tw|hk|uk|jp|kr))?(?![A-Za-z0-9-])"
        rf"(?::\d+)?(?:/[A-Za-z0-9_./?=&%#~+:@!$,;-]*)?")
_EMAIL = r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![A-Za-z])"
URL_RE = re.compile(rf"(?<![A-Za-z0-9@._-])(?:{_EMAIL}|{_URL})")
# A site name just before a URL ("天涯在线书库《www...》", "雨枫轩:http://...") goes with it.
SITE_NAME_BEFORE_RE = re.compile(rf"[{CJK}]{{0,8}}(?:书库|书屋|书城|书吧|书网|小说网|文学网|中文网|网|轩|阁|论坛)"
                                 rf"(?:[(（][^()（）\n]{{0,8}}[)）])?[:：]?{_S}*$")
# Every URL or address holds one of these: a literal-led scan finds them ~20x faster than
# the full pattern tried at every character; the full pattern then runs around each.
URL_HINT_RE = re.compile(rf"://|www\.|@|\.(?:{_TLD})(?![A-Za-z0-9])")
WRAP_PAIRS = {"《": "》", "(": ")", "（": "）", "<": ">", "[": "]", "【": "】"}


@register
class Urls(Rule):
    name = "urls"
    help = "URLs and e-mail addresses, with the site name before them and brackets around them"

    def apply(self, text: str, doc: Doc) -> str:
        spans: list[tuple[int, int]] = []
        for hint in URL_HINT_RE.finditer(text):
            if spans and hint.start() < spans[-1][1]:
                continue
            line_start = text.rfind("\n", 0, hint.start()) + 1
            m = None
            for m in URL_RE.finditer(text, max(line_start, hint.start() - 100), hint.end() + 300):
                if m.end() > hint.start():
                    break
            if m is None or m.start() > hint.start() or m.end() <= hint.start():
                continue
            s, e = m.start(), m.end()
            while e > s and text[e - 1] in ".,:;!?-":  # a sentence's full stop after a URL is not part of it
                e -= 1
            if e - s < 4:
                continue
            if s > 0 and e < len(text) and WRAP_PAIRS.get(text[s - 1]) == text[e]:
                s, e = s - 1, e + 1
            line_start = text.rfind("\n", 0, s) + 1
            if spans and s < spans[-1][1]:
                continue
            name = SITE_NAME_BEFORE_RE.search(text, max(line_start, s - 16), s)
            if name:
                s = name.start()
            if spans and s < spans[-1][1]:
                s = spans[-1][1]
            spans.append((s, e))
        return cut_spans(text, spans, self.name, doc)


# ----------------------------------------------------------------------------
# adverts inside a paragraph, notices on lines of their own


ADVERT_STRONG = (r"请记住本站|本站(?:域名|网址|地址)|最新章节.{0,6}(?:首发|尽在|请到|请上|请访问)|首发(?:于|自)?.{0,10}"
                 r"(?:网|站|中文|小说|书城)|(?:请|敬请)?支持正版|正版订阅|订阅正版|手机(?:用户|阅读|看书)请|无弹窗|全文字(?:更新)?"
                 r"|更新最快|最快更新|免费(?:阅读|小说)|百度搜索|求(?:推荐票|月票|收藏|订阅|打赏)|投推荐票|加入书签|书友群"
                 r"|看书群|本章未完|点击下一页|(?:txt|TXT)全集|电子书下载|小说下载|请到.{0,10}(?:网|站)(?:阅读|下载)")
ADVERT_WEAK = (r"本站|网站|小说网|中文网|书城|书屋|阅读|最新|章节|更新|收藏|推荐|正版|下载|手机|访问|搜索|www|http|\.com"
               r"|欢迎|请")
ADVERT_STRONG_RE = re.compile(ADVERT_STRONG)
ADVERT_WEAK_RE = re.compile(ADVERT_WEAK)
# What makes a recurring sentence an advert rather than a refrain of the story ("未知胜负如何，
# 且看下文分解。" recurs 13 times in 三国演义): a site, or two calls to action.
SITE_RE = re.compile(r"本站|网站|小说网|中文网|文学网|www\.|https?://|\.com|\.net"
                     r"|【[^】\n]{0,12}(?:网|站|书城|书屋|阁|轩|小说|中文|www|com)[^】\n]{0,8}】")
CALL_RE = re.compile(r"阅读|最新|章节|更新|收藏|推荐|正版|下载|手机|访问|搜索|订阅|投票|月票|首发|记得|提醒")
# Literal-led hints for both rules (Python's re scans an alternation of literals fast, and
# anything else slowly): the full patterns only run on the sentences or lines holding one.
ADVERT_HINT_RE = re.compile(r"本站|章节|首发|正版|订阅|手机|弹窗|全文|最快|免费|百度|推荐|月票|收藏|打赏|书签|书友|书群|"
                            r"未完|下一页|全集|下载|请到|网站|小说网|中文网|文学网|书城|书屋|书库|书吧|www|http|\.com|\.net|【"
                            r"|阅读|最新|更新|访问|搜索|投票|记得|提醒")


def undo_wraps(text: str) -> str:
    """Join each line that does not end a sentence to the next (a rough undoing of hard
    wraps, for sentences that a wrap cut)."""
    pieces = []
    for line in text.split("\n"):
        pieces.append(line)
        pieces.append("\n" if not line or line[-1] in SENTENCE_END or line[-1] in SPACE else "")
    return "".join(pieces)


def sentence_template(sentence: str) -> str | None:
    """The shape of a sentence that could be a recurring advert, or None."""
    s = sentence.strip(SPACE + "，、；：,;:")
    if len(s) < 8 or len(s) > 160:
        return None
    if not SITE_RE.search(s) and len(set(CALL_RE.findall(s))) < 2:
        return None
    return INNER_SPACE_RE.sub(" ", DIGITS_RE.sub("0", s))
SENTENCE_STOP = "。！？!?\n"


def _sentence_around(text: str, start: int, end: int) -> tuple[int, int]:
    """The sentence (or bracketed aside) holding text[start:end]. An advert with no full stop
    of its own ends with its address: nothing in prose runs on after a URL."""
    left = max(text.rfind(c, 0, start) for c in SENTENCE_STOP) + 1
    for open_, close in (("（", "）"), ("(", ")"), ("【", "】")):
        o = text.rfind(open_, left, end)   # (the hint may be the bracket itself)
        if o >= 0 and text.find(close, o, start) < 0:
            c = text.find(close, end)
            nl = text.find("\n", end)
            if c >= 0 and (nl < 0 or c < nl):
                return o, c + 1
    stops = [i for i in (text.find(c, end) for c in SENTENCE_STOP) if i >= 0]
    right = min(stops) if stops else len(text)
    if right < len(text) and text[right] != "\n":
        right += 1
        while right < len(text) and text[right] in "。！？!?":
            right += 1
        # a closing quote belongs to the sentence only if the sentence opened one
        opened = sum(text.count(q, left, right) for q in "“「『") - sum(text.count(q, left, right) for q in "”」』")
        while opened > 0 and right < len(text) and text[right] in "”」』":
            right += 1
            opened -= 1
    last_url = None
    for m in URL_RE.finditer(text, left, right):
        last_url = m
    if (last_url is not None and last_url.end() > end
            and not ADVERT_HINT_RE.search(text, last_url.end(), min(right, last_url.end() + 8))):
        right = last_url.end()
        if right < len(text) and text[right] in "）)】》>":
            right += 1
    return left, right


LONG_SENTENCE = 80
CLAUSE_END = "，、；：“「\n"


def _advert_start(text: str, s: int, e: int) -> int:
    """Where an advert in the sentence [s, e) starts. A short sentence goes whole; in a long
    one (an advert glued to a list of names that has no full stop) only the clause holding
    the first hint and what follows it can be the advert."""
    if e - s <= LONG_SENTENCE:
        return s
    hint = ADVERT_HINT_RE.search(text, s, e)
    if hint is None:
        return s
    return max(s, max(text.rfind(c, s, hint.start()) for c in CLAUSE_END) + 1)


@register
class Adverts(LearnsRecurrence):
    name = "adverts"
    help = ("advert sentences inside a paragraph: a call to action for a site (本书首发于…请支持正版, 最新章节请到…), "
            "or a sentence naming a site that recurs through a file or across many documents")

    def _sentences(self, text: str):
        end = -1
        for hint in ADVERT_HINT_RE.finditer(text):
            if hint.start() < end:
                continue
            s, end = _sentence_around(text, hint.start(), hint.end())
            yield s, end

    def scan(self, texts: list[str]):
        rec = Recurrence()
        for text in texts:
            seen = set()
            text = undo_wraps(text)  # the scan sees raw text: undo hard wraps roughly
            for s, e in self._sentences(text):
                t = sentence_template(text[s:e])
                if t is not None:
                    rec.add(t, text[max(0, s - 16):s])
                    seen.add(t)
            rec.end_document(seen)
        return rec

    def apply(self, text: str, doc: Doc) -> str:
        learned = self.learned(text, doc)
        spans = []
        if learned:  # a learned advert is found wherever it stands, even glued to the story
            pattern = re.compile("|".join(re.escape(t).replace("0", "[0-9０-９]+").replace(r"\ ", f"{_S}+")
                                          for t in sorted(learned, key=len, reverse=True)[:500]))
            spans = [(m.start(), m.end()) for m in pattern.finditer(text)]
        for s, e in self._sentences(text):
            if any(a < e and s < b for a, b in spans):
                continue
            s = _advert_start(text, s, e)
            sentence = text[s:e]
            if learned and sentence_template(sentence) in learned:
                spans.append((s, e))
                continue
            if len(sentence) <= 100 and SITE_RE.search(sentence) and len(set(CALL_RE.findall(sentence))) >= 2:
                spans.append((s, e))  # a site and two calls to action ("…网提醒您：看完记得收藏…")
                continue
            strong = len(ADVERT_STRONG_RE.findall(sentence))
            if not strong:
                continue
            weak = len(ADVERT_WEAK_RE.findall(sentence))
            # a long sentence that merely mentions a site is narrative; an advert is short and pushy
            if strong >= 2 or (len(sentence) <= 80 and strong + weak >= 2) or len(sentence) <= 24:
                spans.append((s, e))
        return cut_spans(text, sorted(spans), self.name, doc)


NOTICE_STRONG_RE = re.compile(
    r"更新时间[:：]\s*\d|本章字数[:：]\s*\d|章节内容开始|手打团|(?:TXT|txt).{0,8}(?:下载|电子书|小说|全集)"
    r"|电子书(?:下载|版权)|整理校对|转载请(?:保留|注明)|本书来自|本书(?:首发|发布)于|版权(?:声明|归.{0,16}所有|所有)|侵犯了?您的|(?:24|二十四)小时内删除"
    r"|商业用途|购买正版|正版图书|本书由.{0,20}(?:整理|提供|首发|收集|制作)|本作品(?:来自|由)|网友(?:提供|上传|收集|整理)"
    r"|(?:更多|最新|好看).{0,8}(?:小说|电子书|好书).{0,8}(?:请|尽在|访问)|仅供.{0,10}(?:学习|研究|预览|交流)"
    r"|(?:招募|诚聘|招聘).{0,8}(?:编辑|志愿|版主)|本站(?:所有|收集|提供|声明)|^[ \t\u3000]*(?:输入|录入|校对|扫描|制作|排版|OCR)[:：]"
    r"|^[ \t\u3000]*作者[:：][^，。！？\n]{1,12}$"
)
NOTICE_WEAK_RE = re.compile(r"电子书|TXT|txt|下载|网友|本站|版权|删除|请访问|正版|整理|校对|仅供参考|书库|www\.|https?://|\.com")
SENTENCES_RE = re.compile(r"[^。！？!?]+[。！？!?]*")
NOTICE_HINT_RE = re.compile(r"电子书|TXT|txt|下载|网友|本站|版权|删除|访问|正版|整理|校对|仅供|书库|www|http|\.com|更新|字数|内容开始"
                            r"|手打|商业|本书|作品|招募|输入|录入|扫描|制作|排版|OCR|作者|好书|小说|侵犯|转载")


@register
class Notices(Rule):
    name = "notices"
    help = ("site notices on lines of their own: download adverts, disclaimers, copyright notices, typist "
            "credits, update-time lines (a strong phrase, or two signals on a line that is not a sentence)")

    def apply(self, text: str, doc: Doc) -> str:
        hints = [m.start() for m in NOTICE_HINT_RE.finditer(text)]
        if not hints:
            return text
        lines = text.split("\n")
        ends = np.cumsum([len(line) + 1 for line in lines])   # one past each line's break
        candidates = sorted(set(np.searchsorted(ends, hints, side="right").tolist()))
        drop = {}
        inside = InParagraph(text, lines, doc)
        for i in candidates:
            line = lines[i]
            s = line.strip(SPACE)
            if not s or len(s) > 120 or is_heading(s):
                continue
            strong = len(NOTICE_STRONG_RE.findall(s))
            if not strong and (not NOTICE_WEAK_RE.search(s) or i in inside):
                continue  # (weak signals in a piece of a wrapped paragraph are the story's words)
            pieces = SENTENCES_RE.findall(s)
            if any(len(p) >= 8 and not NOTICE_HINT_RE.search(p) for p in pieces):
                continue  # a sentence of story in the line: an advert inside it is the adverts rule's
            if len(pieces) > 1 and not NOTICE_HINT_RE.search(pieces[0]) and i in inside:
                continue  # ... or the end of one, in a wrapped paragraph ("小妖。本书首发于…")
            weak = len(set(NOTICE_WEAK_RE.findall(s)))   # one word said twice is one signal
            sentences = sum(s.count(c) for c in "。！？")
            if len(s) <= 60 and not sentences and URL_RE.search(s) and len(URL_RE.sub("", s)) <= 12:
                strong += 1  # a line that is mostly a site's address is a credit or an advert
            if strong and (sentences <= 2 or strong >= 2):
                drop[i] = self.name
            elif weak >= 2 and not (s[-1] in "。！？”」" and sentences >= 1 and not strong):
                drop[i] = self.name
        return "\n".join(drop_lines(lines, drop, doc))


# ----------------------------------------------------------------------------
# navigation blocks


def _lines_matching(pattern: re.Pattern, text: str) -> list[int]:
    """The numbers of the lines of `text` where `pattern` matches, in order (one pass over
    the text instead of one search per line)."""
    ends = np.flatnonzero(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == 10)
    starts = [m.start() for m in pattern.finditer(text)]
    return sorted(set(np.searchsorted(ends, starts).tolist()))


NAV_WORDS_RE = re.compile(
    r"返回(?:首页|目录|书页|列表|顶部|书架)?|首页|书库|书架|上一(?:页|章|篇)|下一(?:页|章|篇)|上页|下页|目录|章节(?:目录|列表)"
    r"|加入书签|书签|推荐本书|投票推荐|投推荐票|打开书架|收藏本站|我的书架|排行榜|全本|TOP|Top|top|Home|home|Next|Prev|next|prev"
    r"|点击|进入|论坛|繁體|简体|繁体|登录|注册|设置|回到顶部|本书简介|作者专栏|会员|充值|客户端")
NAV_FILLER_RE = re.compile(rf"[{SPACE}|｜/\\>»«<·•\-—_:：\[\]【】()（）《》,，、.。0-9]+")


@register
class Navigation(Rule):
    name = "navigation"
    help = ("lines of site navigation (首页 | 书库 | 上一页 | 返回目录 | 加入书签 …); a line of a site's sections "
            "between | separators whatever their words, and the run of short link lines beside it")

    def apply(self, text: str, doc: Doc) -> str:
        has_words = NAV_WORDS_RE.search(text) is not None
        has_bars = "|" in text or "｜" in text
        if not (has_words or has_bars):
            return text
        lines = text.split("\n")
        drop = {}
        inside = InParagraph(text, lines, doc)
        for i in _lines_matching(NAV_WORDS_RE, text) if has_words else ():   # (prose says 进入 and 点击 too)
            s = lines[i].strip(SPACE)
            if not s or len(s) > 100 or s[-1] in "。！？”」":
                continue
            words = NAV_WORDS_RE.findall(s)
            if not words:
                continue
            rest = NAV_FILLER_RE.sub("", NAV_WORDS_RE.sub("", s))
            # nothing but navigation: two items, or one short line that is an item (and not a
            # piece of a wrapped sentence that happens to hold one)
            if len(rest) <= 0.25 * len(s) and (len(words) >= 2 or (len(s) <= 6 and i not in inside)):
                drop[i] = self.name
        if has_bars:
            for i in _lines_matching(BAR_RE, text):
                if i not in drop and is_bar_menu(lines[i]):
                    drop[i] = self.name
                    for j in link_run(lines, i, drop):
                        drop[j] = self.name
        return "\n".join(drop_lines(lines, drop, doc))


BAR_RE = re.compile("[|｜]")
BAR_SPLIT_RE = re.compile(f"{_S}*[|｜]+{_S}*")
MENU_ITEMS = 5          # items between bars that make a menu
MENU_ITEM_CHARS = 8     # the longest a menu item may be (site sections are a few characters)
LINK_CHARS = 10         # the longest a link line beside a menu may be
LINK_RUN = 8            # and how many of them in a row at most


def is_bar_menu(line: str) -> bool:
    """A site's sections between bars ("玄幻 | 武侠 | 都市 | 历史 | …"): five items or more, all
    short, none a sentence; a table row or a verse with bars has long or punctuated cells."""
    s = line.strip(SPACE + "|｜")
    items = [t for t in BAR_SPLIT_RE.split(s) if t]
    if len(items) < MENU_ITEMS or any(c in s for c in "。！？，；"):
        return False
    return all(len(t) <= MENU_ITEM_CHARS for t in items) and sum(map(len, items)) >= 2 * len(items)


def link_run(lines: list[str], i: int, drop: dict) -> list[int]:
    """The run of one-line links next to a menu at line i (上一页 / 下一页 / 回目录 / 回首页, whatever
    the words): two or more short lines with no punctuation of a sentence, blank lines allowed
    between; a line or two of the site between the menu and the run (a call for editors) go
    with them when they do not end a sentence."""
    found = []
    for step in (1, -1):
        bridge, run, j = [], [], i + step
        while 0 <= j < len(lines) and len(run) < LINK_RUN:
            s = lines[j].strip(SPACE)
            if not s:
                j += step
                continue
            if j in drop or is_heading(s):
                break
            if len(s) > LINK_CHARS or any(c in s for c in SENTENCE_END + "，、；："):
                if run or len(bridge) == BRIDGE_LINES or len(s) > BRIDGE_CHARS or s[-1] in SENTENCE_END:
                    break
                bridge.append(j)
            else:
                run.append(j)
            j += step
        if len(run) >= 2:
            found += bridge + run
    return found


BRIDGE_LINES, BRIDGE_CHARS = 2, 40


# ----------------------------------------------------------------------------
# separators, tables of contents, page markers


SEPARATOR_RE = re.compile(rf"{_S}*[-=*_—~#＝－＊─━·.…]{{6,}}{_S}*")
SEPARATOR_LINE_RE = re.compile(rf"(?m)^{SEPARATOR_RE.pattern}$")


@register
class Separators(Rule):
    name = "separators"
    help = "separator lines (------, ======, ******)"

    def apply(self, text: str, doc: Doc) -> str:
        lines = text.split("\n")
        drop = {i: self.name for i in _lines_matching(SEPARATOR_LINE_RE, text)}
        return "\n".join(drop_lines(lines, drop, doc))


TOC_DEBRIS_RE = re.compile(rf"《》目录{_S}*")
TEXT_PREFIX_RE = re.compile(rf"(?m)^{_S}*正文{_S}*(?=第)")  # "正文 第一回" -> "第一回"
TOC_TITLE_RE = re.compile(rf"{_S}*(?:目{_S}*录|章节目录|目次){_S}*")


@register
class Toc(Rule):
    name = "toc"
    help = ('tables of contents (three or more heading lines in a row), "《》目录" debris before headings, '
            "a heading repeated on the next line")

    def apply(self, text: str, doc: Doc) -> str:
        if "《》目录" in text:
            text = cut_pattern(TOC_DEBRIS_RE, text, self.name, doc)
        if "正文" in text:
            text = cut_pattern(TEXT_PREFIX_RE, text, self.name, doc)
        lines = text.split("\n")
        heading = headings(lines)
        drop = {}
        i = 0
        while i < len(lines):
            if not heading[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(lines) and (heading[j + 1] or not lines[j + 1].strip(SPACE)):
                j += 1
            block = [k for k in range(i, j + 1) if heading[k]]
            # the last heading before text is a chapter's own; the same heading just before it
            # came from a running header
            chapter = block.pop() if j + 1 < len(lines) else None
            while chapter is not None and block and _same(lines[block[-1]], lines[chapter]):
                drop[block.pop()] = self.name
            if len(block) >= 3:  # a table of contents: every heading line of it (and its title)
                drop.update({k: self.name for k in block})
                title = i - 1
                while title >= 0 and not lines[title].strip(SPACE):
                    title -= 1
                if title >= 0 and TOC_TITLE_RE.fullmatch(lines[title]):
                    drop[title] = self.name
            i = j + 1
        return "\n".join(drop_lines(lines, drop, doc))


def _same(a: str, b: str) -> bool:
    return INNER_SPACE_RE.sub("", a) == INNER_SPACE_RE.sub("", b)


PAGE_MARKER_RE = re.compile(
    rf"{_S}*[-—–=_*·.{SPACE}]*{_S}*(?:第{_S}*[0-9０-９]+{_S}*页(?:{_S}*共{_S}*[0-9０-９]+{_S}*页)?"
    rf"|[Pp](?:age|\.)?{_S}*[0-9]+(?:{_S}*(?:/|of){_S}*[0-9]+)?|[0-9０-９]{{1,4}}(?:{_S}*/{_S}*[0-9]{{1,4}})?)"
    rf"{_S}*[-—–=_*·.{SPACE}]*{_S}*|\f+")


@register
class PageMarkers(Rule):
    name = "page_markers"
    help = ('page markers and bare page numbers ("- 12 -", "第12页", "---- Page 12 ----", "12") with the blank '
            "lines around them; a paragraph cut by a page break is joined again")

    def apply(self, text: str, doc: Doc) -> str:
        lines = text.split("\n")
        marks = [i for i, line in enumerate(lines) if line and len(line) <= 40 and PAGE_MARKER_RE.fullmatch(line)]
        if not marks:
            return text
        drop = {}
        for i in marks:
            drop[i] = self.name
            for step in (-1, 1):  # the blank lines around a marker belong to the page break
                k = i + step
                while 0 <= k < len(lines) and not lines[k].strip(SPACE):
                    drop[k] = self.name
                    k += step
        # Where a page break was, the paragraph may go on: tell the hard_wrap rule, which
        # joins the lines there if the first one ends mid-sentence.
        kept_before = 0
        soft = set()
        for i in range(len(lines)):
            if i in drop:
                if i + 1 < len(lines) and i + 1 not in drop and kept_before:
                    soft.add(kept_before - 1)
            else:
                kept_before += 1
        doc.soft_breaks = soft
        return "\n".join(drop_lines(lines, drop, doc))
