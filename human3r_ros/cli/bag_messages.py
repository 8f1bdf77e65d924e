"""Engine results -> rosbags message objects, with the node's topics, frames and content.

The numpy work (quaternions, boxes, cloud packing) is shared with the node through
human3r_ros.ros.msg_arrays; this module only fills rosbags dataclasses, so bags written
offline carry what the live node publishes. Several cameras: camera_options() gives each
camera the node's per-camera topics and frames, BagMessages.fused() the fused people.
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from human3r_ros.engine.scene_cloud import CloudSelection
from human3r_ros.ros import msg_arrays as arrays

TOPIC_PREFIX = "/human3r/"  # the node's private namespace (~/ of node "human3r")
TOPIC_TF = "/tf"  # humans, scene/points and camera_path go under OutputOptions.topic_prefix


@dataclass(frozen=True)
class OutputOptions:
    """What goes into the output bag; defaults follow config/human3r.yaml."""

    world_frame: str = "human3r_world"
    camera_frame: str = "human3r_camera"
    body_frame_prefix: str = "body_"
    include_vertices: bool = False
    cloud: bool = True
    cloud_decimation: int = 2
    cloud_confidence: float = 1.5
    cloud_remove_humans: bool = True
    path_max_length: int = 1000
    topic_prefix: str = TOPIC_PREFIX  # humans, scene/points and camera_path go under it

    def cloud_selection(self) -> CloudSelection:
        """The engine's selection of this bag's clouds (Human3REngine.cloud_only), as the node's."""
        return CloudSelection(self.cloud_decimation, self.cloud_confidence, self.cloud_remove_humans)


def camera_options(options: OutputOptions, camera: str) -> OutputOptions:
    """One of several cameras, named as the node names it: topics under <prefix><camera>/, frames
    from msg_arrays.camera_frame_names."""
    world, camera_frame, body_prefix = arrays.camera_frame_names(
        options.world_frame, options.camera_frame, options.body_frame_prefix, camera)
    return replace(options, topic_prefix=f"{options.topic_prefix}{camera}/", world_frame=world,
                   camera_frame=camera_frame, body_frame_prefix=body_prefix)


