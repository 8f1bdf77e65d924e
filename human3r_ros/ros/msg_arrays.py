"""The ROS-free (numpy) half of the message conversions.

Everything here works on plain arrays and on duck-typed message objects (anything with the
fields of sensor_msgs/Image or CompressedImage), so the same code serves rclpy messages in the
node and rosbags messages in the offline tools, and runs without a ROS installation.

Frames: the engine's world frame is the first camera's optical frame (x right, y down,
z forward), metres.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

import numpy as np

from human3r_ros.engine.scene_cloud import CloudSelection, SceneCloud, kept_pixels
from human3r_ros.engine.smplx_joints import hips_midpoint

# Image decoding lives in image_decoding; re-exported so callers of this module keep working.
from human3r_ros.ros.image_decoding import (  # noqa: F401
    SUPPORTED_ENCODINGS,
    DecodedImage,
    ImageConversionError,
    UnsupportedEncodingError,
    compressed_image_to_rgb,
    decode_image,
    raw_image_to_rgb,
)

# --------------------------------------------------------------------------- time

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time (rclpy or rosbags) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_sec_nanosec(ns: int) -> tuple[int, int]:
    """Integer nanoseconds -> (sec, nanosec) for a builtin_interfaces/Time of either flavour."""
    return divmod(int(ns), NS_PER_S)


# --------------------------------------------------------------------------- rotations


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (x, y, z, w), w >= 0.

    Built from whichever of x, y, z, w is largest (well conditioned at every angle)."""
    m = np.asarray(rotation, dtype=np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    # Row k is 4 * q_k * (x, y, z, w) for the k-th component.
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


# --------------------------------------------------------------------------- people


def person_is_finite(person) -> bool:
    return bool(np.isfinite(person.T_world_head).all() and np.isfinite(person.head_position_world).all())


def publishable_people(result) -> list:
    """The people of a FrameResult that go into messages: those with a finite pose (the
    engine already applied max_people)."""
    return [p for p in result.people if person_is_finite(p)]


# human3r_msgs/Human float32[] fields with their fixed lengths (the global orientation aside)
_HUMAN_PARAMETER_LENGTHS = {"body_pose": 63, "left_hand_pose": 45, "right_hand_pose": 45, "jaw_pose": 3,
                            "betas": 10, "expression": 10}


def human_fields(person, person_id: int | None = None) -> dict:
    """Id, score and SMPL-X parameters of human3r_msgs/Human for one engine Person, or a fused
    person with its global `person_id` (float32 arrays); the points, pose and roi fields are
    the message builders' part."""
    fields = {"id": int(person.track_id if person_id is None else person_id), "score": float(person.score),
              # the engine's global_orient is camera-relative; the message carries the world one
              "global_orient": np.asarray(person.global_orient_world, dtype=np.float32).reshape(3)}
    for name, length in _HUMAN_PARAMETER_LENGTHS.items():
        fields[name] = np.asarray(getattr(person, name), dtype=np.float32).reshape(length)
    return fields


# Columns: the REP-155 body axes (x forward, y left, z up) in SMPL-X body axes (x = the body's
# left, y up, z facing forward).
SMPLX_TO_REP155 = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


def body_frame_matrix(person) -> np.ndarray:
    """4x4 pose of the frame body_<id> in the world frame: REP-155 axes (x forward, y left,
    z up) on the SMPL-X body orientation; origin where REP-155 puts it, mid-way between the
    hip joints, with a body model (at the pelvis joint when only that is known), else at the
    head joint (the only position predicted without it)."""
    matrix = np.array(person.T_world_head, dtype=np.float64)
    matrix[:3, :3] = matrix[:3, :3] @ SMPLX_TO_REP155
    if getattr(person, "joints_world", None) is not None:
        matrix[:3, 3] = hips_midpoint(person.joints_world)
    elif getattr(person, "pelvis_position_world", None) is not None:
        matrix[:3, 3] = person.pelvis_position_world
    return matrix


def people_boxes_model_px(result, people: Sequence, mask_threshold: float = 0.5) -> np.ndarray:
    """(n, 4) boxes (x0, y0, x1, y1) in model-input pixel edges (pixel i spans [i - .5, i + .5]).

    With a body model: the box of the projected SMPL-X joints. Without one: the human-mask
    pixels (sampled every other row and column) closer to this person's head detection than
    to any other's."""
    n = len(people)
    h, w = np.asarray(result.human_mask).shape[:2]
    boxes = np.zeros((n, 4))
    if n == 0:
        return boxes
    if all(getattr(p, "joints_cam", None) is not None for p in people):
        joints = np.stack([p.joints_cam for p in people]).astype(np.float64)  # (n, J, 3)
        z = np.maximum(joints[..., 2:], 1e-6)  # points behind the camera land far outside: clipped
        k = np.asarray(result.intrinsics, dtype=np.float64)
        uv = joints[..., :2] / z * np.diag(k)[:2] + k[:2, 2]
        boxes[:, :2], boxes[:, 2:] = uv.min(axis=1), uv.max(axis=1)
    else:
        heads = np.stack([np.asarray(p.image_location, dtype=np.float32) for p in people])  # (n, 2)
        # every other pixel is enough for a box and a quarter of the work
        sampled = np.asarray(result.human_mask)[::2, ::2] >= mask_threshold  # (hs, ws)
        hs, ws = sampled.shape
        xs, ys = np.arange(ws, dtype=np.float32) * 2, np.arange(hs, dtype=np.float32) * 2
        # each sampled pixel belongs to the nearest head (ties: the first person)
        dist = (xs - heads[:, :1, None]) ** 2 + (ys[:, None] - heads[:, 1:, None]) ** 2  # (n, hs, ws)
        mine = (dist.argmin(axis=0) == np.arange(n)[:, None, None]) & sampled
        rows, cols = mine.any(axis=2), mine.any(axis=1)  # (n, hs), (n, ws)
        first_x, last_x = cols.argmax(axis=1) * 2, (ws - 1 - cols[:, ::-1].argmax(axis=1)) * 2
        first_y, last_y = rows.argmax(axis=1) * 2, (hs - 1 - rows[:, ::-1].argmax(axis=1)) * 2
        has = rows.any(axis=1)
        # the box spans the head point and the person's pixels (just the head point without any)
        boxes[:, :2], boxes[:, 2:] = heads, heads
        boxes[has, 0] = np.minimum(heads[has, 0], first_x[has])
        boxes[has, 1] = np.minimum(heads[has, 1], first_y[has])
        boxes[has, 2] = np.maximum(heads[has, 0], last_x[has])
        boxes[has, 3] = np.maximum(heads[has, 1], last_y[has])
    boxes[:, :2] -= 0.5
    boxes[:, 2:] += 0.5
    return np.clip(boxes, -0.5, [w - 0.5, h - 0.5, w - 0.5, h - 0.5])


def boxes_to_input_rois(boxes: np.ndarray, input_hw: tuple[int, int],
                        to_input_pixels: Optional[Callable[[np.ndarray], np.ndarray]]) -> np.ndarray:
    """Model-input pixel-edge boxes -> (n, 4) int (x_offset, y_offset, width, height) of
    sensor_msgs/RegionOfInterest in input-image pixels, clipped to the image."""
    corners = np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2)
    if to_input_pixels is not None:
        corners = np.asarray(to_input_pixels(corners), dtype=np.float64)
    h, w = input_hw
    # Edges in pixel-centre coordinates: pixel i spans [i - 0.5, i + 0.5].
    x0 = np.clip(np.floor(corners[:, 0, 0] + 0.5), 0, w)
    y0 = np.clip(np.floor(corners[:, 0, 1] + 0.5), 0, h)
    x1 = np.clip(np.ceil(corners[:, 1, 0] + 0.5), 0, w)
    y1 = np.clip(np.ceil(corners[:, 1, 1] + 0.5), 0, h)
    return np.stack([x0, y0, np.maximum(x1 - x0, 0), np.maximum(y1 - y0, 0)], -1).astype(np.int64)


