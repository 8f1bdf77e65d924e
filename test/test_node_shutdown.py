"""SIGINT / SIGTERM while a frame is in flight: the node process leaves through the lifecycle
shutdown within 2 s. The node runs as its own process (`python -m human3r_ros.ros.node`), as
`ros2 run` starts it; the tiny checkpoint at image_size 1024 keeps one frame busy for seconds."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ros_helpers import REFERENCE_FILES, Harness, domain_id, image_msg, wait_until

from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from human3r_msgs.msg import HumanArray  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXIT_WITHIN_S = 2.0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_with_a_frame_in_flight_exits_through_shutdown(reference_dir, signum):
    offset = 41 + int(signum)
    harness = Harness(offset=offset)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id(offset)), PYTHONUNBUFFERED="1")
    node = subprocess.Popen(
        [sys.executable, "-m", "human3r_ros.ros.node", "--ros-args",
         "-p", f"checkpoint:={reference_dir / REFERENCE_FILES['checkpoint']}", "-p", "device:=cpu",
         "-p", "image_size:=1024", "-p", "cpu_threads:=1", "-p", "autostart:=true", "-p", "reliability:=reliable",
         "-r", "image:=/camera/image"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        frames = np.load(reference_dir / REFERENCE_FILES["io"])["frames_uint8"]
        pub = harness.client.create_publisher(Image, "/camera/image",
                                              QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        humans = harness.collect(HumanArray, "/human3r/humans")
        wait_until(lambda: pub.get_subscription_count() > 0, 60, "the node process to subscribe")
        pub.publish(image_msg(frames[0], 10.0))
        wait_until(lambda: harness.snapshot("/human3r/humans"), 60, "the first frame's output")
        pub.publish(image_msg(frames[1], 10.1))  # seconds of work at 1024 px
        time.sleep(0.5)
        assert len(humans) == 1, "the second frame must still be in flight"
        sent = time.monotonic()
        node.send_signal(signum)
        out, _ = node.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        harness.close()
    assert node.returncode == 0, out
    assert "shutting down" in out, out
    assert took <= EXIT_WITHIN_S, f"exited {took:.2f} s after the signal\n{out}"
