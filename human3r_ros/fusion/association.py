"""Cross-camera association: which detections in several views are the same person.

Cost of a pair (CHROMM's test-time recipe):
    C(a, b) = 0.8 * |position_a - position_b| + 0.2 * canonical pose distance(a, b)
with positions in metres in one common frame and the canonical pose distance in radians:
the root of the sum over the 21 SMPL-X body joints of the squared angle of R_a^T R_b
(joint-local rotations, the global orientation left out because it depends on the view).
The position difference may discount the part along each camera's viewing ray, where a
monocular estimate is least sure (see :func:`ray_distances`); with depth_weight 1 it is the
plain Euclidean distance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.transform import Rotation

POSITION_WEIGHT = 0.8
POSE_WEIGHT = 0.2


def pose_quaternions(poses: np.ndarray) -> np.ndarray:
    """Body poses (n, J, 3) axis-angle -> (n, J, 4) unit quaternions (x, y, z, w)."""
    poses = np.asarray(poses, dtype=np.float64)
    return Rotation.from_rotvec(poses.reshape(-1, 3)).as_quat().reshape(*poses.shape[:-1], 4)


def canonical_pose_distance(quats_a: np.ndarray, quats_b: np.ndarray) -> np.ndarray:
    """Body poses as quaternions (n, J, 4) and (m, J, 4) -> (n, m) distances (radians)."""
    quats_a = np.asarray(quats_a, dtype=np.float64)
    quats_b = np.asarray(quats_b, dtype=np.float64)
    cos_half = np.clip(np.abs(np.einsum("ajq,bjq->abj", quats_a, quats_b)), 0.0, 1.0)
    angles = 2.0 * np.arccos(cos_half)  # angle of R_a^T R_b per joint
    return np.sqrt((angles**2).sum(-1))


def ray_distances(positions_a: np.ndarray, origins_a: np.ndarray, positions_b: np.ndarray,
                  origins_b: np.ndarray, depth_weight: float = 1.0) -> np.ndarray:
    """(n, m) distances (metres) between positions (n, 3) seen from origins (n, 3) and
    positions (m, 3) seen from origins (m, 3), each estimate's error taken as isotropic across
    its viewing ray and 1/depth_weight times larger (in variance) along it:
    sqrt(2 D^T (C_a + C_b)^-1 D), D the difference, C = I - d d^T + d d^T / depth_weight.
    depth_weight 1 gives the Euclidean distance."""
    if not 0 < depth_weight <= 1:
        raise ValueError(f"depth_weight must lie in (0, 1], got {depth_weight}")
    positions_a, positions_b = (np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in (positions_a, positions_b))

    def covariances(positions, origins):
        rays = positions - np.asarray(origins, dtype=np.float64).reshape(-1, 3)
        rays /= np.maximum(np.linalg.norm(rays, axis=-1, keepdims=True), 1e-12)
        return np.eye(3) + (1.0 / depth_weight - 1.0) * rays[:, :, None] * rays[:, None, :]

    combined = covariances(positions_a, origins_a)[:, None] + covariances(positions_b, origins_b)[None]
    difference = positions_a[:, None] - positions_b[None]
    solved = np.linalg.solve(combined, difference[..., None])[..., 0]
    return np.sqrt(2.0 * np.maximum((difference * solved).sum(-1), 0.0))


def association_costs(positions_a: np.ndarray, poses_a: np.ndarray,
                      positions_b: np.ndarray, poses_b: np.ndarray,
                      position_weight: float = POSITION_WEIGHT, pose_weight: float = POSE_WEIGHT) -> np.ndarray:
    """(n, m) costs between n detections (positions (n, 3) metres, body poses as quaternions
    (n, 21, 4), see :func:`pose_quaternions`) and m others."""
    positions_a = np.asarray(positions_a, dtype=np.float64).reshape(-1, 3)
    positions_b = np.asarray(positions_b, dtype=np.float64).reshape(-1, 3)
    if len(positions_a) == 0 or len(positions_b) == 0:
        return np.zeros((len(positions_a), len(positions_b)))
    distance = np.linalg.norm(positions_a[:, None] - positions_b[None], axis=-1)
    return position_weight * distance + pose_weight * canonical_pose_distance(poses_a, poses_b)


def match_pairs(costs: np.ndarray, gate: float) -> list[tuple[int, int]]:
    """One-to-one pairs (row, column) of least total cost (Hungarian algorithm); a pair
    whose cost exceeds ``gate`` is never matched."""
    costs = np.asarray(costs, dtype=np.float64)
    if costs.size == 0:
        return []
    allowed = costs <= gate
    # Gated pairs cost more than any set of allowed ones, so the solver first matches as
    # many allowed pairs as it can; the gated pairs it still picks are dropped below.
    forbidden = gate * (min(costs.shape) + 1) + 1.0
    rows, cols = linear_sum_assignment(np.where(allowed, costs, forbidden))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]


def associate_views(positions: Sequence[np.ndarray], poses: Sequence[np.ndarray], gate: float,
                    origins: Sequence[np.ndarray] | None = None, depth_weight: float = 1.0,
                    position_weight: float = POSITION_WEIGHT, pose_weight: float = POSE_WEIGHT
                    ) -> list[list[tuple[int, int]]]:
    """Group the detections of several views into people, at most one detection per view.

    positions[v] (n_v, 3) metres in a common frame, poses[v] (n_v, 21, 4) quaternions,
    origins[v] (3,) the view's camera centre (needed when depth_weight < 1, see
    :func:`ray_distances`). Views are joined one after the other: each view's detections are
    matched against the groups formed so far, a group's cost being the mean of its members'
    pair costs; the unmatched ones open new groups. Returns groups as lists of
    (view, detection) indices.
    """
    if len(positions) != len(poses):
        raise ValueError(f"{len(positions)} views of positions but {len(poses)} of poses")
    if origins is None:
        if depth_weight != 1.0:
            raise ValueError("discounting depth (depth_weight < 1) needs each view's origin")
        origins = [np.zeros(3)] * len(positions)
    positions = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in positions]
    for view, (view_positions, view_poses) in enumerate(zip(positions, poses)):
        if np.ndim(view_poses) != 3 or len(view_poses) != len(view_positions):
            raise ValueError(f"view {view}: {len(view_positions)} positions need poses of shape "
                             f"({len(view_positions)}, joints, 4), got {np.shape(view_poses)}")
    # Every pair's cost at once; a group's cost to a detection is then a mean of rows.
    index = [(v, i) for v in range(len(positions)) for i in range(len(positions[v]))]
    flat = {key: n for n, key in enumerate(index)}
    all_positions = np.concatenate(positions)
    all_origins = np.concatenate([np.tile(np.asarray(origins[v], dtype=np.float64), (len(positions[v]), 1))
                                  for v in range(len(positions))])
    all_poses = np.concatenate([np.asarray(p, dtype=np.float64) for p in poses if len(p)]) if index else None
    pair_costs = (position_weight * ray_distances(all_positions, all_origins, all_positions, all_origins, depth_weight)
                  + pose_weight * canonical_pose_distance(all_poses, all_poses)) if index else None
    groups: list[list[tuple[int, int]]] = []
    for view in range(len(positions)):
        columns = [flat[(view, i)] for i in range(len(positions[view]))]
        costs = np.array([pair_costs[[flat[m] for m in members]][:, columns].mean(0) for members in groups])
        matched = set()
        for g, i in match_pairs(costs.reshape(len(groups), len(columns)), gate):
            groups[g].append((view, i))
            matched.add(i)
        groups.extend([(view, i)] for i in range(len(positions[view])) if i not in matched)
    return groups
