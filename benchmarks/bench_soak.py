"""Soak: the node through the real middleware for many frames, one hostile frame every N.

A camera publisher sends each frame and waits until the node has handled it (processed or
skipped), so no frame is dropped by the newest-frame slot and every good frame must yield its
HumanArray. Hostile frames rotate through: a float image (32FC1), a 2x1000 image, truncated
data, a repeated stamp, and time jumping back (which restarts the sequence and is processed).
Prints the outputs per kind of frame and the node's resident memory along the run.

    python benchmarks/bench_soak.py                     # 10,000 frames, a hostile one every 50
    python benchmarks/bench_soak.py --frames 1000 --every 25
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench_support import spin

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("HUMAN3R_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
HOSTILE = ("float_image", "too_thin", "truncated", "repeated_stamp", "time_back")


def hostile_message(kind: str, good, stamp_ns: int, last_stamp_ns: int):
    from human3r_ros.ros.conversions import array_to_image

    if kind == "float_image":
        return array_to_image(np.zeros((48, 64), np.float32), stamp_ns, "camera_optical", "32FC1")
    if kind == "too_thin":
        return array_to_image(np.zeros((2, 1000, 3), np.uint8), stamp_ns, "camera_optical")
    if kind == "truncated":
        msg = array_to_image(good, stamp_ns, "camera_optical")
        msg.data = bytes(msg.data)[: len(msg.data) // 3]
        return msg
    if kind == "repeated_stamp":
        return array_to_image(good, last_stamp_ns, "camera_optical")
    return array_to_image(good, 10**9 + stamp_ns % 10**9, "camera_optical")  # time_back: a good frame from the past


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=50, help="one hostile frame every N frames")
    args = ap.parse_args(argv)

    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from human3r_msgs.msg import HumanArray
    from human3r_ros.engine.cpu_memory import resident_mb
    from human3r_ros.ros.conversions import array_to_image, stamp_to_ns
    from human3r_ros.ros.node import Human3RNode

    rclpy.init()
    node = Human3RNode(parameter_overrides=[
        Parameter("checkpoint", value=str(REFERENCE / "tiny_plain_checkpoint.pth")),
        Parameter("image_size", value=64), Parameter("reliability", value="reliable"),
        Parameter("cpu_threads", value=1), Parameter("autostart", value=True)])
    client = rclpy.create_node("soak_camera")
    outputs, lock = set(), threading.Lock()

    def on_humans(msg):
        with lock:
            outputs.add(stamp_to_ns(msg.header.stamp))

    client.create_subscription(HumanArray, "/human3r/humans", on_humans, 100)
    pub = client.create_publisher(Image, "image", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    executor, _ = spin(node, client)
    deadline = time.monotonic() + 120
    while pub.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the node did not subscribe")
        time.sleep(0.1)

    counters = node._cameras[""].counters
    frames = np.load(REFERENCE / "tiny_plain_io.npz")["frames_uint8"]
    good_stamps, sent = [], {"good": 0, **{k: 0 for k in HOSTILE}}
    memory = []
    stamp_ns, last_stamp_ns = 10**12, 10**12
    begin = time.monotonic()
    for i in range(args.frames):
        good = frames[i % len(frames)]
        if i % args.every == args.every - 1:
            kind = HOSTILE[(i // args.every) % len(HOSTILE)]
            msg = hostile_message(kind, good, stamp_ns, last_stamp_ns)
            if kind == "time_back":
                good_stamps.append(stamp_to_ns(msg.header.stamp))
                last_stamp_ns = stamp_to_ns(msg.header.stamp)
                stamp_ns = last_stamp_ns + 33_000_000
        else:
            kind = "good"
            msg = array_to_image(good, stamp_ns, "camera_optical")
            good_stamps.append(stamp_ns)
            last_stamp_ns = stamp_ns
            stamp_ns += 33_000_000
        sent[kind] += 1
        figures = counters.figures()
        before = figures["frames_processed"] + figures["frames_skipped"]
        pub.publish(msg)
        wait_until = time.monotonic() + 60
        while True:
            figures = counters.figures()
            if figures["frames_processed"] + figures["frames_skipped"] > before:
                break
            if time.monotonic() > wait_until:
                raise RuntimeError(f"frame {i} ({kind}) not handled within 60 s")
            time.sleep(0.001)
        if i % (args.frames // 10 or 1) == 0 or i == args.frames - 1:
            memory.append((i + 1, resident_mb()))
    elapsed = time.monotonic() - begin
    time.sleep(1.0)  # the last outputs in flight to the subscriber
    with lock:
        missing = [s for s in good_stamps if s not in outputs]
    figures = counters.figures()
    print(f"soak: {args.frames} frames in {elapsed:.0f} s ({args.frames / elapsed:.1f} frames/s), one hostile frame "
          f"every {args.every}: sent {sent}")
    print(f"good frames with their HumanArray: {len(good_stamps) - len(missing)}/{len(good_stamps)}"
          f"; worker restarts {node._worker_restarts}; counters: "
          + ", ".join(f"{k} {v}" for k, v in figures.items() if k.startswith(("frames_", "skipped_", "time_"))))
    warm = memory[1][1] if len(memory) > 1 else memory[0][1]
    print("resident memory (frame: MB): " + ", ".join(f"{n}: {m:.0f}" for n, m in memory)
          + f"; growth after the first tenth {memory[-1][1] - warm:+.1f} MB")
    executor.shutdown()
    node.destroy_node()
    client.destroy_node()
    rclpy.try_shutdown()
    return 0 if not missing and node._worker_restarts == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
