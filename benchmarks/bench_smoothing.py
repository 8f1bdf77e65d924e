"""Jitter and lag of the One-Euro filters on synthetic walks (a benchmark, not a test).

Three 30 Hz signals, 60 s each, with Gaussian noise (seed 0 unless --seed):
  * position: a walk at 1 m/s on a circle of 4 m radius, 2 cm noise per axis;
  * heading: the body's world orientation facing along that walk (turning at 0.25 rad/s, so it
    crosses +-pi), 3 degrees of noise per rotation-vector axis;
  * hip: a joint swinging +-0.5 rad at 1 Hz (a stride), 3 degrees of noise per axis.

Figures per signal, raw and filtered:
  * jitter: RMS of the second difference (frame to frame) of the error against the true
    trajectory, i.e. the frame-to-frame wobble that is not in the true motion (rotations: error
    as the rotation vector of R_true^T R_estimate);
  * deviation: RMS of that error (includes the lag);
  * lag: the delay in frames (0.05 steps) that best aligns the estimate with the true trajectory.

    python benchmarks/bench_smoothing.py                       # the default settings
    python benchmarks/bench_smoothing.py --min-cutoff 1 --beta 0.5 --d-cutoff 1
    python benchmarks/bench_smoothing.py --tune                # grid over the three parameters
    python benchmarks/bench_smoothing.py --people 1 4          # + cost per frame of PeopleSmoother

The cost rows time ``PeopleSmoother.smooth`` on n synthetic people, without a body model and
with the reference fixtures' synthetic SMPL-X file (same sizes as the real one).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

import numpy as np
import torch

from human3r_ros.engine.frame_result import Person
from human3r_ros.engine.one_euro import OneEuroSettings, RotationOneEuro, VectorOneEuro
from human3r_ros.engine.smoothing import PeopleSmoother
from human3r_ros.engine.smplx_pose import axis_angle_to_rotmat, rotmat_to_axis_angle

RATE_HZ = 30.0
SECONDS = 60.0  # long enough for the lag of the slow heading to stand out of the noise
SPEED = 1.0  # m/s
RADIUS = 4.0  # m
POSITION_NOISE = 0.02  # m per axis
ROTATION_NOISE = np.deg2rad(3.0)  # rad per axis
LAGS = np.arange(0.0, 8.0 + 1e-9, 0.05)  # frames
REFERENCE = Path(os.environ.get("HUMAN3R_REFERENCE_DIR", Path(__file__).resolve().parents[2] / "shared" / "reference"))


def exp_so3(v: np.ndarray) -> np.ndarray:
    return axis_angle_to_rotmat(torch.from_numpy(np.asarray(v, dtype=np.float64))).numpy()


def log_so3(r: np.ndarray) -> np.ndarray:
    return rotmat_to_axis_angle(torch.from_numpy(np.asarray(r, dtype=np.float64))).numpy()


def walk_position(t):
    angle = SPEED * t / RADIUS
    return np.stack([RADIUS * np.sin(angle), np.zeros_like(t), RADIUS * (1.0 - np.cos(angle))], axis=-1)


def walk_heading(t):
    # OpenCV-like world (y down): turning about y, facing the walking direction
    return exp_so3(np.stack([np.zeros_like(t), -SPEED * t / RADIUS, np.zeros_like(t)], axis=-1))


def hip_swing(t):
    return exp_so3(np.stack([0.5 * np.sin(2 * np.pi * 1.0 * t), np.zeros_like(t), np.zeros_like(t)], axis=-1))


SIGNALS = {"position": walk_position, "heading": walk_heading, "hip": hip_swing}


def noisy_samples(name: str, truth: np.ndarray, rng) -> np.ndarray:
    if name == "position":
        return truth + rng.normal(0.0, POSITION_NOISE, truth.shape)
    return truth @ exp_so3(rng.normal(0.0, ROTATION_NOISE, truth.shape[:-1]))


def errors(name: str, estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    if name == "position":
        return estimate - truth
    return log_so3(np.swapaxes(truth, -1, -2) @ estimate)


def figures(name: str, estimate: np.ndarray, t: np.ndarray) -> dict:
    skip = int(RATE_HZ)  # the first second: the filter settles from its first sample
    err = errors(name, estimate, SIGNALS[name](t))[skip:]
    jitter = float(np.sqrt(np.mean(np.sum(np.diff(err, n=2, axis=0) ** 2, axis=-1))))
    deviation = float(np.sqrt(np.mean(np.sum(err ** 2, axis=-1))))
    misalignment = [np.mean(np.sum(errors(name, estimate[skip:], SIGNALS[name](t[skip:] - lag / RATE_HZ)) ** 2,
                                   axis=-1)) for lag in LAGS]
    return {"jitter": jitter, "deviation": deviation, "lag": float(LAGS[int(np.argmin(misalignment))])}


def run_filter(name: str, settings: OneEuroSettings, samples: np.ndarray) -> tuple[np.ndarray, float]:
    kind = VectorOneEuro if name == "position" else RotationOneEuro
    dt = 1.0 / RATE_HZ
    start = time.perf_counter()
    filt = kind(settings)
    out = [filt.update([0], s[None, None], dt)[0, 0] for s in samples]
    return np.stack(out), (time.perf_counter() - start) / len(samples)


def evaluate(settings: OneEuroSettings, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SECONDS * RATE_HZ)) / RATE_HZ
    rows = {}
    for name, signal in SIGNALS.items():
        samples = noisy_samples(name, signal(t), rng)
        filtered, per_update = run_filter(name, settings, samples)
        raw, smooth = figures(name, samples, t), figures(name, filtered, t)
        rows[name] = {"raw": raw, "filtered": smooth, "reduction": raw["jitter"] / smooth["jitter"],
                      "seconds_per_update": per_update}
    return rows


def print_table(settings: OneEuroSettings, rows: dict) -> None:
    print(f"One-Euro min_cutoff={settings.min_cutoff} Hz, beta={settings.beta}, d_cutoff={settings.d_cutoff} Hz; "
          f"{RATE_HZ:.0f} Hz, {SECONDS:.0f} s, noise {POSITION_NOISE * 100:.0f} cm / "
          f"{np.rad2deg(ROTATION_NOISE):.0f} deg per axis")
    print(f"{'signal':9} {'unit':4} {'jitter raw':>10} {'filtered':>9} {'reduction':>9} "
          f"{'deviation raw':>13} {'filtered':>9} {'lag (frames)':>12} {'us/update':>9}")
    for name, r in rows.items():
        unit, scale = ("mm", 1e3) if name == "position" else ("deg", np.rad2deg(1.0))
        print(f"{name:9} {unit:4} {r['raw']['jitter'] * scale:10.2f} {r['filtered']['jitter'] * scale:9.2f} "
              f"{r['reduction']:8.2f}x {r['raw']['deviation'] * scale:13.2f} {r['filtered']['deviation'] * scale:9.2f} "
              f"{r['filtered']['lag']:12.2f} {r['seconds_per_update'] * 1e6:9.0f}")


def tune() -> None:
    """Grid search: settings meeting jitter reduction >= 3x and lag <= 2 frames on every signal."""
    found = []
    for min_cutoff, beta, d_cutoff in itertools.product((1.0, 1.5, 2.0, 2.5, 3.0), (0.0, 0.1, 0.2, 0.5, 1.0),
                                                        (0.5, 1.0)):
        settings = OneEuroSettings(min_cutoff, beta, d_cutoff)
        rows = evaluate(settings)
        worst_reduction = min(r["reduction"] for r in rows.values())
        worst_lag = max(r["filtered"]["lag"] for r in rows.values())
        found.append((worst_lag <= 2.0 and worst_reduction >= 3.0, worst_reduction, worst_lag, settings))
        print(f"min_cutoff={min_cutoff:4} beta={beta:4} d_cutoff={d_cutoff:4}: worst reduction "
              f"{worst_reduction:5.2f}x, worst lag {worst_lag:4.2f} frames")
    good = sorted((f for f in found if f[0]), key=lambda f: -f[1])
    print("\nmeeting both targets, best reduction first:")
    for _, reduction, lag, s in good[:10]:
        print(f"  min_cutoff={s.min_cutoff} beta={s.beta} d_cutoff={s.d_cutoff}: {reduction:.2f}x, lag {lag:.2f}")


def random_person(track_id: int, rng) -> Person:
    pose = np.eye(4, dtype=np.float32)
    pose[:3, :3], pose[:3, 3] = exp_so3(rng.normal(0, 1, 3)), rng.normal(0, 1, 3)
    aa = lambda *shape: rng.normal(0, 0.3, shape).astype(np.float32)  # noqa: E731
    return Person(track_id=track_id, score=0.9, global_orient=aa(3), global_orient_world=aa(3), body_pose=aa(21, 3),
                  left_hand_pose=aa(15, 3), right_hand_pose=aa(15, 3), jaw_pose=aa(3), betas=aa(10),
                  expression=aa(10), head_position_cam=pose[:3, 3], head_position_world=pose[:3, 3], T_cam_head=pose,
                  T_world_head=pose, image_location=np.zeros(2, np.float32), detection_cell=np.zeros(2, np.int64))


def time_people_smoother(counts: list[int], frames: int = 30) -> None:
    from human3r_ros.engine.body_model import BodyModel

    body = BodyModel(REFERENCE / "synthetic_smplx") if (REFERENCE / "synthetic_smplx").is_dir() else None
    rng = np.random.default_rng(0)
    print(f"\nPeopleSmoother.smooth per frame (median of {frames}, torch threads {torch.get_num_threads()}):")
    for label, model in (("no body model", None), ("SMPL-X", body)):
        if label == "SMPL-X" and model is None:
            print(f"  SMPL-X: no synthetic model under {REFERENCE}")
            continue
        for n in counts:
            smoother = PeopleSmoother(OneEuroSettings(), model)
            times, body_times = [], []
            for i in range(frames):
                people = [random_person(k, rng) for k in range(n)]
                start = time.perf_counter()
                smoother.smooth(people, i / RATE_HZ, np.eye(4, dtype=np.float32))
                times.append(time.perf_counter() - start)
                if model is not None:  # the evaluation the engine skips when it smooths
                    rotmat = np.tile(np.eye(3, dtype=np.float32), (n, 53, 1, 1))
                    start = time.perf_counter()
                    model.evaluate(rotmat, np.zeros((n, 10)), np.zeros((n, 3)), np.zeros((n, 10)), np.eye(4))
                    body_times.append(time.perf_counter() - start)
            extra = f" (of which SMPL-X alone ~{np.median(body_times[1:]) * 1e3:.1f} ms)" if body_times else ""
            print(f"  {label:13} {n} people: {np.median(times[1:]) * 1e3:6.2f} ms{extra}")


def main() -> None:
    defaults = OneEuroSettings()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--min-cutoff", type=float, default=defaults.min_cutoff)
    p.add_argument("--beta", type=float, default=defaults.beta)
    p.add_argument("--d-cutoff", type=float, default=defaults.d_cutoff)
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--tune", action="store_true", help="grid search instead of one table")
    p.add_argument("--people", type=int, nargs="*", default=[], metavar="N",
                   help="also time PeopleSmoother.smooth with N people per frame")
    args = p.parse_args()
    if args.tune:
        tune()
        return
    settings = OneEuroSettings(args.min_cutoff, args.beta, args.d_cutoff)
    print_table(settings, evaluate(settings, args.seed))
    if args.people:
        time_people_smoother(args.people)
    print("(timings on a shared machine are noisy)")


if __name__ == "__main__":
    main()
