"""DPT dense-prediction head (inference only).

Turns four token maps (encoder output + three decoder layers, each [B, N, C_i] on the
H/16 x W/16 patch grid) into a full-resolution [B, num_channels, H, W] map. Used three
times by Human3R: camera-frame points (`dpt_self`), world-frame points (`dpt_cross`) and
colour (`dpt_rgb`).

Attribute names (`scratch`, `refinenet*`, `resConfUnit*`, `layer*_rn`, `head`,
`act_postprocess`) are dictated by the released checkpoints' state-dict keys, and so is the
registration order, which decides the state-dict order.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv3x3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=bias)


def _conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=1, padding=0)


def _upsample2x(x: torch.Tensor) -> torch.Tensor:
    # Every 2x upsampling in this head is bilinear with align_corners=True.
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class Upsample2x(nn.Module):
    """Parameter-free module so that the head's Sequential keeps the checkpoint's indices."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _upsample2x(x)


class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x)))); the skip uses the input before the first ReLU."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = _conv3x3(features, features)
        self.conv2 = _conv3x3(features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out))
        return out + x


class FusionBlock(nn.Module):
    """Adds a refined skip feature (if any), refines, upsamples x2, projects with a 1x1 conv."""

    def __init__(self, features: int):
        super().__init__()
        # Registration order out_conv, resConfUnit1, resConfUnit2 = checkpoint key order.
        self.out_conv = _conv1x1(features, features)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        return self.out_conv(_upsample2x(x))


class DPTScratch(nn.Module):
    """Projection convs to feature_dim plus the four fusion blocks.

    `layer_rn` is a second registration of the same four conv modules (the checkpoints store
    both names, sharing storage), so both key families exist and load into one parameter.
    """

    def __init__(self, layer_dims: Sequence[int], feature_dim: int):
        super().__init__()
        self.layer1_rn = _conv3x3(layer_dims[0], feature_dim, bias=False)
        self.layer2_rn = _conv3x3(layer_dims[1], feature_dim, bias=False)
        self.layer3_rn = _conv3x3(layer_dims[2], feature_dim, bias=False)
        self.layer4_rn = _conv3x3(layer_dims[3], feature_dim, bias=False)
        self.layer_rn = nn.ModuleList([self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn])
        self.refinenet1 = FusionBlock(feature_dim)
        self.refinenet2 = FusionBlock(feature_dim)
        self.refinenet3 = FusionBlock(feature_dim)
        self.refinenet4 = FusionBlock(feature_dim)


def _reassemble_stages(dim_tokens: Sequence[int], layer_dims: Sequence[int]) -> nn.ModuleList:
    """Per level: 1x1 projection, then resample the 1/16 grid to 1/4, 1/8, 1/16 and 1/32."""
    d = layer_dims
    return nn.ModuleList(
        [
            nn.Sequential(_conv1x1(dim_tokens[0], d[0]), nn.ConvTranspose2d(d[0], d[0], kernel_size=4, stride=4)),
            nn.Sequential(_conv1x1(dim_tokens[1], d[1]), nn.ConvTranspose2d(d[1], d[1], kernel_size=2, stride=2)),
            nn.Sequential(_conv1x1(dim_tokens[2], d[2])),
            nn.Sequential(_conv1x1(dim_tokens[3], d[3]), nn.Conv2d(d[3], d[3], kernel_size=3, stride=2, padding=1)),
        ]
    )


class DPTHead(nn.Module):
    """DPT output adapter with hooks [0, 1, 2, 3] and a regression head.

    forward(tokens, image_size) -> [B, num_channels, H, W] raw (not post-processed) values.
    """

    def __init__(
        self,
        dim_tokens: Sequence[int],
        num_channels: int,
        feature_dim: int = 256,
        last_dim: int = 128,
        layer_dims: Sequence[int] = (96, 192, 384, 768),
        patch_size: int = 16,
    ):
        super().__init__()
        if len(dim_tokens) != 4 or len(layer_dims) != 4:
            raise ValueError("DPTHead needs 4 token dims and 4 layer dims")
        self.patch_size = patch_size
        self.num_channels = num_channels
        # Registration order scratch, head, act_postprocess = checkpoint key order.
        self.scratch = DPTScratch(layer_dims, feature_dim)
        half = feature_dim // 2
        self.head = nn.Sequential(
            _conv3x3(feature_dim, half),
            Upsample2x(),
            _conv3x3(half, last_dim),
            nn.ReLU(inplace=True),
            _conv1x1(last_dim, num_channels),
        )
        self.act_postprocess = _reassemble_stages(dim_tokens, layer_dims)

    def forward(self, tokens: Sequence[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
        if len(tokens) != 4:
            raise ValueError(f"DPTHead expects 4 token tensors, got {len(tokens)}")
        height, width = image_size
        grid_h, grid_w = height // self.patch_size, width // self.patch_size

        levels = []
        for tok, reassemble, project in zip(tokens, self.act_postprocess, self.scratch.layer_rn):
            batch, _, channels = tok.shape
            # Tokens are row-major over the patch grid.
            grid = tok.reshape(batch, grid_h, grid_w, channels).permute(0, 3, 1, 2)
            levels.append(project(reassemble(grid)))
        l1, l2, l3, l4 = levels

        s = self.scratch
        # The stride-2 conv rounds odd grids up, so the coarsest path can be one cell too big.
        p4 = s.refinenet4(l4)[:, :, : l3.shape[2], : l3.shape[3]]
        p3 = s.refinenet3(p4, l3)
        p2 = s.refinenet2(p3, l2)
        p1 = s.refinenet1(p2, l1)
        return self.head(p1)
