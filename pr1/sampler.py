"""The training data order as a pure function of (seed, samples consumed, rank): resumable and rank-safe.

The run reads one endless stream of sample indices: epoch e is a seeded permutation of the dataset, and the
epochs follow each other. A global batch is the next B*W indices of the stream (B prompts per process, W
processes); rank r takes the r-th contiguous B of them. The position is the number of samples consumed,
so a resumed run - even on a different number of processes - continues at exactly the next unseen prompt,
and every prompt of an epoch is seen exactly once over all ranks. A prompt's G completions are generated on
the rank that owns the prompt, so a group is never split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list[int]]):
    """Yields this rank's batches, starting after the samples the run has already consumed.

    `samples_done()` is read at each `iter()`: Lightning restores the module state from a checkpoint before
    it iterates the loader, so a resumed run picks up its position there. One `iter()` is one Lightning
    epoch of `len(self)` batches.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        samples_done: Callable[[], int] = lambda: 0,
    ):
        self.global_batch = batch_size * world_size
        if num_samples < self.global_batch:
            raise ValueError(
                f"dataset has {num_samples} samples, fewer than one global batch "
                f"({batch_size} prompts x {world_size} processes)"
            )
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.samples_done = samples_done
        self._perms: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.num_samples // self.global_batch

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perms = {epoch: torch.randperm(self.num_samples, generator=gen)}
        return self._perms[epoch]

    def indices(self, start: int, count: int) -> list[int]:
        """Stream positions start .. start+count-1 as dataset indices."""
        out = []
        for pos in range(start, start + count):
            epoch, within = divmod(pos, self.num_samples)
            out.append(int(self.permutation(epoch)[within]))
        return out

    def batch(self, offset: int) -> list[int]:
        """This rank's share of the global batch that starts at stream position `offset`."""
        return self.indices(offset + self.rank * self.batch_size, self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        offset = int(self.samples_done())
        for step in range(len(self)):
            yield self.batch(offset + step * self.global_batch)
