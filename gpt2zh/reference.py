"""A reference the language model cannot game: an interpolated Kneser-Ney character n-gram
model of the training text, built by `prepare` and stored beside the shards and the model.

It judges generated text independently of the model that wrote it. A countermeasure against
fixation can trade one failure for another (a penalty strong enough pushes the model into
real words strung into nonsense); the reference's per-character perplexity of a window,
against the same figure on human validation windows, shows whether it did.

Everything is numpy over hashed n-grams: an n-gram's key is a 64-bit polynomial hash of its
character ids (collisions among a few million keys: about one in a million), tables are sorted
key arrays searched with `np.searchsorted`, so a 5,000-character text scores in milliseconds.
The training text is capped (`max_chars`, spread evenly over the documents), so the table is
bounded whatever the corpus size.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

P = np.uint64(1_000_003)       # the hash's multiplier (odd, so distinct short n-grams never meet)
DISCOUNT = 0.75


def _hashes(ids: np.ndarray, order: int) -> list[np.ndarray]:
    """h[n][i]: the key of the (n+1)-gram ending at position i + n (ids[i .. i+n])."""
    x = ids.astype(np.uint64) + np.uint64(1)
    out = [x]
    with np.errstate(over="ignore"):   # the hash wraps modulo 2**64 on purpose
        for n in range(1, order):
            out.append(out[-1][:-1] * P + x[n:])
    return out


@dataclass
class _Level:
    """One order: the n-grams' keys (sorted) with their counts (raw at the top order,
    continuation counts below), and their histories' totals and type counts."""
    keys: np.ndarray
    counts: np.ndarray
    ctx_keys: np.ndarray
    ctx_totals: np.ndarray
    ctx_back: np.ndarray      # the mass a history passes to the lower order: D x its types + what pruning removed

    def lookup(self, keys: np.ndarray, table: np.ndarray, values: np.ndarray) -> np.ndarray:
        i = np.searchsorted(table, keys)
        i = np.minimum(i, len(table) - 1)
        hit = table[i] == keys if len(table) else np.zeros(len(keys), bool)
        return np.where(hit, values[i] if len(table) else 0, 0)


def _level(gram: np.ndarray, ctx: np.ndarray, prune: int) -> _Level:
    """From one key per occurrence (gram) and its history's key (ctx): the counts per n-gram
    (continuation counts where the occurrences given are one per distinct left extension), the
    totals and types per history."""
    keys, first, counts = np.unique(gram, return_index=True, return_counts=True)
    hist = ctx[first]
    ck, inv = np.unique(hist, return_inverse=True)
    totals = np.bincount(inv, weights=counts, minlength=len(ck)).astype(np.int64)
    back = DISCOUNT * np.bincount(inv, minlength=len(ck))
    if prune > 1:   # rare n-grams go; their mass goes to the lower order, so probabilities still sum to 1
        gone = counts < prune
        back += np.bincount(inv[gone], weights=counts[gone] - DISCOUNT, minlength=len(ck))
        keys, counts = keys[~gone], counts[~gone]
    return _Level(keys, counts.astype(np.int32), ck, totals, back.astype(np.float32))


class CharNgram:
    """Interpolated Kneser-Ney over characters, orders 1..order."""

    def __init__(self, chars: str, order: int, levels: list[_Level], unigram: np.ndarray):
        self.chars, self.order, self.levels, self.unigram = chars, order, levels, unigram
        self.index = {c: i for i, c in enumerate(chars)}

    # -- building

    @classmethod
    def train(cls, texts, order: int = 5, max_chars: int = 20_000_000, prune: int = 2) -> "CharNgram":
        """From an iterable of texts (documents), at most `max_chars` characters of them."""
        if not 1 <= order <= 6:
            raise ValueError("order must be in 1..6")
        text = "\n".join(texts)[:max_chars]
        if len(text) < order + 1:
            raise ValueError("too little text for a reference model")
        chars = "".join(sorted(set(text)))
        lut = {c: i for i, c in enumerate(chars)}
        ids = np.fromiter((lut[c] for c in text), dtype=np.int64, count=len(text))
        h = _hashes(ids, order)
        V = len(chars)
        levels: list[_Level] = []
        for n in range(1, order):   # orders 2..order-1: continuation counts
            # distinct (n+1)-grams, each an occurrence of its suffix n-gram: N1+(. w_suffix)
            _, first = np.unique(h[n], return_index=True)
            suffix_pos = first + 1            # the n-gram ending at the same position
            g = h[n - 1][suffix_pos]
            c = h[n - 2][suffix_pos] if n >= 2 else np.zeros(len(g), np.uint64)
            levels.append(_level(g, c, prune if n >= 3 else 1))
        top = _level(h[order - 1], h[order - 2][:-1] if order >= 2 else np.zeros(len(h[0]), np.uint64),
                     prune if order >= 3 else 1)
        levels.append(top)
        # the unigram level as a dense array over the alphabet (continuation counts)
        uni = levels[0]
        unigram = np.zeros(V, np.float64)
        unigram[(uni.keys - np.uint64(1)).astype(np.int64)] = uni.counts
        return cls(chars, order, levels[1:] if order > 1 else [], unigram)

    # -- scoring

    def logprobs(self, text: str) -> np.ndarray:
        """Natural-log probability of every character of `text` given the ones before it."""
        if not text:
            return np.zeros(0)
        ids = np.fromiter((self.index.get(c, -1) for c in text), dtype=np.int64, count=len(text))
        oov = ids < 0
        V = len(self.chars) + 1                       # + the unknown character
        total = self.unigram.sum()
        types = float((self.unigram > 0).sum())
        safe = np.where(oov, 0, ids)
        p = (np.maximum(self.unigram[safe] - DISCOUNT, 0) / total + DISCOUNT * types / total / V)
        p = np.where(oov, DISCOUNT * types / total / V, p)
        h = _hashes(np.where(oov, len(self.chars) + 7, ids), len(self.levels) + 1)
        for n, lv in enumerate(self.levels, start=2):     # n-gram order
            if len(text) < n:
                break
            gram, ctx = h[n - 1], h[n - 2][:-1]
            c_hw = lv.lookup(gram, lv.keys, lv.counts).astype(np.float64)
            c_h = lv.lookup(ctx, lv.ctx_keys, lv.ctx_totals).astype(np.float64)
            back = lv.lookup(ctx, lv.ctx_keys, lv.ctx_back).astype(np.float64)
            seen = c_h > 0
            den = np.where(seen, c_h, 1.0)
            q = np.where(seen, np.maximum(c_hw - DISCOUNT, 0) / den + back / den * p[n - 1:], p[n - 1:])
            p = np.concatenate([p[: n - 1], q])
        return np.log(np.maximum(p, 1e-12))

    def perplexity(self, text: str) -> float:
        lp = self.logprobs(text)
        return float(np.exp(-lp.mean())) if len(lp) else float("nan")

    # -- storage

    def save(self, path: Path) -> None:
        arrays = {"chars": np.array([self.chars]), "order": np.array([self.order]), "unigram": self.unigram}
        for i, lv in enumerate(self.levels):
            for name in ("keys", "counts", "ctx_keys", "ctx_totals", "ctx_back"):
                arrays[f"{i}_{name}"] = getattr(lv, name)
        tmp = Path(path).with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "CharNgram":
        z = np.load(path, allow_pickle=False)
        order = int(z["order"][0])
        levels = [_Level(*(z[f"{i}_{name}"] for name in ("keys", "counts", "ctx_keys", "ctx_totals", "ctx_back")))
                  for i in range(order - 1)]
        return cls(str(z["chars"][0]), order, levels, z["unigram"])
