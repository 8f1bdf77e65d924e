"""Turns raw head outputs into metric quantities, as Human3R's inference does.

Modes used by every released model: depth ('exp', -inf, inf), confidence ('exp', 1, inf),
pose ('exp', -inf, inf). Only those are implemented. Quaternions are (qw, qx, qy, qz).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CONFIDENCE_MIN = 1.0
_NORM_FLOOR = 1e-8  # guards the direction of zero-length vectors
_RGB_EPS = 1e-6


def exp_scaled_points(xyz: torch.Tensor) -> torch.Tensor:
    """[..., 3] -> same direction, length expm1(|xyz|). Also used for the SMPL translation."""
    length = xyz.norm(dim=-1, keepdim=True)
    return xyz / length.clip(min=_NORM_FLOOR) * torch.expm1(length)


def exp_confidence(raw: torch.Tensor) -> torch.Tensor:
    return CONFIDENCE_MIN + raw.exp()


def dense_points_and_confidence(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DPT output [B, 4, H, W] -> points [B, H, W, 3] and confidence [B, H, W] (>= 1)."""
    channels_last = raw.permute(0, 2, 3, 1)
    return exp_scaled_points(channels_last[..., 0:3]), exp_confidence(channels_last[..., 3])


def dense_rgb(raw: torch.Tensor) -> torch.Tensor:
    """DPT output [B, 3, H, W] -> colour [B, H, W, 3] in (-1, 1), the input image's normalisation."""
    unit = torch.sigmoid(raw.permute(0, 2, 3, 1)) * (1 - 2 * _RGB_EPS) + _RGB_EPS
    return (unit - 0.5) * 2


def camera_pose_encoding(raw: torch.Tensor) -> torch.Tensor:
    """Pose head output [..., 7] -> (t, q): |t| mapped through expm1, q unit with qw >= 0."""
    trans, quat = raw[..., 0:3], raw[..., 3:7]
    length = trans.norm(dim=-1, keepdim=True)
    trans = trans * (torch.expm1(length) / length.clip(min=_NORM_FLOOR))
    quat = F.normalize(quat, p=2, dim=-1)
    quat = torch.where(quat[..., 0:1] < 0, -quat, quat)
    return torch.cat([trans, quat], dim=-1)


def quaternion_to_rotation(quat: torch.Tensor) -> torch.Tensor:
    """(qw, qx, qy, qz) [..., 4] -> rotation [..., 3, 3]; divides by |q|^2, so q need not be unit."""
    w, x, y, z = quat.unbind(-1)
    s = 2.0 / (quat * quat).sum(-1)
    rows = (
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(quat.shape[:-1] + (3, 3))


def pose_encoding_to_c2w(encoding: torch.Tensor) -> torch.Tensor:
    """(t, q) [..., 7] -> camera-to-world [..., 4, 4] (OpenCV camera axes)."""
    rotation = quaternion_to_rotation(encoding[..., 3:7])
    top = torch.cat([rotation, encoding[..., 0:3, None]], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)
