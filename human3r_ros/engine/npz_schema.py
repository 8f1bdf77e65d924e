"""Engine results -> arrays named like the reference fixtures (``frame_*``, ``hf_*``).

``frame_*`` hold one row per frame result; ``hf_*`` one row per person per
frame, ``hf_frame`` being the row of that person's frame in ``frame_*``.
Mesh-dependent ``hf_*`` keys (vertices, joints, pelvis, head joint of the
body, body transforms) are written only when every person has a mesh, i.e.
when the engine ran with a body model.

Extra keys not in the fixtures: ``frame_index``, ``frame_stamp`` (NaN when
unknown), ``frame_reset``, ``hf_score``, ``hf_image_location``,
``hf_detection_cell``, ``hf_T_cam_head``, ``hf_T_world_head``, ``hf_global_orient_world``
(axis-angle of the body in the world frame, as in human3r_msgs/Human).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from human3r_ros.engine.frame_result import FrameResult, Person
from human3r_ros.engine.smplx_pose import SMPLX_NUM_JOINTS, SMPLX_NUM_VERTICES

# hf key -> (Person attribute, per-person shape); always written.
_PERSON_KEYS = {
    "hf_global_orient": ("global_orient", (3,)),
    "hf_global_orient_world": ("global_orient_world", (3,)),
    "hf_body_pose": ("body_pose", (21, 3)),
    "hf_left_hand_pose": ("left_hand_pose", (15, 3)),
    "hf_right_hand_pose": ("right_hand_pose", (15, 3)),
    "hf_jaw_pose": ("jaw_pose", (3,)),
    "hf_betas": ("betas", (10,)),
    "hf_expression": ("expression", (10,)),
    "hf_transl_cam": ("head_position_cam", (3,)),
    "hf_transl_world": ("head_position_world", (3,)),
    "hf_T_cam_head": ("T_cam_head", (4, 4)),
    "hf_T_world_head": ("T_world_head", (4, 4)),
    "hf_image_location": ("image_location", (2,)),
}

# Written only with a body model.
_MESH_KEYS = {
    "hf_verts_cam": ("vertices_cam", (SMPLX_NUM_VERTICES, 3)),
    "hf_joints_cam": ("joints_cam", (SMPLX_NUM_JOINTS, 3)),
    "hf_transl_pelvis_cam": ("pelvis_position_cam", (3,)),
    "hf_verts_world": ("vertices_world", (SMPLX_NUM_VERTICES, 3)),
    "hf_joints_world": ("joints_world", (SMPLX_NUM_JOINTS, 3)),
    "hf_j_head_body": ("head_joint_body", (3,)),
    "hf_T_cam_body": ("T_cam_body", (4, 4)),
    "hf_T_world_body": ("T_world_body", (4, 4)),
}


def _stack(values: list, per_item_shape: tuple, dtype=np.float32) -> np.ndarray:
    if not values:
        return np.zeros((0, *per_item_shape), dtype=dtype)
    return np.stack([np.asarray(v, dtype=dtype) for v in values])


def to_npz_dict(results: Sequence[FrameResult]) -> dict[str, np.ndarray]:
    """Frame results -> dict of arrays for ``np.savez`` (fixture key names)."""
    out: dict[str, np.ndarray] = {}
    intrinsics = _stack([r.intrinsics for r in results], (3, 3))
    out["frame_index"] = np.array([r.index for r in results], dtype=np.int64)
    out["frame_stamp"] = np.array([np.nan if r.stamp is None else r.stamp for r in results], dtype=np.float64)
    out["frame_reset"] = np.array([r.reset for r in results], dtype=bool)
    out["frame_c2w"] = _stack([r.c2w for r in results], (4, 4))
    out["frame_intrinsics"] = intrinsics
    out["frame_focal"] = intrinsics[:, 0, 0].copy()
    out["frame_pp"] = intrinsics[:, :2, 2].copy()
    if results:
        out["frame_pts3d_world"] = _stack([r.pts3d_world for r in results], ())
        out["frame_conf_world"] = _stack([r.conf for r in results], ())
        out["frame_depth"] = _stack([r.depth for r in results], ())
        out["frame_det_scores"] = _stack([r.det_scores for r in results], ())
        out["frame_msk"] = _stack([r.human_mask for r in results], ())

    rows: list[tuple[int, Person]] = [(i, p) for i, r in enumerate(results) for p in r.people]
    people = [p for _, p in rows]
    out["hf_frame"] = np.array([i for i, _ in rows], dtype=np.int64)
    out["hf_smpl_id"] = np.array([p.track_id for p in people], dtype=np.int64)
    out["hf_score"] = np.array([p.score for p in people], dtype=np.float32)
    out["hf_detection_cell"] = _stack([p.detection_cell for p in people], (2,), dtype=np.int64)
    for key, (attr, shape) in _PERSON_KEYS.items():
        out[key] = _stack([getattr(p, attr) for p in people], shape)
    out["hf_R_world"] = out["hf_T_world_head"][:, :3, :3].copy()

    if all(p.has_mesh for p in people):
        for key, (attr, shape) in _MESH_KEYS.items():
            out[key] = _stack([getattr(p, attr) for p in people], shape)
    return out
