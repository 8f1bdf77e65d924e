"""The node's frame pipeline: take the newest frames, then run them through stages (prepare,
engine, publish), on supervised threads.

Pipelined, each stage has its own thread and hands its result to the next through a one-item
hand-off, so the next frame is decoded and preprocessed while the network runs the current one,
and the previous one is published meanwhile. Frames keep their order (one thread per stage,
one item per hand-off) and a stage only starts on new input when its output hand-off is empty,
so no frame waits behind more than one other at any stage. The first stage takes the newest
frame just in time (from the stages' running mean durations): when the next stage is due to be
free, so a frame does not wait a whole network step after it was prepared. Unpipelined, one thread runs the
stages one after another (what a 2-core CPU or a debugging session may prefer).

Nothing here knows ROS: the node gives the functions.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from human3r_ros.ros.worker import SupervisedWorker

POLL_S = 0.1  # how often a waiting thread looks at its stop event
TIMING_WEIGHT = 0.2  # weight of the newest duration in a stage's running mean


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Any], Any]  # item -> the next stage's item; None: nothing goes on


class Handoff:
    """One item between two stage threads."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._item: Any = None

    def wait_empty(self, stop: threading.Event) -> bool:
        """Wait until the item was taken; False when `stop` was set first."""
        with self._changed:
            while self._item is not None:
                if stop.is_set():
                    return False
                self._changed.wait(POLL_S)
        return not stop.is_set()

    def put(self, item: Any, stop: threading.Event) -> bool:
        """Hand `item` on; refused once `stop` is set (a frame finished after a stop is not
        handed to the threads of the next start)."""
        with self._changed:
            while self._item is not None or stop.is_set():
                if stop.is_set():
                    return False
                self._changed.wait(POLL_S)
            self._item = item
            self._changed.notify_all()
        return True

    def take(self, timeout: float) -> Any:
        with self._changed:
            if self._item is None:
                self._changed.wait(timeout)
            item, self._item = self._item, None
            self._changed.notify_all()
        return item

    def clear(self) -> None:
        self.take(0.0)


class FramePipeline:
    """`take(timeout_s)` -> the next item (or None when nothing came); then `stages` in order.
    An exception inside a stage stays with its item (`on_error(stage_name, exc)`, the item goes
    no further); anything else that ends a thread is noticed by `check()`, which restarts it."""

    def __init__(self, name: str, take: Callable[[float], Any], stages: list[Stage], pipelined: bool,
                 on_error: Callable[[str, Exception], None]) -> None:
        self._take = take
        self._stages = stages
        self._on_error = on_error
        self.pipelined = pipelined
        self._timing = threading.Lock()
        self._mean_s = [0.0] * len(stages)  # running mean of each stage's duration
        self._busy_since: list[Optional[float]] = [None] * len(stages)  # monotonic start of the item in work
        if pipelined:
            # hand-off k lies between stage k and stage k + 1
            self._handoffs = [Handoff() for _ in stages[1:]]
            self._workers = [SupervisedWorker(f"{name}_{stage.name}", self._stage_loop(k))
                             for k, stage in enumerate(stages)]
        else:
            self._handoffs = []
            self._workers = [SupervisedWorker(name, self._serial_loop)]

    @property
    def thread_names(self) -> list[str]:
        return [worker.name for worker in self._workers]

    @property
    def restarts(self) -> int:
        return sum(worker.restarts for worker in self._workers)

    def start(self) -> None:
        for handoff in self._handoffs:
            handoff.clear()  # frames from before a stop are not published after it
        for worker in self._workers:
            worker.start()

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Stop every thread, waiting up to `timeout` s in all; False when one is still busy."""
        for worker in self._workers:
            worker.ask_to_stop()
        stopped = all([worker.stop(timeout / len(self._workers) if timeout is not None else None)
                       for worker in self._workers])
        for handoff in self._handoffs:
            handoff.clear()
        return stopped

    def check(self) -> list[tuple[str, str]]:
        """Restart the threads that ended although they should run: (thread name, what ended it)."""
        return [(worker.name, reason) for worker in self._workers if (reason := worker.check())]

    def _run(self, k: int, item: Any) -> Any:
        started = time.monotonic()
        with self._timing:
            self._busy_since[k] = started
        try:
            return self._stages[k].run(item)
        except Exception as exc:  # noqa: BLE001 - one item's failure stays with it
            self._on_error(self._stages[k].name, exc)
            return None
        finally:
            took = time.monotonic() - started
            with self._timing:
                self._busy_since[k] = None
                mean = self._mean_s[k]
                self._mean_s[k] = took if mean == 0.0 else mean + TIMING_WEIGHT * (took - mean)

    def _wait_until_just_in_time(self, stop: threading.Event) -> None:
        """The first stage takes the newest frame as late as it can: so that it is prepared when
        the next stage is due to be free, not a whole step of that stage before (which would add
        that step to every frame's latency)."""
        while not stop.is_set():
            with self._timing:
                busy_since, next_s, own_s = self._busy_since[1], self._mean_s[1], self._mean_s[0]
            if busy_since is None:
                return
            wait = busy_since + next_s - own_s - time.monotonic()
            if wait <= 0:
                return
            stop.wait(min(wait, POLL_S))

    def process(self, item: Any) -> Any:
        """Run `item` through every stage on the calling thread (what the unpipelined thread does)."""
        for k in range(len(self._stages)):
            if item is None:
                break
            item = self._run(k, item)
        return item

    def _serial_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.process(self._take(POLL_S))

    def _stage_loop(self, k: int) -> Callable[[threading.Event], None]:
        source = self._take if k == 0 else self._handoffs[k - 1].take
        out = self._handoffs[k] if k < len(self._handoffs) else None

        def loop(stop: threading.Event) -> None:
            while not stop.is_set():
                if out is not None:
                    if not out.wait_empty(stop):
                        return
                    if k == 0:
                        self._wait_until_just_in_time(stop)
                item = source(POLL_S)
                if item is None:
                    continue
                item = self._run(k, item)
                if item is not None and out is not None:
                    out.put(item, stop)

        return loop
