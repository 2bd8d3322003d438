"""Train/val loaders over task records, built once Lightning knows this process's rank."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from pr1.data.dataset import RecordDataset, collate_records
from pr1.data.records import empty_report
from pr1.sampler import StepBatchSampler


class RecordDataModule(L.LightningDataModule):
    """Training order comes from StepBatchSampler (resumable, rank-sharded); validation is unsharded."""

    def __init__(
        self,
        train: list[dict],
        val: list[dict] | None,
        prompts_per_step: int,
        seed: int,
        num_workers: int = 0,
        val_batch_size: int = 64,
    ):
        super().__init__()
        self.train_set = RecordDataset(train)
        self.val_set = RecordDataset(val) if val else None
        self.prompts_per_step, self.seed = prompts_per_step, seed
        self.num_workers, self.val_batch_size = num_workers, val_batch_size

    def skip_reports(self) -> dict[str, dict]:
        """What the loaders skipped under `data.on_error=skip`, per split (counts per reason, examples)."""
        return {
            split: dict(getattr(ds.records, "skip_report", None) or empty_report())
            for split, ds in (("train", self.train_set), ("val", self.val_set))
            if ds is not None
        }

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        sampler = StepBatchSampler(
            len(self.train_set),
            self.prompts_per_step,
            self.seed,
            rank=trainer.global_rank,
            world_size=trainer.world_size,
            samples_done=lambda: trainer.lightning_module.samples_done,
        )
        # Its own generator: iterating a loader must not draw from the global RNG, or a resumed run's
        # sampling would diverge from the uninterrupted run's (the loader is re-iterated after a restore).
        return DataLoader(
            self.train_set,
            batch_sampler=sampler,
            collate_fn=collate_records,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(
            self.val_set,
            batch_size=self.val_batch_size,
            shuffle=False,
            collate_fn=collate_records,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )
