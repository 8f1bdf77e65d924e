"""The network against the reference fixtures: layouts of the released variants, and the
tiny random-weight cases end to end from the raw frames through our own preprocessing."""

import json

import numpy as np
import pytest
import torch

from helpers import assert_close_ref
from human3r_ros.engine.preprocess import preprocess_frame
from human3r_ros.engine.recurrent import RecurrentState, advance
from human3r_ros.model import VARIANT_NAMES, build_model, load_checkpoint
from human3r_ros.model.postprocess import pose_encoding_to_c2w


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_build_model_matches_manifest(reference_dir, variant):
    manifest = json.loads((reference_dir / f"manifest_{variant}.json").read_text())
    net = build_model(variant, device="meta")
    got = [(k, list(t.shape)) for k, t in net.state_dict().items()]
    expected = [(e["key"], e["shape"]) for e in manifest["state_dict"]]
    assert got == expected
    assert sum(p.numel() for p in net.parameters()) == manifest["total_parameter_count"]
    # aliases are one tensor, as in the published state dict
    params = dict(net.named_parameters(remove_duplicate=False))
    for e in manifest["state_dict"]:
        if e.get("alias_of"):
            assert params[e["key"]] is params[e["alias_of"]]


def run_views(net, z, use_ttt3r):
    """Feed the fixture's views (a reset boundary frame appears twice) through the network."""
    rs = RecurrentState.initial(*net.initial_state())
    frames = z["frames_uint8"]
    for v, f in enumerate(z["view_frame_index"]):
        view = preprocess_frame(frames[f], 64, mhmr_res=net.config.mhmr_img_res)
        out = net.forward_view(
            view.img[None], view.img_mhmr[None], rs.state, rs.memory, rs.fresh,
            want_gate=use_ttt3r and not rs.fresh, with_rgb=True, with_world_head=True,
        )
        yield v, rs, view, out
        rs = advance(rs, out.new_state, out.new_memory, out.ttt3r_gate, bool(z["view_reset"][v]))


# The reset case chains ten views through resets; on AVX2 kernels (AMD EPYC) float rounding
# drifts up to 1.35e-5 of a range by its last views (world pointmap head, track tokens), and the
# rgb head, which the engine does not run, to 1.02e-4, against below 8e-6 everywhere on the
# AVX-512 Xeons the fixtures were first matched on. The plain and TTT3R cases keep 1e-5.
RESET_CASE_ATOL = 3e-5
RGB_ATOL = 2e-4


@pytest.mark.parametrize("case", ["plain", "ttt3r", "reset"])
def test_tiny_case_matches_reference(reference_dir, case):
    torch.set_num_threads(2)
    atol = RESET_CASE_ATOL if case == "reset" else 1e-5
    z = np.load(reference_dir / f"tiny_{case}_io.npz")
    meta = json.loads(str(z["meta_json"]))
    net = load_checkpoint(reference_dir / f"tiny_{case}_checkpoint.pth")
    hv_view = z["hv_view"]
    for v, rs, view, out in run_views(net, z, meta["use_ttt3r"]):
        assert_close_ref(view.img, z["view_img"][v], f"view {v} img", atol_scale=atol)
        assert_close_ref(rs.state[0], z["view_state_in"][v], f"view {v} state_in", atol_scale=atol)
        d = out.dense
        for ours, ref in [
            ("pts3d_cam", "view_pts3d_cam"), ("conf_cam", "view_conf_cam"),
            ("pts3d_world_head", "view_pts3d_world_head"), ("conf_world_head", "view_conf_world_head"),
            ("rgb", "view_rgb"), ("camera_pose_enc", "view_camera_pose_enc"),
        ]:
            assert_close_ref(d[ours][0], z[ref][v], f"view {v} {ours}", atol_scale=RGB_ATOL if ours == "rgb" else atol)
        assert_close_ref(pose_encoding_to_c2w(d["camera_pose_enc"])[0], z["view_c2w"][v], f"view {v} c2w", atol_scale=atol)
        h = out.humans
        assert_close_ref(h.det_scores_nms[0], z["view_det_scores_nms"][v], f"view {v} det scores", atol_scale=atol)
        assert_close_ref(h.mask[0], z["view_msk"][v], f"view {v} mask", atol_scale=atol)
        rows = hv_view == v
        np.testing.assert_array_equal(h.row.numpy(), z["hv_h_id"][rows], err_msg=f"view {v} head rows")
        np.testing.assert_array_equal(h.col.numpy(), z["hv_w_id"][rows], err_msg=f"view {v} head cols")
        np.testing.assert_array_equal(h.uv_cut3r.numpy(), z["hv_uv_cut3r"][rows], err_msg=f"view {v} cut3r cells")
        if rows.any():
            assert_close_ref(out.tok_track, z["hv_tok_track"][rows], f"view {v} track tokens", atol_scale=atol)
            for key in ("smpl_rotmat", "smpl_shape", "smpl_transl", "smpl_expression"):
                assert_close_ref(out.smpl[key], z[f"hv_{key}"][rows], f"view {v} {key}", atol_scale=atol)
        if meta["use_ttt3r"] and out.ttt3r_gate is not None:
            assert_close_ref(out.ttt3r_gate[0], z["view_ttt3r_gate"][v], f"view {v} ttt3r gate", atol_scale=atol)
