"""`make gpu-check`'s CPU dry run: the same script and code paths as on a GPU, tiny checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_dry_run_writes_every_section_and_passes_correctness(tmp_path):
    out = tmp_path / "gpu-check.json"
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--cpu", "--out", str(out)],
                         capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "CPU dry run" in run.stderr
    report = json.loads(out.read_text())
    assert set(report) >= {"cuda", "dry_run", "device_name", "correctness", "latency", "node",
                           "multicam", "elapsed_s"}
    assert report["cuda"] is False and report["dry_run"] is True

    correctness = report["correctness"]
    assert correctness["passed"] is True
    assert [c["case"] for c in correctness["cases"]] == ["plain", "ttt3r", "reset"]
    assert all(c["fp32_matches_reference"] and c["people_rows_equal"] for c in correctness["cases"])
    # cuda-graphs runs eager on a CPU: the same outputs exactly, through the same report code
    assert all(c["cuda_graphs"] == {"mode": "eager: no CUDA", "matches_reference": True,
                                    "deviation_from_eager_of_max": 0.0}
               for c in correctness["cases"])
    half = correctness["cases"][0]["half"]
    assert set(half) == {"fp16", "bf16"}
    assert half["fp16"]["same_people_and_ids"] and 0 < half["fp16"]["deviation_of_max"]["frame_pts3d_world"] < 0.01

    latency = report["latency"]
    assert {(r["precision"], r["mode"]) for r in latency} == {
        ("fp32", "eager"), ("fp16", "eager"), ("bf16", "eager"), ("fp32", "compiled"),
        ("fp32", "cuda-graphs (eager: no CUDA)")}
    for row in latency:
        assert "error" not in row, f"{row['precision']} {row['mode']}: {row['error']}"
        assert row["model"] == "tiny" and row["median_ms"] > 0 and row["peak_rss_gb"] > 0
        assert row["gpu_peak_gb"] is None  # no GPU figure is invented on CPU

    node = report["node"]
    assert "error" not in node, node
    assert node["frames_with_output"] == node["frames"] and node["frames_lost"] == 0
    assert 0 < node["p50_ms"] <= node["p90_ms"]
    assert node["memory_mb"][-1][0] == node["frames"]
    assert node["pipeline"] == "auto" and node["pipelined"] is False  # auto: one thread on the CPU

    multicam = report["multicam"]
    assert {(r["cameras"], r["mode"]) for r in multicam} == {
        (c, m) for c in (1, 2) for m in ("sequential", "batched")}
    assert all(r["images_per_s"] > 0 for r in multicam)

    table = run.stdout
    assert "| model | precision | mode | ms/frame (median) |" in table
    assert "cuda-graphs (eager: no CUDA) pass, 0.0e+00 of max from eager" in table
    assert "| tiny | fp32 | cuda-graphs (eager: no CUDA) |" in table
