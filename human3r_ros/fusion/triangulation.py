"""Least-squares closest point of several rays (multi-view triangulation)."""

from __future__ import annotations

from typing import Optional

import numpy as np


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; a zero row is an error (a ray needs a direction)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    if np.any(norms < 1e-12) or not np.all(np.isfinite(norms)):
        raise ValueError("ray directions must be finite and non-zero")
    return vectors / norms


def max_ray_angle(directions: np.ndarray) -> float:
    """Largest angle (radians, 0 to pi/2) between the lines of any two of the rays (n, 3):
    rays pointing in opposite directions fix no point along their common line either."""
    d = unit(directions)
    return float(np.arccos(np.clip(np.abs(d @ d.T).min(), 0.0, 1.0)))


def closest_point_to_rays(origins: np.ndarray, directions: np.ndarray,
                          weights: Optional[np.ndarray] = None) -> np.ndarray:
    """The point minimising the weighted sum of squared distances to the rays (lines)
    origins[i] + t * directions[i]: it solves sum_i w_i (I - d_i d_i^T) (x - o_i) = 0.

    origins, directions (n, 3), n >= 2 rays that are not all parallel -> (3,).
    """
    origins = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    d = unit(np.asarray(directions, dtype=np.float64).reshape(-1, 3))
    if len(origins) != len(d) or len(d) < 2:
        raise ValueError(f"need n >= 2 rays with one origin each, got {len(origins)} origins, {len(d)} directions")
    w = np.ones(len(d)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    projectors = np.eye(3) - d[:, :, None] * d[:, None, :]  # removes each ray's own direction
    normal = np.einsum("n,nij->ij", w, projectors)
    rhs = np.einsum("n,nij,nj->i", w, projectors, origins)
    # Parallel rays leave the normal matrix singular along their common direction.
    if np.linalg.cond(normal) > 1e8:
        raise ValueError("the rays are (nearly) parallel: no single closest point")
    return np.linalg.solve(normal, rhs)


def fuse_points_on_rays(origins: np.ndarray, points: np.ndarray, weights: Optional[np.ndarray] = None,
                        depth_weight: float = 0.1) -> np.ndarray:
    """One point from several views' estimates ``points`` (n, 3) seen from ``origins`` (n, 3),
    trusting each estimate more across its viewing ray than along it (monocular depth is the
    weak part). Minimises sum_i w_i (|P_i (x - p_i)|^2 + depth_weight (d_i . (x - p_i))^2),
    d_i the unit ray from o_i through p_i and P_i = I - d_i d_i^T, i.e. the ray triangulation
    with each view's depth as a prior of relative weight depth_weight = (sigma_across /
    sigma_along)^2: 0 is the closest point of the rays, 1 the weighted mean. With
    depth_weight > 0 one view, or parallel rays, still give a point.
    """
    origins = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(origins) != len(points) or len(points) == 0:
        raise ValueError(f"need one origin per point, got {len(origins)} origins, {len(points)} points")
    if depth_weight < 0:
        raise ValueError(f"depth_weight must be >= 0, got {depth_weight}")
    if depth_weight == 0:
        return closest_point_to_rays(origins, points - origins, weights)
    d = unit(points - origins)
    w = np.ones(len(d)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    along = d[:, :, None] * d[:, None, :]
    information = np.eye(3) - (1.0 - depth_weight) * along  # P_i + depth_weight d_i d_i^T
    normal = np.einsum("n,nij->ij", w, information)
    rhs = np.einsum("n,nij,nj->i", w, information, points)
    return np.linalg.solve(normal, rhs)
