"""Several cameras: frame sets of the cameras' newest results, fused people on ~/humans and
their body_<id> TF in the rig world, the cameras' clouds merged in it on ~/scene/points, and
where each camera's own world sits in it."""

from __future__ import annotations

import threading

from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from human3r_msgs.msg import HumanArray
from human3r_ros.ros import conversions as conv
from human3r_ros.ros.msg_arrays import camera_world_frame, rig_cloud_points
from human3r_ros.ros.outputs import OUTPUT_QOS


def fused_outputs_for(node, s, extrinsics: dict, tf, warn_once) -> "FusedOutputs | None":
    """The fused outputs over the cameras in `extrinsics` (camera -> [x, y, z, qx, qy, qz, qw]);
    None without any. `s`: the node's settings; `warn_once(key, text)` says which are left out."""
    missing = [c for c in s.cameras if c not in extrinsics]
    if missing:
        warn_once("extrinsics", f"no extrinsics for {', '.join(missing)}: "
                  f"{'those cameras are' if len(missing) > 1 else 'that camera is'} not fused")
    if not extrinsics:
        return None
    from human3r_ros.fusion import Fuser, Rig

    return FusedOutputs(node, Fuser(Rig(extrinsics), gate=s.fusion_gate, estimate_scale=s.fusion_estimate_scale), tf)


class FusedOutputs:
    """Frame sets of the fused cameras' newest results: a set closes when every fused camera
    has a view in it, or when a camera already in it brings a newer frame (the others were
    late). Views farther than `sync_slop` from the set's newest are left out; each view joins
    one set. publish() fuses and publishes the closed sets."""

    def __init__(self, node, fuser, tf) -> None:
        self._node = node
        self.fuser = fuser
        self._tf = tf
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, object]] = {}  # camera -> (stamp ns, FrameResult)
        self._closed: list[dict[str, tuple[int, object]]] = []
        self._publisher = node.create_publisher(HumanArray, "~/humans", OUTPUT_QOS)
        self._cloud_publisher = node.create_publisher(PointCloud2, "~/scene/points", OUTPUT_QOS)

    @property
    def cameras(self) -> list[str]:
        return self.fuser.rig.cameras

    def add(self, camera: str, stamp_ns: int, result) -> None:
        if camera not in self.cameras:
            return
        with self._lock:
            if camera in self._pending:
                self._close()
            self._pending[camera] = (stamp_ns, result)
            if len(self._pending) == len(self.cameras):
                self._close()

    def _close(self) -> None:
        self._closed.append(self._pending)
        self._pending = {}

    def reset_camera(self, camera: str) -> None:
        if camera in self.cameras:
            with self._lock:
                self._pending.pop(camera, None)
                self.fuser.reset_camera(camera)

    def publish(self, s) -> None:
        """Fuse and publish the closed frame sets (`s`: the node's settings; views farther than
        s.sync_slop from their set's newest are left out)."""
        with self._lock:
            closed, self._closed = self._closed, []
        for views in closed:
            newest = max(stamp for stamp, _ in views.values())
            members = {c: r for c, (stamp, r) in views.items() if newest - stamp <= s.sync_slop * 1e9}
            with self._lock:
                fused = self.fuser.fuse(members)
            self._publish(s, fused, newest, members)

    def _publish(self, s, fused, stamp_ns: int, cameras) -> None:
        """`cameras`: camera -> its FrameResult in the set."""
        stamp = conv.ns_to_stamp(stamp_ns)
        header = Header(stamp=stamp, frame_id=s.world_frame)
        poses = conv.body_poses(fused.people)
        self._publisher.publish(conv.fused_to_human_array(fused, header, poses))
        if s.publish_cloud and self._cloud_publisher.get_subscription_count() > 0:
            self._cloud_publisher.publish(conv.cloud_message(
                rig_cloud_points(self.fuser.rig, fused.scales, cameras), header))
        if s.publish_tf and self._tf is not None:
            transforms = [conv.pose_to_transform(conv.matrix_to_pose(self.fuser.rig.anchor(c)), stamp, s.world_frame,
                                                 camera_world_frame(s.world_frame, c)) for c in cameras]
            transforms += conv.body_transforms(fused.people, stamp, s.world_frame, s.body_frame_prefix, poses,
                                               names=[str(p.person_id) for p in fused.people])
            self._tf.send(transforms)

    def figures(self) -> dict:
        with self._lock:  # read by the diagnostics timer while the publishing thread fuses
            return self.fuser.diagnostics()

    def close(self) -> None:
        self._node.destroy_publisher(self._publisher)
        self._node.destroy_publisher(self._cloud_publisher)
