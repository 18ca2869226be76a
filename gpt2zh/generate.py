"""`gpt2zh generate`: long-form sampling far past the context window, with long-range
repetition detected and countered.

Decoding runs on a static KV cache written in place (our own forward over the
GPT2LMHeadModel's weights: no per-token cache objects, masks or generate()
machinery). GPT-2's positions are absolute, so a full cache cannot be shifted:
when it fills, the row is re-prefilled once from an anchor (the prompt) plus the
most recent ~3/4 n_ctx tokens cut at a sentence start, and decoding goes on. Each
row of a batch has its own position, so rows re-anchor and roll back independently.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .repetition import (SENTENCE_END, RepetitionConfig, RepetitionEvents, SuffixAutomaton,
                         ngram_repetition, repetition_report)


class GenerationError(Exception):
    pass


# ----------------------------------------------------------------------------
# Loading any local GPT2LMHeadModel directory with a tokenizer


def resolve_model_dir(path: str | Path) -> Path:
    """A model directory, or a run directory (its best checkpoint, else the newest)."""
    from .train import checkpoints

    p = Path(path)
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


class StaticDecoder:
    """GPT-2 forward with a preallocated (layers, batch, heads, n_ctx, head_dim) KV cache.
    Matches GPT2LMHeadModel's logits (tested) with a fraction of its per-token overhead."""

    def __init__(self, model, batch: int, dtype: torch.dtype | None = None):
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
        self.wte, self.wpe, self.ln_f = t.wte.weight, t.wpe.weight, t.ln_f
        self.lm_head = model.lm_head.weight
        self.blocks = list(t.h)
        self._keys = torch.arange(self.n_ctx, device=self.device)
        self._bidx = torch.arange(batch, device=self.device)
        self._graph = None
        # GPT-2's options for the attention scale, so that any GPT2LMHeadModel decodes right
        base = 1.0 / math.sqrt(self.head_dim) if c.scale_attn_weights else 1.0
        self.scales = [base / (i + 1) if c.scale_attn_by_inverse_layer_idx else base for i in range(c.n_layer)]

    def _ln(self, ln, x):
        return F.layer_norm(x, (self.n_embd,), ln.weight, ln.bias, self.eps)

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
            qkv = torch.addmm(blk.attn.c_attn.bias, h.view(B, self.n_embd), blk.attn.c_attn.weight)
            q, k, v = qkv.view(B, 1, 3, H, D).unbind(2)
            self.k[layer][bidx, :, qpos] = k
            self.v[layer][bidx, :, qpos] = v
            y = F.scaled_dot_product_attention(q.transpose(1, 2), self.k[layer], self.v[layer], attn_mask=mask,
                                               scale=self.scales[layer])
            y = y.transpose(1, 2).reshape(B, self.n_embd)
            x = x + torch.addmm(blk.attn.c_proj.bias, y, blk.attn.c_proj.weight).view(B, 1, -1)
            h = self._ln(blk.ln_2, x).view(B, -1)
            h = self.act(torch.addmm(blk.mlp.c_fc.bias, h, blk.mlp.c_fc.weight))
            x = x + torch.addmm(blk.mlp.c_proj.bias, h, blk.mlp.c_proj.weight).view(B, 1, -1)
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
        if self.device.type == "cuda":
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
            qkv = torch.addmm(blk.attn.c_attn.bias, h.view(-1, self.n_embd), blk.attn.c_attn.weight)
            q, k, v = qkv.view(B, S, 3, H, D).unbind(2)                         # (B, S, H, D)
            kc, vc = self.k[layer, rows], self.v[layer, rows]                  # (B, H, n_ctx, D) views
            kc[bidx, :, qpos] = k                                             # write in place
            vc[bidx, :, qpos] = v
            y = F.scaled_dot_product_attention(q.transpose(1, 2), kc[:, :, :T], vc[:, :, :T], attn_mask=mask,
                                               scale=self.scales[layer])
            y = y.transpose(1, 2).reshape(B * S, self.n_embd)
            x = x + torch.addmm(blk.attn.c_proj.bias, y, blk.attn.c_proj.weight).view(B, S, -1)
            h = self._ln(blk.ln_2, x).view(B * S, -1)
            h = self.act(torch.addmm(blk.mlp.c_fc.bias, h, blk.mlp.c_fc.weight))
            x = x + torch.addmm(blk.mlp.c_proj.bias, h, blk.mlp.c_proj.weight).view(B, S, -1)
        x = self._ln(self.ln_f, x[:, -1])
        return (x @ self.lm_head.t()).float()


