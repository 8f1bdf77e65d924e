"""One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) on vectors and on rotations (SO(3)).

Each new sample moves the estimate a fraction ``alpha`` of the way towards it, with
``alpha = 1 / (1 + tau / dt)``, ``tau = 1 / (2 pi fc)`` and ``dt`` the real time between the
two samples. The cutoff adapts to the speed: ``fc = min_cutoff + beta * |v|``, where ``v`` is
the velocity (the step towards the sample over ``dt``) low-passed with cutoff ``d_cutoff``.
Slow motion is smoothed hard (little jitter), fast motion lightly (little lag). The first
sample passes through unchanged.

Rotations are filtered on SO(3), never as axis-angle components (those jump at +-pi): the step
is the rotation vector of the change from the previous *filtered* rotation to the new sample,
``log(R_prev^T R)``; the filtered rotation moves along that geodesic by ``alpha``.

Units: seconds and Hz; ``beta`` is in Hz per unit of speed (per m/s for positions in metres,
per rad/s for rotations in radians).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class OneEuroSettings:
    """Parameters of the One-Euro filters (defaults tuned by benchmarks/bench_smoothing.py).

    min_cutoff: cutoff at rest, Hz (lower: less jitter when still, more lag when starting).
    beta: cutoff increase per unit of speed, Hz per (m/s) or per (rad/s) (higher: less lag).
    d_cutoff: cutoff of the low-pass on the speed estimate, Hz.
    fallback_rate_hz: frame rate assumed when a frame has no usable stamp (none, or the same
      as the previous one).

    Why these defaults: a first-order low-pass lags rate / (2 pi fc) frames, so 2 frames at 30 Hz
    need fc >= 2.4 Hz even for a slowly turning body; at 2.5 Hz the frame-to-frame jitter of a
    30 Hz walk (1 m/s, 2 cm / 3 degree noise) still drops 3.8-4.1 times, with at most 1.85 frames
    of lag (benchmarks/bench_smoothing.py). beta stays small: min_cutoff already bounds the lag,
    and a larger beta lets the noise through (at rest, that noise alone reads as about 0.2 m/s or
    0.5 rad/s of speed). (hri_fullbody's 0.3 Hz would lag about 16 frames.)
    """

    min_cutoff: float = 2.5
    beta: float = 0.1
    d_cutoff: float = 1.0
    fallback_rate_hz: float = 30.0

    def __post_init__(self):
        for name in ("min_cutoff", "d_cutoff", "fallback_rate_hz"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"one-euro {name} must be a finite number > 0, got {value}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"one-euro beta must be a finite number >= 0, got {self.beta}")


def smoothing_factor(cutoff_hz, dt: float):
    """alpha of a first-order low-pass with cutoff ``cutoff_hz`` (Hz) over a step of ``dt`` s."""
    tau = 1.0 / (2.0 * np.pi * np.asarray(cutoff_hz, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class _KeyedOneEuro:
    """One-Euro filters for the rows of several keys (track ids), stepped together.

    ``update(keys, samples, dt)`` filters the samples of the keys seen at the previous update,
    passes the samples of new keys through (their first sample) and forgets keys that are absent.
    A key whose sample is not finite gets it back unchanged and is forgotten too (no NaN is kept).
    Subclasses say how to take a step towards a sample and how to move along it.
    """

    def __init__(self, settings: OneEuroSettings):
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        """Forget every key."""
        self.keys: list = []
        self.value: np.ndarray | None = None  # (len(keys), k, ...) filtered samples
        self.velocity: np.ndarray | None = None  # (len(keys), k, 3 or d) low-passed step rates

    def update(self, keys, samples: np.ndarray, dt: float) -> np.ndarray:
        """keys (n,) hashable, distinct; samples (n, k, ...) taken ``dt`` s (> 0) after the previous
        update. Returns the filtered samples (n, k, ...) in float64."""
        keys = list(keys)
        samples = np.asarray(samples, dtype=np.float64)
        if len(set(keys)) != len(keys) or samples.shape[0] != len(keys):
            raise ValueError(f"one-euro update needs one sample per distinct key, got keys {keys} "
                             f"and samples of shape {samples.shape}")
        if self.value is not None and samples.shape[1:] != self.value.shape[1:]:
            raise ValueError(f"one-euro samples of shape {samples.shape[1:]} per key after {self.value.shape[1:]}")
        if not dt > 0:
            raise ValueError(f"one-euro time step must be > 0 s, got {dt}")
        value = samples.copy()  # new keys: the first sample passes through
        velocity = np.zeros(self._tangent_shape(samples.shape))
        previous = {key: row for row, key in enumerate(self.keys)}
        finite = np.isfinite(samples).all(axis=tuple(range(1, samples.ndim)))
        rows = [i for i, key in enumerate(keys) if key in previous and finite[i]]
        if rows:
            old = [previous[keys[i]] for i in rows]
            s = self.settings
            step = self._step_towards(self.value[old], samples[rows])  # (m, k, 3)
            rate = self.velocity[old] + smoothing_factor(s.d_cutoff, dt) * (step / dt - self.velocity[old])
            cutoff = s.min_cutoff + s.beta * np.linalg.norm(rate, axis=-1, keepdims=True)
            value[rows] = self._move(self.value[old], step * smoothing_factor(cutoff, dt))
            velocity[rows] = rate
        self.keys = [key for key, ok in zip(keys, finite) if ok]
        self.value, self.velocity = value[finite], velocity[finite]
        return value.copy()

    @staticmethod
    def _tangent_shape(samples_shape: tuple) -> tuple:
        raise NotImplementedError

    @staticmethod
    def _step_towards(value: np.ndarray, sample: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def _move(value: np.ndarray, step: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class VectorOneEuro(_KeyedOneEuro):
    """Vectors (samples (n, k, d)); each row gets its cutoff from its own speed."""

    @staticmethod
    def _tangent_shape(samples_shape):
        return samples_shape

    @staticmethod
    def _step_towards(value, sample):
        return sample - value

    @staticmethod
    def _move(value, step):
        return value + step


class RotationOneEuro(_KeyedOneEuro):
    """Rotation matrices (samples (n, k, 3, 3)) filtered on SO(3); each from its own angular speed."""

    @staticmethod
    def _tangent_shape(samples_shape):
        return samples_shape[:-1]

    @staticmethod
    def _step_towards(value, sample):
        change = np.swapaxes(value, -1, -2) @ sample  # R_prev^T R: the change, in the previous estimate's frame
        return rotation_vectors(change)

    @staticmethod
    def _move(value, step):
        return value @ rotation_matrices(step)


def rotation_vectors(matrices: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) rotation vectors (angle in [0, pi])."""
    # assume_valid: the inputs are rotations already; scipy would otherwise re-orthonormalise each
    vectors = Rotation.from_matrix(matrices.reshape(-1, 3, 3), assume_valid=True).as_rotvec()
    return vectors.reshape(matrices.shape[:-1])


def rotation_matrices(vectors: np.ndarray) -> np.ndarray:
    """(..., 3) rotation vectors -> (..., 3, 3) rotation matrices."""
    return Rotation.from_rotvec(vectors.reshape(-1, 3)).as_matrix().reshape(vectors.shape + (3,))
