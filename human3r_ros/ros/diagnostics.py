"""/diagnostics for the node: published from node start, on a steady wall-clock timer (so it
runs under use_sim_time without /clock) once per period, and at once when the level changes —
never once per frame."""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.clock import Clock, ClockType

from human3r_ros.engine.cpu_memory import resident_mb
from human3r_ros.ros import conversions as conv
from human3r_ros.ros.problems import ERROR, WARN
from human3r_ros.ros.rectification import calibrated_focal_model_px

PERIOD_S = 1.0
NO_IMAGE_WARNING_S = 5.0  # a subscribed camera silent this long is a warning
PROBLEM_HOLD_S = 2.0  # a frame problem or a worker restart colours the status this long


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

    def publish(self, only_if_level_changed: bool = False) -> None:
        """Publish the statuses; with `only_if_level_changed`, only when the worst level differs
        from the last one published (the statuses are built once either way)."""
        with self._lock:
            if self._closed:  # a timer callback the executor had already taken when the node went
                return
            try:
                statuses = list(self._statuses())
                level = max((s.level for s in statuses), default=DiagnosticStatus.OK)
                if only_if_level_changed and level == self._last_level:
                    return
                self._last_level = level
                self._publisher.publish(conv.diagnostics_message(self._node.get_clock().now().to_msg(), statuses))
            except Exception as error:  # raised into the executor, it would end the spin and the node with it
                self._node.get_logger().error(f"/diagnostics not published: {error!r}", throttle_duration_sec=10.0)

    def level_may_have_changed(self) -> None:
        """Publish now if the worst level differs from the last one published."""
        self.publish(only_if_level_changed=True)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._node.destroy_timer(self._timer)
        self._node.destroy_publisher(self._publisher)


def overall_status(*, download: str, configure_error: str, configured: bool, active: bool, fault, recent,
                   cameras) -> tuple[bytes, str]:
    """The node's level and message: the first that applies of a download in progress, a failed
    configure, the lifecycle state, a worker restart (`fault`: (time, text)), a QoS mismatch, a
    recent frame problem (`recent`: (time, level, text)), a silent camera; else processing."""
    now = time.monotonic()
    qos = [c.qos_problem for c in cameras if c.qos_problem]
    silent = [c for c in cameras if c.subscribed and c.counters.silent_s() > NO_IMAGE_WARNING_S]
    if download:
        return DiagnosticStatus.OK, f"configuring: {download}"
    if configure_error:
        return ERROR, configure_error
    if not configured:
        return DiagnosticStatus.OK, "unconfigured"
    if not active:
        return DiagnosticStatus.OK, "configured, inactive"
    if fault is not None and now - fault[0] <= PROBLEM_HOLD_S:
        return ERROR, fault[1]
    if qos:
        return ERROR, qos[0]
    if recent is not None and now - recent[0] <= PROBLEM_HOLD_S:
        return recent[1], recent[2]
    if silent:
        camera = silent[0]
        return WARN, (f"no image on {camera.topic_name} for {camera.counters.silent_s():.0f} s: check the topic "
                      "remapping, that the camera publishes, and /diagnostics for a QoS mismatch")
    return DiagnosticStatus.OK, "processing"


def camera_figures(camera, settings) -> dict:
    """One camera's counters, and with camera_info its focal check."""
    values = camera.counters.figures()
    if settings.camera_info:
        calibration = camera.calibration
        # a quick sanity check of the reconstruction's scale: the model's focal against the calibrated one
        values["model_focal_px"] = camera.model_focal_px
        values["calibrated_focal_px"] = (float("nan") if calibration is None else calibrated_focal_model_px(
            calibration, settings.image_size, rectified=settings.rectify))
        if camera.calibration_problem:
            values["camera_info_problem"] = camera.calibration_problem
    return values


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
