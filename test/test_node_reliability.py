"""The node under hostile input and faults (issue: the node never stops working silently).
Real rclpy, real messages, the tiny checkpoint; faults inside the engine are made by wrapping
the engine's own step, as a GPU running out of memory would surface."""

import shutil

import numpy as np
import pytest
import torch

from ros_helpers import REFERENCE_FILES, Harness, change_state, image_msg, make_node, stamp, wait_until

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from human3r_msgs.msg import HumanArray  # noqa: E402
from human3r_ros.ros.conversions import stamp_to_ns  # noqa: E402

TOPIC = "/camera/image"
NAME = "human3r_reliability"
FRAME_TIMEOUT = 30.0


class Rig:
    """A node on the tiny checkpoint, a camera publisher and the collected outputs."""

    count = 0

    def __init__(self, harness, reference_dir, frames, camera_reliability=ReliabilityPolicy.RELIABLE, **params):
        self.h = harness
        self.frames = frames
        # a name of its own: its /rosout lines cannot be lost to another node's registration
        self.node = make_node(harness, reference_dir, image_topic=TOPIC, node_name=NAME, **params)
        self.pub = harness.client.create_publisher(Image, TOPIC, QoSProfile(depth=100, reliability=camera_reliability))
        Rig.count += 1
        self.key = f"rig{Rig.count}:"  # each rig collects apart from the previous tests' nodes
        harness.collect(HumanArray, f"/{NAME}/humans", key=self.key + "humans")
        harness.collect(DiagnosticArray, "/diagnostics", key=self.key + "diagnostics")
        harness.collect(Log, "/rosout", QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                                   durability=DurabilityPolicy.TRANSIENT_LOCAL), key=self.key + "rosout")

    @property
    def counters(self):
        return self.node._cameras[""].counters

    def start(self):
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            assert change_state(self.h, transition, NAME)
        wait_until(lambda: self.pub.get_subscription_count() > 0, 10, "the node's image subscription")

    def stop(self):
        change_state(self.h, Transition.TRANSITION_DEACTIVATE, NAME)
        self.h.executor.remove_node(self.node)
        self.node.destroy_node()

    def handled(self) -> int:
        figures = self.counters.figures()
        return figures["frames_processed"] + figures["frames_skipped"]

    def send(self, msg):
        """Publish one message and wait until the node has processed or skipped it."""
        before = self.handled()
        self.pub.publish(msg)
        wait_until(lambda: self.handled() > before, FRAME_TIMEOUT, f"the node to handle a {msg.encoding} frame")

    def humans_at(self, t: float):
        ns = stamp_to_ns(stamp(t))
        return [m for m in self.h.snapshot(self.key + "humans") if stamp_to_ns(m.header.stamp) == ns]

    def statuses(self):
        return [s for a in self.h.snapshot(self.key + "diagnostics") for s in a.status if s.name == f"/{NAME}"]

    def logged(self, text: str) -> bool:
        return any(text in m.msg and m.name == NAME for m in self.h.snapshot(self.key + "rosout"))


@pytest.fixture(scope="module")
def harness():
    h = Harness(offset=31)
    yield h
    h.close()


@pytest.fixture(scope="module")
def frames(reference_dir):
    return np.load(reference_dir / REFERENCE_FILES["io"])["frames_uint8"]


