"""The active human3r node on a stream: tiny checkpoint + synthetic SMPL-X body model, the six
fixture frames, then a bad encoding, a burst, and time going backwards. Real rclpy and messages."""

import numpy as np
import pytest

from ros_helpers import REFERENCE_FILES, Harness, change_state, image_msg, make_node, stamp, wait_until

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from nav_msgs.msg import Path  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from human3r_msgs.msg import HumanArray  # noqa: E402
from human3r_ros.ros.conversions import stamp_to_ns  # noqa: E402

T0 = 100.0  # first image stamp (s); frames are 0.1 s apart
FRAME_TIMEOUT = 30.0  # s per frame, generous for a loaded 2-core machine


class Stream:
    def __init__(self, harness, node, frames, io):
        self.h, self.node, self.frames, self.io = harness, node, frames, io
        self.pub = harness.client.create_publisher(Image, "/camera/image", QoSProfile(
            depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.humans = harness.collect(HumanArray, "/human3r/humans")
        self.tf = harness.collect(TFMessage, "/tf")
        self.clouds = harness.collect(PointCloud2, "/human3r/scene/points")
        self.paths = harness.collect(Path, "/human3r/camera_path")
        self.markers = harness.collect(MarkerArray, "/human3r/markers")
        self.diagnostics = harness.collect(DiagnosticArray, "/diagnostics")

    def humans_at(self, t: float):
        ns = stamp_to_ns(stamp(t))
        return [m for m in self.h.snapshot("/human3r/humans") if stamp_to_ns(m.header.stamp) == ns]

    def send_and_wait(self, rgb, t: float) -> HumanArray:
        self.pub.publish(image_msg(rgb, t))
        return wait_until(lambda: self.humans_at(t), FRAME_TIMEOUT, f"HumanArray stamped {t}")[0]

    def diagnostic_values(self, predicate, what: str) -> dict:
        def find():
            for array in reversed(self.h.snapshot("/diagnostics")):
                for status in array.status:
                    if status.name == "/human3r":
                        values = {kv.key: kv.value for kv in status.values}
                        values["_message"] = status.message
                        if predicate(values):
                            return values
            return None

        return wait_until(find, 10.0, what)


@pytest.fixture(scope="module")
def stream(reference_dir):
    io = np.load(reference_dir / REFERENCE_FILES["io"])
    harness = Harness(offset=23)
    node = make_node(harness, reference_dir, body_model=True, image_topic="/camera/image", detection_threshold=0.3,
                     reliability="reliable", cloud_decimation=1, cloud_confidence_threshold=1.0)
    s = Stream(harness, node, io["frames_uint8"], io)
    for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        assert change_state(harness, transition)
    wait_until(lambda: s.pub.get_subscription_count() > 0, 10, "the node's image subscription")
    # The node builds clouds and markers only for matched subscribers: wait for ours.
    wait_until(lambda: all(node._outputs[""].listened(k) for k in ("cloud", "markers")), 10,
               "the test's subscriptions to be matched")
    yield s
    # Deactivate through the service (inside the executor) before the executor stops.
    change_state(harness, Transition.TRANSITION_DEACTIVATE)
    harness.close()


def test_fixture_frames_one_by_one(stream):
    io = stream.io
    stamps = [T0 + 0.1 * i for i in range(len(stream.frames))]
    for i, (rgb, t) in enumerate(zip(stream.frames, stamps)):
        msg = stream.send_and_wait(rgb, t)
        expected_ids = io["hf_smpl_id"][io["hf_frame"] == i].tolist()
        assert [h.id for h in msg.humans] == expected_ids, f"frame {i}"
        assert msg.header.frame_id == "human3r_world"
        for human in msg.humans:
            assert len(human.joints) == 127  # body model loaded
            assert human.roi.width > 0 and human.roi.height > 0
            assert human.roi.x_offset + human.roi.width <= rgb.shape[1]
            assert human.roi.y_offset + human.roi.height <= rgb.shape[0]
        assert len(stream.humans_at(t)) == 1, "one HumanArray per frame"

    # TF: the camera and every body at every image stamp, and nothing stamped otherwise.
    wanted = {stamp_to_ns(stamp(t)) for t in stamps}
    def tf_at(ns):
        return {(tr.header.frame_id, tr.child_frame_id) for m in stream.h.snapshot("/tf") for tr in m.transforms
                if stamp_to_ns(tr.header.stamp) == ns}
    for i, t in enumerate(stamps):
        ns = stamp_to_ns(stamp(t))
        frames = wait_until(lambda: tf_at(ns), 5, f"/tf at {t}")
        expected = {("human3r_world", "human3r_camera")}
        expected |= {("human3r_world", f"body_{k}") for k in io["hf_smpl_id"][io["hf_frame"] == i].tolist()}
        assert frames == expected
    assert {stamp_to_ns(tr.header.stamp) for m in stream.h.snapshot("/tf") for tr in m.transforms} <= wanted

    # clouds and markers are published after the HumanArray: wait for the last frame's too
    clouds = wait_until(lambda: (c := stream.h.snapshot("/human3r/scene/points"))
                        and {stamp_to_ns(m.header.stamp) for m in c} == wanted and c, 10, "a cloud per frame")
    last_cloud = clouds[-1]
    assert last_cloud.width > 0 and last_cloud.header.frame_id == "human3r_world"
    assert [f.name for f in last_cloud.fields] == ["x", "y", "z", "rgb"]
    assert {stamp_to_ns(c.header.stamp) for c in clouds} == wanted

    paths = wait_until(lambda: [p for p in stream.h.snapshot("/human3r/camera_path") if len(p.poses) == 6], 5,
                       "a 6-pose camera path")
    assert [stamp_to_ns(p.header.stamp) for p in paths[-1].poses] == sorted(wanted)

    markers = wait_until(lambda: (m := {stamp_to_ns(a.markers[0].header.stamp): a
                                        for a in stream.h.snapshot("/human3r/markers")}).keys() == wanted and m,
                         10, "markers for every frame")
    frame3 = markers[stamp_to_ns(stamp(stamps[3]))]
    assert frame3.markers[0].action == Marker.DELETEALL
    meshes = [m for m in frame3.markers if m.ns == "bodies"]
    assert [m.id for m in meshes] == [2, 0, 3, 4]
    assert all(m.type == Marker.TRIANGLE_LIST and len(m.points) == 3 * 20908 for m in meshes)
    empty = markers[stamp_to_ns(stamp(stamps[2]))]
    assert [m.action for m in empty.markers] == [Marker.DELETEALL]  # nobody: previous people vanish


def test_unsupported_encoding_reported_and_skipped(stream):
    t = T0 + 10.0
    depth = np.zeros((48, 64), dtype=np.uint16)
    msg = image_msg(depth, t, encoding="16UC1")
    stream.pub.publish(msg)
    values = stream.diagnostic_values(lambda v: "16UC1" in v["last_error"], "16UC1 in /diagnostics")
    assert int(values["frames_skipped"]) >= 1
    # The node goes on with the next good image; the bad one produced nothing.
    stream.send_and_wait(stream.frames[0], t + 0.1)
    assert stream.humans_at(t) == []


def test_burst_keeps_node_responsive_and_processes_newest(stream):
    counters = stream.node._cameras[""].counters

    def idle():  # the previous frame is counted after its last output is published
        f = counters.figures()
        return f if f["frames_received"] == f["frames_processed"] + f["frames_dropped"] + f["frames_skipped"] else None
    before = wait_until(idle, 10, "the node to finish its frame")
    start = T0 + 20.0
    stamps = [start + 0.01 * i for i in range(50)]
    for i, t in enumerate(stamps):
        stream.pub.publish(image_msg(stream.frames[i % len(stream.frames)], t))
    reply = stream.h.call(Trigger, "/human3r/reset", Trigger.Request(), timeout=10)
    assert reply.success
    wait_until(lambda: stream.humans_at(stamps[-1]), FRAME_TIMEOUT, "the newest burst frame")
    processed = [t for t in stamps if stream.humans_at(t)]

    def delta(key):
        return counters.figures()[key] - before[key]

    # Every frame that reached the node is accounted for: published once, or dropped (replaced in
    # the slot before the worker took it); the middleware's own losses are counted apart.
    wait_until(lambda: delta("frames_received") == delta("frames_processed") + delta("frames_dropped"), 10,
               "received = processed + dropped")
    assert delta("frames_processed") == len(processed)
    assert delta("frames_received") + delta("frames_lost_before_node") <= len(stamps)
    assert delta("frames_skipped") == 0
    values = stream.diagnostic_values(
        lambda v: int(v["frames_processed"]) >= before["frames_processed"] + len(processed),
        "the burst's counts in /diagnostics")
    assert int(values["frames_received"]) == int(values["frames_processed"]) + int(values["frames_dropped"]) + int(
        values["frames_skipped"])
    # stamps of 120 s are not on this node's clock: no meaningless age is reported
    assert values["image_age_s"].startswith("n/a: image stamps differ")


def test_time_going_backwards_resets(stream):
    t_new = T0 + 30.0
    stream.send_and_wait(stream.frames[0], t_new)
    t_old = T0 + 1.0  # a looping bag starts over
    msg = stream.send_and_wait(stream.frames[0], t_old)
    assert [h.id for h in msg.humans] == [0]  # a fresh sequence: ids start again
    stream.diagnostic_values(lambda v: int(v["time_resets"]) >= 1, "the time reset in /diagnostics")
    stream.send_and_wait(stream.frames[1], t_old + 0.1)
    # TF after the reset only moves forward from the new start
    tf_stamps = [stamp_to_ns(tr.header.stamp) for m in stream.h.snapshot("/tf") for tr in m.transforms]
    after = tf_stamps[tf_stamps.index(stamp_to_ns(stamp(t_old))):]
    assert after == sorted(after)
