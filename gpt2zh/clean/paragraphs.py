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
        lut[0xFF10:0xFF1A] |= MID | SOFT   # full-width digits and letters
        lut[0xFF21:0xFF3B] |= MID | SOFT
        lut[0xFF41:0xFF5B] |= MID | SOFT
        _LUT = lut
    return _LUT


class LineTable:
    """Every line of a text measured once, as arrays computed over the whole text at once
    (a Python object per line and per question costs ten times more on a novel's 20,000 lines)."""

    def __init__(self, text: str):
        self.lines = text.split("\n")
        lut = _char_flags()
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        n = len(cps)
        flags = lut[cps]
        blank = (flags & BLANK) != 0                       # spaces and line breaks
        starts = np.concatenate(([0], np.flatnonzero(cps == 10) + 1))
        idx = np.arange(n + 1)
        first = np.minimum.reduceat(np.where(np.append(blank, True), n, idx), starts)
        last = np.maximum.reduceat(np.where(np.append(blank, True), -1, idx), starts)
        has = first < n
        width = np.where(cps < 0x80, 1, np.where(cps < 0x10000, 2, 4))   # GB18030 bytes: display columns
        cum = np.concatenate(([0], np.cumsum(width), [0]))   # (one spare entry: indexing never falls off)
        clen = np.where(has, last - first + 1, 0)
        rlen = np.where(has, last - starts + 1, 0)
        cols = np.where(has, cum[np.maximum(last, 0) + 1] - cum[starts], 0)
        self.indent = np.where(has, cum[np.minimum(first, n)] - cum[starts], 0)
        self.widths = np.stack([cols, cols - self.indent, rlen, clen], axis=1)   # one column per MEASURES
        self.blank = ~has
        flags = np.append(flags, 0)
        lastf = np.where(has, flags[np.clip(last, 0, n)], 0)
        firstf = np.where(has, flags[np.clip(first, 0, n)], 0)
        self.hang = (lastf & HANG) != 0
        self.punct = (lastf & PUNCT) != 0
        self.sentence_end = (lastf & END) != 0
        self.mid_end = (lastf & MID) != 0
        self.mid_word = has & ((lastf & (PUNCT | HANG)) == 0)
        self.soft_mid = (lastf & SOFT) != 0
        self.colon_end = (lastf & COLON) != 0
        self.colons = int(np.count_nonzero(flags & COLON))
        self.opens = (firstf & OPEN) != 0
        self.open_end = (lastf & OPENER) != 0      # a paragraph never stops on an opening quote or bracket
        self.clause_end = (lastf & CLAUSE) != 0     # "道：" ends a paragraph before a speech
        before_last = np.where(has & (last > first), flags[np.clip(last - 1, 0, n)], 0)
        self.hang2 = self.hang & ((before_last & HANG) != 0)   # "。”": two closing marks may hang
        # punctuation inside the line (the last character not counted): prose has it, a list item or a
        # line of free verse seldom does
        pauses = np.add.reduceat(np.append((flags[:-1] & PAUSE) != 0, False).astype(np.int32), starts)
        self.pauses = pauses - ((lastf & PAUSE) != 0)
        self.first_cp = np.where(has, np.append(cps, 0)[np.minimum(first, n)], 0)   # first character of a line
        self._cps, self._flags = cps, flags[:-1]   # (flags has one spare entry at the end)
        self._shares: dict[int, float] = {}
        self.heading = np.zeros(len(starts), dtype=bool)
        for i in np.flatnonzero(((firstf & HEAD) != 0) & (clen <= 60)):
            self.heading[i] = is_heading(text[first[i]:last[i] + 1])
        self.plan = None                                   # (wraps, region of each line), once computed
        nonblank = np.append(np.flatnonzero(has), -1)     # -1: no line after
        self.next_nonblank = nonblank[np.searchsorted(nonblank[:-1], np.arange(len(starts)) + 1)]


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
        top = 155 * unit + 3 * tol + 2
        w = np.minimum(t.widths[idx, m], top - 1)                # longer lines are only "over" any width
        key = r_of * top + w

        def cumulative(weights=None):                           # [r, x]: lines of block r narrower than x
            h = np.bincount(key, weights=weights, minlength=R * top).reshape(R, top)
            return np.concatenate([np.zeros((R, 1)), np.cumsum(h, axis=1)], axis=1)

        cum, cum_p, cum_h, cum_o = cumulative(), cumulative(punct), cumulative(hang), cumulative(listed_next)
        W = np.arange(10 * unit, 150 * unit)
        hanging = cum_h[:, W + tol + 1] - cum_h[:, W + 1]     # ending in punctuation just past W
        at = cum[:, W + 1] - cum[:, W - tol] + hanging          # (blocks, widths)
        over = n[:, None] - cum[:, W + 1] - hanging
        below = cum[:, W - tol] - cum[:, W - 3 * tol]
        mid = at - (cum_p[:, W + 1] - cum_p[:, W - tol] + hanging)
        listed = cum_o[:, W + 1] - cum_o[:, W - tol]
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


