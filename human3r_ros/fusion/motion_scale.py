"""Per-camera scale from the rig's own motion, without people.

The cameras of a rig move together. Between two frame sets, camera i's own trajectory gives
its motion M_i (rotation, and translation m_i in its reconstruction's units); with E_i its metric
extrinsics (rotation R_Ei, position e_i in the rig) and s_i its scale, the rig's motion Q is
E_i M_i E_i^-1 for every camera, so its translation is R_Ei s_i m_i + (I - R_Q) e_i. Equating two
cameras i and j gives three linear equations in (s_i, s_j):

    R_Ei m_i s_i - R_Ej m_j s_j = (I - R_Q) (e_j - e_i)

The right side is metric and non-zero only when the rig turns (a pure translation fixes only
the ratio of the scales), so a sample is taken once the rig has turned by `min_rotation_deg`
since the keyframe and the lever (I - R_Q)(e_j - e_i) is at least `min_lever_m` long; then the
keyframe moves on. The samples feed the same robust running estimate as the people's (scale).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import numpy as np
from scipy.spatial.transform import Rotation


MIN_CONDITION = 0.05  # smallest ratio of the pair system's singular values


class MotionScale:
    def __init__(self, extrinsics: Mapping[str, np.ndarray], min_rotation_deg: float = 15.0,
                 min_lever_m: float = 0.05, max_residual: float = 0.2):
        self.extrinsics = {c: np.asarray(e, dtype=np.float64) for c, e in extrinsics.items()}
        self.min_rotation = np.deg2rad(min_rotation_deg)
        self.min_lever = min_lever_m
        self.max_residual = max_residual  # largest residual of a pair's solution, relative to its lever
        self._keyframe: dict[str, np.ndarray] = {}  # camera -> its own pose at the keyframe set

    def reset_camera(self, camera: str) -> None:
        """The camera's world restarted: its poses before and after do not compare."""
        self._keyframe.pop(camera, None)

    def samples(self, c2w_by_camera: Mapping[str, np.ndarray]) -> list[tuple[str, float, float]]:
        """One frame set's cameras' own poses -> scale samples (camera, length in metres, the same
        length in the camera's units), for RunningScale.add."""
        poses = {c: np.asarray(p, dtype=np.float64) for c, p in c2w_by_camera.items() if c in self.extrinsics}
        if set(poses) != set(self._keyframe) or len(poses) < 2:
            self._keyframe = poses  # a keyframe needs every camera of the set, at the same moment
            return []
        motions = {c: np.linalg.inv(self._keyframe[c]) @ poses[c] for c in poses}
        # the rig's rotation as each camera sees it, averaged
        rig_rotations = Rotation.from_matrix(np.stack([
            self.extrinsics[c][:3, :3] @ motions[c][:3, :3] @ self.extrinsics[c][:3, :3].T for c in poses]))
        rig_rotation = rig_rotations.mean()
        if rig_rotation.magnitude() < self.min_rotation:
            return []
        self._keyframe = poses
        turn = np.eye(3) - rig_rotation.as_matrix()
        found = []
        for i, j in combinations(sorted(poses), 2):
            sample = self._pair(i, j, motions, turn)
            if sample is not None:
                found += sample
        return found

    def _pair(self, i: str, j: str, motions, turn: np.ndarray):
        ei, ej = self.extrinsics[i], self.extrinsics[j]
        lever = turn @ (ej[:3, 3] - ei[:3, 3])
        if np.linalg.norm(lever) < self.min_lever:
            return None
        mi, mj = motions[i][:3, 3], motions[j][:3, 3]
        a = np.stack([ei[:3, :3] @ mi, -(ej[:3, :3] @ mj)], axis=1)
        singular = np.linalg.svd(a, compute_uv=False)
        if singular[1] <= MIN_CONDITION * singular[0]:
            return None  # a camera that only turned, or both moved along one line: no answer for each
        (si, sj), *_ = np.linalg.lstsq(a, lever, rcond=None)
        residual = np.linalg.norm(a @ [si, sj] - lever)
        if not (si > 0 and sj > 0) or residual > self.max_residual * np.linalg.norm(lever):
            return None  # noise larger than the motion, or cameras that did not move together
        return [(i, si * np.linalg.norm(mi), float(np.linalg.norm(mi))),
                (j, sj * np.linalg.norm(mj), float(np.linalg.norm(mj)))]
