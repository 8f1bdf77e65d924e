"""Process memory (RSS) of a stream of big camera images: message decode + engine.step.

Each case runs in its own process on the tiny checkpoint (image_size 512) and decodes the
same rgb8 sensor_msgs/Image every frame:

  512x288        decode_image (the node's usual input; the baseline)
  8K full size   raw_image_to_rgb: the whole 7680x4320 RGB image goes to the engine
  8K shrunk      decode_image: shrunk to the 1024x576 working size straight from the message
  8K Bayer       decode_image of a bayer_rggb8 mosaic (demosaiced in bands of rows)

    python benchmarks/bench_input_memory.py [--frames 6] [--case NAME]

RSS includes the message (100 MB at 8K); the growth after it is decode + engine.step.
Timings on a shared CPU are noisy; the RSS levels are what this measures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("HUMAN3R_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
CASES = {"512x288": ((288, 512), "rgb8", "decode_image"),
         "8K full size": ((4320, 7680), "rgb8", "raw_image_to_rgb"),
         "8K shrunk": ((4320, 7680), "rgb8", "decode_image"),
         "8K Bayer": ((4320, 7680), "bayer_rggb8", "decode_image")}


def scene(h: int, w: int, encoding: str) -> bytes:
    """rgb8 (or an RGGB mosaic's) bytes of a smooth h x w scene (no noise: the shrink is
    judged on content)."""
    import cv2

    y, x = np.mgrid[0:90, 0:160].astype(np.float32)
    small = np.dstack([127 + 120 * np.sin(x / 9), 127 + 120 * np.cos(y / 7), (x / 160 + y / 90) * 127])
    rgb = cv2.resize(small.astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    if encoding == "rgb8":
        return rgb.tobytes()
    mosaic = rgb[..., 1].copy()
    mosaic[0::2, 0::2], mosaic[1::2, 1::2] = rgb[0::2, 0::2, 0], rgb[1::2, 1::2, 2]
    return mosaic.tobytes()


def image_message(payload: bytes, h: int, w: int, encoding: str):
    """A sensor_msgs/Image (rclpy when available, else a plain object with its fields)."""
    step = w * (3 if encoding == "rgb8" else 1)
    fields = dict(height=h, width=w, encoding=encoding, is_bigendian=0, step=step, data=payload)
    try:
        from sensor_msgs.msg import Image
    except ImportError:
        from types import SimpleNamespace
        return SimpleNamespace(**fields)
    return Image(**fields)  # rclpy copies the bytes into the message, as a deserialised one owns them


def run_case(name: str, frames: int) -> None:
    sys.path.insert(0, str(REPO))
    from human3r_ros.engine import Human3REngine
    from human3r_ros.engine.cpu_memory import resident_mb
    from human3r_ros.ros import image_decoding

    (h, w), encoding, decoder = CASES[name]
    # The message is built once, before the engine: its construction copies the bytes twice,
    # and the engine's malloc settings would keep that transient copy resident. Every frame
    # decodes it again, so the per-frame levels are decode + engine.step alone.
    msg = image_message(scene(h, w, encoding), h, w, encoding)
    engine = Human3REngine.from_checkpoint(REFERENCE / "tiny_plain_checkpoint.pth", size=512)
    decode = {"decode_image": lambda m: image_decoding.decode_image(m, 512).rgb,
              "raw_image_to_rgb": lambda m: image_decoding.raw_image_to_rgb(m, 512)}[decoder]
    start_mb = resident_mb()
    levels, decode_s, step_s = [], [], []
    for _ in range(frames):
        t0 = time.perf_counter()
        rgb = decode(msg)
        t1 = time.perf_counter()
        engine.step(rgb)
        t2 = time.perf_counter()
        decode_s.append(t1 - t0)
        step_s.append(t2 - t1)
        del rgb
        levels.append(resident_mb())
    print(f"{name:>13}: {decoder}; RSS with the model and the message {start_mb:.0f} MB, after each frame "
          f"{' '.join(f'{v:.0f}' for v in levels)} MB (+{levels[-1] - start_mb:.0f} MB); "
          f"decode {1e3 * np.median(decode_s):.0f} ms, step {np.median(step_s):.1f} s (medians)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--case", choices=sorted(CASES), help="run one case in this process")
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args.frames)
        return
    for name in CASES:  # one process per case: RSS never comes back down within a process
        subprocess.run([sys.executable, __file__, "--case", name, "--frames", str(args.frames)], check=True)


if __name__ == "__main__":
    main()
