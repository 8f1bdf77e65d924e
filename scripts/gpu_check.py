"""Every GPU figure from one command (`make gpu-check`; a script, not a test).

Sections, each written to ``out/gpu-check.json`` and printed as markdown tables for the README:

1. correctness: the shared fixture cases (tiny_plain / tiny_ttt3r / tiny_reset) on the device in
   fp32 against the reference outputs (the tolerance of test/test_engine.py), and fp16 / bf16
   against fp32 on the device (pointmap, camera pose, people and ids);
   The same cases with ``compile_mode="cuda-graphs"`` against the reference, and their largest
   deviation from eager;
2. latency: 672S and 896L (random weights) at 512x288, fp32 / fp16 / bf16, eager, CUDA graphs
   (``compile_mode="cuda-graphs"``) and compiled (``"default"``), median of N passes after warm-up
   (benchmarks/bench_engine.py's child mode, one process per variant);
3. peak GPU memory per variant (``torch.cuda.max_memory_allocated``; peak RSS on CPU);
4. the real node in-process for 500 frames: image published through rclpy until its HumanArray
   arrives, p50 / p90, and device memory along the run (672S random weights written as an official
   checkpoint into a temporary folder), with the default pipeline (on with CUDA) and, on CUDA, again
   with one thread and again with ``compile:=cuda-graphs``;
5. batched multi-camera throughput with ``engine.step_many`` (benchmarks/bench_multicam.py's child mode).

Nothing is downloaded. Without CUDA (or with ``--cpu``) it says so and runs the same code on CPU
with the tiny checkpoint and small counts (there ``cuda-graphs`` runs eager, and the rows say so).

    python scripts/gpu_check.py                 # CUDA when present, else the CPU dry run
    python scripts/gpu_check.py --cpu --out /tmp/dry.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("HUMAN3R_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
BENCH_ENGINE = REPO / "benchmarks" / "bench_engine.py"
BENCH_MULTICAM = REPO / "benchmarks" / "bench_multicam.py"
CASES = ("plain", "ttt3r", "reset")
FRAME_KEYS = ("frame_pts3d_world", "frame_conf_world", "frame_depth", "frame_c2w", "frame_focal", "frame_pp",
              "frame_intrinsics", "frame_det_scores", "frame_msk")
PERSON_KEYS = ("hf_global_orient", "hf_body_pose", "hf_left_hand_pose", "hf_right_hand_pose", "hf_jaw_pose",
               "hf_betas", "hf_expression", "hf_transl_cam", "hf_verts_cam", "hf_joints_cam",
               "hf_transl_pelvis_cam", "hf_verts_world", "hf_joints_world", "hf_R_world", "hf_transl_world",
               "hf_T_world_body", "hf_T_cam_body", "hf_j_head_body")
# as test/test_engine.py: world points chain the camera pose across resets, so rounding adds up there
# (1.7e-5 of the range on AVX2 kernels in the reset case); every other output at the default 1e-5
ATOL_SCALE = {"frame_pts3d_world": 3e-5}
HALF_KEYS = ("frame_pts3d_world", "frame_c2w", "hf_transl_world")  # deviation of fp16 / bf16 from fp32
HALF_TOLERANCE = {"fp16": 0.01, "bf16": 0.05}  # of max|x|, as test/test_engine.py allows
PRECISIONS = ("fp32", "fp16", "bf16")
INPUT_HW = (288, 512)
sys.path.insert(0, str(BENCH_ENGINE.parent))  # the benchmarks' shared helpers and child modes
from bench_support import run_child, spin  # noqa: E402


# --------------------------------------------------------------------------- 1. correctness

def reference_tolerance(actual, expected, rtol=1e-4, atol_scale=1e-5) -> tuple[float, float]:
    """(worst |diff| / (rtol |x| + atol), max |diff| / max |x|): the first <= 1 is a pass, as in
    test/helpers.assert_close_ref."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        return float("inf"), float("inf")
    if not expected.size:
        return 0.0, 0.0
    scale = float(np.abs(expected).max())
    diff = np.abs(actual - expected)
    limit = np.maximum(rtol * np.abs(expected) + atol_scale * scale, 1e-300)
    return float((diff / limit).max()), float(diff.max() / scale) if scale > 0 else float(diff.max())


