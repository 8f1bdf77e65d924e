"""Synthetic multi-camera scenes for the fusion tests: people walking in front of a rig of
calibrated cameras, each camera reporting what the engine would (own world, own scale,
own track ids), with noise on positions and poses."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from human3r_ros.engine.frame_result import FrameResult, Person

BODY_JOINTS, HAND_JOINTS = 21, 15


def look_at(position, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """4x4 optical frame (x right, y down, z forward) at ``position`` looking at ``target``,
    in a frame whose z axis is up."""
    forward = np.asarray(target, float) - np.asarray(position, float)
    forward /= np.linalg.norm(forward)
    down = -np.asarray(up, float)
    down = down - forward * (down @ forward)
    down /= np.linalg.norm(down)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([np.cross(down, forward), down, forward], axis=1)
    pose[:3, 3] = position
    return pose


def xyz_quat(pose: np.ndarray) -> list[float]:
    """4x4 -> [x, y, z, qx, qy, qz, qw], the extrinsics parameter format."""
    return [*pose[:3, 3].tolist(), *Rotation.from_matrix(pose[:3, :3]).as_quat().tolist()]


@dataclass
class Walker:
    """A person: head path in the rig world (a function of the frame), shape and pose."""

    start: np.ndarray
    velocity: np.ndarray
    yaw: float
    body_pose: np.ndarray
    betas: np.ndarray
    wobble: float = 0.0  # amplitude (m) of a sideways sway, so paths are not straight lines

    def head(self, frame: int) -> np.ndarray:
        sway = self.wobble * np.sin(0.05 * frame + self.yaw) * np.array([0.0, 1.0, 0.0])
        return self.start + frame * self.velocity + sway


@dataclass
class Camera:
    name: str
    extrinsics: np.ndarray  # optical frame in the rig frame
    scale: float = 1.0  # metres per unit of this camera's reconstruction
    half_fov: float = np.deg2rad(60.0)
    max_range: float = 12.0
    start_frame: int = 0  # the camera's first frame (its world is its optical frame then)
    next_track: int = 1
    tracks: dict[int, int] = field(default_factory=dict)  # walker -> current track id


@dataclass
class Scene:
    cameras: list[Camera]
    walkers: list[Walker]
    rig_motion: float = 0.0  # rig translation per frame along x (m) and yaw per frame (rad) scale
    position_noise: float = 0.05
    depth_noise: float = 0.0  # extra relative noise along each camera's viewing ray
    pose_noise: float = 0.05
    seed: int = 0
    truth: dict[tuple[str, int], int] = field(default_factory=dict)  # (camera, track) -> walker

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def rig_pose(self, frame: int) -> np.ndarray:
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_euler("z", self.rig_motion * 0.2 * np.sin(0.02 * frame)).as_matrix()
        pose[:3, 3] = [self.rig_motion * frame, 0.0, 0.0]
        return pose

    def extrinsics(self) -> dict[str, list[float]]:
        return {camera.name: xyz_quat(camera.extrinsics) for camera in self.cameras}

    def visible(self, camera: Camera, head_cam: np.ndarray) -> bool:
        depth = head_cam[2]
        return 0.5 < depth < camera.max_range and abs(np.arctan2(head_cam[0], depth)) < camera.half_fov

    def frame_set(self, frame: int) -> dict[str, FrameResult]:
        """Every started camera's FrameResult at ``frame`` (cameras that see nobody included)."""
        rig = self.rig_pose(frame)
        heads = np.stack([walker.head(frame) for walker in self.walkers])
        results = {}
        for camera in self.cameras:
            if frame < camera.start_frame:
                continue
            camera_world = self.rig_pose(camera.start_frame) @ camera.extrinsics  # its first optical frame
            camera_pose = rig @ camera.extrinsics  # optical frame now, in the rig world
            c2w = np.linalg.inv(camera_world) @ camera_pose
            c2w[:3, 3] /= camera.scale
            heads_cam = (heads - camera_pose[:3, 3]) @ camera_pose[:3, :3]
            seen = []
            for w, head_cam in enumerate(heads_cam):
                if not self.visible(camera, head_cam):
                    camera.tracks.pop(w, None)  # out of view: the tracker loses the person
                    continue
                if w not in camera.tracks:
                    camera.tracks[w] = camera.next_track
                    self.truth[(camera.name, camera.next_track)] = w
                    camera.next_track += 1
                seen.append(w)
            results[camera.name] = FrameResult(
                index=frame, stamp=frame / 30.0, c2w=c2w.astype(np.float32), intrinsics=np.eye(3, dtype=np.float32),
                pts3d_world=np.zeros((1, 1, 3), np.float32), conf=np.ones((1, 1), np.float32),
                depth=np.ones((1, 1), np.float32), human_mask=np.zeros((1, 1), np.float32),
                det_scores=np.zeros((1, 1), np.float32), people=self._people(camera, camera_pose, c2w, seen, heads_cam))
        return results

    def _people(self, camera, camera_pose, c2w, seen, heads_cam) -> list[Person]:
        """What the camera's engine reports for the walkers ``seen``, all noise drawn at once."""
        rng, n = self.rng, len(seen)
        if n == 0:
            return []
        heads_cam = heads_cam[seen]
        heads_cam = (heads_cam * (1.0 + rng.normal(0.0, self.depth_noise, (n, 1)))
                     + rng.normal(0.0, self.position_noise, (n, 3)))
        heads_cam = heads_cam / camera.scale
        bodies_world = Rotation.from_euler("z", [[self.walkers[w].yaw] for w in seen])
        orients_cam = (Rotation.from_rotvec(rng.normal(0.0, self.pose_noise, (n, 3)))
                       * Rotation.from_matrix(camera_pose[:3, :3].T) * bodies_world)
        orients_world = Rotation.from_matrix(c2w[:3, :3]) * orients_cam
        joints = np.zeros((n, BODY_JOINTS + 2 * HAND_JOINTS + 1, 3))
        joints[:, :BODY_JOINTS] = [self.walkers[w].body_pose for w in seen]
        joints = (Rotation.from_rotvec(rng.normal(0.0, self.pose_noise, (n * len(joints[0]), 3)))
                  * Rotation.from_rotvec(joints.reshape(-1, 3))).as_rotvec().reshape(joints.shape).astype(np.float32)
        T_cam_head = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
        T_cam_head[:, :3, :3], T_cam_head[:, :3, 3] = orients_cam.as_matrix(), heads_cam
        T_world_head = (c2w @ T_cam_head).astype(np.float32)
        orients_cam = orients_cam.as_rotvec().astype(np.float32)
        orients_world = orients_world.as_rotvec().astype(np.float32)
        hands = BODY_JOINTS + HAND_JOINTS
        return [Person(
            track_id=camera.tracks[w], score=float(rng.uniform(0.6, 1.0)),
            global_orient=orients_cam[i], global_orient_world=orients_world[i],
            body_pose=joints[i, :BODY_JOINTS], left_hand_pose=joints[i, BODY_JOINTS:hands],
            right_hand_pose=joints[i, hands:-1], jaw_pose=joints[i, -1],
            betas=(self.walkers[w].betas + rng.normal(0.0, 0.05, 10)).astype(np.float32),
            expression=rng.normal(0.0, 0.05, 10).astype(np.float32),
            head_position_cam=heads_cam[i].astype(np.float32), head_position_world=T_world_head[i, :3, 3],
            T_cam_head=T_cam_head[i], T_world_head=T_world_head[i],
            image_location=np.zeros(2, np.float32), detection_cell=np.zeros(2, np.int64))
            for i, w in enumerate(seen)]


