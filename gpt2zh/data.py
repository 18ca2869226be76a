"""Training data: one in-RAM token array, half-stride windows, and a prefetching,
resumable, rank-aware batch loader.

Nothing here grows with the corpus beyond the tokens themselves (shared between the local
processes): a window's start is computed from its index, an epoch's order is one uint32 per
window, and validation windows are cut from the validation tokens a batch at a time."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch


class Windows:
    """Windows of n_ctx + 1 tokens whose starts are `stride` apart (n_ctx // 2 by
    default), so every boundary between two windows sits inside another window."""

    def __init__(self, tokens: np.ndarray, n_ctx: int, stride: int | None = None):
        self.tokens = tokens
        self.block = n_ctx + 1
        self.stride = stride or max(1, n_ctx // 2)
        self.last = len(tokens) - self.block
        if self.last < 0:
            raise ValueError(f"{len(tokens)} tokens are fewer than one window of n_ctx + 1 = {self.block}")
        # one more window when the stride does not land on the last start, so that the tail of
        # the corpus is trained on too
        self.n = self.last // self.stride + 1 + (self.last % self.stride != 0)
        self._offsets = np.arange(self.block, dtype=np.int64)

    def __len__(self) -> int:
        return self.n

    def start(self, idx: np.ndarray) -> np.ndarray:
        return np.minimum(np.asarray(idx, dtype=np.int64) * self.stride, self.last)

    def gather(self, idx: np.ndarray) -> np.ndarray:
        """(len(idx), n_ctx + 1) int64 array: one vectorized fancy-index, no Python loop."""
        return self.tokens[self.start(idx)[:, None] + self._offsets].astype(np.int64)


@dataclass
class Position:
    """Where the loader stands: the next global batch is batch `batch` of epoch `epoch`."""

    epoch: int = 0
    batch: int = 0


class BatchLoader:
    """Global batches of `batch_size` windows, shuffled per epoch from `seed`. Rank r of
    `world` gets the r-th slice of every global batch, so ranks see disjoint windows and
    together form exactly the batch a single process would see."""

    def __init__(self, windows: Windows, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 pin: bool = False, prefetch: int = 4):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not divisible by {world} processes")
        if len(windows) < batch_size:
            raise ValueError(f"only {len(windows)} windows, fewer than one batch of {batch_size}; "
                             "use a smaller batch_size or n_ctx, or more text")
        self.windows, self.batch_size, self.seed = windows, batch_size, seed
        self.rank, self.world, self.pin, self.prefetch = rank, world, pin, prefetch
        self.batches_per_epoch = len(windows) // batch_size  # a partial last batch would unbalance ranks

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's window order: 4 bytes a window (the same order as permuting int64 indices)."""
        n = len(self.windows)
        return np.random.default_rng((self.seed, epoch)).permutation(
            np.arange(n, dtype=np.uint32 if n < 1 << 32 else np.int64))

    def _batches(self, start: Position) -> Iterator[tuple[Position, torch.Tensor]]:
        epoch, first = start.epoch, start.batch
        local = self.batch_size // self.world
        while True:
            perm = self.order(epoch)
            for b in range(first, self.batches_per_epoch):
                mine = perm[b * self.batch_size + self.rank * local: b * self.batch_size + (self.rank + 1) * local]
                batch = torch.from_numpy(self.windows.gather(mine))
                if self.pin:
                    batch = batch.pin_memory()
                yield Position(epoch, b), batch
            epoch, first = epoch + 1, 0

    def iterate(self, start: Position) -> Iterator[tuple[Position, torch.Tensor]]:
        """Endless (position, batch) pairs from `start`; prepared ahead in a thread."""
        gen = self._batches(start)
        if self.prefetch > 0:
            from prefetch_generator import BackgroundGenerator

            return iter(BackgroundGenerator(gen, max_prefetch=self.prefetch))
        return gen


class EvalWindows:
    """Non-overlapping (n_ctx + 1)-token windows stepping n_ctx, so each validation token
    is a target exactly once; the remainder is one shorter window, padded with -1. Cut from
    the tokens when asked for (`rows`), not stored."""

    def __init__(self, tokens: np.ndarray, n_ctx: int, max_tokens: int | None = None):
        self.tokens = tokens if max_tokens is None else tokens[: max_tokens + 1]
        self.n_ctx = n_ctx
        self.n = -(-(len(self.tokens) - 1) // n_ctx) if len(self.tokens) >= 2 else 0

    def __len__(self) -> int:
        return self.n

    def rows(self, idx) -> np.ndarray:
        """(len(idx), n_ctx + 1) int64 windows."""
        idx = np.asarray(idx, dtype=np.int64)
        out = np.full((len(idx), self.n_ctx + 1), -1, dtype=np.int64)
        for r, i in enumerate(idx.tolist()):
            w = self.tokens[i * self.n_ctx: i * self.n_ctx + self.n_ctx + 1]
            out[r, :len(w)] = w
        return out


def eval_windows(tokens: np.ndarray, n_ctx: int, max_tokens: int | None = None) -> np.ndarray:
    """Every validation window at once (EvalWindows.rows over all of them)."""
    w = EvalWindows(tokens, n_ctx, max_tokens)
    return w.rows(np.arange(len(w)))
