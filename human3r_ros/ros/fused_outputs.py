"""Several cameras: frame sets of the cameras' newest results, fused people on ~/humans and
their body_<id> TF in the rig world, and where each camera's own world sits in it."""

from __future__ import annotations

import threading

from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from human3r_msgs.msg import HumanArray
from human3r_ros.ros import conversions as conv

OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


def camera_world_frame(world_frame: str, camera: str) -> str:
    """The TF frame of one camera's own reconstruction (its first optical frame)."""
    return f"{world_frame}_{camera}"


class FusedOutputs:
    """Collects each fused camera's newest result; publish() fuses the ones within `sync_slop_s`
    of the newest and not fused before (each view joins one frame set)."""

    def __init__(self, node, fuser, tf) -> None:
        self._node = node
        self.fuser = fuser
        self._tf = tf
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, object]] = {}  # camera -> (stamp ns, FrameResult)
        self._publisher = node.create_publisher(HumanArray, "~/humans", OUTPUT_QOS)

    @property
    def cameras(self) -> list[str]:
        return self.fuser.rig.cameras

    def add(self, camera: str, stamp_ns: int, result) -> None:
        if camera in self.cameras:
            with self._lock:
                self._pending[camera] = (stamp_ns, result)

    def reset_camera(self, camera: str) -> None:
        if camera in self.cameras:
            with self._lock:
                self._pending.pop(camera, None)
                self.fuser.reset_camera(camera)

    def publish(self, s, sync_slop_s: float) -> None:
        """Fuse and publish the pending views of one frame set (`s`: the node's settings)."""
        with self._lock:
            if not self._pending:
                return
            newest = max(stamp for stamp, _ in self._pending.values())
            views = {c: r for c, (stamp, r) in self._pending.items() if newest - stamp <= sync_slop_s * 1e9}
            self._pending.clear()  # older views missed their set: they are not fused later
            fused = self.fuser.fuse(views)
        stamp = conv.ns_to_stamp(newest)
        header = Header(stamp=stamp, frame_id=s.world_frame)
        poses = conv.body_poses(fused.people)
        self._publisher.publish(conv.fused_to_human_array(fused, header, poses))
        if s.publish_tf and self._tf is not None:
            transforms = [conv.pose_to_transform(conv.matrix_to_pose(self.fuser.rig.anchor(c)), stamp, s.world_frame,
                                                 camera_world_frame(s.world_frame, c)) for c in views]
            transforms += conv.body_transforms(fused.people, stamp, s.world_frame, s.body_frame_prefix, poses,
                                               names=[str(p.person_id) for p in fused.people])
            self._tf.send(transforms)

    def figures(self) -> dict:
        return self.fuser.diagnostics()

    def close(self) -> None:
        self._node.destroy_publisher(self._publisher)
