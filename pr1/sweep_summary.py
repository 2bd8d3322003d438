"""The end of a multirun: a summary of every arm (completed, failed and why, missing), the swept axes, and the
swept run-wide options that no component of the run reads, and swept synthetic domains that no data loader of
the run reads (their arms are identical: compute spent twice).

The Hydra callback writes `<sweep dir>/sweep_summary.json`; `pr1.report` uses the same axis and reader logic.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pr1.results import METRICS_FILE, RunRecordError, _override_key, read_run_metrics, write_json_atomic
from pr1.tasks import Task

log = logging.getLogger("pr1")

CONFIG_FILE = "config.yaml"
DEFAULT_VALUE = "(default)"  # the value of an axis in an arm that does not override it
# Override keys that set a run-wide option (pr1.tasks.RunOptions) -> that option; other keys are assumed read.
RUN_WIDE_KEYS = {
    "thinking": "thinking",
    "matcher": "matcher",
    "matcher.name": "matcher",
    "model.frame": "frame",
}


# The loader that reads the `domain` config group's knobs (conf/task/<task>.yaml); real-data loaders do not.
SYNTHETIC_LOADER = "pr1.data.synthetic.load_or_make"


@functools.cache
def default_arm_exclude() -> tuple[str, ...]:
    """conf/config.yaml's `arm_exclude`, for runs whose saved config lacks it."""
    conf = Path(__file__).resolve().parents[1] / "conf" / "config.yaml"
    return tuple(OmegaConf.load(conf).arm_exclude)


def arm_axes(overrides: Iterable[str], exclude: Sequence[str]) -> dict[str, str]:
    """The ablation overrides of a run as key -> value (the ones its arm id is made of, pr1.results.arm_name);
    Hydra's True/False are written true/false, as typed."""
    axes = {}
    for o in overrides:
        key = _override_key(o)
        if "=" in o and not any(fnmatch.fnmatchcase(key, p) for p in exclude):
            axes[key] = re.sub(r"^(True|False)$", lambda m: m.group(1).lower(), o.split("=", 1)[1])
    return axes


def swept_axes(arms: Iterable[Mapping[str, str]]) -> dict[str, list[str]]:
    """Override keys that take more than one value across arms -> their sorted values (DEFAULT_VALUE where an
    arm leaves the key alone)."""
    arms = list(arms)
    keys = sorted({k for a in arms for k in a})
    values = {k: sorted({a.get(k, DEFAULT_VALUE) for a in arms}) for k in keys}
    return {k: v for k, v in values.items() if len(v) > 1}


def run_wide_option(key: str) -> str | None:
    """The run-wide option an override key sets (`model.frame.kind` sets frame), or None."""
    if key in RUN_WIDE_KEYS:
        return RUN_WIDE_KEYS[key]
    return "frame" if key.startswith("model.frame.") else None


@dataclass(frozen=True)
class Unread:
    """A swept override whose run-wide option no component of `task` reads (for a domain: no data loader)."""

    key: str
    option: str
    task: str
    components: tuple[str, ...]

    @property
    def message(self) -> str:
        return f"{self.key}: read by nothing in task {self.task} (components: {', '.join(self.components)})"

    def as_dict(self) -> dict:
        return {
            "override": self.key,
            "option": self.option,
            "task": self.task,
            "components": list(self.components),
            "message": self.message,
        }


def task_of(cfg: DictConfig) -> Task:
    """The run's Task, built from its saved config as pr1.run builds it."""
    from pr1.resolvers import run_options  # deferred: it loads transformers (pr1.model), seconds to import

    return Task.from_config(cfg.task, run_options(cfg))


def unread_overrides(axes: Iterable[str], tasks: Sequence[tuple[str, Task]]) -> list[Unread]:
    """The swept run-wide options that no component reads, per task name, over the runs' (name, Task).

    A task counts as reading an option if any of its runs reads it (the arms of one task differ only in
    their overrides, which may change the rewards). Sorted by (override, task).
    """
    options = {k: o for k in axes if (o := run_wide_option(k)) is not None}
    read: dict[tuple[str, str], bool] = {}
    components: dict[str, tuple[str, ...]] = {}
    for name, task in tasks:
        components.setdefault(name, tuple(task.components()))
        for key, option in options.items():
            read[(key, name)] = read.get((key, name), False) or bool(task.readers(option))
    return [
        Unread(key, options[key], name, components[name]) for (key, name), r in sorted(read.items()) if not r
    ]


def is_domain_key(key: str) -> bool:
    """An override of the synthetic data's distribution: `domain=zoom` or `domain.<task>.<knob>=...`."""
    return key == "domain" or key.startswith("domain.")


def data_loaders(cfg: DictConfig) -> list[str]:
    """`<split> <part>: <loader>` for each split of a run's task, per part of a mixture."""
    out = []
    for split in ("train", "val"):
        node = OmegaConf.select(cfg, f"task.{split}")
        if node is None:
            continue
        parts = node.get("parts") or {str(cfg.task.name): node}
        out += [f"{split} {name}: {part.get('_target_')}" for name, part in parts.items()]
    return out


