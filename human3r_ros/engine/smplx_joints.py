"""Named SMPL-X joints for consumers of the 127 joints the body model returns (ROS-free).

Indices are positions in ``smplx.joint_names.JOINT_NAMES`` (the smplx package's output order:
55 skeleton joints, then joints it samples on the mesh, nose/eyes/ears among them).
"""

from __future__ import annotations

import numpy as np

SMPLX_JOINT_INDEX = {
    "pelvis": 0, "left_hip": 1, "right_hip": 2, "left_knee": 4, "right_knee": 5, "left_ankle": 7,
    "right_ankle": 8, "left_shoulder": 16, "right_shoulder": 17, "left_elbow": 18, "right_elbow": 19,
    "left_wrist": 20, "right_wrist": 21, "nose": 55, "right_eye": 56, "left_eye": 57, "right_ear": 58,
    "left_ear": 59,
}

# The 18 keypoints of OpenPose's COCO-18 model in its order (hri_msgs/Skeleton2D's constants
# NOSE = 0 ... RIGHT_EAR = 17). "neck" is OpenPose's: the mid-point of the shoulders, not
# SMPL-X's neck joint (which sits higher, at the base of the skull).
COCO18_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "left_eye", "right_eye", "left_ear", "right_ear",
)


def coco18_from_smplx(joints: np.ndarray) -> np.ndarray:
    """SMPL-X joints (..., 127, 3) -> the COCO-18 keypoints (..., 18, 3), same frame."""
    joints = np.asarray(joints, dtype=np.float64)
    neck = 0.5 * (joints[..., SMPLX_JOINT_INDEX["left_shoulder"], :]
                  + joints[..., SMPLX_JOINT_INDEX["right_shoulder"], :])
    keypoints = np.empty(joints.shape[:-2] + (len(COCO18_NAMES), 3))
    for k, name in enumerate(COCO18_NAMES):
        keypoints[..., k, :] = neck if name == "neck" else joints[..., SMPLX_JOINT_INDEX[name], :]
    return keypoints


def hips_midpoint(joints: np.ndarray) -> np.ndarray:
    """SMPL-X joints (..., 127, 3) -> mid-point of the two hip joints (..., 3): REP-155's body
    origin (SMPL-X's pelvis joint sits some centimetres above it)."""
    joints = np.asarray(joints, dtype=np.float64)
    return 0.5 * (joints[..., SMPLX_JOINT_INDEX["left_hip"], :] + joints[..., SMPLX_JOINT_INDEX["right_hip"], :])
