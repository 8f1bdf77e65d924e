"""The scene cloud selected where the pointmap lives (``Human3REngine.cloud_only``): the same
points, colours and order as the cloud built from a frame's dense maps, one rule for both."""

import numpy as np
import pytest
import torch

from human3r_ros.engine.scene_cloud import CloudSelection, kept_pixels
from human3r_ros.ros.msg_arrays import cloud_points, frame_colours, scene_cloud_points
from test_engine import make_engine

SELECTIONS = [CloudSelection(), CloudSelection(2, 1.5, True), CloudSelection(3, 1.2, False),
              CloudSelection(1, 1.0, True, 0.2)]


def test_numpy_and_torch_keep_the_same_pixels_with_non_finite_points():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(9, 14, 3)).astype(np.float32)
    points[1, 2, 0], points[4, 4, 2], points[6, 10, 1] = np.nan, np.inf, -np.inf
    conf, mask = (1 + 2 * rng.random((9, 14))).astype(np.float32), rng.random((9, 14)).astype(np.float32)
    for selection in SELECTIONS:
        on_numpy = kept_pixels(points, conf, mask, selection)
        on_torch = kept_pixels(*map(torch.from_numpy, (points, conf, mask)), selection)
        np.testing.assert_array_equal(on_torch.numpy(), on_numpy)
        rows, cols = np.divmod(on_numpy, 14)
        assert (rows % selection.stride == 0).all() and (cols % selection.stride == 0).all()
        assert np.isfinite(points.reshape(-1, 3)[on_numpy]).all()
        assert (conf.reshape(-1)[on_numpy] >= selection.min_confidence).all()
        if selection.remove_humans:
            assert (mask.reshape(-1)[on_numpy] < selection.mask_threshold).all()
    assert len(kept_pixels(points, None, None, CloudSelection())) == points[..., 0].size - 3


def test_a_stride_below_one_is_refused():
    with pytest.raises(ValueError, match="stride must be >= 1"):
        CloudSelection(0)


@pytest.mark.parametrize("case", ["plain", "reset"])
def test_cloud_only_frames_carry_the_dense_frames_cloud_and_the_same_people(reference_dir, case):
    frames = np.load(reference_dir / f"tiny_{case}_io.npz")["frames_uint8"]
    dense_engine = make_engine(reference_dir, case)
    dense = [dense_engine.step(f, stamp=0.1 * i) for i, f in enumerate(frames)]
    masked = 0
    for selection in SELECTIONS:
        engine = make_engine(reference_dir, case)
        engine.cloud_only = selection
        selected = [engine.step(f, stamp=0.1 * i) for i, f in enumerate(frames)]
        for full, only in zip(dense, selected):
            assert only.pts3d_world is None and only.conf is None and only.depth is None and only.det_scores is None
            assert only.cloud.pixels.dtype == np.int64
            want = cloud_points(full.pts3d_world, frame_colours(full), conf=full.conf,
                                conf_threshold=selection.min_confidence, stride=selection.stride,
                                human_mask=full.human_mask if selection.remove_humans else None,
                                mask_threshold=selection.mask_threshold)
            assert scene_cloud_points(only.cloud, frame_colours(only)).tobytes() == want.tobytes()
            for name in ("human_mask", "c2w", "intrinsics", "image"):
                np.testing.assert_array_equal(getattr(only, name), getattr(full, name))
            assert [p.track_id for p in only.people] == [p.track_id for p in full.people]
            for mine, theirs in zip(only.people, full.people):
                np.testing.assert_array_equal(mine.vertices_world, theirs.vertices_world)
            if selection.remove_humans:
                masked += int((full.human_mask[::selection.stride, ::selection.stride]
                               >= selection.mask_threshold).sum())
    assert masked > 0, "the case should have human pixels for remove_humans to leave out"
