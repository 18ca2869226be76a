"""`gpt2zh eval`: perplexity of any text under any local GPT-2 model.

Token-weighted mean negative log-likelihood under no_grad. A text longer than the
model's context is scored with a sliding window: windows of n_ctx tokens starting
`stride` apart, each scoring only the tokens no earlier window scored, so every
token is scored exactly once with at least n_ctx - stride tokens of context
(GPT2-Chinese's users scored overlaps twice and ran out of memory with gradients on).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class EvalConfig:
    stride: int | None = None    # default n_ctx // 2
    batch_size: int = 8
    dtype: str = "auto"

    def __post_init__(self):
        if self.stride is not None and self.stride < 1:
            raise ValueError("stride must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


def sliding_windows(n: int, n_ctx: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first_target) per window: the window feeds tokens[begin:end] and scores
    targets first_target .. end-1 (each target index appears in exactly one window)."""
    stride = min(stride, n_ctx - 1)  # a window must give its first target some context
    out, prev_end, begin = [], 1, 0
    while prev_end < n:
        end = min(begin + n_ctx, n)
        if end > prev_end:
            out.append((begin, end, prev_end))
            prev_end = end
        begin += stride
    return out


@torch.no_grad()
def score_tokens(model, ids: np.ndarray, n_ctx: int, stride: int, batch_size: int,
                 char_len: np.ndarray, progress: bool = False, desc: str = "eval") -> dict:
    """Sum of NLL, tokens and characters over all targets (token 0 has no context and is not scored)."""
    from .progress import progress_bar

    device = next(model.parameters()).device
    windows = sliding_windows(len(ids), n_ctx, stride)
    nll = 0.0
    n_tok = n_chars = 0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    for i in progress_bar(range(0, len(windows), batch_size), desc=desc, unit="batch", disable=not progress,
                          leave=False):
        group = windows[i:i + batch_size]
        width = max(e - b for b, e, _ in group)
        x = torch.zeros((len(group), width), dtype=torch.long)
        y = torch.full((len(group), width), -1, dtype=torch.long)
        for r, (b, e, first) in enumerate(group):
            x[r, : e - b] = torch.from_numpy(ids[b:e].astype(np.int64))
            # the logit at position p predicts token b+p+1; score targets first..e-1
            tgt = torch.from_numpy(ids[first:e].astype(np.int64))
            y[r, first - b - 1: e - b - 1] = tgt
            n_chars += int(char_len[ids[first:e]].sum())
        x, y = x.to(device), y.to(device)
        with autocast:
            logits = model(input_ids=x).logits
        nll += F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1), ignore_index=-1,
                               reduction="sum").item()
        n_tok += int((y >= 0).sum())
    return {"nll": nll, "tokens": n_tok, "chars": n_chars}


def _summary(nll: float, tokens: int, chars: int) -> dict:
    loss = nll / max(tokens, 1)
    return {"tokens": tokens, "chars": chars, "loss": loss, "ppl": math.exp(min(loss, 50)),
            "ppl_char": math.exp(min(nll / max(chars, 1), 50))}


def evaluate_model(model_dir: str | Path, files: list[str] | None = None, data: str | None = None,
                   cfg: EvalConfig | None = None, device: str | None = None, progress: bool = False) -> dict:
    """Perplexity of text files (cleaned as in training) or of a shard set's validation split."""
    from .corpus import load_corpus
    from .decoding import load_token_table, resolve_model_dir
    from .model import load_model
    from .shards import load_tokens
    from .vocab import token_char_lengths

    cfg = cfg or EvalConfig()
    model_dir = resolve_model_dir(model_dir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_model(model_dir).to(dev).eval()
    n_ctx = model.config.n_positions
    stride = cfg.stride or max(1, n_ctx // 2)
    table = load_token_table(model_dir, model.config.vocab_size)
    char_len = token_char_lengths(table.tok, model.config.vocab_size)
    unk = table.tok.token_to_id("<unk>")
    if unk is None:
        unk = table.tok.token_to_id("[UNK]")

    streams: list[tuple[str, np.ndarray]] = []
    if data:
        streams.append((f"{data} (val)", load_tokens(data, "val")))
    skipped = []
    for report, docs in load_corpus(files or []):
        if report.skipped:
            skipped.append(f"{report.path}: {report.skipped}")
        for d in docs:
            ids = ([table.eos_id] if table.eos_id is not None else []) + table.encode(d.text)
            streams.append((d.source, np.array(ids, dtype=np.int64)))
    if not streams:
        why = f" ({'; '.join(skipped)})" if skipped else ""
        raise ValueError(f"nothing to evaluate{why}: give Chinese text files or --data with a validation split")
    results, total = [], {"nll": 0.0, "tokens": 0, "chars": 0}
    n_unk = n_all = 0
    for name, ids in streams:
        if len(ids) < 2:
            continue
        if ids.max() >= model.config.vocab_size:
            raise ValueError(f"{name}: token ids exceed the model's vocabulary: shards from another tokenizer?")
        s = score_tokens(model, ids, n_ctx, stride, cfg.batch_size, char_len, progress, Path(name).name[:30])
        for k in total:
            total[k] += s[k]
        u = int((ids == unk).sum()) if unk is not None else 0
        n_unk, n_all = n_unk + u, n_all + len(ids)
        results.append({"source": name, **_summary(s["nll"], s["tokens"], s["chars"]), "unknown_rate": u / len(ids)})
    return {"model": str(model_dir), "n_ctx": n_ctx, "stride": stride, "files": results,
            **_summary(total["nll"], total["tokens"], total["chars"]), "unknown_rate": n_unk / max(n_all, 1)}
