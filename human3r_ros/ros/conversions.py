"""Pure conversions between camera messages, Human3R engine results and ROS 2 messages.

No node, no I/O, no clock: every function takes what it needs (header, frames, thresholds) and
returns messages, so the node stays a thin shell and all of this is unit-testable. The array
work (image decoding, rotations, boxes, cloud points) lives in the ROS-free
human3r_ros.ros.msg_arrays, shared with the offline bag tools; this module wraps it in rclpy
messages.

Frames: the engine's world frame is the first camera's optical frame (x right, y down,
z forward, REP-103 optical convention), metres. Its outputs are published as-is in the
world frame named by the caller.
"""

from __future__ import annotations

import array
import operator
import struct
import sys
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.serialization import serialize_message
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Transform, TransformStamped, Vector3
from nav_msgs.msg import Path
from sensor_msgs.msg import Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from human3r_msgs.msg import Human, HumanArray
from human3r_ros.ros import rclpy_compat
# Images (image_to_rgb, compressed_image_to_rgb, the errors), stamps, rotations, people (fields,
# boxes) and cloud points come from the ROS-free module; re-exported so the node needs one import.
from human3r_ros.ros.msg_arrays import (  # noqa: F401
    CLOUD_FIELDS as _CLOUD_FIELD_SPECS,
    CLOUD_POINT_DTYPE,
    SUPPORTED_ENCODINGS,
    DecodedImage,
    ImageConversionError,
    UnsupportedEncodingError,
    body_frame_matrix,
    boxes_to_input_rois,
    cloud_points,
    compressed_image_to_rgb,
    decode_image,
    frame_colours,
    human_fields,
    ns_to_sec_nanosec,
    people_boxes_model_px,
    publishable_people,
    raw_image_to_rgb as image_to_rgb,
    rotation_to_quaternion,
    scene_cloud_points,
    stamp_to_ns,
)


# --------------------------------------------------------------------------- time

def stamp_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def ns_to_stamp(ns: int) -> Time:
    sec, nanosec = ns_to_sec_nanosec(ns)
    return Time(sec=sec, nanosec=nanosec)


# --------------------------------------------------------------------------- images

def array_to_image(pixels: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "rgb8") -> Image:
    """HxW[xC] 8-bit array -> sensor_msgs/Image: what a camera driver sends (the demo, the
    benchmarks and the tests feed the node with it)."""
    pixels = np.ascontiguousarray(pixels)
    return Image(header=Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id), height=pixels.shape[0],
                 width=pixels.shape[1], encoding=encoding, is_bigendian=0, step=pixels.strides[0],
                 data=pixels.tobytes())


# --------------------------------------------------------------------------- rotations and poses

def matrices_to_poses(matrices) -> list[Pose]:
    """(n, 4, 4) rigid transforms -> geometry_msgs/Pose each (one vectorised rotation pass)."""
    m = np.asarray(matrices, dtype=np.float64).reshape(-1, 4, 4)
    quats = rotation_to_quaternion(m[:, :3, :3]).tolist()
    return [Pose(position=Point(x=px, y=py, z=pz), orientation=Quaternion(x=x, y=y, z=z, w=w))
            for (x, y, z, w), (px, py, pz) in zip(quats, m[:, :3, 3].tolist())]


def matrix_to_pose(matrix: np.ndarray) -> Pose:
    """4x4 rigid transform -> geometry_msgs/Pose (position = translation)."""
    return matrices_to_poses(matrix)[0]


def pose_to_transform(pose: Pose, stamp: Time, parent: str, child: str) -> TransformStamped:
    """Pose of `child` in `parent` (e.g. from matrix_to_pose) -> geometry_msgs/TransformStamped."""
    p = pose.position
    return TransformStamped(
        header=Header(stamp=stamp, frame_id=parent), child_frame_id=child,
        transform=Transform(translation=Vector3(x=p.x, y=p.y, z=p.z), rotation=pose.orientation),
    )


# --------------------------------------------------------------------------- people

def body_poses(people: Sequence) -> list[Pose]:
    """Pose of each person's body_<id> frame in the world frame."""
    return matrices_to_poses([body_frame_matrix(p) for p in people]) if people else []


