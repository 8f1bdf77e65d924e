"""human3r-process on ROS 2 bags (sqlite3 and mcap, written and read back with rosbags): the
output topics carry the reference's people and camera poses, the input stamps and log times."""

import json
import re
import signal

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from helpers import assert_close_ref, interrupt_cli_after_frames
from human3r_ros.cli.bags import typestore
from human3r_ros.cli.process import main
from human3r_ros.ros.msg_arrays import (
    NS_PER_S as NS,
    SMPLX_TO_REP155,
    UnsupportedEncodingError,
    compressed_image_to_rgb,
    ns_to_sec_nanosec,
    raw_image_to_rgb,
    stamp_to_ns,
)

INPUT_STORE = get_typestore(Stores.ROS2_HUMBLE)  # a camera bag recorded on another distro
TOPIC = "/camera/image_raw"
T0 = 1_700_000_000  # header stamps: T0 + k seconds
LOG0 = 1_800_000_000_000_000_000  # log times: LOG0 + k seconds + 5 ms, distinct from the stamps
PLAIN = ["--no-ttt3r", "--reset-interval", "0", "--size", "64", "--no-progress"]


# --------------------------------------------------------------------------- bag helpers

def image_msg(frame, stamp_ns, kind):
    t = INPUT_STORE.types
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                      frame_id="camera_optical")
    if kind == "png":
        _, png = cv2.imencode(".png", np.ascontiguousarray(frame[..., ::-1]))
        return t["sensor_msgs/msg/CompressedImage"](header=header, format="rgb8; png compressed bgr8",
                                                    data=png.reshape(-1))
    if kind == "16UC1":
        frame = frame[..., 0].astype(np.uint16)
    h, w = frame.shape[:2]
    return t["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding=kind, is_bigendian=0,
                                      step=frame.strides[0],
                                      data=np.ascontiguousarray(frame).view(np.uint8).reshape(-1))


