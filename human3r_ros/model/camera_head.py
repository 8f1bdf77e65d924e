"""Camera pose head: decoder's final camera token -> 7 raw values (t, q before post-processing).

State-dict keys: `mlp.fc1.{weight,bias}`, `mlp.fc2.{weight,bias}` (under `downstream_head.pose_head.`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .vit import Mlp

POSE_ENCODING_DIM = 7  # tx, ty, tz, qw, qx, qy, qz


class CameraPoseHead(nn.Module):
    """forward(pose_token [B, dec_dim]) -> raw pose [B, 7]."""

    def __init__(self, dec_dim: int, mlp_ratio: int = 4):
        super().__init__()
        self.mlp = Mlp(dec_dim, dec_dim * mlp_ratio, POSE_ENCODING_DIM)

    def forward(self, pose_token: torch.Tensor) -> torch.Tensor:
        return self.mlp(pose_token)
