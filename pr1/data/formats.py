"""One entry point for real data, `load(kind, path, ...)`: the format is detected from the file (or named with
`format=`), converted once to pr1's records, limited (`n`, `slice`), and every record's image is checked by
a header read. The result is `Records` (a list) with `.skip_report` and `.format`.

An unsupported file fails naming what it is: each format tried and why it did not match, and the supported
list. The task configs point `_target_` here; `task.<split>.path=` and `task.<split>.format=` choose the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pr1.data import grounding_rows as g
from pr1.data import pageocr, pixmo, pr1_json, refcoco
from pr1.data.coco import load_coco
from pr1.data.images import DEFAULT_MAX_PIXELS, verify_images
from pr1.data.records import FILE, ErrorPolicy, RecordError, Records, require
from pr1.data.tables import container_of, read_table

KINDS = ("grounding", "counting", "ocr", "detection")


@dataclass(frozen=True)
class Format:
    """A distribution: the columns that identify it (each group: any one of them), and its row parser."""

    name: str
    kind: str
    source: str
    needs: tuple[tuple[str, ...], ...]
    parse: Callable[[dict, int, g.Context, dict], list[dict]] | None = None  # None: a whole-file format

    def missing(self, columns: list[str]) -> list[str]:
        return ["|".join(group) for group in self.needs if not any(c in columns for c in group)]


def _pr1_jsonl(row: dict, i: int, ctx: g.Context, opts: dict) -> list[dict]:
    return [refcoco.parse_row(row, ctx.path, i, ctx.images)]


def _pixmo(row: dict, i: int, ctx: g.Context, opts: dict) -> list[dict]:
    image_dir = ctx.images or ctx.path.parent
    return [pixmo.parse_row(row, ctx.path, i, image_dir, opts["require_points"], opts["point_units"])]


def _page(row: dict, i: int, ctx: g.Context, opts: dict) -> list[dict]:
    return [pageocr.parse_row(row, ctx.path, i, ctx.images or ctx.path.parent)]


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("refer", "grounding", "refer toolkit folder: refs(<split_by>).p + instances.json", ()),
        Format(
            "lmms-lab-refcoco",
            "grounding",
            "lmms-lab/RefCOCO|RefCOCOplus|RefCOCOg parquet",
            (("question_id",), ("answer",), ("bbox",), ("image", "file_name")),
            lambda row, i, ctx, opts: g.lmms_lab(row, i, ctx),
        ),
        Format(
            "jxu124-refcoco",
            "grounding",
            "jxu124/refcoco|refcocoplus|refcocog parquet",
            (("ref_id",), ("sentences",), ("raw_image_info",), ("bbox", "raw_anns")),
            lambda row, i, ctx, opts: g.jxu124(row, i, ctx),
        ),
        Format(
            "vlm-r1-rec",
            "grounding",
            "VLM-R1 REC JSON/JSONL (rec_jsons_processed)",
            (("image",), ("solution",), ("normal_caption",)),
            lambda row, i, ctx, opts: g.vlm_r1(row, i, ctx),
        ),
        Format(
            "pr1-grounding",
            "grounding",
            "Perception-R1 grounding JSON (image, problem, solution|normalized_solution in 0-1000)",
            (("image",), ("problem",), ("solution", "normalized_solution")),
            lambda row, i, ctx, opts: pr1_json.grounding(row, i, ctx),
        ),
        Format(
            "internvl-refcoco",
            "grounding",
            "Qwen-VL / InternVL refcoco_*.jsonl",
            (("image",), ("sent",), ("bbox",), ("width",), ("height",)),
            lambda row, i, ctx, opts: g.internvl(row, i, ctx),
        ),
        Format(
            "pr1-grounding-jsonl",
            "grounding",
            "pr1 grounding JSONL (image, expression, bbox xyxy, width, height)",
            (("image",), ("expression",), ("bbox",), ("width",), ("height",)),
            _pr1_jsonl,
        ),
        Format(
            "pixmo-count",
            "counting",
            "allenai/pixmo-count parquet / JSONL / save_to_disk (label, count, points, image_url|image)",
            (("label",), ("count", "points"), ("image", "image_url", "image_sha256")),
            _pixmo,
        ),
        Format(
            "pr1-counting",
            "counting",
            "Perception-R1 counting JSON (image, problem, clicks in 0-1000)",
            (("image",), ("problem",), ("clicks",)),
            lambda row, i, ctx, opts: pr1_json.counting(row, i, ctx),
        ),
        Format(
            "pr1-counting-eval",
            "counting",
            "Perception-R1 PixMo-Count eval JSONL (image_path, question, ground_truth count)",
            (("image_path",), ("question",), ("ground_truth",)),
            lambda row, i, ctx, opts: pr1_json.counting_eval(row, i, ctx, opts["require_points"]),
        ),
        Format(
            "pageocr",
            "ocr",
            "page OCR JSONL/JSON (image, text) or GOT/Fox conversations JSON",
            (("image",), ("text", "conversations")),
            _page,
        ),
        Format("coco", "detection", "COCO instances JSON (images, annotations, categories)", ()),
        Format(
            "pr1-detection",
            "detection",
            "Perception-R1 detection JSON (image, problem, solution {target_id, target_box})",
            (("image",), ("problem",), ("solution",)),
            lambda row, i, ctx, opts: pr1_json.detection(row, i, ctx),
        ),
    )
}


def supported(kind: str | None = None) -> str:
    return "; ".join(f"{f.name} [{f.kind}]: {f.source}" for f in FORMATS.values() if kind in (None, f.kind))


def _unsupported(path: Path, kind: str, tried: list[str]) -> RecordError:
    return RecordError(
        path,
        FILE,
        "<format>",
        f"no {kind} format matches. Tried: {' | '.join(tried)}. Supported: {supported()}. "
        "Name one with task.<split>.format=NAME.",
        reason="unsupported_format",
    )


def _refs_folder(path: Path, split_by: str) -> bool:
    return (
        path.is_dir()
        and (path / "instances.json").is_file()
        and any((path / f"refs({split_by}){s}").is_file() for s in (".p", ".json"))
    )


def detect(kind: str, path: Path, split_by: str = "unc", split: str | None = None):
    """(format name, table or None) for `path`; an unsupported file raises naming every format tried."""
    tried = []
    if kind == "grounding":
        if _refs_folder(path, split_by):
            return "refer", None
        tried.append(f"refer: not a folder with refs({split_by}).p|.json and instances.json")
    if container_of(path) is None:
        what = "folder" if path.is_dir() else f"{path.suffix or 'suffix-less'} file"
        tried.append(f"table: a {what} is not JSONL, JSON, parquet, arrow or a save_to_disk folder")
        raise _unsupported(path, kind, tried)
    table = read_table(path, split)
    if kind == "detection":
        if table.container == "json" and {"images", "annotations", "categories"} <= set(table.columns):
            return "coco", None
        tried.append("coco: not a JSON object with images, annotations and categories")
    for fmt in FORMATS.values():
        if fmt.kind != kind or fmt.parse is None:
            continue
        missing = fmt.missing(table.columns)
        if not missing:
            return fmt.name, table
        tried.append(f"{fmt.name}: missing {', '.join(missing)}")
    tried.append(f"(the {table.container} rows have: {', '.join(table.columns[:20]) or 'no rows'})")
    raise _unsupported(path, kind, tried)


def _rows(fmt: Format, table, ctx: g.Context, opts: dict, on_error: str) -> Records:
    policy = ErrorPolicy(on_error)
    out: list[dict] = []
    for i, row in table:
        try:
            if isinstance(row, RecordError):
                raise row
            out += fmt.parse(row, i, ctx, opts)
        except RecordError as err:
            policy.handle(err)
    return Records(out, policy.skip_report(), fmt.name)


def _slice(value: object) -> slice:
    """A record slice from `[start, stop]`, `"start:stop"` or None (all)."""
    if value is None:
        return slice(None)
    if isinstance(value, str):
        parts = [int(p) if p.strip() else None for p in value.split(":")]
        return slice(*parts)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return slice(*value)
    raise ValueError(f"slice must be 'start:stop' or [start, stop], got {value!r}")


def load(
    kind: str,
    path: str | Path,
    format: str = "auto",
    images: str | Path | None = None,
    on_error: str = "raise",
    n: int | None = None,
    slice: object = None,
    max_image_pixels: int = DEFAULT_MAX_PIXELS,
    image_cache: str | Path | None = None,
    split: str | None = None,
    split_by: str = "unc",
    require_points: bool = True,
    point_units: str = "pixels",
    keep_empty: bool = False,
    annotations: str | Path | None = None,
    check_images: str = "header",
) -> Records:
    """Records of `kind` from `path` in any supported format (`format="auto"` detects it).

    `n` keeps the first N records whose image passes the checks, `slice` ("start:stop") selects records
    before that; `split`/`split_by` apply to the refer layout (other layouts are one file per split);
    `annotations` is the COCO config's older name for `path`; `check_images` is "header" (cheap, the
    default) or "full" (decodes every image, catching truncated files: see pr1.data.images for the cost).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    ErrorPolicy(on_error)
    path = require(annotations or path, f"{kind} data", "path", is_dir=Path(path).expanduser().is_dir())
    image_dir = require(images, "image folder", "images", is_dir=True) if images else None
    if format == "auto":
        name, table = detect(kind, path, split_by, split)
    else:
        if format not in FORMATS or FORMATS[format].kind != kind:
            raise ValueError(f"unknown {kind} format {format!r}; supported: {supported(kind)}")
        name, table = format, None
    fmt = FORMATS[name]
    if name == "refer":
        raw = refcoco.load_refcoco(path, images=image_dir, split=split, split_by=split_by, on_error=on_error)
    elif name == "coco":
        raw = load_coco(path, image_dir or path.parent, on_error=on_error, keep_empty=keep_empty)
    else:
        table = table or read_table(path, split)
        missing = fmt.missing(table.columns)
        if missing:
            raise _unsupported(path, kind, [f"{name} (named by format=): missing {', '.join(missing)}"])
        ctx = g.Context(path, image_dir, Path(image_cache).expanduser() if image_cache else None)
        opts = {"require_points": require_points, "point_units": point_units}
        raw = _rows(fmt, table, ctx, opts, on_error)
    return verify_images(
        raw[_slice(slice)], on_error, max_image_pixels, n, raw.skip_report, name, check=check_images
    )
