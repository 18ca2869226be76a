"""Noise generators with ground truth, for the cleaning benchmark and tests.

Start from clean paragraphs (one per line, chapter headings on lines of their own) and
make the kinds of damage scraped Chinese e-books carry, recording what is noise:

    wrap            hard wraps at 10-60 characters (20-120 columns), indented or not, counted
                    with or without the indentation, hanging punctuation, blank lines or not,
                    the width changing between chapters
    blocks          a letter or a poem set apart: a few paragraphs wrapped at a narrower width of
                    their own, every line indented or none, sometimes a blank line after each,
                    inside wrapped or unwrapped text
    page_markers    "- 12 -", "第12页", "----- Page 12 -----", a bare number, between lines
                    and inside paragraphs, with or without blank lines around
    navigation      blocks of site navigation between chapters (the same block each time, or varied)
    notices         download adverts, disclaimers, typist credits, update-time lines
    adverts         advert sentences inside paragraphs
    html            tags and entities
    mojibake        paragraphs or spans sent through a wrong encoding round trip
    debris          lost characters: a lone letter of another script, "*", "z茧P"-style junk
    masks           "**" over words
    prose_traps     true text that looks like noise ("--" dashes, 电子书 and 仅供参考 in sentences)
    unpunctuated    true text a sentence per line, some lines without their full stop (web fiction;
                    not in KINDS: a layout of its own, for the paragraph rules' precision)

Each generator returns a Noisy: the noisy text, the truth it should clean to, and the
number of noise characters it put in. `make(paragraphs, kinds, seed)` composes them.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

HEADING_RE = re.compile(r"^(?:第[0-9０-９零〇一二三四五六七八九十百千两]+[回章节卷]|楔子|序章|引子|尾声|后记|番外|附\s*录)")
CLOSING = set("，。、；：？！”’」』）》…")
SITES = ["天涯在线书库", "雨枫轩", "中华古籍", "书香门第", "起点中文网", "笔趣阁", "顶点小说", "八一中文网", "新浪读书",
         "红袖添香", "潇湘书院", "纵横中文网", "17K小说网", "看书网", "落秋中文", "全本小说网"]
DOMAINS = ["www.tianyabook.com", "www.rain8.com", "oldbook.126.com", "www.shuxiang.net", "www.qidian.com",
           "www.biquge.la", "m.23us.cc", "www.81zw.com.cn", "book.sina.com.cn", "www.hongxiu.com", "xs.17k.com",
           "www.kanshu.com", "http://www.luoqiu.com/read/123/", "https://www.quanben5.com/n/abc.shtml"]
NAMES = ["小草", "清风", "云飞扬", "老K", "书虫", "无名氏", "天天", "阿文"]


def is_heading(line: str) -> bool:
    return bool(HEADING_RE.match(line)) and len(line) <= 60


@dataclass
class Noisy:
    text: str
    truth: str
    noise: dict = field(default_factory=dict)     # class -> noise characters put in
    breaks: int = 0                               # line breaks put inside paragraphs (wraps, page breaks)
    headings: list = field(default_factory=list)


def _width(s: str, cols: bool) -> int:
    return len(s.encode("gb18030", "replace")) if cols else len(s)


# ----------------------------------------------------------------------------
# Changes inside paragraphs (truth and noisy text change together)


def adverts(pairs, rng, rate=0.03):
    templates = ["本书首发于{site}，请支持正版！", "（{site}最新章节请到{url}阅读）", "手机用户请浏览{url}阅读，更优质的阅读体验。",
                 "求推荐票！求收藏！", "{site}提醒您：看完记得收藏【{site}】，下次我更新您才方便继续阅读哦，期待精彩继续！",
                 "请记住本站域名：{url}", "（本章未完，请点击下一页继续阅读）", "百度搜索{site}，最快更新最新章节。",
                 "【{site}无弹窗全文字更新】"]
    site, url = rng.choice(SITES), rng.choice(DOMAINS)   # one site's adverts through a document
    out, n = [], 0
    for p, t in pairs:
        if not is_heading(t) and len(p) > 30 and rng.random() < rate:
            ad = rng.choice(templates).format(site=site, url=url)
            cuts = [m.end() for m in re.finditer("[。！？]", p[:-1])]
            at = rng.choice(cuts) if cuts else len(p)
            out.append((p[:at] + ad + p[at:], t))
            n += len(ad)
        else:
            out.append((p, t))
    return out, {"adverts": n}


def html_noise(pairs, rng, rate=0.05):
    out, n = [], 0
    for p, t in pairs:
        if is_heading(t) or rng.random() > rate:
            out.append((p, t))
            continue
        kind = rng.randrange(4)
        if kind == 0:
            noisy = "&nbsp;&nbsp;&nbsp;&nbsp;" + p + "<br />"
            n += len(noisy) - len(p) - 4  # four &nbsp; become four spaces, which whitespace strips
        elif kind == 1:
            noisy = "<p>" + p + "</p>"
            n += 7
        elif kind == 2:
            at = rng.randrange(len(p) + 1)
            tag = f'<img src="/images/{rng.randrange(10**6)}.jpg" alt="">'
            noisy = p[:at] + tag + p[at:]
            n += len(tag)
        else:
            noisy = p.replace("“", "&ldquo;").replace("”", "&rdquo;")
            n += len(noisy) - len(p)
        out.append((noisy, t))
    return out, {"html": n}


def gbk_shift(s: str) -> str:
    b = s.encode("gb18030")
    return b[1:].decode("gb18030", errors="replace").replace("\ufffd", "?")


def utf8_as_gbk(s: str) -> str:
    return s.encode("utf-8").decode("gb18030", errors="replace").replace("\ufffd", "?")


def gbk_as_big5(s: str) -> str:
    return s.encode("gb18030").decode("big5", errors="replace").replace("\ufffd", "?")


def gbk_as_latin1(s: str) -> str:
    return s.encode("gb18030").decode("cp1252", errors="replace").replace("\ufffd", "?")


def utf8_as_latin1(s: str) -> str:
    return s.encode("utf-8").decode("cp1252", errors="replace").replace("\ufffd", "?")


ROUND_TRIPS = [gbk_shift, utf8_as_gbk, gbk_as_big5, gbk_as_latin1, utf8_as_latin1]


def garble(span: str, fn) -> tuple[str, str]:
    """(garbage, the tail of `span` that came through intact): a byte-shifted decoder can
    fall back into step, and what it then decodes right is text, not noise."""
    bad = fn(span)
    k = 0
    while k < min(len(bad), len(span)) and bad[-1 - k] == span[-1 - k]:
        k += 1
    return bad[:len(bad) - k], span[len(span) - k:]


def mojibake(pairs, rng, rate=0.02, kinds=ROUND_TRIPS):
    """Runs first, on clean paragraphs: the garbled original is lost, so the truth loses it too."""
    out, n = [], 0
    for p, t in pairs:
        if is_heading(t) or len(p) < 20 or p != t or rng.random() > rate:
            out.append((p, t))
            continue
        fn = rng.choice(kinds)
        if rng.random() < 0.5:   # the whole paragraph
            bad, intact = garble(p, fn)
            out.append((bad + intact, intact))
        else:                    # a span inside it
            a = rng.randrange(0, len(p) - 10)
            b = min(len(p), a + rng.randrange(10, 200))
            bad, intact = garble(p[a:b], fn)
            out.append((p[:a] + bad + intact + p[b:], p[:a] + intact + p[b:]))
        n += len(bad)
    return out, {"mojibake": n}


DEBRIS = ["Ё", "н", "ш", "Ж", "ぁ", "ヮ", "ゞ", "*", "н*", "y{h}A", "z{h}P", "yS", "zA", "*{h}A"]


def debris(pairs, rng, rate=0.0015):
    out, n = [], 0
    han = re.compile("[\u4e00-\u9fff]{2}")
    for p, t in pairs:
        if is_heading(t):
            out.append((p, t))
            continue
        pieces, truth_pos, last = [], [m.start() + 1 for m in han.finditer(p)], 0
        for pos in truth_pos:
            if rng.random() < rate * 2:
                junk = rng.choice(DEBRIS).format(h=rng.choice("茧中略墨谑孕渔"))
                pieces += [p[last:pos], junk]
                last = pos
                n += len(junk)
        pieces.append(p[last:])
        out.append(("".join(pieces), t))
    return out, {"debris": n}


def masks(pairs, rng, rate=0.01):
    out, n = [], 0
    han = re.compile("[\u4e00-\u9fff]{2}")
    for p, t in pairs:
        spots = [m.start() + 1 for m in han.finditer(p)]
        if is_heading(t) or not spots or rng.random() > rate:
            out.append((p, t))
            continue
        at = rng.choice(spots)
        stars = "*" * rng.choice([2, 2, 4])
        out.append((p[:at] + stars + p[at:], t))
        n += len(stars)
    return out, {"masks": n}


TRAPS = ["他低声说--我不去了--你们走吧。", "“这本电子书是我从网上下载的，”她说，“你也看看。”", "这些话仅供参考，你自己拿主意吧。",
         "老人家说：“版权的事，我不懂，只知道书是好书。”", "他把地址抄在纸上：先往东走--再往北拐--就到了。",
         "“更新时间？哪有什么更新时间，”他笑道，“天亮就走。”", "书库里堆满了旧书，一本本都落了灰。",
         "“返回首页”四个字在屏幕上闪了一下，就熄灭了。", "那一夜，她在灯下读那本电子书，读到天明。",
         "他在信里写道：仅供你一人看，看完烧了。", "“下一页呢？”孩子问。母亲翻过书页，接着念下去。"]


SENTENCE = re.compile(r"[^。！？]*[。！？]+[”’」』]*")


def unpunctuated(pairs, rng, rate=0.15):
    """True text in the layout of web fiction: a sentence per line, some lines without their
    full stop. Lines of about one width that stop mid-word are not a wrap here."""
    out = []
    for p, t in pairs:
        if is_heading(t):
            out.append((p, t))
            continue
        for s in SENTENCE.findall(t) or [t]:
            if s[-1] in "。！？" and rng.random() < rate:
                s = s.rstrip("。！？")
            if s:
                out.append((s, s))
    return out, {}


def prose_traps(pairs, rng, rate=0.02):
    out = []
    for p, t in pairs:
        out.append((p, t))
        if not is_heading(t) and rng.random() < rate:
            t = rng.choice(TRAPS)
            out.append((t, t))
    return out, {}


# ----------------------------------------------------------------------------
# Lines between paragraphs (noise only; the truth does not change)


def _page_marker(rng, page: int) -> str:
    return rng.choice([f"- {page} -", f"第{page}页", f"----- Page {page} -----", f"{page}", f"·{page}·",
                       f"Page {page} of 300", f"— {page} —"])


NAV_ITEMS = ["返回首页", "书库", "上一页", "下一页", "返回目录", "加入书签", "推荐本书", "上一章", "下一章", "返回书页"]


def nav_block(rng, fixed: list[str] | None) -> list[str]:
    if fixed is not None:
        return fixed
    items = rng.sample(NAV_ITEMS, rng.randrange(3, 6))
    sep = rng.choice([" | ", " ", " >> ", "｜", " · "])
    lines = [sep.join(items)] if rng.random() < 0.5 else items
    if rng.random() < 0.5:
        lines.append(f"{rng.choice(SITES)}招募志愿编辑，有意者请联系站长")
    return lines


def notice_lines(rng, where: str) -> list[str]:
    site, url = rng.choice(SITES), rng.choice(DOMAINS)
    if where == "top":
        return rng.sample([f"更多TXT电子书下载,请访问{site}:{url}", f"本书由{site}网友整理校对，仅供交流学习",
                           "版权归原作者所有，请勿用于商业用途，如侵犯了您的版权请来信告知，我们将立即删除",
                           f"{site}《{url}》", "------------------------------"], 3)
    if where == "chapter":
        return [rng.choice([f"更新时间:2008-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d} "
                            f"{rng.randrange(24)}:{rng.randrange(60):02d}:{rng.randrange(60):02d} 本章字数:{rng.randrange(2000, 8000)}",
                            f"录入：{rng.choice(NAMES)}", f"输入：{site}{url}", f"本章由{site}手打团提供"])]
    return [f"本书来自{site} {url}", "声明：本书仅供读者预览，请在下载24小时内删除，不得用作商业用途"]


# ----------------------------------------------------------------------------
# Layout


def wrap_paragraph(p: str, width: int, cols: bool, indent: str, count_indent: bool, hanging: bool) -> list[str]:
    lines, cur = [], indent
    budget = width - (_width(indent, cols) if count_indent else 0)
    used = 0
    for ch in p:
        w = _width(ch, cols)
        if used + w > budget and cur.strip():
            if hanging and ch in CLOSING:   # closing punctuation never starts a line: it hangs
                cur += ch
                continue
            lines.append(cur)
            cur, used, budget = "", 0, width
        cur += ch
        used += w
    lines.append(cur)
    return lines


def layout(pairs, rng, wrap: bool, markers: bool, nav: bool, notices: bool, separators: bool,
           blocks: bool = False) -> Noisy:
    """Lay the (noisy, truth) paragraphs out as lines, wrapped or not, with line noise between."""
    noise = {"page_markers": 0, "navigation": 0, "notices": 0, "separators": 0}
    out: list[str] = []
    breaks = 0
    cols = rng.random() < 0.5
    width = rng.randrange(20, 121) if cols else rng.randrange(10, 61)
    indent = rng.choice(["", "　　", "    "])
    count_indent = rng.random() < 0.5
    blank = rng.random() < 0.4
    fixed_nav = nav_block(rng, None) if rng.random() < 0.6 else None
    every = rng.randrange(20, 50)
    countdown, page = every, rng.randrange(1, 50)
    headings = []
    block_left, block = 0, None

    def put(line: str, kind: str | None = None) -> None:
        out.append(line)
        if kind:
            noise[kind] += len(line)   # characters; line breaks are counted apart

    def marker(force: bool = False) -> None:
        nonlocal countdown, page
        countdown -= 1
        if markers and (force or countdown <= 0):
            around = rng.random() < 0.5
            if around:
                put("", "page_markers")
            put(_page_marker(rng, page), "page_markers")
            if around:
                put("", "page_markers")
            countdown, page = every, page + 1

    if notices:
        for line in notice_lines(rng, "top"):
            put(line, "notices")
        out.append("")
    for k, (noisy, truth) in enumerate(pairs):
        if is_heading(truth):
            headings.append(truth)
            if nav and k > 0:
                for line in nav_block(rng, fixed_nav):
                    put(line, "navigation")
            if separators and k > 0 and rng.random() < 0.5:
                put(rng.choice("=-*~") * rng.randrange(6, 40), "separators")
            if wrap and rng.random() < 0.3:   # this chapter was wrapped at another width
                width = rng.randrange(20, 121) if cols else rng.randrange(10, 61)
            put(noisy)
            if notices:
                for line in notice_lines(rng, "chapter"):
                    put(line, "notices")
            continue
        unit = 2 if cols else 1
        if blocks and not block_left and len(noisy) >= 40 and rng.random() < 0.03:
            b_width = rng.randrange(14, 31)
            if not wrap or b_width + 6 <= width // unit:   # narrower than the text around it
                block_left = rng.randrange(1, 5)
                block = (b_width * unit, rng.choice(["", "    ", "　　"]), rng.random() < 0.25)
        if block_left:
            block_left -= 1
            b_width, b_indent, b_blank = block
            lines = [b_indent + x for x in wrap_paragraph(noisy, b_width, cols, "", False, hanging=True)]
            for j, line in enumerate(lines):
                put(line)
                if j < len(lines) - 1:
                    breaks += 1
                    if b_blank:
                        out.append("")
                    marker()
            if blank:
                out.append("")
            marker()
            continue
        if wrap:
            lines = wrap_paragraph(noisy, width, cols, indent, count_indent, hanging=True)
        elif markers and len(noisy) > 60 and rng.random() < 0.05:   # a page break inside a paragraph
            cut = rng.randrange(20, len(noisy) - 20)
            while cut < len(noisy) - 1 and (noisy[cut] in CLOSING or noisy[cut - 1] in "。！？”"):
                cut += 1
            lines = [indent + noisy[:cut], noisy[cut:]]
        else:
            lines = [indent + noisy]
        for j, line in enumerate(lines):
            put(line)
            if j < len(lines) - 1:
                breaks += 1
                marker(force=not wrap)
        if blank:
            out.append("")
        marker()
    if notices:
        out.append("")
        for line in notice_lines(rng, "bottom"):
            put(line, "notices")
    truth = "\n".join(t for _, t in pairs if t)
    return Noisy("\n".join(out) + "\n", truth, {k: v for k, v in noise.items() if v}, breaks, headings)


# mojibake first (it needs clean paragraphs), then the generators that only insert noise
INLINE = {"mojibake": mojibake, "prose_traps": prose_traps, "adverts": adverts, "html": html_noise,
          "debris": debris, "masks": masks}
LINES = ("wrap", "blocks", "page_markers", "navigation", "notices", "separators")
KINDS = tuple(INLINE) + LINES
TRUE_LAYOUTS = {"unpunctuated": unpunctuated}   # true text laid out otherwise, asked for by name only


def make(paragraphs: list[str], kinds: tuple[str, ...], seed: int) -> Noisy:
    """Noisy text made from clean `paragraphs` with the given kinds of noise."""
    rng = random.Random(seed)
    pairs = [(p, p) for p in paragraphs]
    noise: dict = {}
    for kind, fn in TRUE_LAYOUTS.items():
        if kind in kinds:
            pairs, _ = fn(pairs, rng)
    for kind, fn in INLINE.items():
        if kind in kinds:
            pairs, counts = fn(pairs, rng)
            noise.update(counts)
    result = layout(pairs, rng, wrap="wrap" in kinds, markers="page_markers" in kinds, nav="navigation" in kinds,
                    notices="notices" in kinds, separators="separators" in kinds, blocks="blocks" in kinds)
    result.noise.update({k: v for k, v in noise.items() if v})
    return result
