"""CUT3R recurrent core: image encoder, state, camera-pose memory and the two-stream decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .vit import DecoderBlock, EncoderBlock, PatchEmbed, RoPE2D


def encode_image(patch_embed: PatchEmbed, blocks: nn.ModuleList, norm: nn.LayerNorm, img: torch.Tensor):
    """Patch embedding, pre-norm ViT blocks, final norm -> (tokens [B, N, E], positions [B, N, 2])."""
    x, pos = patch_embed(img)
    for blk in blocks:
        x = blk(x, pos)
    return norm(x), pos


def make_encoder_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float, rope: RoPE2D | None):
    return nn.ModuleList(EncoderBlock(dim, num_heads, mlp_ratio, rope=rope) for _ in range(depth))


def make_decoder_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float, rope: RoPE2D | None):
    return nn.ModuleList(DecoderBlock(dim, num_heads, mlp_ratio, rope=rope) for _ in range(depth))


def state_positions(state_size: int, device) -> torch.Tensor:
    """Grid positions of the state tokens: (i // w, i % w) with w = floor(sqrt(S)) made even."""
    width = int(state_size**0.5)
    width += width % 2
    idx = torch.arange(state_size, device=device)
    return torch.stack((idx // width, idx % width), dim=-1)[None]


class CameraMemory(nn.Module):
    """Local memory of (image summary, camera token) pairs; queried for the next camera token.

    Parameter names follow the checkpoint's ``pose_retriever`` module.
    """

    def __init__(self, size: int, key_dim: int, value_dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.value_dim = value_dim
        self.proj_q = nn.Linear(key_dim, value_dim)
        self.masked_token = nn.Parameter(torch.zeros(1, 1, value_dim))
        self.mem = nn.Parameter(torch.zeros(1, size, 2 * value_dim))
        self.write_blocks = make_decoder_blocks(2 * value_dim, 2, num_heads, mlp_ratio, rope=None)
        self.read_blocks = make_decoder_blocks(2 * value_dim, 2, num_heads, mlp_ratio, rope=None)

    def write(self, mem: torch.Tensor, image_summary: torch.Tensor, camera_token: torch.Tensor):
        entry = torch.cat((self.proj_q(image_summary), camera_token), dim=-1)
        for blk in self.write_blocks:
            mem, _ = blk(mem, entry, None, None)
        return mem

    def read(self, image_summary: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        query = self.proj_q(image_summary)
        x = torch.cat((query, self.masked_token.expand(query.shape[0], -1, -1)), dim=-1)
        for blk in self.read_blocks:
            x, _ = blk(x, mem, None, None)
        return x[..., -self.value_dim :]


@dataclass
class DecoderOutput:
    new_state: torch.Tensor  # [B, S, dd] after the final norm
    layers: list  # [encoder tokens, image-side tokens after each layer (last one normed)]
    ttt3r_gate: torch.Tensor | None  # [B, S] sigmoid of mean state->image logits, if asked


def run_decoder(
    state_blocks: nn.ModuleList,
    image_blocks: nn.ModuleList,
    state_norm: nn.LayerNorm,
    image_norm: nn.LayerNorm,
    state: torch.Tensor,
    state_pos: torch.Tensor,
    image_side: torch.Tensor,
    image_pos: torch.Tensor,
    encoder_tokens: torch.Tensor,
    want_gate: bool,
    image_mask: torch.Tensor | None = None,
) -> DecoderOutput:
    """Two interleaved streams: each layer's state block and image block both read the
    previous layer's outputs of the other stream. ``image_mask`` [B, N] (True = real token)
    hides the padding of a batch whose views hold different numbers of people."""
    layers = [encoder_tokens]
    layer_means = []
    for blk_state, blk_image in zip(state_blocks, image_blocks):
        new_state, logit_mean = blk_state(state, image_side, state_pos, image_pos, want_gate, y_mask=image_mask)
        image_side, _ = blk_image(image_side, state, image_pos, state_pos, x_mask=image_mask)
        state = new_state
        layers.append(image_side)
        if want_gate:
            layer_means.append(logit_mean)
    layers[-1] = image_norm(layers[-1])
    gate = None
    if want_gate:
        # mean over layers, heads and image-side tokens of the pre-softmax state->image logits
        gate = torch.sigmoid(torch.stack(layer_means, dim=0).mean(dim=0))
    return DecoderOutput(state_norm(state), layers, gate)
