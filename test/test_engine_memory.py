"""A long stream through the tiny model: memory must not grow with the stream length."""

import gc

import numpy as np

from human3r_ros.engine import Human3REngine
from human3r_ros.engine.cpu_memory import resident_mb as rss_mb


def test_500_frames_keep_memory_flat(reference_dir):
    frames = np.load(reference_dir / "tiny_plain_io.npz")["frames_uint8"]
    engine = Human3REngine.from_checkpoint(
        reference_dir / "tiny_plain_checkpoint.pth", size=64, ttt3r=True, reset_interval=100
    )
    samples = []
    for i in range(500):
        # vary the frames a little so detections and ids keep changing
        frame = np.roll(frames[i % len(frames)], shift=i % 7, axis=1)
        result = engine.step(frame, stamp=i / 30)
        if i % 50 == 49:
            gc.collect()
            samples.append(rss_mb())
    assert result.index == 499
    assert engine._tracker.num_kept <= engine._tracker.max_kept
    # after warm-up (allocator pools, first reset), resident memory stays within noise
    growth = max(samples[2:]) - samples[2]
    assert growth < 25, f"resident memory grew by {growth:.1f} MB over 400 frames: {samples}"
