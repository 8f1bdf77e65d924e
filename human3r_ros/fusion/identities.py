"""Global person ids that outlive per-camera tracks.

Each camera's tracker keeps its own track ids. A fused person is a group of per-camera
tracks; the group inherits the global id its tracks already carry, so a person keeps
the id while walking from one camera's view into another's (the new camera's track joins
the group while the old one still sees the person). When a person is lost by every camera
and shows up again (a gap between two views, a tracker that lost them), a new group takes
the id of a person lost recently nearby.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

Track = tuple[str, int]  # (camera, per-camera track id)


@dataclass
class _KnownPerson:
    position: np.ndarray  # last fused position, rig world, metres
    last_seen: int  # frame-set counter


class GlobalIds:
    """Assigns global ids to groups of per-camera tracks, one frame set at a time.

    reidentify_distance: metres within which a new group takes the id of a lost person.
    forget_after: frame sets after which an unseen person (and its tracks) is forgotten.
    """

    def __init__(self, reidentify_distance: float = 0.5, forget_after: int = 90):
        if reidentify_distance < 0 or forget_after < 1:
            raise ValueError("reidentify_distance must be >= 0 and forget_after >= 1")
        self.reidentify_distance = reidentify_distance
        self.forget_after = forget_after
        self._track_ids: dict[Track, int] = {}
        self._people: dict[int, _KnownPerson] = {}
        self._next_id = 1
        self._frame_set = 0

    def assign(self, groups: Sequence[Sequence[Track]], positions: np.ndarray) -> list[int]:
        """Global ids for this frame set's groups (positions (n, 3), rig world, metres)."""
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        if len(groups) != len(positions):
            raise ValueError(f"{len(groups)} groups but {len(positions)} positions")
        self._frame_set += 1
        ids: list[int | None] = [None] * len(groups)
        self._inherit(groups, positions, ids)
        self._reidentify(positions, ids)
        for g, group in enumerate(groups):
            if ids[g] is None:
                ids[g] = self._next_id
                self._next_id += 1
            self._people[ids[g]] = _KnownPerson(positions[g].copy(), self._frame_set)
            for track in group:
                self._track_ids[track] = ids[g]
        self._forget_old()
        return ids

    def _inherit(self, groups, positions, ids) -> None:
        # Each group votes for the ids its tracks carry; the strongest claims win first
        # (most tracks, then nearest to the id's last position), one group per id.
        claims = []
        for g, group in enumerate(groups):
            votes = Counter(self._track_ids[t] for t in group if t in self._track_ids)
            for person_id, count in votes.items():
                distance = float(np.linalg.norm(positions[g] - self._people[person_id].position))
                claims.append((-count, distance, person_id, g))
        taken = set()
        for _, _, person_id, g in sorted(claims):
            if ids[g] is None and person_id not in taken:
                ids[g] = person_id
                taken.add(person_id)

    def _reidentify(self, positions, ids) -> None:
        open_groups = [g for g, person_id in enumerate(ids) if person_id is None]
        lost = [p for p in self._people if p not in ids]
        if not open_groups or not lost:
            return
        last = np.stack([self._people[p].position for p in lost])
        distance = np.linalg.norm(positions[open_groups][:, None] - last[None], axis=-1)
        for r, c in zip(*linear_sum_assignment(distance)):
            if distance[r, c] <= self.reidentify_distance:
                ids[open_groups[r]] = lost[c]

    def _forget_old(self) -> None:
        old = {p for p, known in self._people.items() if self._frame_set - known.last_seen > self.forget_after}
        for person_id in old:
            del self._people[person_id]
        self._track_ids = {t: p for t, p in self._track_ids.items() if p in self._people}

    def forget_camera(self, camera: str) -> None:
        """Drop a camera's track ids (its tracker was reset and may reuse them)."""
        self._track_ids = {t: p for t, p in self._track_ids.items() if t[0] != camera}

    @property
    def known_people(self) -> int:
        return len(self._people)