def body_transforms(people: Sequence, stamp: Time, world_frame: str, prefix: str,
                    poses: Optional[Sequence[Pose]] = None,
                    names: Optional[Sequence[str]] = None) -> list[TransformStamped]:
    """TF of each <prefix><name> frame (name: the track id, or `names`, e.g. REP-155 body ids);
    `poses` = body_poses(people) when the caller has them."""
    poses = body_poses(people) if poses is None else poses
    names = [str(p.track_id) for p in people] if names is None else names
    return [pose_to_transform(pose, stamp, world_frame, f"{prefix}{name}") for name, pose in zip(names, poses)]


_UNCHECKED_POINT = rclpy_compat.check_fields_option(Point, False)  # Humble's messages always check


def points_to_msgs(points: np.ndarray) -> list[Point]:
    """(n, 3) array -> list of geometry_msgs/Point.

    Field checks are skipped (values are Python floats by construction): a SMPL-X mesh is
    ~63k points, and the per-field type assertions would double the cost."""
    return [Point(x=x, y=y, z=z, **_UNCHECKED_POINT)
            for x, y, z in np.asarray(points, dtype=np.float64).reshape(-1, 3).tolist()]


def boxes_to_rois(boxes: np.ndarray, input_hw: tuple[int, int],
                  to_input_pixels: Optional[Callable[[np.ndarray], np.ndarray]]) -> list[RegionOfInterest]:
    """Model-input pixel-edge boxes -> RegionOfInterest in input-image pixels (clipped)."""
    return [RegionOfInterest(x_offset=int(x), y_offset=int(y), width=int(w), height=int(h))
            for x, y, w, h in boxes_to_input_rois(boxes, input_hw, to_input_pixels).tolist()]


def person_to_msg(person, roi: RegionOfInterest, pose: Pose, include_vertices: bool, person_id=None) -> Human:
    """One engine Person (or fused person, with its global `person_id`) -> human3r_msgs/Human
    (world frame); `pose` from body_poses."""
    msg = Human(**human_fields(person, person_id=person_id))
    msg.pose = pose
    hx, hy, hz = np.asarray(person.head_position_world, dtype=np.float64).tolist()
    msg.head_position = Point(x=hx, y=hy, z=hz)
    if getattr(person, "joints_world", None) is not None:
        msg.joints = points_to_msgs(person.joints_world)
    if include_vertices and getattr(person, "vertices_world", None) is not None:
        msg.vertices = array.array("f", np.ascontiguousarray(person.vertices_world, dtype=np.float32).tobytes())
    msg.roi = roi
    return msg


def frame_to_human_array(result, people: Sequence, header: Header, *, input_hw: tuple[int, int],
                         to_input_pixels=None, include_vertices: bool = False,
                         camera_pose: Optional[Pose] = None, poses: Optional[Sequence[Pose]] = None) -> HumanArray:
    """FrameResult (+ the people to publish) -> human3r_msgs/HumanArray. `camera_pose` (of
    result.c2w) and `poses` (body_poses(people)) save recomputing them when the caller has them."""
    rois = boxes_to_rois(people_boxes_model_px(result, people), input_hw, to_input_pixels)
    return HumanArray(
        header=header, camera_pose=matrix_to_pose(result.c2w) if camera_pose is None else camera_pose,
        humans=[person_to_msg(p, roi, pose, include_vertices)
                for p, roi, pose in zip(people, rois, body_poses(people) if poses is None else poses)],
    )


def fused_to_human_array(fused, header: Header, poses: Optional[Sequence[Pose]] = None) -> HumanArray:
    """A fusion.FusedFrame -> HumanArray in the rig world: `id` is the global id, `cameras` and
    `camera_track_ids` name each view; camera_pose is the rig's pose."""
    poses = body_poses(fused.people) if poses is None else poses
    humans = []
    for person, pose in zip(fused.people, poses):
        msg = person_to_msg(person, RegionOfInterest(), pose, False, person_id=person.person_id)
        msg.cameras = [view.camera for view in person.views]
        msg.camera_track_ids = [int(view.track_id) for view in person.views]
        humans.append(msg)
    return HumanArray(header=header, camera_pose=matrix_to_pose(fused.rig_pose), humans=humans)


