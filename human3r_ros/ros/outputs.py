"""The node's outputs for one stream of frames: HumanArray, scene cloud, camera path, markers and
TF. Messages are built by human3r_ros.ros.conversions; this only owns publishers and the path."""

from __future__ import annotations

import threading
from typing import NamedTuple, Optional, Sequence

from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from human3r_msgs.msg import HumanArray
from human3r_ros.engine.scene_cloud import CloudSelection
from human3r_ros.ros import conversions as conv

OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)  # reliable: every subscriber can match


def cloud_selection(s) -> CloudSelection:
    """The node's scene-cloud parameters as the engine's selection: the engine keeps these points
    where the network left them, and only they reach the host (Human3REngine.cloud_only)."""
    return CloudSelection(s.cloud_decimation, s.cloud_confidence_threshold, s.cloud_remove_humans)


class TfSender:
    """/tf through tf2_ros when installed, else a plain tf2_msgs/TFMessage publisher (same wire)."""

    def __init__(self, node) -> None:
        try:
            from tf2_ros import TransformBroadcaster
        except ImportError:
            from tf2_msgs.msg import TFMessage  # raises ImportError when neither exists

            self._message = TFMessage
            self._publisher = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
            self._broadcaster = None
        else:
            self._broadcaster = TransformBroadcaster(node)
            self._publisher = self._broadcaster.pub_tf

    def send(self, transforms) -> None:
        if not transforms:
            return
        if self._broadcaster is not None:
            self._broadcaster.sendTransform(transforms)
        else:
            self._publisher.publish(self._message(transforms=transforms))

    def close(self, node) -> None:
        node.destroy_publisher(self._publisher)


class OutputFrames(NamedTuple):
    """TF frame names of one camera's outputs."""

    world: str
    camera: str
    body_prefix: str


class StreamOutputs:
    """Publishers under `prefix` (e.g. "~/" or "~/front/") and the camera path they publish."""

    def __init__(self, node, prefix: str, tf: Optional[TfSender]) -> None:
        self._node = node
        self.tf = tf
        self._lock = threading.Lock()  # the path: appended by the worker, cleared by ~/reset
        self._path = Path()
        self.pubs = {
            "humans": node.create_publisher(HumanArray, prefix + "humans", OUTPUT_QOS),
            "cloud": node.create_publisher(PointCloud2, prefix + "scene/points", OUTPUT_QOS),
            "path": node.create_publisher(Path, prefix + "camera_path", OUTPUT_QOS),
            "markers": node.create_publisher(MarkerArray, prefix + "markers", OUTPUT_QOS),
        }

    def close(self) -> None:
        for publisher in self.pubs.values():
            self._node.destroy_publisher(publisher)
        self.pubs = {}

    def clear_path(self) -> None:
        with self._lock:
            self._path = Path()

    def listened(self, key: str) -> bool:
        publisher = self.pubs.get(key)
        return publisher is not None and publisher.get_subscription_count() > 0

    def publish(self, s, frames: OutputFrames, result, image_header, decoded, faces, warn_once,
                people: Sequence, body_names: Optional[Sequence[str]] = None) -> None:
        """Everything one processed frame yields, stamped with the image's stamp. `s`: the node's
        settings snapshot; `decoded`: the image_decoding.DecodedImage the engine saw (its input
        size and pixel mapping); `people`: conv.publishable_people(result); `body_names`: the
        body frames' suffixes (default: track ids); `warn_once(key, text)`: one-time warnings."""
        pubs = self.pubs
        if not pubs:
            return  # deactivated meanwhile
        header = Header(stamp=image_header.stamp, frame_id=frames.world)
        camera_pose = conv.matrix_to_pose(result.c2w)
        with self._lock:
            conv.append_to_path(self._path, PoseStamped(header=header, pose=camera_pose), s.path_max_length)
            # a long path is the costliest message after the cloud: copy it only for listeners
            path = (Path(header=self._path.header, poses=list(self._path.poses))
                    if s.publish_path and self.listened("path") else None)
        poses = conv.body_poses(people)
        to_input = result.to_input_pixels if not decoded.downscaled else (
            lambda xy: decoded.to_input_pixels(result.to_input_pixels(xy)))
        pubs["humans"].publish(conv.frame_to_human_array(
            result, people, header, input_hw=decoded.input_hw, to_input_pixels=to_input,
            include_vertices=s.publish_vertices, camera_pose=camera_pose, poses=poses))
        if s.publish_tf and self.tf is not None:
            transforms = conv.body_transforms(people, header.stamp, frames.world, frames.body_prefix, poses,
                                              names=body_names)
            if frames.camera == image_header.frame_id:
                warn_once("camera_frame", f"camera_frame '{frames.camera}' is the image's own frame, which "
                          "already has a parent: not publishing it (choose another camera_frame)")
            else:
                transforms.insert(0, conv.pose_to_transform(camera_pose, header.stamp, frames.world, frames.camera))
            self.tf.send(transforms)
        if s.publish_cloud and self.listened("cloud"):  # selected by the engine (cloud_selection)
            pubs["cloud"].publish(conv.cloud_message(
                conv.scene_cloud_points(result.cloud, conv.frame_colours(result)), header))
        if path is not None:
            pubs["path"].publish(path)
        if s.publish_markers and self.listened("markers"):
            pubs["markers"].publish(conv.people_markers_cdr(people, header, faces))
