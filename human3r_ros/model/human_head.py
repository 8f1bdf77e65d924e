"""Multi-HMR-style human parts of the Human3R downstream head (inference only).

The downstream head module owns the sub-modules built by ``build_human_modules`` under the
checkpoint names (mlp_classif, mlp_offset, mlp_msk, mlp_fuse, deccam, decpose, decshape,
decexpression) and the buffers of ``smpl_init_buffers`` (init_body_pose, ...). The functions
below take that head (anything with those attributes) and work on all people of all views at
once. Conventions: a Multi-HMR token grid is n x n over the R x R padded square; CUT3R tokens
are row-major over the (H/16) x (W/16) patch grid; pixel locations are (x, y).
"""

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .postprocess import exp_scaled_points

SCORE_EPS = 1e-6  # scores are squeezed into [eps, 1 - eps]
DETECTION_THRESHOLD = 0.3
NUM_ROTATIONS = 53  # SMPL-X: global orient + 21 body + jaw + 2 eyes + 2 x 15 hands
NUM_BETAS = 10
NUM_EXPRESSION = 10
# the head's init_* buffers in checkpoint order, with their shapes (kids: one extra shape value)
INIT_BUFFER_SHAPES = OrderedDict(
    init_body_pose=(1, NUM_ROTATIONS * 6), init_betas=(1, NUM_BETAS), init_betas_kid=(1, NUM_BETAS + 1),
    init_cam=(1, 3), init_expression=(1, NUM_EXPRESSION),
)
GRAM_SCHMIDT_EPS = 1e-6


