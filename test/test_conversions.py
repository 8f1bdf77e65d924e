"""Pure conversions of human3r_ros.ros.conversions with real ROS messages (no node)."""

import cv2
import numpy as np
import pytest
import torch

from ros_helpers import REFERENCE_FILES, image_msg, stamp

from helpers import assert_close_ref  # noqa: E402
from nav_msgs.msg import Path  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from human3r_ros.engine.frame_result import FrameResult, Person  # noqa: E402
from human3r_ros.engine.preprocess import resize_and_crop  # noqa: E402
from human3r_ros.engine.smplx_pose import axis_angle_to_rotmat, rotmat_to_axis_angle  # noqa: E402
from human3r_ros.model.postprocess import quaternion_to_rotation as quaternion_to_rotation_wxyz  # noqa: E402
from human3r_ros.ros import conversions as conv  # noqa: E402

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, size=(16, 21, 3), dtype=np.uint8)  # the decoders refuse sides below 16 px
HEADER = Header(stamp=stamp(12.5), frame_id="human3r_world")


# ----------------------------------------------------------------------------- images

def padded_image(pixels: np.ndarray, encoding: str, pad: int) -> Image:
    """Image message with `pad` junk bytes at the end of every row."""
    h, w = pixels.shape[:2]
    padded = np.concatenate([pixels.reshape(h, -1), np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, step=padded.shape[1], data=padded.tobytes())


@pytest.mark.parametrize("encoding, make", [
    ("rgb8", lambda x: x),
    ("bgr8", lambda x: x[..., ::-1]),
    ("rgba8", lambda x: np.dstack([x, np.full(x.shape[:2], 9, np.uint8)])),
    ("bgra8", lambda x: np.dstack([x[..., ::-1], np.full(x.shape[:2], 9, np.uint8)])),
])
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_with_row_padding(encoding, make, pad):
    out = conv.image_to_rgb(padded_image(np.ascontiguousarray(make(RGB)), encoding, pad))
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("pad", [0, 1])
def test_mono8_becomes_grey_rgb(pad):
    grey = RGB[..., 0].copy()
    out = conv.image_to_rgb(padded_image(grey, "mono8", pad))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1", "8UC3", ""])
def test_unsupported_encodings(encoding):
    msg = Image(height=2, width=2, encoding=encoding, step=8, data=bytes(16))
    with pytest.raises(conv.UnsupportedEncodingError, match=f"'{encoding}'"):
        conv.image_to_rgb(msg)


def test_malformed_images():
    with pytest.raises(conv.ImageConversionError, match="step"):
        conv.image_to_rgb(Image(height=2, width=4, encoding="rgb8", step=11, data=bytes(24)))
    with pytest.raises(conv.ImageConversionError, match="bytes"):
        conv.image_to_rgb(Image(height=2, width=4, encoding="rgb8", step=12, data=bytes(20)))
    with pytest.raises(conv.ImageConversionError, match="empty"):
        conv.image_to_rgb(Image(height=0, width=4, encoding="rgb8", step=12))
    # the last row may come without its padding; byte order does not matter for 8-bit channels
    msg = padded_image(RGB, "rgb8", 4)
    msg.data = bytes(msg.data)[:-4]
    msg.is_bigendian = True
    np.testing.assert_array_equal(conv.image_to_rgb(msg), RGB)


def test_compressed_images():
    ok, png = cv2.imencode(".png", RGB[..., ::-1])
    out = conv.compressed_image_to_rgb(CompressedImage(format="rgb8; png compressed bgr8", data=png.tobytes()))
    np.testing.assert_array_equal(out, RGB)
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (16, 1, 3))
    ok, jpg = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = conv.compressed_image_to_rgb(CompressedImage(format="jpeg", data=jpg.tobytes()))
    assert out.shape == (16, 32, 3) and np.abs(out.astype(int) - smooth).max() <= 4
    with pytest.raises(conv.UnsupportedEncodingError):
        conv.compressed_image_to_rgb(CompressedImage(format="16UC1; compressedDepth png", data=png.tobytes()))
    with pytest.raises(conv.ImageConversionError, match="decode"):
        conv.compressed_image_to_rgb(CompressedImage(format="jpeg", data=b"not an image"))


