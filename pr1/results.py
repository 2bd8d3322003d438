"""The one home of run records: the results/ tree, the metrics.json schema, its writer and reader, and the
single summary of a history (`summarize_history`) that metrics.json, the report and W&B runs all use.

Layout: `results/<sweep>/<arm>/seed<k>/` holds `metrics.json` (`RunMetrics`), `history.jsonl` (one row per
logged step, `{"step": int, "<split>/<name>": float, ...}`, any metric may be missing from a row) and
`config.yaml`. Runs are killed (SLURM preemption, time limits, OOM), so every write here is atomic or
append-only: a killed run leaves the previous `metrics.json` whole and loses at most the history line being
written. JSON stays standard: NaN and ±inf are written as null.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import math
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal, TypedDict

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.jsonl"

# Characters kept verbatim in directory names: portable on POSIX and Windows file systems, and still
# readable for Hydra overrides (`matcher=naive,thinking=true`). Everything else becomes `_`.
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._,=+\-]")
_MAX_NAME_LEN = 200  # file systems cap a name at 255 bytes; leave room for the hash suffix


class RunMetrics(TypedDict):
    """Schema of `metrics.json`: written with status "running" at start, "completed"/"failed" at the end."""

    sweep: str
    arm: str
    seed: int
    status: Literal["running", "completed", "failed", "preempted"]
    error: str | None
    overrides: list[str]
    steps: int
    wall_time_s: float
    git_commit: str | None
    task_metric: str
    final: dict[str, float]
    best: dict[str, float]
    reward_start: float | None
    reward_end: float | None


def _jsonable(obj: Any) -> Any:
    """Standard-JSON form of obj: non-finite floats become None, numpy/torch values become Python ones."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars/arrays and torch tensors
        return _jsonable(obj.tolist())
    return obj


def fsync_dir(path: Path) -> None:
    """Persist a rename: without it a power loss can forget the new directory entry."""
    # Some file systems (network mounts) refuse fsync on a directory; the rename itself already happened.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write obj as JSON so that readers see either the old file or the new one, never a partial one."""
    write_text_atomic(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write text so that readers see either the old file or the new one, never a partial one.

    The text goes to a hidden temp file in the same directory (same file system, so `os.replace` is an
    atomic rename), is fsynced, then renamed over `path`. On any error the temp file is removed and `path` is
    left as it was; a temp file left by a killed process is removed at the next run's start
    (`pr1.checkpointing.remove_stale_temps`). Created with the process umask, so results stay group-readable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def append_jsonl(path: str | os.PathLike[str], row: Mapping[str, Any]) -> None:
    """Append one JSON line and fsync it, so a killed run loses at most the line being written.

    If the file ends without a newline (a previous process died mid-line and this one resumed), a newline
    is written first so the new row stays parseable and only the partial line is lost.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(_jsonable(row), allow_nan=False) + "\n").encode()
    with open(path, "a+b") as f:  # writes always go to the end; reading checks the last byte
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = b"\n" + line
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a JSONL file; unparsable lines (a run killed mid-write) are skipped, counted and logged."""
    rows: list[dict[str, Any]] = []
    bad: list[int] = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError
                row = None
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad.append(lineno)
    if bad:
        log.warning(
            "%s: skipped %d unreadable line(s) (line %s); a run killed mid-write leaves a partial line",
            path,
            len(bad),
            ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else ""),
        )
    return rows


