"""human3r-process on files: .npz arrays, image folders and videos against the reference fixtures,
and every kind of bad input (one message, non-zero exit, no output left behind)."""

import json
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO_ROOT
from test_engine import PERSON_KEYS, assert_matches_reference

from helpers import assert_close_ref, interrupt_cli_after_frames
from human3r_ros.cli.process import main

# CLI flags reproducing each fixture case (see its meta_json)
CASE_FLAGS = {
    "plain": ["--no-ttt3r", "--reset-interval", "0"],
    "ttt3r": ["--ttt3r", "--reset-interval", "0"],
    "reset": ["--no-ttt3r", "--reset-interval", "3"],
}
MESH_KEYS = {"hf_verts_cam", "hf_joints_cam", "hf_transl_pelvis_cam", "hf_verts_world", "hf_joints_world",
             "hf_T_world_body", "hf_T_cam_body", "hf_j_head_body"}
POSE_KEYS = [k for k in PERSON_KEYS if k not in MESH_KEYS]
FRAME_KEYS = ["frame_c2w", "frame_focal", "frame_pts3d_world", "frame_conf_world", "frame_msk"]


def cli_args(reference_dir, case, source, output, *extra, body=False):
    args = ["--checkpoint", str(reference_dir / f"tiny_{case}_checkpoint.pth"), "--input", str(source),
            "--output", str(output), "--size", "64", "--no-progress", *CASE_FLAGS[case], *extra]
    if body:
        args += ["--body-model", str(reference_dir / "synthetic_smplx")]
    return [str(a) for a in args]


def fixture(reference_dir, case="plain"):
    return np.load(reference_dir / f"tiny_{case}_io.npz")


def frames_npz(reference_dir, tmp_path, case="plain"):
    path = tmp_path / "frames.npz"
    np.savez(path, frames_uint8=fixture(reference_dir, case)["frames_uint8"])
    return path


def assert_same_poses(out, z):
    """Everything the engine gives without a body model, against the fixture."""
    np.testing.assert_array_equal(out["hf_frame"], z["hf_frame"])
    np.testing.assert_array_equal(out["hf_smpl_id"], z["hf_smpl_id"])
    for key in FRAME_KEYS + POSE_KEYS:
        assert_close_ref(out[key], z[key], key)


def assert_failed_cleanly(rc, capsys, folder, *words, keep=()):
    """Exit code != 0, exactly one error line naming `words`, no traceback, and nothing in `folder`
    except the inputs (`keep`): no output, no partial file."""
    err = capsys.readouterr().err
    assert rc != 0
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in errors[0], errors[0]
    assert sorted(p.name for p in folder.iterdir()) == sorted(keep)
    return errors[0]


# --------------------------------------------------------------------------- reference parity

