"""Per-frame geometry after the network: reset-chunk pose chaining, world pointmap, depth,
focal length, and un-letterboxing of Multi-HMR-resolution maps.

All functions take and return torch tensors (any device, float32 like the network) and work
on one frame at a time. Pixel coordinates put pixel centres at integers. Camera axes are
OpenCV's (x right, y down, z forward); poses are camera-to-world (c2w) 4x4 matrices.
The pose encoding (t, q) -> c2w conversion lives in human3r_ros.model.postprocess.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

WEISZFELD_ITERATIONS = 10
_MIN_RESIDUAL = 1e-8  # keeps Weiszfeld weights finite when a pixel is fitted exactly


class PoseChainer:
    """Streams chunk-relative camera poses to poses in the frame of the first chunk.

    With periodic resets the network restarts its world frame: a reset view is still
    expressed in the old chunk, and the next view is a second pass over the same image
    that opens the new chunk (its camera is taken as the new chunk's origin). Each
    chunk is therefore left-multiplied by the product of the reset views' poses before it.
    The copy view's outputs are dropped (push returns None for it), as the reference does.
    """

    def __init__(self) -> None:
        self._base: torch.Tensor | None = None  # product of past reset poses; None = identity
        self._next_is_copy = False

    def push(self, c2w_chunk: torch.Tensor, reset: bool) -> torch.Tensor | None:
        """c2w_chunk (4, 4): the view's pose in its chunk frame; reset: the view is a reset view.
        Returns the frame's world c2w (4, 4), or None for the view that follows a reset view."""
        if self._next_is_copy:
            self._next_is_copy = False
            return None
        c2w = c2w_chunk if self._base is None else self._base @ c2w_chunk
        if reset:
            self._base = c2w
            self._next_is_copy = True
        return c2w


def camera_to_world(c2w: torch.Tensor, pts_cam: torch.Tensor) -> torch.Tensor:
    """Apply c2w (4, 4) to points (..., 3)."""
    return pts_cam @ c2w[:3, :3].T + c2w[:3, 3]


def principal_point(true_shape: tuple[int, int], device=None) -> torch.Tensor:
    """(W//2, H//2) as float32 (x, y), the principal point Human3R assumes."""
    h, w = true_shape
    return torch.tensor([w // 2, h // 2], dtype=torch.float32, device=device)


def weiszfeld_focal(pts_cam: torch.Tensor, pp: torch.Tensor) -> torch.Tensor:
    """Single focal f (pixels) that best reprojects a camera pointmap (H, W, 3) onto its pixel
    grid, pixel = f * (x/z, y/z) + pp: least squares start, then iteratively re-weighted
    (L1 / Weiszfeld) refinements. Points with z = 0 are ignored (ratio set to 0). f >= 0."""
    h, w, _ = pts_cam.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=pts_cam.device), torch.arange(w, device=pts_cam.device), indexing="ij"
    )
    pixels = (torch.stack([xs, ys], -1) - pp).reshape(-1, 2)
    pts = pts_cam.reshape(-1, 3)
    ray = (pts[:, :2] / pts[:, 2:3]).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
    ray_dot_px = (ray * pixels).sum(-1)
    ray_dot_ray = ray.square().sum(-1)
    focal = ray_dot_px.mean() / ray_dot_ray.mean()
    for _ in range(WEISZFELD_ITERATIONS):
        weight = (pixels - focal * ray).norm(dim=-1).clip(min=_MIN_RESIDUAL).reciprocal()
        focal = (weight * ray_dot_px).mean() / (weight * ray_dot_ray).mean()
    return focal.clip(min=0.0)


def pinhole_intrinsics(focal: torch.Tensor, pp: torch.Tensor) -> torch.Tensor:
    """3x3 K with fx = fy = focal and principal point pp (x, y)."""
    K = torch.eye(3, dtype=torch.float32, device=pp.device)
    K[0, 0] = K[1, 1] = focal
    K[:2, 2] = pp
    return K


def nearest_source_index(in_size: int, out_size: int, device=None) -> torch.Tensor:
    """Source index per output index of torch's 'nearest' resize (floor(i * in/out) in float32)."""
    return F.interpolate(
        torch.arange(in_size, dtype=torch.float32, device=device)[None, None], size=out_size, mode="nearest"
    )[0, 0].long()


def unletterbox(square_map: torch.Tensor, true_shape: tuple[int, int]) -> torch.Tensor:
    """Map (n, n) over the Multi-HMR square input -> (H, W) over the CUT3R image: nearest resize
    to max(H, W), then a centred H x W crop (the letterbox's bars fall outside). Used for the
    human mask (R x R) and the NMS detection scores (patch grid, e.g. 8x8 or 64x64)."""
    h, w = true_shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    # Index the kept rows/columns only; same result as resizing the whole square first.
    rows = nearest_source_index(square_map.shape[0], side, square_map.device)[top : top + h]
    cols = nearest_source_index(square_map.shape[1], side, square_map.device)[left : left + w]
    return square_map[rows[:, None], cols[None, :]]


@dataclass(frozen=True)
class FrameGeometry:
    """One output frame. Shapes for a model image of H x W; units are the network's (metres
    for released checkpoints); world = the first chunk's first camera."""

    pts3d_world: torch.Tensor  # (H, W, 3) float32
    conf: torch.Tensor  # (H, W) float32, camera-head confidence (>= 1)
    depth: torch.Tensor  # (H, W) float32, z of the camera pointmap
    c2w: torch.Tensor  # (4, 4) float32, chained camera-to-world
    focal: torch.Tensor  # () float32, pixels
    pp: torch.Tensor  # (2,) float32 (x, y) = (W//2, H//2)
    intrinsics: torch.Tensor  # (3, 3) float32
    det_scores: torch.Tensor  # (H, W) float32, NMS detection scores un-letterboxed
    msk: torch.Tensor | None  # (H, W) float32 human mask probability, None without a mask head


def frame_geometry(
    pts3d_cam: torch.Tensor,
    conf_cam: torch.Tensor,
    c2w_world: torch.Tensor,
    det_scores_nms: torch.Tensor,
    msk: torch.Tensor | None = None,
) -> FrameGeometry:
    """pts3d_cam (H, W, 3), conf_cam (H, W), c2w_world (4, 4) from PoseChainer,
    det_scores_nms (n, n) and msk (R, R) over the Multi-HMR square -> FrameGeometry."""
    true_shape = tuple(pts3d_cam.shape[:2])
    pp = principal_point(true_shape, pts3d_cam.device)
    focal = weiszfeld_focal(pts3d_cam, pp)
    return FrameGeometry(
        pts3d_world=camera_to_world(c2w_world, pts3d_cam),
        conf=conf_cam,
        depth=pts3d_cam[..., 2],
        c2w=c2w_world,
        focal=focal,
        pp=pp,
        intrinsics=pinhole_intrinsics(focal, pp),
        det_scores=unletterbox(det_scores_nms, true_shape),
        msk=None if msk is None else unletterbox(msk, true_shape),
    )
