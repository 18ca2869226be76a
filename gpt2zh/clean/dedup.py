"""Near-duplicate documents, and documents stripped of their punctuation.

Two editions of one novel, or a copy with every comma removed, share almost all of
their hanzi 5-grams (punctuation and layout are left out of the shingles on purpose).
Each document gets a MinHash signature by one-permutation hashing (one 64-bit hash per
shingle, the minimum kept in each of 128 bins: the cost of one hash per shingle rather
than 128), candidate pairs come from locality-sensitive hashing over bands of the
signature, and a pair whose estimated Jaccard similarity passes the threshold is a
duplicate. Of each group the document with the most hanzi is kept; the others are
named in the report and dropped (unless --keep-duplicates).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import numpy as np

BINS, BAND = 128, 4             # 32 bands of 4 bins: pairs near 0.5 similarity and up meet in a band
SHINGLE = 5
THRESHOLD = 0.5                 # estimated Jaccard similarity of hanzi 5-grams that makes a duplicate
MIN_HANZI = 50                  # shorter documents are compared whole (exact duplicates only)
LOW_PUNCT = 0.35                # flagged below this fraction of the corpus's punctuation rate
MIN_PUNCT_CHARS = 200
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_EMPTY = np.iinfo(np.uint64).max
PUNCT = "，。、；：？！“”‘’《》（）…—「」『』,.;:?!\"'"


@dataclass
class Signature:
    name: str
    hanzi: int                  # characters that count (hanzi)
    exact: str                  # digest of the hanzi sequence
    minhash: np.ndarray | None  # (BINS,) uint64, _EMPTY where no shingle fell
    punct_rate: float           # punctuation marks per hanzi


_KINDS: list[np.ndarray] = []


def _kinds() -> np.ndarray:
    """Code point -> 1 hanzi, 2 punctuation, 0 anything else."""
    if not _KINDS:
        k = np.zeros(0x110000, dtype=np.uint8)
        for a, b in ((0x3400, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x10FFFF)):
            k[a:b + 1] = 1
        k[[ord(c) for c in PUNCT]] = 2
        _KINDS.append(k)
    return _KINDS[0]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every input bit reaches every output bit."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def signature(name: str, text: str) -> Signature:
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    kind = _kinds()[cps]
    h = cps[kind == 1].astype(np.uint64)
    punct = int(np.count_nonzero(kind == 2))
    if len(h) < MIN_HANZI:
        exact = hashlib.blake2b(h.tobytes(), digest_size=16).hexdigest()
        return Signature(name, len(h), exact, None, punct / max(1, len(h)))
    with np.errstate(over="ignore"):
        x = np.zeros(len(h) - SHINGLE + 1, dtype=np.uint64)
        for k in range(SHINGLE):  # a polynomial hash of each 5-gram, then mixed
            x = x * np.uint64(0x100000001B3) + h[k:len(h) - SHINGLE + 1 + k]
        x = _mix(x)
        # the same hanzi in the same order: the same shingle hashes, summed in order-aware ways
        weights = _mix(np.arange(1, len(x) + 1, dtype=np.uint64))
        exact = f"{len(h):x}-{int((x * weights).sum(dtype=np.uint64)):x}-{int(np.bitwise_xor.reduce(x)):x}"
    sig = np.full(BINS, _EMPTY, dtype=np.uint64)
    np.minimum.at(sig, (x % np.uint64(BINS)).astype(np.int64), x >> np.uint64(7))
    return Signature(name, len(h), exact, sig, punct / len(h))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """One-permutation-hashing estimate of the Jaccard similarity: agreeing bins over
    bins that either signature filled."""
    filled = (a != _EMPTY) | (b != _EMPTY)
    return float(((a == b) & filled).sum() / max(1, filled.sum()))


BANDS = BINS // BAND

# What deduplication reads of every document, one row each (361 bytes; the minhash itself,
# 1 kB, is read only for candidate pairs): `prepare` keeps these for a whole corpus.
FACTS = np.dtype([("hanzi", "i8"), ("punct_rate", "f8"), ("exact", "u8", 2), ("keys", "u8", BANDS),
                  ("full", "?", BANDS), ("has_minhash", "?")])


def band_keys(minhash: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a 64-bit key per band, whether the band is full: no empty bin) of one signature."""
    v = minhash.reshape(BANDS, BAND)
    with np.errstate(over="ignore"):
        k = _mix(v[:, 0])
        for c in range(1, BAND):
            k = _mix(k * np.uint64(0x100000001B3) + v[:, c])
    return k, (v != _EMPTY).all(axis=1)


def facts(sig: Signature) -> np.ndarray:
    """The FACTS row of one signature."""
    row = np.zeros((), dtype=FACTS)
    row["hanzi"], row["punct_rate"] = sig.hanzi, sig.punct_rate
    row["exact"] = np.frombuffer(hashlib.blake2b(sig.exact.encode(), digest_size=16).digest(), dtype=np.uint64)
    if sig.minhash is not None:
        row["keys"], row["full"] = band_keys(sig.minhash)
        row["has_minhash"] = True
    return row


