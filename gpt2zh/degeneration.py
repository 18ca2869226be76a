"""Degeneration a copy detector misses, measured per window and judged against human text.

A weak model past its context stops copying and starts *fixating*: no two sentences alike,
every sentence about the same word (the notes' 句句是"异火"); a weaker one collapses onto one
character (…民族族族族社族族…). 8-gram repetition and the longest repeat read perfect on both.
The measures here look at what a reader sees, window by window:

  collapse   the largest share of one hanzi among the hanzi of a ~200-character window (of
             any character among all, where the window is mostly punctuation)
  fixation   the share of a ~1,000-character window's sentences that hold its most frequent
             content character (function characters excluded by their corpus frequency)
  rep4       4-gram repetition (1 - unique/total) of the ~1,000-character window
  distinct2  distinct character bigrams / all bigrams of that window
  guard      per-character perplexity of a 500-character window under the reference model
             (`reference.CharNgram`), a judge the language model cannot game

Each measure gets its human distribution from the validation split (`Calibration`: the
percentiles, stored with the model as `calibration.json`), so `generate` and `serve` need no
corpus: a window is out of band when it leaves the human p1-p99 range (the guard: p5-p95).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .repetition import distinct_n, ngram_repetition

CALIBRATION_FILE = "calibration.json"
REFERENCE_FILE = "reference.npz"
SHORT, LONG, GUARD = 200, 1000, 500        # window sizes (characters)
SENTENCE_ENDS = set("。！？!?…\n；;")
MAX_SENTENCE = 80                        # a run-on "sentence" is cut here, so no window has only one
COLLAPSE_LIMIT = 0.20                    # no window of the human reference exceeds it (DESIGN.md)
MEASURES = {"collapse": SHORT, "fixation": LONG, "rep4": LONG, "distinct2": LONG, "guard": GUARD}
PERCENTILES = (1, 5, 50, 95, 99)


def collapse_alarm(p99: float) -> float:
    """The share at which a window counts as collapsing: halfway from the human p99 to the
    COLLAPSE_LIMIT no human window passes (what the detector fires on and the page marks)."""
    return (min(p99, COLLAPSE_LIMIT) + COLLAPSE_LIMIT) / 2


def is_hanzi(c: str) -> bool:
    return "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf"


def collapse(window: str) -> tuple[float, str]:
    """The largest share of one hanzi among the window's hanzi, and that character. A window
    that is mostly not hanzi (…，，，，。，，) is measured by its most frequent character of any kind."""
    counts = Counter(c for c in window if not c.isspace())
    total = sum(counts.values())
    hanzi = Counter({c: v for c, v in counts.items() if is_hanzi(c)})
    n = sum(hanzi.values())
    if n >= 0.3 * total and n:
        c, v = hanzi.most_common(1)[0]
        return v / n, c
    if not total:
        return 0.0, ""
    c, v = counts.most_common(1)[0]
    return v / total, c


def sentences(window: str) -> list[str]:
    out, cur = [], []
    for c in window:
        cur.append(c)
        if c in SENTENCE_ENDS or len(cur) >= MAX_SENTENCE:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return [s for s in out if sum(map(is_hanzi, s)) >= 2]


def fixation(window: str, stop: frozenset) -> tuple[float, str, str]:
    """The share of sentences holding the window's most frequent content character, that
    character, and the word it stands in (the character with its most frequent neighbour:
    异火 rather than 火)."""
    sents = sentences(window)
    if len(sents) < 3:
        return 0.0, "", ""
    held = Counter()
    for s in sents:
        # once per sentence, in the order written: a set's order follows PYTHONHASHSEED, and 异 and
        # 火 tie in every sentence, so the run would name a different character from one start to the next
        held.update(dict.fromkeys(c for c in s if is_hanzi(c) and c not in stop).keys())
    if not held:
        return 0.0, "", ""
    c, n = held.most_common(1)[0]
    pairs = Counter(window[i:i + 2] for i in range(len(window) - 1)
                    if c in window[i:i + 2] and all(map(is_hanzi, window[i:i + 2])))
    word = pairs.most_common(1)[0][0] if pairs and pairs.most_common(1)[0][1] >= n / 2 else c
    return n / len(sents), c, word


def window_starts(n: int, size: int) -> range:
    return range(0, n - size + 1, size // 2) if n >= size else range(0)


@dataclass
class Series:
    """One measure over a text's windows."""
    size: int
    starts: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    units: list[str] = field(default_factory=list)    # what a window collapsed or fixated on


