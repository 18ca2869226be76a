"""`gpt2zh train`: shards in RAM -> half-stride windows -> GPT2LMHeadModel through
Accelerate, on a CPU, one GPU, or many (`accelerate launch -m gpt2zh train ...`).

A run has three phases: `_setup` (data, model, optimizers, resume: a Setup and the
State to start from), `Loop.run` (steps, logs sparingly, evaluates, saves, honours
SIGINT/SIGTERM and the time budget) and `Loop.summary` (results.json, the plot).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import BatchLoader, EvalWindows, Position, Windows
from .locks import DirLock
from .optim import Schedule, make_optimizers
from .rundir import (checkpoints, retire, save_best, save_checkpoint, schedule_of,
                     set_rng_state, starts_cooldown, step_of, sweep)
from .runlog import RunLog, live_plot_for, plot_run, read_log  # noqa: F401  (plot_run, read_log: re-exported)
from .model import build_model, flops_per_token, lm_loss, load_model, peak_flops, set_generation_defaults
from .shards import load_tokenizer, load_tokens, read_manifest, shared_tokens
from .train_job import DivergedError, TrainingError, TrainJob  # noqa: F401  (re-exported)
from .degeneration import calibrate_shards
from .vocab import specials_of, token_char_lengths, tokenizer_hash  # noqa: F401  (re-exported)

# ----------------------------------------------------------------------------
# Setup helpers


def cuda_in_use() -> bool:
    return torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true")


def resolve_precision(requested: str) -> str:
    """Accelerate's mixed_precision value: bf16 on GPUs that have it, fp32 ('no') on CPU,
    where bf16 autocast is ~20x slower; fp16 only when asked."""
    cuda = cuda_in_use()
    if requested == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if requested == "fp16":
        warnings.warn("fp16 is known to diverge on this workload (GPT2-Chinese's experience); prefer bf16", stacklevel=2)
        return "fp16"
    if requested == "bf16" and not cuda:
        warnings.warn("bf16 autocast on this CPU is ~20x slower than fp32", stacklevel=2)
    return "bf16" if requested == "bf16" else "no"


class StopSignal:
    """SIGINT/SIGTERM ask the loop to save a checkpoint and exit; a second one aborts."""

    def __init__(self):
        self.requested = False
        self._old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ----------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(model, rows: EvalWindows, batch: int, accelerator, char_len: torch.Tensor) -> dict:
    """Token-weighted validation loss over `rows` (each rank takes its share), perplexity,
    and perplexity per character."""
    was_training = model.training
    model.eval()
    device = accelerator.device
    mine = np.arange(accelerator.process_index, len(rows), accelerator.num_processes)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # nll, tokens, characters
    with accelerator.autocast():
        for i in range(0, len(mine), batch):
            w = torch.from_numpy(rows.rows(mine[i:i + batch])).to(device)
            x, y = w[:, :-1], w[:, 1:]
            valid = y >= 0
            sums[0] += lm_loss(model, x, y, reduction="sum").double()
            sums[1] += valid.sum()
            sums[2] += char_len[y.clamp(min=0)][valid].sum()
    sums = accelerator.reduce(sums, reduction="sum")
    model.train(was_training)
    nll, n, chars = sums.tolist()
    loss = nll / max(n, 1)
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50)),
            "val_ppl_char": math.exp(min(nll / max(chars, 1), 50)), "val_tokens": int(n), "val_chars": int(chars)}


# ----------------------------------------------------------------------------


def _model_for_job(job: TrainJob, resume_dir: Path | None, tok, manifest: dict):
    """(model, n_ctx): from a checkpoint, from --init-from, or new from the config."""
    sp = specials_of(tok)
    eos, pad = tok.token_to_id(sp.eos), tok.token_to_id(sp.pad)
    mc = job.run.model
    if resume_dir is not None:
        model = load_model(resume_dir)
    elif job.init_from:
        from .hub import fetch
        from .vocab import resolve_vocab

        init_dir = fetch(job.init_from)   # a directory, or a Hub ID's cached snapshot
        init_tok = resolve_vocab(str(init_dir), [])
        if tokenizer_hash(init_tok) != manifest["tokenizer_sha256"]:
            raise TrainingError(f"--init-from {job.init_from}: its tokenizer differs from the shards'; "
                                f"prepare the shards with `gpt2zh prepare ... --vocab {job.init_from}`")
        model = load_model(init_dir)
        model.config.resid_pdrop = model.config.embd_pdrop = model.config.attn_pdrop = mc.dropout
        set_generation_defaults(model, eos, pad)
    else:
        torch.manual_seed(job.run.train.seed)
        model = build_model(mc, manifest["vocab_size"], eos, pad)
    n_ctx = min(mc.n_ctx, model.config.n_positions)
    if manifest["vocab_size"] > model.config.vocab_size:
        raise TrainingError(f"the shards' vocabulary ({manifest['vocab_size']}) is larger than the model's "
                            f"({model.config.vocab_size})")
    return model, n_ctx


def train(job: TrainJob) -> dict:
    from accelerate import Accelerator

    tc = job.run.train
    out, data_dir = Path(job.out), Path(job.data)
    mixed = resolve_precision(tc.precision)
    use_compile = tc.compile == "on" or (tc.compile == "auto" and cuda_in_use())
    # Accelerate compiles after wrapping for DDP, the order PyTorch recommends.
    accelerator = Accelerator(mixed_precision=mixed, log_with=job.log_with, project_dir=str(out),
                              dynamo_backend="inductor" if use_compile else "no")
    main = accelerator.is_main_process
    refuse_unsupported(accelerator)
    created = main and not out.exists()
    lock = None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        lock = DirLock(out / ".lock", f"run directory {out}").acquire()   # a second trainer stops here
    try:
        return _train(job, accelerator, out, data_dir, use_compile, mixed)
    except BaseException:
        # a run that failed before it wrote anything leaves no empty --out behind
        if created and not checkpoints(out) and not (out / "log.jsonl").exists():
            if lock is not None:
                lock.release()
                lock = None
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            lock.release()


def load_splits(data_dir: Path, manifest: dict, accelerator) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation tokens in RAM: one copy per machine, shared by every local
    process (shared memory, mapped read-only), rather than one copy per process."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if accelerator.num_processes == 1 or local_world == 1:
        return (load_tokens(data_dir, "train", manifest=manifest),
                load_tokens(data_dir, "val", manifest=manifest))
    name = f"gpt2zh-{_token_from_rank0(accelerator)[:16]}"
    first = accelerator.local_process_index == 0
    return tuple(shared_tokens(data_dir, split, manifest, name, first, accelerator.wait_for_everyone)
                 for split in ("train", "val"))


def _token_from_rank0(accelerator) -> str:
    """A random hex token drawn by rank 0, the same in every process."""
    import uuid

    from accelerate.utils import broadcast_object_list

    token = [uuid.uuid4().hex if accelerator.is_main_process else None]
    broadcast_object_list(token, from_process=0)
    return token[0]


def refuse_unsupported(accelerator) -> None:
    """FSDP, DeepSpeed and Megatron shard the model and its optimizer: our checkpoints save
    the whole model from rank 0, which would be wrong under them. Stop before anything runs."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind in (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM):
        raise TrainingError(
            f"{kind.value} is not supported: gpt2zh checkpoints the full model from rank 0 and resumes exactly "
            "only under data parallelism. Models of these sizes (up to ~350 M parameters: weights, gradients "
            "and AdamW state under 6 GB) fit on every GPU, so plain DDP is the faster choice; launch without "
            "--use_fsdp / --use_deepspeed.")


