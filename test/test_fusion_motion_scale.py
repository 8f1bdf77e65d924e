"""Per-camera scale from the rig's own motion (no people): synthetic rigs that drive and turn."""

from types import SimpleNamespace

import numpy as np
from scipy.spatial.transform import Rotation

from human3r_ros.fusion.fuser import Fuser
from human3r_ros.fusion.motion_scale import MotionScale
from human3r_ros.fusion.rig import Rig


def pose(rotvec, translation) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    matrix[:3, 3] = translation
    return matrix


# a robot's rig: a front camera and a left camera 0.3 m apart, optical axes forward / left
EXTRINSICS = {
    "front": pose([-np.pi / 2, 0, 0], [0.25, 0.0, 1.2]) @ pose([0, 0, -np.pi / 2], [0, 0, 0]),
    "left": pose([0, 0, np.pi / 2], [0.05, 0.2, 1.1]) @ pose([-np.pi / 2, 0, 0], [0, 0, 0]) @ pose(
        [0, 0, -np.pi / 2], [0, 0, 0]),
}


def rig_path(frame: int) -> np.ndarray:
    """Drives forward 2 cm a frame while turning in slow S-curves (yaw up to about 60 degrees)."""
    yaw = 1.0 * np.sin(0.03 * frame)
    return pose([0, 0, yaw], [0.02 * frame, 0.3 * np.sin(0.01 * frame), 0.0])


def own_poses(frame: int, scales: dict, rng=None, noise_m: float = 0.0, noise_rad: float = 0.0) -> dict:
    """Each camera's pose in its own world (its first optical frame), in its own units."""
    poses = {}
    for camera, extrinsics in EXTRINSICS.items():
        c2w = np.linalg.inv(rig_path(0) @ extrinsics) @ rig_path(frame) @ extrinsics
        if rng is not None:
            c2w = c2w @ pose(rng.normal(0, noise_rad, 3), rng.normal(0, noise_m, 3))
        c2w[:3, 3] /= scales[camera]
        poses[camera] = c2w
    return poses


def test_two_cameras_scales_from_one_turn_exactly():
    scales = {"front": 1.3, "left": 0.8}
    motion = MotionScale(EXTRINSICS, min_rotation_deg=15.0)
    samples = []
    for frame in range(0, 60, 3):
        samples += motion.samples(own_poses(frame, scales))
    assert samples, "the rig turned by more than 15 degrees"
    for camera, metric, units in samples:
        np.testing.assert_allclose(metric / units, scales[camera], rtol=1e-9)


def test_driving_straight_gives_no_sample():
    # a pure translation fixes only the ratio of the scales, never the scales themselves
    motion = MotionScale(EXTRINSICS)
    straight = {c: np.linalg.inv(e) @ pose([0, 0, 0], [0.5 * k, 0, 0]) @ e for k, (c, e) in
                enumerate(EXTRINSICS.items())}
    assert motion.samples({c: np.eye(4) for c in EXTRINSICS}) == []
    assert motion.samples(straight) == []


def test_fuser_recovers_each_cameras_scale_from_a_noisy_drive_without_people():
    scales = {"front": 1.25, "left": 0.85}
    rng = np.random.default_rng(0)
    fuser = Fuser(Rig(EXTRINSICS))
    for frame in range(600):
        frames = {c: SimpleNamespace(c2w=p, people=[], stamp=frame / 30.0)
                  for c, p in own_poses(frame, scales, rng, noise_m=0.005, noise_rad=0.002).items()}
        fuser.fuse(frames)
    for camera, truth in scales.items():
        assert fuser.scale_estimates[camera].samples >= 10
        assert abs(fuser.scales[camera] / truth - 1) < 0.03, (camera, fuser.scales[camera], truth)


def test_a_reset_camera_starts_a_new_keyframe():
    scales = {"front": 1.0, "left": 1.0}
    motion = MotionScale(EXTRINSICS)
    motion.samples(own_poses(0, scales))
    motion.reset_camera("left")
    # the next set only makes a keyframe again: the left camera's old pose is gone
    assert motion.samples(own_poses(40, scales)) == []
    assert motion.samples(own_poses(100, scales))  # 45 degrees later