def measure(text: str, stop: frozenset, reference=None) -> dict[str, Series]:
    """Every measure over every window of `text` (half-overlapping windows)."""
    out = {name: Series(size) for name, size in MEASURES.items()}
    for i in window_starts(len(text), SHORT):
        v, u = collapse(text[i:i + SHORT])
        out["collapse"].starts.append(i), out["collapse"].values.append(round(v, 4)), out["collapse"].units.append(u)
    for i in window_starts(len(text), LONG):
        w = text[i:i + LONG]
        v, _, u = fixation(w, stop)
        for name, value, unit in (("fixation", v, u), ("rep4", ngram_repetition(w, 4), ""),
                                  ("distinct2", distinct_n(w, 2), "")):
            out[name].starts.append(i), out[name].values.append(round(value, 4)), out[name].units.append(unit)
    if reference is not None and len(text) >= GUARD:
        nll = -reference.logprobs(text)
        cum = np.concatenate([[0.0], np.cumsum(nll)])
        for i in window_starts(len(text), GUARD):
            out["guard"].starts.append(i)
            out["guard"].values.append(round(float(np.exp((cum[i + GUARD] - cum[i]) / GUARD)), 2))
            out["guard"].units.append("")
    return out


# ----------------------------------------------------------------------------
# Human bands


def function_chars(text: str, mass: float = 0.25, most: int = 100) -> str:
    """The most frequent hanzi, together `mass` of all hanzi (at most `most`): the function
    characters (的 了 是 不 道 …) that every sentence holds and no reader calls a fixation."""
    counts = Counter(c for c in text if is_hanzi(c))
    total, acc, out = sum(counts.values()), 0, []
    for c, v in counts.most_common(most):
        if acc >= mass * total:
            break
        out.append(c)
        acc += v
    return "".join(out)


