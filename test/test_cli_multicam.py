"""human3r-process with several cameras: two .npz inputs or one bag's two image topics, a rig
file, per-camera arrays equal to a single-camera run, fused people joining both copies."""

import json

import numpy as np
from test_bags import T0, write_bag
from test_cli_process import cli_args, fixture
from test_engine import assert_matches_reference

from human3r_ros.cli.process import main

IDENTITY = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def rig_file(tmp_path, cameras):
    path = tmp_path / "rig.yaml"
    path.write_text("extrinsics:\n" + "".join(f"  {c}: {IDENTITY}\n" for c in cameras))
    return path


def split(out, camera):
    prefix = f"{camera}/"
    return {k[len(prefix):]: out[k] for k in out.files if k.startswith(prefix)}


def check_two_cameras(out, z, cameras):
    for camera in cameras:
        assert_matches_reference(split(out, camera), z)
    meta = json.loads(str(out["meta_json"]))
    assert meta["cameras"] == list(cameras) and meta["fused_sets"] == len(z["frames_uint8"])
    # every fused person joins its two copies: the same track id in both cameras
    views = [json.loads(str(v)) for v in out["fused_views_json"]]
    assert len(views) == len(z["hf_smpl_id"])
    assert all(sorted(v) == sorted(cameras) and len(set(v.values())) == 1 for v in views)
    # at the same place: the rig world is the cameras' first pose (identity extrinsics)
    first = split(out, cameras[0])
    anchor = np.linalg.inv(first["frame_c2w"][0])
    for row, (set_index, view) in enumerate(zip(out["fused_set"], views)):
        person = np.flatnonzero((first["hf_frame"] == set_index) & (first["hf_smpl_id"] == view[cameras[0]]))[0]
        head = anchor[:3, :3] @ first["hf_transl_world"][person] + anchor[:3, 3]
        np.testing.assert_allclose(out["fused_head_position_world"][row], head, atol=1e-4)


def test_two_file_inputs_with_a_rig(reference_dir, tmp_path):
    z = fixture(reference_dir)
    for camera in ("front", "left"):
        np.savez(tmp_path / f"{camera}.npz", frames_uint8=z["frames_uint8"])
    output = tmp_path / "rig.npz"
    args = cli_args(reference_dir, "plain", tmp_path / "front.npz", output, "--input", tmp_path / "left.npz",
                    "--extrinsics", rig_file(tmp_path, ("front", "left")), body=True)
    assert main(args) == 0
    with np.load(output) as out:
        check_two_cameras(out, z, ("front", "left"))


def test_one_bag_two_topics(reference_dir, tmp_path):
    z = fixture(reference_dir)
    frames = z["frames_uint8"]
    bag = write_bag(tmp_path / "in_bag", frames, [T0 + 0.1 * k for k in range(len(frames))], storage="mcap",
                    topics=("/front/image", "/left/image"))
    output = tmp_path / "rig.npz"
    args = cli_args(reference_dir, "plain", bag, output, "--image-topic", "/front/image", "--image-topic",
                    "/left/image", "--extrinsics", rig_file(tmp_path, ("front/image", "left/image")), body=True)
    assert main(args) == 0
    with np.load(output) as out:
        check_two_cameras(out, z, ("front/image", "left/image"))


def test_bad_rig_files_are_refused(reference_dir, tmp_path, capsys):
    z = fixture(reference_dir)
    for camera in ("front", "left"):
        np.savez(tmp_path / f"{camera}.npz", frames_uint8=z["frames_uint8"])
    rig = tmp_path / "rig.yaml"
    rig.write_text("extrinsics:\n  back: [0, 0, 0, 0, 0, 0, 1]\n")
    args = cli_args(reference_dir, "plain", tmp_path / "front.npz", tmp_path / "out.npz", "--input",
                    tmp_path / "left.npz", "--extrinsics", rig)
    assert main(args) == 1
    assert "['back'] are not among the inputs" in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists()
