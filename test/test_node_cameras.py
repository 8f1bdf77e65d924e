"""Several cameras on one node: per-camera outputs equal a single camera's, and people seen by
two cameras with the same extrinsics are fused into one, at the same place. Real rclpy, the
tiny checkpoint, the synthetic SMPL-X model."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ros_helpers import REFERENCE_FILES, Harness, change_state, image_msg, stamp, wait_until

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from human3r_msgs.msg import HumanArray  # noqa: E402
from human3r_ros.engine import Human3REngine  # noqa: E402
from human3r_ros.ros.conversions import cloud_to_array, stamp_to_ns  # noqa: E402

CAMERAS = ("front", "left")
T0 = 50.0
IDENTITY = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def pose_matrix(pose) -> np.ndarray:
    q = pose.orientation
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    matrix[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    return matrix


def make_rig_node(harness, reference_dir, cli_args=None, **extra):
    from rclpy.parameter import Parameter

    from human3r_ros.ros.node import Human3RNode

    values = {"checkpoint": str(reference_dir / REFERENCE_FILES["checkpoint"]), "device": "cpu", "image_size": 64,
              "ttt3r": False, "reset_interval": 0, "reliability": "reliable", "cameras": list(CAMERAS),
              "body_model_dir": str(reference_dir / REFERENCE_FILES["body_model_dir"]), **extra}
    values.update({f"extrinsics.{c}": IDENTITY for c in CAMERAS})
    node = Human3RNode(context=harness.context, cli_args=cli_args,
                       parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    harness.add_node(node)
    return node


def test_two_cameras_match_one_and_fuse_their_people(reference_dir):
    io = np.load(reference_dir / REFERENCE_FILES["io"])
    frames = io["frames_uint8"]
    harness = Harness(offset=57)
    try:
        node = make_rig_node(harness, reference_dir)
        pubs = {c: harness.client.create_publisher(Image, f"/{c}/image", QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE)) for c in CAMERAS}
        for c in CAMERAS:
            harness.collect(HumanArray, f"/human3r/{c}/humans")
        harness.collect(HumanArray, "/human3r/humans")
        for topic in [f"/human3r/{c}/scene/points" for c in CAMERAS] + ["/human3r/scene/points"]:
            harness.collect(PointCloud2, topic)
        harness.collect(TFMessage, "/tf")
        harness.collect(DiagnosticArray, "/diagnostics")
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            assert change_state(harness, transition)
        wait_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 10, "both subscriptions")
        # clouds are built for matched subscribers only: wait for ours
        wait_until(lambda: all(node._outputs[c].listened("cloud") for c in CAMERAS)
                   and node._fused._cloud_publisher.get_subscription_count() > 0, 10, "the cloud subscriptions")
        # the same engine on one camera: what each camera's outputs must equal
        single = Human3REngine.from_checkpoint(reference_dir / REFERENCE_FILES["checkpoint"],
                                               body_model_dir=reference_dir / REFERENCE_FILES["body_model_dir"],
                                               ttt3r=False, reset_interval=0, size=64)
        stamps = [T0 + 0.1 * i for i in range(len(frames))]
        for i, (rgb, t) in enumerate(zip(frames, stamps)):
            for c in CAMERAS:
                pubs[c].publish(image_msg(rgb, t, frame_id=f"{c}_optical"))
            ns = stamp_to_ns(stamp(t))

            def at(topic):
                return [m for m in harness.snapshot(topic) if stamp_to_ns(m.header.stamp) == ns]
            per_camera = {c: wait_until(lambda c=c: at(f"/human3r/{c}/humans"), 30, f"{c} frame {i}")[0]
                          for c in CAMERAS}
            fused = wait_until(lambda: at("/human3r/humans"), 10, f"the fused frame set {i}")
            assert len(fused) == 1, "one fused message per frame set"
            expected = single.step(rgb, stamp=t)
            expected_ids = io["hf_smpl_id"][io["hf_frame"] == i].tolist()
            for c, msg in per_camera.items():
                assert [h.id for h in msg.humans] == expected_ids, f"{c} frame {i}"
                assert msg.header.frame_id == f"human3r_world_{c}"
                heads = np.array([[h.head_position.x, h.head_position.y, h.head_position.z] for h in msg.humans])
                want = np.array([p.head_position_world for p in expected.people]).reshape(-1, 3)
                np.testing.assert_allclose(heads.reshape(-1, 3), want, atol=1e-4)
            if i == 0:
                # the rig world is the rig frame at the first frame set: with identity extrinsics, the
                # camera's first pose; each camera's own world sits at its inverse (also on /tf)
                anchor = np.linalg.inv(pose_matrix(per_camera["front"].camera_pose))
            # every fused person joins its two per-camera copies, at the same position
            assert fused[0].header.frame_id == "human3r_world"
            assert len(fused[0].humans) == len(expected_ids)
            for human in fused[0].humans:
                assert sorted(human.cameras) == sorted(CAMERAS)
                assert human.camera_track_ids[0] == human.camera_track_ids[1]
                front_id = human.camera_track_ids[list(human.cameras).index("front")]
                copy = next(h for h in per_camera["front"].humans if h.id == front_id)
                head = anchor @ [copy.head_position.x, copy.head_position.y, copy.head_position.z, 1.0]
                np.testing.assert_allclose([human.head_position.x, human.head_position.y, human.head_position.z],
                                           head[:3], atol=1e-4)
            # the rig world's cloud: each camera's cloud, in rig order, placed as its people are (scale 1 yet)
            clouds = {c: wait_until(lambda c=c: at(f"/human3r/{c}/scene/points"), 10, f"{c} cloud {i}")[0]
                      for c in CAMERAS}
            merged = cloud_to_array(wait_until(lambda: at("/human3r/scene/points"), 10, f"the rig cloud {i}")[0])
            parts = [cloud_to_array(clouds[c]) for c in CAMERAS]
            assert len(merged) == sum(len(part) for part in parts) > 0
            xyz = np.concatenate([np.stack([part[k] for k in "xyz"], -1) for part in parts]).astype(np.float64)
            np.testing.assert_allclose(np.stack([merged[k] for k in "xyz"], -1), xyz @ anchor[:3, :3].T + anchor[:3, 3],
                                       atol=1e-5)
            np.testing.assert_array_equal(merged["rgb"], np.concatenate([part["rgb"] for part in parts]))
        # per-camera frames never collide; fused bodies and each camera's world hang off the rig world
        pairs = {(tr.header.frame_id, tr.child_frame_id) for m in harness.snapshot("/tf") for tr in m.transforms}
        assert ("human3r_world_front", "human3r_camera_front") in pairs
        assert ("human3r_world_left", "human3r_camera_left") in pairs
        assert ("human3r_world", "human3r_world_front") in pairs and ("human3r_world", "human3r_world_left") in pairs
        assert any(p == "human3r_world" and c.startswith("body_") for p, c in pairs)
        assert any(c.startswith("body_front_") for _, c in pairs)
        statuses = {s.name for a in harness.snapshot("/diagnostics") for s in a.status}
        assert {"/human3r", "/human3r: front", "/human3r: left"} <= statuses
        change_state(harness, Transition.TRANSITION_DEACTIVATE)
    finally:
        harness.close()


def test_camera_names_are_checked(reference_dir):
    harness = Harness(offset=59)
    try:
        with pytest.raises(ValueError, match="names must be distinct"):
            # another name: rcl finalises a refused node only when its last reference goes, and that
            # would take the /rosout registration of later nodes named human3r with it
            make_rig_node(harness, reference_dir, cli_args=["--ros-args", "-r", "__node:=refused_human3r"],
                          cameras=["front", "front"])
    finally:
        harness.close()


def test_extrinsics_from_tf_once_every_camera_is_known(reference_dir, monkeypatch):
    # tf2_ros is not installed here: a lookup on a table stands in for its Buffer; the node's
    # part (wait for every camera's frame_id, retry, then fuse with what TF gave) is real
    from human3r_ros.ros import node as node_module
    from human3r_ros.ros.rig_tf import TfExtrinsics

    tf_tree = {("base_link", "front_optical"): [0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]}

    def lookup(target, source):
        if (target, source) not in tf_tree:
            raise LookupError(f'"{source}" passed to lookupTransform does not exist')
        return tf_tree[(target, source)]

    monkeypatch.setattr(node_module, "open_tf_extrinsics", lambda node, rig: TfExtrinsics(rig, lookup, retry_s=0.2))
    frames = np.load(reference_dir / REFERENCE_FILES["io"])["frames_uint8"]
    harness = Harness(offset=75)
    try:
        node = make_rig_node(harness, reference_dir, rig_frame="base_link")
        pubs = {c: harness.client.create_publisher(Image, f"/{c}/image", QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE)) for c in CAMERAS}
        fused = harness.collect(HumanArray, "/human3r/humans")
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            assert change_state(harness, transition)
        wait_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 10, "both subscriptions")
        assert node._fused is None  # the frames are not known before images come

        def send(i):
            for c in CAMERAS:
                before = node._cameras[c].counters.figures()["frames_processed"]
                pubs[c].publish(image_msg(frames[i % len(frames)], T0 + 0.1 * i, frame_id=f"{c}_optical"))
                wait_until(lambda c=c: node._cameras[c].counters.figures()["frames_processed"] > before, 30,
                           f"{c} frame {i}")
        send(0)
        assert node._fused is None and node._rig_tf is not None  # TF knows no left_optical yet
        tf_tree[("base_link", "left_optical")] = [-0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
        i = 1
        while node._fused is None and i < 20:  # retried at most every 0.2 s
            send(i)
            i += 1
        assert node._fused is not None
        np.testing.assert_allclose(node._fused.fuser.rig.extrinsics["left"][:3, 3], [-0.1, 0.0, 0.0])
        np.testing.assert_allclose(node._fused.fuser.rig.extrinsics["front"][:3, 3], [0.1, 0.0, 0.0])
        send(i)
        wait_until(lambda: fused, 10, "fused people once the extrinsics came from TF")
        change_state(harness, Transition.TRANSITION_DEACTIVATE)
    finally:
        harness.close()


@pytest.mark.skipif(__import__("importlib").util.find_spec("tf2_ros") is not None,
                    reason="tf2_ros is installed: extrinsics come from TF")
def test_without_tf2_ros_rig_frame_falls_back_to_the_parameters(reference_dir):
    harness = Harness(offset=77)
    try:
        node = make_rig_node(harness, reference_dir, rig_frame="base_link")
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            assert change_state(harness, transition)
        assert node._rig_tf is None and node._fused is not None
        assert sorted(node._fused.cameras) == sorted(CAMERAS)
        assert "rig_frame" in node._warned
        change_state(harness, Transition.TRANSITION_DEACTIVATE)
    finally:
        harness.close()
