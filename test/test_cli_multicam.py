"""human3r-process with several cameras: two .npz inputs or one bag's two image topics, a rig
file, per-camera arrays equal to a single-camera run, fused people joining both copies; a bag
output with the node's per-camera topics and frames and the fused people."""

import json

import numpy as np
from scipy.spatial.transform import Rotation
from test_bags import NS, T0, read_bag, stamp_ns, write_bag
from test_cli_process import assert_failed_cleanly, cli_args, fixture
from test_engine import assert_matches_reference

from human3r_ros.cli.bag_messages import OutputOptions, camera_options
from human3r_ros.cli.process import main
from human3r_ros.ros.msg_arrays import CLOUD_POINT_DTYPE

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


def tf_pairs(bag, parent_prefix=""):
    """(parent, child) frame pairs over every /tf message."""
    return {(t.header.frame_id, t.child_frame_id) for _, msg in bag["/tf"] for t in msg.transforms
            if t.header.frame_id.startswith(parent_prefix)}


def test_one_bag_two_topics_to_a_bag(reference_dir, tmp_path):
    z = fixture(reference_dir)
    frames = z["frames_uint8"]
    stamps_s = [T0 + 0.1 * k for k in range(len(frames))]
    bag_in = write_bag(tmp_path / "in_bag", frames, stamps_s, storage="mcap", topics=("/front", "/left"))
    output = tmp_path / "rig.mcap"
    args = cli_args(reference_dir, "plain", bag_in, output, "--image-topic", "/front", "--image-topic", "/left",
                    "--extrinsics", rig_file(tmp_path, ("front", "left")), "--copy-input", body=True)
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in_bag", "rig.mcap", "rig.yaml"]
    bag = read_bag(output)
    input_stamps = [round(s * NS) for s in stamps_s]
    pairs = tf_pairs(bag)
    for camera in ("front", "left"):
        # every camera: one HumanArray per frame at the input stamps, in its own world frame
        humans = [msg for _, msg in bag[f"/human3r/{camera}/humans"]]
        assert [stamp_ns(m) for m in humans] == input_stamps
        assert {m.header.frame_id for m in humans} == {f"human3r_world_{camera}"}
        assert sum(len(m.humans) for m in humans) == len(z["hf_smpl_id"])
        for topic in ("scene/points", "camera_path"):
            assert [stamp_ns(m) for _, m in bag[f"/human3r/{camera}/{topic}"]] == input_stamps
        assert len(bag[f"/{camera}"]) == len(frames)  # --copy-input
        # its TF: the camera and its bodies under names of its own
        world = f"human3r_world_{camera}"
        assert (world, f"human3r_camera_{camera}") in pairs
        children = {child for parent, child in pairs if parent == world}
        assert children - {f"human3r_camera_{camera}"}
        assert all(c.startswith(f"body_{camera}_") for c in children - {f"human3r_camera_{camera}"})
    assert "/human3r/camera_path" not in bag
    # the rig world's cloud per frame set: the cameras' clouds, in rig order, placed by their worlds' TF
    anchors = {(stamp_ns(t), t.child_frame_id): t.transform for _, msg in bag["/tf"] for t in msg.transforms
               if t.header.frame_id == "human3r_world" and t.child_frame_id.startswith("human3r_world_")}
    merged = bag["/human3r/scene/points"]
    assert [stamp_ns(m) for _, m in merged] == input_stamps
    for k, (_, cloud) in enumerate(merged):
        assert cloud.header.frame_id == "human3r_world"
        want = []
        for camera in ("front", "left"):
            part = np.frombuffer(bytes(bag[f"/human3r/{camera}/scene/points"][k][1].data), CLOUD_POINT_DTYPE)
            t = anchors[(input_stamps[k], f"human3r_world_{camera}")]
            rotation = Rotation.from_quat([t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w]).as_matrix()
            xyz = np.stack([part[a] for a in "xyz"], -1) @ rotation.T + [t.translation.x, t.translation.y,
                                                                          t.translation.z]
            want.append((xyz, part["rgb"]))
        got = np.frombuffer(bytes(cloud.data), CLOUD_POINT_DTYPE)
        assert len(got) == sum(len(rgb) for _, rgb in want) > 0
        np.testing.assert_allclose(np.stack([got[a] for a in "xyz"], -1), np.concatenate([x for x, _ in want]),
                                   atol=1e-5)
        np.testing.assert_array_equal(got["rgb"], np.concatenate([rgb for _, rgb in want]))
    # the fused people: one HumanArray per frame set in the rig world, each person's views named
    fused = [msg for _, msg in bag["/human3r/humans"]]
    assert [stamp_ns(m) for m in fused] == input_stamps
    assert {m.header.frame_id for m in fused} == {"human3r_world"}
    people = [h for m in fused for h in m.humans]
    assert len(people) == len(z["hf_smpl_id"])  # each person's two copies joined
    for human in people:
        assert set(human.cameras) <= {"front", "left"} and len(human.cameras) == len(human.camera_track_ids)
    assert all(sorted(h.cameras) == ["front", "left"] for h in people)
    # its TF: each camera's world placed in the rig world, the fused bodies by global id
    assert {("human3r_world", "human3r_world_front"), ("human3r_world", "human3r_world_left")} <= pairs
    assert {(parent, child) for parent, child in pairs if parent == "human3r_world"} == (
        {("human3r_world", "human3r_world_front"), ("human3r_world", "human3r_world_left")}
        | {("human3r_world", f"body_{h.id}") for h in people})


def test_camera_names_from_topics_make_flat_frames():
    o = camera_options(OutputOptions(), "front/image")
    assert (o.topic_prefix, o.world_frame, o.camera_frame, o.body_frame_prefix) == (
        "/human3r/front/image/", "human3r_world_front_image", "human3r_camera_front_image", "body_front_image_")


def test_files_to_a_bag_are_refused(reference_dir, tmp_path, capsys):
    z = fixture(reference_dir)
    for camera in ("front", "left"):
        np.savez(tmp_path / f"{camera}.npz", frames_uint8=z["frames_uint8"])
    args = cli_args(reference_dir, "plain", tmp_path / "front.npz", tmp_path / "out.mcap", "--input",
                    tmp_path / "left.npz")
    assert_failed_cleanly(main(args), capsys, tmp_path, "out.mcap", ".npz output", keep=("front.npz", "left.npz"))


def test_an_image_the_model_cannot_take_is_a_clear_error(reference_dir, tmp_path, capsys):
    z = fixture(reference_dir)
    np.savez(tmp_path / "front.npz", frames_uint8=z["frames_uint8"])
    np.savez(tmp_path / "left.npz", frames_uint8=np.zeros((2, 2, 1000, 3), np.uint8))  # too elongated
    args = cli_args(reference_dir, "plain", tmp_path / "front.npz", tmp_path / "rig.npz", "--input",
                    tmp_path / "left.npz")
    assert_failed_cleanly(main(args), capsys, tmp_path, "left.npz", keep=("front.npz", "left.npz"))


def test_image_topics_need_a_bag(reference_dir, tmp_path, capsys):
    z = fixture(reference_dir)
    np.savez(tmp_path / "front.npz", frames_uint8=z["frames_uint8"])
    args = cli_args(reference_dir, "plain", tmp_path / "front.npz", tmp_path / "rig.npz", "--image-topic", "/a",
                    "--image-topic", "/b")
    assert_failed_cleanly(main(args), capsys, tmp_path, "--image-topic", keep=("front.npz",))
