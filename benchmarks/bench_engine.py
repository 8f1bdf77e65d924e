"""Latency and memory of the network / engine (a benchmark, not a test).

Each case runs in its own subprocess so that peak memory is that case's alone. Prints one
table; the ratio column compares each row with the all-heads path of the same model and device
(fp32, all three dense heads computed as the published code does, no fast-path extras).

    python benchmarks/bench_engine.py                 # tiny + 672S on CPU, CUDA rows if present
    python benchmarks/bench_engine.py --only tiny     # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from bench_support import run_child

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("HUMAN3R_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
STAGES = ("encoder", "dinov2", "humans", "decoder", "heads")


def _sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_case(case: dict) -> dict:
    """Runs in the child process: build/load, warm up, time, profile one pass."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from human3r_ros.engine.cpu_memory import keep_freed_memory
    from human3r_ros.engine.recurrent import RecurrentState, advance
    from human3r_ros.model import PRECISION_DTYPES, build_model, load_checkpoint
    from human3r_ros.model.compiled import compile_network

    torch.set_num_threads(case["threads"])
    device = case["device"]
    t0 = time.perf_counter()
    dtype = PRECISION_DTYPES[case["precision"]]
    if case["model"] == "tiny":
        net = load_checkpoint(REFERENCE / "tiny_plain_checkpoint.pth", device=device, precision=case["precision"])
    else:
        torch.manual_seed(0)
        net = build_model(case["model"], device=device).set_precision(dtype)
    build_s = time.perf_counter() - t0
    h, w = case["hw"]
    gen = torch.Generator().manual_seed(0)
    img = (torch.rand(1, 3, h, w, generator=gen) * 2 - 1).to(device)
    res = net.config.mhmr_img_res
    img_mhmr = (torch.rand(1, 3, res, res, generator=gen) * 2 - 1).to(device)
    full = case["path"] == "all-heads"
    if not full:
        net.release_unused()  # as the engine does
        if device == "cpu":
            keep_freed_memory()  # as the engine does
    if case["path"] in ("compiled", "graphs"):
        compile_network(net, "default" if case["path"] == "compiled" else "cuda-graphs")

    state = RecurrentState.initial(*net.initial_state())
    threshold = 0.3
    if case["model"] != "tiny":
        # random weights fire everywhere: keep the 4 strongest detections, like a real scene
        probe = net.forward_view(img, img_mhmr, state.state, state.memory, True, False, det_threshold=2.0)
        threshold = float(probe.humans.det_scores_nms.flatten().topk(4).values[-1])

    def one_pass():
        nonlocal state
        out = net.forward_view(
            img, img_mhmr, state.state, state.memory, state.fresh,
            want_gate=not state.fresh, with_rgb=full, with_world_head=full, det_threshold=threshold,
        )
        state = advance(state, out.new_state, out.new_memory, out.ttt3r_gate, False)
        _sync(device)
        return out

    t0 = time.perf_counter()
    for _ in range(case["warmup"]):  # compiled: the first passes compile (fresh view, then gated)
        one_pass()
    warmup_s = time.perf_counter() - t0
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(case["repeats"]):
        t = time.perf_counter()
        out = one_pass()
        times.append(time.perf_counter() - t)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        one_pass()
    stage_s = {}
    for evt in prof.key_averages():
        if evt.key.startswith("human3r."):
            total = evt.device_time_total if device.startswith("cuda") else evt.cpu_time_total
            stage_s[evt.key.split(".", 1)[1]] = total / 1e6
    return {
        **case,
        "build_s": build_s,
        "warmup_s": warmup_s,
        "median_s": statistics.median(times),
        "stages_s": stage_s,
        "people": int(out.humans.view.numel()),
        "cuda_graphs": net.graphed_front is not None and net.graphed_front.failure is None,
        "cuda_graphs_failure": None if net.graphed_front is None else net.graphed_front.failure,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "gpu_peak_gb": torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else None,
    }


