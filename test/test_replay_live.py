"""A bag replayed live through the node gives the same people and poses as the offline path.

bag (rosbags) -> human3r-replay (rclpy, with /clock) -> human3r node (use_sim_time) -> HumanArray,
compared with human3r-process on the same bag."""

import numpy as np
import rclpy
from ros_helpers import REFERENCE_FILES, Harness, make_node, wait_until
from test_bags import NS, T0, TOPIC, cli, read_bag, stamp_ns, write_bag

from human3r_msgs.msg import HumanArray
from human3r_ros.cli.replay import replay

# Recorded 1 s apart, replayed one frame per `replay` call once the previous frame's output is
# in: the node drops a frame when the next arrives during its processing (newest wins), and a
# shared CI machine can stall a process for seconds, so a free-running replay cannot promise
# the offline path's frame-for-frame sequence.
FRAME_GAP_S = 1.0


def as_arrays(humans_msgs):
    """stamp -> (ids, camera position, body positions, global orientations) of each HumanArray."""
    out = {}
    for m in humans_msgs:
        cam = m.camera_pose.position
        out[stamp_ns(m)] = (
            [h.id for h in m.humans],
            np.array([cam.x, cam.y, cam.z]),
            np.array([[h.pose.position.x, h.pose.position.y, h.pose.position.z] for h in m.humans]).reshape(-1, 3),
            np.array([np.asarray(h.global_orient, np.float64) for h in m.humans]).reshape(-1, 3),
        )
    return out


def test_live_replay_matches_offline_processing(reference_dir, tmp_path):
    frames = np.load(reference_dir / REFERENCE_FILES["io"])["frames_uint8"]
    bag = write_bag(tmp_path / "camera", frames, [T0 + FRAME_GAP_S * k for k in range(len(frames))])

    assert cli(reference_dir, bag, tmp_path / "offline.mcap", body=True) == 0
    offline = as_arrays(m for _, m in read_bag(tmp_path / "offline.mcap")["/human3r/humans"])

    h = Harness(offset=61)
    try:
        node = make_node(h, reference_dir, body_model=True, image_topic=TOPIC, reliability="reliable",
                         autostart=True, use_sim_time=True)
        live_msgs = h.collect(HumanArray, "/human3r/humans")
        wait_until(lambda: node._cameras[""].subscribed, 60, "the node to autostart")
        player = rclpy.create_node("replayer", context=h.context)
        for k in range(len(frames)):
            assert replay(player, bag, rate=1.0, start=k * FRAME_GAP_S, duration=FRAME_GAP_S / 2,
                          wait_for_subscriber=10.0) == 1
            wait_until(lambda: len(h.snapshot("/human3r/humans")) == k + 1, 60, f"the HumanArray of frame {k}")
        player.destroy_node()
        assert node._cameras[""].counters.dropped == 0
        live = as_arrays(h.snapshot("/human3r/humans"))
        assert node.get_clock().now().nanoseconds >= (T0 + FRAME_GAP_S * (len(frames) - 1)) * NS  # bag time
    finally:
        h.close()

    assert list(live) == list(offline) == [round((T0 + FRAME_GAP_S * k) * NS) for k in range(len(frames))]
    assert len(live_msgs) == len(frames)
    for stamp in offline:
        ids, cam, bodies, orients = live[stamp]
        ref_ids, ref_cam, ref_bodies, ref_orients = offline[stamp]
        assert ids == ref_ids
        np.testing.assert_allclose(cam, ref_cam, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(bodies, ref_bodies, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(orients, ref_orients, rtol=1e-4, atol=1e-4)
