"""Training data: one in-RAM token array, half-stride windows, and a prefetching,
resumable, rank-aware batch loader."""
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
        last = len(tokens) - self.block
        if last < 0:
            raise ValueError(f"{len(tokens)} tokens are fewer than one window of n_ctx + 1 = {self.block}")
        starts = np.arange(0, last + 1, self.stride, dtype=np.int64)
        if starts[-1] != last:  # one more window so the tail of the corpus is trained on too
            starts = np.append(starts, last)
        self.starts = starts
        self._offsets = np.arange(self.block, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def gather(self, idx: np.ndarray) -> np.ndarray:
        """(len(idx), n_ctx + 1) int64 array: one vectorized fancy-index, no Python loop."""
        return self.tokens[self.starts[idx][:, None] + self._offsets].astype(np.int64)


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
        return np.random.default_rng((self.seed, epoch)).permutation(len(self.windows))

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


def eval_windows(tokens: np.ndarray, n_ctx: int, max_tokens: int | None = None) -> np.ndarray:
    """Non-overlapping (n_ctx + 1)-token windows stepping n_ctx, so each validation token
    is a target exactly once; the remainder is one shorter window, padded with -1."""
    if max_tokens is not None:
        tokens = tokens[: max_tokens + 1]
    n = len(tokens)
    rows = []
    for s in range(0, max(n - 1, 0), n_ctx):
        w = tokens[s: s + n_ctx + 1].astype(np.int64)
        if len(w) < 2:
            break
        if len(w) < n_ctx + 1:
            w = np.concatenate([w, np.full(n_ctx + 1 - len(w), -1, dtype=np.int64)])
        rows.append(w)
    return np.stack(rows) if rows else np.zeros((0, n_ctx + 1), dtype=np.int64)
