"""REP-155 (ROS4HRI) body outputs: ids, normalised ROIs and 2D skeletons of synthetic people,
the per-body publishers on a real rclpy node, and hri_msgs wire compatibility."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_helpers import REFERENCE_FILES, Harness, stamp, wait_until

from hri_msgs.msg import IdsList, NormalizedRegionOfInterest2D, Skeleton2D  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.validate_topic_name import validate_topic_name  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from human3r_ros.engine.body_model import BodyModel  # noqa: E402
from human3r_ros.engine.frame_result import FrameResult, build_people  # noqa: E402
from human3r_ros.engine.preprocess import crop_geometry  # noqa: E402
from human3r_ros.engine.smplx_joints import COCO18_NAMES, SMPLX_JOINT_INDEX, coco18_from_smplx  # noqa: E402
from human3r_ros.engine.smplx_pose import people_pose_from_network  # noqa: E402
from human3r_ros.ros import hri, hri_arrays  # noqa: E402
from human3r_ros.ros.msg_arrays import body_frame_matrix, people_boxes_model_px  # noqa: E402

INPUT_HW = (96, 128)  # the camera image; the model sees a 48 x 64 centre crop of it resized
MODEL_SIZE = 64
FOCAL = 60.0  # model-input pixels
# Facing the camera: the body's forward (SMPL-X +z) is the camera's -z, its up (+y) the
# camera's -y (image up), its left (+x) the camera's +x (image right).
FACING_CAMERA = np.diag([1.0, -1.0, -1.0])


@pytest.fixture(scope="module")
def body_model(reference_dir):
    return BodyModel(reference_dir / "synthetic_smplx")


def synthetic_frame(body_model, heads_cam, scores, track_ids, with_body=True) -> FrameResult:
    """A FrameResult (world = camera) with people facing the camera, their SMPL-X head joints
    at `heads_cam`; human mask: a blob around each head's projection."""
    n = len(heads_cam)
    geometry = crop_geometry(INPUT_HW, MODEL_SIZE)
    h, w = geometry.true_shape
    k = np.array([[FOCAL, 0, w // 2], [0, FOCAL, h // 2], [0, 0, 1]], dtype=np.float32)
    rotmat = np.tile(np.eye(3), (n, 53, 1, 1))
    rotmat[:, 0] = FACING_CAMERA
    inputs = dict(rotmat=torch.tensor(rotmat, dtype=torch.float32), betas=torch.zeros(n, 10),
                  transl_cam=torch.tensor(heads_cam, dtype=torch.float32), expression=torch.zeros(n, 10),
                  c2w=torch.eye(4))
    people = body_model.evaluate(**inputs) if with_body else people_pose_from_network(**inputs)[0]
    heads = np.asarray(heads_cam, dtype=np.float64)
    head_px = heads[:, :2] / heads[:, 2:] * FOCAL + k[:2, 2]
    mask = np.zeros((h, w), np.float32)
    ys, xs = np.mgrid[:h, :w]
    for x, y in head_px:
        mask[(np.abs(xs - x) <= 3) & (ys >= y) & (ys <= y + 12)] = 1.0
    return FrameResult(
        index=0, stamp=1.0, c2w=np.eye(4, dtype=np.float32), intrinsics=k,
        pts3d_world=np.zeros((h, w, 3), np.float32), conf=np.ones((h, w), np.float32),
        depth=np.ones((h, w), np.float32), human_mask=mask, det_scores=np.zeros((h, w), np.float32),
        people=build_people(people, track_ids, scores, head_px, np.zeros((n, 2), np.int64)), crop=geometry)


# ----------------------------------------------------------------------------- joints and ids

def test_smplx_joint_indices_match_the_smplx_package():
    from smplx.joint_names import JOINT_NAMES

    assert {name: JOINT_NAMES.index(name) for name in SMPLX_JOINT_INDEX} == SMPLX_JOINT_INDEX


def test_coco18_order_is_skeleton2d_order():
    assert [getattr(Skeleton2D, name.upper()) for name in COCO18_NAMES] == list(range(18))
    joints = np.arange(127 * 3, dtype=np.float64).reshape(127, 3)
    keypoints = coco18_from_smplx(joints)
    np.testing.assert_array_equal(keypoints[Skeleton2D.LEFT_WRIST], joints[20])
    np.testing.assert_array_equal(keypoints[Skeleton2D.RIGHT_EAR], joints[58])
    np.testing.assert_array_equal(keypoints[Skeleton2D.NECK], 0.5 * (joints[16] + joints[17]))


def test_body_ids_are_stable_valid_topic_tokens_and_new_per_sequence():
    ids = hri_arrays.BodyIds()
    first = [ids(t) for t in (0, 7, 12)]
    assert [ids(t) for t in (0, 7, 12)] == first  # the same for a track's whole life
    assert len(set(first)) == 3 and all(i[0].isalpha() and len(i) <= 8 for i in first)
    for body_id in first:
        validate_topic_name(hri.body_topic(body_id, "roi"))  # raises on an invalid token
    ids.new_sequence()  # after a tracker reset, id 0 is somebody else
    assert ids(0) != first[0]
    assert hri_arrays.BodyIds("abc")(3) == "abc3"
    with pytest.raises(ValueError, match="must start with a letter"):
        hri_arrays.BodyIds("3x")


# ----------------------------------------------------------------------------- ROI and skeleton

def test_skeleton_of_a_person_facing_the_camera(body_model):
    frame = synthetic_frame(body_model, [[0.1, -0.6, 3.0]], [0.8], [4])
    rois, skeletons = hri_arrays.frame_hri_arrays(frame, frame.people, INPUT_HW)
    skeleton, roi = skeletons[0], rois[0]
    assert skeleton.shape == (18, 3) and roi.shape == (4,)
    x, y, c = skeleton.T
    # seen from the front, the person's right side is on the image's left
    for right, left in [("RIGHT_SHOULDER", "LEFT_SHOULDER"), ("RIGHT_HIP", "LEFT_HIP"),
                        ("RIGHT_EYE", "LEFT_EYE"), ("RIGHT_EAR", "LEFT_EAR")]:
        assert x[getattr(Skeleton2D, right)] < x[getattr(Skeleton2D, left)], (right, left)
    # image y grows downwards: nose above neck above hips above knees above ankles
    assert y[Skeleton2D.NOSE] < y[Skeleton2D.NECK] < y[Skeleton2D.RIGHT_HIP] < y[Skeleton2D.RIGHT_KNEE] \
        < y[Skeleton2D.RIGHT_ANKLE]
    assert ((skeleton[:, :2] > 0) & (skeleton[:, :2] < 1)).all()
    np.testing.assert_allclose(c, 0.8)  # all in view: the detection score
    assert roi[0] < roi[2] and roi[1] < roi[3]
    assert (roi[0] <= x).all() and (x <= roi[2]).all() and (roi[1] <= y).all() and (y <= roi[3]).all()
    # the nose, projected by hand through the crop: fraction of the input image
    nose_cam = frame.people[0].joints_cam[SMPLX_JOINT_INDEX["nose"]].astype(np.float64)
    nose_px = frame.to_input_pixels(nose_cam[:2] / nose_cam[2] * FOCAL + frame.intrinsics[:2, 2])
    np.testing.assert_allclose(skeleton[Skeleton2D.NOSE, :2], (nose_px + 0.5) / INPUT_HW[::-1], atol=1e-6)


def test_keypoints_outside_the_image_have_zero_confidence(body_model):
    # close to the camera and low: the legs leave the image at the bottom
    frame = synthetic_frame(body_model, [[0.0, -0.2, 1.2]], [0.9], [0])
    _, skeletons = hri_arrays.frame_hri_arrays(frame, frame.people, INPUT_HW)
    x, y, c = skeletons[0].T
    assert c[Skeleton2D.NOSE] == pytest.approx(0.9)
    assert c[Skeleton2D.RIGHT_ANKLE] == 0.0 and y[Skeleton2D.RIGHT_ANKLE] == 1.0
    joints = frame.people[0].joints_cam.copy()
    joints[SMPLX_JOINT_INDEX["left_wrist"], 2] = -0.5  # behind the camera
    behind = hri_arrays.skeletons_2d(joints[None], frame.intrinsics, INPUT_HW, [0.9], frame.to_input_pixels)[0]
    assert behind[Skeleton2D.LEFT_WRIST, 2] == 0.0 and ((behind[:, :2] >= 0) & (behind[:, :2] <= 1)).all()


def test_without_a_body_model_only_rois(body_model):
    frame = synthetic_frame(body_model, [[-0.4, -0.3, 3.0], [0.5, -0.3, 3.0]], [0.7, 0.6], [0, 1],
                            with_body=False)
    rois, skeletons = hri_arrays.frame_hri_arrays(frame, frame.people, INPUT_HW)
    assert skeletons is None and rois.shape == (2, 4)
    assert rois[0, 2] < rois[1, 0]  # the left person's box ends before the right one's starts
    assert ((rois >= 0) & (rois <= 1)).all() and (rois[:, :2] < rois[:, 2:]).all()


def test_normalised_rois_span_the_input_image():
    geometry = crop_geometry(INPUT_HW, MODEL_SIZE)
    h, w = geometry.true_shape
    whole = np.array([[-0.5, -0.5, w - 0.5, h - 0.5]])  # every model pixel: the whole crop
    np.testing.assert_allclose(hri_arrays.normalised_rois(whole, INPUT_HW, geometry.model_px_to_input_px),
                               [[0, 0, 1, 1]], atol=1e-9)
    np.testing.assert_allclose(hri_arrays.normalised_rois(np.array([[9.5, 19.5, 29.5, 39.5]]), (80, 40)),
                               [[0.25, 0.25, 0.75, 0.5]])
    with pytest.raises(ValueError, match="positive"):
        hri_arrays.normalised_rois(whole, (0, 10))


def test_roi_pixel_box_covers_the_roi_with_whole_pixels():
    assert hri_arrays.roi_pixel_box([0.25, 0.25, 0.75, 0.5], (80, 40)) == (10, 20, 30, 40)
    assert hri_arrays.roi_pixel_box([0.26, 0.2, 0.74, 0.51], (80, 40)) == (10, 16, 30, 41)
    assert hri_arrays.roi_pixel_box([1.0, 1.0, 1.0, 1.0], (80, 40)) == (39, 79, 40, 80)  # never empty
    assert hri_arrays.roi_pixel_box([0.0, 0.0, 1.0, 1.0], (80, 40)) == (0, 0, 40, 80)


def test_reference_frame_rois_agree_with_human_array(reference_dir):
    """On the engine's reference outputs (4 people, input 101 x 78 cropped to 64 x 48): the
    normalised ROI is HumanArray's pixel ROI (which rounds outwards to whole pixels) and holds
    every keypoint seen in the image."""
    from test_conversions import fixture_frame
    from human3r_ros.ros.msg_arrays import boxes_to_input_rois

    io = np.load(reference_dir / REFERENCE_FILES["io"])
    frame = fixture_frame(io, 3)
    input_hw = io["frames_uint8"].shape[1:3]
    boxes = people_boxes_model_px(frame, frame.people)
    rois, skeletons = hri_arrays.frame_hri_arrays(frame, frame.people, input_hw, boxes)
    pixel_rois = boxes_to_input_rois(boxes, input_hw, frame.to_input_pixels)  # x, y, width, height
    h, w = input_hw
    for roi, pixels, skeleton, person in zip(rois, pixel_rois, skeletons, frame.people):
        x0, y0 = pixels[:2] / (w, h)
        x1, y1 = (pixels[:2] + pixels[2:]) / (w, h)
        assert x0 - 1e-9 <= roi[0] < x0 + 1 / w and y0 - 1e-9 <= roi[1] < y0 + 1 / h
        assert x1 - 1 / w < roi[2] <= x1 + 1e-9 and y1 - 1 / h < roi[3] <= y1 + 1e-9
        seen = skeleton[:, 2] > 0
        np.testing.assert_allclose(skeleton[seen, 2], person.score)
        x, y = skeleton[seen, 0], skeleton[seen, 1]
        assert ((roi[0] <= x) & (x <= roi[2]) & (roi[1] <= y) & (y <= roi[3])).all()


def test_body_frame_follows_rep155(body_model):
    """Origin mid-way between the hips; x forward (out of the body), z up (towards the head)."""
    frame = synthetic_frame(body_model, [[0.2, -0.5, 2.5]], [0.8], [0])
    person = frame.people[0]
    matrix = body_frame_matrix(person)
    joints = person.joints_world.astype(np.float64)
    np.testing.assert_allclose(matrix[:3, 3], 0.5 * (joints[1] + joints[2]), atol=1e-6)
    np.testing.assert_allclose(matrix[:3, 0], [0, 0, -1], atol=1e-6)  # facing the camera
    np.testing.assert_allclose(matrix[:3, 2], [0, -1, 0], atol=1e-6)  # camera y points down
    np.testing.assert_allclose(matrix[:3, 1], [1, 0, 0], atol=1e-6)  # the person's left
    head = joints[SMPLX_JOINT_INDEX["nose"]] - matrix[:3, 3]
    assert head @ matrix[:3, 2] > 0.3  # the head is up the body's z axis


# ----------------------------------------------------------------------------- messages and publishers

def test_messages():
    header = Header(stamp=stamp(3.25), frame_id="camera_optical")
    points = np.linspace(0, 1, 54).reshape(18, 3)
    msg = hri.skeleton_message(points, header)
    assert msg.header == header and len(msg.skeleton) == 18
    np.testing.assert_allclose([[p.x, p.y, p.c] for p in msg.skeleton], points, atol=1e-7)
    with pytest.raises(ValueError, match="18 keypoints"):
        hri.skeleton_message(points[:17], header)
    roi = hri.roi_message(np.array([0.1, 0.2, 0.3, 0.4]), 0.5, header)
    assert (roi.xmin, roi.ymax, roi.c) == (pytest.approx(0.1), pytest.approx(0.4), 0.5)
    assert hri.ids_message(["ab1", "ab2"], header).ids == ["ab1", "ab2"]


@pytest.fixture
def harness():
    h = Harness(offset=31)
    yield h
    h.close()


def test_publishers_follow_tracked_bodies(harness, body_model):
    node = Node("hri_test_publisher", context=harness.context)
    harness.add_node(node)
    now = [100.0]
    publishers = hri.HriBodyPublishers(node, timeout_s=2.0, body_ids=hri_arrays.BodyIds("tst"),
                                       clock=lambda: now[0], close_ack_timeout_s=10.0)  # a loaded VM
    tracked = harness.collect(IdsList, hri.TRACKED_TOPIC)
    rois = harness.collect(NormalizedRegionOfInterest2D, "/humans/bodies/tst1/roi")
    skeletons = harness.collect(Skeleton2D, "/humans/bodies/tst1/skeleton2d")
    crops = harness.collect(Image, "/humans/bodies/tst1/cropped")
    image_header = Header(stamp=stamp(5.5), frame_id="camera_optical")
    rgb = np.random.default_rng(3).integers(0, 256, size=INPUT_HW + (3,), dtype=np.uint8)
    both = synthetic_frame(body_model, [[-0.5, -0.5, 3.0], [0.5, -0.5, 3.0]], [0.9, 0.6], [0, 1])
    client = harness.client

    def count(topic):
        return client.count_publishers(topic)

    assert publishers.publish(both, both.people, image_header, INPUT_HW) == ["tst0", "tst1"]
    wait_until(lambda: count("/humans/bodies/tst1/roi") == 1 and count("/humans/bodies/tst0/skeleton2d") == 1,
               10, "per-body publishers")

    def received():  # frames keep coming while the subscriptions match the new publishers
        publishers.publish(both, both.people, image_header, INPUT_HW, image=rgb)
        return all(harness.snapshot(t) for t in (hri.TRACKED_TOPIC, "/humans/bodies/tst1/roi",
                                                 "/humans/bodies/tst1/skeleton2d", "/humans/bodies/tst1/cropped"))

    wait_until(received, 10, "tracked, roi, skeleton and cropped", period=0.1)
    got = harness.snapshot(hri.TRACKED_TOPIC)[-1]
    assert got.ids == ["tst0", "tst1"] and got.header == image_header
    roi = harness.snapshot("/humans/bodies/tst1/roi")[-1]
    # body 1 stands right of the camera's axis: its box is centred in the image's right half
    assert roi.header == image_header and roi.c == pytest.approx(0.6, abs=1e-6)
    assert 0.5 < (roi.xmin + roi.xmax) / 2 and roi.xmin < roi.xmax <= 1
    assert len(harness.snapshot("/humans/bodies/tst1/skeleton2d")[-1].skeleton) == 18
    crop = harness.snapshot("/humans/bodies/tst1/cropped")[-1]
    x0, y0, x1, y1 = hri_arrays.roi_pixel_box([roi.xmin, roi.ymin, roi.xmax, roi.ymax], INPUT_HW)
    assert crop.header == image_header and crop.encoding == "rgb8" and (crop.height, crop.width) == (y1 - y0, x1 - x0)
    np.testing.assert_array_equal(np.frombuffer(bytes(crop.data), np.uint8).reshape(crop.height, crop.width, 3),
                                  rgb[y0:y1, x0:x1])
    with pytest.raises(ValueError, match="input_hw"):
        publishers.publish(both, both.people, image_header, INPUT_HW, image=rgb[:50])

    # only body 0 from now on: body 1 keeps its publishers within the timeout, loses them after
    alone = synthetic_frame(body_model, [[-0.5, -0.5, 3.0]], [0.9], [0])
    now[0] += 1.5
    assert publishers.publish(alone, alone.people, image_header, INPUT_HW) == ["tst0"]
    assert publishers.bodies == ["tst0", "tst1"]
    now[0] += 1.0  # 2.5 s since body 1 was last tracked
    publishers.publish(alone, alone.people, image_header, INPUT_HW)
    assert publishers.bodies == ["tst0"]
    wait_until(lambda: count("/humans/bodies/tst1/roi") == 0 and count("/humans/bodies/tst1/skeleton2d") == 0,
               10, "body 1's publishers gone")
    assert count("/humans/bodies/tst0/roi") == 1
    wait_until(lambda: harness.snapshot(hri.TRACKED_TOPIC)[-1].ids == ["tst0"], 10, "tracked list without body 1")

    # nobody seen: the list is still published, empty; expire() alone drops body 0 later
    publishers.publish(alone, [], image_header, INPUT_HW)
    wait_until(lambda: harness.snapshot(hri.TRACKED_TOPIC)[-1].ids == [], 10, "an empty tracked list")
    now[0] += 5.0
    publishers.expire()
    assert publishers.bodies == []
    assert len(rois) > 0 and len(skeletons) > 0 and len(tracked) > 0

    publishers.publish(both, both.people, image_header, INPUT_HW)
    wait_until(lambda: tracked[-1].ids == ["tst0", "tst1"], 10, "both bodies tracked again")
    publishers.close()
    assert publishers.bodies == []
    wait_until(lambda: tracked[-1].ids == [], 10, "an empty tracked list on close()")
    wait_until(lambda: count(hri.TRACKED_TOPIC) == 0 and count("/humans/bodies/tst0/roi") == 0, 10,
               "every publisher gone after close()")
    publishers.publish(both, both.people, image_header, INPUT_HW)  # after close: nothing, no error
    assert count("/humans/bodies/tst0/roi") == 0


def test_cameras_share_the_tracked_list(harness, body_model):
    node = Node("hri_test_cameras", context=harness.context)
    harness.add_node(node)
    now = [0.0]
    publishers = hri.HriBodyPublishers(node, timeout_s=1.0, clock=lambda: now[0], close_ack_timeout_s=10.0)
    tracked = harness.collect(IdsList, hri.TRACKED_TOPIC)
    frame = synthetic_frame(body_model, [[0.0, -0.5, 3.0]], [0.8], [0], with_body=False)
    header = Header(stamp=stamp(2.0), frame_id="front_optical")
    front = publishers.publish(frame, frame.people, header, INPUT_HW, camera="front")
    back = publishers.publish(frame, frame.people, header, INPUT_HW, camera="back")
    assert front != back  # track 0 of each camera is a different body
    assert front == [publishers.body_id(0, "front")] and back == [publishers.body_id(0, "back")]

    def last_tracked(expected):
        def check():
            publishers.publish(frame, frame.people, header, INPUT_HW, camera="front")
            return tracked and tracked[-1].ids == expected
        return check

    wait_until(last_tracked(front + back), 10, "both cameras' bodies in the tracked list", period=0.1)
    now[0] += 1.5  # the back camera stopped
    wait_until(last_tracked(front), 10, "the silent camera's bodies gone", period=0.1)
    assert publishers.bodies == front
    publishers.close()
    wait_until(lambda: tracked[-1].ids == [], 10, "an empty tracked list on close()")


def test_no_skeleton_topic_without_a_body_model(harness, body_model):
    node = Node("hri_test_no_body", context=harness.context)
    harness.add_node(node)
    publishers = hri.HriBodyPublishers(node, body_ids=hri_arrays.BodyIds("nob"))
    frame = synthetic_frame(body_model, [[0.0, -0.3, 3.0]], [0.7], [2], with_body=False)
    publishers.publish(frame, frame.people, Header(stamp=stamp(1.0)), INPUT_HW)
    wait_until(lambda: harness.client.count_publishers("/humans/bodies/nob2/roi") == 1, 10, "roi publisher")
    assert harness.client.count_publishers("/humans/bodies/nob2/skeleton2d") == 0
    publishers.close()


def test_timeout_must_be_positive(harness):
    node = Node("hri_test_bad", context=harness.context)
    harness.add_node(node)
    with pytest.raises(ValueError, match="timeout_s"):
        hri.HriBodyPublishers(node, timeout_s=0.0)


# ----------------------------------------------------------------------------- wire compatibility

# Measured on ros4hri/hri_msgs 2.0.0 (humble-devel; 2.1-2.3.2, on Jazzy/Kilted, change only
# LiveSpeech, Gesture and docs) built with this environment's rosidl (Kilted wheels).
REAL_HRI_MSGS = {
    "IdsList": ("RIHS01_7e0812d1ac945c98fd3e393568d581ad0ab567f37b24eff633eab778c1bfe62d",
                {"header": "std_msgs/Header", "ids": "sequence<string>"}),
    "NormalizedPointOfInterest2D": ("RIHS01_cc1d2f720c82afeb850ff1dbf66f41ecb7caf19f842987f1247e66160cf03953",
                                    {"x": "float", "y": "float", "c": "float"}),
    "NormalizedRegionOfInterest2D": ("RIHS01_2e50c93f1ca166ee77af9a5424dc951ae4e452b740162a7f83c082d917dcaff5",
                                     {"header": "std_msgs/Header", "xmin": "float", "ymin": "float",
                                      "xmax": "float", "ymax": "float", "c": "float"}),
    "Skeleton2D": ("RIHS01_1cb61f012db6ca43c48fa0097ccab9a00108ea39323c13f01bb983323c1e3420",
                   {"header": "std_msgs/Header", "skeleton": "hri_msgs/NormalizedPointOfInterest2D[18]"}),
}


@pytest.mark.parametrize("name", sorted(REAL_HRI_MSGS))
def test_hri_msgs_wire_compatible_with_the_real_package(name):
    """hri_msgs here (the compat stand-in, or a distro's) has the real package's fields and
    type hashes, so rmw type-hash checks let it talk to real ROS4HRI nodes."""
    from ament_index_python.packages import get_package_share_directory

    import hri_msgs.msg

    expected_hash, expected_fields = REAL_HRI_MSGS[name]
    assert getattr(hri_msgs.msg, name).get_fields_and_field_types() == expected_fields
    description = json.loads((Path(get_package_share_directory("hri_msgs")) / "msg" / f"{name}.json").read_text())
    hashes = {entry["type_name"]: entry["hash_string"] for entry in description["type_hashes"]}
    assert hashes[f"hri_msgs/msg/{name}"] == expected_hash