def check_shared_run_dir(accelerator, out: Path) -> None:
    """Every process must see the run directory that rank 0 writes (a shared filesystem when
    there are several machines): rank 0 writes a random token there, everyone reads it back."""
    token = _token_from_rank0(accelerator)
    marker = out / ".rank0-token"
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text(token, encoding="utf-8")
    accelerator.wait_for_everyone()
    try:
        seen = marker.read_text(encoding="utf-8").strip()
    except OSError:
        seen = None
    ok = torch.tensor([float(seen == token)], device=accelerator.device)
    bad = accelerator.num_processes - int(accelerator.reduce(ok, "sum").item())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        marker.unlink(missing_ok=True)
    if bad:
        raise TrainingError(
            f"{bad} process(es) cannot see {out} as rank 0 wrote it: with several machines, --out must be on a "
            f"filesystem they all share (NFS, Lustre, ...) at the same path" +
            (f" (this process, on {socket.gethostname()}, does not)" if seen != token else ""))


class Throughput:
    """Training speed, measured over log windows, with evaluation and saving set aside:
    tokens/s and the share of step time spent waiting for data, per window and overall."""

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step
        self.window_start, self.window_steps, self.wait = time.perf_counter(), 0, 0.0
        self.total_wait, self.total_time, self.timed_steps = 0.0, 0.0, 0

    def waited(self, seconds: float) -> None:
        self.wait += seconds

    def stepped(self) -> None:
        self.window_steps += 1

    @contextlib.contextmanager
    def aside(self):
        """Time spent inside does not count against training speed."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.window_start += time.perf_counter() - t0

    def close_window(self) -> tuple[float, float]:
        """(tokens/s, data-wait share) of the window since the last one; a new window starts."""
        elapsed = max(time.perf_counter() - self.window_start, 1e-9)
        tps, share = self.window_steps * self.tokens_per_step / elapsed, self.wait / elapsed
        self.total_wait += self.wait
        self.total_time += elapsed
        self.timed_steps += self.window_steps
        self.window_start, self.window_steps, self.wait = time.perf_counter(), 0, 0.0
        return tps, share

    def seconds_per_step(self) -> float:
        return self.total_time / max(1, self.timed_steps)

    def summary(self) -> dict:
        t = self.total_time
        return {"tokens_per_s": self.timed_steps * self.tokens_per_step / t if t else None,
                "data_wait_share": self.total_wait / t if t else None}


def schedule_info(schedule: Schedule, cooled: bool) -> dict:
    """What a checkpoint records of its schedule (in gpt2zh.json, readable without torch)."""
    return {"total": schedule.total, "cooldown": schedule.cooldown, "cooled": cooled}


def rewind_for_cooldown(out: Path, newest: Path, total: int, tc) -> tuple[Path, str] | None:
    """(checkpoint, what it means) when a resumed run should not continue from `newest`: the
    run already cooled down and is now asked for more steps than it planned, so it goes back to
    the checkpoint where its cool-down began (warm-up, stable, decay: the stable phase goes on,
    and the run cools again at its new end). None: continue from `newest`."""
    sched = schedule_of(newest)
    if not sched.get("cooled") or total <= sched.get("total", 0):
        return None   # not cooled, or finishing the cool-down it was interrupted in
    starts = [c for c in checkpoints(out) if starts_cooldown(c) and step_of(c) < step_of(newest)]
    if not starts:
        print(f"warning: {newest} is past a cool-down whose starting checkpoint is gone: continuing from the "
              f"cooled weights at the fixed rate", file=sys.stderr)
        return None
    start = starts[-1]
    again = (f"cooling again over the last {tc.cooldown:.0%} of the {total:,} steps" if tc.cooldown else
             "with no --cooldown the rate then stays fixed to the end")
    return start, (f"{out} cooled down after step {step_of(start):,} (planned {sched.get('total', 0):,} steps); "
                   f"{total:,} steps are asked for, so it continues from the checkpoint where the cool-down began "
                   f"(step {step_of(start):,}) at the fixed rate {tc.lr:g}, {again}; the checkpoints after it are "
                   "set aside and best/ is kept")


def load_optimizer_states(optimizers, state: dict, tc, ckpt: Path) -> None:
    """The optimizers' states from a checkpoint (also one written before Muon existed)."""
    saved = state.get("optimizers") or [state["optimizer"]]
    kinds = state.get("optimizer_kinds") or ["AdamW"]
    want = [type(getattr(o, "optimizer", o)).__name__ for o in optimizers]
    if kinds != want:
        raise TrainingError(f"{ckpt} was trained with {'+'.join(kinds)}, and this run asks for {tc.optimizer} "
                            f"({'+'.join(want)}): resume with --optimizer {'muon' if 'Muon' in kinds else 'adamw'}, "
                            "or start a new run (--init-from the checkpoint) to switch optimizers")
    for o, sd in zip(optimizers, saved):
        o.load_state_dict(sd)


