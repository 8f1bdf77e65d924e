"""/diagnostics for the node: published from node start, on a steady wall-clock timer (so it
runs under use_sim_time without /clock) once per period, and at once when the level changes —
never once per frame."""

from __future__ import annotations

import sys
import threading
from typing import Callable, Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.clock import Clock, ClockType

from human3r_ros.engine.cpu_memory import resident_mb
from human3r_ros.ros import conversions as conv

PERIOD_S = 1.0


class DiagnosticsReporter:
    def __init__(self, node, statuses: Callable[[], Sequence[DiagnosticStatus]], period_s: float = PERIOD_S,
                 callback_group=None) -> None:
        self._node = node
        self._statuses = statuses  # the node's current statuses, computed on demand
        self._lock = threading.Lock()
        self._last_level: bytes | None = None
        self._closed = False
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = node.create_timer(period_s, self.publish, callback_group=callback_group,
                                        clock=Clock(clock_type=ClockType.STEADY_TIME))

    def publish(self) -> None:
        with self._lock:
            if self._closed:  # a timer callback the executor had already taken when the node went
                return
            try:
                statuses = list(self._statuses())
                self._last_level = max((s.level for s in statuses), default=DiagnosticStatus.OK)
                self._publisher.publish(conv.diagnostics_message(self._node.get_clock().now().to_msg(), statuses))
            except Exception as error:  # raised into the executor, it would end the spin and the node with it
                self._node.get_logger().error(f"/diagnostics not published: {error!r}", throttle_duration_sec=10.0)

    def level_may_have_changed(self) -> None:
        """Publish now if the worst level differs from the last one published."""
        statuses = list(self._statuses())
        level = max((s.level for s in statuses), default=DiagnosticStatus.OK)
        if level != self._last_level:
            self.publish()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._publisher)


def memory_figures(device: str) -> dict:
    """Device memory for CUDA (allocated / reserved by torch), and this process's resident memory."""
    figures = {}
    if device.startswith("cuda") and "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            figures["device_memory_allocated_mb"] = torch.cuda.memory_allocated(device) / 2**20
            figures["device_memory_reserved_mb"] = torch.cuda.memory_reserved(device) / 2**20
    rss = resident_mb()
    if rss is not None:
        figures["host_memory_rss_mb"] = rss
    return figures
