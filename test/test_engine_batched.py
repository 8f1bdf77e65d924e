"""Several cameras on one engine: a batched step equals stepping each camera alone.

Cameras are made from the shared fixtures' frames in different orders, offsets and sizes, so
that in one batched pass the cameras hold different numbers of people (padded decoder
queries), different states (fresh or not, TTT3R gated or not) and reset boundaries.
"""

import json

import numpy as np
import pytest
import torch

from helpers import assert_close_ref
from human3r_ros.engine import Human3REngine
from human3r_ros.engine.npz_schema import to_npz_dict
from human3r_ros.engine.preprocess import preprocess_frame
from human3r_ros.engine.recurrent import RecurrentState
from human3r_ros.model import load_checkpoint

COMPARED_KEYS = [
    "frame_c2w", "frame_pts3d_world", "frame_conf_world", "frame_depth", "frame_det_scores", "frame_msk",
    "frame_intrinsics", "hf_score", "hf_global_orient", "hf_global_orient_world", "hf_body_pose",
    "hf_betas", "hf_expression", "hf_transl_cam", "hf_transl_world", "hf_image_location",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny networks on a shared 2-core machine: one thread is ~10x faster than two competing
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_net(reference_dir):
    # the three tiny cases share their weights; they differ in the engine's settings
    return load_checkpoint(reference_dir / "tiny_plain_checkpoint.pth")


@pytest.fixture
def load_case(reference_dir, tiny_net):
    def load(case):
        z = np.load(reference_dir / f"tiny_{case}_io.npz")
        meta = json.loads(str(z["meta_json"]))
        engine = Human3REngine(tiny_net, ttt3r=meta["use_ttt3r"], reset_interval=meta["reset_interval"] or 0, size=64)
        return engine, z["frames_uint8"]

    return load


def run_alone(engine, camera_frames):
    """Each camera on its own stream, one image at a time."""
    results = []
    for frames in camera_frames:
        stream = engine.new_stream()
        results.append([engine.step(frame, stamp=0.1 * i, stream=stream) for i, frame in enumerate(frames)])
    return results


def run_batched(engine, camera_frames):
    """All cameras' i-th images in one step_many call per i."""
    streams = [engine.new_stream() for _ in camera_frames]
    results = [[] for _ in camera_frames]
    for i in range(len(camera_frames[0])):
        step = engine.step_many([(s, frames[i], 0.1 * i) for s, frames in zip(streams, camera_frames)])
        for per_camera, result in zip(results, step):
            per_camera.append(result)
    return results


def assert_same_results(batched, alone, name):
    got, expected = to_npz_dict(batched), to_npz_dict(alone)
    np.testing.assert_array_equal(got["hf_frame"], expected["hf_frame"], err_msg=f"{name}: people per frame")
    np.testing.assert_array_equal(got["hf_smpl_id"], expected["hf_smpl_id"], err_msg=f"{name}: track ids")
    np.testing.assert_array_equal(got["frame_reset"], expected["frame_reset"], err_msg=f"{name}: resets")
    for key in COMPARED_KEYS:
        assert_close_ref(got[key], expected[key], f"{name} {key}")


def people_counts(results_per_camera):
    return np.array([[len(r.people) for r in results] for results in results_per_camera])


@pytest.mark.parametrize("case", ["plain", "ttt3r"])
def test_three_cameras_batched_equal_each_camera_alone(load_case, case):
    engine, frames = load_case(case)
    cameras = [frames, np.roll(frames, 2, axis=0), frames[::-1]]
    batched = run_batched(engine, cameras)
    alone = run_alone(engine, cameras)
    counts = people_counts(alone)
    assert (counts.min(axis=0) != counts.max(axis=0)).any(), "no batch mixed different numbers of people"
    assert counts.sum() > 0
    for camera, (got, expected) in enumerate(zip(batched, alone)):
        assert_same_results(got, expected, f"{case} camera {camera}")


def test_camera_batched_with_itself_equals_the_single_camera_engine(load_case):
    engine, frames = load_case("ttt3r")
    single = [engine.step(frame, stamp=0.1 * i) for i, frame in enumerate(frames)]  # default stream
    first, second = run_batched(engine, [frames, frames])
    assert_same_results(first, single, "first copy")
    assert_same_results(second, single, "second copy")


def test_reset_boundary_in_one_camera_only(load_case):
    engine, frames = load_case("reset")  # a periodic reset every 3 images
    late, early = engine.new_stream(), engine.new_stream()
    engine.step(frames[-1], stream=early)  # one image ahead: its boundaries fall elsewhere
    late_alone, early_alone = engine.new_stream(), engine.new_stream()
    engine.step(frames[-1], stream=early_alone)
    batched = [engine.step_many([(late, f, None), (early, f, None)]) for f in frames]
    alone = [[engine.step(f, stream=late_alone), engine.step(f, stream=early_alone)] for f in frames]
    resets = np.array([[r.reset for r in pair] for pair in batched])
    assert (resets[:, 0] != resets[:, 1]).any() and resets.any(axis=0).all()
    for camera in range(2):
        assert_same_results([p[camera] for p in batched], [p[camera] for p in alone], f"camera {camera}")


def test_cameras_with_different_image_sizes(load_case):
    engine, frames = load_case("plain")
    portrait = np.ascontiguousarray(frames.transpose(0, 2, 1, 3))
    cameras = [frames, portrait, np.roll(frames, 1, axis=0)]
    batched = run_batched(engine, cameras)
    alone = run_alone(engine, cameras)
    shapes = {r[0].depth.shape for r in batched}
    assert shapes == {(48, 64), (64, 48)}
    for camera, (got, expected) in enumerate(zip(batched, alone)):
        assert_same_results(got, expected, f"camera {camera}")


def test_resetting_one_camera_leaves_the_others(load_case):
    engine, frames = load_case("ttt3r")
    kept, restarted = engine.new_stream(), engine.new_stream()
    for f in frames[:3]:
        engine.step_many([(kept, f, None), (restarted, f, None)])
    engine.reset(restarted)
    assert restarted.count == 0 and restarted.recurrent.fresh
    tail = [engine.step_many([(kept, f, None), (restarted, f, None)]) for f in frames[3:]]
    fresh = engine.new_stream()
    assert_same_results([p[1] for p in tail], [engine.step(f, stream=fresh) for f in frames[3:]], "restarted")
    continued = engine.new_stream()
    expected = [engine.step(f, stream=continued) for f in frames][3:]
    assert_same_results([p[0] for p in tail], expected, "kept")
    assert [p[0].index for p in tail] == [3, 4, 5]


def test_step_many_rejects_a_stream_given_twice(load_case):
    engine, frames = load_case("plain")
    stream = engine.new_stream()
    with pytest.raises(ValueError, match="stream was given twice"):
        engine.step_many([(stream, frames[0], None), (stream, frames[1], None)])
    assert stream.count == 0


def test_padded_batch_keeps_each_views_ttt3r_gate_and_outputs(reference_dir):
    """At the network: views with 1, 2 and 4 people in one pass (padded queries)."""
    net = load_checkpoint(reference_dir / "tiny_ttt3r_checkpoint.pth")  # all heads: not the engine's net
    frames = np.load(reference_dir / "tiny_ttt3r_io.npz")["frames_uint8"]
    views = [preprocess_frame(frames[i], 64, mhmr_res=net.config.mhmr_img_res) for i in (0, 1, 3)]
    gen = torch.Generator().manual_seed(0)
    initial = RecurrentState.initial(*net.initial_state())
    # three different non-fresh states: the initial one plus noise
    states = [initial.state + 0.1 * torch.randn(initial.state.shape, generator=gen) for _ in views]
    memories = [initial.memory + 0.1 * torch.randn(initial.memory.shape, generator=gen) for _ in views]
    outs = net.forward_views(
        torch.stack([v.img for v in views]), torch.stack([v.img_mhmr for v in views]),
        torch.cat(states), torch.cat(memories), [False, True, False], want_gate=True,
    )
    assert [int(o.humans.view.numel()) for o in outs] == [1, 2, 4]
    for i, (view, out) in enumerate(zip(views, outs)):
        alone = net.forward_view(
            view.img[None], view.img_mhmr[None], states[i], memories[i], i == 1, want_gate=True,
        )
        assert_close_ref(out.ttt3r_gate, alone.ttt3r_gate, f"view {i} gate")
        assert_close_ref(out.new_state, alone.new_state, f"view {i} new state")
        assert_close_ref(out.new_memory, alone.new_memory, f"view {i} new memory")
        assert_close_ref(out.tok_track, alone.tok_track, f"view {i} track tokens")
        for key in ("pts3d_cam", "conf_cam", "camera_pose_enc"):
            assert_close_ref(out.dense[key], alone.dense[key], f"view {i} {key}")
        for key in ("smpl_rotmat", "smpl_shape", "smpl_transl", "smpl_expression"):
            assert_close_ref(out.smpl[key], alone.smpl[key], f"view {i} {key}")
        assert torch.equal(out.humans.row, alone.humans.row) and torch.equal(out.humans.view, alone.humans.view)
