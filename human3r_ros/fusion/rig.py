"""The camera rig: each camera's metric extrinsics and its place in the rig's world frame.

Frames (metres unless a camera's own reconstruction units are named):
  * camera frame: a camera's optical frame now (OpenCV axes, x right, y down, z forward);
  * camera world: that camera's optical frame at its first frame, in the units of its own
    reconstruction (near-metric, off by the camera's scale factor);
  * rig frame: the rig now; ``extrinsics[camera]`` is the camera frame in the rig frame;
  * rig world: the rig frame at the first frame set, the common frame of fused people.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from human3r_ros.fusion.averaging import mean_rotation


def pose_from_xyz_quat(values: Sequence[float], name: str = "pose") -> np.ndarray:
    """[x, y, z, qx, qy, qz, qw] -> 4x4 transform (float64); the quaternion is normalised."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.shape != (7,):
        raise ValueError(f"{name}: expected 7 numbers [x, y, z, qx, qy, qz, qw], got {values.shape[0]}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: every value must be finite, got {values.tolist()}")
    if np.linalg.norm(values[3:]) < 1e-6:
        raise ValueError(f"{name}: the quaternion (qx, qy, qz, qw) must not be zero")
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_quat(values[3:]).as_matrix()
    pose[:3, 3] = values[:3]
    return pose


def scaled_pose(c2w: np.ndarray, scale: float) -> np.ndarray:
    """A camera pose in its own world with the translation turned into metres."""
    pose = np.array(c2w, dtype=np.float64)
    pose[:3, 3] *= scale
    return pose


class Rig:
    """Metric extrinsics of named cameras and where each camera's own world sits in the rig world.

    A camera's world is its first optical frame, so when every camera starts with the first
    frame set its world sits at its extrinsics in the rig world (the default anchor). A camera
    that starts later (or restarts its world after a reset) is anchored with
    :meth:`anchor_camera` from the rig pose at that moment.
    """

    def __init__(self, extrinsics: Mapping[str, np.ndarray | Sequence[float]]):
        if not extrinsics:
            raise ValueError("the rig needs at least one camera's extrinsics")
        self.extrinsics: dict[str, np.ndarray] = {}
        for camera, value in extrinsics.items():
            pose = np.asarray(value, dtype=np.float64)
            if pose.shape != (4, 4):
                pose = pose_from_xyz_quat(pose, f"extrinsics.{camera}")
            self.extrinsics[camera] = pose
        self._anchors = {camera: pose.copy() for camera, pose in self.extrinsics.items()}

    @property
    def cameras(self) -> list[str]:
        return list(self.extrinsics)

    def check_camera(self, camera: str) -> None:
        if camera not in self.extrinsics:
            raise KeyError(f"camera {camera!r} has no extrinsics (rig cameras: {self.cameras})")

    def anchor(self, camera: str) -> np.ndarray:
        """4x4 pose of the camera's world in the rig world."""
        self.check_camera(camera)
        return self._anchors[camera]

    def anchor_camera(self, camera: str, rig_pose: np.ndarray, c2w: np.ndarray | None = None,
                      scale: float = 1.0) -> None:
        """Place a camera's world in the rig world from one moment at which the rig stood at
        ``rig_pose`` (rig frame -> rig world) and the camera at ``c2w`` in its own world
        (default: identity, the camera's first frame)."""
        self.check_camera(camera)
        own_pose = np.eye(4) if c2w is None else scaled_pose(c2w, scale)
        rig_pose = np.asarray(rig_pose, dtype=np.float64)
        self._anchors[camera] = rig_pose @ self.extrinsics[camera] @ np.linalg.inv(own_pose)

    def to_rig(self, camera: str, points_cam: np.ndarray, scale: float) -> np.ndarray:
        """Points (..., 3) in the camera frame (reconstruction units) -> rig frame, metres."""
        pose = self.extrinsics[camera]
        return scale * np.asarray(points_cam, dtype=np.float64) @ pose[:3, :3].T + pose[:3, 3]

    def to_rig_world(self, camera: str, points_world: np.ndarray, scale: float) -> np.ndarray:
        """Points (..., 3) in the camera's own world (reconstruction units) -> rig world, metres:
        scaled about that world's origin, then placed by its anchor (as rig_pose_from_camera)."""
        anchor = self.anchor(camera)
        return scale * np.asarray(points_world, dtype=np.float64) @ anchor[:3, :3].T + anchor[:3, 3]

    def rig_pose_from_camera(self, camera: str, c2w: np.ndarray, scale: float) -> np.ndarray:
        """Rig frame -> rig world (4x4) as seen by one camera's own trajectory."""
        return self.anchor(camera) @ scaled_pose(c2w, scale) @ np.linalg.inv(self.extrinsics[camera])

    def rig_pose(self, c2w_by_camera: Mapping[str, np.ndarray], scales: Mapping[str, float]) -> np.ndarray:
        """Rig frame -> rig world from every given camera's pose: translations averaged,
        rotations by the quaternion mean (the cameras' trajectories drift apart slowly)."""
        if not c2w_by_camera:
            raise ValueError("the rig pose needs at least one camera pose")
        poses = np.stack([
            self.rig_pose_from_camera(camera, c2w, scales[camera]) for camera, c2w in c2w_by_camera.items()
        ])
        rig_pose = np.eye(4)
        rotations = Rotation.from_matrix(poses[:, :3, :3]).as_quat()
        rig_pose[:3, :3] = Rotation.from_quat(mean_rotation(rotations)).as_matrix()
        rig_pose[:3, 3] = poses[:, :3, 3].mean(axis=0)
        return rig_pose
