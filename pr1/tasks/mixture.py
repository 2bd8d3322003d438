"""A task mixture: one policy trained on several tasks at once, each sample routed to its own task.

In the manner of V-Triune (arXiv 2505.18129): every record carries the name of its task (`record["task"]`),
and its prompt, answer format, rewards, parser and metric are that task's. A prompt's G completions share the
record, so a group never mixes tasks. Reward terms are named `<task>/<term>`; a term scores NaN on another
task's rows ("does not apply"), which `Task.total` skips and the logged means ignore, so `train/<task>/...`
is the mean over that task's rows only. The selection metric `score` is the mean of each task's primary
metric (all are higher-is-better: acc50, count_acc, f1, ap), so no task dominates by its scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig

from pr1.parsing import Item
from pr1.tasks.base import Result, RewardTerm, RunOptions, Task

SCORE = "score"


class Mixture(Task):
    kind = "mixture"
    template = ""  # every prompt is the record's own task's

    def __init__(self, tasks: Mapping[str, Task], run: RunOptions, configs: Mapping[str, Any] | None = None):
        if not tasks:
            raise ValueError("a task mixture needs at least one task")
        self.tasks = dict(tasks)
        terms = [
            RewardTerm(f"{name}/{t.name}", t.weight, t.fn, t.needs_step)
            for name, task in self.tasks.items()
            for t in task.rewards
        ]
        super().__init__(terms, SCORE, run)
        # The same tasks in the other answer style, for records that ask for it (SFT warm starts in both).
        self._styled: dict[tuple[str, bool], Task] = {(n, run.thinking): t for n, t in self.tasks.items()}
        self._configs = dict(configs or {})

    @classmethod
    def build(cls, cfg: DictConfig, run: RunOptions) -> Mixture:
        """`cfg.tasks`: name -> a task config (conf/task/<name>.yaml's fields), each built as if alone."""
        if not cfg.get("tasks"):
            raise ValueError(f"task {cfg.name!r} (kind mixture) lists no tasks under task.tasks")
        tasks = {name: Task.from_config(sub, run) for name, sub in cfg.tasks.items()}
        return cls(tasks, run, configs=dict(cfg.tasks))

    # ------------------------------------------------------------------------------------------ routing
    def task_name(self, record: Mapping[str, Any]) -> str:
        name = record.get("task")
        if name not in self.tasks:
            raise KeyError(
                f"record {record.get('id')!r}: task {name!r} not in the mixture; valid: {sorted(self.tasks)}"
            )
        return name

    def task_of(self, record: Mapping[str, Any]) -> Task:
        """The record's task, in the answer style it asks for (`record["thinking"]`, default the run's)."""
        name = self.task_name(record)
        thinking = bool(record.get("thinking", self.thinking))
        key = (name, thinking)
        if key not in self._styled:
            if name not in self._configs:
                raise ValueError(
                    f"record {record.get('id')!r} asks for thinking={thinking}: needs the task configs"
                )
            run = RunOptions(thinking, self.run.frame, self.run.matcher)
            self._styled[key] = Task.from_config(self._configs[name], run)
        return self._styled[key]

    def groups(self, records: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {name: [] for name in self.tasks}
        for i, r in enumerate(records):
            out[self.task_name(r)].append(i)
        return {k: v for k, v in out.items() if v}

    def components(self) -> dict[str, frozenset[str]]:
        """Every task's components, named `<task>: <component>` (a mixture reads what its tasks read)."""
        return {
            f"{name}: {c}": opts for name, task in self.tasks.items() for c, opts in task.components().items()
        }

    # ---------------------------------------------------------------------- per-record, by the record's task
    def messages(self, record: Mapping[str, Any]) -> list[dict]:
        return self.task_of(record).messages(record)

    def prompt(self, record: Mapping[str, Any]) -> str:
        return self.task_of(record).prompt(record)

    def render(self, record: Mapping[str, Any]) -> str:
        return self.task_of(record).render(record)

    def reasoning(self, record: Mapping[str, Any]) -> str:
        return self.task_of(record).reasoning(record)

    def answer(self, record: Mapping[str, Any]) -> str:
        return self.task_of(record).answer(record)

    def items(self, completion: Any) -> list[Item]:
        raise TypeError("a mixture parses a completion by its record's task: use predicted_items")

    def predicted_items(self, completion: Any, record: Mapping[str, Any]) -> list[list[float]]:
        return self.task_of(record).predicted_items(completion, record)

    def truth_items(self, record: Mapping[str, Any]) -> list[list[float]]:
        return self.task_of(record).truth_items(record)

    # ------------------------------------------------------------------------------------------ scoring
    def score(
        self, completions: Sequence[Any], records: Sequence[Mapping[str, Any]], step: int | None = None
    ) -> dict[str, list[float]]:
        """Every `<task>/<term>` for every row: the term's score on its task's rows, NaN on the others."""
        out = {t.name: [math.nan] * len(records) for t in self.rewards}
        for name, rows in self.groups(records).items():
            sub = self.tasks[name].score([completions[i] for i in rows], [records[i] for i in rows], step)
            for term, values in sub.items():
                for i, v in zip(rows, values, strict=True):
                    out[f"{name}/{term}"][i] = v
        return out

    def evaluate(self, completions: Sequence[Any], records: Sequence[Mapping[str, Any]]) -> Result:
        """Each task's metrics on its own records as `<task>/<metric>`, and `score`: the mean of each task's
        primary metric over the tasks present (NaN-free: a task without validation records is left out)."""
        metrics: dict[str, float] = {}
        rows: list[dict | None] = [None] * len(records)
        primary = []
        for name, idx in self.groups(records).items():
            task = self.tasks[name]
            agg, sub_rows = task.evaluate([completions[i] for i in idx], [records[i] for i in idx])
            metrics.update({f"{name}/{k}": v for k, v in agg.items()})
            if task.metric in agg:
                primary.append(agg[task.metric])
            for i, row in zip(idx, sub_rows, strict=True):
                rows[i] = {"task": name, **row}
        if primary:
            metrics[SCORE] = float(sum(primary) / len(primary))
        return metrics, [r for r in rows if r is not None]