# ----------------------------------------------------------------------------
# One run, in three phases: set-up (a Setup and the State to start from), the loop, the summary


@dataclass
class Setup:
    """What one run is made of, built once before the loop."""
    model: torch.nn.Module       # as Accelerate wrapped it (DDP, compiled): what trains
    raw_model: torch.nn.Module   # the module itself: what is evaluated and saved
    optimizers: list
    loader: BatchLoader
    val_rows: EvalWindows
    char_len: torch.Tensor       # characters per token id, for perplexity per character
    max_steps: int
    resume_dir: Path | None
    info: dict                   # what every checkpoint records of the run


@dataclass
class State:
    """Where the run stands: what a checkpoint saves and a resume restores."""
    step: int = 0
    pos: Position = field(default_factory=Position)
    best: float | None = None


def _clean_run_dir(accelerator, out: Path) -> None:
    if accelerator.num_processes > 1:
        check_shared_run_dir(accelerator, out)
    if accelerator.is_main_process:
        removed = sweep(out)
        if removed:
            print(f"removed {len(removed)} leftover(s) of an interrupted save or delete in {out}: "
                  f"{', '.join(removed[:4])}{' ...' if len(removed) > 4 else ''}", file=sys.stderr)
    accelerator.wait_for_everyone()


def _resume_dir(job: TrainJob, out: Path, main: bool) -> Path | None:
    found = checkpoints(out)
    if job.resume and not found and main:
        print(f"no complete checkpoint in {out}/checkpoints; starting from scratch", file=sys.stderr)
    if not job.resume and found and main:
        print(f"warning: {out} holds checkpoints of an earlier run; starting afresh (use --resume to continue)",
              file=sys.stderr)
    return found[-1] if job.resume and found else None