# --------------------------------------------------------------------------- point cloud

FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32
# (name, byte offset, datatype, count) of the x, y, z, rgb cloud; rgb is RViz's packed
# 0x00RRGGBB stored in the bytes of a float32 field.
CLOUD_FIELDS = (("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1), ("rgb", 12, FLOAT32, 1))
CLOUD_POINT_DTYPE = np.dtype([("x", "=f4"), ("y", "=f4"), ("z", "=f4"), ("rgb", "=u4")])


def frame_colours(result) -> np.ndarray:
    """H x W x 3 uint8 colours of the pointmap pixels: the engine's model-input image, else its
    rgb head output in [-1, 1], else mid-grey."""
    image = getattr(result, "image", None)
    if image is not None:
        return np.asarray(image, dtype=np.uint8)
    rgb = getattr(result, "rgb", None)
    if rgb is not None:
        return ((np.clip(np.asarray(rgb, dtype=np.float32), -1.0, 1.0) * 0.5 + 0.5) * 255.0 + 0.5).astype(np.uint8)
    return np.full(np.asarray(result.human_mask).shape[:2] + (3,), 128, dtype=np.uint8)


def cloud_points(points: np.ndarray, colours: np.ndarray, *, conf: Optional[np.ndarray] = None,
                 conf_threshold: float = 1.0, stride: int = 1, human_mask: Optional[np.ndarray] = None,
                 mask_threshold: float = 0.5) -> np.ndarray:
    """H x W x 3 pointmap + colours -> structured CLOUD_POINT_DTYPE array (unorganised cloud).

    Keeps every `stride`-th pixel in both directions with confidence >= conf_threshold, finite
    coordinates and (when `human_mask` is given) human probability < mask_threshold: the
    engine's rule (engine.scene_cloud), which the node applies on the device."""
    selection = CloudSelection(stride, conf_threshold, human_mask is not None, mask_threshold)
    pts, col = np.asarray(points, dtype=np.float32), np.asarray(colours, dtype=np.uint8)
    pixels = kept_pixels(pts, None if conf is None else np.asarray(conf),
                         None if human_mask is None else np.asarray(human_mask), selection)
    if len(pixels) == pts[::stride, ::stride, 0].size:  # the common full cloud: plain copies, no gather
        return pack_cloud(pts[::stride, ::stride].reshape(-1, 3), col[::stride, ::stride].reshape(-1, 3))
    return pack_cloud(np.take(pts.reshape(-1, 3), pixels, axis=0), np.take(col.reshape(-1, 3), pixels, axis=0))


def scene_cloud_points(cloud, colours: np.ndarray) -> np.ndarray:
    """An engine.scene_cloud.SceneCloud (points kept on the device) -> CLOUD_POINT_DTYPE array,
    coloured from the frame's H x W x 3 colours."""
    return pack_cloud(cloud.points, np.take(np.asarray(colours, dtype=np.uint8).reshape(-1, 3), cloud.pixels, axis=0))


def rig_cloud_points(rig, scales, results) -> np.ndarray:
    """Several cameras' selected clouds (FrameResult.cloud; `results`: camera -> result) in the rig
    world, in metres, in the rig's camera order: each camera's points scaled by its estimate
    (`scales`) and placed by its anchor (fusion.Rig.to_rig_world), as its people are."""
    parts = [scene_cloud_points(SceneCloud(rig.to_rig_world(c, r.cloud.points, scales[c]).astype(np.float32),
                                           r.cloud.pixels), frame_colours(r))
             for c, r in ((c, results[c]) for c in rig.cameras if c in results) if r.cloud is not None]
    return np.concatenate(parts) if parts else np.empty(0, CLOUD_POINT_DTYPE)


def pack_cloud(points: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(N,3) float32 points and (N,3) uint8 colours -> structured CLOUD_POINT_DTYPE array."""
    count = len(points)
    cloud = np.empty(count, dtype=CLOUD_POINT_DTYPE)
    cloud.view(np.float32).reshape(count, 4)[:, :3] = points
    # rgb: RViz's packed 0x00RRGGBB in the float field's 4 bytes, written byte-wise
    rgb_bytes = cloud.view(np.uint8).reshape(count, 16)[:, 12:]
    if sys.byteorder == "little":
        rgb_bytes[:, :3], rgb_bytes[:, 3] = colours[:, ::-1], 0
    else:
        rgb_bytes[:, 1:], rgb_bytes[:, 0] = colours, 0
    return cloud


def _frame_part(camera: str) -> str:
    return camera.replace("/", "_")  # a camera named by a bag topic: '/' would read as a namespace


def camera_world_frame(world_frame: str, camera: str) -> str:
    """The TF frame of one camera's own reconstruction (its first optical frame)."""
    return f"{world_frame}_{_frame_part(camera)}"


def camera_frame_names(world_frame: str, camera_frame: str, body_frame_prefix: str, camera: str
                       ) -> tuple[str, str, str]:
    """One of several cameras' TF frames, so that none collide: its own world, its estimated
    pose (<camera_frame>_<camera>) and its people's prefix (<body_prefix><camera>_)."""
    part = _frame_part(camera)
    return camera_world_frame(world_frame, camera), f"{camera_frame}_{part}", f"{body_frame_prefix}{part}_"