# --------------------------------------------------------------------------- point cloud

CLOUD_FIELDS = tuple(PointField(name=name, offset=offset, datatype=datatype, count=count)
                     for name, offset, datatype, count in _CLOUD_FIELD_SPECS)


def cloud_message(cloud: np.ndarray, header: Header) -> PointCloud2:
    """A CLOUD_POINT_DTYPE array (msg_arrays.cloud_points, scene_cloud_points) -> unorganised
    PointCloud2 (x, y, z, rgb)."""
    data = array.array("B")
    data.frombytes(cloud.view(np.uint8))  # the one copy made here
    return PointCloud2(
        header=header, height=1, width=len(cloud), fields=list(CLOUD_FIELDS),
        is_bigendian=sys.byteorder != "little", point_step=CLOUD_POINT_DTYPE.itemsize,
        row_step=CLOUD_POINT_DTYPE.itemsize * len(cloud), data=data, is_dense=True,
        **rclpy_compat.check_fields_option(PointCloud2, True),
    )


def cloud_to_array(msg: PointCloud2) -> np.ndarray:
    """Inverse of cloud_message: structured (x, y, z, rgb uint32) array (for tests/tools)."""
    return np.frombuffer(bytes(msg.data), dtype=CLOUD_POINT_DTYPE, count=msg.width * msg.height)


# --------------------------------------------------------------------------- path

def append_to_path(path: Path, pose: PoseStamped, max_length: int) -> Path:
    """Append a camera pose (in place); keep the newest `max_length` poses (0 = all)."""
    path.header = Header(stamp=pose.header.stamp, frame_id=pose.header.frame_id)
    path.poses.append(pose)
    if max_length > 0 and len(path.poses) > max_length:
        del path.poses[: len(path.poses) - max_length]
    return path


# --------------------------------------------------------------------------- markers

# Fixed palette (Tableau 10): a track id keeps its colour from frame to frame.
PALETTE = np.array([
    [0.122, 0.467, 0.706], [1.000, 0.498, 0.055], [0.173, 0.627, 0.173], [0.839, 0.153, 0.157],
    [0.580, 0.404, 0.741], [0.549, 0.337, 0.294], [0.890, 0.467, 0.761], [0.498, 0.498, 0.498],
    [0.737, 0.741, 0.133], [0.090, 0.745, 0.812],
])
JOINT_DIAMETER = 0.04  # m, spheres of the joint skeleton
HEAD_DIAMETER = 0.20  # m, head sphere when no body model is loaded


def track_colour(track_id: int, alpha: float = 1.0) -> ColorRGBA:
    r, g, b = PALETTE[int(track_id) % len(PALETTE)].tolist()
    return ColorRGBA(r=r, g=g, b=b, a=float(alpha))


