"""The Fuser on synthetic scenes: 3-6 people walking in front of 2-4 calibrated cameras with
their own scales, track ids and worlds, 5 cm noise on head positions and noise on poses."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fusion_scenes import Scene, Walker, random_walkers, ring_of_cameras, row_of_cameras
from human3r_ros.fusion import Fuser, Rig

RING_FRAMES = 100  # >= 99 % right: at most one wrong frame
CROSSING_FRAMES = 200


def run_scene(scene: Scene, frames: int, **fuser_options):
    """Fuse every frame set; per frame: whether the groups equal the true people, the fused
    and the single-view head errors (m), the fused and single-view body pose errors (rad)."""
    fuser = Fuser(Rig(scene.extrinsics()), **fuser_options)
    record = {"right": [], "fused": [], "single": {c.name: [] for c in scene.cameras},
              "pose_fused": [], "pose_single": [], "orient": [], "orient_single": [], "ids": [], "fuser": fuser}
    for frame in range(frames):
        frame_set = scene.frame_set(frame)
        fused = fuser.fuse(frame_set)
        walkers = [{scene.truth[(view.camera, view.track_id)] for view in person.views} for person in fused.people]
        seen = {scene.truth[(camera, p.track_id)] for camera, result in frame_set.items() for p in result.people}
        single_walker = all(len(w) == 1 for w in walkers)
        record["right"].append(single_walker and sorted(next(iter(w)) for w in walkers) == sorted(seen))
        record["ids"].append({next(iter(w)): p.person_id for w, p in zip(walkers, fused.people) if len(w) == 1})
        for w, person in zip(walkers, fused.people):
            walker = scene.walkers[next(iter(w))]
            record["fused"].append(np.linalg.norm(person.head_position_world - walker.head(frame)))
            record["pose_fused"].append(joint_error(person.body_pose, walker.body_pose))
            body_world = Rotation.from_euler("z", walker.yaw)
            record["orient"].append((Rotation.from_rotvec(person.global_orient_world) * body_world.inv()).magnitude())
        camera_poses = {c.name: scene.rig_pose(frame) @ c.extrinsics for c in scene.cameras}
        for camera in scene.cameras:
            for person in frame_set[camera.name].people if camera.name in frame_set else []:
                walker = scene.walkers[scene.truth[(camera.name, person.track_id)]]
                # Each view placed with the true scale and rig pose: the best a single view can do.
                head = camera_poses[camera.name][:3] @ np.append(person.head_position_cam * camera.scale, 1.0)
                record["single"][camera.name].append(np.linalg.norm(head - walker.head(frame)))
                record["pose_single"].append(joint_error(person.body_pose, walker.body_pose))
                camera_rotation = Rotation.from_matrix(camera_poses[camera.name][:3, :3])
                orient = camera_rotation * Rotation.from_rotvec(person.global_orient)
                record["orient_single"].append((orient * Rotation.from_euler("z", walker.yaw).inv()).magnitude())
    return record


def joint_error(pose, truth) -> float:
    """Mean angle (rad) between two body poses' joint rotations."""
    return float((Rotation.from_rotvec(np.asarray(pose, float)).inv() * Rotation.from_rotvec(truth)).magnitude().mean())


SCENES = {  # cameras, people, seed
    "2 cameras, 3 people": (2, 3, 2),
    "3 cameras, 5 people": (3, 5, 1),
    "4 cameras, 6 people": (4, 6, 3),
}


@pytest.fixture(scope="module", params=list(SCENES))
def ring_run(request):
    cameras, people, seed = SCENES[request.param]
    rng = np.random.default_rng(seed)
    scales = list(rng.uniform(0.9, 1.1, cameras))
    scene = Scene(ring_of_cameras(cameras, scales=scales), random_walkers(rng, people), rig_motion=0.005, seed=seed)
    return scene, run_scene(scene, RING_FRAMES)


def test_association_is_right_in_99_percent_of_frames(ring_run):
    scene, record = ring_run
    assert len(record["right"]) == RING_FRAMES
    assert np.mean(record["right"]) >= 0.99, f"right in {np.mean(record['right']):.1%} of frames"


def test_fused_head_position_beats_the_best_single_view(ring_run):
    scene, record = ring_run
    best_single = min(np.mean(errors) for errors in record["single"].values())
    fused = np.mean(record["fused"])
    print(f"head error: fused {fused * 100:.1f} cm, best single view {best_single * 100:.1f} cm")
    assert fused < best_single


def test_fused_parameters_beat_single_views(ring_run):
    scene, record = ring_run
    assert np.mean(record["pose_fused"]) < np.mean(record["pose_single"])
    assert np.mean(record["orient"]) < np.mean(record["orient_single"])


def test_scale_of_every_camera_is_recovered(ring_run):
    scene, record = ring_run
    scales = record["fuser"].scales
    for camera in scene.cameras:
        assert scales[camera.name] == pytest.approx(camera.scale, rel=0.01), camera.name
    diagnostics = record["fuser"].diagnostics()
    assert float(diagnostics["scale cam0"]) == pytest.approx(scales["cam0"], abs=1e-4)
    assert int(diagnostics["scale samples cam0"]) > 0


def test_triangulation_beats_averaging_when_depth_is_the_weak_part():
    # Monocular depth errors (here 5 % along the ray) are what the head rays remove.
    def error(depth_weight):
        rng = np.random.default_rng(7)
        scene = Scene(ring_of_cameras(3), random_walkers(rng, 4), depth_noise=0.05, seed=7)
        return np.mean(run_scene(scene, 30, depth_weight=depth_weight, estimate_scale=False)["fused"])
    assert error(0.1) < 0.8 * error(1.0)


