"""Tracker, SMPL-X body model and npz export against the reference fixtures."""

import json

import numpy as np
import pytest
import torch

from helpers import assert_close_ref
from human3r_ros.engine.body_model import BodyModel, BodyModelError
from human3r_ros.engine.frame_result import FrameResult, build_people
from human3r_ros.engine.npz_schema import to_npz_dict
from human3r_ros.engine.smplx_pose import (
    axis_angle_to_rotmat,
    people_pose_from_network,
    rotmat_to_axis_angle,
)
from human3r_ros.engine.tracker import HumanTracker

CASES = ["plain", "ttt3r", "reset"]


@pytest.fixture(scope="module", params=CASES)
def case(request, reference_dir):
    return np.load(reference_dir / f"tiny_{request.param}_io.npz")


@pytest.fixture(scope="module")
def body_model(reference_dir):
    return BodyModel(reference_dir / "synthetic_smplx")


def test_tracker_matches_reference(case):
    tracker = HumanTracker()
    views = case["hv_view"]
    tokens = torch.from_numpy(case["hv_tok_track"])
    expected_reports = {e["view"]: e for e in json.loads(str(case["tracking_json"]))}
    ids = []
    # Every processed view feeds the tracker, reset views and their copies included.
    for v in range(len(case["view_reset"])):
        ids.append(tracker.update(tokens[views == v]))
        report = tracker.last_report
        if v not in expected_reports:
            assert report is None
            continue
        expected = expected_reports[v]
        assert_close_ref(report.log_assignment, np.array(expected["log_assignment_with_dustbins"]),
                         f"log_assignment view {v}")
        np.testing.assert_array_equal(report.kept_matched, expected["valid0"])
        np.testing.assert_array_equal(report.ids, expected["smpl_id"])
    np.testing.assert_array_equal(np.concatenate(ids), case["hv_smpl_id"])


def test_tracker_reset_and_empty_views():
    tracker = HumanTracker()
    assert tracker.update(torch.zeros(0, 4)).shape == (0,)
    np.testing.assert_array_equal(tracker.update(torch.eye(3, 4)), [0, 1, 2])
    np.testing.assert_array_equal(tracker.update(torch.eye(3, 4)[[2, 0]]), [2, 0])
    assert tracker.num_kept == 3  # person 1 is remembered
    assert tracker.update(torch.zeros(0, 4)).shape == (0,)
    assert tracker.num_kept == 3
    tracker.reset()
    assert tracker.max_id == -1
    np.testing.assert_array_equal(tracker.update(torch.eye(2, 4)), [0, 1])


def _frame_inputs(case, frame):
    """Network outputs (hv rows) that the given output frame was made from."""
    rows = np.nonzero(case["hv_view"] == case["frame_view_index"][frame])[0]
    return rows, dict(rotmat=case["hv_smpl_rotmat"][rows], betas=case["hv_smpl_shape"][rows],
                      transl_cam=case["hv_smpl_transl"][rows], expression=case["hv_smpl_expression"][rows],
                      c2w=case["frame_c2w"][frame])


def _frame_results(case, body_model):
    results = []
    for f in range(len(case["frame_view_index"])):
        rows, inputs = _frame_inputs(case, f)
        people = body_model.evaluate(**inputs) if body_model else people_pose_from_network(**inputs)[0]
        view = case["frame_view_index"][f]
        cells = np.stack([case["hv_h_id"][rows], case["hv_w_id"][rows]], axis=-1)
        scores = case["view_det_scores_nms"][view][cells[:, 0], cells[:, 1]]
        results.append(FrameResult(
            index=f, stamp=0.1 * f, c2w=case["frame_c2w"][f], intrinsics=case["frame_intrinsics"][f],
            pts3d_world=case["frame_pts3d_world"][f], conf=case["frame_conf_world"][f],
            depth=case["frame_depth"][f], human_mask=case["frame_msk"][f],
            det_scores=case["frame_det_scores"][f],
            people=build_people(people, case["hv_smpl_id"][rows], scores,
                                case["hv_loc_cut3r_px"][rows], cells),
            reset=bool(case["view_reset"][view])))
    return results


HF_KEYS = ["hf_frame", "hf_smpl_id", "hf_global_orient", "hf_body_pose", "hf_left_hand_pose",
           "hf_right_hand_pose", "hf_jaw_pose", "hf_betas", "hf_expression", "hf_transl_cam",
           "hf_verts_cam", "hf_joints_cam", "hf_transl_pelvis_cam", "hf_verts_world",
           "hf_joints_world", "hf_R_world", "hf_transl_world", "hf_j_head_body",
           "hf_T_cam_body", "hf_T_world_body"]
FRAME_KEYS = ["frame_pts3d_world", "frame_conf_world", "frame_depth", "frame_c2w", "frame_focal",
              "frame_pp", "frame_intrinsics", "frame_det_scores", "frame_msk"]


def test_body_model_and_npz_export_match_reference(case, body_model):
    exported = to_npz_dict(_frame_results(case, body_model))
    for key in FRAME_KEYS + HF_KEYS:
        assert exported[key].dtype == case[key].dtype, key
        assert_close_ref(exported[key], case[key], key)


def test_pose_without_body_model(case):
    exported = to_npz_dict(_frame_results(case, None))
    assert "hf_verts_cam" not in exported and "hf_T_world_body" not in exported
    for key in ["hf_smpl_id", "hf_global_orient", "hf_body_pose", "hf_jaw_pose", "hf_transl_cam",
                "hf_R_world", "hf_transl_world"]:
        assert_close_ref(exported[key], case[key], key)
    # The head pose and the body transform differ only by the body-frame head joint.
    t_head = exported["hf_T_world_head"]
    assert_close_ref(t_head[:, :3, 3], case["hf_transl_world"], "T_world_head translation")
    shift = np.tile(np.eye(4, dtype=np.float32), (len(t_head), 1, 1))
    shift[:, :3, 3] = -case["hf_j_head_body"]
    assert_close_ref(t_head @ shift, case["hf_T_world_body"], "T_world_head @ shift")


def test_empty_frame(body_model):
    people = body_model.evaluate(np.zeros((0, 53, 3, 3)), np.zeros((0, 10)), np.zeros((0, 3)),
                                 np.zeros((0, 10)), np.eye(4))
    assert len(people) == 0 and people.verts_cam.shape == (0, 10475, 3)
    assert build_people(people, [], [], np.zeros((0, 2)), np.zeros((0, 2))) == []


def test_axis_angle_round_trip_near_pi_and_zero():
    gen = torch.Generator().manual_seed(0)
    axes = torch.nn.functional.normalize(torch.randn(64, 3, generator=gen), dim=-1)
    angles = torch.cat([torch.tensor([0.0, 1e-7, 1e-4, 2e-3]), torch.linspace(0.1, np.pi - 1e-3, 56),
                        torch.tensor([np.pi - 1e-5, np.pi - 1e-6, np.pi - 1e-7, np.pi])])[:, None]
    rotvec = (axes * angles).double()
    back = rotmat_to_axis_angle(axis_angle_to_rotmat(rotvec))
    # At pi, v and -v are the same rotation.
    err = torch.minimum((back - rotvec).norm(dim=-1), (back + rotvec).norm(dim=-1))
    assert float(err.max()) < 1e-6


def test_missing_body_model_names_expected_path(tmp_path):
    with pytest.raises(BodyModelError, match=r"smplx/SMPLX_NEUTRAL\.npz"):
        BodyModel(tmp_path / "nowhere")