def unread_domains(keys: Iterable[str], configs: Sequence[DictConfig]) -> list[Unread]:
    """The swept domain overrides that no data loader reads, per task name, over the runs' saved configs: a
    task reads the domain if any of its runs loads synthetic data (real-data tasks never do)."""
    read: dict[str, bool] = {}
    loaders: dict[str, tuple[str, ...]] = {}
    for cfg in configs:
        name, found = str(cfg.task.name), data_loaders(cfg)
        loaders.setdefault(name, tuple(found))
        read[name] = read.get(name, False) or any(x.endswith(f": {SYNTHETIC_LOADER}") for x in found)
    return [
        Unread(k, "domain", name, loaders[name]) for k in keys for name, r in sorted(read.items()) if not r
    ]


def load_config(run_dir: str | Path) -> DictConfig:
    """A run's saved config.yaml (resolved when pr1.run wrote it)."""
    cfg = OmegaConf.load(Path(run_dir) / CONFIG_FILE)
    if not isinstance(cfg, DictConfig):
        raise ValueError(f"{Path(run_dir) / CONFIG_FILE} holds a list, not a config")
    return cfg


def read_run_dir(
    run_dir: str | Path, overrides: Iterable[str]
) -> tuple[dict[str, str], DictConfig | None, str]:
    """A run dir's ablation axes (from its metrics.json overrides, less its config's arm_exclude), its saved
    config, and why that config could not be read ("" when it could)."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        cfg, error = load_config(run_dir), ""
    except FileNotFoundError:
        cfg, error = None, f"no {CONFIG_FILE}"
    except (OSError, ValueError) as e:  # OmegaConf's YAML errors are ValueErrors
        # Without the run dir's path: the report stays the same wherever the results tree lies.
        cfg, error = (
            None,
            f"unreadable {CONFIG_FILE}: {type(e).__name__}: {str(e).replace(str(path), CONFIG_FILE)}",
        )
    exclude = list(cfg.arm_exclude) if cfg is not None and "arm_exclude" in cfg else default_arm_exclude()
    return arm_axes(overrides, exclude), cfg, error


def check_overrides(runs: Sequence[tuple[str, Mapping[str, str], DictConfig | None, str]]) -> dict:
    """The swept axes over runs given as (label, axes, saved config or None, why it is None), the swept
    run-wide options no component reads and the swept domains no data loader reads, and the runs whose
    readers are unknown (no config, or one that the current code cannot build) with the reason."""
    axes = swept_axes(run_axes for _, run_axes, _, _ in runs)
    run_wide = any(run_wide_option(k) for k in axes)
    domains = [k for k in axes if is_domain_key(k)]
    tasks, configs, unknown = [], [], []
    if run_wide or domains:
        for label, _, cfg, error in runs:
            if cfg is None:
                unknown.append({"run": label, "error": error})
                continue
            configs.append(cfg)
            if not run_wide:
                continue
            try:
                tasks.append((str(cfg.task.name), task_of(cfg)))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                unknown.append({"run": label, "error": f"{type(e).__name__}: {e}"})
    unread = sorted(
        [*unread_overrides(axes, tasks), *unread_domains(domains, configs)], key=lambda u: (u.key, u.task)
    )
    return {"swept": axes, "unread_overrides": [u.as_dict() for u in unread], "readers_unknown": unknown}


def summarize(sweep_dir: str | Path) -> dict:
    """Status of every run dir (`<arm>/seed<k>/metrics.json`) under a sweep dir, and its overrides check."""
    runs, checked = [], []
    for path in sorted(Path(sweep_dir).glob(f"*/seed*/{METRICS_FILE}")):
        try:
            m = read_run_metrics(path.parent)
        except RunRecordError as e:
            runs.append({"run": str(path.parent), "status": "unreadable", "error": str(e)})
            continue
        metric = m.get("task_metric")
        runs.append(
            {
                "run": str(path.parent),
                "arm": m.get("arm"),
                "seed": m.get("seed"),
                "status": m.get("status"),
                "error": m.get("error"),
                "steps": m.get("steps"),
                "metric": metric,
                "final": m["final"].get(metric),
            }
        )
        checked.append((str(path.parent), *read_run_dir(path.parent, m.get("overrides") or [])))
    failed = [r for r in runs if r["status"] != "completed"]
    return {
        "runs": runs,
        "completed": len(runs) - len(failed),
        "not_completed": len(failed),
        **check_overrides(checked),
    }


class SweepSummary(Callback):
    """Writes `<sweep dir>/sweep_summary.json` and logs one line per arm at the end of a multirun."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        summary = summarize(sweep_dir)
        write_json_atomic(sweep_dir / "sweep_summary.json", summary)
        log.info(
            "sweep %s: %d completed, %d not completed",
            sweep_dir,
            summary["completed"],
            summary["not_completed"],
        )
        for r in summary["runs"]:
            detail = f"{r['metric']}={r['final']}" if r["status"] == "completed" else f"error: {r['error']}"
            log.info("  %-8s %s  %s", r["status"], Path(r["run"]).relative_to(sweep_dir), detail)
        for u in summary["unread_overrides"]:
            log.warning("swept override has no effect: %s; its arms are identical", u["message"])
        for r in summary["readers_unknown"]:
            log.warning("cannot tell which components read the overrides of %s: %s", r["run"], r["error"])