def read_style(wrap: Wrap, t: LineTable, a: int, b: int) -> Wrap:
    """How paragraphs start in a wrapped block: indentation, blank lines, or neither."""
    return read_style_of(wrap, t, np.flatnonzero(~t.blank[a:b]) + a)


def read_style_of(wrap: Wrap, t: LineTable, idx: np.ndarray) -> Wrap:
    """read_style for the non-blank lines `idx` (ascending)."""
    if len(idx) < 2:
        return wrap
    p, q = idx[:-1], idx[1:]
    # (pairs of lines next to each other only: `idx` may skip a block read apart)
    keep = ~t.heading[p] & ~t.heading[q] & (t.next_nonblank[p] == q)
    p, q = p[keep], q[keep]
    full = wrap.full(t, p)
    after_full, after_short = t.indent[q[full]], t.indent[q[~full]]
    wrap.base_indent = int(np.bincount(after_full).argmax()) if len(after_full) else 0
    if len(after_short):
        starts = (after_short > wrap.base_indent).mean()
        conts = (after_full > wrap.base_indent).mean() if len(after_full) else 0.0
        wrap.indented = bool(starts >= 0.6 and conts <= 0.3)
        wrap.blank_sep = bool(((q[~full] - p[~full]) > 1).mean() >= 0.6)
    if full.sum() >= 4:
        wrap.spaced = bool(((q[full] - p[full]) > 1).mean() >= 0.8)
    return wrap


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
    for (a, b), wrap in zip(blocks, found):
        if wrap is None and whole is not None and (~t.blank[a:b]).sum() < 2 * MIN_REGION:
            wrap = Wrap(whole.measure, whole.width)
        if wrap is not None:
            wraps.append(read_style(wrap, t, a, b))
            region[a:b] = len(wraps) - 1
    n_regions, before = len(wraps), region.copy()
    blocks = trim_blocks(t, set_blocks(t, wraps, region))
    for (a, b, r), wrap in zip(blocks, detect_wraps(t, [(a, b) for a, b, _ in blocks], strict=True)):
        if wrap is not None and (r < 0 or (wrap.measure, wrap.width) != (wraps[r].measure, wraps[r].width)):
            wraps.append(read_style(wrap, t, a, b))
            region[a:b] = len(wraps) - 1
    split_widths(t, wraps, region)
    for a, b, wrap in local_wraps(t, wraps, region):
        wraps.append(read_style(wrap, t, a, b))
        region[a:b] = len(wraps) - 1
    lost = np.unique(before[(region != before) & (before >= 0)])
    for r in lost[lost < n_regions]:      # a region's style read again without the blocks read apart
        read_style_of(wraps[r], t, np.flatnonzero((region == r) & ~t.blank))
    t.plan = (wraps, region)
    return t.plan


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
    for r, w in enumerate(wraps):
        sel = np.flatnonzero(reg == r)
        narrower[sel] = ~w.full(t, nb[sel]) & (t.widths[nb[sel], w.measure] <= w.width + w.tol)
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
    out = []
    for (a, b, r), wrap in zip(blocks, detect_wraps(t, [(a, b) for a, b, _ in blocks])):
        if wrap is None:
            continue
        idx = np.flatnonzero(~t.blank[a:b]) + a
        full = np.flatnonzero(wrap.full(t, idx))
        if len(full):
            last = min(full[-1] + 1, len(idx) - 1)
            out.append((int(idx[full[0]]), int(idx[last]) + 1, r))
    return out


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
        for r, w in enumerate(wraps):
            idx = np.flatnonzero((region == r) & ~t.blank & ~t.heading)
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
    free = reg < 0
    for r, w in enumerate(wraps):   # a wrapped region's lines that are not full: shorter, or wider
        sel = np.flatnonzero(reg == r)
        free[sel] = ~w.full(t, nb[sel])
    free &= ~t.heading[nb]
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
    wraps, region = wrap_plan(t)
    out: set[int] = set()
    for r, wrap in enumerate(wraps):
        idx = np.flatnonzero((region == r) & ~t.blank)
        out.update(idx[wrap.full(t, idx)].tolist())
    return out


