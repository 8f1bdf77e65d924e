"""Camera pose head: decoder's final camera token -> 7 raw values (t, q before post-processing).

State-dict keys: `mlp.fc1.{weight,bias}`, `mlp.fc2.{weight,bias}` (under `downstream_head.pose_head.`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

POSE_ENCODING_DIM = 7  # tx, ty, tz, qw, qx, qy, qz


class TwoLayerGeluMlp(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Exact (erf) GELU, as nn.GELU() defaults to.
        return self.fc2(F.gelu(self.fc1(x)))


class CameraPoseHead(nn.Module):
    """forward(pose_token [B, dec_dim]) -> raw pose [B, 7]."""

    def __init__(self, dec_dim: int, mlp_ratio: int = 4):
        super().__init__()
        self.mlp = TwoLayerGeluMlp(dec_dim, dec_dim * mlp_ratio, POSE_ENCODING_DIM)

    @classmethod
    def from_state_dict_shapes(cls, prefix: str, shapes: Mapping[str, Sequence[int]]) -> "CameraPoseHead":
        hidden, dec_dim = (int(s) for s in shapes[prefix + "mlp.fc1.weight"])
        if hidden % dec_dim:
            raise ValueError(f"{prefix}mlp.fc1 hidden size {hidden} is not a multiple of {dec_dim}")
        return cls(dec_dim, hidden // dec_dim)

    def forward(self, pose_token: torch.Tensor) -> torch.Tensor:
        return self.mlp(pose_token)
