"""Cross-camera association: which detections in several views are the same person.

Cost of a pair (CHROMM's test-time recipe):
    C(a, b) = 0.8 * |position_a - position_b| + 0.2 * canonical pose distance(a, b)
with positions in metres in one common frame and the canonical pose distance in radians:
the root of the sum over the 21 SMPL-X body joints of the squared angle of R_a^T R_b
(joint-local rotations, the global orientation left out because it depends on the view).
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
                    position_weight: float = POSITION_WEIGHT, pose_weight: float = POSE_WEIGHT
                    ) -> list[list[tuple[int, int]]]:
    """Group the detections of several views into people, at most one detection per view.

    positions[v] (n_v, 3) metres in a common frame, poses[v] (n_v, 21, 4) quaternions. Views are joined
    one after the other: each view's detections are matched against the groups formed so
    far (group position = mean of its members, pose cost = mean over its members); the
    unmatched ones open new groups. Returns groups as lists of (view, detection) indices.
    """
    if len(positions) != len(poses):
        raise ValueError(f"{len(positions)} views of positions but {len(poses)} of poses")
    groups: list[list[tuple[int, int]]] = []
    for view, (view_positions, view_poses) in enumerate(zip(positions, poses)):
        view_positions = np.asarray(view_positions, dtype=np.float64).reshape(-1, 3)
        view_poses = np.asarray(view_poses, dtype=np.float64)
        if view_poses.ndim != 3 or len(view_poses) != len(view_positions):
            raise ValueError(f"view {view}: {len(view_positions)} positions need poses of shape "
                             f"({len(view_positions)}, joints, 4), got {view_poses.shape}")
        costs = np.zeros((len(groups), len(view_positions)))
        for g, members in enumerate(groups):
            member_positions = np.stack([np.asarray(positions[v][i], dtype=np.float64) for v, i in members])
            member_poses = np.stack([np.asarray(poses[v][i], dtype=np.float64) for v, i in members])
            distance = np.linalg.norm(member_positions.mean(0) - view_positions, axis=-1)
            pose_distance = canonical_pose_distance(member_poses, view_poses).mean(0)
            costs[g] = position_weight * distance + pose_weight * pose_distance
        matched = set()
        for g, i in match_pairs(costs, gate):
            groups[g].append((view, i))
            matched.add(i)
        groups.extend([(view, i)] for i in range(len(view_positions)) if i not in matched)
    return groups
