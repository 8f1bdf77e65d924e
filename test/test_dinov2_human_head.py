"""Parity of the DINOv2 backbone and the Multi-HMR human head parts with the reference fixtures."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from helpers import assert_close_ref
from human3r_ros.model.config import DINOV2_SIZES
from human3r_ros.model.dinov2 import Dinov2Backbone
from human3r_ros.model.human_head import (
    build_human_modules,
    regress_smplx,
    smpl_init_buffers,
    tokenize_humans,
)

CASES = ["plain", "ttt3r", "reset"]
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
# tiny_config.json: DINOv2 patched to 32/2/2; CUT3R enc 48, dec 24.
TINY_DIMS = dict(backbone_dim=32, enc_dim=48, dec_dim=24)


def strip_prefix(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def build_tiny_head(weights, mean_params):
    head = nn.Module()
    for name, buf in smpl_init_buffers(mean_params).items():
        head.register_buffer(name, buf)
    for name, module in build_human_modules(**TINY_DIMS).items():
        setattr(head, name, module)
    # The downstream head also holds DPT/pose modules; keep only what the human parts own.
    owned = set(head.state_dict())
    head.load_state_dict({k: v for k, v in strip_prefix(weights, "downstream_head.").items() if k in owned}, strict=True)
    return head.eval()


@pytest.fixture(scope="module", params=CASES)
def case(request, reference_dir):
    torch.set_num_threads(1)
    weights = load_file(str(reference_dir / f"tiny_{request.param}_weights.safetensors"))
    io = dict(np.load(reference_dir / f"tiny_{request.param}_io.npz"))
    backbone = Dinov2Backbone(embed_dim=32, depth=2, num_heads=2)
    backbone.load_state_dict(strip_prefix(weights, "backbone."), strict=True)
    head = build_tiny_head(weights, reference_dir / "synthetic_smplx" / "smpl_mean_params.npz")
    return backbone.eval(), head, io


def test_normalised_input_matches_reference(case):
    _, _, io = case
    img = torch.from_numpy(io["view_img_mhmr"][:1])
    assert_close_ref((img * 0.5 + 0.5 - IMAGENET_MEAN) / IMAGENET_STD, io["backbone_input_view0"], "backbone_input")


def test_dinov2_tokens(case):
    backbone, _, io = case
    img = torch.from_numpy(io["view_img_mhmr"])
    with torch.no_grad():
        tokens = backbone((img * 0.5 + 0.5 - IMAGENET_MEAN) / IMAGENET_STD)
    assert_close_ref(tokens, io["view_mhmr_feat"], "view_mhmr_feat")


@pytest.fixture(scope="module")
def humans(case):
    _, head, io = case
    with torch.no_grad():
        return tokenize_humans(
            head,
            torch.from_numpy(io["view_mhmr_feat"]),
            torch.from_numpy(io["view_enc_feat"]),
            image_hw=tuple(io["view_true_shape"][0]),
            mhmr_res=io["view_img_mhmr"].shape[-1],
        )


def test_detection(case, humans):
    _, _, io = case
    assert_close_ref(humans.det_logits, io["view_det_logits"], "view_det_logits")
    assert_close_ref(humans.det_scores, io["view_det_scores_raw"], "view_det_scores_raw")
    assert_close_ref(humans.det_scores_nms, io["view_det_scores_nms"], "view_det_scores_nms")
    np.testing.assert_array_equal(humans.view.numpy(), io["hv_view"])
    np.testing.assert_array_equal(humans.row.numpy(), io["hv_h_id"])
    np.testing.assert_array_equal(humans.col.numpy(), io["hv_w_id"])
    counts = np.bincount(humans.view.numpy(), minlength=len(io["view_n_humans"]))
    np.testing.assert_array_equal(counts, io["view_n_humans"])


def test_mask(case, humans):
    _, _, io = case
    assert_close_ref(humans.mask, io["view_msk"], "view_msk")


def test_head_location_and_tokens(case, humans):
    _, _, io = case
    assert_close_ref(humans.tok_mhmr, io["hv_tok_mhmr"], "hv_tok_mhmr")
    assert_close_ref(humans.offset, io["hv_offset"], "hv_offset")
    assert_close_ref(humans.loc_mhmr, io["hv_loc_mhmr_px"], "hv_loc_mhmr_px")
    assert_close_ref(humans.loc_cut3r, io["hv_loc_cut3r_px"], "hv_loc_cut3r_px")
    np.testing.assert_array_equal(humans.uv_cut3r.numpy(), io["hv_uv_cut3r"])
    assert_close_ref(humans.tok_cut3r, io["hv_tok_cut3r"], "hv_tok_cut3r")
    assert_close_ref(humans.tok_fused, io["hv_tok_fused"], "hv_tok_fused")


def test_smplx_regression(case):
    _, head, io = case
    token_cat = torch.cat([torch.from_numpy(io["hv_tok_track"]), torch.from_numpy(io["hv_tok_mhmr"])], dim=-1)
    with torch.no_grad():
        smpl = regress_smplx(head, token_cat)
    for key in ["smpl_rotmat", "smpl_shape", "smpl_transl", "smpl_expression"]:
        assert_close_ref(smpl[key], io[f"hv_{key}"], f"hv_{key}")


def test_init_buffers_match_checkpoint(reference_dir):
    weights = load_file(str(reference_dir / "tiny_plain_weights.safetensors"))
    buffers = smpl_init_buffers(reference_dir / "synthetic_smplx" / "smpl_mean_params.npz")
    for name, value in buffers.items():
        torch.testing.assert_close(value, weights[f"downstream_head.{name}"], rtol=0, atol=0)


def manifest_entries(reference_dir, variant, prefix):
    manifest = json.loads((reference_dir / f"manifest_human3r_{variant}.json").read_text())
    return manifest, [(e["key"][len(prefix):], e["shape"]) for e in manifest["state_dict"] if e["key"].startswith(prefix)]


@pytest.mark.parametrize("variant", ["672S", "672B", "672L", "896L"])
def test_state_dict_layout_matches_manifest(reference_dir, variant):
    manifest, backbone_keys = manifest_entries(reference_dir, variant, "backbone.")
    with torch.device("meta"):
        backbone = Dinov2Backbone(*DINOV2_SIZES[manifest["backbone"]])
    assert [(k, list(v.shape)) for k, v in backbone.state_dict().items()] == backbone_keys

    _, head_keys = manifest_entries(reference_dir, variant, "downstream_head.")
    dims = dict(
        backbone_dim=manifest["backbone_embed_dim"],
        enc_dim=dict(head_keys)["mlp_fuse.mlp.layers.0.weight"][1] - manifest["backbone_embed_dim"],
        dec_dim=dict(head_keys)["deccam.mlp.layers.0.weight"][1],
    )
    with torch.device("meta"):
        head = nn.Module()
        for name, module in build_human_modules(**dims).items():
            setattr(head, name, module)
    ours = [(f"{name}.{k}", list(v.shape)) for name, m in head.named_children() for k, v in m.state_dict().items()]
    human = {name for name, _ in head.named_children()}
    assert ours == [(k, s) for k, s in head_keys if k.split(".")[0] in human]
    buffers = smpl_init_buffers(reference_dir / "synthetic_smplx" / "smpl_mean_params.npz")
    assert [(k, list(v.shape)) for k, v in buffers.items()] == [(k, s) for k, s in head_keys if k.startswith("init_")]