def _restore(accelerator, out: Path, resume_dir: Path | None, rewound: bool, optimizers, tc) -> State:
    """The optimizers' states, the position and the RNG of `resume_dir`; a fresh State without one."""
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    if resume_dir is None:
        torch.manual_seed(tc.seed + rank)  # dropout differs per rank, repeatably
        return State()
    state = torch.load(resume_dir / "trainer_state.pt", weights_only=False,
                       map_location=device if device.type != "cpu" else "cpu")  # (multi-node CPU: "cpu:0")
    load_optimizer_states(optimizers, state, tc, resume_dir)
    if rewound and accelerator.is_main_process:   # (only now: a refused resume must leave every checkpoint in place)
        for later in [c for c in checkpoints(out) if step_of(c) > step_of(resume_dir)]:
            retire(later)
    at = State(state["step"], Position(state["epoch"], state["batch"]), state.get("best_val_loss"))
    rng_file = resume_dir / f"rng_rank{rank}.pt"
    if rng_file.exists() and state.get("world_size") == world:
        set_rng_state(torch.load(rng_file, weights_only=False))
    else:
        torch.manual_seed(tc.seed + rank + at.step)
    if accelerator.is_main_process:
        print(f"resuming from {resume_dir} (step {at.step}, epoch {at.pos.epoch}, batch {at.pos.batch})",
              file=sys.stderr)
    return at


