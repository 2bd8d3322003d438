"""Coordinate frames: original-image pixels <-> the frame a model reads and writes coordinates in.

A frame is a dict from the model config:
- `{"kind": "rel1000"}` (Qwen2-VL): x, y relative to the image on 0..1000;
- `{"kind": "abs_resized", "factor": 28, "min_pixels": int, "max_pixels": int}` (Qwen2.5-VL): absolute pixels
  of the image as resized by the processor (`smart_resize`);
- Qwen3-VL is back to `rel1000` (`family_frame` cites the source).
Both are per-axis scalings of the original image, so IoU is the same in every frame and rewards compute it on
image-normalised coordinates ([0, 1] on both axes). Arrays hold points (last axis 2: x, y) or boxes (last axis
4: x1, y1, x2, y2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np

REL1000: Mapping[str, Any] = MappingProxyType({"kind": "rel1000"})
FRAME_KINDS = ("rel1000", "abs_resized")
FAMILIES = ("qwen2vl", "qwen25vl", "qwen3vl")


def family_frame(family: str, min_pixels: int, max_pixels: int) -> dict[str, Any]:
    """The frame a model family reads and writes coordinates in (abs_resized: its processor's resize limits).

    - Qwen2-VL: 0-1000 relative (Qwen2-VL report, arXiv:2409.12191, on visual grounding).
    - Qwen2.5-VL: absolute pixels of the image after the processor's `smart_resize` to multiples of 28 (patch
      14 x merge 2) (Qwen2.5-VL report, arXiv:2502.13923; the Qwen team in issue #721 of QwenLM/Qwen3-VL, the
      repository formerly named Qwen2.5-VL).
    - Qwen3-VL: 0-1000 relative again. The official grounding cookbook (QwenLM/Qwen3-VL,
      cookbooks/2d_grounding.ipynb) says: "Qwen3-VL's default coordinate system has been changed from the
      absolute coordinates used in Qwen2.5-VL to relative coordinates ranging from 0 to 1000", and its
      plotting code maps `x / 1000 * width`; the Qwen team repeats it in QwenLM/Qwen3-VL issue #1427 (scale
      the ground truth to 0-1000, after which any resize of the image leaves it valid).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; valid: {FAMILIES}")
    if family == "qwen25vl":
        return {
            "kind": "abs_resized",
            "factor": 28,
            "min_pixels": int(min_pixels),
            "max_pixels": int(max_pixels),
        }
    return dict(REL1000)


def check_frame(frame: Mapping[str, Any]) -> None:
    """Raise a ValueError naming what is wrong with a frame dict (called when a reward is built)."""
    kind = frame.get("kind") if isinstance(frame, Mapping) else None
    if kind not in FRAME_KINDS:
        raise ValueError(f"frame must be a mapping with kind in {FRAME_KINDS}, got {frame!r}")
    if kind == "abs_resized":
        missing = [k for k in ("min_pixels", "max_pixels") if k not in frame]
        if missing:
            raise ValueError(f"abs_resized frame needs {missing}, got {dict(frame)!r}")


@lru_cache(maxsize=4096)
def _resized(width: int, height: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    # Imported here: the module pulls in torch/torchvision (~10 s), which rel1000 users never need.
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    # smart_resize (and so the processor) refuses aspect ratios above 200; such an image gets the frame of the
    # image cut to 200:1, so a reward scores its record instead of raising.
    width, height = min(width, 200 * height), min(height, 200 * width)
    h, w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return w, h


def frame_size(image_size: Sequence[float], frame: Mapping[str, Any]) -> tuple[float, float]:
    """(width, height) of the frame's coordinate space for an image of `image_size` = (width, height)."""
    if frame["kind"] == "rel1000":
        return 1000.0, 1000.0
    width, height = (max(1, round(float(v))) for v in image_size)
    w, h = _resized(
        width, height, int(frame.get("factor", 28)), int(frame["min_pixels"]), int(frame["max_pixels"])
    )
    return float(w), float(h)


def _scale(xy: Any, sx: float, sy: float) -> np.ndarray:
    arr = np.asarray(xy, dtype=float)
    if arr.shape[-1] not in (2, 4):
        raise ValueError(f"expected points (…, 2) or boxes (…, 4), got shape {arr.shape}")
    return arr * np.tile([sx, sy], arr.shape[-1] // 2)


def to_frame(xy: Any, image_size: Sequence[float], frame: Mapping[str, Any]) -> np.ndarray:
    """Original-image pixels -> frame coordinates (floats)."""
    fw, fh = frame_size(image_size, frame)
    return _scale(xy, fw / float(image_size[0]), fh / float(image_size[1]))


def from_frame(xy: Any, image_size: Sequence[float], frame: Mapping[str, Any]) -> np.ndarray:
    """Frame coordinates -> original-image pixels (floats)."""
    fw, fh = frame_size(image_size, frame)
    return _scale(xy, float(image_size[0]) / fw, float(image_size[1]) / fh)


def normalise(xy: Any, image_size: Sequence[float], frame: Mapping[str, Any]) -> np.ndarray:
    """Frame coordinates -> image-normalised [0, 1] coordinates (where rewards are computed)."""
    fw, fh = frame_size(image_size, frame)
    return _scale(xy, 1.0 / fw, 1.0 / fh)


def quantise(xy: Any, image_size: Sequence[float], frame: Mapping[str, Any]) -> np.ndarray:
    """Original pixels -> the integer frame coordinates a model can write: the best achievable answer.

    Rewards compare predictions with the ground truth quantised this way, so the rendered answer scores
    exactly 1; boxes keep at least one frame unit of width and height, so a tiny object never degenerates.
    """
    fw, fh = frame_size(image_size, frame)
    q = np.clip(np.rint(to_frame(xy, image_size, frame)), 0, np.tile([fw, fh], np.shape(xy)[-1] // 2))
    if q.shape[-1] == 4:
        q[..., :2] = np.minimum(q[..., :2], [fw - 1, fh - 1])
        q[..., 2:] = np.maximum(q[..., 2:], q[..., :2] + 1)
    return q


def clip(xy: Any, size: Sequence[float]) -> np.ndarray:
    """Clip points/boxes to [0, width] x [0, height] (size = (width, height)); NaN stays NaN."""
    arr = np.asarray(xy, dtype=float)
    hi = np.tile(np.asarray(size, dtype=float), arr.shape[-1] // 2)
    return np.clip(arr, 0.0, hi)
