"""SMPL-X pose parameters and body placement that need no body-model file.

The network predicts, per person, 53 joint rotations as matrices, 10 shape
coefficients, 10 expression coefficients and the camera-frame position of the
SMPL-X ``head`` joint. This module turns those into axis-angle parameters and
rigid placements in the camera and world frames.

Frames and units: camera = OpenCV convention of the view (x right, y down,
z forward), world = first frame's camera frame chained over resets, metres.

What is *not* available without the body model: the head joint of the
un-posed body (``j_head_body``), hence ``T_cam_body`` / ``T_world_body``, the
pelvis position, vertices and joints. Those are filled in by
:class:`human3r_ros.engine.body_model.BodyModel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

# Order of the 53 predicted rotations (same as the reference SMPL-X layer):
# root, 21 body joints, 15 left-hand joints, 15 right-hand joints, jaw.
# The eyes are not predicted; they stay at zero rotation.
GLOBAL_ORIENT_SLICE = slice(0, 1)
BODY_POSE_SLICE = slice(1, 22)
LEFT_HAND_SLICE = slice(22, 37)
RIGHT_HAND_SLICE = slice(37, 52)
JAW_SLICE = slice(52, 53)
NUM_PREDICTED_ROTATIONS = 53

# SMPL-X output sizes (smplx package with the default landmark set).
SMPLX_NUM_VERTICES = 10475
SMPLX_NUM_JOINTS = 127
SMPLX_HEAD_JOINT = 15  # index of "head" in smplx.joint_names.JOINT_NAMES
SMPLX_PELVIS_JOINT = 0


def rotmat_to_axis_angle(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> axis-angle vectors (..., 3), radians.

    Goes through a unit quaternion built from the largest of the four
    diagonal-based candidates (well conditioned for every angle, including
    rotations close to pi), picks the quaternion with non-negative real part
    (angle in [0, pi]) and uses a Taylor series for tiny angles.
    """
    m = rotmat
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = torch.stack([m[..., 0, 0], m[..., 1, 1], m[..., 2, 2], trace], dim=-1)
    choice = candidates.argmax(dim=-1)

    # Quaternions (x, y, z, w) up to scale, one per choice; pick per element.
    # "w largest": 4w^2 dominates.
    q_w = torch.stack([m[..., 2, 1] - m[..., 1, 2],
                       m[..., 0, 2] - m[..., 2, 0],
                       m[..., 1, 0] - m[..., 0, 1],
                       1.0 + trace], dim=-1)
    # "x largest", "y largest", "z largest": 4x^2, 4y^2, 4z^2 dominate.
    q_x = torch.stack([1.0 - trace + 2.0 * m[..., 0, 0],
                       m[..., 1, 0] + m[..., 0, 1],
                       m[..., 2, 0] + m[..., 0, 2],
                       m[..., 2, 1] - m[..., 1, 2]], dim=-1)
    q_y = torch.stack([m[..., 0, 1] + m[..., 1, 0],
                       1.0 - trace + 2.0 * m[..., 1, 1],
                       m[..., 2, 1] + m[..., 1, 2],
                       m[..., 0, 2] - m[..., 2, 0]], dim=-1)
    q_z = torch.stack([m[..., 0, 2] + m[..., 2, 0],
                       m[..., 1, 2] + m[..., 2, 1],
                       1.0 - trace + 2.0 * m[..., 2, 2],
                       m[..., 1, 0] - m[..., 0, 1]], dim=-1)
    all_q = torch.stack([q_x, q_y, q_z, q_w], dim=-2)  # (..., 4 choices, 4)
    quat = torch.take_along_dim(all_q, choice[..., None, None].expand(*choice.shape, 1, 4), dim=-2)[..., 0, :]
    quat = quat / quat.norm(dim=-1, keepdim=True)
    quat = torch.where(quat[..., 3:] < 0, -quat, quat)

    sin_half = quat[..., :3].norm(dim=-1)
    angle = 2.0 * torch.atan2(sin_half, quat[..., 3])
    small = angle <= 1e-3
    # angle / sin(angle/2), with its series where the division is unstable.
    safe_angle = torch.where(small, torch.ones_like(angle), angle)
    scale = torch.where(small,
                        2.0 + angle ** 2 / 12.0 + 7.0 * angle ** 4 / 2880.0,
                        safe_angle / torch.sin(safe_angle / 2.0))
    return quat[..., :3] * scale[..., None]