def _setup(job: TrainJob, accelerator, out: Path, data_dir: Path, use_compile: bool, mixed: str
           ) -> tuple[Setup, State]:
    """Data, model and optimizers on this rank, and the State to start from (a checkpoint's when resuming)."""
    tc = job.run.train
    main = accelerator.is_main_process
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    _clean_run_dir(accelerator, out)

    manifest = read_manifest(data_dir)
    tokens, val_tokens = load_splits(data_dir, manifest, accelerator)  # stops here, naming a corrupted shard
    tok = load_tokenizer(data_dir, manifest)
    if main and len(val_tokens):  # the human bands generate and serve judge chapters by (once per run)
        calibrate_shards(data_dir, out, tokens, val_tokens)

    resume_dir = _resume_dir(job, out, main)
    model, n_ctx = _model_for_job(job, resume_dir, tok, manifest)
    if int(tokens.max(initial=0)) >= model.config.vocab_size:
        raise TrainingError("a token id in the shards is outside the model's vocabulary")
    windows = Windows(tokens, n_ctx, tc.stride)
    if tc.batch_size % (world * tc.grad_accum):
        raise TrainingError(f"batch_size {tc.batch_size} must be divisible by processes ({world}) x grad_accum "
                            f"({tc.grad_accum})")
    loader = BatchLoader(windows, tc.batch_size, tc.seed, rank, world, pin=device.type == "cuda",
                         prefetch=tc.prefetch)
    max_steps = tc.max_steps if tc.max_steps is not None else math.ceil((tc.epochs or 1) * loader.batches_per_epoch)

    rewound = False
    if resume_dir is not None:
        back = rewind_for_cooldown(out, resume_dir, max_steps, tc)
        if back is not None:   # more steps for a run that already cooled: from where its cool-down began
            resume_dir, note = back
            model, rewound = load_model(resume_dir), True
            if main:
                print(note, file=sys.stderr)
    raw_model = model.to(device)
    raw_model.train()
    fused = tc.fused_adamw == "on" or (tc.fused_adamw == "auto" and device.type == "cuda")
    optimizers = make_optimizers(raw_model, tc, fused=fused)
    model, *optimizers = accelerator.prepare(raw_model, *optimizers)
    state = _restore(accelerator, out, resume_dir, rewound, optimizers, tc)

    if main:
        n_params = sum(p.numel() for p in raw_model.parameters())
        print(f"model {n_params / 1e6:.2f} M parameters, n_ctx {n_ctx}, {len(windows):,} windows "
              f"(stride {windows.stride}), {loader.batches_per_epoch:,} steps/epoch, {world} process(es) on "
              f"{device.type}, precision {mixed if mixed != 'no' else 'fp32'}, compile {use_compile}, "
              f"{'Muon + ' if tc.optimizer == 'muon' else ''}{'fused ' if fused else ''}AdamW, lr {tc.lr:g}"
              + (f" cooling over the last {tc.cooldown:.0%}" if tc.cooldown else " fixed"),
              file=sys.stderr)
    info = {"config": job.run.to_dict(), "n_ctx": n_ctx, "data": str(data_dir),
            "tokenizer_sha256": manifest["tokenizer_sha256"]}
    char_len = torch.from_numpy(token_char_lengths(tok, raw_model.config.vocab_size)).to(device)
    return Setup(model, raw_model, optimizers, loader, EvalWindows(val_tokens, n_ctx, tc.eval_max_tokens),
                 char_len, max_steps, resume_dir, info), state


def _open_log(job: TrainJob, accelerator, out: Path, setup: Setup, state: State) -> RunLog:
    main = accelerator.is_main_process
    if main:
        (out / "run_config.json").write_text(json.dumps(job.run.to_dict(), indent=1), encoding="utf-8")
    live, notice = live_plot_for(job.live_plot) if main else (None, None)
    if notice:
        print(notice, file=sys.stderr)
    log = RunLog(out, main, accelerator, job.log_with, job.run, live)
    if setup.resume_dir is not None:
        log.resume_at(state.step)
    elif main and log.path.exists():
        log.path.unlink()  # a fresh run in an old directory starts a fresh log
    return log


