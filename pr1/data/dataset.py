"""A map-style dataset over records; images are opened lazily so a dataset of paths stays small."""

from __future__ import annotations

from PIL import Image
from torch.utils.data import Dataset


class RecordDataset(Dataset):
    """Yields the record with `pil` (an RGB PIL image) added; the record itself is never mutated."""

    def __init__(self, records: list[dict]):
        if not records:
            raise ValueError(
                "dataset is empty (no records loaded; check the data path and data.on_error skips)"
            )
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        with Image.open(rec["image"]) as im:
            pil = im.convert("RGB")
        return {**rec, "pil": pil}


def collate_records(batch: list[dict]) -> list[dict]:
    """Keep records as a list: the processor batches text and images together in the step."""
    return batch