@pytest.mark.parametrize("case", ["plain", "ttt3r", "reset"])
def test_npz_input_matches_reference(reference_dir, tmp_path, case):
    z = fixture(reference_dir, case)
    source, output = frames_npz(reference_dir, tmp_path, case), tmp_path / "out.npz"
    assert main(cli_args(reference_dir, case, source, output, body=True)) == 0
    out = np.load(output)
    assert_matches_reference(out, z)
    n = len(z["frames_uint8"])
    np.testing.assert_allclose(out["frame_stamp"], np.arange(n) / 30.0)
    np.testing.assert_array_equal(out["frame_index"], np.arange(n))
    assert out["frame_reset"].tolist() == [case == "reset" and i % 3 == 2 for i in range(n)]
    meta = json.loads(str(out["meta_json"]))
    assert meta["frames"] == n and meta["ttt3r"] == (case == "ttt3r") and not meta["interrupted"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.npz", "out.npz"]  # no temporary left


def test_console_entry_point_in_a_subprocess(reference_dir, tmp_path):
    z = fixture(reference_dir)
    source, output = frames_npz(reference_dir, tmp_path), tmp_path / "out.npz"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    # the first two frames (0 and 1/30 s): outputs are causal, so they match the fixture's first two
    run = subprocess.run([sys.executable, "-m", "human3r_ros.cli.process",
                          *cli_args(reference_dir, "plain", source, output, "--duration", "0.05")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "wrote 2 frames" in run.stderr
    out = np.load(output)
    rows = z["hf_frame"] < 2
    np.testing.assert_array_equal(out["hf_smpl_id"], z["hf_smpl_id"][rows])
    for key in FRAME_KEYS:
        assert_close_ref(out[key], z[key][:2], key)
    for key in POSE_KEYS:
        assert_close_ref(out[key], z[key][rows], key)


def test_image_folder_gives_the_same(reference_dir, tmp_path):
    z = fixture(reference_dir)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, frame in enumerate(z["frames_uint8"]):
        # f0, f2, ..., f10: natural order puts f10 last (plain string order would not)
        ext = ".png" if i % 2 else ".bmp"  # lossless formats only
        assert cv2.imwrite(str(folder / f"f{2 * i}{ext}"), frame[..., ::-1])  # OpenCV writes BGR
    (folder / "notes.txt").write_text("not an image")
    output = tmp_path / "out.npz"
    assert main(cli_args(reference_dir, "plain", folder, output)) == 0
    assert_same_poses(np.load(output), z)


def test_grayscale_and_rgba_images_are_converted(reference_dir, tmp_path):
    frame = fixture(reference_dir)["frames_uint8"][0]
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
    cv2.imwrite(str(folder / "b.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGRA))
    output = tmp_path / "out.npz"
    assert main(cli_args(reference_dir, "plain", folder, output)) == 0
    assert np.load(output)["frame_c2w"].shape == (2, 4, 4)


def test_video_input_runs_and_counts_frames(reference_dir, tmp_path):
    frames = fixture(reference_dir)["frames_uint8"][:, :, :100]  # FFV1 wants an even width
    video = tmp_path / "clip.mkv"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (100, 78))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    output = tmp_path / "out.npz"
    # --start/--duration in frame time at the video's 10 fps: frames 2, 3, 4 of 0.0, 0.1, ..., 0.5 s
    assert main(cli_args(reference_dir, "plain", video, output, "--start", "0.2", "--duration", "0.3")) == 0
    out = np.load(output)
    np.testing.assert_allclose(out["frame_stamp"], [0.2, 0.3, 0.4])
    assert json.loads(str(out["meta_json"]))["fps"] == 10.0


# --------------------------------------------------------------------------- bad inputs

def _png_folder(tmp_path, images):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        assert cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    return folder


def test_missing_checkpoint(reference_dir, tmp_path, capsys):
    source = frames_npz(reference_dir, tmp_path)
    args = cli_args(reference_dir, "plain", source, tmp_path / "out.npz")
    args[args.index("--checkpoint") + 1] = str(tmp_path / "nope.pth")
    assert_failed_cleanly(main(args), capsys, tmp_path, "checkpoint not found", "nope.pth", keep=["frames.npz"])


def test_corrupt_checkpoint_leaves_no_output(reference_dir, tmp_path, capsys):
    source = frames_npz(reference_dir, tmp_path)
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint" * 100)
    args = cli_args(reference_dir, "plain", source, tmp_path / "out.npz")
    args[args.index("--checkpoint") + 1] = str(tmp_path / "bad.pth")
    assert_failed_cleanly(main(args), capsys, tmp_path, "cannot load the model", "bad.pth",
                          keep=["frames.npz", "bad.pth"])


def test_missing_body_model_file(reference_dir, tmp_path, capsys):
    source = frames_npz(reference_dir, tmp_path)
    (tmp_path / "models").mkdir()
    args = cli_args(reference_dir, "plain", source, tmp_path / "out.npz") + ["--body-model", str(tmp_path / "models")]
    assert_failed_cleanly(main(args), capsys, tmp_path, "SMPLX_NEUTRAL.npz", keep=["frames.npz", "models"])


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 1000], ids=["empty", "garbage"])
def test_unreadable_video(reference_dir, tmp_path, capsys, content):
    video = tmp_path / "clip.mp4"
    video.write_bytes(content)
    rc = main(cli_args(reference_dir, "plain", video, tmp_path / "out.npz"))
    assert_failed_cleanly(rc, capsys, tmp_path, "clip.mp4", keep=["clip.mp4"])


def test_empty_folder(reference_dir, tmp_path, capsys):
    folder = _png_folder(tmp_path, [])
    (folder / "readme.txt").write_text("no images here")
    rc = main(cli_args(reference_dir, "plain", folder, tmp_path / "out.npz"))
    assert_failed_cleanly(rc, capsys, tmp_path, "no image files", keep=["images"])


def test_16_bit_image_is_refused(reference_dir, tmp_path, capsys):
    frame = fixture(reference_dir)["frames_uint8"][0]
    folder = _png_folder(tmp_path, [frame.astype(np.uint16) * 257])
    rc = main(cli_args(reference_dir, "plain", folder, tmp_path / "out.npz"))
    assert_failed_cleanly(rc, capsys, tmp_path, "000.png", "16-bit", "8 bits", keep=["images"])


def test_bad_image_mid_stream_leaves_no_output(reference_dir, tmp_path, capsys):
    frames = fixture(reference_dir)["frames_uint8"]
    folder = _png_folder(tmp_path, [frames[0][..., ::-1], frames[1][..., ::-1], frames[2].astype(np.uint16) * 257])
    rc = main(cli_args(reference_dir, "plain", folder, tmp_path / "out.npz"))
    assert_failed_cleanly(rc, capsys, tmp_path, "002.png", "16-bit", keep=["images"])


def test_image_smaller_than_a_patch(reference_dir, tmp_path, capsys):
    folder = _png_folder(tmp_path, [np.full((6, 40, 3), 128, np.uint8)])
    rc = main(cli_args(reference_dir, "plain", folder, tmp_path / "out.npz"))
    assert_failed_cleanly(rc, capsys, tmp_path, "000.png", "patch", keep=["images"])


def test_npz_without_frames(reference_dir, tmp_path, capsys):
    source = tmp_path / "frames.npz"
    np.savez(source, images=np.zeros((2, 64, 64, 3), np.uint8))
    rc = main(cli_args(reference_dir, "plain", source, tmp_path / "out.npz"))
    assert_failed_cleanly(rc, capsys, tmp_path, "frames_uint8", "images", keep=["frames.npz"])


def test_bag_output_needs_a_bag_input(reference_dir, tmp_path, capsys):
    source = frames_npz(reference_dir, tmp_path)
    rc = main(cli_args(reference_dir, "plain", source, tmp_path / "out.mcap"))
    assert_failed_cleanly(rc, capsys, tmp_path, ".npz output", keep=["frames.npz"])


def test_existing_output_is_kept_without_overwrite(reference_dir, tmp_path, capsys):
    source = frames_npz(reference_dir, tmp_path)
    (tmp_path / "out.npz").write_bytes(b"precious")
    rc = main(cli_args(reference_dir, "plain", source, tmp_path / "out.npz"))
    assert_failed_cleanly(rc, capsys, tmp_path, "--overwrite", keep=["frames.npz", "out.npz"])
    assert (tmp_path / "out.npz").read_bytes() == b"precious"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_npz_run_leaves_no_partial_file(reference_dir, tmp_path, signum):
    frames = np.concatenate([fixture(reference_dir)["frames_uint8"]] * 200)  # far more than run before the signal
    source = tmp_path / "clip.npz"
    np.savez(source, frames_uint8=frames)
    output = tmp_path / "out.npz"
    args = [a for a in cli_args(reference_dir, "plain", source, output) if a != "--no-progress"]
    interrupt_cli_after_frames(args, signum, len(frames))
    # the frames done, written whole and marked interrupted; no temporary file left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npz", "out.npz"]
    with np.load(output) as out:
        meta = json.loads(str(out["meta_json"]))
        assert meta["interrupted"] and 2 <= meta["frames"] < 1200
        assert len(out["frame_index"]) == meta["frames"]
