"""Per-frame output of the streaming engine (plain numpy, ROS-free).

Conventions for every array here:
  * camera frame: OpenCV (x right, y down, z forward) of the frame's view;
  * world frame: the first frame's camera frame, chained over state resets;
  * lengths in metres, angles in radians, arrays float32 unless noted;
  * image arrays are H x W of the model-input image (the resized,
    centre-cropped image the network sees), pixel (x, y) = (column, row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from human3r_ros.engine.preprocess import CropGeometry
from human3r_ros.engine.scene_cloud import SceneCloud
from human3r_ros.engine.smplx_pose import SmplxPeople


@dataclass
class Person:
    """One tracked person in one frame.

    track_id: persistent id from :class:`~human3r_ros.engine.tracker.HumanTracker`.
    score: detection score in [0, 1] of the Multi-HMR grid cell.
    global_orient (3,): body orientation in the camera frame, axis-angle.
    global_orient_world (3,): the same orientation in the world frame.
    body_pose (21,3), left_hand_pose (15,3), right_hand_pose (15,3),
    jaw_pose (3,): SMPL-X joint-local axis-angle rotations.
    betas (10,), expression (10,): SMPL-X shape / expression coefficients.
    head_position_cam / head_position_world (3,): SMPL-X head joint, metres.
    T_cam_head / T_world_head (4,4): head joint position with the body
      orientation, camera / world frame (no body model needed).
    image_location (2,): head joint detection (x, y) in model-input pixels.
    detection_cell (2,) int64: (row, col) of the Multi-HMR grid cell that
      detected the person (the image region the detection came from).

    Body-model outputs (None when the engine runs without SMPL-X files):
    head_joint_body (3,): head joint of the body with zero global orientation
      and translation (SMPL-X output frame).
    pelvis_position_cam / pelvis_position_world (3,).
    T_cam_body / T_world_body (4,4): SMPL-X output frame -> camera / world,
      x_cam = R (x - head_joint_body) + head_position_cam.
    vertices_cam / vertices_world (10475,3), joints_cam / joints_world (127,3).
    """

    track_id: int
    score: float
    global_orient: np.ndarray
    global_orient_world: np.ndarray
    body_pose: np.ndarray
    left_hand_pose: np.ndarray
    right_hand_pose: np.ndarray
    jaw_pose: np.ndarray
    betas: np.ndarray
    expression: np.ndarray
    head_position_cam: np.ndarray
    head_position_world: np.ndarray
    T_cam_head: np.ndarray
    T_world_head: np.ndarray
    image_location: np.ndarray
    detection_cell: np.ndarray
    head_joint_body: Optional[np.ndarray] = None
    pelvis_position_cam: Optional[np.ndarray] = None
    pelvis_position_world: Optional[np.ndarray] = None
    T_cam_body: Optional[np.ndarray] = None
    T_world_body: Optional[np.ndarray] = None
    vertices_cam: Optional[np.ndarray] = None
    vertices_world: Optional[np.ndarray] = None
    joints_cam: Optional[np.ndarray] = None
    joints_world: Optional[np.ndarray] = None

    @property
    def has_mesh(self) -> bool:
        return self.vertices_cam is not None


@dataclass
class FrameResult:
    """Everything the engine reports for one input frame.

    index: 0-based frame number in the stream. stamp: input time stamp in
    seconds (None when the source has none).
    c2w (4,4): camera-to-world pose. intrinsics (3,3): pinhole K of the
      model-input image (focal estimated from the pointmap, principal point
      (W//2, H//2)), pixels.
    pts3d_world (H,W,3): pointmap in the world frame, metres.
    conf (H,W): pointmap confidence (>= 1, larger is better).
    depth (H,W): camera-frame z of the pointmap, metres.
    human_mask (H,W): probability in [0, 1] that a pixel shows a person.
    det_scores (H,W): Multi-HMR detection score map in [0, 1].
    cloud: the scene cloud, when the engine selects it on the device (``cloud_only``); then
      pts3d_world, conf, depth and det_scores are None.
    people: tracked people of this frame, in detection (row-major) order.
    reset: True when the recurrent state was reset after this frame; poses
      stay chained so the world frame is unchanged.
    rgb (H,W,3): the network's rgb head output in [-1, 1], only when asked for.
    image (H,W,3) uint8: the model-input image (the resized, centre-cropped input), the
      colours of the pointmap pixels.
    crop: where the model-input image sits in the input image (see ``to_input_pixels``).
    """

    index: int
    stamp: Optional[float]
    c2w: np.ndarray
    intrinsics: np.ndarray
    pts3d_world: Optional[np.ndarray]
    conf: Optional[np.ndarray]
    depth: Optional[np.ndarray]
    human_mask: np.ndarray
    det_scores: Optional[np.ndarray]
    people: list[Person] = field(default_factory=list)
    reset: bool = False
    rgb: Optional[np.ndarray] = None
    image: Optional[np.ndarray] = None
    crop: Optional["CropGeometry"] = None
    cloud: Optional[SceneCloud] = None

    def to_input_pixels(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) model-input pixel (x, y) -> the same point in input-image pixels."""
        if self.crop is None:
            return np.asarray(xy, dtype=np.float64)
        return self.crop.model_px_to_input_px(xy)

    @property
    def focal(self) -> float:
        return float(self.intrinsics[0, 0])

    @property
    def principal_point(self) -> np.ndarray:
        return self.intrinsics[:2, 2].copy()


def build_people(people: SmplxPeople, track_ids, scores, image_locations, detection_cells) -> list[Person]:
    """Split a frame's batched SMPL-X results into :class:`Person` objects.

    track_ids (n,), scores (n,), image_locations (n,2) (x, y) model-input
    pixels, detection_cells (n,2) (row, col); all in detection order.
    """
    track_ids = np.asarray(track_ids, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    image_locations = np.asarray(image_locations, dtype=np.float32).reshape(-1, 2)
    detection_cells = np.asarray(detection_cells, dtype=np.int64).reshape(-1, 2)

    def row(arr, i):
        return None if arr is None else arr[i]

    return [
        Person(
            track_id=int(track_ids[i]),
            score=float(scores[i]),
            global_orient=people.global_orient[i],
            global_orient_world=people.global_orient_world[i],
            body_pose=people.body_pose[i],
            left_hand_pose=people.left_hand_pose[i],
            right_hand_pose=people.right_hand_pose[i],
            jaw_pose=people.jaw_pose[i],
            betas=people.betas[i],
            expression=people.expression[i],
            head_position_cam=people.transl_cam[i],
            head_position_world=people.transl_world[i],
            T_cam_head=people.T_cam_head[i],
            T_world_head=people.T_world_head[i],
            image_location=image_locations[i],
            detection_cell=detection_cells[i],
            head_joint_body=row(people.j_head_body, i),
            pelvis_position_cam=row(people.transl_pelvis_cam, i),
            pelvis_position_world=row(people.transl_pelvis_world, i),
            T_cam_body=row(people.T_cam_body, i),
            T_world_body=row(people.T_world_body, i),
            vertices_cam=row(people.verts_cam, i),
            vertices_world=row(people.verts_world, i),
            joints_cam=row(people.joints_cam, i),
            joints_world=row(people.joints_world, i),
        )
        for i in range(len(people))
    ]