def joins(t: LineTable, p: np.ndarray, q: np.ndarray, wraps: list[Wrap], region: np.ndarray,
          soft: np.ndarray) -> np.ndarray:
    """For consecutive non-blank lines p -> q: is q the same paragraph as p?"""
    out = np.zeros(len(p), dtype=bool)
    odds = None
    same = (region[p] == region[q]) & (region[p] >= 0)
    for r in np.unique(region[p][same]):
        sel = np.flatnonzero(same & (region[p] == r))
        wrap = wraps[r]
        pp, qq = p[sel], q[sel]
        gap = qq - pp - 1
        start = t.heading[pp] | t.heading[qq] | (t.indent[qq] > wrap.base_indent)
        if not wrap.indented:
            if not wrap.spaced:
                # blank lines separate paragraphs, unless the line before stops mid-sentence (a page break)
                start |= (gap > 0) & ~t.mid_end[pp]
            if not wrap.blank_sep or wrap.spaced:
                # no layout to go by: a finished sentence followed by an opening quote is a new turn
                start |= ((gap == 0) | wrap.spaced) & t.sentence_end[pp] & t.opens[qq]
        full = wrap.full(t, pp)
        if not (wrap.indented or wrap.blank_sep or wrap.spaced):
            ask = full & ~start & (gap == 0) & t.sentence_end[pp]
            if ask.any():
                odds = first_char_odds(t, p, q, wraps, region) if odds is None else odds
                start[ask] = _starts_by_words(t, wrap, r, region, qq[ask], odds)
        out[sel] = full & ~start
    page = soft[p] & ~out
    if page.any():
        out[page] = page_continues(t, p[page], q[page], soft)
    return out


def _starts_by_words(t: LineTable, wrap: Wrap, r: int, region: np.ndarray, qq: np.ndarray,
                     odds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Text wrapped with nothing to mark a paragraph start (no indentation, no blank line):
    does a full line that ends a sentence end its paragraph, one that happened to fill the
    line, or was it wrapped right after the full stop? The file decides. Prior odds: the
    paragraphs ending so near the width (counted on the short lines just below it, which
    are about as many) against the wraps falling after a sentence end (the share of such
    characters in the text). Evidence: the odds of the next line's first character
    (`first_char_odds`)."""
    lines = np.flatnonzero((region == r) & ~t.blank & ~t.heading)
    full = wrap.full(t, lines)
    w = t.widths[lines, wrap.measure]
    near = lines[~full][(w[~full] >= wrap.width - 3 * wrap.tol) & (w[~full] < wrap.width - wrap.tol)]
    ends_near = np.count_nonzero(t.sentence_end[near])
    wraps_after_end = np.count_nonzero(full) * t.share(END)
    if len(lines) < MIN_REGION:   # too few to count: the paragraphs' last lines spread evenly below the width
        ends_near = np.count_nonzero(~full) * 2 * wrap.tol / wrap.width
        prior = np.log((ends_near + 0.05) / (wraps_after_end + 0.05))
    else:
        prior = np.log(max(ends_near, 0.5) / max(wraps_after_end, 0.5))
    chars, lr = odds
    k = np.minimum(np.searchsorted(chars, t.first_cp[qq]), len(chars) - 1)
    return prior + np.where(chars[k] == t.first_cp[qq], lr[k], 0.0) > 0


def first_char_odds(t: LineTable, p: np.ndarray, q: np.ndarray, wraps: list[Wrap],
                    region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How much more often a character starts a paragraph than a sentence inside one, as
    (sorted characters, log odds), smoothed: counted on the first characters of the file's
    wrapped lines that plainly start a paragraph (after a short line of the same region),
    and on the characters after every sentence end inside a line. A character seen neither
    way is not listed (it says nothing)."""
    ok = (region[p] == region[q]) & (region[p] >= 0) & ~t.heading[p] & ~t.heading[q]
    after_short = np.zeros(len(p), dtype=bool)
    for k in np.unique(region[p][ok]):
        sel = np.flatnonzero(ok & (region[p] == k))
        after_short[sel] = ~wraps[k].full(t, p[sel])
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


