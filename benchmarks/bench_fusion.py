"""Accuracy and cost of cross-camera fusion on synthetic scenes (a benchmark, not a test).

Scenes from test/fusion_scenes.py: people walking in front of 2-4 calibrated cameras on an
arc (4 m away, rig moving), every camera with its own scale (0.9-1.1), world and track ids;
5 cm noise on each view's head, 0.05 rad on each joint, optionally 5 % extra depth noise
along the viewing ray (monocular depth is the weak part of real estimates).

Per scene: association (share of frame sets whose groups equal the true people), head error
(mean, cm) of the fused people for three head estimators (depth_weight 0.001 = ray
triangulation, 0.1 = the default, 1 = mean of the views) and of the best single view placed
with its true scale and rig pose, the worst scale error after the run, and the fusion's cost
per frame set (wall and CPU ms; the scene's own generation excluded).

    python benchmarks/bench_fusion.py [--frames 150]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))
from fusion_scenes import Scene, random_walkers, ring_of_cameras  # noqa: E402

from human3r_ros.fusion import Fuser, Rig  # noqa: E402

SCENES = [(2, 3), (3, 5), (4, 6)]  # cameras, people
DEPTH_WEIGHTS = (0.001, 0.1, 1.0)  # ~pure ray triangulation, the default, the mean of the views


def make_scene(cameras: int, people: int, depth_noise: float, seed: int) -> Scene:
    rng = np.random.default_rng(seed)
    scales = list(rng.uniform(0.9, 1.1, cameras))
    return Scene(ring_of_cameras(cameras, scales=scales), random_walkers(rng, people), rig_motion=0.005,
                 depth_noise=depth_noise, seed=seed)


def run(cameras: int, people: int, depth_noise: float, frames: int, seed: int = 1) -> dict:
    scene = make_scene(cameras, people, depth_noise, seed)
    frame_sets = [scene.frame_set(f) for f in range(frames)]
    row = {}
    for depth_weight in DEPTH_WEIGHTS:
        fuser = Fuser(Rig(scene.extrinsics()), depth_weight=depth_weight)
        right, errors, wall, cpu = 0, [], 0.0, 0.0
        for frame, frame_set in enumerate(frame_sets):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            fused = fuser.fuse(frame_set)
            wall += time.perf_counter() - start_wall
            cpu += time.process_time() - start_cpu
            walkers = [{scene.truth[(v.camera, v.track_id)] for v in p.views} for p in fused.people]
            right += len(walkers) == people and all(len(w) == 1 for w in walkers)
            errors += [np.linalg.norm(p.head_position_world - scene.walkers[next(iter(w))].head(frame))
                       for w, p in zip(walkers, fused.people) if len(w) == 1]
        row[depth_weight] = np.mean(errors)
        if depth_weight == 0.1:
            row["right"] = right / frames
            row["scale"] = max(abs(fuser.scales[c.name] / c.scale - 1) for c in scene.cameras)
            row["wall"], row["cpu"] = 1e3 * wall / frames, 1e3 * cpu / frames
    single = {c.name: [] for c in scene.cameras}
    for frame, frame_set in enumerate(frame_sets):
        for camera in scene.cameras:
            pose = scene.rig_pose(frame) @ camera.extrinsics
            for p in frame_set[camera.name].people:
                head = pose[:3] @ np.append(p.head_position_cam * camera.scale, 1.0)
                truth = scene.walkers[scene.truth[(camera.name, p.track_id)]].head(frame)
                single[camera.name].append(np.linalg.norm(head - truth))
    row["single"] = min(np.mean(e) for e in single.values())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args()
    print(f"{args.frames} frame sets per scene; head errors in cm; cost per frame set in ms")
    print("noise            cams people  assoc  tri(.001)  default(0.1)  mean(1)  best view  scale err  wall   cpu")
    for depth_noise in (0.0, 0.05):
        label = "5 cm" if depth_noise == 0 else "5 cm + 5 % depth"
        for cameras, people in SCENES:
            r = run(cameras, people, depth_noise, args.frames)
            print(f"{label:16s} {cameras:4d} {people:6d}  {r['right']:5.1%}  {100 * r[0.001]:8.1f}  {100 * r[0.1]:12.1f}"
                  f"  {100 * r[1.0]:7.1f}  {100 * r['single']:9.1f}  {r['scale']:9.2%}  {r['wall']:5.1f}  {r['cpu']:4.1f}")


if __name__ == "__main__":
    main()