# ----------------------------------------------------------------------------
# Sampling


@dataclass
class SamplingConfig:
    length: int = 2000            # characters to write per sample
    temperature: float = 0.9
    top_k: int = 40
    top_p: float = 0.95
    repetition_penalty: float = 1.0   # sign-aware; 1.0 = off
    penalty_window: int = 64          # recent tokens it looks at
    seed: int | None = None
    num_samples: int = 1
    batch_size: int = 1
    repetition: RepetitionConfig = field(default_factory=RepetitionConfig)

    def __post_init__(self):
        if self.length < 1:
            raise ValueError("length must be >= 1 character")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0 or self.repetition_penalty <= 0:
            raise ValueError("top_k must be >= 0 and repetition_penalty > 0")
        if self.num_samples < 1 or self.batch_size < 1:
            raise ValueError("num_samples and batch_size must be >= 1")


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
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


# ----------------------------------------------------------------------------
# One sample's state


@dataclass
class Row:
    prompt: list[int]
    anchor: list[int]
    ctx: list[int]                       # tokens whose keys/values sit (or will sit) in the cache
    tokens: list[int] = field(default_factory=list)  # generated so far
    chars: int = 0
    sam: SuffixAutomaton = field(default_factory=SuffixAutomaton)
    sentences: dict = field(default_factory=dict)    # sentence -> token index where it ended
    sentence_start: int = 0              # token index where the current sentence began
    bans: dict = field(default_factory=dict)         # token index -> ids not to sample there
    boost_until: int = 0                 # stronger DRY until this token index (after the detector fired)
    fail_streak: int = 0                 # rollbacks without real progress since the first of them
    fail_mark: int = 0                   # token count the streak must pass to be forgiven
    events: RepetitionEvents = field(default_factory=RepetitionEvents)
    done: bool = False
    status: str = "ok"
    streamed: int = 0                    # tokens already handed to the stream callback
    refills: int = 0
    needs_refill: bool = False           # a rollback reached behind the cached window


