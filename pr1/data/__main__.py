"""`python -m pr1.data make <task> --out DIR --n N --seed S [--knob value ...]`: write a synthetic dataset.

Knobs are the keyword arguments of the task's generator in `pr1.data.synthetic` (e.g. `--max_count 10
--distractors 3`, `--relations true --layout refs`); list knobs take comma-separated values
(`--colors red,blue`). The dataset is written in the real on-disk format and loads with the real loader.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from typing import Any

from pr1.data import synthetic


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
    args, rest = parser.parse_known_args(argv)
    knobs = parse_knobs(args.task, rest)
    path = synthetic.make(args.task, args.out, n=args.n, seed=args.seed, **knobs)
    records = synthetic.LOADERS[args.task](path.parent, "raise")
    print(f"wrote {len(records)} {args.task} records: {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