class Loop:
    """The training loop of one rank: steps, logs sparingly, evaluates, saves, and honours
    SIGINT/SIGTERM and --max-minutes (every rank stops at the same step)."""

    def __init__(self, job: TrainJob, accelerator, out: Path, data_dir: Path, setup: Setup, state: State,
                 log: RunLog):
        self.job, self.tc, self.acc, self.out, self.data_dir = job, job.run.train, accelerator, out, data_dir
        self.s, self.at, self.log = setup, state, log
        self.main, self.world, self.device = accelerator.is_main_process, accelerator.num_processes, accelerator.device
        tc, n_ctx = self.tc, setup.info["n_ctx"]
        self.local_micro = tc.batch_size // self.world // tc.grad_accum
        self.speed = Throughput(tc.batch_size * n_ctx)
        self.fpt = flops_per_token(setup.raw_model, n_ctx)
        self.peak = job.peak_tflops * 1e12 if job.peak_tflops else peak_flops(self.device)
        self.budget_s = job.max_minutes * 60 if job.max_minutes else None
        self.schedule = Schedule(tc.warmup_steps, tc.cooldown, setup.max_steps, self.budget_s)
        # resumed in the middle of a cool-down
        self.cooling = setup.resume_dir is not None and bool(schedule_of(setup.resume_dir).get("cooled"))
        self.loss_sum = torch.zeros((), device=self.device)
        self.bad = torch.zeros((), dtype=torch.bool, device=self.device)
        self.clock = 0.0   # seconds since the start as the schedule reads them: the same number on every rank
        self.last_saved: Path | None = None
        self.results: dict = {}
        self.status = "finished"
        self.t_start = time.time()

    # -- the loop

    def run(self) -> None:
        from .progress import progress_bar

        s, at = self.s, self.at
        stop = StopSignal()
        self.bar = progress_bar(total=s.max_steps, initial=at.step, desc="train", unit="step",
                                disable=not (self.main and self.job.progress), dynamic_ncols=True)
        it = s.loader.iterate(at.pos)
        try:
            while at.step < s.max_steps:
                t0 = time.perf_counter()
                p, batch = next(it)
                self.speed.waited(time.perf_counter() - t0)
                lr = self.step(batch.to(self.device, non_blocking=True))
                at.pos = (Position(p.epoch, p.batch + 1) if p.batch + 1 < s.loader.batches_per_epoch
                          else Position(p.epoch + 1, 0))
                at_log = at.step % self.tc.log_interval == 0 or at.step == s.max_steps
                stop_now, over_time = self.should_stop(at_log, stop.requested)
                if at_log or stop_now:
                    self.log_window(lr)
                with self.speed.aside():   # evaluation and saving do not count against training speed
                    self.evaluate_and_save(stop_now)
                if stop_now:
                    self.status = "time budget reached" if over_time and not stop.requested else "interrupted"
                    break
        finally:
            self.bar.close()
            stop.restore()
            if self.job.log_with:
                self.acc.end_training()

    def step(self, batch: torch.Tensor) -> float:
        """One optimizer step on `batch` (this rank's share, in grad_accum micro-batches); the lr it used."""
        tc, at = self.tc, self.at
        if self.world == 1:
            self.clock = time.time() - self.t_start
        if not self.cooling and self.schedule.cooling(at.step, self.clock):
            self.cooling = True
            self.save_before_cooldown()
        lr = tc.lr * self.schedule.factor(at.step, self.clock)
        for g in (g for o in self.s.optimizers for g in o.param_groups):   # (load_state_dict replaces the groups)
            g["lr"] = lr
        model, micro = self.s.model, self.local_micro
        for m in range(tc.grad_accum):
            xb = batch[m * micro:(m + 1) * micro]
            sync = self.acc.no_sync(model) if m < tc.grad_accum - 1 else contextlib.nullcontext()
            with sync:
                loss = lm_loss(model, xb[:, :-1], xb[:, 1:]) / tc.grad_accum
                self.acc.backward(loss)
            self.loss_sum += loss.detach()
        self.bad |= ~torch.isfinite(self.loss_sum)
        if tc.grad_clip > 0:
            self.acc.clip_grad_norm_(model.parameters(), tc.grad_clip)
        for o in self.s.optimizers:
            o.step()
            o.zero_grad(set_to_none=True)
        at.step += 1
        self.speed.stepped()
        self.bar.update()
        return lr

    def should_stop(self, at_log: bool, requested: bool) -> tuple[bool, bool]:
        """(stop now, the time budget is spent). With several ranks they agree at log steps only,
        or one would wait forever in a collective."""
        over_time = self.budget_s is not None and time.time() - self.t_start > self.budget_s
        if self.world == 1:
            return requested or over_time, over_time
        if not at_log:
            return False, over_time
        flag = torch.tensor([float(requested or over_time), time.time() - self.t_start], device=self.device)
        stopping, self.clock = self.acc.reduce(flag, "mean").tolist()
        return stopping > 0, over_time   # (and a time-based cool-down reads one clock: no rank saves alone)

    def log_window(self, lr: float) -> None:
        """The mean loss and speed since the last log line; stops a run whose loss is not finite."""
        step = self.at.step
        mean_loss = self.acc.reduce(self.loss_sum.reshape(1), "mean").item() / self.speed.window_steps
        diverged = self.acc.reduce(self.bad.float().reshape(1), "sum").item() > 0
        if diverged or not math.isfinite(mean_loss):
            self.status = "diverged"
            good = self.last_saved or (checkpoints(self.out)[-1] if checkpoints(self.out) else "none")
            raise DivergedError(f"loss is {mean_loss} at step {step}: training diverged and was stopped. "
                                f"Last good checkpoint: {good}. Try a lower lr, a warm-up (warmup_steps=...), or fp32.")
        tps, data_wait = self.speed.close_window()
        mfu = tps * self.fpt / self.peak if self.peak else None
        rec = {"step": step, "loss": round(mean_loss, 6), "lr": lr,
               "tokens_per_s": round(tps, 1), "data_wait": round(data_wait, 4)}
        if mfu is not None:
            rec["mfu"] = round(mfu, 4)
        self.log.write(rec)
        if self.budget_s is not None and self.speed.total_time > 0:
            # the time budget may end the run first: the bar counts to where it will
            left = self.budget_s - (time.time() - self.t_start)
            self.bar.total = min(self.s.max_steps, step + max(0, int(left / self.speed.seconds_per_step())))
            self.bar.refresh()
        self.bar.set_postfix_str(f"loss {mean_loss:.3f} | {tps / 1e3:.1f}k tok/s"
                                 + (f" | MFU {mfu:.2f}" if mfu is not None else ""))
        self.loss_sum.zero_()

    def evaluate_and_save(self, stop_now: bool) -> None:
        s, at, tc = self.s, self.at, self.tc
        last = at.step == s.max_steps or stop_now
        if len(s.val_rows) and (at.step % tc.eval_interval == 0 or last):
            # the unwrapped model: ranks may run different numbers of eval batches, and a DDP
            # forward would wait for its peers
            ev = evaluate(s.raw_model, s.val_rows, max(1, self.local_micro), self.acc, s.char_len)
            self.log.write({"step": at.step, **ev})
            self.results.update(ev)
            if at.best is None or ev["val_loss"] < at.best:
                at.best = ev["val_loss"]
                save_best(self.acc, s.raw_model, self.out, self.data_dir, {**s.info, "step": at.step, **ev})
            if self.main:
                self.bar.write(f"step {at.step}: validation loss {ev['val_loss']:.4f}, perplexity {ev['val_ppl']:.2f} "
                               f"(per character {ev['val_ppl_char']:.2f}) on {ev['val_tokens']:,} tokens"
                               + (" (best)" if at.best == ev["val_loss"] else ""))
        if at.step % tc.save_steps == 0 or last:
            self.last_saved = self.save(cooled=self.cooling)

    def save_before_cooldown(self) -> None:
        """Where the fixed rate ends: kept, so that a longer run can continue from it."""
        s, step = self.s, self.at.step
        resumed_here = (s.resume_dir is not None and step_of(s.resume_dir) == step
                        and starts_cooldown(s.resume_dir))
        if step > 0 and not resumed_here:
            with self.speed.aside():
                self.save(cooled=False, pre_cooldown=True)

    def save(self, cooled: bool, pre_cooldown: bool = False) -> Path:
        s, at = self.s, self.at
        return save_checkpoint(self.acc, s.raw_model, s.optimizers, self.out, self.data_dir, at.step, at.pos,
                               {**s.info, "step": at.step, "best_val_loss": at.best, **self.results,
                                "schedule": schedule_info(self.schedule, cooled)}, self.tc.keep_last,
                               pre_cooldown=pre_cooldown)

    # -- the summary

    def summary(self) -> dict:
        """results.json (on rank 0), the final plot and one line saying how the run ended."""
        at, best = self.at, self.at.best
        results = {**self.results, "status": self.status, "steps": at.step, "world_size": self.world,
                   "best_val_loss": best, "best_val_ppl": math.exp(best) if best is not None else None,
                   **self.speed.summary(), "seconds": time.time() - self.t_start,
                   "checkpoint": str(self.last_saved) if self.last_saved else None}
        if self.device.type == "cuda":
            results["peak_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
        if self.main:
            (self.out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
            self.log.plot(final=True)
            msg = f"{self.status} at step {at.step}; checkpoint {self.last_saved}"
            if best is not None:
                msg += (f"; best validation perplexity {math.exp(best):.2f} on {results.get('val_tokens', 0):,} "
                        f"tokens (saved in {self.out / 'best'})")
            if self.status == "interrupted":
                msg += "; continue with --resume"
            print(msg, file=sys.stderr)
        return results


def _train(job: TrainJob, accelerator, out: Path, data_dir: Path, use_compile: bool, mixed: str) -> dict:
    setup, state = _setup(job, accelerator, out, data_dir, use_compile, mixed)
    loop = Loop(job, accelerator, out, data_dir, setup, state, _open_log(job, accelerator, out, setup, state))
    loop.run()
    return loop.summary()
