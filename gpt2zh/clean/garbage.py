"""Garbage: mojibake spans found by character statistics, and the debris of lost characters.

Text that went through a wrong encoding round trip (GBK read one byte off, UTF-8 read as
GBK, GBK read as Big5 or Latin-1) turns into a stream of rare hanzi, symbols, kana,
private-use characters and "?". Each character gets a class from a small reference
model shipped with the package: the character sets themselves (GB2312's level-1 hanzi
and Big5's common ones are the ~4,000 most frequent characters; level 2 and the rest
are rare). A three-state hidden Markov model (clean text / a clean passage dense in
rare characters, such as a list of names / garbage) reads the classes; the clean
state's emissions are estimated from the document being cleaned (most of it is clean),
and Viterbi decoding marks the garbage spans. Only the damaged span goes, or the whole
paragraph with `--garbage-scope paragraph`.
"""
from __future__ import annotations

import re

import numpy as np

from .base import CJK, Doc, Rule, cut_spans, register

# character classes
A, C, P, W, S, Q, B = range(7)  # neutral, common hanzi, punctuation, rare hanzi, strong oddity, "?", blank
N_CLASSES = 6                   # blanks say nothing about the state: every state emits them alike
PROSE_PUNCT = "，。、；：？！“”‘’《》（）…—·「」『』〈〉【】～－．／！＂＇（），．：；？［］｛｝,.;:!\"'()-─━"
FOREIGN_RANGES = [  # scripts and symbols that turn up alone inside hanzi only when something went wrong
    (0x00A0, 0x024F), (0x0370, 0x03FF), (0x0400, 0x052F), (0x2460, 0x24FF), (0x2500, 0x259F),
    (0x25A0, 0x25FF), (0x2160, 0x218F), (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2300, 0x23FF),
    (0x3040, 0x30FF), (0x3100, 0x312F), (0x3200, 0x32FF), (0xE000, 0xF8FF), (0xFE30, 0xFE6F),
    (0xFF61, 0xFF9F),
]   # (not full-width digits and letters: the mainland press writes numbers and abbreviations with
    # them, ３∶０, ＣＴ, ＶＣＤ)
# scripts whose runs are words (Japanese, Russian, Greek, full-width English): neutral in a run
RUN_SCRIPTS = [(0x3040, 0x30FF), (0x0400, 0x052F), (0x0370, 0x03FF), (0xFF10, 0xFF5A), (0x00C0, 0x024F)]
MIN_WORD_RUN = 3

_tables: dict = {}


def class_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(classes for simplified text, classes for traditional text, script of each code point);
    built once per process from the codecs (~15 ms)."""
    if _tables:
        return _tables["simp"], _tables["trad"], _tables["script"]
    simp = np.zeros(0x110001, dtype=np.uint8)  # one past the last code point: a sentinel for "end of text"
    for a, b in [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F)]:
        simp[a:b + 1] = W
    for a, b in FOREIGN_RANGES:
        simp[a:b + 1] = S
    level1, big5 = [], []
    for hi in range(0xB0, 0xD8):  # GB2312 level 1: the 3,755 most frequent hanzi
        level1 += [bytes([hi, lo]) for lo in range(0xA1, 0xFF)]
    level1 = [ord(c) for c in b"".join(level1).decode("gb2312", errors="ignore")]
    for hi in range(0xA4, 0xC7):  # Big5's frequently used characters (常用字)
        for lo in list(range(0x40, 0x7F)) + list(range(0xA1, 0xFF)):
            try:
                big5.append(ord(bytes([hi, lo]).decode("big5")))
            except UnicodeDecodeError:
                pass
    simp[level1] = C
    for ch in PROSE_PUNCT:
        simp[ord(ch)] = P
    simp[ord("○")] = A   # the zero of numbers written in hanzi (二○○○年)
    simp[ord("?")] = Q
    simp[0xFFFD] = Q
    for ch in " \t\u3000\xa0\n":
        simp[ord(ch)] = B
    trad = simp.copy()
    trad[big5] = C
    script = np.zeros(0x110001, dtype=np.uint8)
    for k, (a, b) in enumerate(RUN_SCRIPTS, 1):
        script[a:b + 1] = k
    _tables.update(simp=simp, trad=trad, script=script)
    return simp, trad, script


def classify(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(code points, classes) of a text."""
    simp, trad, script = class_tables()
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    cls = simp[cps]
    if (cls == W).sum() > 0.1 * max(1, (cls == C).sum()):  # many "rare" hanzi: maybe traditional text
        alt = trad[cps]
        if (alt == C).sum() > 1.3 * (cls == C).sum():
            cls = alt
    # a run of kana, Cyrillic, Greek or full-width letters is a word of that script
    sc = script[cps]
    if sc.any():
        starts = np.concatenate(([0], np.flatnonzero(np.diff(sc)) + 1))
        lengths = np.diff(np.append(starts, len(sc)))
        cls[(sc > 0) & (np.repeat(lengths, lengths) >= MIN_WORD_RUN)] = A
    return cps, cls


