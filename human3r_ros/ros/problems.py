"""What can go wrong with one frame, how bad it is, and how it is logged.

Every failure while converting, running the engine or publishing one frame is turned into a
`FrameProblem` with a reason key (counted per reason on /diagnostics) and a severity chosen by
kind: input the node cannot use is a warning, a failure of the node's own machinery is an
error. Logging is throttled per reason, never per call site, so a different problem is never
hidden behind an earlier one and one call site can log at any severity.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticStatus

from human3r_ros.ros.msg_arrays import ImageConversionError, UnsupportedEncodingError

WARN, ERROR = DiagnosticStatus.WARN, DiagnosticStatus.ERROR

# reason -> severity. Warnings: the input was unusable, the node is fine. Errors: the node failed.
SEVERITY = {
    "unsupported_encoding": WARN,
    "invalid_image": WARN,
    "duplicate_stamp": WARN,
    "non_finite_pose": WARN,
    "out_of_memory": ERROR,
    "engine_error": ERROR,
    "publish_error": ERROR,
}


@dataclass(frozen=True)
class FrameProblem:
    reason: str  # a key of SEVERITY
    text: str  # what happened, for the log and /diagnostics

    @property
    def level(self) -> bytes:
        return SEVERITY[self.reason]


def conversion_problem(exc: ImageConversionError) -> FrameProblem:
    reason = "unsupported_encoding" if isinstance(exc, UnsupportedEncodingError) else "invalid_image"
    return FrameProblem(reason, str(exc))


def engine_problem(exc: BaseException) -> FrameProblem:
    """An exception raised while the engine ran one frame."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return FrameProblem("out_of_memory", f"out of device memory: {exc}".splitlines()[0])
    return FrameProblem("engine_error", f"engine failed: {type(exc).__name__}: {exc}")


class ProblemLog:
    """Logs problems through a ROS logger, at most once per `period_s` per reason; the next
    line of a reason says how many of it were not logged meanwhile."""

    def __init__(self, logger, period_s: float = 5.0) -> None:
        self._logger = logger
        self._period_s = period_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def report(self, problem: FrameProblem) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(problem.reason)
            if last is not None and now - last < self._period_s:
                self._held[problem.reason] = self._held.get(problem.reason, 0) + 1
                return
            self._last[problem.reason] = now
            held = self._held.pop(problem.reason, 0)
        text = problem.text if not held else f"{problem.text} (and {held} more like it in the last {self._period_s:g} s)"
        log_at(self._logger, problem.level, text)


def log_at(logger, level: bytes, text: str) -> None:
    """Log at a diagnostic level. rclpy ties a call site to one severity (a second severity
    from the same line raises ValueError), so each severity has its own line."""
    if level == ERROR:
        logger.error(text)
    elif level == WARN:
        logger.warning(text)
    else:
        logger.info(text)


class RosLogHandler(logging.Handler):
    """Sends the core's Python logging (engine, model, body model) to a ROS logger, so that
    everything the node says reaches /rosout."""

    def __init__(self, logger) -> None:
        super().__init__()
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        level = ERROR if record.levelno >= logging.ERROR else WARN if record.levelno >= logging.WARNING else b"\x00"
        try:
            log_at(self._logger, level, record.getMessage())
        except Exception:  # noqa: BLE001 - a failed log line must not fail the caller
            self.handleError(record)
