"""Half-stride windows and the rank-aware, resumable loader."""
from __future__ import annotations

import numpy as np
import pytest

from gpt2zh.data import BatchLoader, Position, Windows, eval_windows


def test_half_stride_windows_cover_every_boundary():
    tokens = np.arange(1000, dtype=np.uint16)
    w = Windows(tokens, n_ctx=64)
    assert w.stride == 32 and w.starts[1] - w.starts[0] == 32
    assert w.starts[-1] == 1000 - 65  # the tail is trained on too
    batch = w.gather(np.array([0, 3]))
    assert batch.shape == (2, 65) and batch.dtype == np.int64
    assert batch[1].tolist() == list(range(96, 161))
    with pytest.raises(ValueError, match="fewer than one window"):
        Windows(tokens[:10], n_ctx=64)


def test_ranks_split_each_global_batch_and_resume_where_they_stopped():
    w = Windows(np.arange(5000, dtype=np.uint16), n_ctx=16)
    single = BatchLoader(w, 8, seed=3, prefetch=0)
    r0 = BatchLoader(w, 8, seed=3, rank=0, world=2, prefetch=2)
    r1 = BatchLoader(w, 8, seed=3, rank=1, world=2, prefetch=0)
    for (p, a), (_, b0), (_, b1) in zip(single.iterate(Position()), r0.iterate(Position()), r1.iterate(Position())):
        assert np.array_equal(a.numpy(), np.concatenate([b0.numpy(), b1.numpy()]))
        if p.batch == 5:
            break
    later = next(iter(single.iterate(Position(0, 5))))
    assert later[0] == Position(0, 5) and np.array_equal(later[1].numpy(), a.numpy())
    # a new epoch is a new order
    last = single.batches_per_epoch
    p, first_of_next = next(iter(single.iterate(Position(1, 0))))
    assert p == Position(1, 0) and not np.array_equal(first_of_next.numpy(), next(iter(single.iterate(Position())))[1].numpy())
    assert last == len(w) // 8


def test_eval_windows_score_each_token_once():
    rows = eval_windows(np.arange(100, dtype=np.uint16), n_ctx=16)
    targets = rows[:, 1:][rows[:, 1:] >= 0]
    assert sorted(targets.tolist()) == list(range(1, 100))