def regression_mlp(sizes):
    """Linear/ReLU stack (keys ``0.*``, ``2.*``, ...) used for detection and offsets."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class GeluMlp(nn.Module):
    """Linear/GELU stack held in ``layers`` (keys ``layers.0.*``, ``layers.2.*``, ...)."""

    def __init__(self, in_dim, hidden_dim, out_dim, num_layers=2):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList()
        for i in range(num_layers):
            self.layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < num_layers - 1:
                self.layers.append(nn.GELU())

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class TokenDecoder(nn.Module):
    """Per-token MLP wrapped as ``.mlp`` (checkpoint keys ``<name>.mlp.layers.N.*``)."""

    def __init__(self, in_dim, out_dim, mlp_ratio=1, num_layers=2):
        super().__init__()
        self.mlp = GeluMlp(in_dim, int(in_dim * mlp_ratio), out_dim, num_layers)

    def forward(self, x):
        return self.mlp(x)


def build_human_modules(backbone_dim, enc_dim, dec_dim, bb_patch_size=14, with_mask=True):
    """Human sub-modules of the downstream head, in checkpoint order, keyed by attribute name."""
    modules = OrderedDict()
    modules["mlp_classif"] = regression_mlp([backbone_dim, backbone_dim, 1])
    modules["mlp_offset"] = regression_mlp([backbone_dim, backbone_dim, 2])
    if with_mask:
        modules["mlp_msk"] = TokenDecoder(backbone_dim, bb_patch_size**2, mlp_ratio=1)
    modules["mlp_fuse"] = TokenDecoder(enc_dim + backbone_dim, dec_dim, mlp_ratio=4)
    modules["deccam"] = TokenDecoder(dec_dim, 3, mlp_ratio=4)
    smpl_in = dec_dim + backbone_dim
    modules["decpose"] = TokenDecoder(smpl_in, 6 * NUM_ROTATIONS, mlp_ratio=4)
    modules["decshape"] = TokenDecoder(smpl_in, NUM_BETAS, mlp_ratio=4)
    modules["decexpression"] = TokenDecoder(smpl_in, NUM_EXPRESSION, mlp_ratio=4)
    return modules


def smpl_init_buffers(mean_params_path):
    """init_* buffers (checkpoint order) from a Multi-HMR/SPIN ``smpl_mean_params.npz``.

    init_body_pose: identity 6D for all 53 rotations, the first 24 (SMPL body) from the file.
    """
    mean = np.load(mean_params_path)
    body_pose = torch.eye(3)[:, :2].reshape(1, 6).repeat(1, NUM_ROTATIONS)
    smpl_pose = torch.from_numpy(mean["pose"]).float()
    body_pose[:, : smpl_pose.numel()] = smpl_pose
    betas = torch.from_numpy(mean["shape"].astype(np.float32)).unsqueeze(0)
    buffers = OrderedDict()
    buffers["init_body_pose"] = body_pose
    buffers["init_betas"] = betas
    buffers["init_betas_kid"] = torch.cat([betas, torch.zeros_like(betas[:, :1])], dim=1)
    buffers["init_cam"] = torch.from_numpy(mean["cam"].astype(np.float32)).unsqueeze(0)
    buffers["init_expression"] = 0.0 * betas  # expression starts at zero (same shape as betas)
    return buffers


def squeezed_sigmoid(logits):
    return torch.sigmoid(logits) * (1 - 2 * SCORE_EPS) + SCORE_EPS


def detection_scores(head, mhmr_tokens, grid):
    """Per-cell person logits and scores, each (V, grid, grid)."""
    logits = head.mlp_classif(mhmr_tokens).reshape(-1, grid, grid)
    return logits, squeezed_sigmoid(logits)


def nms_3x3(scores):
    """Zero every cell that is not the maximum of its 3x3 neighbourhood. scores: (V, n, n)."""
    peak = F.max_pool2d(scores[:, None], kernel_size=3, stride=1, padding=1)[:, 0]
    return scores * (peak == scores).float()


def select_detections(scores_nms, threshold=DETECTION_THRESHOLD):
    """(view, row, col) int64 indices of cells with score >= threshold, in (view, row, col) order."""
    view, row, col = torch.nonzero(scores_nms >= threshold, as_tuple=True)
    return view, row, col


def human_mask(head, mhmr_tokens, grid, patch_size):
    """Human mask probabilities (V, grid*patch, grid*patch): one patch x patch tile per token."""
    tiles = squeezed_sigmoid(head.mlp_msk(mhmr_tokens))  # (V, n*n, p*p)
    tiles = tiles.transpose(1, 2).reshape(tiles.shape[0], patch_size * patch_size, grid, grid)
    return F.pixel_shuffle(tiles, patch_size)[:, 0]


def head_location(head, tok_mhmr, row, col, patch_size):
    """Head offset (N, 2) and location (N, 2) as (x, y) pixels of the padded Multi-HMR image."""
    offset = head.mlp_offset(tok_mhmr)
    cell_xy = torch.stack([col, row], dim=1)
    return offset, (cell_xy + 0.5 + offset) * patch_size


def unpad_uv(uv, padded_size, height, width):
    """Map (x, y) pixels of the square padded image (side padded_size) to the H x W image.

    The padded image is the H x W image scaled by padded_size / max(H, W) and centred;
    results are clamped into the image.
    """
    longest = max(height, width)
    # float32 tensor arithmetic, as the reference computes the scale from tensors
    scale = torch.tensor(float(longest), dtype=uv.dtype, device=uv.device) / padded_size
    pad = torch.tensor([(longest - width) // 2, (longest - height) // 2], dtype=uv.dtype, device=uv.device)
    uv = uv * scale - pad
    return torch.stack([uv[..., 0].clamp(0, width - 1), uv[..., 1].clamp(0, height - 1)], dim=-1)


def patch_cell(uv, patch_size):
    """(x, y) int64 patch cell containing each (x, y) pixel location."""
    return torch.div(uv, patch_size, rounding_mode="floor").long()


def gather_cells(grid_tokens, view, row, col, grid_w):
    """Pick tokens of row-major grids: grid_tokens (V, h*w, C) -> (N, C) at (view, row, col)."""
    return grid_tokens[view, row * grid_w + col]


def fuse_tokens(head, tok_mhmr, tok_cut3r):
    """Human query (N, dec_dim) from the Multi-HMR and CUT3R tokens of each person."""
    return head.mlp_fuse(torch.cat([tok_mhmr, tok_cut3r], dim=-1))


@dataclass
class HumanTokens:
    """Per-view detection outputs and per-person tokens (N people over all views)."""

    det_logits: torch.Tensor  # (V, n, n)
    det_scores: torch.Tensor  # (V, n, n) before NMS
    det_scores_nms: torch.Tensor  # (V, n, n)
    mask: torch.Tensor  # (V, R, R) or None without mask head
    view: torch.Tensor  # (N,) int64
    row: torch.Tensor  # (N,) int64, Multi-HMR cell
    col: torch.Tensor  # (N,) int64
    offset: torch.Tensor  # (N, 2)
    loc_mhmr: torch.Tensor  # (N, 2) x, y in the padded R x R image
    loc_cut3r: torch.Tensor  # (N, 2) x, y in the CUT3R H x W image
    uv_cut3r: torch.Tensor  # (N, 2) int64 x, y CUT3R patch cell
    cut3r_index: torch.Tensor  # (N,) int64 row-major CUT3R token index (for tokens and positions)
    tok_mhmr: torch.Tensor  # (N, backbone_dim)
    tok_cut3r: torch.Tensor  # (N, enc_dim)
    tok_fused: torch.Tensor  # (N, dec_dim) human query for the decoder


def view_of(humans: HumanTokens, v: int, people: slice) -> HumanTokens:
    """View ``v`` of a batch as a batch of one: its grids, and its people (rows ``people``,
    contiguous since detections come in view order) with view index 0."""
    grids = {name: getattr(humans, name)[v : v + 1] for name in ("det_logits", "det_scores", "det_scores_nms")}
    rows = {
        name: getattr(humans, name)[people]
        for name in ("row", "col", "offset", "loc_mhmr", "loc_cut3r", "uv_cut3r", "cut3r_index",
                     "tok_mhmr", "tok_cut3r", "tok_fused")
    }
    mask = None if humans.mask is None else humans.mask[v : v + 1]
    return HumanTokens(**grids, **rows, mask=mask, view=torch.zeros_like(humans.view[people]))


def tokenize_humans(
    head,
    mhmr_tokens,
    cut3r_tokens,
    image_hw,
    mhmr_res,
    bb_patch_size=14,
    cut3r_patch_size=16,
    threshold=DETECTION_THRESHOLD,
):
    """Detect people on the Multi-HMR grid and build their decoder queries.

    mhmr_tokens: (V, n*n, backbone_dim) DINOv2 tokens of the padded square images.
    cut3r_tokens: (V, (H/16)*(W/16), enc_dim) CUT3R encoder tokens, row-major.
    image_hw: (H, W) of the CUT3R input images (same for all views).
    """
    height, width = int(image_hw[0]), int(image_hw[1])
    grid = mhmr_res // bb_patch_size
    logits, scores = detection_scores(head, mhmr_tokens, grid)
    scores_nms = nms_3x3(scores)
    mask = human_mask(head, mhmr_tokens, grid, bb_patch_size) if hasattr(head, "mlp_msk") else None
    view, row, col = select_detections(scores_nms, threshold)

    tok_mhmr = gather_cells(mhmr_tokens, view, row, col, grid)
    offset, loc_mhmr = head_location(head, tok_mhmr, row, col, bb_patch_size)
    loc_cut3r = unpad_uv(loc_mhmr, mhmr_res, height, width)
    uv_cut3r = patch_cell(loc_cut3r, cut3r_patch_size)
    cut3r_w = width // cut3r_patch_size
    cut3r_index = uv_cut3r[:, 1] * cut3r_w + uv_cut3r[:, 0]
    tok_cut3r = cut3r_tokens[view, cut3r_index]
    return HumanTokens(
        det_logits=logits,
        det_scores=scores,
        det_scores_nms=scores_nms,
        mask=mask,
        view=view,
        row=row,
        col=col,
        offset=offset,
        loc_mhmr=loc_mhmr,
        loc_cut3r=loc_cut3r,
        uv_cut3r=uv_cut3r,
        cut3r_index=cut3r_index,
        tok_mhmr=tok_mhmr,
        tok_cut3r=tok_cut3r,
        tok_fused=fuse_tokens(head, tok_mhmr, tok_cut3r),
    )


def rot6d_to_rotmat(x):
    """(..., 6) -> (..., 3, 3). The 6 numbers are the first two columns, stored row-major (3x2);
    Gram-Schmidt with a clamped norm, third column = cross product."""
    m = x.reshape(*x.shape[:-1], 3, 2)
    a, b = m[..., 0], m[..., 1]
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(GRAM_SCHMIDT_EPS)
    b = b - (a * b).sum(dim=-1, keepdim=True) * a
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(GRAM_SCHMIDT_EPS)
    return torch.stack([a, b, torch.cross(a, b, dim=-1)], dim=-1)


def regress_smplx(head, smpl_token_cat):
    """SMPL-X parameters per person.

    smpl_token_cat: (N, dec_dim + backbone_dim) = [decoder human token, Multi-HMR token].
    Returns rotmat (N, 53, 3, 3), shape (N, 10), transl (N, 3) = head joint in camera frame,
    expression (N, 10).
    """
    dec_dim = head.deccam.mlp.layers[0].in_features  # translation reads the decoder token only
    pose6d = head.decpose(smpl_token_cat) + head.init_body_pose
    return {
        "smpl_rotmat": rot6d_to_rotmat(pose6d.reshape(*pose6d.shape[:-1], NUM_ROTATIONS, 6)),
        "smpl_shape": head.decshape(smpl_token_cat) + head.init_betas,
        "smpl_transl": exp_scaled_points(head.deccam(smpl_token_cat[..., :dec_dim])),
        "smpl_expression": head.decexpression(smpl_token_cat) + head.init_expression,
    }
