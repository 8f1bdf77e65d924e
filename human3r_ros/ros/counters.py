"""Per-camera frame counters and rates for /diagnostics (written by callbacks and the worker,
read by the diagnostics timer)."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter, deque

RATE_WINDOW_S = 10.0  # rates average over this much recent time...
RATE_WINDOW_FRAMES = 100  # ...and at most this many frames
MAX_PLAUSIBLE_AGE_S = 60.0  # an image older than this (or from the future) means another clock


def rate_hz(times, now: float) -> float:
    recent = [t for t in times if now - t <= RATE_WINDOW_S]
    if len(recent) < 2 or recent[-1] <= recent[0]:
        return 0.0
    return (len(recent) - 1) / (recent[-1] - recent[0])


class StreamCounters:
    """What happened to one camera's frames. `received` = `processed` + `dropped` (replaced in the
    one-slot buffer before the worker took them) + skipped (per reason) + in flight; frames the
    middleware lost before the node are counted apart (`lost`, where the middleware reports it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = self.processed = self.dropped = self.lost = self.time_resets = 0
        self.skipped: Counter[str] = Counter()
        self.receive_times: deque[float] = deque(maxlen=RATE_WINDOW_FRAMES)  # monotonic
        self.finish_times: deque[float] = deque(maxlen=RATE_WINDOW_FRAMES)
        self.processing_s: deque[float] = deque(maxlen=RATE_WINDOW_FRAMES)  # wall clock, take -> published
        self.image_age_s: float | None = None  # ROS now - stamp at publish, None before the first frame
        self.last_error = ""
        self.last_image = time.monotonic()  # of the last image received (or of the subscription)

    def on_received(self, replaced_one: bool) -> None:
        now = time.monotonic()
        with self.lock:
            self.received += 1
            self.dropped += int(replaced_one)
            self.receive_times.append(now)
            self.last_image = now

    def on_lost(self, count: int) -> None:
        with self.lock:
            self.lost += count

    def on_skipped(self, reason: str, text: str) -> None:
        with self.lock:
            self.skipped[reason] += 1
            self.last_error = text

    def on_processed(self, processing_s: float, image_age_s: float) -> None:
        with self.lock:
            self.processed += 1
            self.finish_times.append(time.monotonic())
            self.processing_s.append(processing_s)
            self.image_age_s = image_age_s

    def on_time_reset(self) -> None:
        with self.lock:
            self.time_resets += 1

    def silent_s(self) -> float:
        with self.lock:
            return time.monotonic() - self.last_image

    def restart_silence(self) -> None:
        with self.lock:
            self.last_image = time.monotonic()

    def figures(self) -> dict:
        now = time.monotonic()
        with self.lock:
            values = {
                "frames_received": self.received,
                "frames_processed": self.processed,
                "frames_dropped": self.dropped,
                "frames_lost_before_node": self.lost,
                "frames_skipped": sum(self.skipped.values()),
                **{f"skipped_{reason}": n for reason, n in sorted(self.skipped.items())},
                "input_rate_hz": rate_hz(self.receive_times, now),
                "processed_rate_hz": rate_hz(self.finish_times, now),
                "processing_time_s": statistics.median(self.processing_s) if self.processing_s else float("nan"),
                "time_resets": self.time_resets,
                "last_error": self.last_error,
            }
            age = self.image_age_s
        if age is None:
            values["image_age_s"] = float("nan")
        elif 0.0 <= age <= MAX_PLAUSIBLE_AGE_S:
            values["image_age_s"] = age
        else:  # camera stamps on another clock: an age would be meaningless
            values["image_age_s"] = (f"n/a: image stamps differ from this node's clock by {age:.3g} s "
                                     "(camera clock not synchronised, or use_sim_time without /clock)")
        return values
