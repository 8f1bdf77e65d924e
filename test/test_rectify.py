"""Undistortion from real sensor_msgs/CameraInfo messages against OpenCV's own undistortion."""

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo

from human3r_ros.engine.preprocess import crop_geometry
from human3r_ros.ros.rectification import (
    CalibrationError,
    CameraCalibration,
    Rectifier,
    calibrated_focal_model_px,
    calibrated_model_intrinsics,
)

W, H = 320, 240
K = np.array([[260.0, 0.0, 163.5], [0.0, 255.0, 118.25], [0.0, 0.0, 1.0]])
DISTORTIONS = {
    "plumb_bob": [-0.28, 0.09, 0.0012, -0.0008, -0.015],
    "rational_polynomial": [-0.3, 0.12, 0.001, -0.002, -0.02, 0.05, 0.01, -0.004],
    "equidistant": [-0.05, 0.01, -0.004, 0.001],
}


@pytest.fixture(scope="module")
def image(reference_dir):
    frame = np.load(reference_dir / "tiny_plain_io.npz")["frames_uint8"][0]
    return cv2.resize(frame, (W, H), interpolation=cv2.INTER_LINEAR)


def camera_info(model: str, d, p=None, r=None, width=W, height=H) -> CameraInfo:
    p = np.hstack([K, np.zeros((3, 1))]) if p is None else p
    return CameraInfo(width=width, height=height, distortion_model=model, d=list(map(float, d)),
                      k=K.reshape(-1).tolist(), r=(np.eye(3) if r is None else r).reshape(-1).tolist(),
                      p=np.asarray(p, dtype=np.float64).reshape(-1).tolist())


def new_camera(model: str) -> np.ndarray:
    """A rectified camera other than K (as camera_calibration writes into P), 3x4."""
    if model == "equidistant":
        knew = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
            K, np.array(DISTORTIONS[model]), (W, H), np.eye(3), balance=0.5)
    else:
        knew, _ = cv2.getOptimalNewCameraMatrix(K, np.array(DISTORTIONS[model]), (W, H), 0.5)
    return np.hstack([knew, np.zeros((3, 1))])


def opencv_undistort(image, model, knew):
    d = np.array(DISTORTIONS[model])
    if model == "equidistant":
        return cv2.fisheye.undistortImage(image, K, d, Knew=knew)
    return cv2.undistort(image, K, d, None, knew)


@pytest.mark.parametrize("model", sorted(DISTORTIONS))
def test_undistortion_equals_opencv(image, model):
    p = new_camera(model)
    calibration = CameraCalibration.from_camera_info(camera_info(model, DISTORTIONS[model], p))
    out = Rectifier().rectify(image, calibration)
    expected = opencv_undistort(image, model, p[:, :3])
    assert out.shape == image.shape and out.dtype == np.uint8
    # same maps and bilinear remap: at most one level of fixed-point interpolation rounding
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert np.abs(out.astype(int) - image).mean() > 5  # the distortion is real: the image moved


def test_resized_images_use_the_scaled_calibration(image):
    model = "plumb_bob"
    calibration = CameraCalibration.from_camera_info(camera_info(model, DISTORTIONS[model]))
    half = cv2.resize(image, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    out = Rectifier().rectify(half, calibration)
    scale = np.array([[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]])  # pixel centres at integers
    k_half = scale @ K
    expected = cv2.undistort(half, k_half, np.array(DISTORTIONS[model]), None, k_half)
    assert np.abs(out.astype(int) - expected).max() <= 1
    with pytest.raises(CalibrationError, match="not a resized 240x320"):
        Rectifier().rectify(image[:, :200], calibration)


def test_maps_are_built_once_per_calibration(image):
    rectifier = Rectifier()
    first = CameraCalibration.from_camera_info(camera_info("plumb_bob", DISTORTIONS["plumb_bob"]))
    again = CameraCalibration.from_camera_info(camera_info("plumb_bob", DISTORTIONS["plumb_bob"]))
    outs = [rectifier.rectify(image, c) for c in (first, again, first)]
    assert rectifier.map_builds == 1  # equal content, new message objects: the same maps
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    recalibrated = CameraCalibration.from_camera_info(camera_info("plumb_bob", [-0.2, 0.05, 0, 0, 0]))
    changed = rectifier.rectify(image, recalibrated)
    assert rectifier.map_builds == 2 and not np.array_equal(changed, outs[0])
    rectifier.rectify(image[::2, ::2], recalibrated)  # another image size: other maps
    assert rectifier.map_builds == 3


@pytest.mark.parametrize("model", ["plumb_bob", "equidistant", "rational_polynomial", ""])
def test_zero_distortion_leaves_the_image_alone(image, model):
    d = [0.0] * {"": 0}.get(model, len(DISTORTIONS.get(model, [])))
    rectifier = Rectifier()
    calibration = CameraCalibration.from_camera_info(camera_info(model, d))
    assert rectifier.rectify(image, calibration) is image
    assert rectifier.rectify(image[::2, ::2], calibration) is not None and rectifier.map_builds == 0
    # no distortion but another rectified camera (P != K): still a remap
    p = np.hstack([K * [[0.8], [0.8], [1]], np.zeros((3, 1))])
    moved = Rectifier().rectify(image, CameraCalibration.from_camera_info(camera_info(model, d, p)))
    assert np.abs(moved.astype(int) - cv2.undistort(image, K, None, None, p[:, :3])).max() <= 1


def test_bad_calibrations_are_refused():
    with pytest.raises(CalibrationError, match="distortion model 'kannala' is not supported; accepted: plumb_bob"):
        CameraCalibration.from_camera_info(camera_info("kannala", [0.1, 0, 0, 0]))
    with pytest.raises(CalibrationError, match="plumb_bob takes 5 distortion coefficients, d has 4"):
        CameraCalibration.from_camera_info(camera_info("plumb_bob", [0.1, 0, 0, 0]))
    info = camera_info("plumb_bob", DISTORTIONS["plumb_bob"])
    info.k = [0.0] * 9
    with pytest.raises(CalibrationError, match="not calibrated"):
        CameraCalibration.from_camera_info(info)
    with pytest.raises(CalibrationError, match="empty"):
        CameraCalibration.from_camera_info(camera_info("plumb_bob", DISTORTIONS["plumb_bob"], width=0))


def test_calibrated_focal_in_model_pixels():
    calibration = CameraCalibration.from_camera_info(camera_info("plumb_bob", DISTORTIONS["plumb_bob"]))
    # 320x240 -> 512x384 model resize: x1.6 on both axes
    assert calibrated_focal_model_px(calibration, 512, rectified=False) == pytest.approx((260 + 255) / 2 * 1.6)
    model_k = calibrated_model_intrinsics(calibration, 512, rectified=False)
    # back through the engine's own crop geometry: the camera's K again
    np.testing.assert_allclose(crop_geometry((H, W), 512).intrinsics_in_input(model_k), K, atol=1e-9)
    p = new_camera("plumb_bob")
    rectified = CameraCalibration.from_camera_info(camera_info("plumb_bob", DISTORTIONS["plumb_bob"], p))
    assert calibrated_focal_model_px(rectified, 512) == pytest.approx((p[0, 0] + p[1, 1]) / 2 * 1.6)
