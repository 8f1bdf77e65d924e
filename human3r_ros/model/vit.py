"""Transformer building blocks shared by the CUT3R encoder, decoders and heads.

Attribute names (``qkv``, ``proj``, ``projq`` ...) follow the published checkpoints so that
state dicts load strictly. Everything here is inference-only.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6


def layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LN_EPS)


class RoPE2D(nn.Module):
    """2D rotary position embedding: the first half of a head's channels encodes the row,
    the second half the column; inside a half, channel j pairs with channel j + half/2.

    ``compute_dtype=torch.float16`` reproduces the published image encoder, which rotates
    q/k in half precision (angles in float32, then cos/sin and the rotation rounded to fp16).
    Inside ``with rope.reusing_tables():`` the cos/sin tables are computed once per position
    tensor and head size instead of once per block.
    """

    def __init__(self, base: float = 100.0, compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.base = float(base)
        self.compute_dtype = compute_dtype
        self._tables: dict | None = None

    @contextlib.contextmanager
    def reusing_tables(self):
        # keys use the position tensors' addresses: valid only while they are alive, i.e.
        # within one forward pass, so the cache is dropped on exit (an enclosing one comes back)
        outer, self._tables = self._tables, {}
        try:
            yield
        finally:
            self._tables = outer

    def _table(self, pos: torch.Tensor, head_dim: int):
        """(cos, signed sin) for pos [B, N, 2] -> each [B, 1, N, head_dim]."""
        # a compiled block computes the tables in its own graph (addresses cannot be traced)
        cache = None if torch.compiler.is_compiling() else self._tables
        key = None if cache is None else (pos.data_ptr(), tuple(pos.shape), pos.stride(), head_dim)
        if cache is not None and key in cache:
            return cache[key]
        quarter = head_dim // 4
        exponent = torch.arange(0, 2 * quarter, 2, device=pos.device).float() / (2 * quarter)
        inv_freq = 1.0 / (self.base**exponent)
        # angles in float32 first, then cast: this is where the fp16 encoder rounds
        angles = (pos.float()[..., None] * inv_freq).to(self.compute_dtype)  # [B, N, 2, quarter]
        cos, sin = angles.cos(), angles.sin()
        cos = torch.cat((cos, cos), dim=-1).flatten(-2)[:, None]
        # rotate_half(x) * sin == swap_quarters(x) * (sin with its first quarter negated)
        sin = torch.cat((-sin, sin), dim=-1).flatten(-2)[:, None]
        if cache is not None:
            cache[key] = (cos, sin)
        return cos, sin

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """tokens [..., B, heads, N, Dh], pos [B, N, 2] (row, col) -> rotated tokens, same dtype."""
        # the rotation has its own precision: autocast must not re-type it
        with torch.autocast(tokens.device.type, enabled=False):
            return self._rotate(tokens, pos)

    def _rotate(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        out_dtype = tokens.dtype
        cos, sin = self._table(pos, tokens.shape[-1])
        x = tokens.to(self.compute_dtype)
        if self.compute_dtype == torch.float16:
            # the published encoder's exact sequence: every product and the sum rounded to fp16
            quarters = x.unflatten(-1, (2, 2, -1))
            swapped = torch.cat((quarters[..., 1:, :], quarters[..., :1, :]), dim=-2).flatten(-3)
            return (x * cos + swapped * sin).to(out_dtype)
        # same arithmetic without materialising the swapped copy: x*cos, then each quarter
        # gains its partner quarter times the signed sin
        out = x * cos
        parts, x_parts, sin_parts = (t.unflatten(-1, (2, 2, -1)) for t in (out, x, sin))
        parts[..., 0, :].addcmul_(x_parts[..., 1, :], sin_parts[..., 0, :])
        parts[..., 1, :].addcmul_(x_parts[..., 0, :], sin_parts[..., 1, :])
        return out.to(out_dtype)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out_dim: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_dim or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.view(b, n, num_heads, c // num_heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _attention_mask(key_mask: torch.Tensor | None) -> torch.Tensor | None:
    """[B, Nk] bool (True = a real token) -> an SDPA mask broadcast over heads and queries."""
    return None if key_mask is None else key_mask[:, None, None, :]


class Attention(nn.Module):
    """Self-attention with optional 2D RoPE on queries and keys."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, rope: RoPE2D | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor | None = None, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """key_mask [B, N] bool: padding tokens (False) are never attended to."""
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        if self.rope is not None:
            q, k = self.rope(qkv[:2], pos).unbind(0)
            v = qkv[2]
        else:
            q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=_attention_mask(key_mask), scale=self.scale)
        return self.proj(_merge_heads(out))


class CrossAttention(nn.Module):
    """Cross-attention; can also return the mean of its pre-softmax logits (the TTT3R gate)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, rope: RoPE2D | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.projq = nn.Linear(dim, dim, bias=qkv_bias)
        self.projk = nn.Linear(dim, dim, bias=qkv_bias)
        self.projv = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, query, key_value, qpos, kpos, mean_logits: bool = False, key_mask=None):
        """-> (output, [B, Nq] mean over heads and keys of the logits q.k*scale, or None).
        key_mask [B, Nk] bool: padding keys (False) are neither attended to nor averaged."""
        q = _heads(self.projq(query), self.num_heads)
        k = _heads(self.projk(key_value), self.num_heads)
        v = _heads(self.projv(key_value), self.num_heads)
        if self.rope is not None:
            if qpos is not None:
                q = self.rope(q, qpos)
            if kpos is not None:
                k = self.rope(k, kpos)
        logit_mean = None
        if mean_logits:
            # logits are linear in k: their mean over keys is q against the mean key, so the
            # [B, heads, Nq, Nk] logits never need to exist and attention stays fused
            if key_mask is None:
                mean_key = k.mean(dim=2)
            else:
                weight = key_mask[:, None, :, None].to(k.dtype)
                mean_key = (k * weight).sum(dim=2) / weight.sum(dim=2)
            logit_mean = torch.einsum("bhqd,bhd->bq", q, mean_key) * (self.scale / self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=_attention_mask(key_mask), scale=self.scale)
        return self.proj(_merge_heads(out)), logit_mean


