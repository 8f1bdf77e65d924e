"""Per-camera scale: metres per unit of a camera's own (near-metric) reconstruction.

Samples come from people seen by two or more cameras: their head, triangulated from the
rig's metric extrinsics, lies at a metric distance from each camera, and each camera's own
reconstruction puts it at a distance in its units; the ratio is one sample. Over the last
``window`` samples (in log space, so 2x and 0.5x errors weigh the same) the estimate is the
median, refined by the mean of the samples within 3 robust standard deviations (1.4826 x the
median absolute deviation) of it: outliers (wrong associations, bad detections) up to half
the window neither move nor bias it, and the inliers are used in full.
"""

from __future__ import annotations

from collections import deque

import numpy as np


INLIER_SIGMAS = 3.0


def _robust_mean(samples: np.ndarray) -> float:
    """Mean of the samples within INLIER_SIGMAS robust standard deviations of their median."""
    median = np.median(samples)
    sigma = 1.4826 * np.median(np.abs(samples - median))
    if sigma == 0:
        return float(median)
    return float(samples[np.abs(samples - median) <= INLIER_SIGMAS * sigma].mean())


class RunningScale:
    """Robust running estimate of one camera's scale factor."""

    def __init__(self, window: int = 300, min_samples: int = 10, initial: float = 1.0,
                 bounds: tuple[float, float] = (0.1, 10.0)):
        if window < 1 or min_samples < 1:
            raise ValueError(f"window ({window}) and min_samples ({min_samples}) must be >= 1")
        if not 0 < bounds[0] < bounds[1]:
            raise ValueError(f"scale bounds must satisfy 0 < low < high, got {bounds}")
        if not bounds[0] <= initial <= bounds[1]:
            raise ValueError(f"initial scale {initial} lies outside the bounds {bounds}")
        self.window = window
        self.min_samples = min_samples
        self.initial = float(initial)
        self.bounds = bounds
        self._log_samples: deque[float] = deque(maxlen=window)
        self.rejected = 0  # samples outside the bounds or not finite
        self._value = self.initial

    def add(self, metric_length: float, reconstructed_length: float) -> bool:
        """One sample: a length in metres and the same length in the camera's units.
        Returns whether it was kept (it is rejected when the ratio is implausible)."""
        ratio = metric_length / reconstructed_length if reconstructed_length > 0 else np.nan
        if not (np.isfinite(ratio) and self.bounds[0] <= ratio <= self.bounds[1]):
            self.rejected += 1
            return False
        self._log_samples.append(float(np.log(ratio)))
        self._value = None  # recomputed on the next read
        return True

    @property
    def value(self) -> float:
        """The current estimate; ``initial`` until ``min_samples`` samples were kept."""
        if self._value is None:
            enough = len(self._log_samples) >= self.min_samples
            self._value = float(np.exp(_robust_mean(np.asarray(self._log_samples)))) if enough else self.initial
        return self._value

    @property
    def samples(self) -> int:
        """Samples in the window."""
        return len(self._log_samples)

    def reset(self) -> None:
        """Forget the samples (the camera's reconstruction restarted with a new scale)."""
        self._log_samples.clear()
        self._value = self.initial
