"""The frame pipeline on its own (no ROS): order, overlap of stages, failures, restarts, stop."""

import queue
import random
import threading
import time

import pytest

from ros_helpers import wait_until

from human3r_ros.ros.pipeline import FramePipeline, Stage


class Feed:
    """A source of numbered items, then nothing."""

    def __init__(self, n: int) -> None:
        self.items = queue.Queue()
        for i in range(n):
            self.items.put(i)

    def take(self, timeout: float):
        try:
            return self.items.get(timeout=timeout)
        except queue.Empty:
            return None


def tagged(name: str, jitter: float = 0.0):
    """A stage that appends its name to the item's trail, after a random short delay."""
    rng = random.Random(name)

    def run(item):
        time.sleep(rng.uniform(0.0, jitter))
        number, trail = item if isinstance(item, tuple) else (item, ())
        return number, trail + (name,)
    return run


def run_pipeline(n: int, pipelined: bool, jitter: float = 0.005):
    feed, out, errors = Feed(n), [], []
    stages = [Stage("prepare", tagged("prepare", jitter)), Stage("engine", tagged("engine", jitter)),
              Stage("publish", lambda item: out.append(item))]
    pipeline = FramePipeline("t", feed.take, stages, pipelined, lambda stage, exc: errors.append((stage, exc)))
    pipeline.start()
    try:
        wait_until(lambda: len(out) == n, 20, f"{n} items through the pipeline")
    finally:
        assert pipeline.stop(5.0)
    return out, errors


@pytest.mark.parametrize("pipelined", [True, False])
def test_items_keep_their_order_and_go_through_every_stage(pipelined):
    out, errors = run_pipeline(60, pipelined)
    assert out == [(i, ("prepare", "engine")) for i in range(60)]
    assert errors == []


def test_pipelined_stages_overlap_and_run_on_their_own_threads():
    # the engine stage of item 0 waits until the prepare stage works on item 1: unpipelined it
    # would wait forever (here: fail after 5 s)
    second_prepared = threading.Event()
    threads = {}

    def prepare(item):
        threads.setdefault("prepare", set()).add(threading.current_thread().name)
        if item == 1:
            second_prepared.set()
        return item

    def engine(item):
        threads.setdefault("engine", set()).add(threading.current_thread().name)
        if item == 0:
            assert second_prepared.wait(5.0), "item 1 was not prepared while item 0 ran"
        return item

    feed, out, errors = Feed(3), [], []
    pipeline = FramePipeline("t", feed.take, [Stage("prepare", prepare), Stage("engine", engine),
                                              Stage("publish", out.append)], True,
                             lambda stage, exc: errors.append(exc))
    pipeline.start()
    try:
        wait_until(lambda: len(out) == 3, 10, "three items")
    finally:
        pipeline.stop(5.0)
    assert errors == [] and out == [0, 1, 2]
    assert threads == {"prepare": {"t_prepare"}, "engine": {"t_engine"}}
    assert pipeline.thread_names == ["t_prepare", "t_engine", "t_publish"]


def test_no_stage_runs_ahead_by_more_than_one_item():
    # the engine is slow: the prepare stage takes a new item only when the engine took the last
    # one, so a frame never waits behind more than one other (newest frames stay newest)
    engine_busy = threading.Event()
    release = threading.Event()
    feed, out = Feed(10), []

    def engine(item):
        engine_busy.set()
        release.wait(5.0)
        return item

    pipeline = FramePipeline("t", feed.take, [Stage("prepare", lambda i: i), Stage("engine", engine),
                                              Stage("publish", out.append)], True, lambda s, e: None)
    pipeline.start()
    try:
        assert engine_busy.wait(5.0)
        time.sleep(0.3)
        # item 0 in the engine, item 1 prepared and waiting: the rest still in the source
        assert feed.items.qsize() == 8
        release.set()
        wait_until(lambda: len(out) == 10, 10, "every item")
    finally:
        release.set()
        pipeline.stop(5.0)
    assert out == list(range(10))


