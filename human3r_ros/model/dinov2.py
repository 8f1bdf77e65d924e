"""DINOv2 ViT encoder used as the Multi-HMR backbone (inference only).

Module/attribute names mirror the torch.hub DINOv2 model so that a parent holding a
``DinoV2Encoder`` as ``.encoder`` has the checkpoint keys ``backbone.encoder.*``
(cls_token, pos_embed, mask_token, patch_embed.proj, blocks.N.*, norm), in the same order.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .vit import Attention, Mlp


LAYER_NORM_EPS = 1e-6
# The hub model resizes its position table with a scale factor of (grid + offset) / table,
# not with an output size; the offset shifts bicubic sampling positions.
POS_INTERP_OFFSET = 0.1


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: (B, 3, H, W) -> (B, H/p * W/p, D), row-major."""

    def __init__(self, patch_size, embed_dim, in_chans=3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class LayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, dim, num_heads, mlp_ratio=4):
        super().__init__()
        # Registration order = checkpoint key order (norm1, attn, ls1, norm2, mlp, ls2).
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))  # a new tensor, then in place (as vit.EncoderBlock)
        x += self.ls2(self.mlp(self.norm2(x)))
        return x


class DinoV2Encoder(nn.Module):
    """DINOv2 ViT returning the final-normed patch tokens of the last block (no CLS)."""

    def __init__(self, embed_dim, depth, num_heads, patch_size=14, img_size=518, mlp_ratio=4):
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        table_side = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, table_side * table_side + 1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        # Unused at inference; kept so that checkpoints load strictly.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))

    def position_embedding(self, grid_h, grid_w):
        """(1, 1 + grid_h*grid_w, D) table for a grid_h x grid_w patch grid."""
        table = self.pos_embed.float()
        n_table = table.shape[1] - 1
        side = int(math.sqrt(n_table))
        if grid_h * grid_w == n_table and grid_h == grid_w:
            return self.pos_embed
        patch_table = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        scale = ((grid_h + POS_INTERP_OFFSET) / side, (grid_w + POS_INTERP_OFFSET) / side)
        patch_table = F.interpolate(patch_table, scale_factor=scale, mode="bicubic", antialias=False)
        assert patch_table.shape[-2:] == (grid_h, grid_w)
        patch_table = patch_table.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat((table[:, :1], patch_table), dim=1).to(self.pos_embed.dtype)

    def forward(self, x):
        """x: (B, 3, H, W) ImageNet-normalised, H and W multiples of patch_size.

        Returns (B, H/p * W/p, D) patch tokens, row-major over the patch grid.
        """
        grid_h, grid_w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        tokens = tokens + self.position_embedding(grid_h, grid_w)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 1:]


class Dinov2Backbone(nn.Module):
    """Multi-HMR backbone: holds the encoder as ``.encoder`` (checkpoint prefix ``backbone.encoder``).
    Sizes per hub name are in :data:`human3r_ros.model.config.DINOV2_SIZES`."""

    def __init__(self, embed_dim: int, depth: int, num_heads: int, patch_size: int = 14, img_size: int = 518):
        super().__init__()
        self.encoder = DinoV2Encoder(embed_dim, depth, num_heads, patch_size=patch_size, img_size=img_size)
        self.patch_size = patch_size
        self.embed_dim = embed_dim

    def forward(self, x):
        return self.encoder(x)
