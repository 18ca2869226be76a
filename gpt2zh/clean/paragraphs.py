"""Paragraphs: hard wraps rejoined from the file's own statistics, then whitespace.

A hard-wrapped text has a crowd of lines at one width and (almost) none past it, and
its full lines end mid-sentence. That is decided per region (the text between chapter
headings, cut into blocks of a few hundred lines), so a file that changes width
between chapters is read right, under four ways of measuring a line (characters or
display columns, with or without the indentation) and with room for hanging
punctuation. Inside a region, a block set apart at a width of its own (a letter, a
poem; indented or not, double-spaced or not) is read the same way but more strictly; a
paragraph or two wrapped among whole ones, too few lines to count, by its lines of one
width stopping mid-word with only paragraphs' last lines between them. Within a wrapped
region a full line is joined to the next unless the next starts a paragraph: indented past the
region's continuation lines, after a blank line where blank lines separate paragraphs,
a chapter heading, or a new dialogue turn. Paragraph starts survive as paragraph
breaks; short lines (poems, closing lines) are never joined. Where a page marker was
removed, the file's layout (indented paragraphs) or its own statistics decide whether
the paragraph goes on; `note_unfinished` counts what is left ending mid-sentence.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from .base import (CJK_RE, HEADING_START, INNER_SPACE_RE, PUNCTUATION, SENTENCE_END, SPACE, Doc, Rule, headings,
                   is_heading, register)

HANGING = set("，。、；：？！”’」』）》,.;:?!)…—")   # may hang past the wrap width
OPENING_QUOTE = "“「『\"‘"
PAUSES = "，、；：。！？"   # where a sentence or a clause pauses
REGION_LINES = 400      # body lines per detection block
MIN_REGION = 30         # a smaller block borrows the decision of the file
MIN_BLOCK = 8           # lines of a block set apart that may be wrapped at its own width
MIN_FULL = 2            # full lines of one width that make a wrapped paragraph where no wrap was found
LOCAL_GAP = 3           # non-blank lines from one such full line to the next
LOCAL_MIN_CHARS = 12    # narrower lines of one width in a row are as likely a column of free verse
MAX_WRAP_COLS = 124     # 120 columns and hanging punctuation: wider lines were not wrapped
MEASURES = ("cols", "cols-content", "chars", "chars-content")


def display_width(s: str) -> int:
    # GB18030 spends two bytes on a full-width character and one on ASCII: exactly the
    # column count that hard-wrapping tools used, computed in C.
    return len(s.encode("gb18030", errors="replace"))


# a few bits of facts per code point, for the last (or first) character of every line at once
HANG, PUNCT, END, MID, SOFT, OPEN, BLANK, HEAD, COLON, OPENER, CLAUSE, PAUSE = (1 << k for k in range(12))
WIDE_SHIFT = 12   # two bits above those: a character's display columns less one (0 ASCII, 1 BMP, 3 beyond)
_LUT: np.ndarray | None = None


def _char_flags() -> np.ndarray:
    global _LUT
    if _LUT is None:
        lut = np.zeros(0x110000, dtype=np.uint16)
        for chars, bit in ((HANGING, HANG), (PUNCTUATION, PUNCT), (SENTENCE_END, END), (OPENING_QUOTE, OPEN),
                           (SPACE + "\n", BLANK), (HEADING_START, HEAD)):
            for c in chars:
                lut[ord(c)] |= bit
        for a, b in ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F)):
            lut[a:b + 1] |= MID | SOFT
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789":
            lut[ord(c)] |= MID | SOFT
        for c in "，、；：—":
            lut[ord(c)] |= MID
        for c in "，、；—“「『（《(‘【〈［":
            lut[ord(c)] |= SOFT
        for c in "：:":
            lut[ord(c)] |= COLON
        for c in "“「『‘《（(【〈［〔":   # (not the ASCII quote, which closes as often)
            lut[ord(c)] |= OPENER
        for c in "：；:;":
            lut[ord(c)] |= CLAUSE
        for c in PAUSES + ",;:!?":
            lut[ord(c)] |= PAUSE
        lut[0x80:0x10000] |= 1 << WIDE_SHIFT
        lut[0x10000:] |= 3 << WIDE_SHIFT
        lut[0xFF10:0xFF1A] |= MID | SOFT   # full-width digits and letters
        lut[0xFF21:0xFF3B] |= MID | SOFT
        lut[0xFF41:0xFF5B] |= MID | SOFT
        _LUT = lut
    return _LUT


def _at(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """a[idx] for each line's index, clipped into the text (a line with no character points
    past it; the caller masks those lines out)."""
    return a[np.clip(idx, 0, len(a) - 1)] if len(a) else np.zeros(len(idx), dtype=a.dtype)


class LineTable:
    """Every line of a text measured once, as arrays computed over the whole text at once
    (a Python object per line and per question costs ten times more on a novel's 20,000 lines)."""

    def __init__(self, text: str):
        self.lines = text.split("\n")
        lut = _char_flags()
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        n = len(cps)
        flags = lut[cps]
        self._cps, self._flags = cps, flags
        breaks = np.flatnonzero(cps == 10)
        starts = np.concatenate(([0], breaks + 1))
        ends = np.append(breaks, n)                        # (each line's end, exclusive)
        # each line's first and last non-blank character (n and -1 where it has none)
        solid = np.flatnonzero((flags & BLANK) == 0)
        first = np.append(solid, n)[np.searchsorted(solid, starts)]
        first = np.where(first < ends, first, n)
        last = np.concatenate(([-1], solid))[np.searchsorted(solid, ends)]
        last = np.where(last >= starts, last, -1)
        has = first < n
        # GB18030 bytes (display columns) before each character: 1 for ASCII, 2 in the BMP, 4 beyond
        cum = np.zeros(n + 2, dtype=np.int64)            # (one spare entry: indexing never falls off)
        np.cumsum(1 + ((flags >> WIDE_SHIFT) & 3), out=cum[1:n + 1])
        clen = np.where(has, last - first + 1, 0)
        rlen = np.where(has, last - starts + 1, 0)
        cols = np.where(has, cum[np.maximum(last, 0) + 1] - cum[starts], 0)
        self.indent = np.where(has, cum[np.minimum(first, n)] - cum[starts], 0)
        self.widths = np.stack([cols, cols - self.indent, rlen, clen], axis=1)   # one column per MEASURES
        self.blank = ~has
        lastf = np.where(has, _at(flags, last), 0)
        firstf = np.where(has, _at(flags, first), 0)
        self.hang = (lastf & HANG) != 0
        self.punct = (lastf & PUNCT) != 0
        self.sentence_end = (lastf & END) != 0
        self.mid_end = (lastf & MID) != 0
        self.mid_word = has & ((lastf & (PUNCT | HANG)) == 0)
        self.soft_mid = (lastf & SOFT) != 0
        self.colon_end = (lastf & COLON) != 0
        self.opens = (firstf & OPEN) != 0
        self.open_end = (lastf & OPENER) != 0      # a paragraph never stops on an opening quote or bracket
        self.clause_end = (lastf & CLAUSE) != 0     # "道：" ends a paragraph before a speech
        before_last = np.where(has & (last > first), _at(flags, last - 1), 0)
        self.hang2 = self.hang & ((before_last & HANG) != 0)   # "。”": two closing marks may hang
        # punctuation inside the line (the last character not counted): prose has it, a list item or a
        # line of free verse seldom does
        pauses = np.diff(np.searchsorted(np.flatnonzero(flags & PAUSE), np.append(starts, n + 1)))
        self.pauses = pauses - ((lastf & PAUSE) != 0)
        # the first character of each line
        self.first_cp = np.where(has, _at(cps, first), 0)
        self._shares: dict[int, float] = {}
        self.heading = np.zeros(len(starts), dtype=bool)
        for i in np.flatnonzero(((firstf & HEAD) != 0) & (clen <= 60)):
            self.heading[i] = is_heading(text[first[i]:last[i] + 1])
        self.plan = None                                   # (wraps, region of each line), once computed
        self.full = None                                   # (whether each line reaches its region's wrap, with it)
        nonblank = np.append(np.flatnonzero(has), -1)     # -1: no line after
        self.next_nonblank = nonblank[np.searchsorted(nonblank[:-1], np.arange(len(starts)) + 1)]

    @property
    def colons(self) -> int:
        """Colons in the text (one rule asks, where a page break may fall after one)."""
        return int(np.count_nonzero(self._flags & COLON))

    def share(self, bit: int) -> float:
        """The share of the text's characters that carry flag `bit` (counted once: every
        region of the file asks)."""
        if bit not in self._shares:
            self._shares[bit] = (np.count_nonzero(self._flags & bit)
                                 / max(1, np.count_nonzero((self._flags & BLANK) == 0)))
        return self._shares[bit]

    def after(self, bit: int) -> np.ndarray:
        """The characters that follow, inside a line, a character with flag `bit` (and are
        not themselves punctuation of that kind or blank)."""
        f = self._flags
        return self._cps[1:][(f[:-1] & bit != 0) & ((f[1:] & (bit | BLANK)) == 0)]


def line_table(text: str, doc: Doc) -> LineTable:
    """The LineTable of `text`, shared by the rules that look at the same text in turn."""
    cached = doc.line_table
    if cached is not None and cached[0] is text:
        return cached[1]
    table = LineTable(text)
    shortened = doc.shortened_lines
    if shortened:   # lines that lost tags inside them were wrapped at their old widths
        for i, line in enumerate(table.lines):
            if line in shortened:
                chars, cols = shortened[line]
                table.widths[i] += (cols, cols, chars, chars)
    doc.line_table = (text, table)
    return table


def reaches(w, width: int, tol: int, hang, hang2, mid_word):
    """Does a line of width `w` reach `width` (and so go on in the next line)? Arrays or
    single values alike (a local cluster asks of a few lines at a time, many times)."""
    at = (w >= width - tol) & (w <= width)
    # past the width by one character: hanging punctuation, or a character the wrapping
    # tool counted narrower (a substituted rare character) with the line stopping mid-word;
    # by two, two closing marks ("。”")
    hanging = ((w > width) & (w <= width + tol) & (hang | mid_word)) | ((w > width) & (w <= width + 2 * tol) & hang2)
    # nearly full and stopped mid-word: a first line that lost its indentation, or a
    # word pushed down by the wrapping tool
    near = (w >= 0.8 * width) & (w < width) & mid_word
    return at | hanging | near


@dataclass
class Wrap:
    measure: int       # index into MEASURES
    width: int
    base_indent: int = 0
    indented: bool = False   # paragraph starts are indented past continuation lines
    blank_sep: bool = False  # paragraphs are separated by blank lines
    spaced: bool = False     # a blank line after (nearly) every line: blank lines say nothing

    def __post_init__(self):
        # a line one character short of the width is full too (a word pushed down)
        self.tol = 2 if MEASURES[self.measure].startswith("cols") else 1

    def full(self, t: LineTable, idx: np.ndarray) -> np.ndarray:
        """Which of the lines `idx` reach the width (and so go on in the next line)."""
        return reaches(t.widths[idx, self.measure], self.width, self.tol, t.hang[idx], t.hang2[idx],
                       t.mid_word[idx])

    def describe(self) -> str:
        unit = "columns" if MEASURES[self.measure].startswith("cols") else "characters"
        return f"{self.width} {unit}" + (" (indentation not counted)" if "content" in MEASURES[self.measure] else "")


def wrap_fields(wraps: list[Wrap], which: np.ndarray, *names: str) -> list[np.ndarray]:
    """Fields of many wraps as arrays: for each name, wraps[which[k]].name at k."""
    return [np.array([getattr(w, name) for w in wraps])[which] for name in names]


def full_under(t: LineTable, idx: np.ndarray, wraps: list[Wrap], which: np.ndarray) -> np.ndarray:
    """Wrap.full for many wraps at once: does line idx[k] reach wraps[which[k]]? (A document
    may have a few dozen wraps, blocks set apart among them: one pass instead of one per wrap.)"""
    if not len(idx):
        return np.zeros(0, dtype=bool)
    measure, width, tol = wrap_fields(wraps, which, "measure", "width", "tol")
    return reaches(t.widths[idx, measure], width, tol, t.hang[idx], t.hang2[idx], t.mid_word[idx])


def region_full(t: LineTable, wraps: list[Wrap], region: np.ndarray) -> np.ndarray:
    """For every line: does it reach its region's wrap? (False outside any wrapped region.)"""
    out = np.zeros(len(region), dtype=bool)
    idx = np.flatnonzero(region >= 0)
    out[idx] = full_under(t, idx, wraps, region[idx])
    return out


def by_region(lines: np.ndarray, region: np.ndarray, n: int) -> list[np.ndarray]:
    """`lines` (ascending) split by their region r < n, each part still ascending."""
    reg = region[lines]
    order = np.argsort(reg, kind="stable")
    bounds = np.searchsorted(reg[order], np.arange(n + 1))
    return [lines[order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]


def detect_wraps(t: LineTable, blocks: list[tuple[int, int]], strict: bool = False) -> list[Wrap | None]:
    """The wrap of each block [a, b) of lines, or None where it was not hard-wrapped."""
    rid = np.full(len(t.blank), -1, dtype=np.int64)
    for r, (a, b) in enumerate(blocks):
        rid[a:b] = r
    return detect_wraps_of(t, rid, len(blocks), strict)


def detect_wraps_of(t: LineTable, rid: np.ndarray, R: int, strict: bool = False) -> list[Wrap | None]:
    """The wrap of each set of lines r < R (the lines i with rid[i] == r), or None where it
    was not hard-wrapped. Every candidate width of every set is scored at once, from
    cumulative histograms of the line widths (one row per set). `strict`: hardly a line may
    pass the width (a region may keep some paragraphs whole; a block set apart may not, or
    a column of free verse would pass for one), measured without the indentation (or a
    column of indented seven-character verses would reach 20 columns)."""
    body = (rid >= 0) & ~t.blank & ~t.heading & (t.widths[:, 3] >= 4)
    idx = np.flatnonzero(body)
    r_of = rid[idx]
    n = np.bincount(r_of, minlength=R).astype(np.float64)       # body lines per block
    hang, punct = t.hang[idx], t.punct[idx]
    # the line after opens a quotation: each line is an item of a list, not a piece of a paragraph
    nxt = t.next_nonblank[idx]
    listed_next = np.where(nxt >= 0, t.opens[np.maximum(nxt, 0)], False)
    best: list[Wrap | None] = [None] * R
    best_score = np.zeros(R)
    for m, name in enumerate(MEASURES):
        if strict and "content" not in name:
            continue   # a block is indented as a whole: its indentation is no part of the width
        unit = 2 if name.startswith("cols") else 1
        tol = unit
        lo, hi = 10 * unit, 150 * unit
        w = t.widths[idx, m]
        # Only widths that five lines of the whole call reach or hang past can be a block's wrap
        # (its crowd needs five): the others are left out of every array below.
        near = np.bincount(np.clip(w, lo - tol, hi + tol), minlength=hi + tol + 1)
        reach = np.convolve(near, np.ones(2 * tol + 1, dtype=np.int64))[tol:]   # [x]: lines at x - tol ... x + tol
        W = np.arange(lo, hi)
        W = W[reach[W] >= 5]
        if not len(W):
            continue
        top = int(W[-1]) + tol + 1              # no width past this is asked about: wider lines are "over"
        key = r_of * (top + 1) + np.minimum(w, top)

        # [r, x]: lines of block r narrower than x; of them ending in punctuation, hanging, before an item
        cums = np.zeros((4, R, top + 2), dtype=np.int64)
        for c, of in enumerate((None, punct, hang, listed_next)):
            cums[c, :, 1:] = np.bincount(key if of is None else key[of], minlength=R * (top + 1)).reshape(R, top + 1)
        cum, cum_p, cum_h, cum_o = np.cumsum(cums, axis=2, out=cums)

        def at_w(c, shift):                                     # c[:, W + shift]
            return c[:, W + shift]

        hanging = at_w(cum_h, tol + 1) - at_w(cum_h, 1)         # ending in punctuation just past W
        at = at_w(cum, 1) - at_w(cum, -tol) + hanging           # (blocks, widths)
        over = n[:, None] - at_w(cum, 1) - hanging
        below = at_w(cum, -tol) - at_w(cum, -3 * tol)
        mid = at - (at_w(cum_p, 1) - at_w(cum_p, -tol) + hanging)
        listed = at_w(cum_o, 1) - at_w(cum_o, -tol)
        nn = n[:, None]
        # a crowd at the width, almost nothing past it (unless the crowd is most of the
        # block: some paragraphs were left unwrapped), far more than just below it, most of
        # those lines stopping mid-sentence (unlike a column of verses), few of them items
        if strict:       # a few typist's slips, no more
            few_over = over <= 0.06 * nn + 1
        else:            # (unless the crowd is most of the block: some paragraphs were left unwrapped)
            few_over = (over <= 0.02 * nn + 1) | ((at >= 0.3 * nn) & (over <= at))
        ok = ((at >= np.maximum(5, 0.08 * nn)) & few_over & (at >= 2 * below) & (mid >= 0.35 * at)
              & (listed <= 0.3 * at) & (nn >= 8))
        score = np.where(ok, (at - 3.0 * np.minimum(over, 0.02 * nn + 1)) / np.maximum(nn, 1), -1.0)
        k = score.argmax(axis=1)
        top_score = score[np.arange(R), k]
        for r in np.flatnonzero(top_score > best_score):
            best[r], best_score[r] = Wrap(m, int(W[k[r]])), top_score[r]
    return best


def read_style_of(wrap: Wrap, t: LineTable, idx: np.ndarray) -> Wrap:
    """read_styles for one wrap and its non-blank lines `idx` (ascending)."""
    read_styles(t, [(wrap, idx)])
    return wrap


def read_styles(t: LineTable, items: list[tuple[Wrap, np.ndarray]]) -> None:
    """How paragraphs start in wrapped blocks (indentation, blank lines, or neither), read
    into each wrap from its block's non-blank lines (ascending); the wraps distinct. All
    blocks at once: a document may have a few dozen set apart, and a pass apiece cost more
    than the reading."""
    items = [(w, idx) for w, idx in items if len(idx) >= 2]
    if not items:
        return
    G = len(items)
    lines = np.concatenate([idx for _, idx in items])
    g = np.repeat(np.arange(G), [len(idx) for _, idx in items])
    inside = g[:-1] == g[1:]
    p, q, g = lines[:-1][inside], lines[1:][inside], g[:-1][inside]
    # (pairs of lines next to each other only: a block's lines may skip a block read apart)
    keep = ~t.heading[p] & ~t.heading[q] & (t.next_nonblank[p] == q)
    p, q, g = p[keep], q[keep], g[keep]
    full = full_under(t, p, [w for w, _ in items], g)
    ind = t.indent[q]
    n_full, n_short = np.bincount(g[full], minlength=G), np.bincount(g[~full], minlength=G)
    # the commonest indentation after a full line, the smallest of a tie (as bincount's argmax)
    base = np.zeros(G, dtype=np.int64)
    if full.any():
        span = int(ind[full].max()) + 1
        keys, counts = np.unique(g[full] * span + ind[full], return_counts=True)
        kg, kv = keys // span, keys % span
        order = np.lexsort((kv, -counts, kg))
        first = order[np.concatenate(([True], kg[order][1:] != kg[order][:-1]))]
        base[kg[first]] = kv[first]
    over, gap = ind > base[g], (q - p) > 1
    starts, conts = np.bincount(g[~full & over], minlength=G), np.bincount(g[full & over], minlength=G)
    blank_after_short = np.bincount(g[~full & gap], minlength=G)
    blank_after_full = np.bincount(g[full & gap], minlength=G)
    for k, (wrap, _) in enumerate(items):
        wrap.base_indent = int(base[k])
        if n_short[k]:
            conts_share = conts[k] / n_full[k] if n_full[k] else 0.0
            wrap.indented = bool(starts[k] / n_short[k] >= 0.6 and conts_share <= 0.3)
            wrap.blank_sep = bool(blank_after_short[k] / n_short[k] >= 0.6)
        if n_full[k] >= 4:
            wrap.spaced = bool(blank_after_full[k] / n_full[k] >= 0.8)


def nonblank_between(t: LineTable, blocks) -> list[np.ndarray]:
    """The non-blank lines of each block [a, b)."""
    nb = np.flatnonzero(~t.blank)
    lo, hi = np.searchsorted(nb, [a for a, *_ in blocks]), np.searchsorted(nb, [b for _, b, *_ in blocks])
    return [nb[x:y] for x, y in zip(lo.tolist(), hi.tolist())]


def regions(t: LineTable) -> list[tuple[int, int]]:
    """[start, end) blocks: cut at chapter headings and every REGION_LINES body lines,
    small ones merged into the one before."""
    body = np.cumsum(~t.blank)
    cuts = [0]
    for h in np.flatnonzero(t.heading):
        if h > cuts[-1]:
            cuts.append(int(h))
    cuts.append(len(t.blank))
    blocks = []
    for a, b in zip(cuts, cuts[1:]):   # long chapters in blocks of REGION_LINES body lines
        while body[b - 1] - (body[a - 1] if a else 0) > REGION_LINES:
            cut = int(np.searchsorted(body, (body[a - 1] if a else 0) + REGION_LINES)) + 1
            blocks.append((a, cut))
            a = cut
        blocks.append((a, b))
    merged: list[tuple[int, int]] = []
    for a, b in blocks:
        small = body[b - 1] - (body[a - 1] if a else 0) < MIN_REGION
        if merged and small:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def wrap_plan(t: LineTable) -> tuple[list[Wrap], np.ndarray]:
    """The wraps found, and for each line the index of its region's wrap (-1: not wrapped):
    regions first, then blocks set apart at a width of their own, a second width at work
    in a region, and single wrapped paragraphs among whole ones, each reading refining the
    one before."""
    if t.plan is not None:
        return t.plan
    n = len(t.lines)
    blocks = regions(t)
    whole, *found = detect_wraps(t, [(0, n)] + blocks)
    wraps: list[Wrap] = []
    region = np.full(n, -1, dtype=np.int64)
    spans = []
    for (a, b), wrap in zip(blocks, found):
        if wrap is None and whole is not None and (~t.blank[a:b]).sum() < 2 * MIN_REGION:
            wrap = Wrap(whole.measure, whole.width)
        if wrap is not None:
            wraps.append(wrap)
            spans.append((a, b))
            region[a:b] = len(wraps) - 1
    read_styles(t, list(zip(wraps, nonblank_between(t, spans))))
    n_regions, before = len(wraps), region.copy()
    blocks = trim_blocks(t, set_blocks(t, wraps, region))
    _add_wraps(t, wraps, region, [(a, b, wrap) for (a, b, r), wrap
                                  in zip(blocks, detect_wraps(t, [(a, b) for a, b, _ in blocks], strict=True))
                                  if wrap is not None and (r < 0 or (wrap.measure, wrap.width)
                                                           != (wraps[r].measure, wraps[r].width))])
    split_widths(t, wraps, region)
    _add_wraps(t, wraps, region, local_wraps(t, wraps, region))
    lost = np.unique(before[(region != before) & (before >= 0)])
    lost = lost[lost < n_regions]
    # a region's style read again without the blocks read apart
    if len(lost):
        parts = by_region(np.flatnonzero(~t.blank), region, len(wraps))
        read_styles(t, [(wraps[r], parts[r]) for r in lost.tolist()])
    t.plan = (wraps, region)
    t.full = region_full(t, wraps, region)
    return t.plan


def _add_wraps(t: LineTable, wraps: list[Wrap], region: np.ndarray, found: list[tuple[int, int, Wrap]]) -> None:
    """Each block [a, b) found wrapped at a width of its own becomes a region of its own (a later
    block over an earlier one wins), its style read from its own lines."""
    read_styles(t, [(wrap, lines) for (_, _, wrap), lines in zip(found, nonblank_between(t, found))])
    for a, b, wrap in found:
        wraps.append(wrap)
        region[a:b] = len(wraps) - 1


def set_blocks(t: LineTable, wraps: list[Wrap], region: np.ndarray) -> list[tuple[int, int, int]]:
    """Blocks [a, b) of MIN_BLOCK+ lines, with the region they lie in, that may be wrapped at
    a width of their own: a quoted letter or a poem set apart. First the runs of lines
    between lines too wide for the region's wrap (or for any wrap, where the region was not
    wrapped): a block among paragraphs left whole. Then, in a wrapped region, the runs of
    lines narrower than its wrap (none of them full), and the runs of lines all indented
    alike past its continuation lines (each of them looks like a paragraph start). Blank
    lines do not end a block; whether a block was wrapped is then decided as for a region."""
    nb = np.flatnonzero(~t.blank)
    reg = region[nb]
    wide = t.widths[nb, 0] > MAX_WRAP_COLS
    partial = np.append(np.bincount(reg[wide & (reg >= 0)], minlength=len(wraps)) > 0, True)  # [-1]: unwrapped
    out = _blocks_of(~wide & ~t.heading[nb] & partial[reg], nb, reg)
    narrower = np.zeros(len(nb), dtype=bool)
    sel = np.flatnonzero(reg >= 0)
    if len(sel):
        measure, width, tol = wrap_fields(wraps, reg[sel], "measure", "width", "tol")
        narrower[sel] = (~full_under(t, nb[sel], wraps, reg[sel])
                         & (t.widths[nb[sel], measure] <= width + tol))
    out += _blocks_of(narrower & ~t.heading[nb], nb, reg)
    base = np.array([w.base_indent for w in wraps] + [0])[reg]
    ind = t.indent[nb]
    inside = (reg >= 0) & ~t.heading[nb] & (ind > base)
    alike = inside & np.concatenate(([False], inside[:-1] & (ind[1:] == ind[:-1]) & (reg[1:] == reg[:-1])))
    firsts = np.flatnonzero(inside & ~alike)
    lasts = np.flatnonzero(inside & ~np.append(alike[1:], False))
    out += [(int(nb[x]), int(nb[y]) + 1, -1) for x, y in zip(firsts, lasts) if y - x + 1 >= MIN_BLOCK]
    return out


def _blocks_of(flag: np.ndarray, nb: np.ndarray, reg: np.ndarray) -> list[tuple[int, int, int]]:
    """The runs of True in `flag` (over the non-blank lines `nb`), cut where the region
    changes, MIN_BLOCK+ lines long: ([a, b) in line numbers, region)."""
    a, b = _runs(flag, np.concatenate(([False], reg[1:] != reg[:-1])))
    keep = (b - a) >= MIN_BLOCK
    return [(int(nb[x]), int(nb[y - 1]) + 1, int(reg[x])) for x, y in zip(a[keep], b[keep])]


def _runs(flag: np.ndarray, cut: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) of each run of True in `flag`, a run also ending before each `cut`."""
    prev = np.concatenate(([False], flag[:-1]))
    nxt = np.concatenate((flag[1:], [False]))
    if cut is not None:
        prev &= ~cut
        nxt &= ~np.concatenate((cut[1:], [False]))
    return np.flatnonzero(flag & ~prev), np.flatnonzero(flag & ~nxt) + 1


def trim_blocks(t: LineTable, blocks: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Each block cut down to its lines from the first full one to the line after the last
    (a run between long lines also holds the short paragraphs around the block), by the
    width a lenient reading finds; the strict reading then decides."""
    found = detect_wraps(t, [(a, b) for a, b, _ in blocks])
    kept = [k for k, wrap in enumerate(found) if wrap is not None]
    if not kept:
        return []
    parts = nonblank_between(t, [blocks[k] for k in kept])
    g = np.repeat(np.arange(len(kept)), [len(x) for x in parts])
    idx = np.concatenate(parts)
    full = np.flatnonzero(full_under(t, idx, [found[k] for k in kept], g))
    has = np.unique(g[full])
    firsts = full[np.searchsorted(g[full], has)]
    lasts = full[np.searchsorted(g[full], has, side="right") - 1]
    ends = np.cumsum([len(x) for x in parts]) - 1            # each block's last non-blank line
    lasts = np.minimum(lasts + 1, ends[has])
    return [(int(idx[x]), int(idx[y]) + 1, blocks[kept[k]][2]) for k, x, y in zip(has.tolist(), firsts, lasts)]


def split_widths(t: LineTable, wraps: list[Wrap], region: np.ndarray) -> None:
    """Regions where a second width is at work: paragraphs wrapped at one width around a
    letter set at a narrower one (the region's wrap may have come from either). The lines
    too wide for the region's wrap, where they crowd at a width of their own, get that wrap;
    so do the lines short of it where they crowd at a narrower width (read strictly: the
    last lines of paragraphs are short of any width too); then each line goes with its
    paragraph: a line after a full line goes on that paragraph, any other goes with the
    width it is at."""
    found = []
    for strict in (False, True):
        rid = np.full(len(t.blank), -1, dtype=np.int64)
        sets = []
        for r, (w, idx) in enumerate(zip(wraps, by_region(np.flatnonzero(~t.blank & ~t.heading), region, len(wraps)))):
            width = t.widths[idx, w.measure]
            if strict:
                other = idx[width < w.width - w.tol]
            else:
                other = idx[width > w.width + w.tol]
            if len(other) >= MIN_BLOCK and len(other) > 0.02 * len(idx) + 1:
                rid[other] = len(sets)
                sets.append(r)
        if sets:
            found += [(r, w2) for r, w2 in zip(sets, detect_wraps_of(t, rid, len(sets), strict))
                      if w2 and (not strict or _runs_on(t, w2, np.flatnonzero(rid == sets.index(r))))]
    for r, w2 in found:
        w1, r2 = wraps[r], len(wraps)
        wraps.append(w2)
        span = np.flatnonzero(region == r)
        lines = span[~t.blank[span]]
        label = _paragraph_widths(t, lines, (r, w1), (r2, w2))
        filled = np.full(len(span), r)                    # blank lines go with the line before
        pos = np.searchsorted(span, lines)
        filled[pos] = label
        keep = np.zeros(len(span), dtype=bool)
        keep[pos] = True
        last = np.maximum.accumulate(np.where(keep, np.arange(len(span)), 0))
        region[span] = filled[last]
        read_style_of(w1, t, lines[label == r])
        read_style_of(w2, t, lines[label == r2])


def _runs_on(t: LineTable, wrap: Wrap, idx: np.ndarray) -> bool:
    """Do the lines `idx` that reach `wrap` mostly follow another that does? A narrower
    width's lines come in runs (a letter set apart); the first lines of paragraphs that lost
    their indentation come one by one, after the last lines of the paragraphs before."""
    full = idx[wrap.full(t, idx)]
    prev = np.flatnonzero(~t.blank)
    k = np.searchsorted(prev, full) - 1
    before = prev[np.maximum(k, 0)]
    return bool(len(full)) and np.mean((k >= 0) & np.isin(before, full)) >= 0.5


def _paragraph_widths(t: LineTable, lines: np.ndarray, one: tuple, two: tuple) -> np.ndarray:
    """The wrap (region id: one's, two's, or -1 for a paragraph left whole) of each line."""
    (r1, w1), (r2, w2) = one, two
    f1, f2 = w1.full(t, lines), w2.full(t, lines)
    over1 = t.widths[lines, w1.measure] > w1.width + w1.tol
    over2 = t.widths[lines, w2.measure] > w2.width + w2.tol
    label = np.empty(len(lines), dtype=np.int64)
    cur, cur_full = r1, False
    for j in range(len(lines)):
        if t.heading[lines[j]]:
            label[j], cur_full = cur, False
            continue
        if cur_full and not (over1[j] if cur == r1 else over2[j]):
            lab = cur                 # the paragraph of the full line before goes on
        elif f2[j] or (over1[j] and not over2[j]):
            lab = r2
        elif f1[j]:
            lab = r1
        elif over1[j] and over2[j]:
            lab = -1
        else:
            lab = cur                 # a short line ends the paragraph it is in
        label[j] = cur = lab
        cur_full = bool(f1[j]) if lab == r1 else bool(f2[j]) if lab == r2 else False
    return label


def local_wraps(t: LineTable, wraps: list[Wrap], region: np.ndarray) -> list[tuple[int, int, Wrap]]:
    """A paragraph or two wrapped where nothing around them is (too few lines for any
    statistics): MIN_FULL+ lines of one width, each a few lines from the next, at least one
    stopping mid-word (the others may stop at a comma hanging past that width), among lines
    that no wrap accounts for, with nothing between them but paragraphs' last lines
    (narrower, ending a sentence) and a last line after them that ends one. Whole paragraphs
    seldom stop mid-word, let alone at one width with only narrower lines around; a headline
    is followed by a wider paragraph, a list item or a line of free verse has no pause
    inside, verses that lost their full stops have their pauses at the same places.
    Returns [a, b) from the paragraph's first line to its last line, and the wrap."""
    nb = np.flatnonzero(~t.blank)
    reg = region[nb]
    # lines outside wrapped regions, and a wrapped region's lines that are not full: shorter, or wider
    free = ~region_full(t, wraps, region)[nb] & ~t.heading[nb]
    word = t.mid_word[nb] | t.open_end[nb]
    closes = t.sentence_end[nb] | t.clause_end[nb]
    wordl, hangl, hang2l = word.tolist(), t.hang[nb].tolist(), t.hang2[nb].tolist()
    out: list[tuple[int, int, Wrap]] = []
    taken = np.zeros(len(nb), dtype=bool)
    for m in (1, 0):                       # indentation counted apart, then counted in the width
        w = t.widths[nb, m]
        comma = t.hang[nb] & t.mid_end[nb]   # (a hanging full stop is as likely a sentence of that length)
        cand = np.flatnonzero(free & ~taken & (word | comma) & (t.widths[nb, 3] >= LOCAL_MIN_CHARS)
                              & (t.widths[nb, 0] <= MAX_WRAP_COLS))
        cand = cand[_paired(cand, w[cand], word[cand])]
        wl = w.tolist()
        cluster: list[int] = []
        for c in list(cand) + [-1]:
            if (cluster and c >= 0 and c - cluster[-1] <= LOCAL_GAP and not taken[c]
                    and free[cluster[-1] + 1:c].all() and closes[cluster[-1] + 1:c].all()
                    and _one_width(cluster + [c], wl, wordl, hangl, hang2l)):
                cluster.append(c)
                continue
            if cluster and c >= 0 and not word[c] and c - cluster[-1] < LOCAL_GAP and closes[c]:
                continue   # a paragraph's last line, ending in punctuation: it may stand between full ones
            found = _local_wrap(t, nb, cluster, w, word, free, closes, m)
            if found:
                first, last, wrap = found
                taken[first:last + 1] = True
                out.append((int(nb[first]), int(nb[last]) + 1, wrap))
            cluster = [c]
    return out


def _paired(pos: np.ndarray, w: np.ndarray, word: np.ndarray) -> np.ndarray:
    """Which of the candidate lines at `pos` (ascending) have another within LOCAL_GAP lines
    at about their width, one of the two stopping mid-word (a line of one width alone makes
    no cluster, nor do paragraphs' last lines alone: most candidates, ruled out at once)."""
    ok = np.zeros(len(pos), dtype=bool)
    for k in range(1, LOCAL_GAP + 1):
        near = (pos[k:] - pos[:-k] <= LOCAL_GAP) & (np.abs(w[k:] - w[:-k]) <= 4) & (word[k:] | word[:-k])
        ok[k:] |= near
        ok[:-k] |= near
    return ok


def _one_width(cluster: list[int], w: list, word: list, hang: list, hang2: list) -> bool:
    """Do the lines stopping mid-word in `cluster` have one width, that the others (hanging
    punctuation) reach too, and the lines between them (paragraphs' last lines) stay within?
    (Python lists, not arrays: a cluster is a few lines, asked about many times.)"""
    at = [w[c] for c in cluster if word[c]] or [w[c] for c in cluster]
    width = max(at)
    # a character short of the width (a wrapping tool's slip) only inside one paragraph: across
    # paragraphs, sentences a character apart in length come too easily
    if width - min(at) > (2 if cluster[-1] - cluster[0] == len(cluster) - 1 else 1):
        return False
    members = set(cluster)
    for i in range(cluster[0], cluster[-1] + 1):   # (widths in columns: tol 2)
        if not reaches(w[i], width, 2, hang[i], hang2[i], word[i]) and (i in members or w[i] > width):
            return False
    return True


_CLOSING = "".join(HANGING)


def _verse(t: LineTable, lines: np.ndarray) -> bool:
    """Lines of one width with their pauses at the same places are verses (their full stops
    lost), not a wrap: a wrap cuts prose anywhere."""
    marks = {tuple(i for i, ch in enumerate(t.lines[k].strip(SPACE).rstrip(_CLOSING)) if ch in PAUSES)
             for k in lines}
    return len(lines) > 1 and len(marks) == 1 and marks != {()}


def _local_wrap(t: LineTable, nb: np.ndarray, cluster: list[int], w: np.ndarray, word: np.ndarray,
                free: np.ndarray, closes: np.ndarray, m: int):
    """(first line, last line, Wrap) of the paragraphs around a cluster of full lines (in
    positions of `nb`), or None. The paragraph's last line ends a sentence or a clause (a
    verse may end with none)."""
    while len(cluster) >= MIN_FULL and word[cluster].any() and (t.pauses[nb[cluster]] > 0).any():
        if _verse(t, nb[cluster]):
            return None
        wrap = Wrap(m, int(w[[c for c in cluster if word[c]]].max()))
        after = cluster[-1] + 1
        if (after < len(nb) and free[after] and closes[after]
                and (w[after] <= wrap.width or wrap.full(t, nb[after:after + 1])[0])):
            first = cluster[0]   # the paragraph's first line reaches the width too (ending in
            # punctuation: one stopping mid-word would be in the cluster already)
            while first > 0 and free[first - 1] and wrap.full(t, nb[first - 1:first])[0] and not word[first - 1]:
                first -= 1
            return first, after, wrap
        cluster = cluster[:-1]   # the last one was a paragraph's last line, stopping mid-word
    return None


def full_lines(t: LineTable) -> set[int]:
    """Lines that reach their region's wrap width (so go on in the next line)."""
    wrap_plan(t)
    return set(np.flatnonzero(t.full & ~t.blank).tolist())


def joins(t: LineTable, p: np.ndarray, q: np.ndarray, wraps: list[Wrap], region: np.ndarray,
          soft: np.ndarray) -> np.ndarray:
    """For consecutive non-blank lines p -> q: is q the same paragraph as p? (Every region at
    once: each pair asks its own region's wrap.)"""
    out = np.zeros(len(p), dtype=bool)
    sel = np.flatnonzero((region[p] == region[q]) & (region[p] >= 0))
    if len(sel):
        pp, qq, r = p[sel], q[sel], region[p[sel]]
        base, indented, blank_sep, spaced = wrap_fields(wraps, r, "base_indent", "indented", "blank_sep", "spaced")
        gap = qq - pp - 1
        start = t.heading[pp] | t.heading[qq] | (t.indent[qq] > base)
        # blank lines separate paragraphs, unless the line before stops mid-sentence (a page break)
        start |= ~indented & ~spaced & (gap > 0) & ~t.mid_end[pp]
        # no layout to go by: a finished sentence followed by an opening quote is a new turn
        start |= (~indented & (~blank_sep | spaced) & ((gap == 0) | spaced) & t.sentence_end[pp]
                  & t.opens[qq])
        full = t.full[pp]
        ask = ~(indented | blank_sep | spaced) & full & ~start & (gap == 0) & t.sentence_end[pp]
        if ask.any():
            start[ask] = _starts_by_words(t, wraps, region, r[ask], qq[ask], first_char_odds(t, p, q, region))
        out[sel] = full & ~start
    page = soft[p] & ~out
    if page.any():
        out[page] = page_continues(t, p[page], q[page], soft)
    return out


def _starts_by_words(t: LineTable, wraps: list[Wrap], region: np.ndarray, rr: np.ndarray, qq: np.ndarray,
                     odds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Text wrapped with nothing to mark a paragraph start (no indentation, no blank line):
    does a full line that ends a sentence end its paragraph (line qq[k] after it, in region
    rr[k]), one that happened to fill the line, or was it wrapped right after the full stop?
    The file decides. Prior odds, per region: the paragraphs ending so near the width
    (counted on the short lines just below it, which are about as many) against the wraps
    falling after a sentence end (the share of such characters in the text). Evidence: the
    odds of the next line's first character (`first_char_odds`)."""
    lines = np.flatnonzero((region >= 0) & ~t.blank & ~t.heading)
    reg = region[lines]
    full = t.full[lines]
    measure, width, tol = wrap_fields(wraps, reg, "measure", "width", "tol")
    w = t.widths[lines, measure]
    near = ~full & (w >= width - 3 * tol) & (w < width - tol)
    R = len(wraps)
    n_lines, n_full = np.bincount(reg, minlength=R), np.bincount(reg[full], minlength=R)
    n_ends_near = np.bincount(reg[near & t.sentence_end[lines]], minlength=R)
    prior = np.zeros(R)
    for r in np.unique(rr).tolist():
        wrap = wraps[r]
        ends_near = int(n_ends_near[r])
        wraps_after_end = int(n_full[r]) * t.share(END)
        if n_lines[r] < MIN_REGION:   # too few to count: the paragraphs' last lines spread evenly below the width
            ends_near = int(n_lines[r] - n_full[r]) * 2 * wrap.tol / wrap.width
            prior[r] = np.log((ends_near + 0.05) / (wraps_after_end + 0.05))
        else:
            prior[r] = np.log(max(ends_near, 0.5) / max(wraps_after_end, 0.5))
    chars, lr = odds
    k = np.minimum(np.searchsorted(chars, t.first_cp[qq]), len(chars) - 1)
    return prior[rr] + np.where(chars[k] == t.first_cp[qq], lr[k], 0.0) > 0


def first_char_odds(t: LineTable, p: np.ndarray, q: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How much more often a character starts a paragraph than a sentence inside one, as
    (sorted characters, log odds), smoothed: counted on the first characters of the file's
    wrapped lines that plainly start a paragraph (after a short line of the same region),
    and on the characters after every sentence end inside a line. A character seen neither
    way is not listed (it says nothing)."""
    ok = (region[p] == region[q]) & (region[p] >= 0) & ~t.heading[p] & ~t.heading[q]
    after_short = ok & ~t.full[p]
    starts, goes_on = t.first_cp[q[after_short]], t.after(END)
    chars, code = np.unique(np.concatenate([starts, goes_on]), return_inverse=True)
    if not len(chars):
        return np.zeros(1, dtype=t.first_cp.dtype), np.zeros(1)
    cs = np.bincount(code[:len(starts)], minlength=len(chars))
    cg = np.bincount(code[len(starts):], minlength=len(chars))
    v = 0.5 * len(chars)
    return chars, np.log((cs + 0.5) / (len(starts) + v)) - np.log((cg + 0.5) / (len(goes_on) + v))


def page_continues(t: LineTable, p: np.ndarray, q: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """For page breaks p -> q the wrap rule did not join: does p's paragraph go on in q?"""
    body = ~t.blank & ~t.heading & (t.widths[:, 3] >= 10) & ~soft
    ok = ~t.heading[p] & ~t.heading[q] & (t.widths[p, 3] >= 4)
    if body.sum() >= 20 and (t.indent[body] > 0).mean() >= 0.8:
        # paragraphs start indented: the layout says it (a page's first line is not indented
        # where it goes on a paragraph, whatever the line before ends with)
        return ok & (t.indent[q] == 0)
    # no layout to go by: the line before stops mid-sentence (a short line without
    # punctuation is a title or a name)
    goes_on = t.soft_mid[p]
    if body.sum() >= 50:
        # "：" ends a paragraph in some texts (a speech or a poem follows) and rarely in
        # others: a page break falls after one as often as the colon's share of positions
        # inside lines, a paragraph ends with one as often as the file's lines do
        at_end = int(np.count_nonzero(t.colon_end & body))
        inside = (t.colons - int(np.count_nonzero(t.colon_end))) / max(1, int(t.widths[~t.blank, 3].sum()))
        goes_on = goes_on | (t.colon_end[p] & (inside > at_end / body.sum()))
    return ok & goes_on & (t.widths[p, 3] >= 20) & (t.indent[q] <= t.indent[p])


@register
class HardWrap(Rule):
    name = "hard_wrap"
    help = ("lines hard-wrapped at a fixed width (20-120 columns, decided per region from the file's own "
            "line widths, indented or not, hanging punctuation allowed; a letter or poem set apart at a "
            "width of its own too) are rejoined into paragraphs")

    def apply(self, text: str, doc: Doc) -> str:
        t = line_table(text, doc)
        n = len(t.lines)
        soft = np.zeros(n, dtype=bool)
        for i in doc.soft_breaks:
            if i < n:
                soft[i] = True
        wraps, region = wrap_plan(t)
        if not wraps and not soft.any():
            return text
        nb = np.flatnonzero(~t.blank)
        if len(nb) < 2:
            return text
        p, q = nb[:-1], nb[1:]
        join = joins(t, p, q, wraps, region, soft)
        if not join.any():
            return text
        joined_into = dict(zip(q[join].tolist(), p[join].tolist()))
        return self._assemble(t, joined_into, wraps, region, doc)

    def _assemble(self, t: LineTable, joined_into: dict, wraps, region, doc: Doc) -> str:
        # (over whole lists at once: a novel wrapped at 40 characters has 15,000 joins)
        lines = t.lines
        qs = sorted(joined_into)
        ps = [joined_into[q] for q in qs]
        gap = np.zeros(len(lines), dtype=bool)    # blank lines inside a joined paragraph: they go
        for q, p in zip(qs, ps):
            if q - p > 1:
                gap[p + 1:q] = True
        new = list(lines)
        for p in ps:
            new[p] = new[p].rstrip(SPACE)
        for q in qs:
            new[q] = new[q].lstrip(SPACE)
        kept = np.flatnonzero(~gap).tolist()
        ws = sum(len(lines[i]) for i in np.flatnonzero(gap).tolist())
        ws += sum(len(lines[i]) - len(new[i]) for i in set(ps) | set(qs))
        # English words keep their space: a substitution (Chinese wrapping tools cut anywhere,
        # even inside an English word or a URL)
        english = {q for q, p in zip(qs, ps)
                   if new[p][-1:].isascii() and new[p][-1:].isalnum() and new[q][:1].isascii()
                   and new[q][:1].isalnum() and not CJK_RE.search(new[p][-60:])}
        sep = {q: " " if q in english else "" for q in qs}
        doc.report.normalized += len(english)
        breaks = sum(q - p for q, p in zip(qs, ps)) - len(english)
        out = "".join(itertools.chain.from_iterable((sep.get(i, "\n"), new[i]) for i in kept))[1:]
        # a few joins kept as samples for the report
        every = max(1, len(qs) // 8)
        sampled = [(new[p][-40:], "\n" * (q - p), new[q][:40]) for q, p in zip(qs, ps)
                   if q not in english and (len(qs) <= 8 or q % every == 0)][:8]
        doc.report.dropped["whitespace"] += ws
        doc.report.add_drops(self.name, breaks - sum(len(x[1]) for x in sampled), len(joined_into) - len(sampled))
        for before, gone, after in sampled:
            doc.report.add_drop(self.name, gone, before, after)
        info = doc.report.paragraphs
        info["rejoined_breaks"] = info.get("rejoined_breaks", 0) + len(joined_into)
        described = {wraps[r].describe() for r in np.unique(region[qs]) if r >= 0}
        info["wrap_widths"] = sorted(set(info.get("wrap_widths", [])) | described)
        return out


def _stops_mid_sentence(c: str) -> bool:
    return c in "，、" or c.isalnum()      # (hanzi, letters and digits, full-width too)


def note_unfinished(text: str, doc: Doc) -> None:
    """Count, in the cleaned text, the paragraphs (15+ characters, not headings) that stop
    mid-sentence: a damaged copy shows many (its text was cut), a clean edition a few per
    cent (titles, lists, verse)."""
    lines = text.split("\n")
    long = [i for i, (line, heading) in enumerate(zip(lines, headings(lines))) if len(line) >= 15 and not heading]
    cases = [(lines[i], lines[i + 1] if i + 1 < len(lines) else "") for i in long if _stops_mid_sentence(lines[i][-1])]
    doc.report.note_unfinished(len(long), cases)


# ----------------------------------------------------------------------------
# whitespace



@register
class Whitespace(Rule):
    name = "whitespace"
    help = "indentation, trailing blanks, full-width spaces and tabs inside lines, runs of blank lines"

    def apply(self, text: str, doc: Doc) -> str:
        # Indentation and trailing blanks: str.strip per line runs in C, 5x faster than a regex.
        lines = [line.strip(SPACE) for line in text.split("\n")]
        stripped = "\n".join(lines)
        doc.report.dropped[self.name] += len(text) - len(stripped)
        if any(ch in stripped for ch in SPACE):
            def one(m: re.Match) -> str:  # a run of blanks inside a line becomes one space
                run = m.group(0)
                if run != " ":
                    doc.report.add_drop(self.name, run[1:])
                    doc.report.normalized += run[0] != " "
                return " "

            lines = INNER_SPACE_RE.sub(one, stripped).split("\n")
        kept = [line for line in lines if line]   # blank lines go: paragraphs end at single breaks
        text = "\n".join(kept)
        doc.report.dropped["blank_lines"] += max(0, len(lines) - max(1, len(kept)))
        return text


