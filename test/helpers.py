"""Comparison helpers for the reference fixtures, and running the CLI until a signal."""

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def assert_close_ref(actual, expected, name: str, rtol: float = 1e-4, atol_scale: float = 1e-5) -> float:
    """rtol plus atol = atol_scale * max|expected|; returns max |diff| / max|expected|."""
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    limit = rtol * np.abs(expected.astype(np.float64)) + atol_scale * scale
    worst = float(np.max(diff / np.maximum(limit, 1e-300))) if diff.size else 0.0
    rel = float(diff.max() / scale) if diff.size and scale > 0 else float(diff.max() if diff.size else 0.0)
    assert np.all(diff <= limit), (
        f"{name}: max |diff| = {float(diff.max()):.3e}, max |diff|/max|x| = {rel:.3e} "
        f"(worst diff/limit {worst:.2f}, rtol={rtol}, atol={atol_scale * scale:.3e})"
    )
    return rel


def interrupt_cli_after_frames(args, signum: int, total: int, done: int = 2) -> str:
    """Run human3r-process with `args` in a subprocess, send `signum` once its progress bar shows
    `done` of `total` frames, check it exits with 130; returns what it wrote to stderr."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    # a shell that started this run in the background ignores SIGINT, and children inherit that:
    # give the CLI the default disposition so that Ctrl-C is what it would be in a terminal
    proc = subprocess.Popen([sys.executable, "-m", "human3r_ros.cli.process", *map(str, args)],
                            stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    err = []
    reached = threading.Event()

    def watch():  # the progress bar says how many frames are done
        while chunk := proc.stderr.read1(4096):
            err.append(chunk.decode(errors="replace"))
            if any(int(n) >= done for n in re.findall(rf"(\d+)/{total}", "".join(err))):
                reached.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert reached.wait(90), "".join(err)
        proc.send_signal(signum)
        assert proc.wait(60) == 130, "".join(err)
    finally:
        proc.kill()
    watcher.join(10)
    return "".join(err)
