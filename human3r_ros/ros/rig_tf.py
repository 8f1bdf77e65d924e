"""Camera extrinsics from TF: `rig_frame` -> each camera image's `frame_id`.

On a robot the cameras' optical frames hang under the rig (base_link) in TF, published from the
URDF by robot_state_publisher. Only the images name their frames, so the extrinsics are looked up
once every fused camera has sent an image. TF is read with tf2_ros (a Buffer and its
TransformListener); where tf2_ros is not importable (the pip environment), `open_tf_extrinsics`
returns None and the node keeps the extrinsics.<camera> parameters.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

# (rig_frame, camera frame) -> [x, y, z, qx, qy, qz, qw] of the camera frame in the rig frame;
# raises when TF cannot tell yet
Lookup = Callable[[str, str], Sequence[float]]


class TfExtrinsics:
    def __init__(self, rig_frame: str, lookup: Lookup, retry_s: float = 1.0, keep_alive: object = None) -> None:
        self.rig_frame = rig_frame
        self._lookup = lookup
        self._retry_s = retry_s
        self._keep_alive = keep_alive  # the TransformListener: it stops listening when collected
        self._frame_ids: dict[str, str] = {}
        self._next_try = 0.0

    def note_frame(self, camera: str, frame_id: str) -> None:
        if frame_id:
            self._frame_ids[camera] = frame_id

    def extrinsics(self, cameras: Sequence[str]) -> tuple[Optional[dict], str]:
        """Every camera's extrinsics once TF knows them all: (dict, ""); else (None, what is
        missing). Looks TF up at most once per `retry_s`."""
        waiting = [c for c in cameras if c not in self._frame_ids]
        if waiting:
            return None, f"no image with a frame_id yet from {', '.join(waiting)}"
        now = time.monotonic()
        if now < self._next_try:
            return None, "waiting to ask TF again"
        self._next_try = now + self._retry_s
        found, missing = {}, []
        for camera in cameras:
            try:
                found[camera] = list(self._lookup(self.rig_frame, self._frame_ids[camera]))
            except Exception as exc:  # tf2's lookup, connectivity and extrapolation errors
                missing.append(f"{self.rig_frame} -> {self._frame_ids[camera]} ({type(exc).__name__}: {exc})")
        if missing:
            return None, "no transform " + "; ".join(missing)
        return found, ""


def open_tf_extrinsics(node, rig_frame: str) -> Optional[TfExtrinsics]:
    """Extrinsics from TF through tf2_ros; None where tf2_ros is not importable."""
    try:
        import tf2_ros
        from rclpy.time import Time
    except ImportError:
        return None
    buffer = tf2_ros.Buffer()
    listener = tf2_ros.TransformListener(buffer, node)

    def lookup(target: str, source: str) -> list:
        t = buffer.lookup_transform(target, source, Time()).transform  # the newest transform
        return [t.translation.x, t.translation.y, t.translation.z,
                t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w]

    return TfExtrinsics(rig_frame, lookup, keep_alive=listener)