# ----------------------------------------------------------------------------- rotations

def quaternion_to_rotation(q):
    """(x, y, z, w) -> matrix, through the model's own (w, x, y, z) conversion."""
    q = torch.as_tensor(np.asarray(q, dtype=np.float64))
    return quaternion_to_rotation_wxyz(q[..., [3, 0, 1, 2]]).numpy()


def random_rotations(n):
    q = RNG.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return quaternion_to_rotation(q)


def test_quaternion_round_trip():
    # random rotations plus the hard cases: identity and half turns about each axis
    rots = np.concatenate([random_rotations(200), np.eye(3)[None], np.diag([1, -1, -1])[None],
                           np.diag([-1, 1, -1])[None], np.diag([-1, -1, 1])[None]])
    q = conv.rotation_to_quaternion(rots)
    assert np.allclose(np.linalg.norm(q, axis=1), 1) and (q[:, 3] >= 0).all()
    assert np.abs(quaternion_to_rotation(q) - rots).max() < 1e-12


def test_matrix_to_pose_and_transform():
    matrix = np.eye(4)
    matrix[:3, :3] = random_rotations(1)[0]
    matrix[:3, 3] = [1.0, -2.0, 3.5]
    tf = conv.pose_to_transform(conv.matrix_to_pose(matrix), HEADER.stamp, "human3r_world", "human3r_camera")
    assert (tf.header.frame_id, tf.child_frame_id) == ("human3r_world", "human3r_camera")
    assert tf.header.stamp == HEADER.stamp
    t, r = tf.transform.translation, tf.transform.rotation
    assert (t.x, t.y, t.z) == (1.0, -2.0, 3.5)
    assert np.abs(quaternion_to_rotation([r.x, r.y, r.z, r.w]) - matrix[:3, :3]).max() < 1e-12


# ----------------------------------------------------------------------------- frame results from the fixture

@pytest.fixture(scope="module")
def io(reference_dir):
    return np.load(reference_dir / REFERENCE_FILES["io"])


def fixture_frame(io, i: int, with_body: bool = True) -> FrameResult:
    """FrameResult of frame i filled from the reference arrays (plain case: view i = frame i)."""
    c2w = io["frame_c2w"][i].astype(np.float64)
    rows = np.nonzero(io["hf_frame"] == i)[0]
    people = []
    for r in rows:
        r_world, t_world = io["hf_R_world"][r], io["hf_transl_world"][r]
        t_world_head = np.eye(4, dtype=np.float32)
        t_world_head[:3, :3], t_world_head[:3, 3] = r_world, t_world
        t_cam_head = (np.linalg.inv(c2w) @ t_world_head).astype(np.float32)
        body = dict(pelvis_position_world=io["hf_joints_world"][r, 0], T_world_body=io["hf_T_world_body"][r],
                    vertices_world=io["hf_verts_world"][r], joints_world=io["hf_joints_world"][r],
                    vertices_cam=io["hf_verts_cam"][r], joints_cam=io["hf_joints_cam"][r]) if with_body else {}
        people.append(Person(
            track_id=int(io["hf_smpl_id"][r]), score=0.5 + 0.01 * len(people),
            global_orient=io["hf_global_orient"][r],
            global_orient_world=rotmat_to_axis_angle(torch.from_numpy(r_world.astype(np.float64))).numpy(),
            body_pose=io["hf_body_pose"][r],
            left_hand_pose=io["hf_left_hand_pose"][r], right_hand_pose=io["hf_right_hand_pose"][r],
            jaw_pose=io["hf_jaw_pose"][r], betas=io["hf_betas"][r], expression=io["hf_expression"][r],
            head_position_cam=io["hf_transl_cam"][r], head_position_world=t_world,
            T_cam_head=t_cam_head, T_world_head=t_world_head, image_location=io["hv_loc_cut3r_px"][r],
            detection_cell=np.array([io["hv_h_id"][r], io["hv_w_id"][r]]), **body))
    return FrameResult(
        index=i, stamp=12.5, c2w=io["frame_c2w"][i], intrinsics=io["frame_intrinsics"][i],
        pts3d_world=io["frame_pts3d_world"][i], conf=io["frame_conf_world"][i], depth=io["frame_depth"][i],
        human_mask=io["frame_msk"][i], det_scores=io["frame_det_scores"][i], people=people,
        crop=resize_and_crop(io["frames_uint8"][i], 64)[1])


