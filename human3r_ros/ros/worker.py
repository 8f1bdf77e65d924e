"""A worker thread that is watched: if it ends while it should run, the owner learns why and
starts it again (the node checks it from a steady timer)."""

from __future__ import annotations

import threading
from typing import Callable, Optional


class SupervisedWorker:
    def __init__(self, name: str, loop: Callable[[threading.Event], None]) -> None:
        self._name = name
        self._loop = loop  # runs until the event is set; one frame's failure must stay inside it
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._ended_by = ""
        self.restarts = 0

    @property
    def name(self) -> str:
        return self._name

    def start(self) -> None:
        # a new event each time: a thread still finishing its frame after stop() keeps its own
        # (set) event, so it ends instead of running on beside the new one
        self._stop = threading.Event()
        self._ended_by = ""
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name=self._name, daemon=True)
        self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        try:
            self._loop(stop)
        except BaseException as exc:  # noqa: BLE001 - recorded for check(); the thread ends here
            if not stop.is_set():
                self._ended_by = f"{type(exc).__name__}: {exc}"
        else:
            if not stop.is_set():
                self._ended_by = "its loop returned"

    def ask_to_stop(self) -> None:
        """Ask the loop to end, without waiting (see stop)."""
        self._stop.set()

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Ask the loop to end and wait up to `timeout` s; False when it is still busy (a frame in
        flight): it is a daemon thread and ends after that frame."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def check(self) -> Optional[str]:
        """If the thread ended although it should run: restart it and return why it ended."""
        thread = self._thread
        if thread is None or thread.is_alive() or self._stop.is_set():
            return None
        reason = self._ended_by or "unknown reason"
        self.restarts += 1
        self.start()
        return reason
