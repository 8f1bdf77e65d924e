"""Temporal smoothing of tracked people: One-Euro filters per track id (ROS-free).

Filtered, per track, with :mod:`human3r_ros.engine.one_euro`:
  * the head joint position in the world frame (metres; people move in the world, the
    camera's own motion is not theirs to smooth);
  * the body orientation in the world frame and the 52 SMPL-X joint rotations (21 body,
    2 x 15 hand, jaw; joint-local), on SO(3).
Everything else follows from those: the camera-frame position and orientation through the
frame's camera pose (not smoothed), and, with a body model, the mesh, joints, pelvis and body
transforms, re-evaluated from the filtered parameters by the same code that built the raw
people. Every field of a smoothed person therefore agrees with every other, as in a raw one.
Shape (betas) and expression pass unchanged. Cost: one more pose conversion per frame; the
engine, when smoothing, leaves the body model to the smoother, so SMPL-X still runs once a frame
(people given with meshes work too: only their pose fields are read).

A track's filters start from its first sample and are forgotten when the id is absent from a
frame, when time goes backwards, and on :meth:`PeopleSmoother.reset`.
"""

from __future__ import annotations

import numpy as np

from .body_model import BodyModel
from .frame_result import Person, build_people
from .one_euro import OneEuroSettings, RotationOneEuro, VectorOneEuro, rotation_matrices
from .smplx_pose import NUM_PREDICTED_ROTATIONS, people_pose_from_network


class PeopleSmoother:
    """Smooths the people of one camera's stream, frame after frame."""

    def __init__(self, settings: OneEuroSettings, body_model: BodyModel | None = None):
        self.settings = settings
        self.body_model = body_model
        self._positions = VectorOneEuro(settings)
        self._rotations = RotationOneEuro(settings)
        self._last_stamp: float | None = None

    def reset(self) -> None:
        """Forget every track and the time (a new sequence)."""
        self._positions.reset()
        self._rotations.reset()
        self._last_stamp = None

    @property
    def track_ids(self) -> list[int]:
        """Ids whose filters are kept (the people of the last smoothed frame)."""
        return list(self._positions.keys)

    def smooth(self, people: list[Person], stamp: float | None, c2w: np.ndarray) -> list[Person]:
        """The people of one frame (distinct track ids), stamped ``stamp`` seconds (None: no stamp)
        and seen from camera pose ``c2w`` (4, 4), with their positions and rotations smoothed."""
        dt = self._time_step(stamp)
        ids = [p.track_id for p in people]
        head_world = np.stack([p.head_position_world for p in people])[:, None] if people else np.zeros((0, 1, 3))
        rotations = _world_and_joint_rotations(people)
        head_world = self._positions.update(ids, head_world, dt)[:, 0]
        rotations = self._rotations.update(ids, rotations, dt)
        return self._rebuild(people, head_world, rotations, np.asarray(c2w, dtype=np.float64)) if people else []

    def _time_step(self, stamp: float | None) -> float:
        # Stamps give the real time between frames; without one (none, or a repeated one)
        # the nominal rate stands in. Time going backwards is a new sequence.
        fallback = 1.0 / self.settings.fallback_rate_hz
        last = self._last_stamp
        if stamp is not None:
            self._last_stamp = stamp
        if stamp is None or last is None or stamp == last:
            return fallback
        if stamp < last:
            self.reset()
            self._last_stamp = stamp
            return fallback
        return stamp - last

    def _rebuild(self, people: list[Person], head_world: np.ndarray, rotations: np.ndarray,
                 c2w: np.ndarray) -> list[Person]:
        r_c2w, t_c2w = c2w[:3, :3], c2w[:3, 3]
        r_cam = r_c2w.T @ rotations[:, 0]  # world -> camera frame of this view
        rotmat = np.concatenate([r_cam[:, None], rotations[:, 1:]], axis=1).astype(np.float32)
        head_cam = ((head_world - t_c2w) @ r_c2w).astype(np.float32)  # R^T (x - t), row vectors
        betas = np.stack([p.betas for p in people])
        expression = np.stack([p.expression for p in people])
        args = (rotmat, betas, head_cam, expression, c2w.astype(np.float32))
        smplx = self.body_model.evaluate(*args) if self.body_model is not None else people_pose_from_network(*args)[0]
        return build_people(
            smplx, [p.track_id for p in people], [p.score for p in people],
            np.stack([p.image_location for p in people]), np.stack([p.detection_cell for p in people]),
        )


def _world_and_joint_rotations(people: list[Person]) -> np.ndarray:
    """(n, 53, 3, 3) float64: the world body orientation, then the 52 joint rotations (SMPL-X order)."""
    if not people:
        return np.zeros((0, NUM_PREDICTED_ROTATIONS, 3, 3))
    joints = np.stack([
        np.concatenate([p.body_pose, p.left_hand_pose, p.right_hand_pose, p.jaw_pose[None]]) for p in people
    ]).astype(np.float64)
    joint_rotations = rotation_matrices(joints)
    world = np.stack([p.T_world_head[:3, :3] for p in people]).astype(np.float64)
    return np.concatenate([world[:, None], joint_rotations], axis=1)
