"""Optimizers and the learning-rate schedule.

`adamw`: the notes' recipe, AdamW at a fixed rate (weight decay on matrices only, nanoGPT's way).
`muon`: Muon (Keller Jordan's, as in modded-nanogpt and nanochat) on the transformer blocks'
2-D weight matrices, AdamW on the rest (embeddings, layer norms, biases). Muon orthogonalizes
each update by a Newton-Schulz iteration; two things differ from torch.optim.Muon here:
- Hugging Face's GPT-2 keeps Q, K and V in one `Conv1D` matrix (`c_attn`, n_embd x 3 n_embd):
  each of the three is orthogonalized on its own, as if they were separate matrices;
- the update's scale is 0.2 * sqrt(max(rows, cols)) (torch's "match_rms_adamw"), which reads
  the same for `Conv1D`'s (in, out) layout as for nn.Linear's (out, in), so the AdamW learning
  rate carries over to Muon unchanged.

The schedule: a linear warm-up, the fixed rate, and an optional linear cool-down to 0 over the
last `cooldown` fraction of the steps or of the time budget, whichever ends the run first.
"""
from __future__ import annotations

import functools
import math

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)   # the quintic of modded-nanogpt: fast, not exact


@functools.lru_cache(maxsize=None)
def fast_dtype(device: torch.device) -> torch.dtype:
    """bf16 where matrices multiply natively in it (CUDA; a CPU with AVX-512 BF16 or AMX), as
    modded-nanogpt runs Newton-Schulz: the iteration only needs singular values near 1, and
    bf16 made it 3.5x faster on a 2-core EPYC (RESULTS.md). fp32 elsewhere: emulated bf16 is
    slower than fp32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        try:
            return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
        except (AttributeError, RuntimeError):   # a build without oneDNN
            return torch.float32
    return torch.float32


def orthogonalize(g: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The nearest semi-orthogonal matrix to each matrix of `g` (..., rows, cols), roughly
    (singular values pushed into ~[0.7, 1.2]), by a quintic Newton-Schulz iteration in `dtype`."""
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype)
    x = x.reshape(-1, *x.shape[-2:])   # one batch dimension, for bmm
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = (x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)).contiguous()
    for _ in range(steps):
        # a x + (b s + c s s) x with the scalings and sums folded into the products (baddbmm):
        # on a 2-core EPYC the separate elementwise passes were ~28% of the bf16 time (RESULTS.md)
        s = torch.bmm(x, x.mT)
        x = torch.baddbmm(x, torch.baddbmm(s, s, s, beta=b, alpha=c), x, beta=a)
    return (x.mT if tall else x).reshape(g.shape).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for 2-D matrices. A parameter group's `blocks` (default 1) cuts each matrix along
    its last dimension into that many equal matrices, orthogonalized separately (c_attn: 3)."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.95, weight_decay: float = 0.0,
                 nesterov: bool = True, ns_steps: int = 5, ns_dtype: torch.dtype | None = None):
        """ns_dtype: what Newton-Schulz runs in (None: `fast_dtype` of each parameter's device)."""
        if lr <= 0 or not 0 <= momentum < 1:
            raise ValueError("Muon needs lr > 0 and 0 <= momentum < 1")
        self.ns_dtype = ns_dtype
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                                      ns_steps=ns_steps, blocks=1))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2 or p.size(-1) % group["blocks"]:
                    raise ValueError(f"Muon takes 2-D matrices whose columns divide into {group['blocks']} "
                                     f"blocks; got shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, mom, k = group["lr"], group["momentum"], group["blocks"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mom)
                g = p.grad.lerp(buf, mom) if group["nesterov"] else buf
                rows, cols = p.shape
                blocks = g.reshape(rows, k, cols // k).permute(1, 0, 2)        # (k, rows, cols/k)
                dtype = self.ns_dtype or fast_dtype(p.device)
                update = orthogonalize(blocks, group["ns_steps"], dtype).permute(1, 0, 2).reshape(rows, cols)
                scale = 0.2 * math.sqrt(max(rows, cols // k))
                if group["weight_decay"]:
                    p.mul_(1 - lr * group["weight_decay"])
                p.add_(update, alpha=-lr * scale)
        return loss


def hidden_matrices(model) -> dict[str, torch.nn.Parameter]:
    """The transformer blocks' 2-D weights (attention and MLP), by name: what Muon trains."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad and p.dim() == 2 and ".h." in f".{n}"}


def make_optimizers(model, tc, fused: bool) -> list[torch.optim.Optimizer]:
    """The optimizers of `tc.optimizer`: [AdamW] or [Muon, AdamW]. Every group starts at tc.lr
    (the schedule scales them all alike)."""
    muon = hidden_matrices(model) if tc.optimizer == "muon" else {}
    rest = [(n, p) for n, p in model.named_parameters() if p.requires_grad and n not in muon]
    # weight decay on matrices only (nanoGPT): biases and LayerNorm gains stay free
    groups = [{"params": [p for _, p in rest if p.dim() >= 2], "weight_decay": tc.weight_decay},
              {"params": [p for _, p in rest if p.dim() < 2], "weight_decay": 0.0}]
    kwargs = {"fused": True} if fused else {}
    adamw = torch.optim.AdamW([g for g in groups if g["params"]], lr=tc.lr, betas=(tc.beta1, tc.beta2), **kwargs)
    if not muon:
        return [adamw]
    qkv = [p for n, p in muon.items() if n.endswith("attn.c_attn.weight")]
    other = [p for n, p in muon.items() if not n.endswith("attn.c_attn.weight")]
    ns_dtype = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16}[tc.muon_precision]
    m = Muon([g for g in ({"params": qkv, "blocks": 3}, {"params": other}) if g["params"]], lr=tc.lr,
             momentum=tc.muon_momentum, weight_decay=tc.weight_decay, ns_dtype=ns_dtype)
    return [m, adamw]


class Schedule:
    """The learning rate's factor at a step: warm-up, the fixed rate, then the cool-down over the
    last `cooldown` of the steps (`total`) or of the time budget, whichever ends the run first."""

    def __init__(self, warmup: int, cooldown: float, total: int, budget_s: float | None = None):
        self.warmup, self.cooldown, self.total, self.budget_s = warmup, cooldown, total, budget_s

    @property
    def cooldown_start(self) -> int | None:
        """The step the cool-down by steps begins at (None: no cool-down)."""
        return None if not self.cooldown else self.total - max(1, round(self.cooldown * self.total))

    def factor(self, step: int, elapsed_s: float | None = None) -> float:
        f = min(1.0, (step + 1) / self.warmup) if self.warmup and step < self.warmup else 1.0
        if not self.cooldown:
            return f
        left = (self.total - step) / max(1, self.total - self.cooldown_start)
        if self.budget_s and elapsed_s is not None:
            left = min(left, (self.budget_s - elapsed_s) / (self.cooldown * self.budget_s))
        return f * max(0.0, min(1.0, left))

    def cooling(self, step: int, elapsed_s: float | None = None) -> bool:
        if not self.cooldown:
            return False
        by_time = bool(self.budget_s) and elapsed_s is not None and \
            elapsed_s >= (1 - self.cooldown) * self.budget_s
        return step >= self.cooldown_start or by_time
