"""Data-parallel invariants on CPU (gloo, 2 processes): splitting the batch over processes or accumulation
steps must not change the algorithm. Rollouts are fixed completions (tests/ddp_worker.py) so the
comparison is exact; sampling differs across layouts by construction."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def run_worker(tmp_path, name, *args) -> dict:
    out = tmp_path / f"{name}.pt"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "ddp_worker.py"),
            str(out),
            "--data",
            str(tmp_path / "data"),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(out, weights_only=False)


def assert_same_update(a: dict, b: dict) -> None:
    """Same gradient at every optimizer step, and the same parameters after it.

    Gradients are compared relative to their overall scale: Adam divides by sqrt(v), so parameters whose
    gradient is float noise can move by lr either way, and parameters alone are an ill-posed comparison.
    """
    assert len(a["grads"]) == len(b["grads"]) > 0
    for ga, gb in zip(a["grads"], b["grads"], strict=True):
        scale = max(float(g.abs().max()) for g in ga.values())
        assert scale > 0
        for k, v in ga.items():
            torch.testing.assert_close(v, gb[k], rtol=1e-3, atol=1e-5 * scale, msg=k)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo"])
def test_one_process_two_processes_and_accumulation_agree(tmp_path, loss_type):
    big = run_worker(tmp_path, "big", "--batch", "4", "--loss-type", loss_type)
    ddp = run_worker(tmp_path, "ddp", "--devices", "2", "--batch", "2", "--loss-type", loss_type)
    acc = run_worker(tmp_path, "acc", "--batch", "2", "--accum", "2", "--loss-type", loss_type)
    init = run_worker(tmp_path, "init", "--batch", "4", "--loss-type", loss_type, "--steps", "0")
    assert any(not torch.equal(v, big["params"][k]) for k, v in init["params"].items()), "nothing was trained"
    assert not init["grads"]
    assert ddp["world"] == 2
    assert_same_update(big, ddp)
    assert_same_update(big, acc)
    # Logged loss: DDP's rank-0 value is the mean over processes, i.e. the global-batch loss.
    assert ddp["losses"][0] == pytest.approx(big["losses"][0], abs=1e-6)
    assert sum(acc["losses"]) / 2 == pytest.approx(big["losses"][0], abs=1e-6)
    assert big["samples_done"] == ddp["samples_done"] == acc["samples_done"] == 4


def test_checkpoint_on_two_processes_resumes_on_one(tmp_path):
    ckpt = tmp_path / "two.ckpt"
    # A tiny lr keeps Adam's noise-amplified moves of near-zero-gradient parameters from mattering.
    lr = ("--lr", "1e-6")
    run_worker(tmp_path, "first", "--devices", "2", "--batch", "1", "--ckpt", str(ckpt), *lr)
    resumed = run_worker(tmp_path, "resumed", "--batch", "2", "--steps", "2", "--resume", str(ckpt), *lr)
    straight = run_worker(tmp_path, "straight", "--batch", "2", "--steps", "2", *lr)
    assert resumed["samples_done"] == straight["samples_done"] == 4
    assert len(resumed["grads"]) == 1  # the second step only, after the restored first one
    for k, v in straight["grads"][1].items():
        scale = max(float(g.abs().max()) for g in straight["grads"][1].values())
        torch.testing.assert_close(v, resumed["grads"][0][k], rtol=1e-3, atol=1e-5 * scale, msg=k)
