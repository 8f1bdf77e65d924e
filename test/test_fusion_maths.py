"""Fusion building blocks against closed-form cases: Markley's quaternion mean, ray
triangulation, the association cost and gate, the running scale, the rig's frames."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from human3r_ros.fusion.association import (associate_views, association_costs, canonical_pose_distance,
                                            match_pairs, pose_quaternions, ray_distances)
from human3r_ros.fusion.averaging import mean_rotation, mean_rotation_per_group
from human3r_ros.fusion.identities import GlobalIds
from human3r_ros.fusion.rig import Rig, pose_from_xyz_quat
from human3r_ros.fusion.scale import RunningScale
from human3r_ros.fusion.triangulation import closest_point_to_rays, max_ray_angle


def same_rotation(q_a, q_b, atol=1e-9):
    return min(np.abs(q_a - q_b).max(), np.abs(q_a + q_b).max()) < atol


def test_markley_mean_of_rotations_symmetric_about_a_known_mean_with_sign_flips():
    mean = Rotation.from_euler("xyz", [0.3, -1.1, 2.0])
    offsets = [Rotation.from_rotvec(sign * 0.4 * axis) for axis in np.eye(3) for sign in (1, -1)]
    quats = np.stack([(mean * offset).as_quat() for offset in offsets])
    quats[::2] *= -1  # q and -q are the same rotation: the mean must not care
    assert same_rotation(mean_rotation(quats), mean.as_quat())


def test_markley_mean_of_two_rotations_about_one_axis_is_the_midpoint_weighted_too():
    axis = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    quats = np.stack([Rotation.from_rotvec(0.2 * axis).as_quat(), -Rotation.from_rotvec(1.4 * axis).as_quat()])
    assert same_rotation(mean_rotation(quats), Rotation.from_rotvec(0.8 * axis).as_quat())
    # Weights 3:1. In the plane of (cos(a/2), sin(a/2) axis), sum w q q^T has its top eigenvector
    # at the half angle h with tan(2h) = sum w sin(a) / sum w cos(a), so the mean angle is 2h.
    expected = np.arctan2(3 * np.sin(0.2) + np.sin(1.4), 3 * np.cos(0.2) + np.cos(1.4))
    assert same_rotation(mean_rotation(quats, np.array([3.0, 1.0])), Rotation.from_rotvec(expected * axis).as_quat())


def test_markley_mean_matches_scipy_for_many_sets_at_once():
    rng = np.random.default_rng(0)
    sets = Rotation.random(5 * 7, random_state=1).as_quat().reshape(5, 7, 4)
    weights = rng.uniform(0.1, 1.0, (5, 7))
    means = mean_rotation(sets, weights)
    for quats, w, mean in zip(sets, weights, means):
        assert same_rotation(mean, Rotation.from_quat(quats).mean(weights=w).as_quat(), atol=1e-7)


def test_group_means_equal_one_mean_per_group():
    quats = Rotation.random(6 * 3, random_state=4).as_quat().reshape(6, 3, 4)
    groups, weights = [[0, 4], [1], [2, 3, 5]], [np.array([1.0, 2.0]), np.array([0.5]), np.array([1.0, 1.0, 3.0])]
    means = mean_rotation_per_group(quats, groups, weights)
    assert means.shape == (3, 3, 4)
    for mean, rows, w in zip(means, groups, weights):
        for joint in range(3):
            assert same_rotation(mean[joint], mean_rotation(quats[rows, joint], w))


def test_markley_mean_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        mean_rotation(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        mean_rotation(np.tile([0.0, 0.0, 0.0, 1.0], (2, 1)), np.array([1.0, -1.0]))


def test_two_rays_meeting_at_a_known_point():
    point = np.array([0.4, -1.2, 3.0])
    origins = np.array([[0.0, 0.0, 0.0], [2.0, 0.5, -1.0]])
    assert np.allclose(closest_point_to_rays(origins, 2.5 * (point - origins)), point)


def test_closest_point_of_skew_rays_is_the_midpoint_of_their_common_perpendicular():
    # x axis at z = -1 and y axis at z = +1: the closest point to both is the origin.
    origins = np.array([[5.0, 0.0, -1.0], [0.0, -3.0, 1.0]])
    directions = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert np.allclose(closest_point_to_rays(origins, directions), 0.0)
    # Weight 3 on the first ray pulls the point 3x closer to it: z = -1 + 2/4.
    assert np.allclose(closest_point_to_rays(origins, directions, np.array([3.0, 1.0])), [0.0, 0.0, -0.5])


def test_parallel_rays_have_no_closest_point():
    origins = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    directions = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -2.0]])
    assert max_ray_angle(directions) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="parallel"):
        closest_point_to_rays(origins, directions)
    with pytest.raises(ValueError, match="non-zero"):
        closest_point_to_rays(origins, np.zeros((2, 3)))


def test_canonical_pose_distance_is_the_root_sum_of_joint_angles():
    rng = np.random.default_rng(2)
    pose = rng.normal(0, 0.5, (21, 3))
    turned = pose.copy()
    turned[[3, 7]] = (Rotation.from_rotvec(pose[[3, 7]]) * Rotation.from_rotvec([[0.3, 0, 0], [0, 0.4, 0]])).as_rotvec()
    distance = canonical_pose_distance(pose_quaternions(pose[None]), pose_quaternions(turned[None]))
    assert distance.shape == (1, 1) and distance[0, 0] == pytest.approx(0.5)  # sqrt(0.3^2 + 0.4^2)


def test_association_cost_weights_position_and_pose_as_chromm():
    zero = np.zeros((1, 21, 3))
    bent = zero.copy()
    bent[0, 0] = [0.0, 0.0, 1.0]
    costs = association_costs([[0, 0, 0]], pose_quaternions(zero), [[0, 2, 0]], pose_quaternions(bent))
    assert costs[0, 0] == pytest.approx(0.8 * 2 + 0.2 * 1)


def test_ray_distance_discounts_differences_along_the_viewing_rays_only():
    origin = np.zeros(3)
    a = np.array([[0.0, 0.0, 4.0]])
    along, across = np.array([[0.0, 0.0, 4.5]]), np.array([[0.5, 0.0, 4.0]])
    assert ray_distances(a, origin, along, origin, 1.0)[0, 0] == pytest.approx(0.5)  # Euclidean
    assert ray_distances(a, origin, along, origin, 0.1)[0, 0] == pytest.approx(0.5 * np.sqrt(0.1))
    # Across the ray the difference counts in full (to first order: the rays barely turn).
    assert ray_distances(a, origin, across, origin, 0.1)[0, 0] == pytest.approx(0.5, rel=0.05)
    with pytest.raises(ValueError, match="depth_weight"):
        ray_distances(a, origin, a, origin, 0.0)


def test_matching_is_globally_optimal_and_never_crosses_the_gate():
    # Greedy would take (0, 0) at 1.0 and leave row 1 with 5.0; the optimum pairs crosswise.
    costs = np.array([[1.0, 1.5], [1.4, 5.0]])
    assert sorted(match_pairs(costs, gate=2.0)) == [(0, 1), (1, 0)]
    # A pair above the gate stays unmatched even when it is the only candidate.
    assert match_pairs(np.array([[0.7]]), gate=0.6) == []
    assert sorted(match_pairs(np.array([[0.1, 9.0], [9.0, 9.0]]), gate=0.6)) == [(0, 0)]
    assert match_pairs(np.zeros((0, 3)), gate=1.0) == []


def test_views_are_grouped_with_at_most_one_detection_per_view():
    poses = pose_quaternions(np.zeros((2, 21, 3)))
    a = np.array([[0.0, 0.0, 3.0], [1.5, 0.0, 3.0]])
    groups = associate_views([a, a[::-1] + 0.05, a[:1] - 0.05], [poses, poses, poses[:1]], gate=0.6)
    assert sorted(map(sorted, groups)) == [[(0, 0), (1, 1), (2, 0)], [(0, 1), (1, 0)]]
    # Two detections of one view are never joined, however close.
    assert len(associate_views([np.zeros((2, 3))], [poses], gate=0.6)) == 2


def test_running_scale_recovers_a_known_factor_despite_outliers():
    rng = np.random.default_rng(3)
    estimate = RunningScale(window=200, min_samples=10)
    true_scale = 1.23
    for _ in range(400):
        reconstructed = rng.uniform(1.0, 6.0)
        metric = reconstructed * true_scale * (1 + rng.normal(0, 0.05))
        if rng.uniform() < 0.3:  # wrong associations, bad detections
            metric = reconstructed * rng.uniform(0.3, 4.0)
        estimate.add(metric, reconstructed)
    assert estimate.value == pytest.approx(true_scale, rel=0.02)
    assert estimate.samples == 200


def test_running_scale_waits_for_samples_and_rejects_implausible_ones():
    estimate = RunningScale(window=50, min_samples=3, initial=1.0)
    assert not estimate.add(100.0, 1.0) and not estimate.add(1.0, 0.0) and not estimate.add(np.nan, 1.0)
    assert estimate.rejected == 3
    estimate.add(2.0, 1.0)
    estimate.add(2.0, 1.0)
    assert estimate.value == 1.0  # two samples are not enough yet
    estimate.add(2.0, 1.0)
    assert estimate.value == pytest.approx(2.0)
    estimate.reset()
    assert estimate.value == 1.0 and estimate.samples == 0
    with pytest.raises(ValueError, match="bounds"):
        RunningScale(initial=50.0)


def test_extrinsics_parse_and_reject_bad_values():
    pose = pose_from_xyz_quat([1, 2, 3, 0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    assert np.allclose(pose[:3, 3], [1, 2, 3]) and np.allclose(pose[:3, :3] @ [1, 0, 0], [0, 1, 0])
    with pytest.raises(ValueError, match="7 numbers"):
        pose_from_xyz_quat([0, 0, 0, 1])
    with pytest.raises(ValueError, match="finite"):
        pose_from_xyz_quat([0, 0, np.nan, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="zero"):
        pose_from_xyz_quat([0, 0, 0, 0, 0, 0, 0], "extrinsics.front")
    with pytest.raises(KeyError, match="'side' has no extrinsics"):
        Rig({"front": [0, 0, 0, 0, 0, 0, 1]}).anchor("side")


def test_rig_pose_from_a_camera_trajectory_with_its_scale():
    extrinsics = pose_from_xyz_quat([0.2, -0.1, 0.5, *Rotation.from_euler("y", 0.7).as_quat()])
    rig = Rig({"side": extrinsics})
    rig_now = pose_from_xyz_quat([3.0, 1.0, 0.0, *Rotation.from_euler("z", 0.4).as_quat()])
    c2w = np.linalg.inv(extrinsics) @ rig_now @ extrinsics  # the camera's motion in its own world, metres
    c2w[:3, 3] /= 2.0  # its reconstruction is half size
    assert np.allclose(rig.rig_pose({"side": c2w}, {"side": 2.0}), rig_now)
    # A camera that starts later, while the rig stands at rig_now, is anchored there.
    rig.anchor_camera("side", rig_now)
    assert np.allclose(rig.rig_pose({"side": np.eye(4)}, {"side": 2.0}), rig_now)
    # Anchoring at any moment of its trajectory gives the same anchor.
    rig.anchor_camera("side", rig_now, c2w, 2.0)
    assert np.allclose(rig.anchor("side"), extrinsics)


def test_a_cameras_world_points_reach_the_rig_world_with_its_scale_and_anchor():
    extrinsics = pose_from_xyz_quat([0.2, -0.1, 0.5, *Rotation.from_euler("y", 0.7).as_quat()])
    rig = Rig({"side": extrinsics})
    rig.anchor_camera("side", pose_from_xyz_quat([3.0, 1.0, 0.0, *Rotation.from_euler("z", 0.4).as_quat()]))
    c2w = pose_from_xyz_quat([0.3, 0.2, -0.4, *Rotation.from_euler("x", 0.3).as_quat()])
    c2w[:3, 3] /= 2.0  # half-size reconstruction
    # a point 1.5 m in front of the camera (0.75 units in its world), seen from the rig world both ways
    point_world = c2w[:3, :3] @ [0.0, 0.0, 0.75] + c2w[:3, 3]
    through_pose = rig.rig_pose_from_camera("side", c2w, 2.0) @ extrinsics @ [0.0, 0.0, 1.5, 1.0]
    assert np.allclose(rig.to_rig_world("side", point_world, 2.0), through_pose[:3])
    assert rig.to_rig_world("side", np.zeros((4, 5, 3)), 2.0).shape == (4, 5, 3)


def test_global_ids_follow_tracks_and_reidentify_lost_people_nearby():
    ids = GlobalIds(reidentify_distance=0.5, forget_after=5)
    first = ids.assign([[("a", 1)], [("a", 2)]], np.array([[0, 0, 0], [3, 0, 0]]))
    assert first == [1, 2]
    # Camera b's new track joins a's track 1: the group keeps id 1; then a loses the person.
    assert ids.assign([[("a", 1), ("b", 7)], [("a", 2)]], np.array([[0.1, 0, 0], [3, 0, 0]])) == [1, 2]
    assert ids.assign([[("b", 7)], [("a", 2)]], np.array([[0.2, 0, 0], [3, 0, 0]])) == [1, 2]
    # Lost by every camera, back as a new track 0.3 m away: same person; 2 m away: new person.
    assert ids.assign([[("a", 2)]], np.array([[3, 0, 0]])) == [2]
    assert ids.assign([[("c", 1)], [("a", 2)], [("c", 2)]], np.array([[0.4, 0, 0], [3, 0, 0], [9, 0, 0]])) == [1, 2, 3]
    with pytest.raises(ValueError, match="positions"):
        ids.assign([[("a", 1)]], np.zeros((2, 3)))


def test_global_ids_when_association_splits_a_person():
    ids = GlobalIds()
    assert ids.assign([[("a", 1), ("b", 1), ("c", 1)]], np.zeros((1, 3))) == [1]
    # Two groups claim id 1: the one holding more of its tracks wins although it moved farther.
    assert ids.assign([[("a", 1)], [("b", 1), ("c", 1)]], np.array([[0.0, 0, 0], [0.3, 0, 0]])) == [2, 1]
    # Equal claims: the one nearer the id's last position wins.
    assert ids.assign([[("b", 1)], [("c", 1)]], np.array([[1.0, 0, 0], [0.35, 0, 0]])) == [3, 1]
