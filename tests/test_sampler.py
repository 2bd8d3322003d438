"""The data order: resumable at any sample, every prompt once per epoch over all ranks, ranks disjoint."""

from __future__ import annotations

import pytest

from pr1.sampler import StepBatchSampler


def test_epoch_covers_each_sample_once_over_ranks():
    n, b, world = 24, 3, 2
    per_rank = [list(StepBatchSampler(n, b, seed=7, rank=r, world_size=world)) for r in range(world)]
    assert all(len(p) == n // (b * world) for p in per_rank)
    seen = [i for p in per_rank for batch in p for i in batch]
    assert sorted(seen) == list(range(n))
    assert all(len(batch) == b for p in per_rank for batch in p)


def test_ranks_split_what_one_process_sees():
    one = StepBatchSampler(24, 4, seed=1)
    two = [StepBatchSampler(24, 2, seed=1, rank=r, world_size=2) for r in range(2)]
    for offset in range(0, 48, 4):  # two epochs
        assert one.batch(offset) == two[0].batch(offset) + two[1].batch(offset)


def test_resume_continues_at_next_sample_even_on_other_world_size():
    done = {"n": 0}
    two = [
        StepBatchSampler(20, 2, seed=3, rank=r, world_size=2, samples_done=lambda: done["n"])
        for r in range(2)
    ]
    stream = two[0].indices(0, 60)
    first = [i for pair in zip(*[list(s) for s in two], strict=True) for b in pair for i in b]
    assert first == stream[:20]
    done["n"] = 12  # three global batches of 4 consumed by 2 processes; resume on 1 process with batch 4
    one = StepBatchSampler(20, 4, seed=3, samples_done=lambda: done["n"])
    assert [i for b in one for i in b] == stream[12:32]  # crosses into the second epoch seamlessly


def test_epochs_are_reshuffled_and_deterministic():
    s = StepBatchSampler(50, 5, seed=0)
    assert s.permutation(0).tolist() != s.permutation(1).tolist()
    assert sorted(s.indices(50, 50)) == list(range(50))
    assert StepBatchSampler(50, 5, seed=0).batch(65) == s.batch(65)
    assert StepBatchSampler(50, 5, seed=1).batch(65) != s.batch(65)


def test_too_small_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than one global batch"):
        StepBatchSampler(3, 2, seed=0, world_size=2)
