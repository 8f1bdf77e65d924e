"""Where human3r-process puts one camera's frames: an .npz written whole on commit, or a bag
written as frames come (cli.multicam shares BagSink for each of several cameras)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np

from human3r_ros.cli.sources import Frame


def write_npz(output: Path, arrays: dict) -> None:
    """Write the .npz whole or not at all: a unique sibling name (created with the user's umask;
    mkstemp would make it 0600), renamed over the output when complete."""
    tmp = output.parent / f".{output.name}.partial-{uuid.uuid4().hex[:12]}"
    try:
        with open(tmp, "xb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class NpzSink:
    """Collects results; writes the .npz (``to_npz_dict`` keys + ``meta_json``) on commit."""

    def __init__(self, output: Path):
        self.output = output
        self.results = []

    def add(self, frame: Frame, result) -> None:
        self.results.append(result)

    def new_sequence(self) -> None:
        pass  # frame_index restarting at 0 and frame_stamp show it

    def commit(self, meta: dict) -> None:
        from human3r_ros.engine.npz_schema import to_npz_dict

        arrays = to_npz_dict(self.results)
        arrays["meta_json"] = np.array(json.dumps(meta))
        write_npz(self.output, arrays)

    def abort(self) -> None:
        pass  # nothing on disk before commit

    @property
    def count(self) -> int:
        return len(self.results)


class BagSink:
    """Streams each frame's messages into a bag (see bag_messages for topics); several cameras
    share one writer (cli.multicam)."""

    def __init__(self, writer, options, copy_from=None):
        from human3r_ros.cli.bag_messages import BagMessages
        from human3r_ros.cli.bags import typestore

        self.writer = writer  # bags.BagWriter
        self.messages = BagMessages(typestore(), options)
        self.copy_from = copy_from  # input connection whose messages are copied, or None
        self.count = 0

    def add(self, frame: Frame, result) -> None:
        for topic, msg in self.messages.frame(result, frame.stamp_ns, frame.rgb.shape[:2]):
            self.writer.write(topic, msg, frame.log_ns)
        if self.copy_from is not None:
            self.writer.write_raw(self.copy_from.topic, self.copy_from.msgtype, frame.raw, frame.log_ns)
        self.count += 1

    def new_sequence(self) -> None:
        self.messages.new_sequence()

    def commit(self, meta: dict) -> None:
        self.writer.set_custom_data("human3r", json.dumps(meta))
        self.writer.commit()

    def abort(self) -> None:
        self.writer.abort()
