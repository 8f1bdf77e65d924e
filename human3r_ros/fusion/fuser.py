"""One frame set in, fused people out: the per-frame-set fusion pipeline.

For each frame set (one FrameResult per camera, taken at about the same time):
  1. every detection's head is placed in the rig frame with its camera's scale;
  2. detections are grouped across cameras (position + canonical pose cost, Hungarian, gate),
     position differences along the viewing rays discounted by depth_weight;
  3. each group's head is triangulated from the head rays, each view's own depth a weak prior
     (so one view, or near-parallel rays, still give a point); orientations and SMPL-X
     parameters are averaged;
  4. the rig pose (rig frame -> rig world), from the cameras' own trajectories, takes the
     result to the rig world; a camera seen for the first time (or after reset_camera) is
     anchored there from the rig pose the other cameras give (the last one when none can);
  5. groups get global ids; well-conditioned groups, and the rig's own turns (motion_scale),
     add scale samples for the next frame sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import numpy as np
from scipy.spatial.transform import Rotation

from human3r_ros.fusion.association import associate_views, pose_quaternions
from human3r_ros.fusion.averaging import (joint_rotations, mean_coefficients, mean_rotation_per_group,
                                          split_joint_rotations, view_weights)
from human3r_ros.fusion.identities import GlobalIds
from human3r_ros.fusion.motion_scale import MotionScale
from human3r_ros.fusion.people import FusedFrame, FusedPerson, PersonView
from human3r_ros.fusion.rig import Rig
from human3r_ros.fusion.scale import RunningScale
from human3r_ros.fusion.triangulation import closest_point_to_rays, fuse_points_on_rays, max_ray_angle

BODY_JOINTS = 21  # the first rows of joint_rotations: the canonical pose of association


class Fuser:
    """Fuses the people of several cameras, one frame set per :meth:`fuse` call.

    rig: the cameras' extrinsics. gate: largest association cost of a pair (cost units:
      0.8 per metre + 0.2 per radian of pose distance). depth_weight: how much a view's depth
      counts against its ray direction, (sigma_across / sigma_along)^2, in the head position
      (towards 0: pure ray triangulation, 1: mean of the views' heads; fuse_points_on_rays)
      and in the association's position distance (1: Euclidean; ray_distances).
      scale_ray_angle_deg: smallest angle between a group's head rays for scale samples
      (the triangulated depth along narrow rays is uncertain).
    estimate_scale: False keeps ``initial_scales`` (default 1) for good.
    scale_window, scale_min_samples: see :class:`RunningScale`.
    reidentify_distance, forget_after: see :class:`GlobalIds`.
    """

    def __init__(self, rig: Rig, *, gate: float = 0.6, depth_weight: float = 0.1,
                 scale_ray_angle_deg: float = 10.0, estimate_scale: bool = True,
                 initial_scales: Optional[Mapping[str, float]] = None, scale_window: int = 300,
                 scale_min_samples: int = 10, reidentify_distance: float = 0.5, forget_after: int = 90):
        if gate <= 0:
            raise ValueError(f"gate must be > 0, got {gate}")
        if not 0 < depth_weight <= 1:
            raise ValueError(f"depth_weight must lie in (0, 1] (0 leaves one view without a point), got {depth_weight}")
        self.rig = rig
        self.gate = gate
        self.depth_weight = depth_weight
        self.scale_ray_angle = np.deg2rad(scale_ray_angle_deg)
        self.estimate_scale = estimate_scale
        initial_scales = dict(initial_scales or {})
        for camera in initial_scales:
            rig.check_camera(camera)
        self.scale_estimates = {
            camera: RunningScale(scale_window, scale_min_samples, initial_scales.get(camera, 1.0))
            for camera in rig.cameras
        }
        self.ids = GlobalIds(reidentify_distance, forget_after)
        self.motion = MotionScale(rig.extrinsics) if estimate_scale else None  # samples once the rig turns
        self._anchored: set[str] = set()
        self._last_rig_pose = np.eye(4)  # the rig world is the rig frame at the first frame set

    @property
    def scales(self) -> dict[str, float]:
        """Current scale factor per camera (metres per unit of its reconstruction)."""
        return {camera: estimate.value for camera, estimate in self.scale_estimates.items()}

    def diagnostics(self) -> dict[str, str]:
        """Key-value pairs for /diagnostics: each camera's scale factor, with the samples
        behind it (in the window) and the implausible samples rejected so far."""
        values = {}
        for camera, estimate in self.scale_estimates.items():
            values[f"scale {camera}"] = f"{estimate.value:.4f}"
            values[f"scale samples {camera}"] = str(estimate.samples)
            values[f"scale rejected {camera}"] = str(estimate.rejected)
        values["people known"] = str(self.ids.known_people)
        return values

    def reset_camera(self, camera: str) -> None:
        """The camera's engine was reset (new world, new track ids): forget its tracks and
        anchor its new world at its next frame. Its scale estimate is kept."""
        self.rig.check_camera(camera)
        self.ids.forget_camera(camera)
        self._anchored.discard(camera)
        if self.motion is not None:
            self.motion.reset_camera(camera)

    def fuse(self, frames: Mapping[str, object]) -> FusedFrame:
        """frames: camera name -> that camera's FrameResult of this frame set (anything with
        ``c2w``, ``people`` and ``stamp``). Cameras without a frame are simply left out."""
        if not frames:
            raise ValueError("a frame set needs at least one camera's frame")
        for camera, frame in frames.items():
            self.rig.check_camera(camera)
            c2w = np.asarray(frame.c2w)
            if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
                raise ValueError(f"camera {camera!r}: c2w must be a finite 4x4 pose, got shape {c2w.shape}")
        scales = self.scales
        cameras = list(frames)
        rig_pose = self._rig_pose(frames, scales)
        if self.motion is not None:
            for camera, metric, units in self.motion.samples({c: frames[c].c2w for c in cameras}):
                self.scale_estimates[camera].add(metric, units)
        detections = [(camera, person) for camera in cameras for person in frames[camera].people]
        stamps = [frames[c].stamp for c in cameras if frames[c].stamp is not None]
        fused = FusedFrame(stamp=max(stamps) if stamps else None, rig_pose=rig_pose, scales=scales)
        if not detections:
            self.ids.assign([], np.zeros((0, 3)))
            return fused

        # Every detection's rotations converted at once (scipy's per-call cost dominates).
        heads_rig = np.stack([self._head_in_rig(camera, person, scales) for camera, person in detections])
        joint_quats = pose_quaternions(np.stack([joint_rotations(person) for _, person in detections]))
        camera_rotations = Rotation.from_matrix(np.stack([self.rig.extrinsics[c][:3, :3] for c, _ in detections]))
        orient_rig_quats = (camera_rotations * Rotation.from_rotvec(
            np.stack([person.global_orient for _, person in detections]).astype(np.float64))).as_quat()

        view_rows = [[i for i, (c, _) in enumerate(detections) if c == camera] for camera in cameras]
        view_groups = associate_views([heads_rig[rows] for rows in view_rows],
                                      [joint_quats[rows, :BODY_JOINTS] for rows in view_rows], self.gate,
                                      [self.rig.extrinsics[camera][:3, 3] for camera in cameras], self.depth_weight)
        groups = [[view_rows[v][i] for v, i in group] for group in view_groups]

        weights = [view_weights([detections[i][1].score for i in rows]) for rows in groups]
        heads = [self._head_position(rows, detections, heads_rig, w) for rows, w in zip(groups, weights)]
        # Orientation in the rig, then the joints: every group's means in one call.
        means = mean_rotation_per_group(np.concatenate([orient_rig_quats[:, None], joint_quats], axis=1),
                                        groups, weights)
        orient_rig = Rotation.from_quat(means[:, 0])
        orient_world = Rotation.from_matrix(rig_pose[:3, :3]) * orient_rig
        orient_rig, orient_world, orient_world_matrix = (
            orient_rig.as_rotvec(), orient_world.as_rotvec(), orient_world.as_matrix())
        joint_rotvecs = Rotation.from_quat(means[:, 1:].reshape(-1, 4)).as_rotvec().reshape(len(groups), -1, 3)

        for g, rows in enumerate(groups):
            if len(rows) > 1:
                self._add_scale_samples(rows, detections, heads_rig)
            fused.people.append(self._person(rows, detections, heads_rig, heads[g], weights[g],
                                             rig_pose, orient_rig[g], orient_world[g], orient_world_matrix[g],
                                             joint_rotvecs[g], scales))
        tracks = [[(view.camera, view.track_id) for view in person.views] for person in fused.people]
        ids = self.ids.assign(tracks, np.stack([p.head_position_world for p in fused.people]))
        for person, person_id in zip(fused.people, ids):
            person.person_id = person_id
        fused.people.sort(key=lambda p: p.person_id)
        return fused

    def _rig_pose(self, frames, scales) -> np.ndarray:
        """The rig pose from the anchored cameras; anchors the cameras new to the fuser."""
        anchored = {c: frames[c].c2w for c in frames if c in self._anchored}
        rig_pose = self.rig.rig_pose(anchored, scales) if anchored else self._last_rig_pose
        for camera in frames:
            if camera not in self._anchored:
                self.rig.anchor_camera(camera, rig_pose, frames[camera].c2w, scales[camera])
                self._anchored.add(camera)
        self._last_rig_pose = rig_pose
        return rig_pose

    def _head_in_rig(self, camera: str, person, scales) -> np.ndarray:
        head = np.asarray(person.head_position_cam, dtype=np.float64)
        if head.shape != (3,) or not np.all(np.isfinite(head)) or np.linalg.norm(head) <= 0:
            raise ValueError(f"camera {camera!r}, track {person.track_id}: head position must be 3 finite "
                             f"numbers away from the camera, got {head.tolist()}")
        return self.rig.to_rig(camera, head, scales[camera])

    def _origins(self, rows, detections) -> np.ndarray:
        return np.stack([self.rig.extrinsics[detections[i][0]][:3, 3] for i in rows])

    def _head_position(self, rows, detections, heads_rig, weights) -> np.ndarray:
        """The group's head in the rig frame."""
        return fuse_points_on_rays(self._origins(rows, detections), heads_rig[rows], weights, self.depth_weight)

    def _add_scale_samples(self, rows, detections, heads_rig) -> None:
        # Pure triangulation: the metric distance must not lean on the cameras' own depths.
        if not self.estimate_scale:
            return
        origins = self._origins(rows, detections)
        directions = heads_rig[rows] - origins
        if max_ray_angle(directions) < self.scale_ray_angle:
            return
        head_rig = closest_point_to_rays(origins, directions)
        for i, origin in zip(rows, origins):
            camera, person = detections[i]
            self.scale_estimates[camera].add(float(np.linalg.norm(head_rig - origin)),
                                             float(np.linalg.norm(person.head_position_cam)))

    def _person(self, rows, detections, heads_rig, head_rig, weights, rig_pose,
                orient_rig, orient_world, orient_world_matrix, joint_rotvecs, scales) -> FusedPerson:
        people = [detections[i][1] for i in rows]
        head_world = rig_pose[:3, :3] @ head_rig + rig_pose[:3, 3]
        T_world_head = np.eye(4, dtype=np.float32)
        T_world_head[:3, :3] = orient_world_matrix
        T_world_head[:3, 3] = head_world
        pelvis_world = None
        if all(p.pelvis_position_cam is not None for p in people):
            # The views' head-to-pelvis offsets, averaged, hang the pelvis from the fused head.
            offsets = [self.rig.to_rig(camera, person.pelvis_position_cam, scales[camera]) - heads_rig[i]
                       for i, (camera, person) in zip(rows, (detections[i] for i in rows))]
            pelvis_rig = head_rig + np.average(np.stack(offsets), axis=0, weights=weights)
            pelvis_world = (rig_pose[:3, :3] @ pelvis_rig + rig_pose[:3, 3]).astype(np.float32)
        return FusedPerson(
            person_id=-1,
            views=[PersonView(detections[i][0], int(detections[i][1].track_id), float(detections[i][1].score),
                              heads_rig[i].astype(np.float32)) for i in rows],
            score=float(max(p.score for p in people)),
            head_position_world=head_world.astype(np.float32),
            head_position_rig=np.asarray(head_rig, dtype=np.float32),
            global_orient_world=orient_world.astype(np.float32),
            global_orient_rig=orient_rig.astype(np.float32),
            T_world_head=T_world_head,
            pelvis_position_world=pelvis_world,
            **split_joint_rotations(joint_rotvecs),
            **mean_coefficients(people, weights),
        )
