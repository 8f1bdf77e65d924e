"""The node's frame pipeline (prepare / engine / publish on threads of their own) against the
node running each frame start to end on one thread: the same outputs, in order, stamps kept,
no frame's outputs mixed with another's. Real rclpy, messages, tiny checkpoint, body model."""

import threading

import numpy as np
import pytest

from ros_helpers import REFERENCE_FILES, Harness, change_state, image_msg, make_node, wait_until

from lifecycle_msgs.msg import Transition  # noqa: E402
from nav_msgs.msg import Path  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from human3r_msgs.msg import HumanArray  # noqa: E402
from human3r_ros.ros.conversions import stamp_to_ns  # noqa: E402

FRAME_TIMEOUT = 30.0


class Fed:
    """One node under its own name and image topic, with its outputs collected."""

    def __init__(self, harness, reference_dir, name: str, pipeline: str) -> None:
        self.h, self.name = harness, name
        self.node = make_node(harness, reference_dir, body_model=True, image_topic=f"/{name}/image", node_name=name,
                              pipeline=pipeline, reliability="reliable", cloud_decimation=1,
                              cloud_confidence_threshold=1.0, world_frame=f"{name}_world",
                              camera_frame=f"{name}_camera", body_frame_prefix=f"{name}_body_")
        self.pub = harness.client.create_publisher(Image, f"/{name}/image",
                                                   QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        for msg_type, topic in ((HumanArray, "humans"), (PointCloud2, "scene/points"), (Path, "camera_path")):
            harness.collect(msg_type, f"/{name}/{topic}")
        harness.collect(TFMessage, "/tf", key=f"{name}:tf")
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            assert change_state(harness, transition, name)
        wait_until(lambda: self.pub.get_subscription_count() > 0, 10, f"{name}'s image subscription")
        wait_until(lambda: self.node._outputs[""].listened("cloud"), 10, "the cloud subscription matched")

    @property
    def counters(self):
        return self.node._cameras[""].counters.figures()

    def handled(self) -> int:
        c = self.counters
        return c["frames_processed"] + c["frames_skipped"] + c["frames_dropped"]

    def outputs(self, topic: str) -> list:
        return self.h.snapshot(f"/{self.name}/{topic}")

    def tf(self) -> list:
        return [tr for m in self.h.snapshot(f"{self.name}:tf") for tr in m.transforms
                if tr.header.frame_id == f"{self.name}_world"]

    def stop(self) -> None:
        change_state(self.h, Transition.TRANSITION_DEACTIVATE, self.name)


@pytest.fixture(scope="module")
def rigs(reference_dir):
    harness = Harness(offset=71)
    piped = Fed(harness, reference_dir, "human3r_piped", pipeline="on")
    serial = Fed(harness, reference_dir, "human3r_serial", pipeline="auto")  # on the CPU: one thread
    yield piped, serial
    piped.stop()
    serial.stop()
    harness.close()


@pytest.fixture(scope="module")
def frames(reference_dir):
    return np.load(reference_dir / REFERENCE_FILES["io"])["frames_uint8"]


def humans_key(msg: HumanArray) -> list:
    """A HumanArray's content apart from the node-specific frame names."""
    return [(h.id, h.score, list(h.betas), list(h.body_pose), list(h.global_orient), h.pose.position.x,
             h.pose.position.y, h.pose.position.z, h.pose.orientation.w, h.head_position.x, h.head_position.y,
             h.head_position.z, [(p.x, p.y, p.z) for p in h.joints]) for h in msg.humans]


def test_threads_are_the_pipeline_stages(rigs):
    piped, serial = rigs
    assert piped.node._pipeline.thread_names == ["human3r_prepare", "human3r_engine", "human3r_publish"]
    assert serial.node._pipeline.thread_names == ["human3r"]
    names = {t.name for t in threading.enumerate()}
    assert {"human3r_prepare", "human3r_engine", "human3r_publish", "human3r"} <= names


def test_pipelined_outputs_equal_unpipelined_ones(rigs, frames):
    piped, serial = rigs
    stamps = [10.0 + 0.1 * i for i in range(2 * len(frames))]
    for i, t in enumerate(stamps):
        for fed in rigs:
            before = fed.handled()
            fed.pub.publish(image_msg(frames[i % len(frames)], t))
            wait_until(lambda: fed.handled() > before, FRAME_TIMEOUT, f"{fed.name} to handle the frame at {t}")
    for fed in rigs:
        wait_until(lambda: len(fed.outputs("scene/points")) == len(stamps), 10, f"{fed.name}'s last cloud")
    a, b = piped.outputs("humans"), serial.outputs("humans")
    assert [stamp_to_ns(m.header.stamp) for m in a] == [stamp_to_ns(m.header.stamp) for m in b]
    assert len(a) == len(stamps) and sum(len(m.humans) for m in a) > 0
    assert [humans_key(m) for m in a] == [humans_key(m) for m in b]
    ca, cb = piped.outputs("scene/points"), serial.outputs("scene/points")
    assert [bytes(c.data) for c in ca] == [bytes(c.data) for c in cb]
    pa, pb = piped.outputs("camera_path")[-1], serial.outputs("camera_path")[-1]
    assert [(p.header.stamp.sec, p.header.stamp.nanosec, p.pose.position.x, p.pose.orientation.w)
            for p in pa.poses] == [(p.header.stamp.sec, p.header.stamp.nanosec, p.pose.position.x,
                                    p.pose.orientation.w) for p in pb.poses]
    tfa = [(stamp_to_ns(t.header.stamp), t.child_frame_id.split("_")[-1], t.transform.translation.x)
           for t in piped.tf()]
    tfb = [(stamp_to_ns(t.header.stamp), t.child_frame_id.split("_")[-1], t.transform.translation.x)
           for t in serial.tf()]
    assert sorted(tfa) == sorted(tfb) and tfa


def test_a_burst_through_the_pipeline_keeps_order_and_each_frame_its_own_outputs(rigs, frames):
    piped, _ = rigs
    engine = piped.node._engine
    real_step, stepped = engine.step, []  # what the engine computed, frame by frame

    def step(view, stamp=None, stream=None):
        result = real_step(view, stamp=stamp, stream=stream)
        stepped.append((round(stamp * 1e9), [p.track_id for p in result.people],
                        [np.array(p.head_position_world) for p in result.people], result.c2w.copy()))
        return result

    engine.step = step
    try:
        before = piped.counters
        stamps = [50.0 + 0.01 * i for i in range(30)]
        for i, t in enumerate(stamps):
            piped.pub.publish(image_msg(frames[i % len(frames)], t))
        # the newest frame is always processed; then every frame that reached the node is accounted for
        last = round(stamps[-1] * 1e9)
        wait_until(lambda: any(stamp_to_ns(m.header.stamp) == last for m in piped.outputs("humans")),
                   FRAME_TIMEOUT, "the newest burst frame's HumanArray")
        wait_until(lambda: piped.counters["frames_received"] - before["frames_received"] == piped.handled() - (
            before["frames_processed"] + before["frames_skipped"] + before["frames_dropped"]), 10,
            "every burst frame received processed or dropped")
    finally:
        engine.step = real_step
    wanted = {round(t * 1e9) for t in stamps}
    published = [m for m in piped.outputs("humans") if stamp_to_ns(m.header.stamp) in wanted]
    assert len(stepped) >= 2, "the burst should have kept the pipeline busy"
    # published in the order the engine ran them, each stamp once, stamps increasing
    assert [stamp_to_ns(m.header.stamp) for m in published] == [s for s, *_ in stepped]
    assert [s for s, *_ in stepped] == sorted({s for s, *_ in stepped})
    # each message carries its own frame's people, not a neighbour's
    for msg, (_, ids, positions, _) in zip(published, stepped):
        assert [h.id for h in msg.humans] == ids
        for human, position in zip(msg.humans, positions):
            head = [human.head_position.x, human.head_position.y, human.head_position.z]
            np.testing.assert_allclose(head, position, rtol=0, atol=1e-6)
    # the camera path's poses, and the cloud stamps, follow the same frames
    wait_until(lambda: {stamp_to_ns(c.header.stamp) for c in piped.outputs("scene/points")} >= {
        s for s, *_ in stepped}, 10, "the burst's clouds")
    clouds = [stamp_to_ns(c.header.stamp) for c in piped.outputs("scene/points")
              if stamp_to_ns(c.header.stamp) in wanted]
    assert clouds == [s for s, *_ in stepped]
    path = piped.outputs("camera_path")[-1]
    tail = [(stamp_to_ns(p.header.stamp), p.pose.position.x) for p in path.poses][-len(stepped):]
    assert [s for s, _ in tail] == [s for s, *_ in stepped]
    np.testing.assert_allclose([x for _, x in tail], [c2w[0, 3] for *_, c2w in stepped], atol=1e-6)