def dedupe_steps(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """History rows merged into one per step, sorted by step.

    Rows of one step are merged, since train and val metrics of a step are often logged in separate calls;
    where they share a key the later row wins: a run resumed from a checkpoint re-logs the steps after it,
    and the re-logged values are the ones the finished run followed. Rows without an integer step are
    dropped, since they cannot be placed on a curve.
    """
    by_step: dict[int, dict[str, Any]] = {}
    for row in rows:
        step = row.get("step")
        if isinstance(step, int) and not isinstance(step, bool):
            by_step.setdefault(step, {}).update(row)
    return [by_step[s] for s in sorted(by_step)]


def _finite(value: Any) -> float | None:
    """value as a float if it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


REWARD_KEY = "train/reward"
REWARD_WINDOW = 0.2  # reward_start/end: the mean over the first/last 20% of the logged steps


def window_mean(values: Sequence[float], frac: float, last: bool) -> float | None:
    """Mean of the first or last `frac` of a series (at least one point); None if empty."""
    if not values:
        return None
    k = max(1, int(round(len(values) * frac)))
    chosen = values[-k:] if last else values[:k]
    return sum(chosen) / len(chosen)


def summarize_history(
    rows: Iterable[Mapping[str, Any]],
    task_metric: str,
    reward_key: str = REWARD_KEY,
    reward_window: float = REWARD_WINDOW,
) -> dict[str, Any]:
    """The `final`, `best`, `reward_start` and `reward_end` fields of metrics.json, from history rows.

    final: the val/* metrics of the last validation. best: the val/* metrics of the validation with the
    highest `task_metric` (the one that picked best.ckpt; the later one on a tie), so final and best are
    each one consistent row. reward_start/end: the mean `reward_key` over the first/last `reward_window`
    share of the logged steps, since one GRPO batch's reward is too noisy to compare on its own. A metric
    logged as NaN (null) stays null; missing values are None or absent.
    """
    validations: list[dict[str, Any]] = []
    rewards: list[float] = []
    for row in dedupe_steps(rows):
        vals = {k: _finite(v) for k, v in row.items() if k.startswith("val/")}
        if vals:
            validations.append(vals)
        if (r := _finite(row.get(reward_key))) is not None:
            rewards.append(r)
    best: dict[str, Any] = {}
    for vals in validations:
        value = vals.get(task_metric)
        if value is not None and value >= best.get(task_metric, float("-inf")):
            best = vals
    return {
        "final": validations[-1] if validations else {},
        "best": best,
        "reward_start": window_mean(rewards, reward_window, last=False),
        "reward_end": window_mean(rewards, reward_window, last=True),
    }


class RunRecordError(Exception):
    """A run dir whose metrics.json cannot be used; `status` says how (missing, corrupt, invalid)."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def _schema_problem(m: Any) -> str | None:
    """Why a parsed metrics.json cannot be used, or None; checks just what the readers rely on."""
    if not isinstance(m, dict):
        return f"metrics.json holds a {type(m).__name__}, not an object"
    missing = sorted(RunMetrics.__required_keys__ - m.keys())
    if missing:
        return f"metrics.json lacks {', '.join(missing)}"
    if not isinstance(m["arm"], str) or not isinstance(m["status"], str):
        return "metrics.json: arm and status must be strings"
    if not isinstance(m["seed"], int) or isinstance(m["seed"], bool):
        return "metrics.json: seed must be an integer"
    if not isinstance(m["final"], dict) or not isinstance(m["best"], dict):
        return "metrics.json: final and best must be objects"
    if m["error"] is not None and not isinstance(m["error"], str):
        return "metrics.json: error must be a string or null"
    return None


def read_run_metrics(run_dir: str | os.PathLike[str]) -> RunMetrics:
    """A run dir's metrics.json, checked against the schema; any way it is broken is a RunRecordError."""
    try:
        m = json.loads((Path(run_dir) / METRICS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RunRecordError(
            "missing", "no metrics.json: the run never started or died before writing it"
        ) from e
    except (OSError, ValueError) as e:
        raise RunRecordError("corrupt", f"unreadable metrics.json: {e}") from e
    if problem := _schema_problem(m):
        raise RunRecordError("invalid", problem)
    return m


def mark_failed(run_dir: str | os.PathLike[str], meta: Mapping[str, Any], error: str) -> None:
    """Set metrics.json's status to failed with `error` (creating a schema-complete one from `meta` if the run
    never wrote one); a run already marked failed keeps its first error, and a completed one stays completed
    (a later command that fails before training, a rerun of the finished run, did not undo its training)."""
    path = Path(run_dir) / METRICS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        blank = {"overrides": [], "steps": 0, "wall_time_s": 0.0, "git_commit": None, "task_metric": None}
        data = {**blank, "final": {}, "best": {}, "reward_start": None, "reward_end": None, **meta}
    if data.get("status") not in ("failed", "completed"):
        data.update(status="failed", error=error)
        write_json_atomic(path, data)


def _override_key(override: str) -> str:
    """The config key of a Hydra override, without the `+`, `++` or `~` prefix."""
    return override.split("=", 1)[0].lstrip("+~")


def arm_name(overrides: Iterable[str], exclude: Sequence[str]) -> str:
    """The arm id of a run: its ablation overrides, sorted by key, joined by commas.

    Overrides whose key matches a pattern in `exclude` (conf/config.yaml's `arm_exclude`: fnmatch patterns,
    matched after stripping Hydra's `+`/`++`/`~` prefixes) are left out, so all seeds
    of an arm, and the same arm run on another cluster or step budget, share one id. A run with no
    ablation override is the "default" arm. Override strings are kept verbatim otherwise.
    """
    kept = [o for o in overrides if not any(fnmatch.fnmatchcase(_override_key(o), p) for p in exclude)]
    return ",".join(sorted(kept, key=lambda o: (_override_key(o), o))) or "default"


def safe_name(name: str) -> str:
    """name as one portable directory name, unchanged when it already is one.

    Characters outside `A-Za-z0-9._,=+-` become `_`, and names over 200 characters are cut. Whenever the
    name had to change (or is empty, `.` or `..`), `-` and 8 hex digits of its SHA-1 are appended, so two
    different arms never share a run directory: `data.tasks=[a,b]` -> `data.tasks=_a,b_-<hash>`.
    """
    safe = _UNSAFE_CHARS.sub("_", name)[:_MAX_NAME_LEN]
    if safe != name or safe.strip(".") == "":
        safe = f"{safe or '_'}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return safe