# ----------------------------------------------------------------------------
# The model. States: clean text, a clean passage dense in rare hanzi (a list of names,
# fish, horses), and three kinds of garbage. Emission probabilities over (A, C, P, W, S, Q);
# the garbage rows are what bench/noise.py's round trips make of People's Daily text
# (measured: a GBK text read one byte off is ~45% common hanzi, 26% rare, 28% symbols and
# kana; UTF-8 read as GBK, or GBK read as Big5, is mostly rare hanzi; GBK or UTF-8 read
# as Latin-1 is accented letters). The clean row is only a prior: each document's own
# class counts replace it.
CLEAN_PRIOR = np.array([0.02, 0.78, 0.17, 0.025, 0.003, 0.002])
STATES = np.array([
    CLEAN_PRIOR,
    [0.01, 0.42, 0.16, 0.40, 0.008, 0.002],     # rare but clean
    [0.01, 0.45, 0.01, 0.26, 0.26, 0.01],       # GBK one byte off
    [0.01, 0.15, 0.005, 0.72, 0.09, 0.035],     # UTF-8 as GBK, GBK as Big5
    [0.15, 0.005, 0.04, 0.005, 0.76, 0.04],     # GBK or UTF-8 as Latin-1
])
N_STATES = len(STATES)
GARBAGE_STATES = (2, 3, 4)
PRIOR_WEIGHT = 2000.0          # characters of prior the document's counts are blended with


def _transitions() -> list[list[float]]:
    """clean -> rare is a name list (common), clean -> garbage is damage (rare), and
    garbage goes on for a while."""
    t = np.full((N_STATES, N_STATES), 1e-4)
    t[0, 1], t[1, 0], t[1, 1] = 1e-3, 1e-2, 0.0
    for g in GARBAGE_STATES:
        t[g, 0] = 5e-3
        t[g, g] = 0.0
    for k in range(N_STATES):
        t[k, k] = 1.0 - (t[k].sum() - t[k, k])
    return np.log(t).tolist()


TRANS_LIST = _transitions()
START = np.log(np.array([0.96, 0.01, 0.01, 0.01, 0.01])).tolist()
WINDOW, MIN_ODD, PAD = 8, 3, 16   # candidate regions: >= MIN_ODD odd characters in WINDOW, padded


def emissions(cls: np.ndarray, regions: list[tuple[int, int]]) -> np.ndarray:
    """log P(class | state), (states, classes + blank); the clean row from the text outside
    the candidate regions."""
    inside = np.concatenate([cls[s:e] for s, e in regions])
    counts = (np.bincount(cls, minlength=N_CLASSES + 1) - np.bincount(inside, minlength=N_CLASSES + 1))
    counts = counts[:N_CLASSES].astype(np.float64)
    clean = (counts + PRIOR_WEIGHT * CLEAN_PRIOR) / (counts.sum() + PRIOR_WEIGHT)
    rows = STATES.copy()
    rows[0] = np.maximum(clean, 1e-5)
    rows /= rows.sum(axis=1, keepdims=True)
    return np.concatenate([np.log(rows), np.zeros((N_STATES, 1))], axis=1)  # column B: blanks


def candidate_regions(cps: np.ndarray, cls: np.ndarray) -> list[tuple[int, int]]:
    """Stretches of one line where odd characters (rare hanzi, symbols, '?') cluster."""
    n = len(cls)
    odd = (cls == W) | (cls == S) | (cls == Q)
    if n < WINDOW or np.count_nonzero(odd) < MIN_ODD:
        return []
    cs = np.concatenate(([0], np.cumsum(odd, dtype=np.int32)))
    hot = np.flatnonzero(cs[WINDOW:] - cs[:-WINDOW] >= MIN_ODD)
    if not len(hot):
        return []
    # each hot window, padded, covers a span; the spans all have one length, so their ends are
    # sorted too, and they merge where one starts before the last one ended
    starts, ends = np.maximum(hot - PAD, 0), np.minimum(hot + WINDOW + PAD, n)
    gaps = np.flatnonzero(starts[1:] > ends[:-1])
    merged = zip(starts[np.concatenate(([0], gaps + 1))].tolist(), ends[np.concatenate((gaps, [len(ends) - 1]))].tolist())
    newlines = np.flatnonzero(cps == 10)
    out = []
    for s, e in merged:  # never across a line break: garbage is judged per paragraph
        for nl in newlines[np.searchsorted(newlines, s):np.searchsorted(newlines, e)].tolist():
            if nl > s:
                out.append((s, nl))
            s = nl + 1
        if e > s:
            out.append((s, e))
    return out


