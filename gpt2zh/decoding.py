"""Decoding primitives: any local GPT2LMHeadModel directory with its tokenizer, a GPT-2
forward over a preallocated (static) KV cache, and the sampling controls.

Decoding runs on a static KV cache written in place (our own forward over the
GPT2LMHeadModel's weights: no per-token cache objects, masks or generate()
machinery). Each row of the cache has its own position, so rows start, re-anchor and
roll back independently: the rows are the slots of `engine.Engine`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .repetition import RepetitionConfig  # noqa: F401  (re-exported)
from .sampling import GenerationError, SamplingConfig  # noqa: F401  (re-exported)


# ----------------------------------------------------------------------------
# Loading any local GPT2LMHeadModel directory with a tokenizer


def resolve_model_dir(path: str | Path) -> Path:
    """A model directory, a run directory (its best checkpoint, else the newest), or a Hugging
    Face Hub ID (its cached snapshot, fetched if need be)."""
    from .hub import fetch, is_hub_id
    from .rundir import checkpoints

    p = fetch(str(path)) if is_hub_id(str(path)) else Path(path)
    if (p / "config.json").exists():
        return p
    if (p / "best" / "config.json").exists():
        return p / "best"
    ckpts = checkpoints(p)
    if ckpts:
        return ckpts[-1]
    raise GenerationError(f"{path}: no model here (expected config.json, best/ or checkpoints/)")


@dataclass
class TokenTable:
    """How each id reads as text: special tokens vanish, [SEP] is a line break (GPT2-Chinese's
    convention), WordPiece's '##' goes, so no spaces appear between Chinese characters."""

    tok: object
    pieces: list[str]
    banned: list[int]          # never sampled: padding, unknown, special tokens, padded vocab rows
    eos_id: int | None

    def encode(self, text: str) -> list[int]:
        """Ids of `text`; GenerationError (never the tokenizer's TypeError) for what is not text."""
        if not isinstance(text, str):
            raise GenerationError(f"expected text, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate: the tokenizer would raise a TypeError
            raise GenerationError(f"the text is not valid: a lone surrogate (U+{ord(text[e.start]):04X}) at "
                                  f"character {e.start}") from None
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        return self.tok.encode(text, add_special_tokens=False).ids

    def text(self, ids) -> str:
        return "".join(self.pieces[i] for i in ids)


def load_token_table(model_dir: Path, model_vocab: int) -> TokenTable:
    from tokenizers import Tokenizer

    if (model_dir / "tokenizer.json").exists():
        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    elif (model_dir / "vocab.txt").exists():
        from .vocab import load_vocab_txt

        tok = load_vocab_txt(model_dir / "vocab.txt")
    else:
        raise GenerationError(f"{model_dir}: no tokenizer.json or vocab.txt beside the model")
    specials = {t.content for t in tok.get_added_tokens_decoder().values()}
    vocab = tok.get_vocab()
    byte_level = "Ġ" in vocab or "ĠĠ" in vocab
    pieces = [""] * model_vocab
    banned = set(range(tok.get_vocab_size(), model_vocab))
    for piece, i in vocab.items():
        if i >= model_vocab:
            continue
        if piece in ("[SEP]", "\n"):
            pieces[i] = "\n"
        elif piece in specials or (piece.startswith("[") and piece.endswith("]") and len(piece) > 2):
            banned.add(i)
        elif byte_level:
            pieces[i] = tok.decode([i])
        else:
            pieces[i] = piece[2:] if piece.startswith("##") else piece
    eos = None
    for name in ("<|endoftext|>", "[CLS]", "</s>"):
        if name in vocab:
            eos = vocab[name]
            break
    return TokenTable(tok, pieces, sorted(banned), eos)


# ----------------------------------------------------------------------------
# Static-cache decoder over GPT-2 weights


class _BlockWeights:
    def __init__(self, blk):
        self.ln_1 = (blk.ln_1.weight, blk.ln_1.bias)
        self.ln_2 = (blk.ln_2.weight, blk.ln_2.bias)
        self.qkv_w, self.qkv_b = blk.attn.c_attn.weight, blk.attn.c_attn.bias
        self.proj_w, self.proj_b = blk.attn.c_proj.weight, blk.attn.c_proj.bias
        self.fc_w, self.fc_b = blk.mlp.c_fc.weight, blk.mlp.c_fc.bias
        self.out_w, self.out_b = blk.mlp.c_proj.weight, blk.mlp.c_proj.bias


class StaticDecoder:
    """GPT-2 forward with a preallocated (layers, batch, heads, n_ctx, head_dim) KV cache.
    Matches GPT2LMHeadModel's logits (tested) with a fraction of its per-token overhead."""

    def __init__(self, model, batch: int, dtype: torch.dtype | None = None, static: bool = False):
        """`static`: every step has the same shapes (attention over the whole cache, masked),
        so a row's logits do not depend on what the other rows hold or where they stand (what
        a server needs for a seed to give the same text alone or among other requests)."""
        from transformers.activations import ACT2FN

        c = model.config
        self.model = model.eval()
        self.n_layer, self.n_head, self.n_embd = c.n_layer, c.n_head, c.n_embd
        self.head_dim = c.n_embd // c.n_head
        self.n_ctx = c.n_positions
        self.eps = c.layer_norm_epsilon
        self.act = ACT2FN[c.activation_function]
        p = next(model.parameters())
        self.device, self.dtype = p.device, dtype or p.dtype
        shape = (self.n_layer, batch, self.n_head, self.n_ctx, self.head_dim)
        self.k = torch.zeros(shape, device=self.device, dtype=self.dtype)
        self.v = torch.zeros(shape, device=self.device, dtype=self.dtype)
        t = model.transformer
        self.wte, self.wpe = t.wte.weight, t.wpe.weight
        self.lm_head = model.lm_head.weight
        # the weights as plain tensors: module attribute look-ups cost more than a tiny model's matmuls
        self.blocks = [_BlockWeights(b) for b in t.h]
        self.ln_f = (t.ln_f.weight, t.ln_f.bias)
        self._keys = torch.arange(self.n_ctx, device=self.device)
        self._bidx = torch.arange(batch, device=self.device)
        self._graph = None
        self.batch, self.static = batch, static
        # GPT-2's options for the attention scale, so that any GPT2LMHeadModel decodes right
        base = 1.0 / math.sqrt(self.head_dim) if c.scale_attn_weights else 1.0
        self.scales = [base / (i + 1) if c.scale_attn_by_inverse_layer_idx else base for i in range(c.n_layer)]

    def _ln(self, ln, x):
        return F.layer_norm(x, (self.n_embd,), ln[0], ln[1], self.eps)

    @torch.no_grad()
    def step_static(self, ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """One decoding step for the whole batch with shapes that never change (attention over
        the full cache, masked): no host synchronisation, so it can be captured in a CUDA graph."""
        B, H, D = ids.shape[0], self.n_head, self.head_dim
        qpos = pos[:, None]                                                   # (B, 1)
        x = (self.wte[ids] + self.wpe[qpos]).to(self.dtype)                   # (B, 1, C)
        mask = self._keys[None, None, None, :] <= qpos[:, None, :, None]      # (B, 1, 1, n_ctx)
        bidx = self._bidx[:B, None]
        for layer, blk in enumerate(self.blocks):
            h = self._ln(blk.ln_1, x)
            qkv = torch.addmm(blk.qkv_b, h.view(B, self.n_embd), blk.qkv_w)
            q, k, v = qkv.view(B, 1, 3, H, D).unbind(2)
            self.k[layer][bidx, :, qpos] = k
            self.v[layer][bidx, :, qpos] = v
            y = F.scaled_dot_product_attention(q.transpose(1, 2), self.k[layer], self.v[layer], attn_mask=mask,
                                               scale=self.scales[layer])
            y = y.transpose(1, 2).reshape(B, self.n_embd)
            x = x + torch.addmm(blk.proj_b, y, blk.proj_w).view(B, 1, -1)
            h = self._ln(blk.ln_2, x).view(B, -1)
            h = self.act(torch.addmm(blk.fc_b, h, blk.fc_w))
            x = x + torch.addmm(blk.out_b, h, blk.out_w).view(B, 1, -1)
        x = self._ln(self.ln_f, x[:, -1])
        return (x @ self.lm_head.t()).float()

    def capture(self) -> bool:
        """On CUDA, record step_static once as a CUDA graph: each later step is one replay
        instead of a few hundred kernel launches from Python. Falls back to eager steps
        (with a warning) if capture fails."""
        if self.device.type != "cuda":
            return False
        B = self.k.shape[1]
        try:
            self._ids = torch.zeros((B, 1), dtype=torch.long, device=self.device)
            self._pos = torch.zeros(B, dtype=torch.long, device=self.device)
            saved = self.k.clone(), self.v.clone()   # warm-up steps write into the cache
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.step_static(self._ids, self._pos)
            torch.cuda.current_stream().wait_stream(side)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._out = self.step_static(self._ids, self._pos)
            self.k.copy_(saved[0])
            self.v.copy_(saved[1])
            return True
        except Exception as e:  # a driver or kernel that cannot be captured: stay correct, only slower
            import warnings

            warnings.warn(f"CUDA graph capture failed ({e}); decoding without it", stacklevel=2)
            self._graph = None
            return False

    def step(self, ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Logits for one new token per row at positions `pos`."""
        if self._graph is not None:
            self._ids.copy_(ids)
            self._pos.copy_(pos)
            self._graph.replay()
            return self._out.clone()
        if self.device.type == "cuda" or self.static:
            return self.step_static(ids, pos)
        return self.forward(ids, pos)  # on the CPU, attending only to the filled part is cheaper

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, pos: torch.Tensor, rows=slice(None)) -> torch.Tensor:
        """ids (B, S) written at positions pos[b] .. pos[b]+S-1 of cache rows `rows`;
        returns the logits of the last position, (B, vocab)."""
        B, S = ids.shape
        H, D = self.n_head, self.head_dim
        qpos = pos[:, None] + torch.arange(S, device=self.device)            # (B, S)
        x = (self.wte[ids] + self.wpe[qpos]).to(self.dtype)
        T = int(qpos.max()) + 1
        keys = torch.arange(T, device=self.device)
        mask = (keys[None, None, None, :] <= qpos[:, None, :, None])          # (B, 1, S, T)
        bidx = torch.arange(B, device=self.device)[:, None]
        for layer, blk in enumerate(self.blocks):
            h = self._ln(blk.ln_1, x)
            qkv = torch.addmm(blk.qkv_b, h.view(-1, self.n_embd), blk.qkv_w)
            q, k, v = qkv.view(B, S, 3, H, D).unbind(2)                         # (B, S, H, D)
            kc, vc = self.k[layer, rows], self.v[layer, rows]                  # (B, H, n_ctx, D) views
            kc[bidx, :, qpos] = k                                             # write in place
            vc[bidx, :, qpos] = v
            y = F.scaled_dot_product_attention(q.transpose(1, 2), kc[:, :, :T], vc[:, :, :T], attn_mask=mask,
                                               scale=self.scales[layer])
            y = y.transpose(1, 2).reshape(B * S, self.n_embd)
            x = x + torch.addmm(blk.proj_b, y, blk.proj_w).view(B, S, -1)
            h = self._ln(blk.ln_2, x).view(B * S, -1)
            h = self.act(torch.addmm(blk.fc_b, h, blk.fc_w))
            x = x + torch.addmm(blk.out_b, h, blk.out_w).view(B, S, -1)
        x = self._ln(self.ln_f, x[:, -1])
        return (x @ self.lm_head.t()).float()


# ----------------------------------------------------------------------------
# Sampling


def apply_repetition_penalty(logits: torch.Tensor, recent: list[list[int]], penalty: float) -> None:
    """Sign-aware (CTRL): positive logits are divided, negative ones multiplied, so a
    repeated token always becomes less likely (GPT2-Chinese divides always, which
    boosts repeats whose logits are negative)."""
    for b, ids in enumerate(recent):
        if not ids:
            continue
        idx = torch.tensor(sorted(set(ids)), device=logits.device)
        vals = logits[b, idx]
        logits[b, idx] = torch.where(vals > 0, vals / penalty, vals * penalty)


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # drop a token once the mass before it already reaches top_p (the top token always stays)
        drop = probs.cumsum(-1) - probs >= top_p
        drop[..., 0] = False   # (a top_p below float32's range, 1e-308, rounds to 0 in the comparison)
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def sample_token(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                 gen: torch.Generator | None = None) -> int:
    """One token from a row of logits: the same distribution as filter_logits + softmax, but
    with top-k set it sorts and samples only the k best (torch.multinomial over the whole
    vocabulary costs more than a small model's forward step)."""
    if not top_k or top_k >= logits.numel():
        probs = filter_logits(logits[None] / temperature, top_k, top_p)[0].softmax(-1)
        return int(torch.multinomial(probs, 1, generator=gen))
    vals, idx = torch.topk(logits / temperature, top_k)          # sorted, best first
    probs = vals.softmax(-1)
    if top_p < 1.0:
        drop = probs.cumsum(-1) - probs >= top_p
        drop[0] = False        # the best token always stays (see filter_logits)
        probs = probs.masked_fill(drop, 0.0)
    return int(idx[torch.multinomial(probs, 1, generator=gen)])
