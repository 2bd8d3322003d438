"""Rows of an annotation file, whatever its container: JSONL, a JSON list, parquet (one file or a folder of
shards), an arrow file, or a `datasets.save_to_disk` folder. Parquet and arrow are read with the `datasets`
library from local paths only (nothing is downloaded). Image columns come back undecoded, as
{"bytes", "path"}, so a dataset of embedded images is not decoded at load time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pr1.data.records import FILE, LINE, RecordError, read_json, read_jsonl

CONTAINERS = ("jsonl", "json", "parquet", "arrow", "hf-disk")


@dataclass
class Table:
    """The rows of one annotation source and the column names its first row shows (for format sniffing)."""

    path: Path
    container: str
    columns: list[str]
    rows: list  # (index, dict | RecordError) pairs, or a datasets.Dataset (indexed lazily)

    def __iter__(self) -> Iterator[tuple[int, dict | RecordError]]:
        if isinstance(self.rows, list):
            yield from self.rows
            return
        yield from enumerate(self.rows)

    def first(self) -> dict | None:
        for _, row in self:
            return row if isinstance(row, dict) else None
        return None


def container_of(path: Path) -> str | None:
    """The container a path looks like, from its suffix or folder contents (None: not a table)."""
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return "hf-disk"
        if any(path.glob("*.parquet")):
            return "parquet"
        return None
    return {".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".arrow": "arrow"}.get(path.suffix)


def _undecoded(ds):
    """The dataset with its image columns cast to undecoded {"bytes", "path"} dicts."""
    import datasets

    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image):
            ds = ds.cast_column(name, datasets.Image(decode=False))
    return ds


def _hf(path: Path, container: str, split: str | None):
    import datasets

    if container == "parquet":
        files = sorted(str(p) for p in path.glob("*.parquet")) if path.is_dir() else [str(path)]
        ds = datasets.Dataset.from_parquet(files)
    elif container == "arrow":
        ds = datasets.Dataset.from_file(str(path))
    else:
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise RecordError(path, FILE, "split", f"choose one of the saved splits {sorted(ds)}")
            ds = ds[split]
    return _undecoded(ds)


def _first_byte(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(4096).lstrip()[:1]


def read_table(path: Path, split: str | None = None) -> Table:
    """Rows of `path`. JSON and JSONL are told apart by content, not suffix: a file starting with `[` is one
    JSON list (never read line by line), one with several objects is JSONL."""
    container = container_of(path)
    if container in ("json", "jsonl"):
        first = _first_byte(path)
        if first == b"[":
            container = "json"
        elif first == b"{" and container == "json" and len(path.read_bytes().strip().splitlines()) > 1:
            try:
                read_json(path)
            except RecordError:
                container = "jsonl"
    if container is None:
        raise RecordError(path, FILE, "<format>", "not a JSONL, JSON, parquet or arrow file or folder")
    if container == "jsonl":
        rows: list = list(read_jsonl(path))
    elif container == "json":
        data = read_json(path)
        if isinstance(data, dict) and isinstance(data.get("annotations"), list):
            return Table(path, "json", sorted(data), [])  # a COCO-style object, not a table of rows
        if not isinstance(data, list):
            raise RecordError(
                path, FILE, "<root>", f"expected a JSON list of rows, got {type(data).__name__}"
            )
        rows = [
            (i, r if isinstance(r, dict) else RecordError(path, i, LINE, "expected an object"))
            for i, r in enumerate(data)
        ]
    else:
        ds = _hf(path, container, split)
        return Table(path, container, list(ds.column_names), ds)
    first = next((r for _, r in rows if isinstance(r, dict)), {})
    return Table(path, container, sorted(first), rows)