def bad_frames(frames, t: float) -> dict:
    truncated = image_msg(frames[0], t)
    truncated.data = bytes(truncated.data)[: len(truncated.data) // 3]
    return {
        "float": image_msg(np.zeros((48, 64), np.float32), t, encoding="32FC1"),
        "thin": image_msg(np.zeros((2, 1000, 3), np.uint8), t),
        "truncated": truncated,
    }


def fail_once(engine, call: int, exc: BaseException) -> None:
    """Make the engine's `call`-th step raise `exc` (as the device would), the others run."""
    real_step, calls = engine.step, []

    def step(rgb, stamp=None, stream=None):
        calls.append(stamp)
        if len(calls) == call:
            raise exc
        return real_step(rgb, stamp=stamp, stream=stream)

    engine.step = step


@pytest.mark.parametrize("order", [
    ["float", "thin", "truncated", "thin", "duplicate"],
    ["duplicate", "thin", "truncated", "float", "thin"],
])
def test_every_good_frame_after_bad_ones_is_published(harness, reference_dir, frames, order):
    rig = Rig(harness, reference_dir, frames)
    try:
        rig.start()
        t = 100.0
        rig.send(image_msg(frames[0], t))  # the good frame the duplicate repeats
        for kind in order:
            msg = image_msg(frames[1], t) if kind == "duplicate" else bad_frames(frames, t + 0.05)[kind]
            rig.send(msg)
        good = [t + 0.1 * (i + 1) for i in range(10)]
        for i, ti in enumerate(good):
            rig.send(image_msg(frames[i % len(frames)], ti))
        for ti in [t] + good:
            wait_until(lambda: rig.humans_at(ti), 5, f"the HumanArray of the good frame at {ti}")
            assert len(rig.humans_at(ti)) == 1, f"one HumanArray for the good frame at {ti}"
        assert rig.humans_at(t + 0.05) == []
        figures = rig.counters.figures()
        assert figures["frames_processed"] == 11
        assert figures["skipped_unsupported_encoding"] == 1
        assert figures["skipped_invalid_image"] == 3
        assert figures["skipped_duplicate_stamp"] == 1
        assert rig.node._worker_restarts == 0
        # each reason logged under its own throttle, within the same few seconds (the truncated
        # frame shares the thin one's reason, so its line is held back)
        for text in ("32FC1", "too small", "same stamp as the previous image"):
            wait_until(lambda: rig.logged(text), 5, f"'{text}' on /rosout")
        assert not rig.logged("skipped: skipped")
        # /diagnostics went WARN for the bad frames and back to OK afterwards, at 1 Hz, not once per frame
        wait_until(lambda: any(s.level == DiagnosticStatus.WARN for s in rig.statuses()), 5, "a WARN status")
        wait_until(lambda: rig.statuses()[-1].level == DiagnosticStatus.OK, 10, "OK after the good frames")
    finally:
        rig.stop()


def test_out_of_memory_skips_one_frame_and_goes_on(harness, reference_dir, frames):
    rig = Rig(harness, reference_dir, frames)
    try:
        rig.start()
        fail_once(rig.node._engine, 2, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
        # a warning first, then an error: the two severities must not collide in the logger
        rig.send(bad_frames(frames, 199.0)["float"])
        stamps = [200.0 + 0.1 * i for i in range(4)]
        for i, t in enumerate(stamps):
            rig.send(image_msg(frames[i], t))
        wait_until(lambda: rig.humans_at(stamps[-1]), 5, "the last frame's HumanArray")
        assert [bool(rig.humans_at(t)) for t in stamps] == [True, False, True, True]
        assert rig.counters.figures()["skipped_out_of_memory"] == 1
        assert rig.counters.figures()["skipped_unsupported_encoding"] == 1
        wait_until(lambda: any(s.level == DiagnosticStatus.ERROR and "out of device memory" in s.message
                               for s in rig.statuses()), 5, "the out-of-memory ERROR on /diagnostics")
        assert rig.logged("out of device memory")
    finally:
        rig.stop()


class EndTheWorker(BaseException):
    """Not an Exception: what no per-frame handler catches (as a fault in the interpreter would)."""


def test_worker_thread_that_ends_is_restarted_and_reported(harness, reference_dir, frames):
    rig = Rig(harness, reference_dir, frames)
    try:
        rig.start()
        fail_once(rig.node._engine, 1, EndTheWorker("ended on purpose"))
        rig.pub.publish(image_msg(frames[0], 300.0))
        wait_until(lambda: rig.node._worker_restarts == 1, 5, "the worker to be restarted")
        status = wait_until(lambda: [s for s in rig.statuses() if s.level == DiagnosticStatus.ERROR], 5,
                            "an ERROR status")[-1]
        assert "worker thread ended" in status.message and "ended on purpose" in status.message
        assert {kv.key: kv.value for kv in status.values}["worker_restarts"] == "1"
        for i in range(3):
            rig.send(image_msg(frames[i], 300.1 + 0.1 * i))
            wait_until(lambda: rig.humans_at(300.1 + 0.1 * i), 5, "a HumanArray after the restart")
    finally:
        rig.stop()


@pytest.mark.parametrize("sim_time", [False, True])
def test_failed_configure_is_an_error_on_diagnostics(harness, reference_dir, sim_time):
    node = make_node(harness, reference_dir, checkpoint="/nonexistent/human3r.pth", use_sim_time=sim_time)
    diagnostics = harness.collect(DiagnosticArray, "/diagnostics", key=f"diag-{sim_time}")
    try:
        wait_until(lambda: harness.snapshot(f"diag-{sim_time}"), 5, "/diagnostics from node start")
        assert not change_state(harness, Transition.TRANSITION_CONFIGURE)

        def errors():
            return [s for a in harness.snapshot(f"diag-{sim_time}") for s in a.status
                    if s.level == DiagnosticStatus.ERROR and "checkpoint file not found" in s.message]
        wait_until(errors, 2, "the configure failure on /diagnostics")
        # the steady timer goes on (no /clock under use_sim_time): the reason is repeated
        wait_until(lambda: len(errors()) >= 3, 4, "the ERROR repeated at 1 Hz")
        assert errors()[-1].name == "/human3r"
        assert len(diagnostics) < 10  # 1 Hz plus changes, not a flood
    finally:
        harness.executor.remove_node(node)
        node.destroy_node()


def test_reliable_subscription_and_best_effort_camera_is_reported(harness, reference_dir, frames):
    rig = Rig(harness, reference_dir, frames, camera_reliability=ReliabilityPolicy.BEST_EFFORT, reliability="reliable")
    try:
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            assert change_state(harness, transition, NAME)
        status = wait_until(lambda: [s for s in rig.statuses() if s.level == DiagnosticStatus.ERROR], 10,
                            "the QoS mismatch on /diagnostics")[-1]
        assert "RELIABILITY" in status.message and "reliability:=best_effort" in status.message
        # applied live: the node subscribes anew and frames flow
        assert rig.node.set_parameters([Parameter("reliability", value="best_effort")])[0].successful
        wait_until(lambda: rig.node._cameras[""].reliability == "best_effort", 5, "a new subscription")

        def published():
            rig.pub.publish(image_msg(frames[0], 400.0))
            return rig.humans_at(400.0)
        wait_until(published, FRAME_TIMEOUT, "a frame through the best-effort subscription", period=0.5)
    finally:
        rig.stop()


def test_checkpoint_truncated_after_configure(harness, reference_dir, frames, tmp_path):
    # official checkpoints are memory-mapped while loading: nothing may still point into the file
    copy = tmp_path / "human3r.pth"
    shutil.copy(reference_dir / REFERENCE_FILES["checkpoint"], copy)
    rig = Rig(harness, reference_dir, frames, checkpoint=str(copy))
    try:
        rig.start()
        with open(copy, "r+b") as f:
            f.truncate(0)
        copy.unlink()
        for i in range(3):
            rig.send(image_msg(frames[i], 500.0 + 0.1 * i))
            wait_until(lambda: rig.humans_at(500.0 + 0.1 * i), 5, "a HumanArray after the truncation")
    finally:
        rig.stop()


def test_monitor_callbacks_after_destroy_and_a_failing_report_stay_inside_the_node(harness, reference_dir, frames):
    # an executor may run a timer callback it took just before the node was removed and destroyed;
    # raised into the executor, it would end the spin of every node on it
    rig = Rig(harness, reference_dir, frames)
    rig.start()
    diagnostics = rig.node._diagnostics

    def broken():
        raise RuntimeError("status on purpose")
    diagnostics._statuses = broken
    diagnostics.publish()  # logged, not raised
    wait_until(lambda: rig.logged("/diagnostics not published: RuntimeError('status on purpose')"), 5,
               "the failed report on /rosout")
    rig.stop()
    diagnostics.publish()
    rig.node._watch_worker()
    assert not harness.callback_errors