def test_human_array_from_frame_result(io):
    frame = fixture_frame(io, 3)
    input_hw = io["frames_uint8"].shape[1:3]
    msg = conv.frame_to_human_array(frame, frame.people, HEADER, input_hw=input_hw,
                                    to_input_pixels=frame.to_input_pixels,
                                    include_vertices=True)
    rows = np.nonzero(io["hf_frame"] == 3)[0]
    assert msg.header == HEADER
    assert [h.id for h in msg.humans] == io["hf_smpl_id"][rows].tolist() == [2, 0, 3, 4]
    cam = msg.camera_pose
    assert np.allclose([cam.position.x, cam.position.y, cam.position.z], io["frame_c2w"][3][:3, 3])
    for human, r in zip(msg.humans, rows):
        # global_orient is world-relative in the message: its rotation is R_world of the fixture
        rot = axis_angle_to_rotmat(torch.tensor(np.asarray(human.global_orient, np.float64))).numpy()
        assert_close_ref(rot, io["hf_R_world"][r], "global_orient (world)")
        assert_close_ref(np.asarray(human.body_pose).reshape(21, 3), io["hf_body_pose"][r], "body_pose")
        assert_close_ref(np.asarray(human.betas), io["hf_betas"][r], "betas")
        head = human.head_position
        assert_close_ref(np.array([head.x, head.y, head.z]), io["hf_transl_world"][r], "head position")
        origin = human.pose.position  # REP-155: mid-way between the hips (SMPL-X joints 1, 2)
        hips = 0.5 * (io["hf_joints_world"][r, 1] + io["hf_joints_world"][r, 2])
        assert_close_ref(np.array([origin.x, origin.y, origin.z]), hips, "body origin")
        q = human.pose.orientation
        # body_<id> has REP-155 axes: x forward (SMPL-X z), y left (SMPL-X x), z up (SMPL-X y)
        rep155 = io["hf_R_world"][r] @ np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]])
        assert_close_ref(quaternion_to_rotation([q.x, q.y, q.z, q.w]), rep155, "body orient")
        joints = np.array([[p.x, p.y, p.z] for p in human.joints])
        assert_close_ref(joints, io["hf_joints_world"][r], "joints")
        assert_close_ref(np.asarray(human.vertices).reshape(-1, 3), io["hf_verts_world"][r], "vertices")
        roi = human.roi
        assert roi.width > 0 and roi.height > 0
        assert roi.x_offset + roi.width <= input_hw[1] and roi.y_offset + roi.height <= input_hw[0]
    # without vertices requested, the field stays empty
    small = conv.frame_to_human_array(frame, frame.people, HEADER, input_hw=input_hw)
    assert all(len(h.vertices) == 0 for h in small.humans)
    # model-input boxes are scaled up to the larger input image (101 x 78 from 64 x 48)
    boxes = conv.people_boxes_model_px(frame, frame.people)
    widths = np.array([h.roi.width for h in msg.humans])
    assert (widths >= np.floor((boxes[:, 2] - boxes[:, 0]) * 101 / 64) - 1).all()


def test_human_without_body_model_sits_at_head(io):
    frame = fixture_frame(io, 3, with_body=False)
    input_hw = io["frames_uint8"].shape[1:3]
    msg = conv.frame_to_human_array(frame, frame.people, HEADER, input_hw=input_hw,
                                    to_input_pixels=frame.to_input_pixels)
    for human, person in zip(msg.humans, frame.people):
        p = human.pose.position
        assert np.allclose([p.x, p.y, p.z], person.head_position_world)
        assert len(human.joints) == 0 and len(human.vertices) == 0
        assert human.roi.width > 0 and human.roi.height > 0  # from the human mask around the head
    tfs = conv.body_transforms(frame.people, HEADER.stamp, "w", "body_")
    assert [t.child_frame_id for t in tfs] == ["body_2", "body_0", "body_3", "body_4"]


