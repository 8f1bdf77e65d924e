"""Time rules of a stamped stream (shared by the node and the offline tools), on the real engine."""

import math

import numpy as np
import torch

from human3r_ros.engine import Human3REngine
from human3r_ros.engine.stream import StampedStream

S = 1_000_000_000


def make_stream(reference_dir):
    engine = Human3REngine.from_checkpoint(reference_dir / "tiny_plain_checkpoint.pth", size=64, ttt3r=False,
                                           reset_interval=0)
    return StampedStream(engine), np.load(reference_dir / "tiny_plain_io.npz")["frames_uint8"]


def test_repeated_stamp_skipped_and_time_going_back_resets(reference_dir):
    stream, frames = make_stream(reference_dir)
    first = stream.step(frames[0], 10 * S)
    assert first.result is not None and first.note is None and not first.time_reset
    same = stream.step(frames[1], 10 * S)
    assert same.result is None and "same stamp" in same.note
    stream.step(frames[1], 11 * S)
    back = stream.step(frames[0], 5 * S)
    assert back.time_reset and "time went backwards (11.000 s -> 5.000 s)" in back.note
    assert back.result.index == 0  # a new sequence
    np.testing.assert_allclose(back.result.c2w, first.result.c2w, atol=1e-6)


def test_zero_stamps_skip_the_time_checks(reference_dir):
    stream, frames = make_stream(reference_dir)
    outcomes = [stream.step(f, 0) for f in frames[:3]]
    assert [o.result.index for o in outcomes] == [0, 1, 2]


def test_non_finite_pose_skips_the_frame_and_resets(reference_dir):
    stream, frames = make_stream(reference_dir)
    stream.step(frames[0], 1 * S)
    stream.step(frames[1], 2 * S)
    head = stream.engine.net.downstream_head.pose_head.mlp.fc2
    saved = head.bias.clone()
    with torch.no_grad():
        head.bias.fill_(math.nan)
    broken = stream.step(frames[2], 3 * S)
    assert broken.result is None and "non-finite camera pose" in broken.note
    with torch.no_grad():
        head.bias.copy_(saved)
    after = stream.step(frames[0], 4 * S)
    assert after.result.index == 0  # the poisoned state was dropped


def test_the_first_result_after_any_reset_opens_a_new_sequence(reference_dir):
    # the flag travels with the frame: a pipeline clears the old sequence's path and ids exactly there
    stream, frames = make_stream(reference_dir)
    flags = [stream.step(frames[0], 1 * S).new_sequence, stream.step(frames[1], 2 * S).new_sequence]
    stream.reset()  # requested (the node's ~/reset service)
    flags += [stream.step(frames[2], 3 * S).new_sequence, stream.step(frames[3], 4 * S).new_sequence]
    back = stream.step(frames[4], 1 * S)  # time going backwards
    flags += [back.new_sequence, stream.step(frames[5], 2 * S).new_sequence]
    assert flags == [False, False, True, False, True, False]
    assert back.time_reset
