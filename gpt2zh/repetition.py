"""Long-range repetition: detection over the whole text so far, the DRY penalty, and
the metrics reported with every sample.

A suffix automaton over the generated tokens answers, in amortized O(1) per token,
"how long is the longest suffix of the text that occurred before?" (the length of
the state that the last state's suffix link points to). Its transitions also give
DRY's penalty directly: token t extends an earlier occurrence of the last L tokens
exactly when the state of that suffix has a transition on t.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .options import check_knobs, knob


DRY_CAP = 1e4      # the largest DRY penalty (a logit lowered by this is never sampled)


class SuffixAutomaton:
    """Online suffix automaton over a sequence of hashable symbols (token ids or characters)."""

    __slots__ = ("length", "link", "next", "last", "size")

    def __init__(self, seq=()):
        self.length = [0]
        self.link = [-1]
        self.next: list[dict] = [{}]
        self.last = 0
        self.size = 0
        for s in seq:
            self.extend(s)

    def extend(self, c) -> int:
        """Append one symbol; return the length of the longest suffix that occurred earlier."""
        length, link, nxt = self.length, self.link, self.next
        cur = len(length)
        length.append(length[self.last] + 1)
        link.append(-1)
        nxt.append({})
        p = self.last
        while p != -1 and c not in nxt[p]:
            nxt[p][c] = cur
            p = link[p]
        if p == -1:
            link[cur] = 0
        else:
            q = nxt[p][c]
            if length[p] + 1 == length[q]:
                link[cur] = q
            else:
                clone = len(length)
                length.append(length[p] + 1)
                link.append(link[q])
                nxt.append(dict(nxt[q]))
                while p != -1 and nxt[p].get(c) == q:
                    nxt[p][c] = clone
                    p = link[p]
                link[q] = link[cur] = clone
        self.last = cur
        self.size += 1
        return length[link[cur]]

    def repeated_suffix(self) -> int:
        return self.length[self.link[self.last]] if self.last else 0

    def dry_penalties(self, allowed: int, base: float, multiplier: float, max_len: int = 64) -> dict:
        """DRY: for every token t that would extend a repeat of length L >= allowed,
        penalty multiplier * base ** (L - allowed). Walks the suffix-link chain from
        the longest repeated suffix down to length `allowed`."""
        out: dict = {}
        v = self.link[self.last] if self.last else -1
        while v > 0 and self.length[v] >= allowed:
            m = min(self.length[v], max_len)
            for t in self.next[v]:
                if t not in out:  # the first state seen on the chain has the longest match
                    # capped: past this a token is as good as banned, and float32 logits stay finite
                    out[t] = min(multiplier * base ** (m - allowed), DRY_CAP)
            v = self.link[v]
        return out


def longest_repeated_substring(seq) -> int:
    """Length of the longest substring occurring at least twice (overlaps allowed)."""
    sam = SuffixAutomaton()
    best = 0
    for c in seq:
        best = max(best, sam.extend(c))
    return best


def ngram_repetition(text: str, n: int) -> float:
    """1 - unique/total over character n-grams (0 = no n-gram repeats)."""
    total = len(text) - n + 1
    if total <= 0:
        return 0.0
    return 1 - len({text[i:i + n] for i in range(total)}) / total


def distinct_n(text: str, n: int) -> float:
    total = len(text) - n + 1
    if total <= 0:
        return 1.0
    return len({text[i:i + n] for i in range(total)}) / total


SENTENCE_END = set("。！？!?…\n")


@dataclass
class RepetitionConfig:
    """What to do about repetition. mode: off | penalize | rollback (rollback also penalizes).
    The knobs are user settings (flags, API fields); the rest are the detector's internals."""

    mode: str = knob("rollback", "countermeasure when the repetition detector fires",
                     choices=("off", "penalize", "rollback"), name="repetition")
    dry_multiplier: float = knob(0.8, "DRY sequence penalty strength (0 = off)", 0.0, 100.0)
    dry_base: float = knob(1.75, "DRY penalty growth per repeated token", 1.0, 10.0)
    # repeats shorter than this are free (names, stock phrases)
    dry_allowed: int = knob(4, "repeats shorter than this (tokens) are not penalized", 1, 10_000)
    max_copy: int = knob(20, "a repeated run this long (tokens) fires the detector", 2, 1_000_000)
    min_sentence: int = 8         # a recurring sentence at least this long (characters) fires too
    ngram_window: int = 400       # characters in the sliding window of the n-gram detector
    ngram_threshold: float = 0.25  # 8-gram repetition rate in the window that fires it
    max_failures: int = 8         # rollbacks in a row without 100 tokens of progress: stop the sample
    lexical: bool = True          # watch collapse and fixation too (False: copies only, as before they were)
    boost: float = 4.0            # after the detector fires, DRY at this many times max(multiplier, 0.5)
    boost_tokens: int = 200       # ... for this many tokens
    focus_penalty: float = knob(3.0, "after collapse or fixation: logit penalty on the characters it fixed on, "
                                     "fading over --focus-tokens; raised a step (to 4x at most) each time a fixation "
                                     "persists (0 = off)", 0.0, 100.0)
    focus_tokens: int = knob(300, "tokens over which the focus penalty and the raised temperature fade", 1, 100_000)
    density_penalty: float = knob(0.0, "logit penalty per occurrence of a character beyond the human p99 share "
                                       "of the last 200 characters (stops collapse before it sets in; 0 = off)",
                                  0.0, 10.0)
    recover_temperature: float = knob(0.0, "after the detector fired: temperature raised by this much, recovering "
                                           "over --focus-tokens", 0.0, 2.0)

    def __post_init__(self):
        check_knobs(self)


@dataclass
class RepetitionEvents:
    fired: int = 0
    rolled_back: int = 0
    rolled_back_tokens: int = 0
    stopped: bool = False
    reasons: Counter = field(default_factory=Counter)


def repetition_report(text: str, events: RepetitionEvents | None = None) -> dict:
    """The metrics reported with every sample, over characters of the final text."""
    rep = {
        "chars": len(text),
        "rep_4gram": round(ngram_repetition(text, 4), 4),
        "rep_8gram": round(ngram_repetition(text, 8), 4),
        "distinct_1": round(distinct_n(text, 1), 4),
        "distinct_2": round(distinct_n(text, 2), 4),
        "distinct_4": round(distinct_n(text, 4), 4),
        "longest_repeat": longest_repeated_substring(text),
    }
    if events is not None:
        rep.update({"detector_fired": events.fired, "rolled_back": events.rolled_back,
                    "rolled_back_tokens": events.rolled_back_tokens, "stopped": events.stopped,
                    "fired_by": dict(events.reasons)})
    return rep


def repeated_spans(text: str, min_len: int = 12) -> list[list[int]]:
    """[start, end) character spans of the text that occur more than once (at least min_len
    long, merged where they touch): what a reader sees as repeated passages."""
    if len(text) < 2 * min_len:
        return []
    first: dict[str, int] = {}
    hit = bytearray(len(text) + 1)
    for i in range(len(text) - min_len + 1):
        piece = text[i:i + min_len]
        j = first.setdefault(piece, i)
        if j != i:
            hit[i:i + min_len] = b"\x01" * min_len
            hit[j:j + min_len] = b"\x01" * min_len
    spans, start = [], None
    for i, h in enumerate(hit):
        if h and start is None:
            start = i
        elif not h and start is not None:
            spans.append([start, i])
            start = None
    return spans
