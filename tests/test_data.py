"""Half-stride windows and the rank-aware, resumable loader."""
from __future__ import annotations

import numpy as np
import pytest

from gpt2zh.data import BatchLoader, Position, Windows, eval_windows


def test_half_stride_windows_cover_every_boundary():
    tokens = np.arange(1000, dtype=np.uint16)
    w = Windows(tokens, n_ctx=64)
    starts = w.start(np.arange(len(w)))
    assert w.stride == 32 and starts[1] - starts[0] == 32 and len(w) == 31
    assert starts[-1] == 1000 - 65 and starts[-2] == 29 * 32  # the tail is trained on too
    even = Windows(np.arange(32 * 10 + 65, dtype=np.uint16), n_ctx=64)   # the stride lands on the last start
    assert len(even) == 11 and even.start(np.arange(11)).tolist() == [32 * i for i in range(11)]
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


def _four_local_processes(fn):
    """Run fn(rank, barrier) as four 'local processes' (threads with a shared barrier)."""
    import threading

    barrier = threading.Barrier(4, timeout=60)
    results, errors = [None] * 4, [None] * 4

    def run(rank):
        try:
            results[rank] = fn(rank, barrier.wait)
        except Exception as e:  # noqa: BLE001  (compared below)
            errors[rank] = e

    threads = [threading.Thread(target=run, args=(r,)) for r in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results, errors


def test_one_copy_of_the_tokens_per_machine(novel_shards):
    """The first local process reads and verifies; the others map the same memory; no file is
    left in shared memory afterwards."""
    from pathlib import Path

    from gpt2zh.shards import load_tokens, read_manifest, shared_tokens

    manifest = read_manifest(novel_shards)
    expected = load_tokens(novel_shards, "train", manifest=manifest)
    results, errors = _four_local_processes(
        lambda rank, barrier: shared_tokens(novel_shards, "train", manifest, "gpt2zh-test", rank == 0, barrier))
    assert errors == [None] * 4
    for r in results:
        assert np.array_equal(r, expected) and not r.flags.writeable
    assert not list(Path("/dev/shm").glob("gpt2zh-test*"))


def test_a_corrupted_shard_stops_every_local_process(novel_shards, tmp_path):
    from conftest import corrupted_copy
    from gpt2zh.shards import ShardError, read_manifest, shared_tokens

    data = corrupted_copy(novel_shards, tmp_path / "data", "train_042.bin")
    manifest = read_manifest(data)
    _, errors = _four_local_processes(
        lambda rank, barrier: shared_tokens(data, "train", manifest, "gpt2zh-test-bad", rank == 0, barrier))
    assert all(isinstance(e, ShardError) and "train_042.bin" in str(e) for e in errors), errors


@pytest.mark.parametrize("n,n_ctx", [(65, 64), (66, 64), (1000, 64), (4097, 128), (5000, 17)])
def test_window_starts_and_order_cost_nothing_per_token(n, n_ctx):
    """Starts computed from the index are the starts a stored array held; an epoch's order is
    4 bytes a window and the order an int64 permutation gave."""
    w = Windows(np.zeros(n, dtype=np.uint16), n_ctx)
    last, stride = n - (n_ctx + 1), max(1, n_ctx // 2)
    stored = np.arange(0, last + 1, stride)
    stored = stored if stored[-1] == last else np.append(stored, last)
    assert w.start(np.arange(len(w))).tolist() == stored.tolist()
    if len(w) >= 2:
        loader = BatchLoader(w, 1, seed=7, prefetch=0)
        order = loader.order(3)
        assert order.dtype == np.uint32
        assert order.tolist() == np.random.default_rng((7, 3)).permutation(len(w)).tolist()