class EncoderBlock(nn.Module):
    """Pre-norm ViT block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, rope: RoPE2D | None = None):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=True, rope=rope)
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), pos)  # a new tensor: the caller's x stays intact
        x += self.mlp(self.norm2(x))  # then in place (inference only): one token-map copy less
        return x


class DecoderBlock(nn.Module):
    """Self-attention on x, cross-attention from x to (normalised) y, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, rope: RoPE2D | None = None):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=True, rope=rope)
        self.cross_attn = CrossAttention(dim, num_heads, qkv_bias=True, rope=rope)
        self.norm2 = layer_norm(dim)
        self.norm3 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = layer_norm(dim)

    def forward(self, x, y, xpos, ypos, mean_logits: bool = False, x_mask=None, y_mask=None):
        """x_mask [B, Nx], y_mask [B, Ny] bool: padding tokens (False) of a batch whose views
        carry different numbers of people; their own outputs are meaningless."""
        x = x + self.attn(self.norm1(x), xpos, x_mask)  # a new tensor (see EncoderBlock), then in place
        cross, logit_mean = self.cross_attn(self.norm2(x), self.norm_y(y), xpos, ypos, mean_logits, y_mask)
        x += cross
        x += self.mlp(self.norm3(x))
        return x, logit_mean


class ModulatedLayerNorm(nn.Module):
    """adaLN: LayerNorm whose shift and scale come from a conditioning vector."""

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.norm = layer_norm(dim)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, dim * 2))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.mlp(cond).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class ConditionedBlock(nn.Module):
    """ViT block whose two norms are modulated by a conditioning token (the camera token)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, rope: RoPE2D | None = None):
        super().__init__()
        self.norm1 = ModulatedLayerNorm(dim, dim)
        self.attn = Attention(dim, num_heads, qkv_bias=True, rope=rope)
        self.norm2 = ModulatedLayerNorm(dim, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x, cond), pos)  # a new tensor (see EncoderBlock), then in place
        x += self.mlp(self.norm2(x, cond))
        return x


class PatchEmbed(nn.Module):
    """Non-overlapping patch convolution; returns tokens and integer (row, col) positions."""

    def __init__(self, in_chans: int, dim: int, patch_size: int = 16):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, img: torch.Tensor):
        b, _, h, w = img.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the {self.patch_size}-px patch")
        x = self.proj(img)
        gh, gw = x.shape[-2:]
        # row of each patch by broadcasting: no host round trip (a CUDA graph capture allows none)
        rows = torch.arange(gh, device=img.device)[:, None].expand(gh, gw).reshape(-1)
        cols = torch.arange(gw, device=img.device).repeat(gh)
        pos = torch.stack((rows, cols), dim=-1)[None].expand(b, -1, -1)
        return x.flatten(2).transpose(1, 2), pos
