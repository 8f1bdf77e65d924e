"""The lifecycle node's own cost per frame, model time excluded, and its memory over a long run.

Image message in -> every output published (HumanArray, TF, full-resolution PointCloud2, Path,
MarkerArray), with a subscriber on each output so nothing is skipped. The engine is the real
one on the tiny checkpoint; its `step` time is measured and subtracted.

    python benchmarks/bench_node.py                      # 512x288 overhead + 2000-frame memory run
    python benchmarks/bench_node.py --memory-frames 10000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench_support import spin

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("HUMAN3R_REFERENCE_DIR", REPO.parent / "shared" / "reference"))


def make_node(image_size: int, body_model: bool, decimation: int, **extra):
    from rclpy.parameter import Parameter

    from human3r_ros.ros.node import Human3RNode

    overrides = [
        Parameter("checkpoint", value=str(REFERENCE / "tiny_plain_checkpoint.pth")),
        Parameter("body_model_dir", value=str(REFERENCE / "synthetic_smplx") if body_model else ""),
        Parameter("image_size", value=image_size),
        Parameter("cloud_decimation", value=decimation),
        Parameter("cloud_confidence_threshold", value=1.0),
        Parameter("autostart", value=True),
    ] + [Parameter(name, value=value) for name, value in extra.items()]
    return Human3RNode(parameter_overrides=overrides)


def run(frames: int, image_hw, image_size: int, body_model: bool, decimation: int, report_every: int):
    import rclpy
    from sensor_msgs.msg import PointCloud2
    from visualization_msgs.msg import MarkerArray

    from human3r_msgs.msg import HumanArray
    from human3r_ros.engine.cpu_memory import resident_mb
    from human3r_ros.ros.conversions import array_to_image

    node = make_node(image_size, body_model, decimation)
    listener = rclpy.create_node("bench_listener")
    received = {"cloud_points": 0}

    def on_cloud(raw: bytes):
        received["cloud_points"] = (len(raw) - 200) // 16  # ~header size; the figure is indicative

    # raw subscriptions: a real consumer (RViz, a planner) deserialises in its own process,
    # so this one must not take the GIL from the node for it
    listener.create_subscription(HumanArray, "/human3r/humans", lambda _m: None, 10, raw=True)
    listener.create_subscription(PointCloud2, "/human3r/scene/points", on_cloud, 10, raw=True)
    listener.create_subscription(MarkerArray, "/human3r/markers", lambda _m: None, 10, raw=True)
    executor, spinner = spin(node, listener)
    deadline = time.monotonic() + 120
    while node._engine is None or not node._outputs:  # autostart configures and activates
        if time.monotonic() > deadline:
            raise RuntimeError("node did not become active")
        time.sleep(0.1)
    time.sleep(1.0)  # let discovery connect the listener

    engine = node._engine
    step = engine.step
    step_times = []

    def timed_step(*args, **kwargs):
        t = time.perf_counter()
        out = step(*args, **kwargs)
        step_times.append(time.perf_counter() - t)
        return out

    engine.step = timed_step
    camera = node._cameras[""]
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(*image_hw, 3), dtype=np.uint8)
    total_times, memory = [], []
    for i in range(frames):
        msg = array_to_image(np.roll(base, i % 31, axis=1), 10**18 + i * 33_000_000, "camera_optical")
        t = time.perf_counter()
        node._pipeline.process([(camera.name, msg)])  # every stage of one frame, on this thread
        total_times.append(time.perf_counter() - t)
        if report_every and i % report_every == report_every - 1:
            memory.append((i + 1, resident_mb()))
    executor.shutdown()
    spinner.join(5)
    overhead = [a - b for a, b in zip(total_times, step_times)]
    result = {
        "frames": frames,
        "overhead_ms": statistics.median(overhead[min(5, frames - 1):]) * 1e3,
        "overhead_p90_ms": float(np.percentile(overhead[min(5, frames - 1):], 90)) * 1e3,
        "model_ms": statistics.median(step_times) * 1e3,
        "cloud_points": received["cloud_points"],
        "memory": memory,
    }
    node.destroy_node()
    listener.destroy_node()
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30, help="frames for the overhead figure")
    ap.add_argument("--memory-frames", type=int, default=2000, help="frames for the memory run (0 = skip)")
    args = ap.parse_args(argv)

    import rclpy

    rclpy.init()
    try:
        for body in (False, True):
            r = run(args.frames, (288, 512), 512, body_model=body, decimation=1, report_every=0)
            print(f"node overhead at 512x288, full cloud ({r['cloud_points']} points), "
                  f"{'with' if body else 'without'} body model (meshes): median {r['overhead_ms']:.1f} ms, "
                  f"p90 {r['overhead_p90_ms']:.1f} ms per frame (model {r['model_ms']:.0f} ms excluded)")
        if args.memory_frames:
            r = run(args.memory_frames, (48, 64), 64, body_model=False, decimation=1,
                    report_every=max(args.memory_frames // 10, 1))
            first, last = r["memory"][1][1], r["memory"][-1][1]
            print(f"memory over {args.memory_frames} frames (tiny model, 64x48): "
                  + ", ".join(f"{n}: {m:.0f} MB" for n, m in r["memory"])
                  + f"; growth after warm-up {last - first:+.1f} MB")
    finally:
        rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