def random_walkers(rng, count: int, centre=(0.0, 0.0), spacing: float = 1.2, speed: float = 0.01) -> list[Walker]:
    """``count`` people on a grid around ``centre`` (head height 1.6 m), swaying slowly,
    with distinct random body poses and shapes."""
    side = int(np.ceil(np.sqrt(count)))
    walkers = []
    for i in range(count):
        start = np.array([centre[0] + spacing * (i % side - (side - 1) / 2),
                          centre[1] + spacing * (i // side - (side - 1) / 2), 1.6])
        direction = rng.normal(size=2)
        walkers.append(Walker(start=start, velocity=np.append(speed * direction / np.linalg.norm(direction), 0.0),
                              yaw=float(rng.uniform(-np.pi, np.pi)),
                              body_pose=rng.normal(0.0, 0.4, (BODY_JOINTS, 3)), betas=rng.normal(0.0, 1.0, 10),
                              wobble=0.2))
    return walkers


def row_of_cameras(count: int, spacing: float = 3.0, half_fov_deg: float = 25.0) -> list[Camera]:
    """``count`` cameras on a line along x (1.5 m high), all looking along +y with narrow
    views, so people walking along x leave one camera's view for the next one's."""
    cameras = []
    for k in range(count):
        x = spacing * (k - (count - 1) / 2)
        cameras.append(Camera(f"cam{k}", look_at([x, 0.0, 1.5], [x, 10.0, 1.5]), half_fov=np.deg2rad(half_fov_deg)))
    return cameras


def ring_of_cameras(count: int, radius: float = 4.0, scales=None, spread_deg: float = 150.0) -> list[Camera]:
    """``count`` cameras on an arc of ``spread_deg`` at 1.5 m height, all looking at the origin."""
    scales = scales or [1.0] * count
    cameras = []
    for k in range(count):
        angle = -np.pi / 2 + np.deg2rad(spread_deg) * (k / max(count - 1, 1) - 0.5)
        position = [radius * np.cos(angle), radius * np.sin(angle), 1.5]
        cameras.append(Camera(f"cam{k}", look_at(position, [0.0, 0.0, 1.6]), scale=scales[k]))
    return cameras
