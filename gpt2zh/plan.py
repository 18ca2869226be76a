"""`gpt2zh plan` and `gpt2zh train --auto`: a model shape and a recipe from the corpus and the
time budget, instead of the notes' 300 runs by hand.

It reads the corpus size from the shards' manifest, measures this machine's training speed
for a few candidate shapes (a few optimizer steps each, on the real shards), and picks the
shape whose measured speed buys the lowest loss in the budget by Chinchilla's fitted law
(a larger model only while the budget still feeds it; repeats of a small corpus counted at
their worth), among shapes that keep the notes' hardware-independent rules (fewer heads than layers, even numbers; widths of 512-1,024 on a
GPU, small shapes on a CPU). The recipe is Muon with a cool-down over the last 25%
(bench/RESULTS.md, "Training recipes"), dropout from the epochs the budget makes over the data.
It prints why: parameters, tokens per parameter, epochs, expected tokens/s and finishing time.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

MEASURE_STEPS = 4           # timed steps per candidate (after 2 untimed ones) ...
MEASURE_S = 4.0             # ... or fewer, once this many seconds are spent
# Chinchilla's fitted loss, L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, approach 3):
# only its ranking of shapes is used, not its values (those are for English BPE tokens)
CHINCHILLA = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
FRESH_EPOCHS = 4            # repeated data counts as new for ~4 epochs (Muennighoff et al. 2023) ...
REPEAT_WORTH = 0.2          # ... and at a fifth of that beyond


class PlanError(ValueError):
    pass


def parse_budget(text: str) -> float:
    """Seconds from '15m', '2h', '90s', '1h30m' or a bare number of minutes."""
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        seconds = float(t) * 60
    else:
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?(?:(\d+(?:\.\d+)?)s)?", t)
        if not parts or not any(parts.groups()):
            raise PlanError(f"budget {text!r}: expected e.g. 15m, 2h, 1h30m, 90s or a number of minutes")
        h, m, s = (float(x) if x else 0.0 for x in parts.groups())
        seconds = h * 3600 + m * 60 + s
    if seconds < 60:
        raise PlanError(f"budget {text!r}: at least a minute (the measurement alone takes seconds)")
    return seconds


@dataclass(frozen=True)
class Shape:
    n_layer: int
    n_head: int
    n_embd: int
    n_ctx: int
    batch_size: int

    def __post_init__(self):
        if self.n_head > self.n_layer or self.n_embd % self.n_head or self.n_embd % 2:
            raise ValueError(f"not a shape by the notes' rules: {self}")

    def params(self) -> int:
        """Parameters of the blocks (Kaplan's non-embedding count): what the tokens per parameter
        are counted against, since at these widths the embedding table of a 5,000-character
        vocabulary would outweigh the blocks and say little about capacity."""
        d = self.n_embd
        return self.n_layer * (12 * d * d + 13 * d) + 2 * d

    def label(self) -> str:
        return f"{self.n_layer}x{self.n_embd} ({self.n_head} heads), n_ctx {self.n_ctx}, batch {self.batch_size}"


# small shapes on a CPU; the notes' widths (512-1,024) on a GPU; layers >= heads, even numbers
CPU_SHAPES = [Shape(2, 2, 128, 128, 16), Shape(4, 4, 256, 128, 16), Shape(4, 4, 256, 256, 16),
              Shape(6, 6, 384, 256, 16)]
GPU_SHAPES = [Shape(6, 4, 512, 512, 32), Shape(8, 8, 512, 512, 32), Shape(10, 10, 640, 512, 32),
              Shape(12, 12, 768, 512, 32), Shape(12, 8, 1024, 512, 32)]


@dataclass
class Candidate:
    shape: Shape
    params: int
    tokens_per_s: float          # measured, for all processes together
    tokens: float = 0.0          # what the budget trains on
    predicted: float = 0.0       # Chinchilla's loss for it (lower is better; for ranking only)
    why: str = ""

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params


@dataclass
class Plan:
    chosen: Candidate
    candidates: list[Candidate]
    data_tokens: int
    budget_s: float
    processes: int
    device: str
    lr: float
    dropout: float
    steps: int
    overrides: list[str] = field(default_factory=list)

    @property
    def epochs(self) -> float:
        return self.chosen.tokens / max(1, self.data_tokens)

    def report(self) -> str:
        c = self.chosen
        lines = [f"gpt2zh plan: {self.data_tokens:,} training tokens, a {self.budget_s / 60:g}-minute budget, "
                 f"{self.processes} process(es) on {self.device}", "measured (tokens/s for the whole job):"]
        for x in self.candidates:
            mark = "->" if x is c else "  "
            lines.append(f" {mark} {x.shape.label():48s} {x.params / 1e6:6.2f} M block params  "
                         f"{x.tokens_per_s:9,.0f} tok/s  {x.tokens_per_param:6.1f} tokens/param  "
                         f"predicted {x.predicted:.3f}  {x.why}")
        finish = time.strftime("%H:%M", time.localtime(time.time() + self.budget_s))
        lines += [f"chosen: {c.shape.label()}: {c.params / 1e6:.2f} M block parameters, {c.tokens / 1e6:.1f} M tokens in "
                  f"the budget ({c.tokens_per_param:.1f} per parameter), {self.epochs:.2f} epochs over the data; "
                  "the lowest loss Chinchilla's fit predicts for what each shape can train on in the budget",
                  f"recipe: Muon + AdamW, lr {self.lr:g}, cool-down over the last 25%, dropout {self.dropout:g} "
                  f"({'several passes over the data' if self.epochs > 1 else 'under one pass'}), about "
                  f"{self.steps:,} steps at {c.tokens_per_s:,.0f} tokens/s: finished around {finish}",
                  "as settings: " + " ".join(f"--set {o}" for o in self.overrides)]
        return "\n".join(lines)


def effective_tokens(tokens: float, data_tokens: int) -> float:
    """What `tokens` of training on `data_tokens` of text are worth as fresh data."""
    fresh = FRESH_EPOCHS * data_tokens
    return tokens if tokens <= fresh else fresh + REPEAT_WORTH * (tokens - fresh)


def predicted_loss(params: float, tokens: float) -> float:
    c = CHINCHILLA
    return c["E"] + c["A"] / params ** c["alpha"] + c["B"] / max(tokens, 1.0) ** c["beta"]


def choose(candidates: list[Candidate], budget_s: float, data_tokens: int) -> Candidate:
    """The shape whose measured speed buys the lowest Chinchilla loss in the budget: a bigger
    model is chosen only while the budget still feeds it enough tokens (repeats of a small
    corpus counted at their worth)."""
    for x in candidates:
        x.tokens = x.tokens_per_s * budget_s * 0.9    # (evaluations and checkpoints take the rest)
        x.predicted = predicted_loss(x.params, effective_tokens(x.tokens, data_tokens))
    pick = min(candidates, key=lambda x: x.predicted)
    for x in candidates:
        x.why = ("chosen" if x is pick else "starved: too few tokens for its size" if x.params > pick.params
                 else "too small for what the budget can feed" if x.params < pick.params
                 else "the same size, fewer tokens in the budget")
    return pick


def recipe_for(c: Candidate, data_tokens: int) -> tuple[float, float]:
    """(learning rate, dropout): the rate falls with width as the notes' presets do (3e-4 at
    768); up to 384 wide, 3e-3 (with Muon and the cool-down it beat 1e-3 at 128, 256 and 384 in
    the 15-minute grid, bench/RESULTS.md); dropout rises with the passes over the data."""
    lr = 3e-3 if c.shape.n_embd <= 384 else 6e-4 if c.shape.n_embd <= 512 else 3e-4
    epochs = c.tokens / max(1, data_tokens)
    dropout = 0.0 if epochs <= 1 else 0.1 if epochs <= 4 else 0.2
    return lr, dropout


def measure(shape: Shape, tokens, vocab: int, device, processes: int) -> float:
    """Tokens/s of a few real training steps at `shape` on windows of the shards (times the
    processes: data parallelism scales the throughput, not the step)."""
    import numpy as np
    import torch

    from .config import ModelConfig, TrainConfig
    from .model import build_model, lm_loss
    from .optim import make_optimizers

    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=shape.n_layer, n_head=shape.n_head, n_embd=shape.n_embd,
                                    n_ctx=shape.n_ctx), vocab, 0, 0).to(device).train()
    opts = make_optimizers(model, TrainConfig(optimizer="muon", lr=1e-4), fused=device.type == "cuda")
    rng = np.random.default_rng(0)
    span = shape.n_ctx + 1
    starts = rng.integers(0, len(tokens) - span, size=(MEASURE_STEPS + 2, shape.batch_size))
    t0, timed = 0.0, 0
    for i, row in enumerate(starts):
        if i == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        elif i > 2 and time.perf_counter() - t0 > MEASURE_S:
            break
        batch = torch.from_numpy(np.stack([tokens[s:s + span] for s in row]).astype(np.int64)).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = lm_loss(model, batch[:, :-1], batch[:, 1:])
        loss.backward()
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)
        timed += i >= 2
    if device.type == "cuda":
        torch.cuda.synchronize()
    return timed * shape.batch_size * shape.n_ctx / (time.perf_counter() - t0) * processes


def make_plan(data_dir: str, budget_s: float, processes: int = 1, device: str | None = None,
              shapes: list[Shape] | None = None, progress: bool = True) -> Plan:
    import sys

    import torch

    from .shards import load_tokens, read_manifest
    from pathlib import Path

    manifest = read_manifest(Path(data_dir))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shapes = shapes or (GPU_SHAPES if dev.type == "cuda" else CPU_SHAPES)
    tokens = load_tokens(Path(data_dir), "train", manifest=manifest)
    usable = [s for s in shapes if len(tokens) >= 4 * s.batch_size * (s.n_ctx + 1)]
    if not usable:
        smallest = min(shapes, key=lambda s: s.batch_size * s.n_ctx)
        raise PlanError(f"{data_dir}: {len(tokens):,} training tokens are too few for any shape; the smallest "
                        f"({smallest.label()}) needs at least {4 * smallest.batch_size * (smallest.n_ctx + 1):,} "
                        "(about as many characters): add text, or train it by hand with --config tiny and "
                        "--set n_ctx=64 batch_size=4")
    vocab = manifest["vocab_size"]
    candidates = []
    for s in usable:
        if progress:
            print(f"measuring {s.label()} ...", file=sys.stderr, flush=True)
        candidates.append(Candidate(s, s.params(), measure(s, tokens, vocab, dev, processes)))
    chosen = choose(candidates, budget_s, len(tokens))
    lr, dropout = recipe_for(chosen, len(tokens))
    steps = max(1, int(chosen.tokens / (chosen.shape.batch_size * chosen.shape.n_ctx)))
    sh = chosen.shape
    overrides = [f"n_layer={sh.n_layer}", f"n_head={sh.n_head}", f"n_embd={sh.n_embd}", f"n_ctx={sh.n_ctx}",
                 f"batch_size={sh.batch_size}", f"lr={lr:g}", f"dropout={dropout:g}", "optimizer=muon",
                 "cooldown=0.25", f"max_steps={steps}", "warmup_steps=50",
                 f"eval_interval={max(50, steps // 10)}", f"save_steps={max(100, steps // 5)}"]
    return Plan(chosen, candidates, len(tokens), budget_s, processes, dev.type, lr, dropout, steps, overrides)

