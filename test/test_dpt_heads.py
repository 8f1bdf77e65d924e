"""DPT heads, camera pose head and output post-processing against the reference fixtures."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import assert_close_ref
from human3r_ros.model.camera_head import CameraPoseHead
from human3r_ros.model.dpt import DPTHead
from human3r_ros.model.postprocess import (
    camera_pose_encoding,
    dense_points_and_confidence,
    dense_rgb,
    pose_encoding_to_c2w,
)

DPT_PREFIXES = ["downstream_head.dpt_self.", "downstream_head.dpt_cross.", "downstream_head.dpt_rgb."]
POSE_PREFIX = "downstream_head.pose_head."
TINY = dict(dim_tokens=[48, 24, 24, 24], num_channels=4, feature_dim=16, last_dim=8, layer_dims=[8, 16, 16, 32])
CASES = ["plain", "ttt3r", "reset"]


def _manifest_entries(reference_dir, variant, prefix):
    manifest = json.loads((reference_dir / f"manifest_human3r_{variant}.json").read_text())
    entries = [e for e in manifest["state_dict"] if e["key"].startswith(prefix)]
    assert entries, f"no {prefix} keys in manifest {variant}"
    return entries


def _strip(entries, prefix):
    return [(e["key"][len(prefix):], tuple(e["shape"])) for e in entries]


def _state_dict_layout(module):
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def _assert_aliases_shared(module, entries, prefix):
    # remove_duplicate=False yields every registration of a parameter, each as the same object.
    params = dict(module.named_parameters(remove_duplicate=False))
    aliased = [e for e in entries if "alias_of" in e]
    assert len(aliased) == 4
    for e in aliased:
        key, target = e["key"][len(prefix):], e["alias_of"][len(prefix):]
        assert params[key] is params[target], f"{key} is not the same parameter as {target}"
    assert len(list(module.parameters())) == len(params) - len(aliased)


@pytest.fixture(scope="module")
def tiny_weights(reference_dir):
    return load_file(str(reference_dir / "tiny_plain_weights.safetensors"))


def test_dpt_official_defaults_match_672s(reference_dir):
    prefix = "downstream_head.dpt_self."
    entries = _manifest_entries(reference_dir, "672S", prefix)
    with torch.device("meta"):
        head = DPTHead(dim_tokens=[1024, 768, 768, 768], num_channels=4)
    assert _state_dict_layout(head) == _strip(entries, prefix)
    _assert_aliases_shared(head, entries, prefix)


def test_tiny_dpt_layout_and_order(reference_dir, tiny_weights):
    prefix = "downstream_head.dpt_self."
    order = [k for k, _ in _strip(_manifest_entries(reference_dir, "672S", prefix), prefix)]
    head = DPTHead(**TINY)
    assert list(head.state_dict()) == order
    expected = {k[len(prefix):]: tuple(v.shape) for k, v in tiny_weights.items() if k.startswith(prefix)}
    assert dict(_state_dict_layout(head)) == expected


@pytest.mark.parametrize("prefix", DPT_PREFIXES)
def test_tiny_dpt_loads_strictly(tiny_weights, prefix):
    state = {k[len(prefix):]: v for k, v in tiny_weights.items() if k.startswith(prefix)}
    head = DPTHead(**dict(TINY, num_channels=3 if prefix.endswith("rgb.") else 4))
    head.load_state_dict(state, strict=True)
    for key, value in head.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert head.scratch.layer_rn[3].weight is head.scratch.layer4_rn.weight


@pytest.mark.parametrize("image_size", [(48, 64), (80, 48), (16, 16)])
def test_tiny_dpt_forward_shapes(tiny_weights, image_size):
    prefix = "downstream_head.dpt_self."
    head = DPTHead(**TINY)
    head.load_state_dict({k[len(prefix):]: v for k, v in tiny_weights.items() if k.startswith(prefix)})
    n = (image_size[0] // 16) * (image_size[1] // 16)
    gen = torch.Generator().manual_seed(0)
    tokens = [torch.randn(2, n, c, generator=gen) for c in TINY["dim_tokens"]]
    with torch.inference_mode():
        out = head(tokens, image_size)
        single = head([t[1:] for t in tokens], image_size)
    assert out.shape == (2, 4, *image_size)
    assert torch.isfinite(out).all()
    # Batch elements are independent.
    torch.testing.assert_close(out[1:], single, rtol=1e-5, atol=1e-6)


def test_pose_head_loads_strictly(reference_dir, tiny_weights):
    state = {k[len(POSE_PREFIX):]: v for k, v in tiny_weights.items() if k.startswith(POSE_PREFIX)}
    head = CameraPoseHead(24)
    head.load_state_dict(state, strict=True)
    assert head(torch.zeros(3, 24)).shape == (3, 7)
    entries = _manifest_entries(reference_dir, "672S", POSE_PREFIX)
    with torch.device("meta"):
        big = CameraPoseHead(768)
    assert _state_dict_layout(big) == _strip(entries, POSE_PREFIX)


@pytest.mark.parametrize("case", CASES)
def test_camera_pose_postprocess_matches_reference(reference_dir, case):
    data = np.load(reference_dir / f"tiny_{case}_io.npz")
    encoding = camera_pose_encoding(torch.from_numpy(data["view_pose_head_raw"]))
    assert_close_ref(encoding, data["view_camera_pose_enc"], f"{case} view_camera_pose_enc")
    assert_close_ref(pose_encoding_to_c2w(encoding), data["view_c2w"], f"{case} view_c2w")


def test_dense_postprocess_properties():
    gen = torch.Generator().manual_seed(1)
    raw = torch.randn(2, 4, 5, 7, generator=gen)
    pts, conf = dense_points_and_confidence(raw)
    assert pts.shape == (2, 5, 7, 3) and conf.shape == (2, 5, 7)
    xyz = raw[:, :3].permute(0, 2, 3, 1)
    length = xyz.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(pts, xyz / length * torch.expm1(length))
    torch.testing.assert_close(conf, 1 + raw[:, 3].exp())
    # A zero vector maps to the origin instead of NaN.
    zero_pts, _ = dense_points_and_confidence(torch.zeros(1, 4, 1, 1))
    assert torch.equal(zero_pts, torch.zeros(1, 1, 1, 3))
    rgb = dense_rgb(raw[:, :3] * 100)
    assert rgb.shape == (2, 5, 7, 3) and rgb.abs().max() < 1