def precision_deviation() -> list[str]:
    """fp16 / bf16 / compiled against eager fp32 on the tiny checkpoint over the fixture frames."""
    import numpy as np

    from human3r_ros.engine import Human3REngine

    frames = np.load(REFERENCE / "tiny_plain_io.npz")["frames_uint8"]
    runs = {}
    variants = {"fp32": {}, "fp16": {"precision": "fp16"}, "bf16": {"precision": "bf16"},
                "fp32 compiled": {"compile_mode": "default"}}
    for name, options in variants.items():
        engine = Human3REngine.from_checkpoint(REFERENCE / "tiny_plain_checkpoint.pth", size=64, **options)
        runs[name] = [engine.step(f) for f in frames]
    lines = []
    for precision in list(variants)[1:]:
        worst = {"pts3d_world": 0.0, "c2w": 0.0}
        same_ids = True
        for ref, got in zip(runs["fp32"], runs[precision]):
            for key in worst:
                a, b = getattr(ref, key), getattr(got, key)
                worst[key] = max(worst[key], float(np.abs(a - b).max() / np.abs(a).max()))
            same_ids &= [p.track_id for p in ref.people] == [p.track_id for p in got.people]
        lines.append(f"{precision} vs fp32 (tiny checkpoint, fixture frames): max |diff|/max|x| pointmap "
                     f"{worst['pts3d_world']:.2e}, camera pose {worst['c2w']:.2e}; same people and ids: {same_ids}")
    return lines


def cases(only: str | None, cuda: bool, repeats: int) -> list[dict]:
    out = []
    cpu = dict(device="cpu", threads=2, precision="fp32", warmup=1, repeats=repeats)
    for path in ("all-heads", "fast", "compiled"):
        warmup = 2 if path == "compiled" else 1
        out.append(dict(cpu, model="tiny", hw=(288, 512), path=path, repeats=max(repeats, 5), warmup=warmup))
        if only != "tiny":
            out.append(dict(cpu, model="human3r_672S", hw=(288, 512), path=path, warmup=warmup))
    if only != "tiny":  # bf16: AMX / AVX512-BF16 matrix units where the CPU has them
        out.append(dict(cpu, model="human3r_672S", hw=(288, 512), path="fast", precision="bf16"))
    if cuda and only != "tiny":
        for model in ("human3r_672S", "human3r_896L"):
            for precision in ("fp32", "fp16", "bf16"):
                for path in ("all-heads", "fast", "compiled"):
                    out.append(dict(device="cuda", threads=2, model=model, hw=(288, 512), precision=precision,
                                    path=path, warmup=5, repeats=max(repeats, 20)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["tiny"], help="only the tiny checkpoint")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per case (median reported)")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # child mode: JSON case in, JSON result out
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0

    import torch

    results = []
    for case in cases(args.only, torch.cuda.is_available(), args.repeats):
        run = run_child(Path(__file__), "--case", case)
        if run.error:
            print(f"case {case} failed:\n{run.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(run.result)
        r = results[-1]
        print(f"  done {r['model']} {r['device']} {r['precision']} {r['path']}: {r['median_s']*1e3:.1f} ms",
              file=sys.stderr)

    # every row against the fp32 all-heads path of the same model and device
    baseline = {
        (r["model"], r["device"]): r["median_s"]
        for r in results if r["path"] == "all-heads" and r["precision"] == "fp32"
    }
    header = ["model", "device", "prec", "path", "people"] + [f"{s} ms" for s in STAGES] + [
        "total ms", "FPS", "speed-up", "peak RSS GB", "GPU GB", "warm-up s"]
    rows = []
    for r in results:
        base = baseline.get((r["model"], r["device"]))
        rows.append([
            r["model"], r["device"], r["precision"], r["path"], str(r["people"]),
            *[f"{r['stages_s'].get(s, 0) * 1e3:.1f}" for s in STAGES],
            f"{r['median_s'] * 1e3:.1f}", f"{1 / r['median_s']:.2f}",
            f"{base / r['median_s']:.2f}x" if base else "-",
            f"{r['peak_rss_gb']:.2f}", f"{r['gpu_peak_gb']:.2f}" if r["gpu_peak_gb"] else "-",
            f"{r['warmup_s']:.1f}",
        ])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    for line in precision_deviation():
        print(line)
    print("input 512x288 (HxW 288x512); stages from one profiled pass, total = median of unprofiled passes;"
          " CPU rows use 2 threads; speed-up = vs the fp32 all-heads path (all three dense heads)"
          " of the same model and device; compiled = fast path with torch.compile (inductor), its"
          " warm-up passes include the compilation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