def run_case(case: str, device: str, precision: str, with_body: bool = True, compile_mode: str = "off"
             ) -> tuple[dict, str]:
    """The case's outputs as fixture arrays, and how its front ran (CUDA graphs replayed or eager)."""
    from human3r_ros.engine import Human3REngine
    from human3r_ros.engine.npz_schema import to_npz_dict

    z = np.load(REFERENCE / f"tiny_{case}_io.npz")
    meta = json.loads(str(z["meta_json"]))
    engine = Human3REngine.from_checkpoint(
        REFERENCE / f"tiny_{case}_checkpoint.pth", body_model_dir=REFERENCE / "synthetic_smplx" if with_body else None,
        device=device, precision=precision, ttt3r=meta["use_ttt3r"], reset_interval=meta["reset_interval"] or 0,
        size=64, compile_mode=compile_mode)
    arrays = to_npz_dict([engine.step(frame, stamp=0.1 * i) for i, frame in enumerate(z["frames_uint8"])])
    front = engine.net.graphed_front
    if front is None:
        return arrays, "eager" if compile_mode != "cuda-graphs" else "eager: no CUDA"
    return arrays, "replayed" if front.failure is None else f"eager: capture failed ({front.failure})"


def against_reference(got: dict, z) -> tuple[bool, str, float, float]:
    """(same people rows, worst key, its |diff| / tolerance, its |diff| / max|x|) of one run."""
    same_rows = np.array_equal(got["hf_frame"], z["hf_frame"]) and np.array_equal(got["hf_smpl_id"], z["hf_smpl_id"])
    worst_key, worst_ratio, worst_rel = None, 0.0, 0.0
    for key in FRAME_KEYS + PERSON_KEYS:
        ratio, rel = reference_tolerance(got[key], z[key], atol_scale=ATOL_SCALE.get(key, 1e-5))
        if ratio >= worst_ratio:
            worst_key, worst_ratio, worst_rel = key, ratio, rel
    return bool(same_rows), worst_key, worst_ratio, worst_rel


def correctness(device: str, half_cases=CASES) -> dict:
    import torch

    if device.startswith("cuda"):  # full fp32 matmuls and convolutions: TF32 is a precision change, not a bug
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    cases, passed = [], True
    for case in CASES:
        z = np.load(REFERENCE / f"tiny_{case}_io.npz")
        runs = {p: run_case(case, device, p)[0] for p in PRECISIONS if p == "fp32" or case in half_cases}
        fp32 = runs["fp32"]
        same_rows, worst_key, worst_ratio, worst_rel = against_reference(fp32, z)
        graphed, graphs_mode = run_case(case, device, "fp32", compile_mode="cuda-graphs")
        graphs_rows, _, graphs_ratio, _ = against_reference(graphed, z)
        graphs = {"mode": graphs_mode, "matches_reference": bool(graphs_rows and graphs_ratio <= 1.0),
                  "deviation_from_eager_of_max": max(reference_tolerance(graphed[key], fp32[key])[1]
                                                     for key in FRAME_KEYS + PERSON_KEYS)}
        half = {}
        for precision in [p for p in ("fp16", "bf16") if p in runs]:
            got = runs[precision]
            same_people = np.array_equal(got["hf_frame"], fp32["hf_frame"]) and np.array_equal(
                got["hf_smpl_id"], fp32["hf_smpl_id"])
            deviation = {key: reference_tolerance(got[key], fp32[key])[1] if same_people else None
                         for key in HALF_KEYS}
            half[precision] = {
                "same_people_and_ids": bool(same_people), "deviation_of_max": deviation,
                "within": bool(same_people and all(d < HALF_TOLERANCE[precision] for d in deviation.values())),
            }
        ok = bool(same_rows and worst_ratio <= 1.0)
        passed &= ok and graphs["matches_reference"]
        cases.append({"case": case, "fp32_matches_reference": ok, "people_rows_equal": bool(same_rows),
                      "worst_key": worst_key, "worst_diff_over_tolerance": worst_ratio,
                      "worst_diff_of_max": worst_rel, "half": half, "cuda_graphs": graphs})
    return {"device": device, "tolerance": "rtol 1e-4 + 1e-5 * max|x| (world points 3e-5), as test/test_engine.py",
            "cases": cases,
            "half_tolerance_of_max": HALF_TOLERANCE, "passed": bool(passed)}


# --------------------------------------------------------------------------- 2-3. latency, memory

def latency_cases(cuda: bool) -> list[dict]:
    if not cuda:  # dry run: the same child code on the tiny checkpoint
        base = dict(device="cpu", threads=2, model="tiny", hw=INPUT_HW, warmup=1, repeats=2)
        return [dict(base, precision=p, path="fast") for p in PRECISIONS] + [
            dict(base, precision="fp32", path="graphs"), dict(base, precision="fp32", path="compiled", warmup=2)]
    out = []
    for precision in ("bf16", "fp16", "fp32"):  # most wanted first (the targets' bf16): the budget may cut the tail
        for path in ("fast", "graphs", "compiled"):
            for model in ("human3r_672S", "human3r_896L"):
                out.append(dict(device="cuda", threads=2, model=model, hw=INPUT_HW, precision=precision,
                                path=path, warmup=5 if path == "fast" else 8, repeats=30))
    return out


