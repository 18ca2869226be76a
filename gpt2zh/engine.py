"""The decoding engine: slots over a static KV cache, for `generate` and for `serve`.

Each row of the decoder's cache is a slot. A request takes a free slot at the next step
and frees it when it is finished, stopped or cancelled (continuous batching, as vLLM and
llama.cpp's server do). A slot owns everything of its request: its position, its window
(re-prefilled from the anchor and the recent text when the cache fills; GPT-2's positions
are absolute, so a full cache cannot be shifted), its repetition detector and rollbacks,
its sampling settings and its random generator. Sampling runs on the CPU from the step's
logits, so a request with a given seed writes the same text alone or among others.

Past the context: when a slot's cache is full, it is re-prefilled once from the anchor (the
memory text, or the head of the prompt) plus the most recent ~3/4 of the window, cut at a
sentence start, with an author's note (if any) a few dozen tokens before the end. The cost
per token stays flat however long the text.
"""
from __future__ import annotations

import collections
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import degeneration
from .decoding import GenerationError, SamplingConfig, StaticDecoder, load_token_table, resolve_model_dir, sample_token
from .guard import Guard
from .repetition import SENTENCE_END, repetition_report

HOLD = 160          # tokens held back from a stream by default: a rollback never unsays streamed text
NOTE_DEPTH = 48     # an author's note goes this many tokens before the end of the window


class EngineFailed(RuntimeError):
    """The engine itself (not one request) failed: nothing more can be written."""


@dataclass
class Request:
    """One sample to write. `on_text(text, logprobs)` receives the text as it becomes final (in
    the engine's thread), with its tokens' log-probabilities when `logprobs` asks for them (else
    None); the result is in `result` once `done` is set."""

    prompt: str
    cfg: SamplingConfig
    seed: int | None = None
    memory: str = ""                 # kept in context however long the text grows (the anchor)
    note: str = ""                   # the author's note, placed near the end of the context
    max_tokens: int | None = None    # a cap in tokens, besides cfg.length in characters
    stop: tuple[str, ...] = ()
    hold: int = HOLD
    logprobs: int | None = None      # None: none; k: each token's log-probability and the k likeliest (k <= 5)
    on_text: Callable[[str, list | None], None] | None = None
    on_done: Callable[[], None] | None = None   # called (in the engine's thread) once `result` is set
    tag: object = None               # the caller's name for it (a sample index, a choice index)
    cancelled: bool = False
    result: dict | None = None
    done: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.perf_counter)


@dataclass
class Slot:
    req: Request
    gen: torch.Generator
    prompt: list[int]                # prompt ids (with the leading end-of-text)
    anchor: list[int]                # what every window starts with
    history: list[int]               # prompt ids after the anchor: the start of the text the window slides over
    note: list[int]
    guard: Guard                     # what it watches in the text and what it does about it
    ctx: list[int] = field(default_factory=list)     # tokens whose keys/values sit (or will sit) in the cache
    frozen: int = 0                  # ctx[:frozen] is anchor and note: a rollback reaching it needs a refill
    tokens: list[int] = field(default_factory=list)  # generated so far
    logprobs: list[tuple] = field(default_factory=list)  # per token (when asked): (logprob, ((id, logprob), ...))
    chars: int = 0
    status: str = "ok"
    finish: str | None = None        # why it ended: length, stop, repetition, cancelled
    stop_at: int | None = None       # the character offset where a stop sequence began
    streamed: int = 0                # tokens already handed to on_text
    streamed_chars: int = 0
    refills: int = 0
    needs_refill: bool = False       # a rollback reached behind the cached window
    started: float = field(default_factory=time.perf_counter)
    first_token_s: float | None = None


