"""Pure conversions between camera messages, Human3R engine results and ROS 2 messages.

No node, no I/O, no clock: every function takes what it needs (header, frames, thresholds) and
returns messages or arrays, so the node stays a thin shell and all of this is unit-testable.

Frames: the engine's world frame is the first camera's optical frame (x right, y down,
z forward, REP-103 optical convention), metres. Its outputs are published as-is in the
world frame named by the caller.
"""

from __future__ import annotations

import array
import operator
import sys
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Transform, TransformStamped, Vector3
from nav_msgs.msg import Path
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from human3r_msgs.msg import Human, HumanArray


# --------------------------------------------------------------------------- images

class ImageConversionError(ValueError):
    """A camera message that cannot become an RGB image (truncated, empty, undecodable)."""


class UnsupportedEncodingError(ImageConversionError):
    """The message's encoding is not a colour or grayscale camera image."""


# encoding -> (channels, bytes per channel, channel indices giving R, G, B)
_RAW_ENCODINGS = {
    "rgb8": (3, 1, (0, 1, 2)),
    "bgr8": (3, 1, (2, 1, 0)),
    "rgba8": (4, 1, (0, 1, 2)),
    "bgra8": (4, 1, (2, 1, 0)),
    "mono8": (1, 1, (0, 0, 0)),
    # 16-bit colour/grayscale: kept to their high byte (the model sees 8-bit images).
    "rgb16": (3, 2, (0, 1, 2)),
    "bgr16": (3, 2, (2, 1, 0)),
    "rgba16": (4, 2, (0, 1, 2)),
    "bgra16": (4, 2, (2, 1, 0)),
    "mono16": (1, 2, (0, 0, 0)),
}
SUPPORTED_ENCODINGS = tuple(_RAW_ENCODINGS)


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> contiguous H x W x 3 uint8 RGB.

    Honours `step` (row padding) and `is_bigendian` (16-bit encodings). Depth, float, YUV and
    Bayer encodings raise UnsupportedEncodingError; malformed messages ImageConversionError."""
    layout = _RAW_ENCODINGS.get(msg.encoding)
    if layout is None:
        raise UnsupportedEncodingError(
            f"image encoding '{msg.encoding}' is not supported; use one of {', '.join(SUPPORTED_ENCODINGS)} "
            "(depth, floating-point, YUV and Bayer images are not camera colour images: debayer/convert "
            "them first, e.g. with image_proc)"
        )
    channels, itemsize, rgb_index = layout
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageConversionError(f"empty image ({height}x{width})")
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than one row of {width} {msg.encoding} pixels ({row_bytes} bytes)"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    needed = (height - 1) * step + row_bytes  # the last row may come without its padding
    if data.size < needed:
        raise ImageConversionError(
            f"image data has {data.size} bytes, {height} rows of step {step} need {needed}"
        )
    dtype = np.dtype(np.uint8) if itemsize == 1 else np.dtype(">u2" if msg.is_bigendian else "<u2")
    # A strided view skips the row padding without copying.
    pixels = np.ndarray((height, width, channels), dtype=dtype, buffer=data,
                        strides=(step, channels * itemsize, itemsize))
    if itemsize == 2:
        pixels = (pixels >> 8).astype(np.uint8)
    return np.ascontiguousarray(pixels[..., list(rgb_index)])


def compressed_image_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, ...) -> H x W x 3 uint8 RGB (OpenCV decoder).

    compressedDepth and formats naming a depth/float encoding raise UnsupportedEncodingError."""
    import cv2  # only compressed streams need OpenCV

    fmt = msg.format.strip()
    encoding = fmt.split(";")[0].strip() if ";" in fmt else ""
    if "compresseddepth" in fmt.lower() or (encoding and encoding not in _RAW_ENCODINGS
                                            and encoding.lower() not in ("jpeg", "jpg", "png")):
        raise UnsupportedEncodingError(
            f"compressed image format '{msg.format}' is not a colour image; use a JPEG/PNG colour "
            f"stream (image_transport 'compressed') with one of {', '.join(SUPPORTED_ENCODINGS)}"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("empty compressed image")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)  # grayscale and 16-bit inputs come back as 8-bit BGR
    if bgr is None:
        raise ImageConversionError(f"could not decode compressed image (format '{msg.format}')")
    return np.ascontiguousarray(bgr[..., ::-1])


