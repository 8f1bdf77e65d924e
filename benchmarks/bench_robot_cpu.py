"""Robot CPUs: per-frame latency without AMX, and dynamic int8 linear layers (a benchmark, not a test).

This project's CI CPU has AMX; robot CPUs usually do not, and bf16 without AMX is slow. Each ISA
runs in its own process with the CPU libraries capped by their own switches: oneDNN
(``ONEDNN_MAX_CPU_ISA``), MKL (``MKL_ENABLE_INSTRUCTIONS``) and ATen's kernels
(``ATEN_CPU_CAPABILITY``). fbgemm, which runs the int8 layers, has no such switch: its int8 rows
use the best kernels of the machine (AVX-512 VNNI here) on every ISA row.

Per ISA: fp32, bf16 and int8 (``torch.ao.quantization.quantize_dynamic`` of every ``nn.Linear``,
fp32 elsewhere), ``engine.step`` on a 512x288 noise frame, median of the timed frames after warm-up.
Then int8 and bf16 against fp32 on the shared fixture cases (tiny checkpoint): pointmap and camera
pose deviation, people and ids.

    python benchmarks/bench_robot_cpu.py                  # 672S random weights, 3 ISAs x 3 precisions
    python benchmarks/bench_robot_cpu.py --model tiny     # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("HUMAN3R_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
# name -> (oneDNN cap, MKL cap, ATen kernels); "native" leaves every library free (AMX where present)
ISAS = {
    "native": {},
    "AVX512_CORE_VNNI": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
                         "ATEN_CPU_CAPABILITY": "avx512"},
    "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}
PRECISIONS = ("fp32", "bf16", "int8")
INPUT_HW = (288, 512)
COMPARED = ("frame_pts3d_world", "frame_c2w", "hf_transl_world")


def cpu_features() -> list[str]:
    """The matrix / vector features that matter here, as the kernel reports them."""
    wanted = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx_vnni", "avx2")
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    return [f for f in wanted if f in flags]


def cap_applies(isa: str, features: list[str]) -> bool:
    """A cap changes something only below what the CPU has (AVX-512 VNNI on an AVX2-only CPU does not)."""
    if isa == "native":
        return True
    if isa == "AVX512_CORE_VNNI":
        return "avx512_vnni" in features and any(f.startswith("amx") or f == "avx512_bf16" for f in features)
    return "avx512f" in features or any(f.startswith("amx") for f in features)


def quantize_linear_layers(net):
    """Dynamic int8 (per-tensor weights, activations quantised per batch) for every nn.Linear."""
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    # layers the engine released live on the meta device: nothing to quantise there
    names = [name for name, m in net.named_modules() if isinstance(m, torch.nn.Linear) and not m.weight.is_meta]
    return quantize_dynamic(net, dict.fromkeys(names, default_dynamic_qconfig), dtype=torch.qint8, inplace=True)


def tiny_engine(precision: str, **options):
    """The engine on the tiny checkpoint in `precision` (int8: fp32 with its linear layers quantised)."""
    from human3r_ros.engine import Human3REngine
    from human3r_ros.model import load_checkpoint

    dtype = "fp32" if precision == "int8" else precision
    net = load_checkpoint(REFERENCE / "tiny_plain_checkpoint.pth", precision=dtype)
    engine = Human3REngine(net, **options)
    if precision == "int8":
        quantize_linear_layers(engine.net)
    return engine


def time_frames(spec: dict) -> dict:
    """Child process: one model, one precision, under the ISA caps of its environment."""
    import torch

    torch.set_num_threads(spec["threads"])
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_multicam import build_engine, camera_frames

    frame = camera_frames(spec["model"], 1)[0]
    # fp32 network whose threshold keeps its 4 strongest detections on this frame (random weights fire everywhere)
    engine = build_engine(spec["model"], "cpu")
    engine.ttt3r = False
    if spec["precision"] == "bf16":
        engine.net.set_precision(torch.bfloat16)
    elif spec["precision"] == "int8":
        quantize_linear_layers(engine.net)
    engine.reset()  # the recurrent state in the network's new dtype
    for _ in range(spec["warmup"]):
        engine.step(frame)
    times = []
    for _ in range(spec["frames"]):
        t = time.perf_counter()
        engine.step(frame)
        times.append(time.perf_counter() - t)
    return {**spec, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def fixture_deviation() -> list[dict]:
    """bf16 and int8 against fp32 on the fixture cases (tiny checkpoint, the cases' own options)."""
    from human3r_ros.engine.npz_schema import to_npz_dict

    rows = []
    for case in ("plain", "ttt3r", "reset"):
        z = np.load(REFERENCE / f"tiny_{case}_io.npz")
        meta = json.loads(str(z["meta_json"]))
        options = dict(ttt3r=meta["use_ttt3r"], reset_interval=meta["reset_interval"] or 0, size=64)
        runs = {}
        for precision in PRECISIONS:
            engine = tiny_engine(precision, **options)
            runs[precision] = to_npz_dict([engine.step(f, stamp=0.1 * i) for i, f in enumerate(z["frames_uint8"])])
        for precision in PRECISIONS[1:]:
            a, b = runs["fp32"], runs[precision]
            same = np.array_equal(a["hf_frame"], b["hf_frame"]) and np.array_equal(a["hf_smpl_id"], b["hf_smpl_id"])
            row = {"case": case, "precision": precision, "same_people_and_ids": bool(same)}
            for key in COMPARED:  # per-person rows only line up when the people are the same
                comparable = same or not key.startswith("hf_")
                row[key] = float(np.abs(a[key] - b[key]).max() / np.abs(a[key]).max()) if comparable else None
            rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="human3r_672S", help="human3r_672S (random weights) or tiny")
    ap.add_argument("--frames", type=int, default=2, help="timed frames per row (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--isa", action="append", choices=list(ISAS), help="only these ISAs (repeatable)")
    ap.add_argument("--precision", action="append", choices=PRECISIONS, help="only these precisions (repeatable)")
    ap.add_argument("--no-fixtures", action="store_true", help="skip the deviation on the fixture cases")
    ap.add_argument("--spec", help=argparse.SUPPRESS)  # child mode: JSON spec in, JSON result out
    args = ap.parse_args(argv)
    if args.spec:
        print(json.dumps(time_frames(json.loads(args.spec))))
        return 0

    features = cpu_features()
    print(f"CPU features: {' '.join(features) or 'unknown'}", file=sys.stderr)
    rows = []
    for isa in args.isa or list(ISAS):
        if not cap_applies(isa, features):
            print(f"  {isa}: skipped, this CPU has nothing above it (its rows would be the native ones)",
                  file=sys.stderr)
            continue
        for precision in args.precision or PRECISIONS:
            spec = dict(model=args.model, precision=precision, isa=isa, threads=args.threads, warmup=args.warmup,
                        frames=args.frames)
            env = {**os.environ, **ISAS[isa]}
            proc = subprocess.run([sys.executable, __file__, "--spec", json.dumps(spec)], capture_output=True,
                                  text=True, cwd=REPO, env=env)
            if proc.returncode != 0:
                print(f"{isa} {precision} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  done {isa} {precision}: {rows[-1]['median_s']:.2f} s", file=sys.stderr)

    fp32 = {r["isa"]: r["median_s"] for r in rows if r["precision"] == "fp32"}
    print("| ISA | precision | s/frame (median) | min-max | vs fp32 same ISA | peak RSS GB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{fp32[r['isa']] / r['median_s']:.2f}x" if r["isa"] in fp32 else "-"
        print(f"| {r['isa']} | {r['precision']} | {r['median_s']:.2f} | {r['min_s']:.2f}-{r['max_s']:.2f} | {ratio} | "
              f"{r['peak_rss_gb']:.2f} |")
    print(f"CPU: {' '.join(features) or 'unknown'}; {args.model}, {INPUT_HW[1]}x{INPUT_HW[0]}, {args.threads} threads, engine.step (TTT3R off, 4 people "
          f"kept), median of {args.frames} after {args.warmup} warm-up; int8 = dynamic int8 nn.Linear (fbgemm, "
          "not capped by the ISA switches)")
    if args.no_fixtures:
        return 0
    print("\n| fixture case | precision | same people and ids | pointmap | camera pose | person translation |")
    print("|---|---|---|---|---|---|")
    for r in fixture_deviation():
        figures = [f"{r[k]:.1e}" if r[k] is not None else "-" for k in COMPARED]
        print(f"| tiny_{r['case']} | {r['precision']} | {r['same_people_and_ids']} | " + " | ".join(figures) + " |")
    print("deviation = max |x - x_fp32| / max |x_fp32| over the case's frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