def axis_angle_to_rotmat(rotvec: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors (..., 3), radians -> rotation matrices (..., 3, 3) (Rodrigues)."""
    angle = rotvec.norm(dim=-1, keepdim=True)
    small = angle < 1e-6
    # Below 1e-6 rad sin(a)/a ~ 1 and (1-cos a)/a^2 ~ 1/2 to float precision.
    safe = torch.where(small, torch.ones_like(angle), angle)
    sin_term = torch.where(small, torch.ones_like(angle), torch.sin(safe) / safe)
    cos_term = torch.where(small, torch.full_like(angle, 0.5), (1.0 - torch.cos(safe)) / safe ** 2)
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*rotvec.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(skew)
    return eye + sin_term[..., None] * skew + cos_term[..., None] * (skew @ skew)


def make_transform(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """(n,3,3) rotations and (n,3) translations -> (n,4,4) homogeneous transforms."""
    n = rotation.shape[0]
    out = np.zeros((n, 4, 4), dtype=np.float32)
    out[:, :3, :3] = rotation
    out[:, :3, 3] = translation
    out[:, 3, 3] = 1.0
    return out


@dataclass
class SmplxPeople:
    """Batched SMPL-X results of the n people of one frame (numpy, float32).

    Always present:
      global_orient (n,3), body_pose (n,21,3), left_hand_pose (n,15,3),
      right_hand_pose (n,15,3), jaw_pose (n,3): axis-angle, radians, SMPL-X
      joint-local (global_orient: body orientation in the camera frame).
      betas (n,10), expression (n,10): unitless coefficients.
      transl_cam (n,3): head joint position in the camera frame, metres.
      R_cam (n,3,3): body orientation in the camera frame (= global_orient).
      R_world (n,3,3): body orientation in the world frame.
      transl_world (n,3): head joint position in the world frame, metres.
      T_cam_head / T_world_head (n,4,4): rigid pose of the head joint with the
        body orientation, camera / world frame (known without a body model).

    With a body model only (else None):
      j_head_body (n,3): head joint of the SMPL-X output with zero global
        orientation and zero translation (body-model frame), metres.
      T_cam_body / T_world_body (n,4,4): map body-model-frame points x to the
        camera / world frame: x_cam = R_cam (x - j_head_body) + transl_cam.
      verts_cam / verts_world (n,10475,3), joints_cam / joints_world
        (n,127,3), transl_pelvis_cam / transl_pelvis_world (n,3): metres.
    """

    global_orient: np.ndarray
    global_orient_world: np.ndarray
    body_pose: np.ndarray
    left_hand_pose: np.ndarray
    right_hand_pose: np.ndarray
    jaw_pose: np.ndarray
    betas: np.ndarray
    expression: np.ndarray
    transl_cam: np.ndarray
    R_cam: np.ndarray
    R_world: np.ndarray
    transl_world: np.ndarray
    T_cam_head: np.ndarray
    T_world_head: np.ndarray
    j_head_body: Optional[np.ndarray] = None
    T_cam_body: Optional[np.ndarray] = None
    T_world_body: Optional[np.ndarray] = None
    verts_cam: Optional[np.ndarray] = None
    verts_world: Optional[np.ndarray] = None
    joints_cam: Optional[np.ndarray] = None
    joints_world: Optional[np.ndarray] = None
    transl_pelvis_cam: Optional[np.ndarray] = None
    transl_pelvis_world: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.transl_cam.shape[0])


def split_axis_angle(rotvec: torch.Tensor) -> dict:
    """(n,53,3) axis-angle -> SMPL-X parameter groups (torch tensors)."""
    return {
        "global_orient": rotvec[:, GLOBAL_ORIENT_SLICE.start],
        "body_pose": rotvec[:, BODY_POSE_SLICE],
        "left_hand_pose": rotvec[:, LEFT_HAND_SLICE],
        "right_hand_pose": rotvec[:, RIGHT_HAND_SLICE],
        "jaw_pose": rotvec[:, JAW_SLICE.start],
    }


def _as_float_tensor(x) -> torch.Tensor:
    # Post-processing runs on CPU in float32 whatever the network used.
    return torch.as_tensor(x).detach().to(dtype=torch.float32, device="cpu")


def apply_transform(c2w: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply a 4x4 transform to points (..., 3)."""
    return points @ c2w[:3, :3].T + c2w[:3, 3]


def people_pose_from_network(rotmat, betas, transl_cam, expression, c2w) -> tuple[SmplxPeople, dict]:
    """Network outputs of one frame -> :class:`SmplxPeople` without meshes.

    rotmat (n,53,3,3), betas (n,10), transl_cam (n,3) head joint in camera
    frame (metres), expression (n,10), c2w (4,4) camera-to-world. Accepts
    torch tensors or numpy arrays. Also returns the torch intermediates
    (axis-angle groups, body rotation) for the body model to reuse.
    """
    rotmat = _as_float_tensor(rotmat).reshape(-1, NUM_PREDICTED_ROTATIONS, 3, 3)
    n = rotmat.shape[0]
    betas = _as_float_tensor(betas)
    betas = betas.reshape(n, betas.shape[-1])
    transl_cam = _as_float_tensor(transl_cam).reshape(n, 3)
    expression = _as_float_tensor(expression)
    expression = expression.reshape(n, expression.shape[-1])
    c2w = _as_float_tensor(c2w).reshape(4, 4)

    groups = split_axis_angle(rotmat_to_axis_angle(rotmat))
    # The reference places the body with the rotation rebuilt from the
    # axis-angle (not the raw matrix); keep that so outputs agree with the
    # exported global_orient.
    r_cam = axis_angle_to_rotmat(groups["global_orient"])
    r_world = c2w[:3, :3] @ r_cam
    transl_world = apply_transform(c2w, transl_cam)

    r_cam_np = r_cam.numpy()
    r_world_np = r_world.numpy()
    people = SmplxPeople(
        global_orient=groups["global_orient"].numpy(),
        global_orient_world=rotmat_to_axis_angle(r_world).numpy(),
        body_pose=groups["body_pose"].numpy(),
        left_hand_pose=groups["left_hand_pose"].numpy(),
        right_hand_pose=groups["right_hand_pose"].numpy(),
        jaw_pose=groups["jaw_pose"].numpy(),
        betas=betas.numpy(),
        expression=expression.numpy(),
        transl_cam=transl_cam.numpy(),
        R_cam=r_cam_np,
        R_world=r_world_np,
        transl_world=transl_world.numpy(),
        T_cam_head=make_transform(r_cam_np, transl_cam.numpy()),
        T_world_head=make_transform(r_world_np, transl_world.numpy()),
    )
    torch_parts = dict(groups, betas=betas, expression=expression, transl_cam=transl_cam,
                       R_cam=r_cam, c2w=c2w)
    return people, torch_parts
