"""Extrinsics from TF (no ROS here: a lookup on a table stands in for tf2_ros's Buffer)."""

import importlib.util
import time

import pytest

from human3r_ros.ros.rig_tf import TfExtrinsics, open_tf_extrinsics


def test_waits_for_every_frame_id_then_for_every_transform():
    table = {("base_link", "front_optical"): [0.1, 0, 0, 0, 0, 0, 1]}
    asked = []

    def lookup(target, source):
        asked.append(source)
        if (target, source) not in table:
            raise LookupError(f"{source} does not exist")
        return table[(target, source)]

    tf = TfExtrinsics("base_link", lookup, retry_s=0.05)
    tf.note_frame("front", "front_optical")
    tf.note_frame("left", "")  # an image without a frame_id names nothing
    found, missing = tf.extrinsics(["front", "left"])
    assert found is None and missing == "no image with a frame_id yet from left" and asked == []
    tf.note_frame("left", "left_optical")
    found, missing = tf.extrinsics(["front", "left"])
    assert found is None and "base_link -> left_optical (LookupError: left_optical does not exist)" in missing
    table[("base_link", "left_optical")] = [-0.1, 0, 0, 0, 0, 0, 1]
    assert tf.extrinsics(["front", "left"]) == (None, "waiting to ask TF again")  # not more than once per retry_s
    time.sleep(0.06)
    found, missing = tf.extrinsics(["front", "left"])
    assert missing == "" and found == {"front": [0.1, 0, 0, 0, 0, 0, 1], "left": [-0.1, 0, 0, 0, 0, 0, 1]}


@pytest.mark.skipif(importlib.util.find_spec("tf2_ros") is not None, reason="tf2_ros is installed")
def test_without_tf2_ros_there_is_no_tf_source():
    assert open_tf_extrinsics(None, "base_link") is None
