"""One-Euro filters on known signals, per-track state, and the engine and CLI with smoothing on."""

import json

import numpy as np
import pytest
import torch

from human3r_ros.cli.process import main
from human3r_ros.engine import Human3REngine
from human3r_ros.engine.frame_result import Person
from human3r_ros.engine.npz_schema import to_npz_dict
from human3r_ros.engine.one_euro import OneEuroSettings, RotationOneEuro, VectorOneEuro, smoothing_factor
from human3r_ros.engine.smoothing import PeopleSmoother
from human3r_ros.engine.smplx_pose import SMPLX_HEAD_JOINT, SMPLX_PELVIS_JOINT, axis_angle_to_rotmat

DT = 1.0 / 30.0


def rotz(angles) -> np.ndarray:
    angles = np.asarray(angles, dtype=np.float64)
    return axis_angle_to_rotmat(torch.from_numpy(np.stack([0 * angles, 0 * angles, angles], -1))).numpy()


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = (np.trace(np.swapaxes(a, -1, -2) @ b, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.arccos(np.clip(cos, -1.0, 1.0))


def run_1d(settings, signal, dt=DT) -> np.ndarray:
    """A scalar signal through a vector filter (one key, one row)."""
    f = VectorOneEuro(settings)
    return np.array([f.update([0], np.array([[[x, 0.0, 0.0]]]), dt)[0, 0, 0] for x in signal])


# --------------------------------------------------------------------------- filter maths

def test_constant_passes_unchanged():
    settings = OneEuroSettings(min_cutoff=0.5, beta=1.0)
    vectors = VectorOneEuro(settings)
    rotations = RotationOneEuro(settings)
    point, turn = np.array([[[1.5, -2.0, 3.25]]]), rotz([[2.5]])[None]
    for _ in range(10):
        np.testing.assert_array_equal(vectors.update([7], point, DT), point)
        np.testing.assert_allclose(rotations.update([7], turn, DT), turn, atol=1e-12)


def test_step_converges_with_the_time_constant_for_beta_zero():
    cutoff, dt = 1.0, 0.001
    out = run_1d(OneEuroSettings(min_cutoff=cutoff, beta=0.0), [0.0] + [1.0] * 1000, dt)
    alpha = smoothing_factor(cutoff, dt)
    np.testing.assert_allclose(alpha, 1.0 / (1.0 + 1.0 / (2 * np.pi * cutoff * dt)))
    np.testing.assert_allclose(out[1:], 1.0 - (1.0 - alpha) ** np.arange(1, 1001), rtol=1e-12)
    # 63 % of the step after one time constant tau = 1 / (2 pi fc)
    crossing = np.argmax(out >= 1.0 - np.exp(-1.0)) * dt
    assert crossing == pytest.approx(1.0 / (2 * np.pi * cutoff), abs=2 * dt)


def test_ramp_lag_shrinks_with_beta():
    speed, cutoff = 2.0, 1.0
    t = np.arange(300) * DT
    lags = [float(np.mean(speed * t[-30:] - run_1d(OneEuroSettings(cutoff, beta), speed * t)[-30:]))
            for beta in (0.0, 0.5, 2.0)]
    # steady state of a first-order low-pass on a ramp: lag = speed * tau = speed / (2 pi fc)
    assert lags[0] == pytest.approx(speed / (2 * np.pi * cutoff), rel=1e-3)
    assert lags[0] > lags[1] > lags[2] > 0
    # with beta, fc follows the speed estimate: the step from the previous estimate over dt,
    # i.e. speed + lag / dt (the paper's derivative of the sample against the last estimate)
    for beta, lag in zip((0.5, 2.0), lags[1:]):
        assert lag == pytest.approx(speed / (2 * np.pi * (cutoff + beta * (speed + lag / DT))), rel=1e-3)


def test_noise_is_reduced():
    rng = np.random.default_rng(3)
    noisy = 0.02 * rng.standard_normal(300)
    out = run_1d(OneEuroSettings(), noisy)
    jitter = lambda x: np.sqrt(np.mean(np.diff(x[30:], n=2) ** 2))  # noqa: E731
    assert jitter(out) < jitter(noisy) / 3


def test_rotation_crossing_pi_does_not_flip():
    settings = OneEuroSettings(min_cutoff=2.0, beta=0.2)
    truth = rotz(np.deg2rad(np.linspace(150.0, 210.0, 61)))  # 1 degree per frame, through 180
    on_so3 = RotationOneEuro(settings)
    filtered = np.stack([on_so3.update([0], r[None, None], DT)[0, 0] for r in truth])
    assert angle_between(filtered, truth).max() < np.deg2rad(3.0)  # a couple of frames of lag
    assert np.all(np.diff(np.unwrap(np.arctan2(filtered[:, 1, 0], filtered[:, 0, 0]))) > 0)  # keeps turning

    # the same rotations as axis-angle components jump from +pi to -pi: filtering those flips the body
    components = VectorOneEuro(settings)
    rotvecs = np.stack([[0.0, 0.0, np.angle(np.exp(1j * a))] for a in np.deg2rad(np.linspace(150.0, 210.0, 61))])
    naive = np.stack([components.update([0], v[None, None], DT)[0, 0] for v in rotvecs])
    assert angle_between(rotz(naive[:, 2]), truth).max() > np.deg2rad(90.0)


def test_huge_cutoff_is_the_identity():
    rng = np.random.default_rng(1)
    settings = OneEuroSettings(min_cutoff=1e12)
    samples = axis_angle_to_rotmat(torch.from_numpy(rng.normal(0, 1.0, (20, 2, 5, 3)))).numpy()
    rotations, vectors = RotationOneEuro(settings), VectorOneEuro(settings)
    for sample in samples:
        np.testing.assert_allclose(rotations.update([3, 9], sample, DT), sample, atol=1e-9)
        np.testing.assert_allclose(vectors.update([3, 9], sample[..., 0], DT), sample[..., 0], atol=1e-9)


def test_keys_absent_from_an_update_are_forgotten():
    f = VectorOneEuro(OneEuroSettings(min_cutoff=0.1, beta=0.0))
    f.update([1, 2], np.zeros((2, 1, 3)), DT)
    moved = f.update([2, 1], np.ones((2, 1, 3)), DT)
    assert np.all((moved > 0) & (moved < 0.1))  # both filtered
    f.update([2], np.ones((1, 1, 3)), DT)
    assert f.keys == [2]
    back = f.update([1, 2], np.full((2, 1, 3), 5.0), DT)
    np.testing.assert_array_equal(back[0], 5.0)  # key 1 starts anew from its first sample
    assert np.all(back[1] < 5.0)


def test_a_non_finite_sample_passes_through_and_is_not_kept():
    f = RotationOneEuro(OneEuroSettings())
    f.update([0, 1], rotz([[0.1], [0.2]]), DT)
    broken = rotz([[0.2], [0.3]])
    broken[0, 0, 1, 1] = np.nan
    out = f.update([0, 1], broken, DT)
    assert np.isnan(out[0]).any() and np.isfinite(out[1]).all()
    assert f.keys == [1]
    np.testing.assert_allclose(f.update([0, 1], rotz([[0.3], [0.4]]), DT)[0], rotz([0.3]), atol=1e-12)  # restarts


@pytest.mark.parametrize("field, value", [("min_cutoff", 0.0), ("d_cutoff", -1.0), ("beta", -0.1),
                                          ("min_cutoff", float("nan")), ("fallback_rate_hz", 0.0)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        OneEuroSettings(**{field: value})


def test_bad_updates_are_refused():
    f = VectorOneEuro(OneEuroSettings())
    with pytest.raises(ValueError, match="time step"):
        f.update([0], np.zeros((1, 1, 3)), 0.0)
    with pytest.raises(ValueError, match="distinct key"):
        f.update([0, 0], np.zeros((2, 1, 3)), DT)
    f.update([0], np.zeros((1, 1, 3)), DT)
    with pytest.raises(ValueError, match="shape"):
        f.update([0], np.zeros((1, 2, 3)), DT)


# --------------------------------------------------------------------------- people

def synthetic_person(track_id: int, head_world, yaw: float) -> Person:
    r = rotz(yaw).astype(np.float32)
    pose = np.zeros((4, 4), np.float32)
    pose[:3, :3], pose[:3, 3], pose[3, 3] = r, head_world, 1.0
    z3 = np.zeros(3, np.float32)
    return Person(
        track_id=track_id, score=0.9, global_orient=np.array([0, 0, yaw], np.float32),
        global_orient_world=np.array([0, 0, yaw], np.float32), body_pose=np.full((21, 3), 0.1, np.float32),
        left_hand_pose=np.zeros((15, 3), np.float32), right_hand_pose=np.zeros((15, 3), np.float32), jaw_pose=z3,
        betas=np.zeros(10, np.float32), expression=np.zeros(10, np.float32),
        head_position_cam=np.asarray(head_world, np.float32), head_position_world=np.asarray(head_world, np.float32),
        T_cam_head=pose, T_world_head=pose.copy(), image_location=np.zeros(2, np.float32),
        detection_cell=np.zeros(2, np.int64))


def test_smoother_drops_tracks_on_absence_time_reset_and_reset():
    smoother = PeopleSmoother(OneEuroSettings(min_cutoff=0.5, beta=0.0))
    eye = np.eye(4)
    smoother.smooth([synthetic_person(0, [0, 0, 2], 0.0), synthetic_person(1, [1, 0, 2], 0.0)], 1.0, eye)
    out = smoother.smooth([synthetic_person(0, [0.3, 0, 2], 0.3), synthetic_person(1, [1.3, 0, 2], 0.3)], 1.1, eye)
    assert 0 < out[0].head_position_world[0] < 0.3 and 0 < out[0].global_orient_world[2] < 0.3
    np.testing.assert_allclose(out[0].T_world_head[:3, 3], out[0].head_position_world, atol=1e-6)
    np.testing.assert_allclose(out[0].T_world_head[:3, :3], rotz(out[0].global_orient_world[2]), atol=1e-6)
    smoother.smooth([synthetic_person(1, [1.3, 0, 2], 0.3)], 1.2, eye)
    assert smoother.track_ids == [1]
    back = smoother.smooth([synthetic_person(0, [0.6, 0, 2], 0.6), synthetic_person(1, [1.6, 0, 2], 0.6)], 1.3, eye)
    assert back[0].head_position_world[0] == pytest.approx(0.6) and back[1].head_position_world[0] < 1.6
    again = smoother.smooth([synthetic_person(1, [1.9, 0, 2], 0.9)], 0.5, eye)  # time went backwards
    assert again[0].head_position_world[0] == pytest.approx(1.9)
    smoother.smooth([synthetic_person(1, [2.2, 0, 2], 0.9)], 0.6, eye)
    smoother.reset()
    assert smoother.track_ids == []
    assert smoother.smooth([synthetic_person(1, [2.5, 0, 2], 0.9)], 0.7, eye)[0].head_position_world[0] == \
        pytest.approx(2.5)
    assert smoother.smooth([], 0.8, eye) == [] and smoother.track_ids == []


def test_camera_frame_follows_the_smoothed_world_pose():
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = rotz(0.7), [1.0, -2.0, 0.5]
    smoother = PeopleSmoother(OneEuroSettings(min_cutoff=0.5))
    smoother.smooth([synthetic_person(4, [0, 0, 3], 0.0)], None, c2w)
    person = smoother.smooth([synthetic_person(4, [0.5, 0, 3], 0.5)], None, c2w)[0]  # no stamps: 30 Hz assumed
    np.testing.assert_allclose(c2w[:3, :3] @ person.head_position_cam + c2w[:3, 3], person.head_position_world,
                               atol=1e-5)
    np.testing.assert_allclose(c2w @ person.T_cam_head, person.T_world_head, atol=1e-5)
    speed = smoothing_factor(1.0, DT) * 0.5 / DT  # the speed estimate after one step of 0.5 m
    alpha = smoothing_factor(0.5 + OneEuroSettings.beta * speed, DT)
    assert person.head_position_world[0] == pytest.approx(alpha * 0.5, rel=1e-5)


# --------------------------------------------------------------------------- engine and CLI

def assert_person_consistent(p: Person, c2w: np.ndarray):
    def world(x):
        return x @ c2w[:3, :3].T + c2w[:3, 3]

    atol = 1e-4 * max(1.0, float(np.abs(p.vertices_world).max()))
    np.testing.assert_allclose(world(p.head_position_cam), p.head_position_world, atol=atol)
    np.testing.assert_allclose(world(p.vertices_cam), p.vertices_world, atol=atol)
    np.testing.assert_allclose(world(p.joints_cam), p.joints_world, atol=atol)
    np.testing.assert_allclose(p.joints_world[SMPLX_HEAD_JOINT], p.head_position_world, atol=atol)
    np.testing.assert_allclose(p.joints_world[SMPLX_PELVIS_JOINT], p.pelvis_position_world, atol=atol)
    np.testing.assert_allclose(p.T_world_body @ np.append(p.head_joint_body, 1.0), np.append(p.head_position_world, 1),
                               atol=atol)
    r_world = axis_angle_to_rotmat(torch.from_numpy(p.global_orient_world)).numpy()
    np.testing.assert_allclose(p.T_world_body[:3, :3], r_world, atol=1e-5)
    np.testing.assert_allclose(p.T_world_head[:3, :3], r_world, atol=1e-5)


def test_engine_smooths_people_consistently_and_reset_forgets(reference_dir):
    z = np.load(reference_dir / "tiny_plain_io.npz")
    frames = z["frames_uint8"][:4]
    engine = Human3REngine.from_checkpoint(reference_dir / "tiny_plain_checkpoint.pth", size=64, ttt3r=False,
                                           reset_interval=0, body_model_dir=reference_dir / "synthetic_smplx",
                                           smoothing=OneEuroSettings())
    results = [engine.step(f, stamp=0.1 * i) for i, f in enumerate(frames)]
    arrays = to_npz_dict(results)
    rows = z["hf_frame"] < len(frames)
    np.testing.assert_array_equal(arrays["hf_frame"], z["hf_frame"][rows])  # same people, same ids
    np.testing.assert_array_equal(arrays["hf_smpl_id"], z["hf_smpl_id"][rows])
    for r in results:
        for p in r.people:
            assert_person_consistent(p, r.c2w.astype(np.float64))

    # track 0 is seen in frames 0, 1 (smoothed there), missed in 2, back in 3 (from its raw sample)
    ids, frame_of = z["hf_smpl_id"], z["hf_frame"]
    raw = {(int(f), int(i)): k for k, (f, i) in enumerate(zip(frame_of, ids))}
    ours = {(int(f), int(i)): k for k, (f, i) in enumerate(zip(arrays["hf_frame"], arrays["hf_smpl_id"]))}
    assert (0, 0) in raw and (1, 0) in raw and (2, 0) not in raw and (3, 0) in raw
    for key in ("hf_transl_world", "hf_body_pose", "hf_verts_world"):
        for seen in [(0, 0), (3, 0)]:
            np.testing.assert_allclose(arrays[key][ours[seen]], z[key][raw[seen]], atol=1e-4)
    previous, raw_now, smooth_now = (z["hf_transl_world"][raw[(0, 0)]], z["hf_transl_world"][raw[(1, 0)]],
                                     arrays["hf_transl_world"][ours[(1, 0)]])
    fraction = (smooth_now - previous) / (raw_now - previous)
    assert 0.05 < fraction.mean() < 0.95 and np.ptp(fraction) < 1e-3  # moved part of the way, straight towards it
    assert not np.allclose(arrays["hf_body_pose"][ours[(1, 0)]], z["hf_body_pose"][raw[(1, 0)]], atol=1e-4)

    engine.reset()
    again = [engine.step(f, stamp=0.1 * i) for i, f in enumerate(frames[:2])]
    for before, after in zip(results[:2], again):
        for p, q in zip(before.people, after.people):
            np.testing.assert_allclose(p.vertices_world, q.vertices_world, atol=1e-5)


def test_cli_smoothing_option(reference_dir, tmp_path, capsys):
    source, output = tmp_path / "frames.npz", tmp_path / "out.npz"
    z = np.load(reference_dir / "tiny_plain_io.npz")
    np.savez(source, frames_uint8=z["frames_uint8"][:2])
    base = ["--checkpoint", str(reference_dir / "tiny_plain_checkpoint.pth"), "--input", str(source),
            "--output", str(output), "--size", "64", "--no-progress", "--no-ttt3r", "--reset-interval", "0"]
    assert main(base + ["--smoothing", "one_euro", "--smoothing-beta", "0.5"]) == 0
    out = np.load(output)
    meta = json.loads(str(out["meta_json"]))
    assert meta["smoothing"] == "one_euro" and meta["smoothing_settings"]["beta"] == 0.5
    rows = z["hf_frame"] < 2
    np.testing.assert_array_equal(out["hf_smpl_id"], z["hf_smpl_id"][rows])
    second = np.flatnonzero((z["hf_frame"][rows] == 1) & (z["hf_smpl_id"][rows] == 0))[0]
    assert not np.allclose(out["hf_transl_world"][second], z["hf_transl_world"][second], atol=1e-4)

    output.unlink()
    assert main(base + ["--smoothing", "one_euro", "--smoothing-min-cutoff", "0"]) == 1
    err = capsys.readouterr().err
    assert "error: --smoothing one_euro: one-euro min_cutoff must be a finite number > 0" in err
    assert not output.exists()