class BagMessages:
    """Builds one frame's output messages; keeps the camera path between frames."""

    def __init__(self, store, options: OutputOptions):
        self.options = options
        self._t = store.types
        self._path = deque(maxlen=options.path_max_length or None)
        self._cloud_fields = [self._msg("sensor_msgs/msg/PointField", name=n, offset=off, datatype=t, count=c)
                              for n, off, t, c in arrays.CLOUD_FIELDS]

    def new_sequence(self) -> None:
        """A new world frame starts (time went back): the old camera path no longer applies."""
        self._path.clear()

    # ------------------------------------------------------------------ small builders
    def _msg(self, msgtype: str, /, **fields):
        return self._t[msgtype](**fields)

    def _header(self, stamp_ns: int, frame_id: str):
        sec, nanosec = arrays.ns_to_sec_nanosec(stamp_ns)
        stamp = self._msg("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)
        return self._msg("std_msgs/msg/Header", stamp=stamp, frame_id=frame_id)

    def _point(self, xyz):
        x, y, z = np.asarray(xyz, dtype=np.float64).tolist()
        return self._msg("geometry_msgs/msg/Point", x=x, y=y, z=z)

    def _pose(self, matrix: np.ndarray):
        x, y, z, w = arrays.rotation_to_quaternion(np.asarray(matrix)[:3, :3]).tolist()
        return self._msg("geometry_msgs/msg/Pose", position=self._point(np.asarray(matrix)[:3, 3]),
                         orientation=self._msg("geometry_msgs/msg/Quaternion", x=x, y=y, z=z, w=w))

    def _transform(self, pose, header, child: str):
        p = pose.position
        translation = self._msg("geometry_msgs/msg/Vector3", x=p.x, y=p.y, z=p.z)
        return self._msg("geometry_msgs/msg/TransformStamped", header=header, child_frame_id=child,
                         transform=self._msg("geometry_msgs/msg/Transform", translation=translation,
                                             rotation=pose.orientation))

    # ------------------------------------------------------------------ messages
    def _human(self, person, roi, pose, person_id=None, views=()):
        """An engine Person (one camera: no views), or a fused person with its global id and
        views (no joints, vertices or roi: as conversions.fused_to_human_array)."""
        joints = getattr(person, "joints_world", None)
        vertices = getattr(person, "vertices_world", None) if self.options.include_vertices else None
        x, y, w, h = (int(v) for v in roi)
        return self._msg(
            "human3r_msgs/msg/Human",
            **arrays.human_fields(person, person_id),
            pose=pose,
            head_position=self._point(person.head_position_world),
            joints=[] if joints is None else [self._point(j) for j in np.asarray(joints)],
            vertices=np.zeros(0, np.float32) if vertices is None else np.asarray(vertices, np.float32).reshape(-1),
            roi=self._msg("sensor_msgs/msg/RegionOfInterest", x_offset=x, y_offset=y, height=h, width=w,
                          do_rectify=False),
            cameras=[v.camera for v in views], camera_track_ids=np.array([v.track_id for v in views], np.uint32),
        )

    def _cloud(self, points: np.ndarray, header):
        """A CLOUD_POINT_DTYPE array -> PointCloud2."""
        step = arrays.CLOUD_POINT_DTYPE.itemsize
        return self._msg("sensor_msgs/msg/PointCloud2", header=header, height=1, width=len(points),
                         fields=self._cloud_fields,
                         is_bigendian=sys.byteorder == "big", point_step=step,
                         row_step=step * len(points), data=points.view(np.uint8).reshape(-1), is_dense=True)

    def frame(self, result, stamp_ns: int, input_hw: tuple[int, int]) -> list[tuple[str, object]]:
        """(topic, message) pairs for one FrameResult, all stamped `stamp_ns` (the input's stamp)."""
        o = self.options
        header = self._header(stamp_ns, o.world_frame)
        people = arrays.publishable_people(result)
        rois = arrays.boxes_to_input_rois(arrays.people_boxes_model_px(result, people), input_hw,
                                          result.to_input_pixels)
        # each pose once per frame, shared by the HumanArray, TF and the path (as the node does)
        camera_pose = self._pose(result.c2w)
        body_poses = [self._pose(arrays.body_frame_matrix(p)) for p in people]
        humans = self._msg("human3r_msgs/msg/HumanArray", header=header, camera_pose=camera_pose,
                           humans=[self._human(p, roi, pose) for p, roi, pose in zip(people, rois, body_poses)])
        transforms = [self._transform(camera_pose, header, o.camera_frame)]
        transforms += [self._transform(pose, header, f"{o.body_frame_prefix}{p.track_id}")
                       for p, pose in zip(people, body_poses)]
        self._path.append(self._msg("geometry_msgs/msg/PoseStamped", header=header, pose=camera_pose))
        out = [(o.topic_prefix + "humans", humans),
               (TOPIC_TF, self._msg("tf2_msgs/msg/TFMessage", transforms=transforms)),
               (o.topic_prefix + "camera_path",
                self._msg("nav_msgs/msg/Path", header=header, poses=list(self._path)))]
        if o.cloud:  # selected by the engine (OutputOptions.cloud_selection)
            points = arrays.scene_cloud_points(result.cloud, arrays.frame_colours(result))
            out.append((o.topic_prefix + "scene/points", self._cloud(points, header)))
        return out

    def fused(self, fused, stamp_ns: int, rig, results: dict) -> list[tuple[str, object]]:
        """(topic, message) pairs for one fusion.FusedFrame, as the node's fused outputs: the people
        on <prefix>humans in the rig world (camera_pose: the rig's pose), TF world -> each fused
        camera's world (`rig`: the fuser's Rig, after the fusion placed new cameras) and world ->
        <body_prefix><global id>, the cameras' clouds merged in the rig world (`results`: camera ->
        its FrameResult in the set)."""
        o = self.options
        anchors = {camera: rig.anchor(camera) for camera in results}
        header = self._header(stamp_ns, o.world_frame)
        poses = [self._pose(arrays.body_frame_matrix(p)) for p in fused.people]
        humans = self._msg("human3r_msgs/msg/HumanArray", header=header, camera_pose=self._pose(fused.rig_pose),
                           humans=[self._human(p, (0, 0, 0, 0), pose, p.person_id, p.views)
                                   for p, pose in zip(fused.people, poses)])
        transforms = [self._transform(self._pose(anchor), header, arrays.camera_world_frame(o.world_frame, camera))
                      for camera, anchor in anchors.items()]
        transforms += [self._transform(pose, header, f"{o.body_frame_prefix}{p.person_id}")
                       for p, pose in zip(fused.people, poses)]
        out = [(o.topic_prefix + "humans", humans),
               (TOPIC_TF, self._msg("tf2_msgs/msg/TFMessage", transforms=transforms))]
        if o.cloud:
            out.append((o.topic_prefix + "scene/points",
                        self._cloud(arrays.rig_cloud_points(rig, fused.scales, results), header)))
        return out
