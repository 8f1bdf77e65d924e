"""The node pipelined (prepare / engine / publish threads) against the node running each frame
on one thread, side by side in one run: A B A B ... on the same camera stream.

A camera publishes 512x288 images at a fixed rate (faster than the node can follow, so the
newest-frame slot decides what is processed); the node (tiny checkpoint at image_size 512,
body model, full-resolution cloud, a subscriber on every output) runs `--seconds` per trial.
Per trial: frames published to ~/humans per second, and image-in to HumanArray-out latency
(the stamp is the publish time on this host's clock). Ratios are taken pair by pair.

    python benchmarks/bench_pipeline.py                 # 3 pairs of 10 s at 60 Hz
    python benchmarks/bench_pipeline.py --pairs 5 --rate 30 --cpu-threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_node import make_node  # noqa: E402
from bench_support import spin  # noqa: E402


def trial(pipeline: bool, seconds: float, rate_hz: float, cpu_threads: int) -> dict:
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, PointCloud2
    from visualization_msgs.msg import MarkerArray

    from human3r_msgs.msg import HumanArray
    from human3r_ros.ros.conversions import array_to_image, stamp_to_ns

    node = make_node(512, True, 1, pipeline="on" if pipeline else "off", cpu_threads=cpu_threads)
    listener = rclpy.create_node("bench_pipeline_listener")
    latencies = []

    def on_humans(msg):
        latencies.append(time.time_ns() - stamp_to_ns(msg.header.stamp))

    listener.create_subscription(HumanArray, "/human3r/humans", on_humans, 50)
    listener.create_subscription(PointCloud2, "/human3r/scene/points", lambda _m: None, 10, raw=True)
    listener.create_subscription(MarkerArray, "/human3r/markers", lambda _m: None, 10, raw=True)
    camera = listener.create_publisher(Image, "/image", qos_profile_sensor_data)
    executor, spinner = spin(node, listener)
    deadline = time.monotonic() + 120
    while node._pipeline is None or camera.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("node did not become active")
        time.sleep(0.1)
    time.sleep(1.0)

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(288, 512, 3), dtype=np.uint8)
    images = [array_to_image(np.roll(base, 7 * i, axis=1), 0, "camera_optical") for i in range(16)]
    warmup_end = time.monotonic() + 2.0
    end = warmup_end + seconds
    i = 0
    while time.monotonic() < end:
        if time.monotonic() >= warmup_end and warmup_end:
            latencies.clear()
            warmup_end = 0
        msg = images[i % len(images)]
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        camera.publish(msg)
        i += 1
        time.sleep(1.0 / rate_hz)
    done = list(latencies)
    executor.shutdown()
    spinner.join(5)
    node.destroy_node()
    listener.destroy_node()
    return {"fps": len(done) / seconds, "p50_ms": statistics.median(done) * 1e-6 if done else float("nan"),
            "p90_ms": float(np.percentile(done, 90)) * 1e-6 if done else float("nan")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=60.0, help="camera rate (Hz)")
    ap.add_argument("--cpu-threads", type=int, default=0, help="the node's cpu_threads (0: torch's default)")
    args = ap.parse_args(argv)

    import rclpy

    rclpy.init()
    try:
        ratios = []
        for pair in range(args.pairs):
            a = trial(True, args.seconds, args.rate, args.cpu_threads)
            b = trial(False, args.seconds, args.rate, args.cpu_threads)
            ratios.append(a["fps"] / b["fps"])
            for name, r in (("pipelined", a), ("one thread", b)):
                print(f"pair {pair + 1} {name:10s}: {r['fps']:.2f} frames/s, latency p50 {r['p50_ms']:.0f} ms, "
                      f"p90 {r['p90_ms']:.0f} ms")
        print("throughput pipelined / one thread, pair by pair: " + ", ".join(f"{x:.2f}" for x in ratios))
    finally:
        rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