def latency(cuda: bool, deadline: float) -> list[dict]:
    rows = []
    for case in latency_cases(cuda):
        run = run_child(BENCH_ENGINE, "--case", case, deadline - time.monotonic())
        result = run.result
        mode = {"fast": "eager", "graphs": "cuda-graphs", "compiled": "compiled"}[case["path"]]
        row = {"model": case["model"], "device": case["device"], "precision": case["precision"], "mode": mode}
        if run.error:
            row["error"] = run.error
        else:
            if mode == "cuda-graphs" and not result["cuda_graphs"]:
                why = "no CUDA" if result["cuda_graphs_failure"] is None else "capture failed"
                row.update(mode=f"cuda-graphs (eager: {why})", cuda_graphs_failure=result["cuda_graphs_failure"])
                mode = row["mode"]
            row.update(median_ms=result["median_s"] * 1e3, fps=1.0 / result["median_s"],
                       warmup_s=result["warmup_s"], people=result["people"], gpu_peak_gb=result["gpu_peak_gb"],
                       peak_rss_gb=result["peak_rss_gb"], repeats=case["repeats"])
        rows.append(row)
        print(f"  latency {row['model']} {row['precision']} {mode}: "
              + (f"{row['median_ms']:.1f} ms" if "median_ms" in row else row["error"]), file=sys.stderr)
    return rows


# --------------------------------------------------------------------------- 4. node

def random_checkpoint(folder: Path, variant: str) -> tuple[Path, float]:
    """Random weights of `variant` in the official container, and the detection threshold that keeps
    the 4 strongest detections on bench_multicam's noise frame (random weights fire everywhere)."""
    import torch

    from bench_multicam import build_engine

    from human3r_ros.model import build_model
    from human3r_ros.model.config import construction_string_for
    from human3r_ros.tools.demo_checkpoint import write_official_container

    threshold = build_engine(variant, "cpu").det_threshold
    torch.manual_seed(0)  # the same draw as build_engine's network
    state = build_model(variant).state_dict()
    path = write_official_container(folder / f"{variant}_random.pth", construction_string_for(variant), state)
    return path, threshold


def device_memory_mb(device: str) -> float:
    import torch

    from human3r_ros.engine.cpu_memory import resident_mb

    return torch.cuda.memory_allocated() / 1e6 if device.startswith("cuda") else resident_mb()


