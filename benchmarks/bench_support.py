"""What several benchmarks (and scripts/gpu_check.py) share: a benchmark's child mode run in its
own process, and nodes spinning on one executor in a thread."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]


@dataclass
class ChildRun:
    result: object  # the JSON on the child's last stdout line; None when it failed
    error: Optional[str]  # None when it ran: else the time budget, its last stderr line or its exit code
    stderr: str


def run_child(script: Path, flag: str, spec: dict, timeout_s: Optional[float] = None) -> ChildRun:
    """`script flag <spec as JSON>` in a child process (its own peak memory, its own torch
    state); the child prints its result as JSON on its last stdout line."""
    try:
        proc = subprocess.run([sys.executable, str(script), flag, json.dumps(spec)], capture_output=True,
                              text=True, cwd=REPO, timeout=None if timeout_s is None else max(timeout_s, 1.0))
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return ChildRun(None, f"stopped after {timeout_s:.0f} s (time budget)", stderr)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        return ChildRun(None, last, proc.stderr)
    return ChildRun(json.loads(proc.stdout.strip().splitlines()[-1]), None, proc.stderr)


def spin(*nodes):
    """The nodes on one MultiThreadedExecutor spinning in a daemon thread: (executor, thread)."""
    from rclpy.executors import MultiThreadedExecutor

    executor = MultiThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    return executor, spinner