def people_markers(people: Sequence, header: Header, faces: Optional[np.ndarray] = None,
                   alpha: float = 0.8, mesh_placeholders: Optional[list] = None) -> MarkerArray:
    """Markers for RViz: DELETEALL first (people who left vanish), then per person a SMPL-X mesh
    (TRIANGLE_LIST, when vertices and faces exist) or joint/head spheres, plus an id label.

    With `mesh_placeholders` (a list), each mesh gets one placeholder point instead of its
    triangles, and (placeholder, triangle corners as an (n, 3) array) is appended to the list:
    people_markers_cdr writes the corners into the serialized message."""
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    identity = Pose(orientation=Quaternion(w=1.0))
    for person in people:
        colour = track_colour(person.track_id, alpha)
        # check_fields=False: the points list is built above with the right types; checking
        # ~63k mesh points again costs as much as building them.
        body = Marker(header=header, ns="bodies", id=int(person.track_id), action=Marker.ADD,
                      pose=identity, color=colour, **rclpy_compat.check_fields_option(Marker, False))
        vertices = getattr(person, "vertices_world", None)
        joints = getattr(person, "joints_world", None)
        if vertices is not None and faces is not None:
            body.type = Marker.TRIANGLE_LIST
            body.scale = Vector3(x=1.0, y=1.0, z=1.0)
            if mesh_placeholders is not None:
                placeholder = Point(x=_PLACEHOLDER, y=float(len(mesh_placeholders)), z=_PLACEHOLDER)
                corners = np.asarray(vertices, dtype=np.float64)[np.asarray(faces).reshape(-1)]
                mesh_placeholders.append((placeholder, corners))
                body.points = [placeholder]
            else:
                # One Point per vertex, shared by every triangle using it: 6x fewer objects to build.
                vertex_points = points_to_msgs(vertices)
                body.points = list(operator.itemgetter(*np.asarray(faces).reshape(-1).tolist())(vertex_points))
        elif joints is not None:
            body.type = Marker.SPHERE_LIST
            body.scale = Vector3(x=JOINT_DIAMETER, y=JOINT_DIAMETER, z=JOINT_DIAMETER)
            body.points = points_to_msgs(joints)
        else:
            body.type = Marker.SPHERE_LIST
            body.scale = Vector3(x=HEAD_DIAMETER, y=HEAD_DIAMETER, z=HEAD_DIAMETER)
            body.points = points_to_msgs(np.asarray(person.head_position_world)[None])
        markers.append(body)
        hx, hy, hz = np.asarray(person.head_position_world, dtype=np.float64).tolist()
        # World y points down (camera optical axes): the label sits 25 cm above the head.
        label_pose = Pose(position=Point(x=hx, y=hy - 0.25, z=hz), orientation=Quaternion(w=1.0))
        markers.append(Marker(header=header, ns="labels", id=int(person.track_id), action=Marker.ADD,
                              type=Marker.TEXT_VIEW_FACING, pose=label_pose,
                              scale=Vector3(z=0.15), color=track_colour(person.track_id, 1.0),
                              text=f"{person.track_id}"))
    return MarkerArray(markers=markers)


_PLACEHOLDER = -1.2345678901234567e-301  # a coordinate no mesh has: marks a placeholder point
_CDR_LITTLE_ENDIAN = b"\x00\x01"  # the encapsulation header of serialize_message's output


def people_markers_cdr(people: Sequence, header: Header, faces: Optional[np.ndarray] = None,
                       alpha: float = 0.8) -> bytes:
    """people_markers serialized for Publisher.publish (the same message), without building a
    Python Point per triangle corner (~63k per SMPL-X mesh; rclpy would then convert each again).

    The array is serialized with one placeholder point per mesh; each placeholder's
    sequence<Point> (a uint32 count, then 24 bytes per point, 8-aligned: Marker's fixed-size
    fields before it end 8-aligned) is then rewritten with the mesh's count and corners. A
    point is a multiple of 8 bytes long, so all that follows keeps its CDR alignment. Any other
    layout falls back to serializing the whole message."""
    placeholders: list = []
    raw = serialize_message(people_markers(people, header, faces, alpha, mesh_placeholders=placeholders))
    if not placeholders:
        return raw
    whole = lambda: serialize_message(people_markers(people, header, faces, alpha))  # noqa: E731
    if raw[:2] != _CDR_LITTLE_ENDIAN:
        return whole()
    parts, cursor = [], 0
    for placeholder, corners in placeholders:
        start = raw.index(struct.pack("<3d", placeholder.x, placeholder.y, placeholder.z), cursor)
        if raw[start - 4:start] != struct.pack("<I", 1):  # not the layout described above
            return whole()
        parts += [raw[cursor:start - 4], struct.pack("<I", len(corners)),
                  np.ascontiguousarray(corners, dtype="<f8").tobytes()]
        cursor = start + 24
    parts.append(raw[cursor:])
    return b"".join(parts)


# --------------------------------------------------------------------------- diagnostics

def diagnostic_status(name: str, hardware_id: str, level: bytes, message: str,
                      values: Mapping[str, object]) -> DiagnosticStatus:
    """One DiagnosticStatus (level: DiagnosticStatus.OK / WARN / ERROR / STALE); values are
    turned into strings."""
    def text(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=text(v)) for k, v in values.items()])


def diagnostics_message(stamp: Time, statuses: Sequence[DiagnosticStatus]) -> DiagnosticArray:
    return DiagnosticArray(header=Header(stamp=stamp), status=list(statuses))
