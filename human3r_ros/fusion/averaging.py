"""Averages of several views' estimates: rotations by Markley's quaternion mean, the
view-invariant SMPL-X parameters by weighted means."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

# SMPL-X joint-local rotations (name, joints) that do not depend on the viewpoint.
SMPLX_JOINTS = (("body_pose", 21), ("left_hand_pose", 15), ("right_hand_pose", 15), ("jaw_pose", 1))


def mean_rotation(quats: np.ndarray, weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Markley's average of unit quaternions (x, y, z, w): the eigenvector of the largest
    eigenvalue of sum_i w_i q_i q_i^T. q and -q count as the same rotation.

    quats (..., V, 4), weights (..., V) or (V,) (>= 0, default equal) -> (..., 4) with w >= 0.
    scipy's Rotation.mean computes the same for one set; this one averages many sets at once
    (every joint of a body in one call).
    """
    quats = np.asarray(quats, dtype=np.float64)
    if quats.ndim < 2 or quats.shape[-1] != 4 or quats.shape[-2] == 0:
        raise ValueError(f"quaternions must have shape (..., V>=1, 4), got {quats.shape}")
    quats = quats / np.linalg.norm(quats, axis=-1, keepdims=True)
    if weights is None:
        weights = np.ones(quats.shape[:-1])
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), quats.shape[:-1])
    if np.any(weights < 0) or not np.all(np.isfinite(weights)):
        raise ValueError("rotation weights must be finite and non-negative")
    outer = np.einsum("...v,...vi,...vj->...ij", weights, quats, quats)
    _, vectors = np.linalg.eigh(outer)  # eigenvalues ascending
    mean = vectors[..., :, -1]
    return mean * np.where(mean[..., 3:] < 0, -1.0, 1.0)


def mean_rotation_per_group(quats: np.ndarray, groups: Sequence[Sequence[int]],
                            weights: Sequence[np.ndarray]) -> np.ndarray:
    """Weighted Markley means of several groups of rows at once.

    quats (N, J, 4): J rotations per row; groups: the rows of each group; weights: one weight
    per row of each group. Returns (G, J, 4). Groups are padded to the largest one with
    zero-weight identity rotations, so that one eigen-decomposition call serves them all.
    """
    quats = np.asarray(quats, dtype=np.float64)
    largest = max(len(rows) for rows in groups)
    padded = np.zeros((len(groups), largest) + quats.shape[1:])
    padded[..., 3] = 1.0
    padded_weights = np.zeros((len(groups), largest))
    for g, rows in enumerate(groups):
        padded[g, :len(rows)] = quats[list(rows)]
        padded_weights[g, :len(rows)] = weights[g]
    return mean_rotation(padded.swapaxes(1, 2), padded_weights[:, None, :])


def view_weights(scores: Sequence[float]) -> np.ndarray:
    """Detection scores as averaging weights; equal weights when every score is zero."""
    weights = np.clip(np.asarray(scores, dtype=np.float64), 0.0, None)
    return weights if weights.sum() > 0 else np.ones_like(weights)


def joint_rotations(person) -> np.ndarray:
    """A person's view-invariant joint rotations in one (52, 3) axis-angle array:
    body (21), left hand (15), right hand (15), jaw (1)."""
    return np.concatenate([np.asarray(getattr(person, name)).reshape(-1, 3) for name, _ in SMPLX_JOINTS])


def split_joint_rotations(rotvecs: np.ndarray) -> dict[str, np.ndarray]:
    """Inverse of :func:`joint_rotations`: (52, 3) -> the SMPL-X parameters (float32)."""
    parts, start = {}, 0
    for name, count in SMPLX_JOINTS:
        parts[name] = np.asarray(rotvecs[start:start + count], dtype=np.float32)
        start += count
    parts["jaw_pose"] = parts["jaw_pose"].reshape(3)
    return parts


def mean_coefficients(people: Sequence, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted means of the views' shape and expression coefficients (float32)."""
    return {name: np.average(np.stack([getattr(p, name) for p in people]), axis=0, weights=weights).astype(np.float32)
            for name in ("betas", "expression")}
