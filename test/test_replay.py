"""human3r-replay as a library: a bag's images and /clock published with a real rclpy node."""

import time

import numpy as np
import rclpy
from ros_helpers import Harness, wait_until
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from test_bags import T0, TOPIC, log_time, write_bag

from human3r_ros.cli.replay import main, replay
from human3r_ros.ros.msg_arrays import stamp_to_ns


def test_replay_publishes_images_and_clock_at_the_scaled_rate(tmp_path):
    frames = np.random.default_rng(3).integers(0, 256, (6, 20, 30, 3), dtype=np.uint8)
    bag = write_bag(tmp_path / "in_bag", frames, [T0 + k for k in range(6)], storage="mcap")
    h = Harness()
    try:
        h.collect(Image, "/replayed")
        h.collect(Clock, "/clock")
        arrivals = []  # monotonic receive time of each image
        h.client.create_subscription(Image, "/replayed", lambda _m: arrivals.append(time.monotonic()), 100)
        node = rclpy.create_node("replayer", context=h.context)
        begin = time.monotonic()
        # 5 s of bag at x4, twice
        count = replay(node, bag, rate=4.0, loops=2, remap={TOPIC: "/replayed"}, wait_for_subscriber=10.0)
        node.destroy_node()
        assert count == 12
        wait_until(lambda: len(h.snapshot("/replayed")) == 12 and len(arrivals) == 12, 10.0, "12 images")
        # paced, never early: image k of a loop is due 0.25 s (1 s of bag at x4) after image k-1;
        # a busy machine can only make it later, so only the lower bound is checked
        due = [loop * 1.25 + k * 0.25 for loop in range(2) for k in range(6)]
        early = [(round(a - begin, 3), d) for a, d in zip(arrivals, due) if a - begin < d - 0.05]
        assert not early, f"images arrived before they were due (s after start, due): {early}"
        got = h.snapshot("/replayed")
        assert [m.header.stamp.sec - T0 for m in got] == [0, 1, 2, 3, 4, 5] * 2
        for msg, frame in zip(got, np.concatenate([frames, frames])):
            assert (msg.height, msg.width, msg.encoding) == (20, 30, "rgb8")
            np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(20, 30, 3), frame)
        ticks = [stamp_to_ns(m.clock) for m in h.snapshot("/clock")]
        assert log_time(0) in ticks and log_time(5) in ticks  # bag time, at the images too
        assert min(ticks) >= log_time(0) and max(ticks) <= log_time(5)
    finally:
        h.close()


def test_replay_command_reports_a_missing_bag(tmp_path, capsys):
    assert main([str(tmp_path / "missing.mcap")]) == 1
    assert "cannot open bag" in capsys.readouterr().err
