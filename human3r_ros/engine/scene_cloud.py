"""Which pointmap pixels make the scene cloud, decided where the pointmap lives.

One rule for every cloud: the node's and human3r-process's bags (selected on the device, so
that only the kept points cross to the host: ``Human3REngine.cloud_only``), and clouds built
afterwards from a frame's dense maps (``ros.msg_arrays.cloud_points``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class CloudSelection:
    """Every ``stride``-th row and column; finite points with confidence >= ``min_confidence``;
    with ``remove_humans``, pixels whose human probability is < ``mask_threshold``."""

    stride: int = 1
    min_confidence: float = 1.0
    remove_humans: bool = False
    mask_threshold: float = 0.5

    def __post_init__(self):
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")


@dataclass
class SceneCloud:
    """The kept points of one frame. points (N,3) float32, world frame, metres; pixels (N,)
    int64 row-major indices into the H x W model-input image (colours: ``image.reshape(-1, 3)``)."""

    points: np.ndarray
    pixels: np.ndarray


def kept_pixels(points, conf, human_mask, selection: CloudSelection):
    """(N,) row-major indices into the H x W grid of the pixels ``selection`` keeps, in order.
    ``points`` (H,W,3); ``conf`` / ``human_mask`` (H,W) or None (not filtered on). numpy arrays
    give numpy indices; torch tensors give torch indices on their device (the node's frames
    are selected where the network left them)."""
    on_torch = isinstance(points, torch.Tensor)
    step = selection.stride
    finite = (torch if on_torch else np).isfinite(points[::step, ::step])
    keep = finite[..., 0] & finite[..., 1] & finite[..., 2]  # numpy: 10x faster than .all(axis=-1)
    if conf is not None:
        keep &= conf[::step, ::step] >= selection.min_confidence
    if selection.remove_humans and human_mask is not None:
        keep &= human_mask[::step, ::step] < selection.mask_threshold
    flat = keep.reshape(-1)
    kept = flat.nonzero(as_tuple=True)[0] if on_torch else flat.nonzero()[0]
    if step == 1:
        return kept
    columns = keep.shape[1]  # of the decimated grid: back to the full one
    return (kept // columns) * (step * points.shape[1]) + (kept % columns) * step
