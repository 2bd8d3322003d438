"""Weights & Biases for pr1: a WandbLogger that falls back to offline mode, and a table of sample rollouts.

`conf/logger/wandb.yaml` builds the logger with `wandb_logger` (the group/job_type/name/tags that make W&B's
grouping by config keys the ablation dashboard) and adds `RolloutTable`, which every N steps logs the images
with ground-truth (green) and predicted (red) boxes/points next to prompt, completion, reward terms and
advantage. The API key is only ever read to decide the mode, never passed on, logged or stored.
"""

from __future__ import annotations

import logging
import math
import netrc
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from PIL import Image, ImageDraw

from pr1.coords import clip
from pr1.resume import wandb_run_id

log = logging.getLogger("pr1")

DEFAULT_HOST = "https://api.wandb.ai"
GREEN = (0, 200, 0)
RED = (255, 0, 0)


# ------------------------------------------------------------------------------------------------- logger
def _has_credentials(host: str) -> bool:
    """Whether wandb would find credentials: the env (key or identity token file) or a netrc entry."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = Path(os.environ.get("NETRC") or "~/.netrc").expanduser()
    try:
        return bool(netrc.netrc(path).authenticators(urlsplit(host).netloc))
    except (OSError, netrc.NetrcParseError):
        return False


def _reachable(host: str, timeout: float) -> bool:
    """A TCP connect to the W&B server: without network an online run would stall in retries instead."""
    url = urlsplit(host)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def offline_reason(probe_timeout: float = 3.0) -> str | None:
    """Why this run must be offline (no credentials, or the server unreachable), or None to let wandb decide.

    An explicit WANDB_MODE (online, offline, disabled) always wins, so nothing is probed then.
    """
    if os.environ.get("WANDB_MODE"):
        return None
    host = os.environ.get("WANDB_BASE_URL") or DEFAULT_HOST
    if not _has_credentials(host):
        return "no W&B API key (WANDB_API_KEY or a ~/.netrc entry)"
    if not _reachable(host, probe_timeout):
        return f"cannot reach {host}"
    return None


def _run_id(save_dir: Path, resume: bool, checkpoint: str | None) -> str | None:
    """The W&B run id (`pr1.resume.wandb_run_id`) on rank zero, the only rank with a W&B run.

    A requeued (preempted) job then continues its W&B run instead of adding a second run for the same seed,
    which would count twice when W&B averages a group.
    """
    return wandb_run_id(save_dir, resume, checkpoint) if rank_zero_only.rank == 0 else None


def axis_tag(axis: str, value: Any) -> str:
    """`axis=value` spelled as on the command line (`thinking=true`, not Python's `True`)."""
    return f"{axis}={str(value).lower() if isinstance(value, bool) else value}"


def wandb_logger(
    save_dir: str,
    axes: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    resume: bool = True,
    checkpoint: str | None = None,
    probe_timeout: float = 3.0,
    **kwargs: Any,
) -> WandbLogger:
    """Lightning's WandbLogger, offline by itself when there is no API key or no network.

    `axes` (ablation axis -> value) become one tag each, after `tags`. kwargs go to WandbLogger / wandb.init
    (project, entity, group, job_type, name, ...). `resume` and `checkpoint` mirror pr1.run's resume rule so
    that the W&B run id follows the training state.
    """
    reason = offline_reason(probe_timeout)
    run_id = _run_id(Path(save_dir), resume, checkpoint)
    if reason:
        _say_offline(reason, Path(save_dir) / "wandb", run_id)
    all_tags = [*tags, *(axis_tag(k, v) for k, v in (axes or {}).items())]
    # mode= rather than WandbLogger(offline=True), which sets WANDB_MODE for the whole process and so for
    # the next jobs of a multirun too.
    if reason:
        kwargs["mode"] = "offline"
    if reason or os.environ.get("WANDB_MODE") in ("offline", "dryrun"):
        # No resume lookup offline: wandb would ask the server for the run's resume status (and hang or fail
        # without network); `wandb sync` later joins the offline folders of one run id.
        kwargs["resume"] = None
    return WandbLogger(save_dir=save_dir, id=run_id, tags=all_tags, **kwargs)


@rank_zero_only
def _say_offline(reason: str, wandb_dir: Path, run_id: str) -> None:
    log.warning(
        "W&B runs offline (%s): the run is written to %s. Upload it later with:  wandb sync %s",
        reason,
        wandb_dir,
        wandb_dir / f"offline-run-*-{run_id}",
    )


class FinishWandbRun(L.Callback):
    """Finishes the W&B run when fit ends; Lightning leaves it open until the process exits.

    Without this the next job of a Hydra multirun in the same process would log into the previous job's run,
    and an offline run is only complete (summary, exit record) once finished. A preempted job is marked so.
    """

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._finish(trainer, exit_code=0)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # SystemExit is a submitit requeue after pr1 checkpointed a preempted job (see RunRecorder).
        self._finish(trainer, exit_code=1, preempted=isinstance(exception, SystemExit))

    @staticmethod
    def _finish(trainer: L.Trainer, exit_code: int, preempted: bool = False) -> None:
        if not trainer.is_global_zero:
            return
        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger):
                if preempted:
                    lg.experiment.mark_preempting()
                lg.experiment.finish(exit_code=exit_code)


