"""The downstream head: dense pointmaps (self and world), rgb, camera pose and the human parts.

One module whose children carry the checkpoint's names and order (``downstream_head.*``).
"""

from __future__ import annotations

import torch
from torch import nn

from . import postprocess
from .camera_head import CameraPoseHead
from .dpt import DPTHead
from .human_head import INIT_BUFFER_SHAPES, build_human_modules
from .vit import ConditionedBlock, RoPE2D


class Human3RHead(nn.Module):
    def __init__(
        self,
        enc_dim: int,
        dec_dim: int,
        dec_num_heads: int,
        backbone_dim: int,
        bb_patch_size: int,
        dpt_feature_dim: int,
        dpt_last_dim: int,
        dpt_layer_dims: tuple,
        rope: RoPE2D,
        patch_size: int = 16,
    ):
        super().__init__()
        for name, shape in INIT_BUFFER_SHAPES.items():  # values: the checkpoint or smpl_init_buffers
            self.register_buffer(name, torch.zeros(shape))

        dims = (enc_dim, dec_dim, dec_dim, dec_dim)

        def dpt(channels: int) -> DPTHead:
            return DPTHead(dims, channels, dpt_feature_dim, dpt_last_dim, dpt_layer_dims, patch_size)

        self.dpt_self = dpt(4)
        self.final_transform = nn.ModuleList(
            ConditionedBlock(dec_dim, dec_num_heads, 4.0, rope=rope) for _ in range(2)
        )
        self.dpt_cross = dpt(4)
        self.dpt_rgb = dpt(3)
        self.pose_head = CameraPoseHead(dec_dim)
        for name, module in build_human_modules(backbone_dim, enc_dim, dec_dim, bb_patch_size).items():
            self.add_module(name, module)

    def dense(self, layers: list, pos: torch.Tensor, image_size: tuple, with_rgb: bool, with_world: bool) -> dict:
        """layers: [encoder tokens, layer dd/2, layer 3dd/4, last layer] of patch tokens,
        the last one with the camera token in front. Returns post-processed dense outputs."""
        camera_token = layers[-1][:, 0]
        patches = layers[-1][:, 1:]
        out = {"pose_raw": self.pose_head(camera_token)}
        out["camera_pose_enc"] = postprocess.camera_pose_encoding(out["pose_raw"])

        self_layers = layers[:-1] + [patches]
        out["pts3d_cam"], out["conf_cam"] = postprocess.dense_points_and_confidence(
            self.dpt_self(self_layers, image_size)
        )
        if with_rgb:
            out["rgb"] = postprocess.dense_rgb(self.dpt_rgb(self_layers, image_size))

        if not with_world:
            return out
        conditioned = patches
        for blk in self.final_transform:
            conditioned = blk(conditioned, camera_token, pos)
        out["pts3d_world_head"], out["conf_world_head"] = postprocess.dense_points_and_confidence(
            self.dpt_cross(layers[:-1] + [conditioned], image_size)
        )
        return out