class SignatureTable:
    """Every document's FACTS in one array, and a way to read a document's minhash (from
    memory, or from where `prepare` left it on disk) for the pairs worth comparing."""

    def __init__(self, rows: np.ndarray, minhash: Callable[[int], np.ndarray]):
        self.rows, self.minhash = rows, minhash

    @classmethod
    def of(cls, sigs: list[Signature]) -> "SignatureTable":
        rows = np.zeros(len(sigs), dtype=FACTS)
        for i, s in enumerate(sigs):
            rows[i] = facts(s)
        return cls(rows, lambda i: sigs[i].minhash)

    def __len__(self) -> int:
        return len(self.rows)


def _runs(values: np.ndarray):
    """Index lists (ascending, two or more) of equal rows of `values` (n,) or (n, k)."""
    if len(values) < 2:
        return
    cols = values.reshape(len(values), -1)
    order = np.lexsort(cols.T[::-1])   # stable: equal rows stay in index order
    ordered = cols[order]
    starts = np.flatnonzero(np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)])
    ends = np.r_[starts[1:], len(values)]
    for a, e in zip(starts, ends):
        if e - a > 1:
            yield order[a:e]


def candidates(table: SignatureTable):
    """Lists of document indices (ascending, two or more) whose minhash agrees on a whole band,
    band by band. Keys in one array, 288 bytes a document (a dict of band bytes to documents
    cost ~11 kB a document, the largest thing `prepare` held per document of a big corpus);
    two different bands hashed alike (one chance in 2**64) only add a pair that the similarity
    check then judges."""
    rows = table.rows
    for b in range(BANDS):
        docs = np.flatnonzero(rows["full"][:, b])
        for run in _runs(rows["keys"][docs, b]):
            yield docs[run].tolist()


def find_duplicates(sigs: list[Signature] | SignatureTable,
                    threshold: float = THRESHOLD) -> dict[int, tuple[int, float]]:
    """{index of a dropped document: (index of the one kept, similarity)}."""
    table = sigs if isinstance(sigs, SignatureTable) else SignatureTable.of(sigs)
    rows = table.rows
    parent = list(range(len(table)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sim_to: dict[tuple[int, int], float] = {}

    def union(i: int, j: int, sim: float) -> None:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
        sim_to[(i, j)] = sim_to[(j, i)] = sim

    # the same hanzi in the same order (a 128-bit digest of the exact digest): each copy joins the first
    some = np.flatnonzero(rows["hanzi"] > 0)
    for run in _runs(rows["exact"][some]):
        first, *rest = some[run].tolist()
        for i in rest:
            union(first, i, 1.0)
    checked = set()
    for members in candidates(table):
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                i, j = members[x], members[y]
                if (i, j) in checked:
                    continue
                checked.add((i, j))
                sim = similarity(table.minhash(i), table.minhash(j))
                if sim >= threshold:
                    union(i, j, sim)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in sorted({i for pair in sim_to for i in pair}):   # (only documents that met another)
        groups[root(i)].append(i)
    dropped = {}
    hanzi, has_minhash = rows["hanzi"], rows["has_minhash"]
    for members in groups.values():
        if len(members) < 2:
            continue
        keep = max(members, key=lambda i: (int(hanzi[i]), -i))   # the fullest edition, the first on a tie
        for i in members:
            if i != keep:
                sim = sim_to.get((i, keep))
                if sim is None and has_minhash[i] and has_minhash[keep]:
                    sim = similarity(table.minhash(i), table.minhash(keep))
                dropped[i] = (keep, round(sim if sim is not None else 1.0, 3))
    return dropped


def low_punctuation(sigs: list[Signature] | SignatureTable, skip: set[int]) -> dict[int, tuple[float, float]]:
    """{index: (its punctuation rate, the corpus's)} for documents punctuated far less than
    the rest (a copy with its punctuation stripped trains a model to write without it)."""
    rows = (sigs if isinstance(sigs, SignatureTable) else SignatureTable.of(sigs)).rows
    considered = rows["hanzi"] >= MIN_PUNCT_CHARS
    if skip:
        considered[np.fromiter(skip, dtype=np.int64)] = False
    if not considered.any():
        return {}
    # the corpus's rate: a hanzi-weighted median, so one odd document cannot move it
    rate, n = rows["punct_rate"][considered], rows["hanzi"][considered]
    order = np.lexsort((n, rate))            # by rate, then hanzi (as sorting the (rate, hanzi) pairs did)
    acc = np.cumsum(n[order])
    corpus = float(rate[order][np.searchsorted(acc, n.sum() / 2)])
    low = np.flatnonzero(considered & (rows["punct_rate"] < LOW_PUNCT * corpus))
    return {int(i): (round(float(rows["punct_rate"][i]), 4), round(corpus, 4)) for i in low}
