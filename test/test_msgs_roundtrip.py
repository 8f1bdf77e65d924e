"""human3r_msgs and the /tf message type go through the real middleware unchanged.

Two rclpy nodes in one process (the test harness's client and a talker) talk over
rmw_fastrtps_cpp, so this exercises the generated type support of the freshly built interface
packages.
"""

import array

import numpy as np
import pytest
from ros_helpers import Harness, wait_until

from geometry_msgs.msg import Point, Pose, Quaternion, Transform, TransformStamped, Vector3
from human3r_msgs.msg import Human, HumanArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header
from builtin_interfaces.msg import Time
from tf2_msgs.msg import TFMessage

NUM_JOINTS = 127
NUM_VERTICES = 10475  # a full SMPL-X mesh: large enough for the middleware to fragment it
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Bounded waits: discovery plus delivery, 5 s per round trip at most (about 0.3 s seen here).
DISCOVERY_S = 3.0
DELIVERY_S = 2.0


def make_human(rng: np.random.Generator, track_id: int, with_vertices: bool) -> Human:
    def floats(n):
        return rng.uniform(-1.0, 1.0, n).astype(np.float32)

    joints = rng.uniform(-3.0, 3.0, (NUM_JOINTS, 3))
    return Human(
        id=track_id,
        score=float(np.float32(rng.uniform())),
        global_orient=floats(3),
        body_pose=floats(63),
        left_hand_pose=floats(45),
        right_hand_pose=floats(45),
        jaw_pose=floats(3),
        betas=floats(10),
        expression=floats(10),
        pose=Pose(position=Point(x=1.5, y=-0.25, z=3.0), orientation=Quaternion(x=0.0, y=0.0, z=0.6, w=0.8)),
        head_position=Point(x=1.5, y=-0.25, z=3.6),
        joints=[Point(x=x, y=y, z=z) for x, y, z in joints.tolist()],
        vertices=array.array("f", floats(3 * NUM_VERTICES).tobytes()) if with_vertices else array.array("f"),
        roi=RegionOfInterest(x_offset=12, y_offset=34, height=200, width=96, do_rectify=False),
    )


def assert_msg_equal(got, sent, path: str = "msg") -> None:
    """Field-by-field equality that names the first differing field."""
    if hasattr(sent, "get_fields_and_field_types"):
        assert type(got) is type(sent), f"{path}: {type(got).__name__} != {type(sent).__name__}"
        for field in sent.get_fields_and_field_types():
            assert_msg_equal(getattr(got, field), getattr(sent, field), f"{path}.{field}")
    elif isinstance(sent, (np.ndarray, array.array)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(sent), err_msg=path)
    elif isinstance(sent, (list, tuple)):
        assert len(got) == len(sent), f"{path}: length {len(got)} != {len(sent)}"
        for i, (g, s) in enumerate(zip(got, sent)):
            assert_msg_equal(g, s, f"{path}[{i}]")
    else:
        assert got == sent, f"{path}: {got!r} != {sent!r}"


@pytest.fixture(scope="module")
def harness():
    h = Harness(offset=37)
    yield h
    h.close()


def round_trip(harness, msg_type, topic: str, sent):
    """Publish `sent` from a talker node, receive it on the harness's client, return what arrived."""
    from rclpy.node import Node

    harness.collect(msg_type, topic, RELIABLE)
    talker = Node("h3r_roundtrip_talker", context=harness.context)
    harness.add_node(talker)
    publisher = talker.create_publisher(msg_type, topic, RELIABLE)
    wait_until(lambda: publisher.get_subscription_count() > 0, DISCOVERY_S, f"{topic} discovery")
    publisher.publish(sent)
    return wait_until(lambda: harness.snapshot(topic), DELIVERY_S, f"a message on {topic}")[0]


def test_human_array_round_trip(harness):
    rng = np.random.default_rng(7)
    sent = HumanArray(
        header=Header(stamp=Time(sec=1_700_000_000, nanosec=123_456_789), frame_id="map"),
        camera_pose=Pose(position=Point(x=0.1, y=0.2, z=1.3), orientation=Quaternion(x=0.5, y=-0.5, z=0.5, w=-0.5)),
        humans=[make_human(rng, 3, with_vertices=True), make_human(rng, 11, with_vertices=False)],
    )
    got = round_trip(harness, HumanArray, "/humans/test_array", sent)

    assert_msg_equal(got, sent)
    # Spot checks on the shapes the node relies on.
    assert [h.id for h in got.humans] == [3, 11]
    assert len(got.humans[0].joints) == NUM_JOINTS
    assert len(got.humans[0].vertices) == 3 * NUM_VERTICES and len(got.humans[1].vertices) == 0
    assert got.humans[0].body_pose.dtype == np.float32 and got.humans[0].body_pose.shape == (63,)


def test_tf_message_round_trip(harness):
    stamp = Time(sec=42, nanosec=500)

    def transform(child: str, x: float) -> TransformStamped:
        return TransformStamped(
            header=Header(stamp=stamp, frame_id="map"),
            child_frame_id=child,
            transform=Transform(translation=Vector3(x=x, y=-1.0, z=0.5), rotation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)),
        )

    sent = TFMessage(transforms=[transform("camera_optical", 0.25), transform("body_3", 2.0)])
    got = round_trip(harness, TFMessage, "/tf", sent)
    assert_msg_equal(got, sent)


def test_tf_message_matches_ros_distribution_definition():
    """tf2_msgs here (the compat stand-in, or a distro's) hashes like the distro's TFMessage,
    so rmw type-hash checks let it talk to real /tf publishers and subscribers."""
    import json
    from pathlib import Path

    from ament_index_python.packages import get_package_share_directory
    from rosbags.typesys import Stores, get_typestore

    description = json.loads((Path(get_package_share_directory("tf2_msgs")) / "msg" / "TFMessage.json").read_text())
    hashes = {entry["type_name"]: entry["hash_string"] for entry in description["type_hashes"]}
    expected = get_typestore(Stores.ROS2_JAZZY).hash_rihs01("tf2_msgs/msg/TFMessage")
    assert hashes["tf2_msgs/msg/TFMessage"] == expected


@pytest.mark.parametrize("field, size", [
    ("global_orient", 3), ("body_pose", 63), ("left_hand_pose", 45), ("right_hand_pose", 45),
    ("jaw_pose", 3), ("betas", 10), ("expression", 10),
])
def test_human_fixed_array_sizes(field, size):
    assert getattr(Human(), field).shape == (size,)