# --------------------------------------------------------------------------- time

def stamp_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


# --------------------------------------------------------------------------- rotations and poses

def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (x, y, z, w), w >= 0.

    Builds the quaternion from whichever of w, x, y, z is largest (well conditioned for every
    angle), element-wise without Python loops."""
    m = np.asarray(rotation, dtype=np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    # Each candidate is 4 * (largest component) * q, ordered (x, y, z, w).
    candidates = np.stack([
        np.stack([1 + m00 - m11 - m22, m01 + m10, m02 + m20, m21 - m12], -1),
        np.stack([m01 + m10, 1 - m00 + m11 - m22, m12 + m21, m02 - m20], -1),
        np.stack([m02 + m20, m12 + m21, 1 - m00 - m11 + m22, m10 - m01], -1),
        np.stack([m21 - m12, m02 - m20, m10 - m01, 1 + trace], -1),
    ], -2)
    choice = np.argmax(np.stack([m00, m11, m22, trace], -1), axis=-1)
    quat = np.take_along_axis(candidates, choice[..., None, None], axis=-2)[..., 0, :]
    quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
    return np.where(quat[..., 3:] < 0, -quat, quat)


def quaternion_to_rotation(quat: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4) (x, y, z, w) -> rotation matrices (..., 3, 3)."""
    x, y, z, w = np.moveaxis(np.asarray(quat, dtype=np.float64), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def rotation_to_axis_angle(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> axis-angle vectors (..., 3), angle in [0, pi]."""
    quat = rotation_to_quaternion(rotation)
    sin_half = np.linalg.norm(quat[..., :3], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, quat[..., 3:])
    # angle / sin(angle / 2) -> 2 for tiny angles; avoids 0/0 at the identity.
    scale = np.where(sin_half > 1e-12, angle / np.maximum(sin_half, 1e-12), 2.0)
    return quat[..., :3] * scale


def matrix_to_pose(matrix: np.ndarray) -> Pose:
    """4x4 rigid transform -> geometry_msgs/Pose (position = translation)."""
    t = np.asarray(matrix, dtype=np.float64)
    x, y, z, w = rotation_to_quaternion(t[:3, :3]).tolist()
    px, py, pz = t[:3, 3].tolist()
    return Pose(position=Point(x=px, y=py, z=pz), orientation=Quaternion(x=x, y=y, z=z, w=w))


def matrix_to_transform(matrix: np.ndarray, stamp: Time, parent: str, child: str) -> TransformStamped:
    """4x4 pose of `child` in `parent` -> geometry_msgs/TransformStamped."""
    pose = matrix_to_pose(matrix)
    p = pose.position
    return TransformStamped(
        header=Header(stamp=stamp, frame_id=parent), child_frame_id=child,
        transform=Transform(translation=Vector3(x=p.x, y=p.y, z=p.z), rotation=pose.orientation),
    )


# --------------------------------------------------------------------------- people

def select_people(people: Sequence, max_people: int) -> list:
    """The `max_people` highest-scoring people (all when 0), kept in their original order."""
    people = list(people)
    if max_people <= 0 or len(people) <= max_people:
        return people
    scores = np.array([p.score for p in people])
    keep = np.sort(np.argsort(-scores, kind="stable")[:max_people])
    return [people[i] for i in keep]


def person_is_finite(person) -> bool:
    return bool(np.isfinite(person.T_world_head).all() and np.isfinite(person.head_position_world).all())


def body_frame_matrix(person) -> np.ndarray:
    """4x4 pose of the ROS frame body_<id> in the world frame.

    Orientation: the SMPL-X body orientation (x = body left, y = up, z = facing direction).
    Origin: the pelvis joint when a body model is loaded, else the head joint (the only
    position the network predicts without the SMPL-X file)."""
    matrix = np.array(person.T_world_head, dtype=np.float64)
    if getattr(person, "pelvis_position_world", None) is not None:
        matrix[:3, 3] = person.pelvis_position_world
    return matrix


def body_transforms(people: Sequence, stamp: Time, world_frame: str, prefix: str) -> list[TransformStamped]:
    return [matrix_to_transform(body_frame_matrix(p), stamp, world_frame, f"{prefix}{p.track_id}")
            for p in people]


def points_to_msgs(points: np.ndarray) -> list[Point]:
    """(n, 3) array -> list of geometry_msgs/Point.

    Field checks are skipped (values are Python floats by construction): a SMPL-X mesh is
    ~63k points, and the per-field type assertions would double the cost."""
    return [Point(x=x, y=y, z=z, check_fields=False)
            for x, y, z in np.asarray(points, dtype=np.float64).reshape(-1, 3).tolist()]


def people_boxes_model_px(result, people: Sequence, mask_threshold: float = 0.5) -> np.ndarray:
    """(n, 4) boxes (x0, y0, x1, y1) in model-input pixel edges (pixel i spans [i - .5, i + .5]).

    With a body model: the box of the projected SMPL-X joints. Without one: the human-mask
    pixels closer to this person's head detection than to any other's."""
    n = len(people)
    h, w = np.asarray(result.human_mask).shape[:2]
    boxes = np.zeros((n, 4))
    if n == 0:
        return boxes
    if all(getattr(p, "joints_cam", None) is not None for p in people):
        joints = np.stack([p.joints_cam for p in people]).astype(np.float64)  # (n, J, 3)
        z = np.maximum(joints[..., 2:], 1e-6)  # points behind the camera land far outside: clipped
        uv = joints[..., :2] / z * np.diag(result.intrinsics)[:2] + np.asarray(result.intrinsics)[:2, 2]
        boxes[:, :2], boxes[:, 2:] = uv.min(axis=1), uv.max(axis=1)
    else:
        heads = np.stack([np.asarray(p.image_location, dtype=np.float64) for p in people])  # (n, 2)
        ys, xs = np.nonzero(np.asarray(result.human_mask) >= mask_threshold)
        pixels = np.stack([xs, ys], -1).astype(np.float64)
        owner = np.argmin(((pixels[:, None] - heads[None]) ** 2).sum(-1), axis=1)
        boxes[:, :2], boxes[:, 2:] = heads, heads  # people without mask pixels: their head point
        np.minimum.at(boxes[:, :2], owner, pixels)
        np.maximum.at(boxes[:, 2:], owner, pixels)
    boxes[:, :2] -= 0.5
    boxes[:, 2:] += 0.5
    return np.clip(boxes, -0.5, [w - 0.5, h - 0.5, w - 0.5, h - 0.5])


def model_to_input_mapping(result, input_hw: tuple[int, int], size: int) -> Callable[[np.ndarray], np.ndarray]:
    """(..., 2) model-input pixels -> input-image pixels. Uses the crop the engine reports with
    the result when there is one, else rebuilds it: `input_hw` resized to long side `size`, then
    centre-cropped as the engine's preprocessing does."""
    mapping = getattr(result, "to_input_pixels", None)
    if mapping is not None:
        return mapping
    crop = getattr(result, "crop", None)
    if crop is not None:
        return crop.model_px_to_input_px
    from human3r_ros.engine.preprocess import CropGeometry, centre_crop_box, resized_size

    resized = resized_size(input_hw, size)
    left, top, right, bottom = centre_crop_box(resized)
    return CropGeometry(tuple(input_hw), resized, (top, left), (bottom - top, right - left)).model_px_to_input_px


def boxes_to_rois(boxes: np.ndarray, input_hw: tuple[int, int],
                  to_input_pixels: Optional[Callable[[np.ndarray], np.ndarray]]) -> list[RegionOfInterest]:
    """Model-input pixel-edge boxes -> RegionOfInterest in input-image pixels (clipped)."""
    corners = boxes.reshape(-1, 2, 2)
    if to_input_pixels is not None:
        corners = np.asarray(to_input_pixels(corners), dtype=np.float64)
    h, w = input_hw
    # Edges in pixel-centre coordinates: pixel i spans [i - 0.5, i + 0.5].
    x0 = np.clip(np.floor(corners[:, 0, 0] + 0.5), 0, w).astype(int)
    y0 = np.clip(np.floor(corners[:, 0, 1] + 0.5), 0, h).astype(int)
    x1 = np.clip(np.ceil(corners[:, 1, 0] + 0.5), 0, w).astype(int)
    y1 = np.clip(np.ceil(corners[:, 1, 1] + 0.5), 0, h).astype(int)
    return [RegionOfInterest(x_offset=int(a), y_offset=int(b), width=int(max(c - a, 0)), height=int(max(d - b, 0)))
            for a, b, c, d in zip(x0, y0, x1, y1)]


def person_to_msg(person, roi: RegionOfInterest, include_vertices: bool) -> Human:
    """One engine Person -> human3r_msgs/Human (world frame)."""
    msg = Human(id=int(person.track_id), score=float(person.score))
    # The engine's global_orient is camera-relative; the message wants it in the world frame.
    msg.global_orient = rotation_to_axis_angle(np.asarray(person.T_world_head)[:3, :3]).astype(np.float32)
    msg.body_pose = np.asarray(person.body_pose, dtype=np.float32).reshape(63)
    msg.left_hand_pose = np.asarray(person.left_hand_pose, dtype=np.float32).reshape(45)
    msg.right_hand_pose = np.asarray(person.right_hand_pose, dtype=np.float32).reshape(45)
    msg.jaw_pose = np.asarray(person.jaw_pose, dtype=np.float32).reshape(3)
    msg.betas = np.asarray(person.betas, dtype=np.float32).reshape(10)
    msg.expression = np.asarray(person.expression, dtype=np.float32).reshape(10)
    msg.pose = matrix_to_pose(body_frame_matrix(person))
    hx, hy, hz = np.asarray(person.head_position_world, dtype=np.float64).tolist()
    msg.head_position = Point(x=hx, y=hy, z=hz)
    if getattr(person, "joints_world", None) is not None:
        msg.joints = points_to_msgs(person.joints_world)
    if include_vertices and getattr(person, "vertices_world", None) is not None:
        msg.vertices = array.array("f", np.ascontiguousarray(person.vertices_world, dtype=np.float32).tobytes())
    msg.roi = roi
    return msg


def frame_to_human_array(result, people: Sequence, header: Header, *, input_hw: tuple[int, int],
                         to_input_pixels=None, include_vertices: bool = False) -> HumanArray:
    """FrameResult (+ the people to publish, see select_people) -> human3r_msgs/HumanArray."""
    rois = boxes_to_rois(people_boxes_model_px(result, people), input_hw, to_input_pixels)
    return HumanArray(
        header=header, camera_pose=matrix_to_pose(result.c2w),
        humans=[person_to_msg(p, roi, include_vertices) for p, roi in zip(people, rois)],
    )


# --------------------------------------------------------------------------- point cloud

CLOUD_FIELDS = (
    PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
    PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
    PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
    # RViz's packed colour: 0x00RRGGBB stored in the bytes of a float32 field.
    PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1),
)
_CLOUD_DTYPE = np.dtype([("x", "=f4"), ("y", "=f4"), ("z", "=f4"), ("rgb", "=u4")])


def frame_colours(result) -> np.ndarray:
    """H x W x 3 uint8 colours of the model-input image (engine `image`, else its `rgb` in [0, 1],
    else mid-grey)."""
    image = getattr(result, "image", None)
    if image is not None:
        return np.asarray(image, dtype=np.uint8)
    rgb = getattr(result, "rgb", None)
    if rgb is not None:
        return (np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.full(np.asarray(result.pts3d_world).shape[:2] + (3,), 128, dtype=np.uint8)


def pointmap_to_cloud(points: np.ndarray, colours: np.ndarray, header: Header, *,
                      conf: Optional[np.ndarray] = None, conf_threshold: float = 1.0, stride: int = 1,
                      human_mask: Optional[np.ndarray] = None, mask_threshold: float = 0.5) -> PointCloud2:
    """H x W x 3 pointmap + H x W x 3 uint8 colours -> unorganised PointCloud2 (x, y, z, rgb).

    Keeps every `stride`-th pixel in both directions, with confidence >= conf_threshold, finite
    coordinates and (when `human_mask` is given) human probability < mask_threshold."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    pts = np.asarray(points)[::stride, ::stride].reshape(-1, 3)
    keep = np.isfinite(pts).all(axis=1)
    if conf is not None:
        keep &= np.asarray(conf)[::stride, ::stride].reshape(-1) >= conf_threshold
    if human_mask is not None:
        keep &= np.asarray(human_mask)[::stride, ::stride].reshape(-1) < mask_threshold
    col = np.asarray(colours, dtype=np.uint8)[::stride, ::stride].reshape(-1, 3)[keep].astype(np.uint32)
    cloud = np.empty(int(keep.sum()), dtype=_CLOUD_DTYPE)
    kept = pts[keep]
    cloud["x"], cloud["y"], cloud["z"] = kept[:, 0], kept[:, 1], kept[:, 2]
    cloud["rgb"] = (col[:, 0] << 16) | (col[:, 1] << 8) | col[:, 2]
    return PointCloud2(
        header=header, height=1, width=len(cloud), fields=list(CLOUD_FIELDS),
        is_bigendian=sys.byteorder != "little", point_step=_CLOUD_DTYPE.itemsize,
        row_step=_CLOUD_DTYPE.itemsize * len(cloud), data=cloud.tobytes(), is_dense=True,
    )


def cloud_to_array(msg: PointCloud2) -> np.ndarray:
    """Inverse of pointmap_to_cloud: structured (x, y, z, rgb uint32) array (for tests/tools)."""
    return np.frombuffer(bytes(msg.data), dtype=_CLOUD_DTYPE, count=msg.width * msg.height)


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
                   alpha: float = 0.8) -> MarkerArray:
    """Markers for RViz: DELETEALL first (people who left vanish), then per person a SMPL-X mesh
    (TRIANGLE_LIST, when vertices and faces exist) or joint/head spheres, plus an id label."""
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    identity = Pose(orientation=Quaternion(w=1.0))
    for person in people:
        colour = track_colour(person.track_id, alpha)
        # check_fields=False: the points list is built above with the right types; checking
        # ~63k mesh points again costs as much as building them.
        body = Marker(header=header, ns="bodies", id=int(person.track_id), action=Marker.ADD,
                      pose=identity, color=colour, check_fields=False)
        vertices = getattr(person, "vertices_world", None)
        joints = getattr(person, "joints_world", None)
        if vertices is not None and faces is not None:
            body.type = Marker.TRIANGLE_LIST
            body.scale = Vector3(x=1.0, y=1.0, z=1.0)
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


# --------------------------------------------------------------------------- diagnostics

def diagnostics_message(stamp: Time, name: str, hardware_id: str, level: bytes, message: str,
                        values: Mapping[str, object]) -> DiagnosticArray:
    """One DiagnosticStatus (level: DiagnosticStatus.OK / WARN / ERROR / STALE) in a
    DiagnosticArray; values are turned into strings."""
    def text(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=text(v)) for k, v in values.items()])
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])
