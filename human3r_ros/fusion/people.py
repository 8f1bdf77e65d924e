"""Fused people: one body seen by one or more cameras, in the rig's world frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class PersonView:
    """One camera's detection of a fused person.

    camera: camera name. track_id: that camera's track id. score: its detection score.
    head_position_rig (3,): its head placed in the rig frame (metres, scale applied).
    """

    camera: str
    track_id: int
    score: float
    head_position_rig: np.ndarray


@dataclass
class FusedPerson:
    """A person after cross-camera fusion (float32 arrays unless noted).

    person_id: global id, kept across cameras and frame sets.
    views: the cameras that saw the person this frame set, with their track ids.
    score: the best view's detection score.
    head_position_world / head_position_rig (3,): head joint, rig world / rig frame, metres:
      the views' head rays triangulated, their depths a weak prior (one view: its own head).
    global_orient_world / global_orient_rig (3,): body orientation (axis-angle), the views'
      orientations averaged by Markley's quaternion mean.
    T_world_head (4,4): head position with the body orientation in the rig world.
    body_pose (21,3), left_hand_pose (15,3), right_hand_pose (15,3), jaw_pose (3,), betas (10,),
      expression (10,): SMPL-X parameters averaged over the views (rotations per joint).
    pelvis_position_world (3,): pelvis (views' head-to-pelvis offsets averaged onto the fused
      head), None unless every view has a body model output.
    """

    person_id: int
    views: list[PersonView]
    score: float
    head_position_world: np.ndarray
    head_position_rig: np.ndarray
    global_orient_world: np.ndarray
    global_orient_rig: np.ndarray
    T_world_head: np.ndarray
    body_pose: np.ndarray
    left_hand_pose: np.ndarray
    right_hand_pose: np.ndarray
    jaw_pose: np.ndarray
    betas: np.ndarray
    expression: np.ndarray
    pelvis_position_world: Optional[np.ndarray] = None

    @property
    def cameras(self) -> list[str]:
        return [view.camera for view in self.views]

    def track_id(self, camera: str) -> Optional[int]:
        """This person's track id in ``camera``, None when that camera did not see them."""
        return next((view.track_id for view in self.views if view.camera == camera), None)


@dataclass
class FusedFrame:
    """The fusion of one frame set.

    stamp: the newest view's stamp (None when no view has one).
    rig_pose (4,4): rig frame -> rig world (float64), from the cameras' own trajectories.
    people: fused people, by global id.
    scales: each camera's scale factor used for this frame set (metres per unit).
    """

    stamp: Optional[float]
    rig_pose: np.ndarray
    people: list[FusedPerson] = field(default_factory=list)
    scales: dict[str, float] = field(default_factory=dict)