def viterbi(seqs: list[np.ndarray], logE: np.ndarray) -> list[np.ndarray]:
    """Most likely state per position of each sequence. The sequences are decoded side by
    side in numpy, in buckets of similar length padded with blanks (which every state
    emits alike)."""
    trans = np.array(TRANS_LIST)
    start = np.array(START)
    out: list[np.ndarray | None] = [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    k = 0
    while k < len(order):
        top = max(1, len(seqs[order[k]]))
        bucket = [i for i in order[k:] if len(seqs[i]) <= 2 * top]
        k += len(bucket)
        L = max(len(seqs[i]) for i in bucket)
        obs = np.full((len(bucket), L), B, dtype=np.int64)
        for r, i in enumerate(bucket):
            obs[r, :len(seqs[i])] = seqs[i]
        em = logE[:, obs].transpose(2, 1, 0)                 # (L, R, states)
        score = start + em[0]
        back = np.zeros((L, len(bucket), N_STATES), dtype=np.int8)
        for t in range(1, L):
            cand = score[:, :, None] + trans[None]           # (R, from, to)
            back[t] = cand.argmax(1)
            score = cand.max(1) + em[t]
        state = score.argmax(1)
        states = np.empty((len(bucket), L), dtype=np.int8)
        rows = np.arange(len(bucket))
        for t in range(L - 1, -1, -1):
            states[:, t] = state
            state = back[t, rows, state]
        for r, i in enumerate(bucket):
            out[i] = states[r, :len(seqs[i])]
    return out


def garbage_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) spans of `text` that the model reads as garbage."""
    cps, cls = classify(text)
    regions = candidate_regions(cps, cls)
    if not regions:
        return []
    logE = emissions(cls, regions)
    bad = np.zeros(len(cls) + 2, dtype=np.int8)
    for (s, e), states in zip(regions, viterbi([cls[s:e] for s, e in regions], logE)):
        bad[s + 1:e + 1] = states >= GARBAGE_STATES[0]
    edges = np.flatnonzero(np.diff(bad))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


@register
class Garbage(Rule):
    name = "garbage"
    help = ("mojibake (text that went through a wrong encoding round trip), found by a character-class "
            "model of each document; the damaged span goes, or its paragraph with --garbage-scope paragraph")

    def apply(self, text: str, doc: Doc) -> str:
        spans = garbage_spans(text)
        if not spans:
            return text
        scope = getattr(doc.options, "garbage_scope", "span")
        cuts = []
        for s, e in spans:
            ls = text.rfind("\n", 0, s) + 1
            le = text.find("\n", e)
            le = len(text) if le < 0 else le
            if scope == "paragraph":
                s, e = ls, le
            if cuts and s < cuts[-1][1]:
                continue
            doc.report.flag(doc.name, text[s:e], text[max(0, s - 40):s], text[e:e + 40],
                            "paragraph" if (s, e) == (ls, le) else "span")
            cuts.append((s, e))
        return cut_spans(text, cuts, self.name, doc)


# ----------------------------------------------------------------------------
# Debris of lost characters, masks, placeholders

_FOREIGN_CHAR = "\u0400-\u052f\u3041-\u306d\u306f-\u30ff\u2502-\u257f\u3100-\u312f\u00c0-\u00ff"  # not の, not ─ ━ (dashes)
# "z茧P", "y中T", "yA", "*ψw", "z⒐陧A": ASCII letters around a character where a rare one
# was lost (only inside Chinese text). Each branch starts with a plain character class and
# checks behind afterwards: twice as fast.
JUNK_RUN_RE = re.compile(
    r"[yz*](?<=[^\x00-\x7f][yz*])[^\sA-Za-z0-9，。！？、：；“”‘’「」,.!?;:\"']{0,4}[A-Za-z|?](?![A-Za-z0-9])"
    rf"|[A-Za-z](?<![A-Za-z0-9][A-Za-z])[{CJK}][A-Za-z](?![A-Za-z0-9])"
)
# "窄Ё袄", "青н车*": a lone letter of another script (or a "*") inside hanzi. Found by a
# character-class scan, judged by its neighbours in Python.
DEBRIS_RE = re.compile(f"[*?{_FOREIGN_CHAR}]+")
_FOREIGN_ONLY = re.compile(f"[{_FOREIGN_CHAR}]")
_HAN = re.compile(f"[{CJK}]")
_AFTER_OK = re.compile(f"[{CJK}，。、；：！？\n]")
# beside a lone letter: a hanzi on one side, and on the other a hanzi, punctuation or the
# line's edge ("玻璃ニ．", "с防问你的书", "“プ漱已毕")
_EDGE_OK = re.compile(f"[{CJK}，。、；：！？．,.!?;:“”‘’「」『』（）()《》…—\n]")
_KANA = re.compile("[\u3041-\u30ff]")
_KANA_WORD = re.compile("[\u3041-\u30fa\u30fc]{2,}")
JAPANESE_WORDS = 20   # a document with this many runs of kana holds Japanese: its lone kana are words
MASK_RE = re.compile(r"(?:\*\*|＊＊)[*＊]*")   # literal-led: scanned fast
PLACEHOLDER_RE = re.compile(r"[□?]")


def _debris_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    japanese = None
    for m in DEBRIS_RE.finditer(text):
        s, e = m.start(), m.end()
        run = m.group(0)
        if len(run) > 5:
            continue
        han_before = s > 0 and _HAN.match(text, s - 1) is not None
        after_ok = e == len(text) or _AFTER_OK.match(text, e) is not None
        foreign = len(_FOREIGN_ONLY.findall(run))
        if _KANA.search(run):
            if japanese is None:
                japanese = sum(1 for _ in zip(range(JAPANESE_WORDS), _KANA_WORD.finditer(text))) >= JAPANESE_WORDS
            if japanese:
                continue
        if foreign == 1 and len(run) == 1 and _lone_letter(text, s, e, han_before):
            spans.append((s, e))
        elif not han_before:
            continue
        elif foreign and foreign <= 2 and after_ok and not (e < len(text) and _FOREIGN_ONLY.match(text, e)):
            spans.append((s, e))
        elif run == "*" and after_ok:
            spans.append((s, e))
    return spans


def _lone_letter(text: str, s: int, e: int, han_before: bool) -> bool:
    """A letter of another script alone, a hanzi on one side of it and a hanzi, a mark or the
    line's edge on the other."""
    edge_before = s == 0 or _EDGE_OK.match(text, s - 1) is not None
    han_after = e < len(text) and _HAN.match(text, e) is not None
    edge_after = e == len(text) or _EDGE_OK.match(text, e) is not None
    return (han_before and edge_after) or (edge_before and han_after)


