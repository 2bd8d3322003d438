"""Coordinate frames: round trips, smart_resize agreement, quantisation, frame validation."""

from __future__ import annotations

import numpy as np
import pytest
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from pr1.coords import check_frame, clip, frame_size, from_frame, normalise, quantise, to_frame

ABS = {"kind": "abs_resized", "factor": 28, "min_pixels": 3136, "max_pixels": 1003520}


@pytest.mark.parametrize("frame", [{"kind": "rel1000"}, ABS])
def test_round_trip(frame):
    rng = np.random.default_rng(0)
    size = (1234.0, 567.0)
    boxes = rng.uniform(0, 500, size=(10, 4))
    assert np.allclose(from_frame(to_frame(boxes, size, frame), size, frame), boxes)
    points = rng.uniform(0, 500, size=(7, 2))
    assert np.allclose(from_frame(to_frame(points, size, frame), size, frame), points)


def test_rel1000_values():
    assert np.allclose(to_frame([320, 240], (640, 480), {"kind": "rel1000"}), [500, 500])
    assert np.allclose(normalise([500, 250, 1000, 1000], (640, 480), {"kind": "rel1000"}), [0.5, 0.25, 1, 1])


def test_abs_resized_matches_smart_resize():
    h, w = smart_resize(567, 1234, factor=28, min_pixels=3136, max_pixels=1003520)
    assert frame_size((1234, 567), ABS) == (w, h)
    assert np.allclose(to_frame([1234, 567], (1234, 567), ABS), [w, h])


def test_quantise_keeps_boxes_non_degenerate_and_inside():
    q = quantise([[0.1, 0.1, 0.2, 0.2], [639.9, 479.9, 640, 480]], (640, 480), {"kind": "rel1000"})
    assert (q[:, 2] > q[:, 0]).all() and (q[:, 3] > q[:, 1]).all()
    assert q.max() <= 1000 and q.min() >= 0


def test_clip():
    assert clip([[-5, 3, 2000, 50]], (100, 40)).tolist() == [[0, 3, 100, 40]]


@pytest.mark.parametrize(
    "frame", [{"kind": "pixels"}, {"kind": "abs_resized", "factor": 28}, "rel1000", None]
)
def test_bad_frames_are_refused(frame):
    with pytest.raises(ValueError, match="frame"):
        check_frame(frame)
