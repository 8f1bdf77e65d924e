"""`make demo` end to end: the demo runner (real node, demo weights) on the bundled sample."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from human3r_ros.ros.msg_arrays import stamp_to_ns
from test_bags import read_bag
from human3r_ros.tools.preview import PersonTrack, PreviewData, render_preview
from human3r_ros.tools.sample import sample_paths

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_sample_is_small_and_has_frames():
    paths = sample_paths()
    assert 6 <= len(paths) <= 10
    assert sum(p.stat().st_size for p in paths) < 300_000
    assert all(cv2.imread(str(p)).shape == (240, 320, 3) for p in paths)


def test_demo_runs_the_node_and_records_its_outputs(tmp_path):
    # A subprocess, as `make demo` runs it: its own rclpy, torch threads and environment.
    done = subprocess.run(
        [sys.executable, "-m", "human3r_ros.tools.demo", "--checkpoint", "", "--body-model", "", "--out",
         str(tmp_path)], cwd=REPO, env=os.environ.copy(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DEMO WEIGHTS: random, untrained" in done.stdout
    assert str((tmp_path / "outputs.mcap").resolve()) in done.stdout

    frames = len(sample_paths())
    recorded = read_bag(tmp_path / "outputs.mcap")
    counts = {topic: len(messages) for topic, messages in recorded.items()}
    humans = [msg for _, msg in recorded["/human3r/humans"]]
    assert counts["/human3r/humans"] == frames  # one HumanArray per sample frame
    for topic in ("/camera/image_raw", "/tf", "/human3r/scene/points", "/human3r/camera_path", "/human3r/markers"):
        assert counts.get(topic, 0) >= frames, (topic, counts)
    assert sum(len(a.humans) for a in humans) >= 1
    stamps = [stamp_to_ns(a.header.stamp) for a in humans]
    assert stamps == sorted(stamps) and len(set(stamps)) == frames

    preview = tmp_path / "preview.png"
    assert preview.read_bytes()[:8] == PNG_MAGIC
    image = cv2.imread(str(preview))
    assert image is not None and image.shape[0] >= 600 and image.shape[1] >= 800
    assert image.std() > 10  # not a blank canvas


def test_preview_without_any_output():
    data = PreviewData(points=np.zeros((0, 3)), colours=np.zeros((0, 3), np.uint8),
                       camera_positions=np.zeros((0, 3)), camera_forward=np.array([0.0, 0.0, 1.0]), tracks=[],
                       palette=np.array([[0.1, 0.4, 0.7]]))
    assert render_preview(data).ndim == 3


def test_preview_tracks_and_points():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 3)) + [0, 0, 4]
    data = PreviewData(points=points, colours=rng.integers(0, 255, (500, 3), dtype=np.uint8),
                       camera_positions=np.array([[0, 0, 0], [0.1, 0, 0.2]]), camera_forward=np.array([0, 0, 1.0]),
                       tracks=[PersonTrack(3, heads=[[1, -1.5, 4], [1.1, -1.5, 4]], joints=rng.normal(size=(127, 3)))],
                       palette=np.array([[0.1, 0.4, 0.7], [1.0, 0.5, 0.0]]), title="t", subtitle="s",
                       last_image=np.zeros((240, 320, 3), np.uint8), last_boxes=[(3, 10, 20, 30, 40)])
    image = render_preview(data)
    track_colour = np.array([0, 128, 255])  # palette[3 % 2] in BGR
    assert (np.abs(image.astype(int) - track_colour).sum(axis=2) < 10).any()
