"""Stamped streams: the rules a live camera or a recording needs on top of the engine.

Shared by the ROS node and the offline tools so both treat time the same way: time going
backwards (a looping bag, a restarted source) starts a new sequence, a repeated stamp is
skipped, a non-finite camera pose resets the state. Zero stamps (no clock) skip the time checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .frame_result import FrameResult


@dataclass
class StepOutcome:
    result: FrameResult | None  # None: the frame was skipped (see note)
    note: str | None = None  # what happened besides a plain step, for logs and diagnostics
    time_reset: bool = False  # time went backwards: the state was reset before this frame
    skip_reason: str | None = None  # why result is None: "duplicate_stamp" or "non_finite_pose"


class StampedStream:
    def __init__(self, engine):
        self.engine = engine
        self.last_stamp_ns: int | None = None

    def reset(self) -> None:
        self.engine.reset()
        self.last_stamp_ns = None

    def step(self, rgb: np.ndarray, stamp_ns: int) -> StepOutcome:
        note, time_reset = None, False
        if stamp_ns and self.last_stamp_ns is not None and stamp_ns <= self.last_stamp_ns:
            if stamp_ns == self.last_stamp_ns:
                return StepOutcome(None, f"same stamp as the previous image ({stamp_ns} ns)",
                                   skip_reason="duplicate_stamp")
            note = (f"time went backwards ({self.last_stamp_ns * 1e-9:.3f} s -> {stamp_ns * 1e-9:.3f} s): "
                    "state reset, new sequence")
            self.reset()
            time_reset = True
        result = self.engine.step(rgb, stamp=stamp_ns * 1e-9)
        if not np.isfinite(result.c2w).all():
            self.reset()  # a non-finite pose poisons the recurrent state
            return StepOutcome(None, "non-finite camera pose: state reset", time_reset, "non_finite_pose")
        if stamp_ns:
            self.last_stamp_ns = stamp_ns
        return StepOutcome(result, note, time_reset)