_ASCII_LETTER = np.zeros(0x110000, dtype=bool)
_ASCII_LETTER[[ord(c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz*"]] = True


def _junk_spans(text: str) -> list[tuple[int, int]]:
    """JUNK_RUN_RE, tried only where an ASCII letter (or "*") follows a non-ASCII character:
    the pattern scanned over a whole novel costs more than finding those few places."""
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    if len(cps) < 2:
        return []
    cand = np.flatnonzero(_ASCII_LETTER[cps[1:]] & (cps[:-1] >= 0x80)) + 1
    spans, end = [], 0
    for p in cand.tolist():
        if p < end:
            continue
        m = JUNK_RUN_RE.match(text, p)
        if m:
            spans.append((m.start(), m.end()))
            end = m.end()
    return spans


def _next_to_han(text: str, s: int, e: int, both: bool = False) -> bool:
    before = s > 0 and _HAN.match(text, s - 1) is not None
    after = e < len(text) and _HAN.match(text, e) is not None
    return (before and after) if both else (before or after)


@register
class JunkRuns(Rule):
    name = "junk_runs"
    help = ('debris where a rare character was lost ("z茧P", "y中T", "窄Ё袄", "青н车*"), and a lone kana or '
            'Cyrillic letter standing for a lost hanzi ("玻璃ニ．", "с防问你的书"; not in a text that holds Japanese)')

    def apply(self, text: str, doc: Doc) -> str:
        spans = _junk_spans(text) + _debris_spans(text)
        spans.sort()
        merged: list[tuple[int, int]] = []
        for s, e in spans:
            if merged and s < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
            else:
                merged.append((s, e))
        return cut_spans(text, merged, self.name, doc)


@register
class Masks(Rule):
    name = "masks"
    help = 'runs of "*" masking words inside Chinese text ("**奸雄")'

    def apply(self, text: str, doc: Doc) -> str:
        if "*" not in text and "＊" not in text:
            return text
        spans = [(m.start(), m.end()) for m in MASK_RE.finditer(text) if _next_to_han(text, m.start(), m.end())]
        return cut_spans(text, spans, self.name, doc)


@register
class Placeholders(Rule):
    name = "placeholders"
    help = '"□" and "?" standing for lost characters'
    default = False

    def apply(self, text: str, doc: Doc) -> str:
        spans = [(m.start(), m.end()) for m in PLACEHOLDER_RE.finditer(text)
                 if m.group(0) == "□" or _next_to_han(text, m.start(), m.end(), both=True)]
        return cut_spans(text, spans, self.name, doc)

