"""Undistortion of camera images from sensor_msgs/CameraInfo fields (ROS-free: OpenCV).

CameraCalibration holds one CameraInfo's intrinsics (duck-typed: rclpy or rosbags messages);
Rectifier undistorts images with maps built once per calibration and image size. Images may be
smaller than the calibration (binning, or decode_image's working size): the calibration is
scaled to them. The rectified image is the pinhole camera P[:3, :3] (ROS's rectified camera).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from human3r_ros.engine.preprocess import crop_geometry

# distortion_model -> coefficient count in d (ROS order = OpenCV order)
DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


class CalibrationError(ValueError):
    """A CameraInfo that cannot undistort images (unknown model, wrong sizes, uncalibrated)."""


@dataclass(frozen=True)
class CameraCalibration:
    """The intrinsics of sensor_msgs/CameraInfo (row-major k, r, p as there). Hashable: equal
    calibrations share one set of undistortion maps."""

    width: int
    height: int
    distortion_model: str
    d: tuple[float, ...]
    k: tuple[float, ...]
    r: tuple[float, ...]
    p: tuple[float, ...]

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise CalibrationError(f"camera info size {self.width}x{self.height} (WxH) is empty")
        for name, length in (("k", 9), ("r", 9), ("p", 12)):
            if len(getattr(self, name)) != length:
                raise CalibrationError(f"camera info {name} has {len(getattr(self, name))} values, not {length}")
        if not any(self.d):
            return  # no distortion: the model does not matter
        count = DISTORTION_MODELS.get(self.distortion_model)
        if count is None:
            raise CalibrationError(
                f"distortion model '{self.distortion_model}' is not supported; accepted: "
                f"{', '.join(DISTORTION_MODELS)}")
        if len(self.d) != count:
            raise CalibrationError(
                f"{self.distortion_model} takes {count} distortion coefficients, d has {len(self.d)}")
        if self.k[0] <= 0 or self.k[4] <= 0:
            raise CalibrationError(
                f"camera info k has focal lengths {self.k[0]}, {self.k[4]}: the camera is not calibrated")

    @classmethod
    def from_camera_info(cls, info) -> "CameraCalibration":
        """sensor_msgs/CameraInfo-like (width, height, distortion_model, d, k, r, p)."""
        def values(field):
            return tuple(float(v) for v in np.asarray(getattr(info, field), dtype=np.float64).reshape(-1))
        return cls(int(info.width), int(info.height), str(info.distortion_model),
                   values("d"), values("k"), values("r"), values("p"))

    @property
    def camera_matrix(self) -> np.ndarray:
        return np.array(self.k, dtype=np.float64).reshape(3, 3)

    @property
    def rotation(self) -> np.ndarray:
        """R, the identity when CameraInfo leaves it zero."""
        r = np.array(self.r, dtype=np.float64).reshape(3, 3)
        return r if r.any() else np.eye(3)

    @property
    def rectified_matrix(self) -> np.ndarray:
        """The pinhole camera of rectified images: P[:3, :3], or k when P is zero."""
        p = np.array(self.p, dtype=np.float64).reshape(3, 4)[:, :3]
        return p if p.any() else self.camera_matrix

    @property
    def is_identity(self) -> bool:
        """Rectifying changes nothing: no distortion, R = I and P[:3, :3] = k."""
        return (not any(self.d) and np.array_equal(self.rotation, np.eye(3))
                and np.allclose(self.rectified_matrix, self.camera_matrix))

    def scaled_to(self, image_hw: tuple[int, int]) -> "CameraCalibration":
        """The same camera for an image resized to (H, W) (binning, a working size); the
        aspect ratio must match within a pixel."""
        h, w = image_hw
        if (h, w) == (self.height, self.width):
            return self
        sx, sy = w / self.width, h / self.height
        if abs(self.height * sx - h) > 1 or abs(self.width * sy - w) > 1:
            raise CalibrationError(
                f"image of {h}x{w} (HxW) is not a resized {self.height}x{self.width} image of the calibration")
        # pixel centres at integers: x' = (x + 0.5) * s - 0.5
        scale = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        k = scale @ self.camera_matrix
        p = scale @ np.array(self.p, dtype=np.float64).reshape(3, 4)
        return CameraCalibration(w, h, self.distortion_model, self.d, tuple(k.reshape(-1)), self.r,
                                 tuple(p.reshape(-1)) if any(self.p) else self.p)


def undistortion_maps(calibration: CameraCalibration) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (fixed-point CV_16SC2 and its interpolation table) of a calibration."""
    size = (calibration.width, calibration.height)
    k, r, new = calibration.camera_matrix, calibration.rotation, calibration.rectified_matrix
    d = np.array(calibration.d, dtype=np.float64)
    if calibration.distortion_model == "equidistant" and d.any():
        return cv2.fisheye.initUndistortRectifyMap(k, d, r, new, size, cv2.CV_16SC2)
    return cv2.initUndistortRectifyMap(k, d if d.any() else None, r, new, size, cv2.CV_16SC2)


class Rectifier:
    """Undistorts the images of one camera. The maps of the last (calibration, image size) are
    kept: a stream with a fixed calibration builds them once (`map_builds` counts builds)."""

    def __init__(self, interpolation: int = cv2.INTER_LINEAR):
        self.interpolation = interpolation
        self.map_builds = 0
        self._key: Optional[tuple] = None
        self._maps: Optional[tuple[np.ndarray, np.ndarray]] = None

    def rectify(self, image: np.ndarray, calibration: CameraCalibration) -> np.ndarray:
        """H x W [x C] image of the calibrated camera (or a resized one) -> the undistorted
        image, same size; the image itself when the calibration changes nothing."""
        scaled = calibration.scaled_to(image.shape[:2])
        if scaled.is_identity:
            return image
        key = (calibration, image.shape[:2])
        if key != self._key:
            self._maps = undistortion_maps(scaled)
            self._key = key
            self.map_builds += 1
        return cv2.remap(image, *self._maps, self.interpolation, borderMode=cv2.BORDER_CONSTANT)


def calibrated_model_intrinsics(calibration: CameraCalibration, size: int = 512, rectified: bool = True) -> np.ndarray:
    """3x3 pinhole of the calibrated camera in the engine's model-input pixels (image_size
    `size`), comparable with FrameResult.intrinsics. `rectified`: the camera of rectified
    images (P), else the raw camera (k)."""
    matrix = calibration.rectified_matrix if rectified else calibration.camera_matrix
    geometry = crop_geometry((calibration.height, calibration.width), size)
    return np.linalg.solve(geometry.model_to_input_affine(), matrix)


def calibrated_focal_model_px(calibration: CameraCalibration, size: int = 512, rectified: bool = True) -> float:
    """Calibrated focal length in model-input pixels (mean of fx and fy), to set against the
    model's estimate FrameResult.focal."""
    k = calibrated_model_intrinsics(calibration, size, rectified)
    return float((k[0, 0] + k[1, 1]) / 2)
