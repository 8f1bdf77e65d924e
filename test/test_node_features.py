"""Node features on the fixture frames: REP-155 bodies (hri), CameraInfo rectification, One-Euro
smoothing, the scene cloud's selection. Real rclpy, real (compat) hri_msgs, the tiny checkpoint."""

import cv2
import numpy as np
import pytest

from ros_helpers import REFERENCE_FILES, Harness, change_state, image_msg, make_node, stamp, wait_until

from hri_msgs.msg import IdsList, NormalizedRegionOfInterest2D, Skeleton2D  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from human3r_msgs.msg import HumanArray  # noqa: E402
from human3r_ros.engine import Human3REngine  # noqa: E402
from human3r_ros.ros.conversions import stamp_to_ns  # noqa: E402
from human3r_ros.ros.msg_arrays import cloud_points, frame_colours  # noqa: E402

TOPIC = "/camera/image"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class Run:
    def __init__(self, harness, node):
        self.h, self.node = harness, node
        self.pub = harness.client.create_publisher(Image, TOPIC, RELIABLE)
        harness.collect(HumanArray, "/human3r/humans")

    def start(self):
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            assert change_state(self.h, transition)
        wait_until(lambda: self.pub.get_subscription_count() > 0, 10, "the node's image subscription")

    def send(self, rgb, t) -> HumanArray:
        self.pub.publish(image_msg(rgb, t))
        ns = stamp_to_ns(stamp(t))
        return wait_until(lambda: [m for m in self.h.snapshot("/human3r/humans")
                                   if stamp_to_ns(m.header.stamp) == ns], 30, f"HumanArray at {t}")[0]


@pytest.fixture
def io(reference_dir):
    return np.load(reference_dir / REFERENCE_FILES["io"])


def test_hri_bodies_follow_the_tracks(reference_dir, io):
    harness = Harness(offset=61)
    try:
        node = make_node(harness, reference_dir, body_model=True, image_topic=TOPIC, reliability="reliable",
                         hri=True, hri_body_timeout=1.0)
        run = Run(harness, node)
        tracked = harness.collect(IdsList, "/humans/bodies/tracked")
        tf = harness.collect(TFMessage, "/tf")
        run.start()
        frames = io["frames_uint8"]
        names = {}  # track id -> REP-155 body id
        for i, rgb in enumerate(frames):
            t = 10.0 + 0.1 * i
            if i == 1:  # the first frame named the bodies: listen to every body's topics from now on
                for body in names.values():
                    harness.collect(NormalizedRegionOfInterest2D, f"/humans/bodies/{body}/roi")
                    harness.collect(Skeleton2D, f"/humans/bodies/{body}/skeleton2d")
                wait_until(lambda: all(harness.client.count_publishers(f"/humans/bodies/{b}/roi") > 0
                                       for b in names.values()), 5, "the body topics")
            msg = run.send(rgb, t)
            ns = stamp_to_ns(stamp(t))
            ids = wait_until(lambda: [m for m in tracked if stamp_to_ns(m.header.stamp) == ns], 5,
                             f"IdsList at {t}")
            assert len(ids) == 1, "one IdsList per processed frame"
            expected = io["hf_smpl_id"][io["hf_frame"] == i].tolist()
            assert [h.id for h in msg.humans] == expected
            assert len(ids[0].ids) == len(expected)
            for track, body in zip(expected, ids[0].ids):
                assert names.setdefault(track, body) == body, "a body id stays the same for its track's life"
                assert body.endswith(str(track)) and body[0].isalpha()
        # frame 0's people seen again later: their ROI and skeleton arrived, stamped with the image
        for body in names.values():
            rois = harness.snapshot(f"/humans/bodies/{body}/roi")
            skeletons = harness.snapshot(f"/humans/bodies/{body}/skeleton2d")
            if rois:
                roi = rois[-1]
                assert 0.0 <= roi.xmin < roi.xmax <= 1.0 and 0.0 <= roi.ymin < roi.ymax <= 1.0
                assert len(skeletons[-1].skeleton) == 18
        assert any(harness.snapshot(f"/humans/bodies/{b}/roi") for b in names.values())
        # body_<id> TF uses the same ids as REP-155
        frames_seen = {tr.child_frame_id for m in list(tf) for tr in m.transforms}
        assert {f"body_{b}" for b in names.values()} <= frames_seen
        # no frames for longer than the timeout: every body's topics go away
        wait_until(lambda: all(harness.client.count_publishers(f"/humans/bodies/{b}/roi") == 0
                               for b in names.values()), 5, "the ended bodies' topics to go away")
        change_state(harness, Transition.TRANSITION_DEACTIVATE)
    finally:
        harness.close()


def distorted_camera_info(width: int, height: int) -> CameraInfo:
    fx = fy = 0.9 * width
    k = [fx, 0.0, width / 2, 0.0, fy, height / 2, 0.0, 0.0, 1.0]
    return CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[-0.3, 0.1, 0.001, -0.001, 0.0],
                      k=k, r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("calibrated", [True, False])