def test_ids_stay_stable_while_people_cross_from_one_view_into_another():
    rng = np.random.default_rng(11)

    def walker(x, y, speed):
        return Walker(start=np.array([x, y, 1.6]), velocity=np.array([speed, 0.0, 0.0]), yaw=float(rng.uniform(-3, 3)),
                      body_pose=rng.normal(0.0, 0.4, (21, 3)), betas=rng.normal(0.0, 1.0, 10), wobble=0.1)

    # Views at 3.5 m overlap a little; at 3.0 m they leave a 0.2 m gap nobody sees.
    walkers = [walker(-4.4, 3.5, 0.03), walker(4.4, 4.5, -0.03), walker(-2.0, 3.0, 0.03), walker(1.0, 5.5, -0.025)]
    scene = Scene(row_of_cameras(3), walkers, seed=11)
    record = run_scene(scene, CROSSING_FRAMES)
    assert np.mean(record["right"]) >= 0.99
    for w in range(len(walkers)):
        ids = {frame_ids[w] for frame_ids in record["ids"] if w in frame_ids}
        cameras = {camera for camera, _ in (key for key, value in scene.truth.items() if value == w)}
        assert len(cameras) >= 2, f"walker {w} never changed cameras: the scene does not test hand-over"
        assert len(ids) == 1, f"walker {w} had ids {ids}"
    assert len({next(iter({f[w] for f in record["ids"] if w in f})) for w in range(len(walkers))}) == len(walkers)


def test_a_camera_that_starts_later_is_placed_where_the_moving_rig_stands():
    rng = np.random.default_rng(8)
    cameras = ring_of_cameras(3, scales=[1.0, 1.05, 0.95])
    cameras[2].start_frame = 40  # its world is its optical frame at frame 40, the rig has moved
    scene = Scene(cameras, random_walkers(rng, 4), rig_motion=0.01, seed=8)
    record = run_scene(scene, 80)
    assert np.mean(record["right"]) >= 0.99
    late = record["fused"][-4 * 40:]  # the last 40 frame sets, all three cameras
    assert np.mean(late) < min(np.mean(errors) for errors in record["single"].values())
    assert record["fuser"].scales["cam2"] == pytest.approx(0.95, rel=0.02)


def test_same_frames_with_identical_extrinsics_join_both_copies_at_one_position():
    rng = np.random.default_rng(5)
    scene = Scene(ring_of_cameras(1), random_walkers(rng, 4), seed=5)
    pose = scene.extrinsics()["cam0"]
    fuser = Fuser(Rig({"front": pose, "left": pose}))
    single = Fuser(Rig({"front": pose}))
    extrinsics = Rig({"front": pose}).extrinsics["front"]
    for frame in range(5):
        result = scene.frame_set(frame)["cam0"]
        with_body_model = frame >= 2
        for person in result.people:  # a body model adds the pelvis, 0.6 m below the head
            person.pelvis_position_cam = person.head_position_cam + np.float32([0, 0.6, 0]) if with_body_model else None
        fused = fuser.fuse({"front": result, "left": result})
        alone = single.fuse({"front": result})
        assert [p.cameras for p in fused.people] == [["front", "left"]] * 4
        assert [p.track_id("front") for p in fused.people] == [p.track_id("left") for p in fused.people]
        assert [p.person_id for p in fused.people] == [p.person_id for p in alone.people]
        for both, one in zip(fused.people, alone.people):
            np.testing.assert_allclose(both.head_position_world, one.head_position_world, atol=1e-5)
            np.testing.assert_allclose(both.body_pose, one.body_pose, atol=1e-5)
            np.testing.assert_allclose(both.global_orient_world, one.global_orient_world, atol=1e-5)
            if not with_body_model:
                assert both.pelvis_position_world is None
                continue
            view = next(p for p in result.people if p.track_id == both.track_id("front"))
            pelvis = fused.rig_pose @ extrinsics @ np.append(view.pelvis_position_cam, 1.0)
            np.testing.assert_allclose(both.pelvis_position_world, pelvis[:3], atol=1e-5)


def test_bad_frame_sets_are_refused_with_a_reason():
    rng = np.random.default_rng(6)
    scene = Scene(ring_of_cameras(2), random_walkers(rng, 2), seed=6)
    fuser = Fuser(Rig(scene.extrinsics()))
    frame_set = scene.frame_set(0)
    with pytest.raises(KeyError, match="'rear' has no extrinsics"):
        fuser.fuse({"rear": frame_set["cam0"]})
    with pytest.raises(ValueError, match="at least one camera"):
        fuser.fuse({})
    with pytest.raises(ValueError, match="'cam0': c2w must be a finite 4x4"):
        fuser.fuse({"cam0": type(frame_set["cam0"])(**{**vars(frame_set["cam0"]), "c2w": np.full((4, 4), np.nan)})})
    frame_set["cam1"].people[0].head_position_cam = np.array([np.nan, 0.0, 1.0], np.float32)
    with pytest.raises(ValueError, match="'cam1', track 1: head position"):
        fuser.fuse(frame_set)
    frame_set["cam0"].people.clear()
    frame_set["cam1"].people.clear()
    empty = fuser.fuse(frame_set)
    assert empty.people == [] and np.allclose(empty.rig_pose, np.eye(4)) and set(empty.scales) == {"cam0", "cam1"}