@dataclass
class Calibration:
    """Human percentiles of every measure (from the validation split), the function
    characters, and where they came from."""
    percentiles: dict[str, dict[str, float]]
    stop: str
    source: dict

    @property
    def stop_set(self) -> frozenset:
        return frozenset(self.stop)

    def band(self, name: str) -> tuple[float, float] | None:
        p = self.percentiles.get(name)
        if not p:
            return None
        return (p["p5"], p["p95"]) if name == "guard" else (p["p1"], p["p99"])

    @classmethod
    def from_text(cls, text: str, reference=None, source: dict | None = None) -> "Calibration":
        stop = function_chars(text)
        series = measure(text, frozenset(stop), reference)
        pct = {}
        for name, s in series.items():
            if s.values:
                q = np.percentile(np.array(s.values), PERCENTILES)
                pct[name] = {f"p{p}": round(float(v), 4) for p, v in zip(PERCENTILES, q)}
                pct[name]["windows"] = len(s.values)
        return cls(pct, stop, {"chars": len(text), **(source or {})})

    def save(self, path: Path) -> None:
        # a new file, renamed into place: checkpoints hold hard links to the old one
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_text(json.dumps({"percentiles": self.percentiles, "stop": self.stop, "source": self.source},
                                  ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(d["percentiles"], d["stop"], d.get("source", {}))


def report(text: str, calibration: Calibration | None, reference=None) -> dict:
    """The per-window measures of a written text with their human bands, how many windows
    left the band, and the failure a reader would name (collapse, fixation) with where it began."""
    stop = calibration.stop_set if calibration else frozenset()
    series = measure(text, stop, reference)
    out: dict = {"windows": {}}
    for name, s in series.items():
        if not s.values or (name == "fixation" and calibration is None):
            continue
        band = calibration.band(name) if calibration else None
        entry = {"size": s.size, "starts": s.starts, "values": s.values}
        if band is not None:
            lo, hi = band
            low, high = sum(v < lo for v in s.values), sum(v > hi for v in s.values)
            entry.update(band=[lo, hi], out=low + high, below=low, above=high,
                         share_out=round((low + high) / len(s.values), 4))
        if name in ("collapse", "fixation"):
            entry["units"] = s.units
        out["windows"][name] = entry
    out["failure"] = failure(series, calibration)
    return out


def failure(series: dict[str, Series], calibration: Calibration | None) -> dict | None:
    """What a reader would call the text's failure, if any: a window where one character holds
    more than COLLAPSE_LIMIT (no human window does), or two overlapping windows in a row whose
    sentences hold one content character more often than human text ever does (p99)."""
    c = series["collapse"]
    for i, v in enumerate(c.values):
        if v > COLLAPSE_LIMIT:
            return {"kind": "collapsed", "at": c.starts[i], "unit": c.units[i]}
    band = calibration.band("fixation") if calibration else None
    f = series["fixation"]
    if band is not None:
        for i in range(1, len(f.values)):
            if f.values[i - 1] > band[1] and f.values[i] > band[1]:
                return {"kind": "fixated", "at": f.starts[i - 1], "unit": f.units[i - 1]}
    return None


def flagged_spans(measures: dict) -> list[list]:
    """[start, end, kind] character spans a reader should see marked: windows that collapsed
    (above COLLAPSE_LIMIT, or above the human band) or fixated (above the human band), merged
    where they overlap."""
    spans = []
    for kind in ("collapse", "fixation"):
        w = measures.get("windows", {}).get(kind)
        if not w:
            continue
        hi = w["band"][1] if "band" in w else COLLAPSE_LIMIT
        if kind == "collapse":
            hi = collapse_alarm(hi)   # what the detector calls collapse
        for start, v in zip(w["starts"], w["values"]):
            if v > hi:
                end = start + w["size"]
                if spans and spans[-1][2] == kind and start <= spans[-1][1]:
                    spans[-1][1] = max(spans[-1][1], end)
                else:
                    spans.append([start, end, kind])
    return spans


def status_of(fail: dict | None, status: str) -> str:
    """A sample's status, with the failure named ('collapsed on 族 from character 812')."""
    if fail is None:
        return status
    what = f"{fail['kind']} on {fail['unit']} from character {fail['at']:,}"
    return what if status == "ok" else f"{status}; {what}"


# ----------------------------------------------------------------------------
# Building and finding a model's calibration


def calibrate(train_text: str, val_text: str, out_dir: Path, source: dict | None = None) -> Calibration:
    """The reference model from the training text and the human bands from the validation
    text, written to `out_dir` (calibration.json, reference.npz)."""
    from .reference import CharNgram

    ref = CharNgram.train([train_text], order=5)
    cal = Calibration.from_text(val_text, ref, {"reference": "character 5-gram, interpolated Kneser-Ney",
                                                "reference_chars": len(train_text), **(source or {})})
    out_dir.mkdir(parents=True, exist_ok=True)
    ref.save(out_dir / REFERENCE_FILE)
    cal.save(out_dir / CALIBRATION_FILE)
    return cal


def shard_texts(data_dir: Path, train=None, val=None, max_train_tokens: int = 10_000_000) -> tuple[str, str]:
    """The training and validation text of a shard set (from its tokens, when already in
    memory: `train`, `val`). At most `max_train_tokens` of the training tokens, in 64 pieces
    spread over the whole set (a huge corpus is sampled, not its first files read); documents
    are separated by a line break."""
    from .decoding import load_token_table
    from .shards import load_tokens, read_manifest

    manifest = read_manifest(data_dir)
    table = load_token_table(Path(data_dir), manifest["vocab_size"])
    pieces = list(table.pieces)
    if table.eos_id is not None:
        pieces[table.eos_id] = "\n"
    train = load_tokens(data_dir, "train", verify=False) if train is None else train
    if len(train) > max_train_tokens:
        step, piece = len(train) // 64, max_train_tokens // 64
        train = np.concatenate([train[i * step: i * step + piece] for i in range(64)])
    val = load_tokens(data_dir, "val", verify=False) if val is None else val
    return "".join(pieces[i] for i in train.tolist()), "".join(pieces[i] for i in val.tolist())


def calibrate_shards(data_dir: Path, out_dir: Path, train=None, val=None) -> Calibration:
    """`calibrate` from a shard set; nothing to do when `out_dir` already holds the calibration
    of these shards."""
    from .shards import read_manifest

    manifest = read_manifest(data_dir)
    source = {"tokenizer_sha256": manifest["tokenizer_sha256"], "train_tokens": manifest["train_tokens"],
              "val_tokens": manifest["val"]["tokens"] if manifest.get("val") else 0}
    if (out_dir / CALIBRATION_FILE).exists() and (out_dir / REFERENCE_FILE).exists():
        old = Calibration.load(out_dir / CALIBRATION_FILE)
        if all(old.source.get(k) == v for k, v in source.items()):
            return old
    if not source["val_tokens"]:
        raise ValueError(f"{data_dir} has no validation split to calibrate on")
    train_text, val_text = shard_texts(data_dir, train, val)
    return calibrate(train_text, val_text, out_dir, source)


def copy_to(src_dir: Path, model_dir: Path) -> None:
    """The calibration files of `src_dir` (a run directory) into a model directory, as hard
    links where the filesystem allows (the same bytes in every checkpoint, stored once)."""
    import os
    import shutil

    for name in (CALIBRATION_FILE, REFERENCE_FILE):
        src, dst = Path(src_dir) / name, Path(model_dir) / name
        if not src.exists():
            continue
        if dst.exists():
            if dst.samefile(src):
                continue
            dst.unlink()
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def find(model_dir: Path):
    """(Calibration, reference) stored with a model (its own folder or its run directory), or
    (None, None) when there are none."""
    from .reference import CharNgram

    for d in (model_dir, model_dir.parent, model_dir.parent.parent):
        if (d / CALIBRATION_FILE).exists():
            ref = CharNgram.load(d / REFERENCE_FILE) if (d / REFERENCE_FILE).exists() else None
            return Calibration.load(d / CALIBRATION_FILE), ref
    return None, None