def test_the_model_sees_the_undistorted_image(reference_dir, io, calibrated):
    harness = Harness(offset=63 + int(calibrated))
    try:
        extra = {"camera_info": "/camera/camera_info", "rectify": True} if calibrated else {}
        node = make_node(harness, reference_dir, image_topic=TOPIC, reliability="reliable", **extra)
        run = Run(harness, node)
        run.start()
        seen = []
        real_prepare = node._engine.prepare  # where the image becomes the model's input

        def remember(rgb):
            seen.append(rgb.copy())
            return real_prepare(rgb)

        node._engine.prepare = remember
        rgb = io["frames_uint8"][0]
        info = distorted_camera_info(rgb.shape[1], rgb.shape[0])
        if calibrated:
            info_pub = harness.client.create_publisher(CameraInfo, "/camera/camera_info", RELIABLE)
            wait_until(lambda: info_pub.get_subscription_count() > 0, 10, "the CameraInfo subscription")
            info_pub.publish(info)
            wait_until(lambda: node._cameras[""].calibration is not None, 5, "the calibration")
        run.send(rgb, 20.0)
        if calibrated:
            k = np.array(info.k).reshape(3, 3)
            expected = cv2.undistort(rgb, k, np.array(info.d), None, np.array(info.p).reshape(3, 4)[:, :3])
            assert np.abs(seen[0].astype(int) - expected.astype(int)).max() <= 1
            assert np.abs(seen[0].astype(int) - rgb.astype(int)).max() > 20  # the distortion is real
            run.send(rgb, 20.1)
            assert node._cameras[""].rectifier.map_builds == 1  # maps built once per calibration
        else:
            np.testing.assert_array_equal(seen[0], rgb)
        change_state(harness, Transition.TRANSITION_DEACTIVATE)
    finally:
        harness.close()


def test_smoothing_on_keeps_the_people_and_smooths_them(reference_dir, io):
    harness = Harness(offset=66)
    try:
        node = make_node(harness, reference_dir, image_topic=TOPIC, reliability="reliable", smoothing="one_euro")
        run = Run(harness, node)
        run.start()
        assert node._engine.smoothing is not None
        raw = Human3REngine.from_checkpoint(reference_dir / REFERENCE_FILES["checkpoint"], ttt3r=False,
                                            reset_interval=0, size=64)
        moved = []
        for i, rgb in enumerate(io["frames_uint8"]):
            msg = run.send(rgb, 30.0 + 0.1 * i)
            expected = raw.step(rgb, stamp=30.0 + 0.1 * i)
            assert [h.id for h in msg.humans] == [p.track_id for p in expected.people]
            for human, person in zip(msg.humans, expected.people):
                head = [human.head_position.x, human.head_position.y, human.head_position.z]
                assert np.all(np.isfinite(head))
                moved.append(np.linalg.norm(np.subtract(head, person.head_position_world)))
        # first sightings pass unchanged, later ones are filtered: some heads differ from the raw ones
        assert min(moved) < 1e-5 and max(moved) > 1e-4
        change_state(harness, Transition.TRANSITION_DEACTIVATE)
    finally:
        harness.close()


def test_the_cloud_is_selected_by_the_engine_as_the_parameters_say(reference_dir, io):
    """The node's engine keeps the cloud's points on its device and hands over only those: the
    published cloud equals the one built from a dense frame, and follows a live parameter change."""
    harness = Harness(offset=69)
    try:
        settings = {"cloud_decimation": 2, "cloud_confidence_threshold": 3.0, "cloud_remove_humans": True}
        node = make_node(harness, reference_dir, body_model=True, image_topic=TOPIC, reliability="reliable",
                         **settings)
        run = Run(harness, node)
        clouds = harness.collect(PointCloud2, "/human3r/scene/points")
        run.start()
        wait_until(lambda: node._outputs[""].listened("cloud"), 10, "the cloud subscription")
        dense_engine = Human3REngine.from_checkpoint(
            reference_dir / REFERENCE_FILES["checkpoint"], body_model_dir=reference_dir / REFERENCE_FILES[
                "body_model_dir"], ttt3r=False, reset_interval=0, size=64)
        for i, rgb in enumerate(io["frames_uint8"]):
            if i == 3:
                node.set_parameters([Parameter("cloud_decimation", value=1)])
                settings["cloud_decimation"] = 1
            t = 30.0 + 0.1 * i
            run.send(rgb, t)
            dense = dense_engine.step(rgb)
            want = cloud_points(dense.pts3d_world, frame_colours(dense), conf=dense.conf,
                                conf_threshold=settings["cloud_confidence_threshold"],
                                stride=settings["cloud_decimation"], human_mask=dense.human_mask)
            step = settings["cloud_decimation"]
            assert 0 < len(want) < dense.conf[::step, ::step].size // 2  # the selection leaves points out
            ns = stamp_to_ns(stamp(t))
            got = wait_until(lambda: [c for c in list(clouds) if stamp_to_ns(c.header.stamp) == ns], 10,
                             f"the cloud at {t}")[0]
            assert got.width == len(want) and bytes(got.data) == want.tobytes(), f"frame {i}"
        change_state(harness, Transition.TRANSITION_DEACTIVATE)
    finally:
        harness.close()
