"""Preprocessing and per-frame geometry against the tiny reference fixtures."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import assert_close_ref
from human3r_ros.engine import geometry, preprocess

CASES = ("plain", "ttt3r", "reset")
TINY_SIZE = 64  # the fixtures' loader size (raw 78x101 -> 48x64)
TINY_MHMR_RES = 112


@pytest.fixture(scope="module", params=CASES)
def io(request, reference_dir):
    with np.load(reference_dir / f"tiny_{request.param}_io.npz") as data:
        return {k: data[k] for k in data.files}


def test_preprocess_matches_reference(io):
    for view, frame in enumerate(io["view_frame_index"]):
        prepared = preprocess.preprocess_frame(io["frames_uint8"][frame], TINY_SIZE, mhmr_res=TINY_MHMR_RES)
        # Same Pillow resampling and float32 ops: expected to be bit-exact.
        np.testing.assert_array_equal(prepared.img.numpy(), io["view_img"][view])
        assert prepared.true_shape == tuple(io["view_true_shape"][view])
        # Bilinear letterbox: bit-exact with 1 thread, 1 ulp with more (torch CPU kernel split).
        assert_close_ref(prepared.img_mhmr, io["view_img_mhmr"][view], "view_img_mhmr")
        assert_close_ref(prepared.K_mhmr, io["view_K_mhmr"][view], "view_K_mhmr")


def test_backbone_input_is_imagenet_normalised_mhmr_image(io):
    # Documents the fixture relation the model relies on (done inside the network).
    img = torch.from_numpy(io["view_img_mhmr"][:1])
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert_close_ref((img * 0.5 + 0.5 - mean) / std, io["backbone_input_view0"], "backbone_input_view0")


def run_frames(io):
    """Stream the raw per-view outputs through PoseChainer + frame_geometry, one view at a time."""
    chainer = geometry.PoseChainer()
    frames = []
    for view in range(len(io["view_reset"])):
        c2w = chainer.push(torch.from_numpy(io["view_c2w"][view]), bool(io["view_reset"][view]))
        if c2w is None:
            continue
        frames.append((view, geometry.frame_geometry(
            torch.from_numpy(io["view_pts3d_cam"][view]),
            torch.from_numpy(io["view_conf_cam"][view]),
            c2w,
            torch.from_numpy(io["view_det_scores_nms"][view]),
            torch.from_numpy(io["view_msk"][view]),
        )))
    return frames


def test_frame_outputs_match_reference(io):
    frames = run_frames(io)
    assert [view for view, _ in frames] == list(io["frame_view_index"])
    fields = {
        "frame_pts3d_world": "pts3d_world", "frame_conf_world": "conf", "frame_depth": "depth",
        "frame_c2w": "c2w", "frame_focal": "focal", "frame_pp": "pp", "frame_intrinsics": "intrinsics",
        "frame_det_scores": "det_scores", "frame_msk": "msk",
    }
    for key, attr in fields.items():
        actual = torch.stack([getattr(frame, attr) for _, frame in frames])
        assert_close_ref(actual, io[key], key)


def test_chainer_drops_only_the_copy_view():
    chainer = geometry.PoseChainer()
    step = torch.eye(4)
    step[0, 3] = 1.0
    pushed = [chainer.push(step, reset) for reset in (False, True, False, False, True, False, False)]
    assert [p is None for p in pushed] == [False, False, True, False, False, True, False]
    # Chunk 2 starts at the reset view's camera: x = 1 (view 1) + 1 (its own step).
    assert pushed[3][0, 3] == 2.0 and pushed[4][0, 3] == 2.0 and pushed[6][0, 3] == 3.0


@pytest.mark.parametrize("in_size,out_size", [(8, 64), (112, 64), (672, 512), (896, 512), (37, 100), (64, 64)])
def test_nearest_indices_follow_torch(in_size, out_size):
    src = torch.rand(in_size, in_size)
    expected = F.interpolate(src[None, None], size=(out_size, out_size), mode="nearest")[0, 0]
    torch.testing.assert_close(geometry.unletterbox(src, (out_size, out_size)), expected, rtol=0, atol=0)


def test_crop_geometry_maps_model_pixels_to_input():
    prepared = preprocess.preprocess_frame(np.zeros((480, 640, 3), np.uint8), mhmr_res=TINY_MHMR_RES)
    assert prepared.true_shape == (384, 512)
    g = prepared.geometry
    assert g.resized_hw == (384, 512) and g.crop_top_left == (0, 0)
    # Model pixel i covers input [1.25 i, 1.25 (i + 1)) in edge coordinates; its centre is
    # 1.25 (i + 0.5) - 0.5 in centre-at-integer coordinates.
    np.testing.assert_allclose(g.model_px_to_input_px([[0, 0], [511, 383]]), [[0.125, 0.125], [638.875, 478.875]])
    K = g.intrinsics_in_input(np.array([[100.0, 0, 256], [0, 100.0, 192], [0, 0, 1]]))
    np.testing.assert_allclose(K, [[125.0, 0, 320.125], [0, 125.0, 240.125], [0, 0, 1]])


def test_square_image_is_cropped_to_landscape():
    prepared = preprocess.preprocess_frame(np.zeros((600, 600, 3), np.uint8), mhmr_res=TINY_MHMR_RES)
    assert prepared.true_shape == (384, 512)
    assert prepared.geometry.crop_top_left == (64, 0)


def test_validate_converts_grayscale_and_rgba():
    gray = np.arange(40 * 50, dtype=np.uint8).reshape(40, 50)
    rgb = preprocess.validate_image(gray)
    assert rgb.shape == (40, 50, 3) and np.array_equal(rgb[..., 2], gray)
    np.testing.assert_array_equal(preprocess.validate_image(gray[..., None]), rgb)
    rgba = np.dstack([rgb, np.full_like(gray, 7)])
    np.testing.assert_array_equal(preprocess.validate_image(rgba), rgb)


@pytest.mark.parametrize(
    "image,message",
    [
        (np.zeros((40, 50, 3), np.uint16), "dtype uint16"),
        (np.zeros((40, 50, 3), np.float32), "dtype float32"),
        (np.zeros((40, 50, 2), np.uint8), "shape (40, 50, 2)"),
        (np.zeros((2, 40, 50, 3), np.uint8), "shape (2, 40, 50, 3)"),
        (np.zeros((0, 50, 3), np.uint8), "empty"),
        (np.zeros((10, 1000, 3), np.uint8), "at least one 16-px patch"),
        ([[0, 1]], "numpy.ndarray"),
    ],
)
def test_validate_rejects_with_clear_message(image, message):
    with pytest.raises((ValueError, TypeError), match="accepted|patch|size") as err:
        preprocess.validate_image(image)
    assert message in str(err.value)