# ----------------------------------------------------------------------------- cloud

def test_cloud_layout_like_sensor_msgs_py(io):
    frame = fixture_frame(io, 0)
    colours = RNG.integers(0, 256, size=frame.pts3d_world.shape, dtype=np.uint8)
    cloud = conv.cloud_message(conv.cloud_points(frame.pts3d_world, colours), HEADER)
    # What sensor_msgs_py.point_cloud2.create_cloud gives for x, y, z, rgb float32 fields.
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", 12, PointField.FLOAT32, 1)]
    assert (cloud.height, cloud.width, cloud.point_step) == (1, 48 * 64, 16)
    assert cloud.row_step == 16 * cloud.width and len(cloud.data) == cloud.row_step
    assert cloud.is_dense and not cloud.is_bigendian and cloud.header == HEADER
    points = conv.cloud_to_array(cloud)
    np.testing.assert_array_equal(np.stack([points["x"], points["y"], points["z"]], -1),
                                  frame.pts3d_world.reshape(-1, 3))
    rgb = points["rgb"]
    np.testing.assert_array_equal(np.stack([rgb >> 16, (rgb >> 8) & 255, rgb & 255], -1), colours.reshape(-1, 3))


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("threshold", [1.0, 3.0, 4.5])
def test_cloud_threshold_decimation_and_human_removal(io, stride, threshold):
    frame = fixture_frame(io, 1)
    pts = frame.pts3d_world.copy()
    pts[0, 0] = np.nan  # a non-finite point is always left out
    colours = np.zeros(pts.shape, np.uint8)
    conf, mask = frame.conf[::stride, ::stride], frame.human_mask[::stride, ::stride]
    finite = np.isfinite(pts[::stride, ::stride]).all(-1)
    cloud = conv.cloud_message(conv.cloud_points(pts, colours, conf=frame.conf, conf_threshold=threshold,
                                                 stride=stride), HEADER)
    assert cloud.width == int(((conf >= threshold) & finite).sum())
    cloud = conv.cloud_message(conv.cloud_points(pts, colours, conf=frame.conf, conf_threshold=threshold,
                                                 stride=stride, human_mask=frame.human_mask), HEADER)
    assert cloud.width == int(((conf >= threshold) & finite & (mask < 0.5)).sum())
    assert 0 < int((mask < 0.5).sum()) < mask.size  # the fixture mask has both kinds of pixels


def test_frame_colours():
    class Result:
        human_mask = np.zeros((2, 3))
        image = None
        rgb = np.zeros((2, 3, 3), np.float32)  # rgb head output in [-1, 1]: 0 is mid-grey

    assert (conv.frame_colours(Result()) == 128).all()
    Result.rgb = None  # neither colours nor rgb: mid-grey of the frame's size
    grey = conv.frame_colours(Result())
    assert grey.shape == (2, 3, 3) and (grey == 128).all()
    Result.image = np.full((2, 3, 3), 7, np.uint8)
    assert (conv.frame_colours(Result()) == 7).all()


# ----------------------------------------------------------------------------- markers, path, diagnostics

