"""The ROS-free (numpy) half of the REP-155 (ROS4HRI) body outputs: body ids, normalised
regions of interest and 2D skeletons. human3r_ros.ros.hri wraps them in hri_msgs messages.

REP-155 image coordinates are fractions of the source (input) image: (0, 0) its top-left
corner, (1, 1) its bottom-right one. Pixel i spans [i - 0.5, i + 0.5] in the engine's pixel
coordinates, so a pixel coordinate u becomes (u + 0.5) / width.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Callable, Optional, Sequence

import numpy as np

from human3r_ros.engine.smplx_joints import coco18_from_smplx
from human3r_ros.ros.msg_arrays import people_boxes_model_px

# A topic-name token (the id is one in /humans/bodies/<id>/roi) may not start with a digit.
_ID_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
TOKEN_LENGTH = 4


class BodyIds:
    """REP-155 body ids for the tracker's integer ids.

    id = <token><track id>, e.g. 'kqzt3': a short string that starts with a letter and stays
    the same for the track's whole life. The token is drawn at random per sequence: the
    tracker numbers people from 0 again after a reset, so call new_sequence() then, and a
    track id that comes back never names two people (nor across node restarts, nor between
    two nodes publishing under /humans/bodies)."""

    def __init__(self, token: Optional[str] = None) -> None:
        self.token = ""
        self.new_sequence(token)

    def new_sequence(self, token: Optional[str] = None) -> None:
        """Start naming a new sequence (after a tracker reset); `token` for a fixed one."""
        if token is None:
            token = "".join(secrets.choice(string.ascii_lowercase) for _ in range(TOKEN_LENGTH))
        if not _ID_TOKEN.match(token):
            raise ValueError(f"body id token '{token}' must start with a letter and hold only letters, "
                             "digits and '_' (it becomes part of topic and TF frame names)")
        self.token = token

    def __call__(self, track_id: int) -> str:
        return f"{self.token}{int(track_id)}"


def _check_hw(input_hw) -> tuple[int, int]:
    h, w = (int(v) for v in input_hw)
    if h <= 0 or w <= 0:
        raise ValueError(f"input image size must be positive, got {h}x{w} (height x width)")
    return h, w


def normalised_rois(boxes: np.ndarray, input_hw: tuple[int, int],
                    to_input_pixels: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
    """Model-input pixel-edge boxes (n, 4) (x0, y0, x1, y1) (msg_arrays.people_boxes_model_px)
    -> (n, 4) float64 (xmin, ymin, xmax, ymax) as fractions of the input image, in [0, 1]."""
    h, w = _check_hw(input_hw)
    corners = np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2)
    if to_input_pixels is not None:
        corners = np.asarray(to_input_pixels(corners), dtype=np.float64)
    return np.clip((corners + 0.5) / (w, h), 0.0, 1.0).reshape(-1, 4)


def skeletons_2d(joints_cam: np.ndarray, intrinsics: np.ndarray, input_hw: tuple[int, int],
                 confidences: Sequence[float],
                 to_input_pixels: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> np.ndarray:
    """SMPL-X joints in the camera frame (n, 127, 3) -> (n, 18, 3) COCO-18 keypoints (x, y, c)
    of hri_msgs/Skeleton2D: the joints projected with the model-input `intrinsics`, taken to
    the input image and normalised. c is the person's confidence where the keypoint lies in
    front of the camera and inside the image, else 0 (its x, y then clipped into [0, 1])."""
    h, w = _check_hw(input_hw)
    keypoints = coco18_from_smplx(np.asarray(joints_cam, dtype=np.float64).reshape(-1, *np.shape(joints_cam)[-2:]))
    k = np.asarray(intrinsics, dtype=np.float64)
    z = keypoints[..., 2:]
    # points behind the camera land far outside (as in people_boxes_model_px): clipped, c = 0
    uv = keypoints[..., :2] / np.maximum(z, 1e-6) * np.diag(k)[:2] + k[:2, 2]
    if to_input_pixels is not None:
        uv = np.asarray(to_input_pixels(uv), dtype=np.float64)
    xy = (uv + 0.5) / (w, h)
    seen = (z[..., 0] > 0) & np.isfinite(xy).all(axis=-1) & ((xy >= 0.0) & (xy <= 1.0)).all(axis=-1)
    out = np.empty(keypoints.shape[:-1] + (3,))
    out[..., :2] = np.clip(np.nan_to_num(xy), 0.0, 1.0)
    out[..., 2] = np.where(seen, np.asarray(confidences, dtype=np.float64).reshape(-1, 1), 0.0)
    return out


def frame_hri_arrays(result, people: Sequence, input_hw: tuple[int, int],
                     boxes: Optional[np.ndarray] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A FrameResult's people -> (rois (n, 4), skeletons (n, 18, 3) or None without a body
    model). `boxes`: people_boxes_model_px(result, people) when the caller has them."""
    if boxes is None:
        boxes = people_boxes_model_px(result, people)
    rois = normalised_rois(boxes, input_hw, result.to_input_pixels)
    if not people or any(getattr(p, "joints_cam", None) is None for p in people):
        return rois, None
    skeletons = skeletons_2d(np.stack([p.joints_cam for p in people]), result.intrinsics, input_hw,
                             [p.score for p in people], result.to_input_pixels)
    return rois, skeletons


def roi_pixel_box(roi: np.ndarray, input_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """A normalised ROI (xmin, ymin, xmax, ymax) -> the whole input-image pixels it touches,
    (x0, y0, x1, y1) with x1, y1 exclusive: at least one pixel, inside the image."""
    h, w = _check_hw(input_hw)
    xmin, ymin, xmax, ymax = np.clip(np.asarray(roi, dtype=np.float64).reshape(4), 0.0, 1.0).tolist()
    x0, y0 = min(int(np.floor(xmin * w)), w - 1), min(int(np.floor(ymin * h)), h - 1)
    x1, y1 = max(int(np.ceil(xmax * w)), x0 + 1), max(int(np.ceil(ymax * h)), y0 + 1)
    return x0, y0, x1, y1
