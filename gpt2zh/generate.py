"""`gpt2zh generate`: long-form sampling far past the context window, with long-range
repetition detected and countered. The decoding primitives live in `decoding.py` and the
slot engine in `engine.py`; this module holds what the command adds around them."""
from __future__ import annotations

import json
from pathlib import Path

from .decoding import (GenerationError, SamplingConfig, StaticDecoder, TokenTable, apply_repetition_penalty,  # noqa: F401
                       filter_logits, load_token_table, resolve_model_dir, sample_token)
from .engine import Engine, LongFormGenerator, Request  # noqa: F401
from .repetition import RepetitionConfig  # noqa: F401


def read_prompt(path: str | Path) -> str:
    """A prompt file read as `prepare` reads text (UTF-8, GBK/GB18030, BOMs), naming the file
    in any error."""
    from .decode import CorpusError, read_text_file

    try:
        return read_text_file(path)
    except CorpusError as e:
        raise GenerationError(f"--prompt-file {e}") from None


def save_samples(samples: list[dict], out_dir: str | Path, prompt: str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in samples:
        p = out / f"sample_{s['sample']:03d}.txt"
        p.write_text(prompt + s["text"] + "\n", encoding="utf-8")
        (out / f"sample_{s['sample']:03d}.json").write_text(
            json.dumps({k: v for k, v in s.items() if k != "text"}, ensure_ascii=False, indent=1), encoding="utf-8")
        paths.append(p)
    return paths


def format_report(s: dict) -> str:
    r = s["report"]
    line = (f"[sample {s['sample']}] {s['status']}: {r['chars']} chars, 4-gram rep {r['rep_4gram']:.3f}, "
            f"8-gram rep {r['rep_8gram']:.3f}, distinct-2 {r['distinct_2']:.3f}, longest repeat "
            f"{r['longest_repeat']} chars; detector fired {r.get('detector_fired', 0)}x, rolled back "
            f"{r.get('rolled_back', 0)}x; {s['tokens_per_s']} tok/s, {s['refills']} re-prefills")
    return line + _band_line(s.get("measures") or {})


NAMES = {"collapse": "collapse", "fixation": "fixation", "rep4": "4-gram rep", "distinct2": "distinct-2",
         "guard": "reference ppl"}


def _band_line(measures: dict) -> str:
    """Windows outside the human band, per measure (what a reader would notice)."""
    parts = [f"{NAMES[k]} {w['out']}/{len(w['values'])}" for k, w in measures.get("windows", {}).items()
             if "out" in w]
    if parts:
        return "\n  windows outside the human band: " + ", ".join(parts)
    if measures.get("windows"):
        top = max(measures["windows"]["collapse"]["values"], default=0)
        return f"\n  (no human bands stored with this model) largest one-character share of a window {top:.0%}"
    return ""
