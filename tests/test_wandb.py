"""W&B logging: a real offline run written by `wandb` (metrics, config, names, rollout tables), the box
drawing, the offline decision, and that the API key never reaches the run's files."""

from __future__ import annotations

import json
import logging
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import wandb
from omegaconf import open_dict
from PIL import Image
from wandb.proto import wandb_internal_pb2 as pb

from pr1.wandb_logging import (
    GREEN,
    RED,
    RolloutTable,
    draw_items,
    offline_reason,
    wandb_logger,
)
from tests.helpers import TINY_MODEL

FAKE_KEY = "pr1fake" + "0123456789abcdef" * 2 + "x"  # never a real key: only checked for leaks
TINY_RUN = [
    "logger=wandb",
    "sweep=wbtest",
    "task=grounding",  # the rollout table columns below are grounding's reward terms
    "matcher=naive",
    "thinking=true",
    *TINY_MODEL,
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.enable_progress_bar=false",
    "objective.num_generations=2",
    "objective.prompts_per_step=2",
    "objective.max_new_tokens=8",
    "task.train.n=16",
    "task.val.n=4",
    "callbacks.rollout_table.every_n_steps=1",
]


def wandb_records(path: Path) -> Iterator[pb.Record]:
    """The protobuf records of a `.wandb` file: a 7-byte header (`:W&B`, magic, version), then a LevelDB log
    (32 KiB blocks of chunks with a 7-byte header: crc32, length, type FULL=1/FIRST=2/MIDDLE=3/LAST=4)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B datastore file"
    pos, block, chunks = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # block trailer / zero padding
            pos += left
            continue
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """An offline W&B setup confined to tmp_path, with a fake key present to check it never leaks."""
    for var, sub in (
        ("WANDB_DATA_DIR", "wdata"),
        ("WANDB_CACHE_DIR", "wcache"),
        ("WANDB_CONFIG_DIR", "wconf"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    # A wandb-core service started earlier in this process (e.g. by wandb.Api() in the report tests) keeps its
    # own settings; start a fresh one under this environment.
    wandb.teardown()
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    return tmp_path


@pytest.mark.slow
def test_offline_run_holds_metrics_config_and_tables(compose, wandb_env):
    import pr1.run

    cfg = compose(*TINY_RUN, f"paths.root_dir={wandb_env}")
    with open_dict(cfg):
        del cfg["hydra"]  # as @hydra.main hands it over (HydraConfig stays set for the arm name)
    pr1.run.train(cfg)

    run_dir = Path(cfg.paths.run_dir)
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    records = list(wandb_records(next(offline.glob("run-*.wandb"))))
    by_type: dict[str, list] = {}
    for r in records:
        by_type.setdefault(r.WhichOneof("record_type"), []).append(getattr(r, r.WhichOneof("record_type")))

    # Names that make W&B's grouping the ablation dashboard.
    (run,) = by_type["run"]
    assert (run.project, run.run_group, run.job_type) == ("pr1", "wbtest", "rl")
    assert run.display_name == f"{cfg.arm},seed=0" and "matcher=naive" in cfg.arm
    assert list(run.tags) == [
        "matcher=naive",
        "thinking=true",
        "objective=rl",
        "model=tiny_scratch",
        "task=grounding",
    ]

    # The composed config, as pr1.run logs it.
    config = {u.key: json.loads(u.value_json) for c in by_type["config"] for u in c.update}
    assert {"arm", "seed", "sweep", "thinking", "matcher", "objective", "model", "task"} <= set(config)
    assert config["matcher"]["name"] == "naive" and config["thinking"] is True and config["seed"] == 0

    # Metrics, per step against trainer/global_step.
    history = [
        {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in h.item}
        for h in by_type["history"]
    ]
    train = [h for h in history if "train/reward" in h]
    assert [h["trainer/global_step"] for h in train] == [0, 1]  # Lightning's axis: batches before this one
    for key in (
        "train/reward/iou",
        "train/reward/iou_std",
        "train/reward/format",
        "train/frac_reward_zero_std",
        "train/kl",
        "train/clip_ratio",
        "train/completion_length",
        "train/entropy",
        "train/lr",
        "time/rollout",
    ):
        assert key in train[0], key
    assert any("val/acc50" in h for h in history)

    # One rollout table per step (not overwritten): run files + run_table artifacts with the drawn images.
    tables = [h for h in history if "samples/rollouts/_type" in h]
    assert [h["trainer/global_step"] for h in tables] == [0, 1]  # aligned with the train/* of its rollouts
    assert len(list((offline / "files/media/table/samples").glob("rollouts_*.table.json"))) == 2
    artifacts = [a for a in by_type["artifact"] if a.type == "run_table"]
    assert len(artifacts) == 2
    files = {c.path: Path(c.local_path) for c in artifacts[-1].manifest.contents}
    table = json.loads(files["samples/rollouts.table.json"].read_text())
    columns = ["image", "id", "prompt", "completion", "format", "iou", "reward", "advantage"]
    assert table["columns"] == columns and len(table["data"]) == 4  # 2 prompts x G=2
    row = dict(zip(columns, table["data"][0], strict=True))
    assert row["image"]["_type"] == "image-file" and "<think>" in row["prompt"]
    assert row["reward"] == pytest.approx(row["format"] + row["iou"])
    image = Image.open(files[row["image"]["path"]])
    assert GREEN in {c for _, c in image.convert("RGB").getcolors(1 << 16)}  # the ground-truth box

    # The API key is in the environment only: never in the run dir (config, logs, W&B files) or staging.
    for path in [*run_dir.rglob("*"), *(wandb_env / "wdata").rglob("*")]:
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def test_draw_truth_green_prediction_red():
    image = Image.new("RGB", (100, 80), "white")
    out = draw_items(
        image, truth=[[10, 10, 50, 50]], pred=[[90, 70, 60, 20], [30.0, 65.0], [float("nan")] * 4]
    )
    assert out.getpixel((10, 30)) == GREEN and out.getpixel((50, 30)) == GREEN
    assert out.getpixel((60, 40)) == RED and out.getpixel((75, 70)) == RED  # corners given in either order
    assert out.getpixel((30, 65)) == RED  # a point: a cross at it
    assert out.getpixel((30, 30)) == (255, 255, 255) and image.getpixel((10, 30)) == (255, 255, 255)


def test_table_rows_show_the_parsed_prediction(compose, grounding_records):
    from pr1.data.dataset import RecordDataset
    from pr1.module import Sample
    from pr1.tasks import RunOptions, Task

    task = Task.from_config(compose().task, RunOptions(thinking=False, frame={"kind": "rel1000"}))
    rec = RecordDataset(grounding_records)[0]
    samples = [
        Sample(rec, text, r, a, {"format": f, "iou": i})
        for text, r, a, f, i in ((task.answer(rec), 2.0, 0.7, 1.0, 1.0), ("no idea", -1.0, -0.7, -1.0, 0.0))
    ]
    columns, rows = RolloutTable.table(SimpleNamespace(task=task), samples)
    assert columns == ["image", "id", "prompt", "completion", "format", "iou", "reward", "advantage"]
    prompt = task.messages(rec)[0]["content"][1]["text"]
    assert rows[0][1:] == [rec["id"], prompt, task.answer(rec), 1.0, 1.0, 2.0, 0.7]
    right, junk = ({c for _, c in row[0].image.convert("RGB").getcolors(1 << 16)} for row in rows)
    assert RED in right  # the correct answer's box, drawn over the ground truth
    assert RED not in junk and GREEN in junk  # nothing parsed: only the ground truth


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_without_key_or_network_and_explicit_mode_wins(tmp_path, monkeypatch, caplog):
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("WANDB_MODE", "online")
    assert offline_reason() is None  # explicit mode: not second-guessed
    monkeypatch.delenv("WANDB_MODE")
    assert "no W&B API key" in offline_reason()

    server = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("WANDB_BASE_URL", server)
    netrc.write_text(f"machine 127.0.0.1:{server.rsplit(':', 1)[1]} login user password {FAKE_KEY}\n")
    assert offline_reason(probe_timeout=1.0) == f"cannot reach {server}"

    with caplog.at_level(logging.WARNING, logger="pr1"):
        logger = wandb_logger(save_dir=str(tmp_path / "run"), project="pr1")
    assert f"wandb sync {tmp_path / 'run' / 'wandb'}/offline-run-*-{logger.version}" in caplog.text
    assert FAKE_KEY not in caplog.text


def test_run_id_follows_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    first = wandb_logger(save_dir=str(tmp_path), checkpoint=str(ckpt)).version
    assert wandb_logger(save_dir=str(tmp_path), checkpoint=str(ckpt)).version != first  # nothing to resume
    ckpt.parent.mkdir()
    ckpt.touch()
    second = wandb_logger(save_dir=str(tmp_path), checkpoint=str(ckpt)).version
    assert wandb_logger(save_dir=str(tmp_path), checkpoint=str(ckpt)).version == second  # resumed run
    assert wandb_logger(save_dir=str(tmp_path), resume=False, checkpoint=str(ckpt)).version != second