class Engine:
    def __init__(self, model_dir: str | Path, device: str | None = None, dtype: str = "auto", slots: int = 1,
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
        self._banned = torch.tensor(self.table.banned, dtype=torch.long)
        self._sentence_end_ids = {i for i, p in enumerate(self.table.pieces) if p and p[-1] in SENTENCE_END}
        # the human bands and the reference model stored with the model (train writes them)
        self.calibration, self.reference = degeneration.find(self.model_dir)
        self.notice = None if self.calibration else (
            f"{self.model_dir} has no human bands ({degeneration.CALIBRATION_FILE}): collapse is judged by the "
            f"{degeneration.COLLAPSE_LIMIT:.0%} rule alone and fixation is not watched; add them with "
            f"`gpt2zh calibrate --data DATA_DIR --model {self.model_dir}`")
        self.dec: StaticDecoder | None = None
        self.slots: list[Slot | None] = []
        self.waiting: collections.deque[Request] = collections.deque()
        self.lock = threading.Condition()
        self.step_times: list[float] = []   # one stamp per decoding step, for benchmarks
        self.finished: collections.Counter = collections.Counter()   # requests ended, by reason
        self.failure: str | None = None      # why the engine stopped for good (serve_forever)
        self.heartbeat = time.monotonic()    # the engine loop's last turn: a stall shows as an old stamp
        self.reserve(slots)

    # -- slots

    def reserve(self, n: int) -> None:
        """A decoder with `n` rows (only between requests)."""
        if self.dec is not None and self.dec.batch == n:
            return
        if any(s is not None for s in self.slots):
            raise GenerationError("cannot resize the engine while requests run")
        # With several rows the steps keep one shape, so that rows do not depend on each other.
        self.dec = StaticDecoder(self.model, n, self.dtype, static=n > 1)
        if self.cuda_graphs:
            self.dec.capture()
        self.slots = [None] * n

    def encode(self, text: str) -> list[int]:
        return self.table.encode(text)

    def unknown_count(self, text: str) -> int:
        unk = self.table.tok.token_to_id("<unk>")
        if unk is None:
            unk = self.table.tok.token_to_id("[UNK]")
        return sum(1 for i in self.encode(text) if i == unk) if unk is not None else 0

    def submit(self, req: Request) -> None:
        """Queue a request; it takes a slot at the next step. Thread-safe."""
        with self.lock:
            if self.failure is not None:
                raise EngineFailed(self.failure)
            self.waiting.append(req)
            self.lock.notify()

    def cancel(self, req: Request) -> None:
        req.cancelled = True
        with self.lock:
            self.lock.notify()

    def busy_slots(self) -> int:
        return sum(1 for s in self.slots if s is not None)

    def _open(self, req: Request) -> Slot:
        prompt = self.encode(req.prompt)
        if self.table.eos_id is not None:
            prompt = [self.table.eos_id] + prompt  # documents start after an end-of-text in training
        if not prompt:
            raise GenerationError("empty prompt, and the tokenizer has no end-of-text token to start from")
        memory = self.encode(req.memory)[: self.n_ctx // 3] if req.memory.strip() else []
        note = self.encode(req.note)[: self.n_ctx // 8] if req.note.strip() else []
        if memory:  # the memory text is the anchor; the whole prompt is text the window slides over
            anchor = ([self.table.eos_id] if self.table.eos_id is not None else []) + memory
            history = prompt[1:] if self.table.eos_id is not None else prompt
        else:
            anchor = prompt[: max(1, self.n_ctx // 4)]
            history = prompt[len(anchor):]
        gen = torch.Generator()
        gen.manual_seed(req.seed if req.seed is not None else time.time_ns() % 2**31)
        guard = Guard(req.cfg, self.table, prompt, self._sentence_end_ids, self.calibration,
                      self.model.config.vocab_size)
        return Slot(req, gen, prompt, anchor, history, note, guard=guard)

    def _window(self, s: Slot) -> list[int]:
        """Anchor + the most recent tokens (prompt and generated), about 3/4 of n_ctx in all,
        starting at a sentence start when one is near; the note a little before the end."""
        budget = max(8, (3 * self.n_ctx) // 4 - len(s.anchor) - len(s.note))
        tail = (s.history + s.tokens)[-budget:]
        for i, t in enumerate(tail[: len(tail) // 4]):
            if t in self._sentence_end_ids:
                tail = tail[i + 1:]
                break
        if s.note and tail:
            depth = min(NOTE_DEPTH, len(tail))
            s.frozen = len(s.anchor) + len(tail) - depth + len(s.note)
            return s.anchor + tail[:-depth] + s.note + tail[-depth:]
        s.frozen = len(s.anchor)
        return s.anchor + tail + s.note

    def _refill(self, b: int, s: Slot) -> None:
        s.ctx = self._window(s)
        s.refills += 1
        s.needs_refill = False
        if len(s.ctx) > 1:
            ids = torch.tensor([s.ctx[:-1]], device=self.device)
            self.dec.forward(ids, torch.zeros(1, dtype=torch.long, device=self.device), rows=slice(b, b + 1))

    def _admit(self) -> None:
        for b in range(len(self.slots)):
            while self.slots[b] is None:
                with self.lock:  # (held only to take from the queue: prefilling runs outside it)
                    if not self.waiting:
                        return
                    req = self.waiting.popleft()
                if req.cancelled:
                    self._close(None, req, "cancelled")
                    continue
                try:
                    s = self._open(req)
                    self.slots[b] = s
                    self._refill(b, s)
                except Exception as e:  # noqa: BLE001  (that request's failure, not the engine's)
                    self.slots[b] = None
                    self._fail(req, e)

    # -- detection and countermeasures (the slot's guard decides; the engine cuts)

    def _rollback(self, s: Slot, n: int) -> None:
        keep = len(s.tokens) - n
        removed, s.tokens = s.tokens[keep:], s.tokens[:keep]
        del s.logprobs[keep:]
        s.chars = len(self.table.text(s.tokens))
        s.guard.forget(s.tokens, removed, s.chars)
        # the cache still holds the kept tokens unless the window moved past them
        if len(s.ctx) - n > s.frozen:
            s.ctx = s.ctx[:-n]
        else:
            s.needs_refill = True

    def _after_token(self, s: Slot, t: int, logprob: tuple | None = None) -> None:
        s.tokens.append(t)
        if logprob is not None:
            s.logprobs.append(logprob)
        s.ctx.append(t)
        s.chars += len(self.table.pieces[t])
        back = s.guard.observe(s.tokens, s.chars, len(s.tokens) - s.streamed)
        if s.guard.gave_up:
            s.finish, s.status = "repetition", "stopped: repetition"
        elif back:
            self._rollback(s, min(back, len(s.tokens)))

    def _sample(self, s: Slot, logits: torch.Tensor) -> tuple[int, tuple | None]:
        """One token for slot `s` from its row of logits (on the CPU, with its own generator), and
        when the request asks, its log-probability and the likeliest alternatives' under the model
        itself (before temperature and penalties, as OpenAI reports them)."""
        logits[self._banned] = float("-inf")
        model_logprobs = torch.log_softmax(logits, -1) if s.req.logprobs is not None else None
        s.guard.adjust(logits, s.tokens)
        cfg = s.req.cfg
        t = sample_token(logits, s.guard.temperature(len(s.tokens)), cfg.top_k, cfg.top_p, s.gen)
        if model_logprobs is None:
            return t, None
        top = torch.topk(model_logprobs, min(s.req.logprobs, len(model_logprobs))) if s.req.logprobs else None
        alternatives = tuple((int(i), float(v)) for v, i in zip(*top) if v > float("-inf")) if top else ()
        return t, (float(model_logprobs[t]), alternatives)

    def logprob_entries(self, s: Slot, first: int, chars: int) -> list[tuple[str, float, dict]] | None:
        """(text, logprob, {alternative's text: logprob}) of the tokens from `first` on that make up
        `chars` characters (the last one cut where the text was cut), or None when not asked."""
        if s.req.logprobs is None:
            return None
        out, seen = [], 0
        for t, (lp, top) in zip(s.tokens[first:], s.logprobs[first:]):
            if seen >= chars:
                break
            piece = self.table.pieces[t][: chars - seen]
            seen += len(piece)
            out.append((piece, lp, {self.table.pieces[i]: v for i, v in top}))
        return out

    # -- the loop

    def step(self) -> bool:
        """One decoding step for every slot in use (after admitting waiting requests).
        Returns False when there was nothing to do."""
        self._admit()
        active = []
        for b, s in enumerate(self.slots):
            if s is None:
                continue
            try:
                if s.req.cancelled:
                    self._finish(b, "cancelled")
                    continue
                if s.needs_refill or len(s.ctx) > self.n_ctx:
                    self._refill(b, s)
            except Exception as e:  # noqa: BLE001
                self._drop(b, s, e)
                continue
            active.append(b)
        if not active:
            return False
        ids = torch.zeros((len(self.slots), 1), dtype=torch.long)
        pos = torch.zeros(len(self.slots), dtype=torch.long)
        for b in active:
            ids[b, 0], pos[b] = self.slots[b].ctx[-1], len(self.slots[b].ctx) - 1
        logits = self.dec.step(ids.to(self.device), pos.to(self.device)).float().cpu()
        now = time.perf_counter()
        self.step_times.append(now)
        for b in active:
            s = self.slots[b]
            try:
                self._after_token(s, *self._sample(s, logits[b]))
                if s.first_token_s is None:
                    s.first_token_s = now - s.started
                self._check_end(s)
                if s.finish is not None:
                    self._finish(b, s.finish)
                else:
                    self._stream(s)
            except Exception as e:  # noqa: BLE001  (one slot's failure ends its request; the others go on)
                self._drop(b, s, e)
        return True

    def _check_end(self, s: Slot) -> None:
        req = s.req
        if s.finish is None and req.stop:
            k = max(map(len, req.stop)) + 1
            tail = self.table.text(s.tokens[-k:])
            hits = [tail.find(x) for x in req.stop if x and x in tail]
            if hits:
                s.stop_at, s.finish = s.chars - len(tail) + min(hits), "stop"
        if s.finish is None and (s.chars >= req.cfg.length or
                                 (req.max_tokens is not None and len(s.tokens) >= req.max_tokens)):
            s.finish = "length"

    def _stream(self, s: Slot) -> None:
        if s.req.on_text is None:
            return
        # The hold grows with the text (half of it, up to req.hold): the first words go out at
        # once, and the longer the text, the longer the rollback it still allows.
        hold = max(min(s.req.hold, len(s.tokens) // 2), max(map(len, s.req.stop), default=0) + 1)
        upto = len(s.tokens) - hold
        if upto > s.streamed:
            piece = self.table.text(s.tokens[s.streamed:upto])
            entries = self.logprob_entries(s, s.streamed, len(piece))
            s.streamed, s.streamed_chars = upto, s.streamed_chars + len(piece)
            s.req.on_text(piece, entries)

    def final_text(self, s: Slot) -> str:
        text = self.table.text(s.tokens)
        if s.stop_at is not None:
            return text[: s.stop_at]
        return text[: s.req.cfg.length]

    def _finish(self, b: int, reason: str) -> None:
        s = self.slots[b]
        self.slots[b] = None
        self._close(s, s.req, reason)

    def _close(self, s: Slot | None, req: Request, reason: str) -> None:
        self.finished[reason] += 1
        if s is None:
            req.result = {"sample": req.tag, "status": "cancelled", "finish_reason": "cancelled", "text": "",
                          "tokens": 0, "prompt_tokens": 0}
            self._done(req)
            return
        text = self.final_text(s)
        if req.on_text is not None and len(text) > s.streamed_chars and reason != "cancelled":
            req.on_text(text[s.streamed_chars:], self.logprob_entries(s, s.streamed, len(text) - s.streamed_chars))
        seconds = max(time.perf_counter() - s.started, 1e-9)
        measures = degeneration.report(text, self.calibration, self.reference)
        status = degeneration.status_of(measures["failure"], s.status) if reason != "cancelled" else "cancelled"
        req.result = {
            "sample": req.tag, "status": status, "finish_reason": reason,
            "text": text, "report": repetition_report(text, s.guard.events), "measures": measures,
            "tokens": len(s.tokens), "prompt_tokens": len(s.prompt) - (self.table.eos_id is not None),
            "refills": s.refills - 1, "rollbacks_at": [c for c in s.guard.rollbacks_at if c <= len(text)],
            "seconds": round(seconds, 3), "tokens_per_s": round(len(s.tokens) / seconds, 1),
            "time_to_first_token_s": round(s.first_token_s or 0.0, 4),
            "queued_s": round(s.started - req.submitted, 4),
        }
        if req.logprobs is not None:
            req.result["logprobs"] = self.logprob_entries(s, 0, len(text))
        self._done(req)

    def _drop(self, b: int, s: Slot, err: BaseException) -> None:
        if self.slots[b] is s:
            self.slots[b] = None
        self._fail(s.req, err)

    def _fail(self, req: Request, err: BaseException) -> None:
        """End one request with an error: 400 for what its input caused (GenerationError), 503
        when the engine failed, 500 (and a traceback in the log) for anything else."""
        if req.done.is_set():
            return
        status = 400 if isinstance(err, GenerationError) else 503 if isinstance(err, EngineFailed) else 500
        if status == 500:
            print(f"gpt2zh: a request failed ({type(err).__name__}: {err}); the others go on", file=sys.stderr)
            traceback.print_exception(err, file=sys.stderr)
        self.finished["error"] += 1
        message = str(err) if status != 500 else f"internal error while writing: {type(err).__name__}: {err}"
        req.result = {"sample": req.tag, "status": "error", "finish_reason": "error", "error": message,
                      "error_status": status, "text": "", "tokens": 0, "prompt_tokens": 0}
        self._done(req)

    @staticmethod
    def _done(req: Request) -> None:
        req.done.set()
        if req.on_done is not None:
            try:
                req.on_done()
            except Exception as e:  # noqa: BLE001  (a caller that went away: nothing to tell)
                print(f"gpt2zh: a request's completion callback failed: {e}", file=sys.stderr)

    def run(self, requests: list[Request], on_step: Callable[[], None] | None = None) -> list[dict]:
        """Write every request here and now (for `generate`); results in order."""
        for r in requests:
            self.submit(r)
        while not all(r.done.is_set() for r in requests):
            self.step()
            if on_step is not None:
                on_step()
        return [r.result for r in requests]

    def serve_forever(self, stop: threading.Event, on_failure: Callable[[str], None] | None = None) -> None:
        """The server's engine thread: step while there is work, sleep while there is none. A
        request's own failure ends that request (see `step`); if the engine itself fails, every
        request fails at once, new ones are refused, and `on_failure` is told why."""
        try:
            while not stop.is_set():
                self.heartbeat = time.monotonic()
                with self.lock:
                    while not stop.is_set() and not self.waiting and all(s is None for s in self.slots):
                        self.lock.wait(0.5)
                        self.heartbeat = time.monotonic()
                if not stop.is_set():
                    self.step()
        except BaseException as e:  # noqa: BLE001  (reported, and every request told)
            print("gpt2zh: the decoding engine failed:", file=sys.stderr)
            traceback.print_exception(e, file=sys.stderr)
            self.fail_all(f"{type(e).__name__}: {e}")
            if on_failure is not None:
                on_failure(self.failure)

    def fail_all(self, reason: str) -> None:
        """The engine is gone: fail every waiting and running request, refuse new ones."""
        with self.lock:
            self.failure = reason
            reqs = list(self.waiting) + [s.req for s in self.slots if s is not None]
            self.waiting.clear()
            self.slots = [None] * len(self.slots)
        for req in reqs:
            self._fail(req, EngineFailed(f"the decoding engine failed ({reason})"))

    def progress_chars(self) -> int:
        return sum(min(s.chars, s.req.cfg.length) for s in self.slots if s is not None)


class LongFormGenerator(Engine):
    """`gpt2zh generate` from Python: samples of a prompt, `batch_size` at a time."""

    def __init__(self, model_dir: str | Path, device: str | None = None, dtype: str = "auto",
                 cuda_graphs: bool = True):
        super().__init__(model_dir, device, dtype, slots=1, cuda_graphs=cuda_graphs)

    def generate(self, prompt: str, cfg: SamplingConfig, on_text: Callable[[int, str], None] | None = None,
                 progress: bool = False) -> list[dict]:
        """One dict per sample: text, status, repetition report, timing. Sample i is seeded with
        seed + i, so a sample is the same written alone or in a batch. With `progress` (for
        output that is not streamed) a bar counts the characters written."""
        from .progress import progress_bar

        self.reserve(min(cfg.batch_size, cfg.num_samples))
        base = cfg.seed if cfg.seed is not None else time.time_ns() % 2**31
        reqs = [Request(prompt, cfg, seed=base + i, tag=i,
                        on_text=(lambda t, _logprobs, i=i: on_text(i, t)) if on_text else None)
                for i in range(cfg.num_samples)]
        bar = progress_bar(total=cfg.length * cfg.num_samples, desc="generate", unit="char",
                           disable=not progress, leave=False)
        written = [0]

        def tick() -> None:
            now = sum(len(r.result["text"]) for r in reqs if r.done.is_set()) + self.progress_chars()
            bar.update(max(0, now - written[0]))
            written[0] = max(written[0], now)

        t0 = time.perf_counter()
        self.step_times = [t0]
        results = self.run(reqs, tick if progress else None)
        bar.close()
        for r in results:
            if "error" in r:
                raise (GenerationError if r["error_status"] == 400 else RuntimeError)(r["error"])
        total = time.perf_counter() - t0
        for r in results:  # throughput of the whole batch, as before
            r["tokens_per_s"] = round(sum(x["tokens"] for x in results) / max(total, 1e-9), 1)
        return results
