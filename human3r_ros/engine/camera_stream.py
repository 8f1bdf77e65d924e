"""What one camera carries from image to image; the network, body model and settings are shared.

A :class:`CameraStream` is created by ``Human3REngine.new_stream()`` and passed back to
``Human3REngine.step`` / ``step_many`` / ``reset``. Streams never share tensors that are
updated in place, so any number of cameras can run against one engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from .geometry import PoseChainer
from .recurrent import RecurrentState
from .smoothing import PeopleSmoother
from .tracker import HumanTracker


@dataclass(eq=False)  # identity semantics: two streams are never "equal"
class CameraStream:
    recurrent: RecurrentState  # network state and camera memory (on the model's device)
    tracker: HumanTracker  # track ids of this camera's people
    chainer: PoseChainer  # camera poses across this camera's periodic resets
    smoother: PeopleSmoother | None = None  # per-track One-Euro filters, when the engine smooths
    count: int = 0  # images since the last reset: frame index and periodic-reset clock

    def reset_due(self, reset_interval: int) -> bool:
        """The next image closes a chunk of ``reset_interval`` images (0 = never)."""
        return reset_interval > 0 and (self.count + 1) % reset_interval == 0
