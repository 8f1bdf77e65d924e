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
    # the camera's state was reset since its previous result (time going backwards, a requested
    # reset, a non-finite pose): this result opens a new sequence, its tracks start again.
    # It travels with the frame, so that a pipeline clears what belongs to the old sequence
    # exactly between the last frame of that one and the first of the new one
    new_sequence: bool = False


class StampedStream:
    """One camera's time rules around its engine stream (``camera`` = an engine CameraStream;
    None: the engine's own camera)."""

    def __init__(self, engine, camera=None):
        self.engine = engine
        self.camera = camera
        self.last_stamp_ns: int | None = None
        self._reset_since_result = False

    def reset(self) -> None:
        self.engine.reset(self.camera)
        self.last_stamp_ns = None
        self._reset_since_result = True

    def step(self, rgb: np.ndarray, stamp_ns: int) -> StepOutcome:
        return step_streams([(self, rgb, stamp_ns)])[0]

    def _admit(self, stamp_ns: int) -> StepOutcome:
        """Before the engine: a repeated stamp is refused (result None, skip_reason set); time
        going backwards resets this camera first."""
        if stamp_ns and self.last_stamp_ns is not None and stamp_ns <= self.last_stamp_ns:
            if stamp_ns == self.last_stamp_ns:
                return StepOutcome(None, f"same stamp as the previous image ({stamp_ns} ns)",
                                   skip_reason="duplicate_stamp")
            note = (f"time went backwards ({self.last_stamp_ns * 1e-9:.3f} s -> {stamp_ns * 1e-9:.3f} s): "
                    "state reset, new sequence")
            self.reset()
            return StepOutcome(None, note, time_reset=True)
        return StepOutcome(None)

    def _finish(self, admitted: StepOutcome, result: FrameResult, stamp_ns: int) -> StepOutcome:
        if not np.isfinite(result.c2w).all():
            self.reset()  # a non-finite pose poisons the recurrent state
            return StepOutcome(None, "non-finite camera pose: state reset", admitted.time_reset, "non_finite_pose")
        if stamp_ns:
            self.last_stamp_ns = stamp_ns
        new_sequence, self._reset_since_result = self._reset_since_result, False
        return StepOutcome(result, admitted.note, admitted.time_reset, new_sequence=new_sequence)


def step_streams(frames) -> list[StepOutcome]:
    """``[(StampedStream, rgb, stamp_ns), ...]`` of distinct cameras on one engine -> one outcome
    each, in order. One camera runs ``engine.step``; several run as one ``engine.step_many``
    (batched forward passes), with the same results as stepping each alone."""
    admitted = [stream._admit(stamp_ns) for stream, _, stamp_ns in frames]
    todo = [i for i, a in enumerate(admitted) if a.skip_reason is None]
    if len(todo) == 1:
        stream, rgb, stamp_ns = frames[todo[0]]
        results = [stream.engine.step(rgb, stamp=stamp_ns * 1e-9, stream=stream.camera)]
    elif todo:
        engine = frames[todo[0]][0].engine
        results = engine.step_many([(engine.stream if frames[i][0].camera is None else frames[i][0].camera,
                                     frames[i][1], frames[i][2] * 1e-9) for i in todo])
    else:
        results = []
    outcomes = list(admitted)
    for i, result in zip(todo, results):
        outcomes[i] = frames[i][0]._finish(admitted[i], result, frames[i][2])
    return outcomes
