"""`python -m pr1.data make|show ...`: write a synthetic dataset, or preview real data as pr1 reads it.

`make <task> --out DIR --n N --seed S [--knob value ...]` writes a synthetic dataset.
`show <task> <path> [--images DIR] [--format F] [--json] [--out preview.png]` prints the detected format,
the number of records, the skips per reason and the first record (with --json: one JSON object with the
stable keys format, n_records, skipped, first); --out draws the ground truth over the first few images.

Knobs are the keyword arguments of the task's generator in `pr1.data.synthetic` (e.g. `--max_count 10
--distractors 3`, `--relations true --layout refs`); list knobs take comma-separated values
(`--colors red,blue`). The dataset is written in the real on-disk format and loads with the real loader.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from typing import Any

from pr1.data import synthetic
from pr1.data.formats import FORMATS, load
from pr1.data.preview import KIND_OF_TASK, draw_preview, summary


def _coerce(name: str, text: str, default: Any) -> Any:
    """A knob's command-line text as the type of its default."""
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise SystemExit(f"--{name}: expected true or false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    if isinstance(default, (tuple, list)):
        return [v.strip() for v in text.split(",") if v.strip()]
    try:
        return type(default)(text) if default is not None else text
    except ValueError:
        raise SystemExit(f"--{name}: expected {type(default).__name__}, got {text!r}") from None


def parse_knobs(task: str, args: Sequence[str]) -> dict[str, Any]:
    """`--name value` pairs checked against the generator's signature; an unknown knob lists valid ones."""
    params = {
        p.name: p.default
        for p in inspect.signature(synthetic.MAKERS[task]).parameters.values()
        if p.default is not inspect.Parameter.empty
    }
    knobs: dict[str, Any] = {}
    it = iter(args)
    for flag in it:
        name = flag.removeprefix("--").replace("-", "_")
        if not flag.startswith("--") or name not in params:
            raise SystemExit(
                f"unknown knob {flag!r} for {task}; valid: {', '.join('--' + k for k in params)}"
            )
        value = next(it, None)
        if value is None:
            raise SystemExit(f"{flag} needs a value")
        knobs[name] = _coerce(name, value, params[name])
    return knobs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pr1.data", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="write a synthetic dataset in its real format", allow_abbrev=False)
    make.add_argument("task", choices=sorted(synthetic.MAKERS))
    make.add_argument("--out", required=True, help="output folder (created)")
    make.add_argument("--n", type=int, required=True, help="number of images")
    make.add_argument("--seed", type=int, default=0)
    show = sub.add_parser("show", help="preview real data as pr1 reads it", allow_abbrev=False)
    show.add_argument("task", choices=sorted(KIND_OF_TASK) + sorted(synthetic.MAKERS))
    show.add_argument("path")
    show.add_argument("--images", default=None, help="image folder (default: next to the annotations)")
    show.add_argument("--format", default="auto", choices=["auto", *FORMATS])
    show.add_argument("--split", default=None, help="refer layout: the split to read (default: all)")
    show.add_argument(
        "--json", action="store_true", help="one JSON object: format, n_records, skipped, first"
    )
    show.add_argument("--out", default=None, help="draw the ground truth over the first few images (PNG)")
    args, rest = parser.parse_known_args(argv)
    if args.command == "show":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        run_show(args)
        return
    knobs = parse_knobs(args.task, rest)
    path = synthetic.make(args.task, args.out, n=args.n, seed=args.seed, **knobs)
    records = synthetic.LOADERS[args.task](path.parent, "raise")
    print(f"wrote {len(records)} {args.task} records: {path}")


def run_show(args: argparse.Namespace) -> None:
    kind = KIND_OF_TASK.get(args.task, args.task)
    records = load(kind, args.path, format=args.format, images=args.images, split=args.split, on_error="skip")
    info = summary(records)
    if args.out:
        info["preview"] = str(draw_preview(records, args.out))
    if args.json:
        print(json.dumps(info, ensure_ascii=False))
        return
    print(f"format: {info['format']}\nrecords: {info['n_records']}")
    print(f"skipped: {info['skipped']['skipped']} {json.dumps(info['skipped']['by_reason'])}")
    for example in info["skipped"]["examples"]:
        print(f"  {example}")
    print(f"first: {json.dumps(info['first'], ensure_ascii=False, indent=2)}")
    if args.out:
        print(f"preview: {info['preview']}")


if __name__ == "__main__":
    main(sys.argv[1:])