# ------------------------------------------------------------------------------------------------ drawing
def _pixel_items(coords: Sequence[Sequence[float]], size: Sequence[float]) -> list[list[float]]:
    """Finite points/boxes clipped to the image; boxes get ordered corners (PIL rejects x2 < x1)."""
    out = []
    for c in coords:
        xy = clip(c, size).tolist()
        if len(xy) not in (2, 4) or not all(math.isfinite(v) for v in xy):
            continue
        if len(xy) == 4:
            xy = [min(xy[0], xy[2]), min(xy[1], xy[3]), max(xy[0], xy[2]), max(xy[1], xy[3])]
        out.append(xy)
    return out


def draw_items(
    image: Image.Image, truth: Sequence[Sequence[float]], pred: Sequence[Sequence[float]]
) -> Image.Image:
    """A copy of the image with ground truth in green and predictions in red (drawn last, on top)."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 150))
    for items, color in ((truth, GREEN), (pred, RED)):
        for xy in _pixel_items(items, out.size):
            if len(xy) == 4:
                draw.rectangle(xy, outline=color, width=width)
            else:
                r = 2 * width
                x, y = xy
                draw.line([x - r, y - r, x + r, y + r], fill=color, width=width)
                draw.line([x - r, y + r, x + r, y - r], fill=color, width=width)
    return out


# ------------------------------------------------------------------------------------------------ callback
def _prompt_text(messages: list[dict]) -> str:
    return "\n".join(
        part["text"]
        for m in messages
        for part in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}])
        if isinstance(part.get("text"), str)
    )


class RolloutTable(L.Callback):
    """Every `every_n_steps` optimizer steps, a W&B table of the last rollout batch (first `max_rows` rows).

    Logged under `key` once per trigger, so W&B keeps one table per step to compare over time.
    Columns: image (truth green, prediction red), id, prompt, completion, each reward term, reward, advantage.
    """

    def __init__(self, every_n_steps: int = 50, max_rows: int = 16, key: str = "samples/rollouts"):
        self.every_n_steps = max(int(every_n_steps), 1)
        self.max_rows = int(max_rows)
        self.key = key
        self._prev_step = 0

    @staticmethod
    def _logger(trainer: L.Trainer) -> WandbLogger | None:
        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._prev_step = trainer.global_step  # a resumed run counts its N steps from where it is
        if self._logger(trainer) is None:
            rank_zero_warn("RolloutTable has no WandbLogger to log to: no rollout tables will be written")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step, prev = trainer.global_step, self._prev_step
        self._prev_step = step
        # global_step moves by mu (num_iterations) per batch: log whenever a multiple of N was passed.
        if step // self.every_n_steps == prev // self.every_n_steps or not trainer.is_global_zero:
            return
        logger = self._logger(trainer)
        samples = (outputs or {}).get("samples", [])[: self.max_rows]
        if logger is None or not samples:
            return
        columns, rows = self.table(pl_module, samples)
        # The step Lightning logs this batch's train/* metrics at (it has no public name), so that in W&B the
        # table and the metrics of the same rollouts share one trainer/global_step.
        logger.log_table(
            self.key, columns=columns, data=rows, step=trainer.fit_loop.epoch_loop._batches_that_stepped
        )

    @staticmethod
    def table(pl_module: Any, samples: list) -> tuple[list[str], list[list[Any]]]:
        """Columns and rows of the table; reward terms in the task's order."""
        import wandb

        task = pl_module.task
        terms = list(samples[0].terms)
        rows = []
        for s in samples:
            rec = s.record
            truth = task.truth_items(rec)
            pred = task.predicted_items(s.completion, rec)
            rows.append(
                [
                    wandb.Image(draw_items(rec["pil"], truth, pred)),
                    str(rec.get("id", "")),
                    _prompt_text(task.messages(rec)),
                    s.completion,
                    *(float(s.terms[t]) for t in terms),
                    float(s.reward),
                    float(s.advantage),
                ]
            )
        return ["image", "id", "prompt", "completion", *terms, "reward", "advantage"], rows