def test_markers_meshes_joints_heads(io):
    faces = np.arange(30).reshape(10, 3)  # any faces of the 10475 vertices
    frame = fixture_frame(io, 3)
    array = conv.people_markers(frame.people, HEADER, faces)
    assert array.markers[0].action == Marker.DELETEALL
    bodies = [m for m in array.markers if m.ns == "bodies"]
    labels = [m for m in array.markers if m.ns == "labels"]
    assert [m.id for m in bodies] == [m.id for m in labels] == [2, 0, 3, 4]
    for marker, person in zip(bodies, frame.people):
        assert marker.type == Marker.TRIANGLE_LIST and len(marker.points) == 30
        assert marker.header == HEADER and marker.color == conv.track_colour(person.track_id, marker.color.a)
        first = marker.points[0]
        assert np.allclose([first.x, first.y, first.z], person.vertices_world[0])
    # the same id keeps its colour; different ids of the palette differ
    assert conv.track_colour(2) == conv.track_colour(2 + len(conv.PALETTE))
    assert conv.track_colour(2) != conv.track_colour(3)
    joints = [m for m in conv.people_markers(frame.people, HEADER, None).markers if m.ns == "bodies"]
    assert all(m.type == Marker.SPHERE_LIST and len(m.points) == 127 for m in joints)
    heads = [m for m in conv.people_markers(fixture_frame(io, 3, False).people, HEADER, faces).markers
             if m.ns == "bodies"]
    assert all(m.type == Marker.SPHERE_LIST and len(m.points) == 1 for m in heads)
    assert [m.action for m in conv.people_markers([], HEADER).markers] == [Marker.DELETEALL]


@pytest.mark.parametrize("frame_id", ["w", "wo", "wor", "worl", "world", "human3r_world"])
def test_serialized_markers_are_the_markers(io, frame_id, monkeypatch):
    from rclpy.serialization import deserialize_message, serialize_message
    from visualization_msgs.msg import MarkerArray

    # frame ids of every length mod 8 move the meshes' points to both CDR alignments
    header = Header(stamp=stamp(3.25), frame_id=frame_id)
    faces = np.random.default_rng(0).integers(0, 10475, (2000, 3))
    cases = [(fixture_frame(io, 3).people, faces), (fixture_frame(io, 3).people, None),
             (fixture_frame(io, 3, False).people, faces), ([], faces)]
    real_markers = conv.people_markers
    calls = []  # people_markers_cdr must never fall back to the full message (no placeholders)
    monkeypatch.setattr(conv, "people_markers", lambda *a, **k: calls.append(k) or real_markers(*a, **k))
    for people, case_faces in cases:
        # what a subscriber gets from the message (float32 fields rounded by the serialization)
        expected = deserialize_message(serialize_message(real_markers(people, header, case_faces)), MarkerArray)
        got = deserialize_message(conv.people_markers_cdr(people, header, case_faces), MarkerArray)
        assert got == expected
    assert len(calls) == len(cases) and all(k.get("mesh_placeholders") is not None for k in calls)
    assert sum(m.type == Marker.TRIANGLE_LIST for m in expected.markers) == 0  # the last case: nobody
    assert sum(len(m.points) == 6000 for m in real_markers(cases[0][0], header, faces).markers) == 4


def test_path_append_and_trim():
    path = Path()
    for i in range(5):
        pose = PoseStamped(header=Header(stamp=stamp(i), frame_id="w"))
        conv.append_to_path(path, pose, max_length=3)
    assert [p.header.stamp.sec for p in path.poses] == [2, 3, 4]
    assert path.header.stamp.sec == 4 and path.header.frame_id == "w"
    for i in range(5, 10):
        conv.append_to_path(path, PoseStamped(header=Header(stamp=stamp(i), frame_id="w")), max_length=0)
    assert len(path.poses) == 8


def test_diagnostics_message():
    status = conv.diagnostic_status("/front/human3r", "cpu", DiagnosticStatus.WARN, "note",
                                    {"latency_s": 0.123456, "frames_dropped": 3, "last_error": ""})
    array = conv.diagnostics_message(HEADER.stamp, [status])
    assert array.header.stamp == HEADER.stamp and array.status == [status]
    assert status.level == DiagnosticStatus.WARN and status.hardware_id == "cpu"
    assert status.name == "/front/human3r" and status.message == "note"
    assert {kv.key: kv.value for kv in status.values} == {"latency_s": "0.1235", "frames_dropped": "3",
                                                           "last_error": ""}


def test_stamp_helpers():
    t = stamp(1234.000000007)
    assert conv.stamp_to_ns(t) == 1234_000_000_007
    assert abs(conv.stamp_to_seconds(t) - 1234.000000007) < 1e-9
    assert image_msg(RGB, 1.5).header.stamp == stamp(1.5)