@pytest.mark.parametrize("pipelined", [True, False])
def test_a_failing_item_stays_inside_its_stage_and_the_next_goes_on(pipelined):
    feed, out, errors = Feed(5), [], []

    def engine(item):
        if item == 2:
            raise RuntimeError("item 2 on purpose")
        return item

    pipeline = FramePipeline("t", feed.take, [Stage("prepare", lambda i: i), Stage("engine", engine),
                                              Stage("publish", out.append)], pipelined,
                             lambda stage, exc: errors.append((stage, str(exc))))
    pipeline.start()
    try:
        wait_until(lambda: len(out) == 4, 10, "the other items")
    finally:
        pipeline.stop(5.0)
    assert out == [0, 1, 3, 4]
    assert errors == [("engine", "item 2 on purpose")]
    assert pipeline.check() == [] and pipeline.restarts == 0


class EndTheThread(BaseException):
    pass


@pytest.mark.parametrize("pipelined", [True, False])
def test_a_thread_that_ends_is_restarted_by_check(pipelined):
    feed, out = Feed(4), []
    calls = []

    def engine(item):
        calls.append(item)
        if len(calls) == 2:
            raise EndTheThread("ended on purpose")
        return item

    pipeline = FramePipeline("t", feed.take, [Stage("prepare", lambda i: i), Stage("engine", engine),
                                              Stage("publish", out.append)], pipelined, lambda s, e: None)
    pipeline.start()
    try:
        ended = wait_until(pipeline.check, 5, "the ended thread to be noticed")
        assert ended == [("t_engine" if pipelined else "t", "EndTheThread: ended on purpose")]
        assert pipeline.restarts == 1
        wait_until(lambda: len(out) == 3, 10, "the items after the restart")
    finally:
        pipeline.stop(5.0)
    assert out == [0, 2, 3]


def test_stop_says_when_an_item_is_still_in_flight_and_start_drops_what_waited():
    release = threading.Event()
    feed, out = Feed(3), []

    def engine(item):
        release.wait(10.0)
        return item

    pipeline = FramePipeline("t", feed.take, [Stage("prepare", lambda i: i), Stage("engine", engine),
                                              Stage("publish", out.append)], True, lambda s, e: None)
    pipeline.start()
    wait_until(lambda: feed.items.qsize() == 1, 5, "item 0 in the engine, item 1 waiting")
    assert not pipeline.stop(0.3)  # item 0 is still in the engine
    release.set()
    time.sleep(0.3)
    # neither the frame in flight at the stop nor the one waiting behind it is published later
    pipeline.start()
    wait_until(lambda: out == [2], 5, "the next item after a new start")
    time.sleep(0.3)
    assert out == [2]
    assert pipeline.stop(5.0)


def test_the_first_stage_takes_the_newest_frame_just_in_time():
    # a slow engine (0.5 s) and a quick prepare: a frame is taken when the engine is due to be
    # free, not when it starts (which would make every frame wait 0.5 s after being prepared).
    # The margins are wide both ways: a loaded machine delays threads, not by 0.25 s
    taken_at, engine_started, out = [], [], []
    feed = Feed(6)

    def take(timeout):
        item = feed.take(timeout)
        if item is not None:
            taken_at.append(time.monotonic())
        return item

    def engine(item):
        engine_started.append(time.monotonic())
        time.sleep(0.5)
        return item

    pipeline = FramePipeline("t", take, [Stage("prepare", lambda i: i), Stage("engine", engine),
                                         Stage("publish", out.append)], True, lambda s, e: None)
    pipeline.start()
    try:
        wait_until(lambda: len(out) == 6, 20, "every item")
    finally:
        pipeline.stop(5.0)
    # from the third item on, the engine's mean is known: the item is taken near the end of the
    # previous engine step and waits little for the engine
    for i in range(2, 6):
        assert taken_at[i] - engine_started[i - 1] > 0.25, f"item {i} taken too early"
        assert engine_started[i] - taken_at[i] < 0.25, f"item {i} waited for the engine"
