"""Several cameras on one network: throughput of a batched step against stepping each camera in turn
(a benchmark, not a test).

For 1, 2 and 4 cameras, each with its own images and state, one "set" is one image per camera:
*sequential* runs ``engine.step`` once per camera, *batched* runs one ``engine.step_many`` (one
forward pass, batch = cameras). Each model and device runs in its own subprocess. Prints one
table: time per set, per-camera and total images per second, and batched against sequential.

    python benchmarks/bench_multicam.py               # tiny + 672S (random weights) on CPU, CUDA rows if present
    python benchmarks/bench_multicam.py --only tiny   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench_support import run_child

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("HUMAN3R_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
CAMERAS = (1, 2, 4)
MODES = ("sequential", "batched")
INPUT_HW = (288, 512)  # camera images; the engine's size 512 keeps them as they are


def camera_frames(model: str, cameras: int):
    """One distinct image per camera: the fixture frames (people for the tiny weights) or noise."""
    import numpy as np
    import PIL.Image

    if model == "tiny":
        frames = np.load(REFERENCE / "tiny_plain_io.npz")["frames_uint8"]
        size = (INPUT_HW[1], INPUT_HW[0])
        return [np.asarray(PIL.Image.fromarray(frames[(3 + c) % len(frames)]).resize(size)) for c in range(cameras)]
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*INPUT_HW, 3), dtype=np.uint8) for _ in range(cameras)]


def build_engine(model: str, device: str):
    import torch

    from human3r_ros.engine import Human3REngine
    from human3r_ros.engine.preprocess import preprocess_frame
    from human3r_ros.model import build_model, load_checkpoint

    if model == "tiny":
        net = load_checkpoint(REFERENCE / "tiny_plain_checkpoint.pth", device=device)
        return Human3REngine(net, ttt3r=True, reset_interval=0, size=512)
    torch.manual_seed(0)
    net = build_model(model, device=device)
    # random weights fire everywhere: keep the 4 strongest detections of a probe, like a real scene
    view = preprocess_frame(camera_frames(model, 1)[0], 512, mhmr_res=net.config.mhmr_img_res)
    state, memory = net.initial_state()
    probe = net.forward_view(
        view.img[None].to(device), view.img_mhmr[None].to(device), state, memory, True, False, det_threshold=2.0
    )
    threshold = float(probe.humans.det_scores_nms.flatten().topk(4).values[-1])
    return Human3REngine(net, ttt3r=True, reset_interval=0, size=512, det_threshold=threshold)


def run_model(spec: dict) -> list[dict]:
    """Runs in the child process: every camera count and mode for one model on one device."""
    import torch

    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    engine = build_engine(spec["model"], device)
    rows = []
    for cameras in spec["cameras"]:
        frames = camera_frames(spec["model"], cameras)
        for mode in MODES:
            streams = [engine.new_stream() for _ in range(cameras)]

            def one_set():
                if mode == "batched":
                    return engine.step_many([(s, f, None) for s, f in zip(streams, frames)])
                return [engine.step(f, stream=s) for s, f in zip(streams, frames)]

            for _ in range(spec["warmup"]):  # the first pass of a fresh state has no TTT3R gate
                one_set()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            times, people = [], 0
            for _ in range(spec["sets"]):
                t = time.perf_counter()
                results = one_set()  # results are numpy arrays: the device is synchronised
                times.append(time.perf_counter() - t)
                people += sum(len(r.people) for r in results)
            rows.append({
                **spec, "cameras": cameras, "mode": mode, "set_s": statistics.median(times),
                "people": people / (spec["sets"] * cameras),
                "gpu_peak_gb": torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else None,
            })
            done = f"{spec['model']} {device} {cameras} cameras {mode}: {rows[-1]['set_s'] * 1e3:.1f} ms/set"
            print(f"  done {done}", file=sys.stderr)
    return rows


def specs(only: str | None, cuda: bool, sets: int, threads: int) -> list[dict]:
    cpu = dict(device="cpu", threads=threads, cameras=list(CAMERAS))
    out = [dict(cpu, model="tiny", warmup=1, sets=sets)]
    if only != "tiny":  # ~4 s per image on a 2-core CPU: one set after one warm-up set
        out.append(dict(cpu, model="human3r_672S", warmup=1, sets=1))
    if cuda:
        out.append(dict(device="cuda", threads=2, cameras=list(CAMERAS), model="tiny", warmup=3, sets=max(sets, 20)))
        if only != "tiny":
            for model in ("human3r_672S", "human3r_896L"):
                out.append(dict(device="cuda", threads=2, cameras=list(CAMERAS), model=model, warmup=3,
                                sets=max(sets, 10)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["tiny"], help="only the tiny checkpoint")
    ap.add_argument("--sets", type=int, default=3, help="timed sets per row (median reported; 672S on CPU: 1)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (1 on a machine shared with others)")
    ap.add_argument("--spec", help=argparse.SUPPRESS)  # child mode: JSON spec in, JSON rows out
    args = ap.parse_args(argv)
    if args.spec:
        print(json.dumps(run_model(json.loads(args.spec))))
        return 0

    import torch

    rows = []
    for spec in specs(args.only, torch.cuda.is_available(), args.sets, args.threads):
        run = run_child(Path(__file__), "--spec", spec)
        sys.stderr.write("".join(line + "\n" for line in run.stderr.splitlines() if line.startswith("  done")))
        if run.error:
            print(f"{spec['model']} on {spec['device']} failed:\n{run.stderr[-2000:]}", file=sys.stderr)
            continue
        rows += run.result

    sequential = {(r["model"], r["device"], r["cameras"]): r["set_s"] for r in rows if r["mode"] == "sequential"}
    header = ["model", "device", "cameras", "mode", "people/img", "ms/set", "FPS/camera", "FPS total",
              "vs sequential", "GPU GB"]
    table = []
    for r in rows:
        seq = sequential.get((r["model"], r["device"], r["cameras"]))
        table.append([
            r["model"], r["device"], str(r["cameras"]), r["mode"], f"{r['people']:.1f}", f"{r['set_s'] * 1e3:.1f}",
            f"{1 / r['set_s']:.2f}", f"{r['cameras'] / r['set_s']:.2f}",
            f"{seq / r['set_s']:.2f}x" if seq else "-",
            f"{r['gpu_peak_gb']:.2f}" if r["gpu_peak_gb"] else "-",
        ])
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    print(f"camera images {INPUT_HW[1]}x{INPUT_HW[0]} (model input the same); a set = one image per camera, "
          "median over the timed sets; fp32 eager, TTT3R on, no body model; "
          f"CPU rows use {args.threads} thread(s); 672S = random weights with the 4 strongest detections kept; "
          "vs sequential = speed-up of the row over stepping the same cameras one by one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