def node_run(spec: dict) -> dict:
    """Child process: the real node and a camera publisher in one process, one frame at a time."""
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from human3r_msgs.msg import HumanArray
    from human3r_ros.ros.conversions import array_to_image, stamp_to_ns
    from human3r_ros.ros.node import Human3RNode
    from human3r_ros.ros.rclpy_compat import restrict_discovery_to_localhost

    restrict_discovery_to_localhost()  # this check's topics stay on this machine, on a domain of its own

    with tempfile.TemporaryDirectory() as tmp:
        if spec["checkpoint"] == "tiny":
            checkpoint, threshold = REFERENCE / "tiny_plain_checkpoint.pth", 0.3
        else:
            checkpoint, threshold = random_checkpoint(Path(tmp), spec["checkpoint"])
        rclpy.init(domain_id=1 + os.getpid() % 200)
        node = Human3RNode(parameter_overrides=[
            Parameter("checkpoint", value=str(checkpoint)), Parameter("device", value=spec["device"]),
            Parameter("precision", value=spec["precision"]), Parameter("image_size", value=spec["image_size"]),
            Parameter("detection_threshold", value=float(threshold)), Parameter("reliability", value="reliable"),
            Parameter("cpu_threads", value=spec["threads"]), Parameter("pipeline", value=spec["pipeline"]),
            Parameter("compile", value=spec.get("compile", "off")),
            Parameter("autostart", value=True)])
        client = rclpy.create_node("gpu_check_camera")
        arrived, lock = {}, threading.Lock()

        def on_humans(msg):
            with lock:
                arrived[stamp_to_ns(msg.header.stamp)] = time.perf_counter()

        client.create_subscription(HumanArray, "/human3r/humans", on_humans, 10)
        pub = client.create_publisher(Image, "image", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        executor, _ = spin(node, client)
        try:
            deadline = time.monotonic() + 300  # configure loads the checkpoint
            while pub.get_subscription_count() == 0 or node.count_subscribers("/human3r/humans") == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the node did not become active within 300 s")
                time.sleep(0.1)
            pipelined = node._pipeline.pipelined
            rng = np.random.default_rng(0)  # bench_multicam's noise frame: the threshold was set on it
            base = rng.integers(0, 256, (*INPUT_HW, 3), dtype=np.uint8)
            latencies, memory, lost = [], [], 0
            total = spec["warmup"] + spec["frames"]
            for i in range(total):
                stamp = 10**12 + i * 33_000_000
                msg = array_to_image(np.roll(base, i % 31, axis=1), stamp, "camera_optical")
                sent = time.perf_counter()
                pub.publish(msg)
                wait_until = time.monotonic() + (120 if i == 0 else 30)
                while True:
                    with lock:
                        got = arrived.pop(stamp, None)
                    if got is not None or time.monotonic() > wait_until:
                        break
                    time.sleep(0.0005)
                if i < spec["warmup"]:
                    continue
                if got is None:
                    lost += 1
                else:
                    latencies.append(got - sent)
                done = i - spec["warmup"] + 1
                if done == 1 or done % max(spec["frames"] // 10, 1) == 0:
                    memory.append((done, device_memory_mb(spec["device"])))
        finally:
            executor.shutdown()
            node.destroy_node()
            client.destroy_node()
            rclpy.try_shutdown()
    import torch

    ms = np.asarray(latencies) * 1e3
    warm = memory[1][1] if len(memory) > 1 else memory[0][1]
    return {
        **spec, "pipelined": pipelined, "frames_with_output": len(latencies), "frames_lost": lost,
        "p50_ms": float(np.percentile(ms, 50)) if ms.size else None,
        "p90_ms": float(np.percentile(ms, 90)) if ms.size else None,
        "memory_mb": memory, "memory_kind": "torch.cuda.memory_allocated" if spec["device"] != "cpu" else "RSS",
        "memory_growth_mb": memory[-1][1] - warm,
        "gpu_peak_gb": torch.cuda.max_memory_allocated() / 1e9 if spec["device"] != "cpu" else None,
    }


def node_report(spec: dict, timeout_s: float) -> dict:
    """The node run in a child process: its figures, or its spec with the error."""
    run = run_child(Path(__file__), "--node-child", spec, timeout_s)
    return run.result if run.error is None else {**spec, "error": run.error}


def node_spec(cuda: bool) -> dict:
    if cuda:
        return dict(checkpoint="human3r_672S", device="cuda", precision="bf16", image_size=512, threads=2,
                    warmup=10, frames=500, pipeline="auto")
    return dict(checkpoint="tiny", device="cpu", precision="fp32", image_size=64, threads=1, warmup=2, frames=20,
                pipeline="auto")


# --------------------------------------------------------------------------- 5. multi-camera

def multicam(cuda: bool, deadline: float) -> list[dict]:
    if cuda:
        spec = dict(device="cuda", threads=2, cameras=[1, 2, 4], model="human3r_672S", warmup=3, sets=10)
    else:
        spec = dict(device="cpu", threads=1, cameras=[1, 2], model="tiny", warmup=1, sets=2)
    run = run_child(BENCH_MULTICAM, "--spec", spec, deadline - time.monotonic())
    if run.error:
        return [{**spec, "error": run.error}]
    return [{"model": r["model"], "device": r["device"], "cameras": r["cameras"], "mode": r["mode"],
             "ms_per_set": r["set_s"] * 1e3, "images_per_s": r["cameras"] / r["set_s"],
             "gpu_peak_gb": r["gpu_peak_gb"]} for r in run.result]


# --------------------------------------------------------------------------- report

def half_figure(half: dict) -> str:
    if not half["same_people_and_ids"]:
        return "people or ids differ from fp32"
    return f"{max(half['deviation_of_max'].values()):.1e} of max, same people and ids"


def markdown(report: dict) -> str:
    lines = [f"gpu-check on {report['device_name']} ({'CUDA' if report['cuda'] else 'CPU dry run'}), "
             f"{report['date']}, {report['elapsed_s']:.0f} s", "",
             "| check | variant | result |", "|---|---|---|"]
    for case in report["correctness"]["cases"]:
        half = ", ".join(f"{p} {half_figure(h)}" for p, h in case["half"].items())
        graphs = case["cuda_graphs"]
        lines.append(f"| correctness tiny_{case['case']} | fp32 vs reference | "
                     f"{'pass' if case['fp32_matches_reference'] else 'FAIL'} (worst {case['worst_key']} "
                     f"{case['worst_diff_of_max']:.1e} of max); {half}; cuda-graphs ({graphs['mode']}) "
                     f"{'pass' if graphs['matches_reference'] else 'FAIL'}, "
                     f"{graphs['deviation_from_eager_of_max']:.1e} of max from eager |")
    lines += ["", "| model | precision | mode | ms/frame (median) | FPS | peak GPU GB | peak RSS GB |",
              "|---|---|---|---|---|---|---|"]
    for r in report["latency"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['precision']} | {r['mode']} | {r['error']} | | | |")
            continue
        gpu = f"{r['gpu_peak_gb']:.2f}" if r["gpu_peak_gb"] is not None else "-"
        lines.append(f"| {r['model']} | {r['precision']} | {r['mode']} | {r['median_ms']:.1f} | {r['fps']:.1f} | "
                     f"{gpu} | {r['peak_rss_gb']:.2f} |")
    lines += [""]
    for n in (report["node"], report.get("node_one_thread"), report.get("node_cuda_graphs")):
        if n is None:
            continue
        if "error" in n:
            lines.append(f"node (pipeline {n['pipeline']}): {n['error']}")
            continue
        lines.append(f"node ({n['checkpoint']}, {n['device']}, {n['precision']}, compile {n.get('compile', 'off')}, "
                     f"{'pipelined' if n['pipelined'] else 'one thread'}, {n['frames']} frames at "
                     f"{INPUT_HW[1]}x{INPUT_HW[0]}): image published -> HumanArray received p50 {n['p50_ms']:.1f} ms, "
                     f"p90 {n['p90_ms']:.1f} ms, {n['frames_lost']} lost; {n['memory_kind']} "
                     f"{n['memory_mb'][0][1]:.0f} -> {n['memory_mb'][-1][1]:.0f} MB "
                     f"(growth after the first tenth {n['memory_growth_mb']:+.1f} MB)")
    lines += ["", "| model | device | cameras | mode | ms/set | images/s | peak GPU GB |", "|---|---|---|---|---|---|---|"]
    for r in report["multicam"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['device']} | | | {r['error']} | | |")
            continue
        gpu = f"{r['gpu_peak_gb']:.2f}" if r["gpu_peak_gb"] is not None else "-"
        lines.append(f"| {r['model']} | {r['device']} | {r['cameras']} | {r['mode']} | {r['ms_per_set']:.1f} | "
                     f"{r['images_per_s']:.1f} | {gpu} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="the CPU dry run even when CUDA is present")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "gpu-check.json")
    ap.add_argument("--budget-s", type=float,
                    help="seconds for the latency and multi-camera children (default 190 on CUDA, so that the whole "
                         "check fits 5 minutes; 1500 for the dry run on a shared CPU); variants past it are "
                         "reported as skipped")
    ap.add_argument("--node-child", help=argparse.SUPPRESS)  # child mode: JSON spec in, JSON result out
    args = ap.parse_args(argv)
    if args.node_child:
        print(json.dumps(node_run(json.loads(args.node_child))))
        return 0

    import torch

    begin = time.monotonic()
    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda:
        print("No CUDA device" + (" used (--cpu)" if torch.cuda.is_available() else " found")
              + ": CPU dry run with the tiny checkpoint and small counts; no GPU figure below.", file=sys.stderr)
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    report = {"cuda": cuda, "dry_run": not cuda, "device_name": name, "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "input_hw": list(INPUT_HW)}
    report["correctness"] = correctness(device, CASES if cuda else ("plain",))  # dry run: fp16/bf16 on one case
    deadline = time.monotonic() + (args.budget_s or (190.0 if cuda else 1500.0))
    print(f"  correctness passed: {report['correctness']['passed']}", file=sys.stderr)
    report["latency"] = latency(cuda, deadline)
    spec = node_spec(cuda)
    report["node"] = node_report(spec, max(deadline - time.monotonic(), 0) + 180)
    if cuda:  # the same frames with one thread, for the pipeline's effect on latency (the CPU default)
        report["node_one_thread"] = node_report({**spec, "pipeline": "off"}, max(deadline - time.monotonic(), 0) + 120)
        report["node_cuda_graphs"] = node_report({**spec, "compile": "cuda-graphs"},
                                                 max(deadline - time.monotonic(), 0) + 120)
    report["multicam"] = multicam(cuda, deadline + 60)
    report["elapsed_s"] = time.monotonic() - begin
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(markdown(report))
    print(f"\nwritten {args.out}", file=sys.stderr)
    return 0 if report["correctness"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
