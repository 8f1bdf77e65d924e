"""The bundled demo sample: synthetic frames drawn by scripts/make_demo_sample.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from human3r_ros.cli.sources import read_image_file

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "demo" / "sample"


def sample_paths(folder: Path = SAMPLE_DIR) -> list[Path]:
    paths = sorted(Path(folder).glob("frame_*.png"))
    if not paths:
        raise FileNotFoundError(
            f"no demo frames (frame_*.png) in {folder}: regenerate them with scripts/make_demo_sample.py"
        )
    return paths


def sample_frames(folder: Path = SAMPLE_DIR) -> list[np.ndarray]:
    """The sample frames as H x W x 3 uint8 RGB arrays, in order."""
    return [read_image_file(p) for p in sample_paths(folder)]