def write_bag(path, frames, stamps_s, *, storage="sqlite3", kind="rgb8", topics=(TOPIC,)):
    """A camera bag; returns the input path to give the CLI (the bag folder, or the .mcap file)."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    msgtype = "sensor_msgs/msg/CompressedImage" if kind == "png" else "sensor_msgs/msg/Image"
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        for topic in topics:
            conn = writer.add_connection(topic, msgtype, typestore=INPUT_STORE)
            for k, (frame, stamp) in enumerate(zip(frames, stamps_s)):
                msg = image_msg(frame, round(stamp * NS), kind)
                writer.write(conn, log_time(k), INPUT_STORE.serialize_cdr(msg, msgtype))
    return path / f"{path.name}.mcap" if storage == "mcap" else path


def log_time(k):
    return LOG0 + k * NS + 5_000_000


def read_bag(path):
    """topic -> list of (log time, message), in log-time order."""
    store = typestore()
    out = {}
    with Reader(path) as reader:
        for conn, log_ns, raw in reader.messages():
            out.setdefault(conn.topic, []).append((log_ns, store.deserialize_cdr(raw, conn.msgtype)))
    return out


def stamp_ns(msg):
    return stamp_to_ns(msg.header.stamp)


def pose_matrix(position, orientation):
    x, y, z, w = orientation.x, orientation.y, orientation.z, orientation.w
    m = np.eye(4)
    m[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    m[:3, 3] = [position.x, position.y, position.z]
    return m


def transform_matrix(tf):
    return pose_matrix(tf.transform.translation, tf.transform.rotation)


def cli(reference_dir, source, output, *extra, body=False):
    args = ["--checkpoint", reference_dir / "tiny_plain_checkpoint.pth", "--input", source, "--output", output,
            *PLAIN, *extra]
    if body:
        args += ["--body-model", reference_dir / "synthetic_smplx"]
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def z(reference_dir):
    return np.load(reference_dir / "tiny_plain_io.npz")


def reference_ids(z, frame):
    return z["hf_smpl_id"][z["hf_frame"] == frame].tolist()


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_raw_images_decode_to_rgb_with_row_padding(encoding):
    h, w = 16, 21  # the decoders refuse sides below 16 px
    rgb = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    channels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.dstack([rgb, np.full((h, w), 9, np.uint8)]),
                "bgra8": np.dstack([rgb[..., ::-1], np.full((h, w), 9, np.uint8)]), "mono8": rgb[..., :1]}[encoding]
    padded = np.zeros((h, w * channels.shape[2] + 3), np.uint8)  # 3 bytes of row padding
    padded[:, :w * channels.shape[2]] = channels.reshape(h, -1)
    msg = INPUT_STORE.types["sensor_msgs/msg/Image"](
        header=image_msg(rgb, 0, "rgb8").header, height=h, width=w, encoding=encoding, is_bigendian=0,
        step=padded.shape[1], data=padded.reshape(-1)[:-3])  # the last row without its padding
    expected = np.repeat(rgb[..., :1], 3, axis=2) if encoding == "mono8" else rgb
    np.testing.assert_array_equal(raw_image_to_rgb(msg), expected)


def test_compressed_images_decode_to_rgb():
    rgb = np.random.default_rng(2).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    np.testing.assert_array_equal(compressed_image_to_rgb(image_msg(rgb, 0, "png")), rgb)
    depth = image_msg(rgb, 0, "png")
    depth.format = "16UC1; compressedDepth png"
    with pytest.raises(UnsupportedEncodingError, match="depth"):
        compressed_image_to_rgb(depth)


def test_sqlite3_bag_to_mcap_matches_reference(reference_dir, tmp_path, z):
    frames = z["frames_uint8"]
    stamps = [T0 + k for k in range(len(frames))]
    source = write_bag(tmp_path / "in_bag", frames, stamps)
    output = tmp_path / "out.mcap"
    assert cli(reference_dir, source, output, body=True) == 0
    assert output.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["in_bag", "out.mcap"]
    bag = read_bag(output)
    assert set(bag) == {"/human3r/humans", "/tf", "/human3r/scene/points", "/human3r/camera_path"}
    for topic, messages in bag.items():
        assert len(messages) == len(frames), topic
        assert [log for log, _ in messages] == [log_time(k) for k in range(len(frames))], topic
        stamped = [m.transforms[0] for _, m in messages] if topic == "/tf" else [m for _, m in messages]
        assert [stamp_ns(m) for m in stamped] == [s * NS for s in stamps], topic
    for k, ((_, humans), (_, tf), (_, cloud), (_, path)) in enumerate(zip(
            bag["/human3r/humans"], bag["/tf"], bag["/human3r/scene/points"], bag["/human3r/camera_path"])):
        rows = np.flatnonzero(z["hf_frame"] == k)
        assert humans.header.frame_id == "human3r_world"
        assert [h.id for h in humans.humans] == reference_ids(z, k)
        assert_close_ref(pose_matrix(humans.camera_pose.position, humans.camera_pose.orientation),
                         z["frame_c2w"][k], "camera_pose")
        camera, bodies = tf.transforms[0], tf.transforms[1:]
        assert (camera.header.frame_id, camera.child_frame_id) == ("human3r_world", "human3r_camera")
        assert_close_ref(transform_matrix(camera), z["frame_c2w"][k], "tf camera")
        assert [b.child_frame_id for b in bodies] == [f"body_{i}" for i in reference_ids(z, k)]
        for body, human, row in zip(bodies, humans.humans, rows):
            # body_<id>: mid-way between the hips (SMPL-X joints 1, 2), the body's world
            # orientation in REP-155 axes
            expected = np.eye(4)
            expected[:3, :3] = z["hf_R_world"][row] @ SMPLX_TO_REP155
            expected[:3, 3] = 0.5 * (z["hf_joints_world"][row, 1] + z["hf_joints_world"][row, 2])
            assert_close_ref(transform_matrix(body), expected, "tf body")
            assert len(human.joints) == 127 and len(human.vertices) == 0
            head = human.head_position
            assert_close_ref(np.array([head.x, head.y, head.z]), z["hf_transl_world"][row], "head")
            assert_close_ref(human.body_pose.reshape(21, 3), z["hf_body_pose"][row], "body_pose")
            assert human.roi.width > 0 and human.roi.height > 0
        assert len(path.poses) == k + 1
        assert_close_ref(pose_matrix(path.poses[-1].pose.position, path.poses[-1].pose.orientation),
                         z["frame_c2w"][k], "path")
        # the cloud: every 2nd pixel with confidence >= 1.5 outside people, xyz from the world pointmap
        keep = (z["frame_conf_world"][k][::2, ::2] >= 1.5) & (z["frame_msk"][k][::2, ::2] < 0.5)
        points = np.frombuffer(cloud.data.tobytes(), dtype=[("xyz", "<f4", 3), ("rgb", "<u4")])
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"] and cloud.point_step == 16
        assert_close_ref(points["xyz"], z["frame_pts3d_world"][k][::2, ::2][keep], "cloud")


def test_compressed_mcap_to_sqlite3_folder(reference_dir, tmp_path, z):
    frames = z["frames_uint8"]
    stamps = [T0 + 0.5 + k for k in range(len(frames))]
    source = write_bag(tmp_path / "in_bag", frames, stamps, storage="mcap", kind="png")
    output = tmp_path / "out_bag"
    assert cli(reference_dir, source, output, "--copy-input", "--no-cloud") == 0
    assert (output / "metadata.yaml").is_file() and list(output.glob("*.db3"))
    bag = read_bag(output)
    assert set(bag) == {"/human3r/humans", "/tf", "/human3r/camera_path", TOPIC}
    assert [h.id for _, m in bag["/human3r/humans"] for h in m.humans] == z["hf_smpl_id"].tolist()
    assert [stamp_ns(m) for _, m in bag["/human3r/humans"]] == [round(s * NS) for s in stamps]
    for k, (_, tf) in enumerate(bag["/tf"]):
        assert_close_ref(transform_matrix(tf.transforms[0]), z["frame_c2w"][k], "tf camera")
    copied = [m for _, m in bag[TOPIC]]  # --copy-input: the images, unchanged
    assert [bytes(m.data) for m in copied] == [bytes(image_msg(f, 0, "png").data) for f in frames]


def test_time_going_back_resets(reference_dir, tmp_path, z, capsys):
    # a looped recording: frames 0..2, frame 2 again with the same stamp, then 0..2 from the start
    frames = z["frames_uint8"][[0, 1, 2, 2, 0, 1, 2]]
    stamps = [T0, T0 + 1, T0 + 2, T0 + 2, T0, T0 + 1, T0 + 2]
    source = write_bag(tmp_path / "in_bag", frames, stamps)
    assert cli(reference_dir, source, tmp_path / "out.mcap") == 0
    err = capsys.readouterr().err
    assert len(re.findall(r"time went backwards \(1700000002\.000 s -> 1700000000\.000 s\).*state reset", err)) == 1, err
    assert "same stamp as the previous image" in err
    bag = read_bag(tmp_path / "out.mcap")
    humans = [m for _, m in bag["/human3r/humans"]]
    assert [stamp_ns(m) // NS - T0 for m in humans] == [0, 1, 2, 0, 1, 2]
    # after the reset the engine starts anew: the same outputs as the fixture's first frames
    assert [[h.id for h in m.humans] for m in humans] == [reference_ids(z, k) for k in (0, 1, 2, 0, 1, 2)]
    for k, (_, tf) in zip((0, 1, 2, 0, 1, 2), bag["/tf"]):
        assert_close_ref(transform_matrix(tf.transforms[0]), z["frame_c2w"][k], "tf camera")
    assert [len(m.poses) for _, m in bag["/human3r/camera_path"]] == [1, 2, 3, 1, 2, 3]  # a new path


def test_start_and_duration_select_frames(reference_dir, tmp_path, z):
    frames = z["frames_uint8"]
    source = write_bag(tmp_path / "in_bag", frames, [T0 + k for k in range(len(frames))])
    output = tmp_path / "out.npz"  # a bag can also give an .npz
    assert cli(reference_dir, source, output, "--start", "2", "--duration", "3") == 0
    out = np.load(output)
    np.testing.assert_array_equal(out["frame_stamp"], [T0 + 2, T0 + 3, T0 + 4])
    assert json.loads(str(out["meta_json"]))["image_topic"] == TOPIC


def test_unsupported_encoding_is_refused(reference_dir, tmp_path, z, capsys):
    source = write_bag(tmp_path / "in_bag", z["frames_uint8"][:2], [T0, T0 + 1], kind="16UC1")
    assert cli(reference_dir, source, tmp_path / "out.mcap") == 1
    error = capsys.readouterr().err.strip()
    assert "error:" in error and "'16UC1' is not supported" in error and "rgb8" in error and "bgra8" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in_bag"]


def test_image_topic_must_be_clear(reference_dir, tmp_path, z, capsys):
    source = write_bag(tmp_path / "in_bag", z["frames_uint8"][:1], [T0], topics=("/left", "/right"))
    assert cli(reference_dir, source, tmp_path / "out.mcap") == 1
    assert "--image-topic" in capsys.readouterr().err
    assert cli(reference_dir, source, tmp_path / "out.mcap", "--image-topic", "/middle") == 1
    err = capsys.readouterr().err
    assert "/middle is not in" in err and "/left (sensor_msgs/msg/Image)" in err and "/right" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in_bag"]


def test_interrupted_run_leaves_a_readable_bag(reference_dir, tmp_path, z):
    frames = np.concatenate([z["frames_uint8"]] * 200)  # 1200 frames, far more than run before the signal
    source = write_bag(tmp_path / "in_bag", frames, [T0 + k for k in range(len(frames))])
    output = tmp_path / "out.mcap"
    args = ["--checkpoint", reference_dir / "tiny_plain_checkpoint.pth", "--input", source, "--output", output,
            *[a for a in PLAIN if a != "--no-progress"]]
    err = interrupt_cli_after_frames(args, signal.SIGINT, len(frames))
    assert "interrupted" in err
    bag = read_bag(output)
    humans = bag["/human3r/humans"]
    assert 2 <= len(humans) < 1200
    assert [stamp_ns(m) for _, m in humans] == [(T0 + k) * NS for k in range(len(humans))]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in_bag", "out.mcap"]