class LongFormGenerator:
    def __init__(self, model_dir: str | Path, device: str | None = None, dtype: str = "auto",
                 cuda_graphs: bool = True):
        from .model import load_model

        self.cuda_graphs = cuda_graphs
        self.model_dir = resolve_model_dir(model_dir)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype == "auto":
            tdtype = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        else:
            tdtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        self.model = load_model(self.model_dir, dtype=tdtype).to(dev).eval()
        self.device, self.dtype = dev, tdtype
        self.n_ctx = self.model.config.n_positions
        self.table = load_token_table(self.model_dir, self.model.config.vocab_size)
        self._banned = torch.tensor(self.table.banned, dtype=torch.long, device=dev)
        self._sentence_end_ids = {i for i, p in enumerate(self.table.pieces) if p and p[-1] in SENTENCE_END}

    # -- context management

    def _window(self, row: Row) -> list[int]:
        """Anchor + the most recent tokens (prompt and generated), about 3/4 of n_ctx in all,
        starting at a sentence start when one is near."""
        history = row.prompt[len(row.anchor):] + row.tokens
        budget = max(8, (3 * self.n_ctx) // 4 - len(row.anchor))
        tail = history[-budget:]
        cut_zone = len(tail) // 4
        for i, t in enumerate(tail[:cut_zone]):
            if t in self._sentence_end_ids:
                tail = tail[i + 1:]
                break
        return row.anchor + tail

    def _refill(self, dec: StaticDecoder, b: int, row: Row) -> None:
        row.ctx = self._window(row)
        row.refills += 1
        if len(row.ctx) > 1:
            ids = torch.tensor([row.ctx[:-1]], device=self.device)
            dec.forward(ids, torch.zeros(1, dtype=torch.long, device=self.device), rows=slice(b, b + 1))

    # -- detection and countermeasures

    def _rollback(self, row: Row, n: int, reason: str) -> None:
        n = min(n, len(row.tokens))
        if n <= 0:
            return
        keep = len(row.tokens) - n
        first = row.tokens[keep]
        row.tokens = row.tokens[:keep]
        row.chars = len(self.table.text(row.tokens))
        row.bans = {k: v for k, v in row.bans.items() if k <= keep}  # later positions: another text now
        row.bans.setdefault(keep, set()).add(first)
        row.sam = SuffixAutomaton(row.prompt + row.tokens)
        row.sentences = {s: i for s, i in row.sentences.items() if i <= keep}
        row.sentence_start = min(row.sentence_start, keep)
        while row.sentence_start > 0 and row.tokens[row.sentence_start - 1] not in self._sentence_end_ids:
            row.sentence_start -= 1
        # the cache still holds the kept tokens unless the window moved past them
        if len(row.ctx) - n > len(row.anchor):
            row.ctx = row.ctx[:-n]
        else:
            row.needs_refill = True
        row.events.rolled_back += 1
        row.events.rolled_back_tokens += n
        row.events.reasons[f"rollback:{reason}"] += 1

    def _after_token(self, row: Row, t: int, cfg: SamplingConfig) -> None:
        rc = cfg.repetition
        row.tokens.append(t)
        row.ctx.append(t)
        row.chars += len(self.table.pieces[t])
        repeat = row.sam.extend(t)
        if rc.mode == "off":
            return
        fired = None
        if repeat >= rc.max_copy:
            fired, back = "copy", repeat
        elif t in self._sentence_end_ids:
            sentence = self.table.text(row.tokens[row.sentence_start:]).strip()
            n_tok = len(row.tokens) - row.sentence_start
            if len(sentence) >= rc.min_sentence and sentence in row.sentences:
                fired, back = "sentence", n_tok
            else:
                row.sentences.setdefault(sentence, len(row.tokens))
            row.sentence_start = len(row.tokens)
        if fired is None and len(row.tokens) % 50 == 0 and row.chars >= rc.ngram_window:
            window = self.table.text(row.tokens[-rc.ngram_window:])[-rc.ngram_window:]
            if ngram_repetition(window, 8) > rc.ngram_threshold:
                row.events.fired += 1
                row.events.reasons["ngram"] += 1
                row.boost_until = len(row.tokens) + rc.boost_tokens
        if row.fail_streak and len(row.tokens) > row.fail_mark:
            row.fail_streak = 0  # it got well past the trouble: forgive
        if fired is None:
            return
        row.events.fired += 1
        row.events.reasons[fired] += 1
        row.boost_until = len(row.tokens) + rc.boost_tokens
        if rc.mode == "rollback" and back <= len(row.tokens) - row.streamed:  # never unsay streamed text
            if row.fail_streak >= rc.max_failures:
                row.done, row.status = True, "stopped: repetition"
                row.events.stopped = True
                return
            if row.fail_streak == 0:
                row.fail_mark = len(row.tokens) + 100
            row.fail_streak += 1
            self._rollback(row, back, fired)

    def _penalize(self, logits: torch.Tensor, rows: list[Row], cfg: SamplingConfig) -> None:
        rc = cfg.repetition
        if cfg.repetition_penalty != 1.0:
            apply_repetition_penalty(logits, [r.tokens[-cfg.penalty_window:] for r in rows], cfg.repetition_penalty)
        for b, row in enumerate(rows):
            if rc.mode != "off":
                mult = rc.dry_multiplier
                if len(row.tokens) < row.boost_until:  # the detector fired recently: push harder
                    mult = rc.boost * max(rc.dry_multiplier, 0.5)
                pen = row.sam.dry_penalties(rc.dry_allowed, rc.dry_base, mult) if mult > 0 else None
                if pen:
                    idx = torch.tensor(list(pen.keys()), device=logits.device)
                    logits[b, idx] -= torch.tensor(list(pen.values()), device=logits.device, dtype=logits.dtype)
            ban = row.bans.get(len(row.tokens))
            if ban:
                logits[b, torch.tensor(sorted(ban), device=logits.device)] = float("-inf")

    # -- the loop

    def generate(self, prompt: str, cfg: SamplingConfig, on_text: Callable[[int, str], None] | None = None,
                 progress: bool = False) -> list[dict]:
        """Return one dict per sample: text, status, repetition report, timing. With `progress`
        (for output that is not streamed) a bar counts the characters written."""
        from tqdm import tqdm

        self._bar = tqdm(total=cfg.length * cfg.num_samples, desc="generate", unit="char",
                         disable=not progress, leave=False)
        out = []
        gen = torch.Generator(device=self.device)
        gen.manual_seed(cfg.seed if cfg.seed is not None else int(time.time_ns() % 2**31))
        for start in range(0, cfg.num_samples, cfg.batch_size):
            n = min(cfg.batch_size, cfg.num_samples - start)
            out += self._generate_batch(prompt, cfg, n, gen, start, on_text)
        self._bar.close()
        return out

    def _generate_batch(self, prompt, cfg, n, gen, offset, on_text) -> list[dict]:
        prompt_ids = self.table.encode(prompt)
        if self.table.eos_id is not None:
            prompt_ids = [self.table.eos_id] + prompt_ids  # documents start after an end-of-text in training
        if not prompt_ids:
            raise GenerationError("empty prompt, and the tokenizer has no end-of-text token to start from")
        anchor = prompt_ids[: max(1, self.n_ctx // 4)]
        dec = StaticDecoder(self.model, n, self.dtype)
        if self.cuda_graphs:
            dec.capture()
        rows = []
        for b in range(n):
            row = Row(prompt=prompt_ids, anchor=anchor, ctx=[], sam=SuffixAutomaton(prompt_ids))
            self._refill(dec, b, row)
            rows.append(row)
        hold = max(cfg.repetition.max_copy, 160)  # text younger than this may still be rolled back
        t0 = time.perf_counter()
        self.step_times = [t0]  # one stamp per decoding step, for benchmarks
        first_token_s = None
        steps = 0
        while not all(r.done for r in rows):
            for b, row in enumerate(rows):
                if not row.done and (row.needs_refill or len(row.ctx) > self.n_ctx):
                    self._refill(dec, b, row)
                    row.needs_refill = False
            ids = torch.tensor([[r.ctx[-1]] for r in rows], device=self.device)
            pos = torch.tensor([len(r.ctx) - 1 for r in rows], device=self.device)
            logits = dec.step(ids, pos)
            logits[:, self._banned] = float("-inf")
            self._penalize(logits, rows, cfg)
            logits = filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p)
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=gen).squeeze(1).tolist()
            steps += 1
            self.step_times.append(time.perf_counter())
            if first_token_s is None:
                first_token_s = time.perf_counter() - t0
            for b, row in enumerate(rows):
                if row.done:
                    continue
                before = row.chars
                self._after_token(row, nxt[b], cfg)
                self._bar.update(max(0, min(row.chars, cfg.length) - min(before, cfg.length)))
                if row.chars >= cfg.length:
                    row.done = True
                if on_text and (row.done or len(row.tokens) - row.streamed > hold):
                    upto = len(row.tokens) if row.done else len(row.tokens) - hold
                    if upto > row.streamed:
                        on_text(offset + b, self.table.text(row.tokens[row.streamed:upto]))
                        row.streamed = upto
        seconds = time.perf_counter() - t0
        results = []
        for b, row in enumerate(rows):
            text = self.table.text(row.tokens)[: cfg.length]
            results.append({
                "sample": offset + b, "status": row.status, "text": text,
                "report": repetition_report(text, row.events),
                "tokens": len(row.tokens), "refills": row.refills - 1,
                "seconds": round(seconds, 3), "tokens_per_s": round(sum(len(r.tokens) for r in rows) / seconds, 1),
                "time_to_first_token_s": round(first_token_s or 0.0, 4), "steps": steps,
            })
        return results


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
    return (f"[sample {s['sample']}] {s['status']}: {r['chars']} chars, 4-gram rep {r['rep_4gram']:.3f}, "
            f"8-gram rep {r['rep_8gram']:.3f}, distinct-2 {r['distinct_2']:.3f}, longest repeat "
            f"{r['longest_repeat']} chars; detector fired {r.get('detector_fired', 0)}x, rolled back "
            f"{r.get('rolled_back', 0)}x; {s['tokens_per_s']} tok/s, {s['refills']} re-prefills")
