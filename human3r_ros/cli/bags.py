"""ROS 2 bags without ROS: reading camera topics and writing results with ``rosbags``.

Reads sqlite3 and mcap bags (a bag folder, or a bare ``.mcap`` / ``.db3`` file); writes an
``.mcap`` file or a sqlite3 bag folder. The typestore is ROS 2 Jazzy's (sensor_msgs,
geometry_msgs, nav_msgs, tf2_msgs, rosgraph_msgs) plus human3r_msgs, read from this package's
own ``.msg`` files so bag and node always agree on the definitions.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional

from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore, get_types_from_msg

from human3r_ros.cli import CliError
from human3r_ros.cli.sources import Frame, Source, Window
from human3r_ros.ros.msg_arrays import (
    NS_PER_S, ImageConversionError, compressed_image_to_rgb, raw_image_to_rgb, stamp_to_ns,
)

log = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
HUMAN3R_MSGS = ("Human", "HumanArray")
BAG_VERSION = 8  # rosbag2 metadata version written (read by Iron, Jazzy and later)


def _msg_dirs() -> Iterator[Path]:
    """Where human3r_msgs/msg/*.msg may be: the source tree, then installed ament prefixes."""
    yield Path(__file__).resolve().parents[2] / "human3r_msgs" / "msg"
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        yield Path(prefix) / "share" / "human3r_msgs" / "msg"


@lru_cache(maxsize=1)
def typestore():
    """Jazzy typestore with human3r_msgs/msg/{Human,HumanArray} registered (cached)."""
    store = get_typestore(Stores.ROS2_JAZZY)
    for folder in _msg_dirs():
        if all((folder / f"{name}.msg").is_file() for name in HUMAN3R_MSGS):
            types = {}
            for name in HUMAN3R_MSGS:
                types.update(get_types_from_msg((folder / f"{name}.msg").read_text(), f"human3r_msgs/msg/{name}"))
            store.register(types)
            return store
    raise CliError("human3r_msgs/msg/Human.msg not found (looked in the source tree and AMENT_PREFIX_PATH)")


def _topic_list(connections) -> str:
    return ", ".join(sorted({f"{c.topic} ({c.msgtype})" for c in connections})) or "none"


def _storage_path(path: Path) -> Path:
    """A bag folder that lost its metadata.yaml is still readable through its single storage file."""
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        files = sorted(path.glob("*.db3")) + sorted(path.glob("*.mcap"))
        if len(files) == 1:
            return files[0]
    return path


class BagSource(Source):
    """The camera images of one topic of a bag, in log-time order, inside a time window
    relative to the bag's first message. Frames carry the header stamp, the log time and
    the serialized message (to copy it to the output bag)."""

    def __init__(self, path: Path, window: Window, topic: Optional[str] = None):
        self.path = path
        self.window = window
        try:
            self._reader = Reader(_storage_path(path))
            self._reader.open()
        except Exception as exc:  # rosbags raises several types for unreadable bags
            raise CliError(f"cannot open bag {path}: {exc}") from None
        try:
            self.connections = self._pick_connections(topic)
        except CliError:
            self._reader.close()
            raise
        self.topic = self.connections[0].topic
        self.msgtype = self.connections[0].msgtype
        bag_start, bag_end = self._reader.start_time, self._reader.end_time
        self._start_ns = bag_start + round(window.start * NS_PER_S)
        self._stop_ns = None if window.duration is None else self._start_ns + round(window.duration * NS_PER_S)
        count = sum(c.msgcount for c in self.connections)
        if window.start <= 0 and window.duration is None:
            self.total = count
        else:  # the bag index has no cheaper count: estimate from the window's share of the bag
            low = max(bag_start, self._start_ns)
            high = bag_end if self._stop_ns is None else min(bag_end, self._stop_ns)
            self.total = max(0, min(count, round(count * (high - low) / max(bag_end - bag_start, 1))))

    def _pick_connections(self, topic: Optional[str]):
        connections = self._reader.connections
        images = [c for c in connections if c.msgtype in IMAGE_TYPES]
        if topic is not None:
            chosen = [c for c in connections if c.topic == topic]
            if not chosen:
                raise CliError(f"topic {topic} is not in {self.path}; image topics: {_topic_list(images)}")
            if chosen[0].msgtype not in IMAGE_TYPES:
                raise CliError(f"topic {topic} carries {chosen[0].msgtype}, not {IMAGE} or {COMPRESSED_IMAGE}; "
                               f"image topics: {_topic_list(images)}")
            return [c for c in chosen if c.msgtype == chosen[0].msgtype]
        topics = sorted({c.topic for c in images})
        if len(topics) == 1:
            return [c for c in images if c.topic == topics[0]]
        if not topics:
            raise CliError(f"{self.path} has no {IMAGE} or {COMPRESSED_IMAGE} topic; "
                           f"topics: {_topic_list(connections)}")
        raise CliError(f"{self.path} has several image topics, choose one with --image-topic: {_topic_list(images)}")

    def raw_messages(self) -> Iterator[tuple[object, int, bytes]]:
        """(connection, log time ns, serialized message) of the window, in log-time order."""
        return self._reader.messages(self.connections, start=self._start_ns, stop=self._stop_ns)

    def __iter__(self) -> Iterator[Frame]:
        store = typestore()
        decode = compressed_image_to_rgb if self.msgtype == COMPRESSED_IMAGE else raw_image_to_rgb
        for index, (connection, log_ns, raw) in enumerate(self.raw_messages()):
            msg = store.deserialize_cdr(raw, connection.msgtype)
            stamp_ns = stamp_to_ns(msg.header.stamp)
            where = f"{self.topic} message {index} (stamp {stamp_ns / NS_PER_S:.3f} s)"
            try:
                rgb = decode(msg)
            except ImageConversionError as exc:
                raise CliError(f"{where}: {exc}") from None
            yield Frame(index, stamp_ns, rgb, where, log_ns=log_ns, raw=bytes(raw))

    def close(self) -> None:
        self._reader.close()


class BagWriter:
    """Writes a bag next to its final path and moves it there on :meth:`commit`; :meth:`abort`
    removes it. ``.mcap`` outputs become one file, anything else a sqlite3 bag folder."""

    def __init__(self, output: Path):
        self.output = output
        self._mcap = output.suffix.lower() == ".mcap"
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
        # rosbags names the storage file after the bag folder: give it the final name.
        self._bag_dir = self._tmp / (output.stem if self._mcap else output.name)
        plugin = StoragePlugin.MCAP if self._mcap else StoragePlugin.SQLITE3
        self._writer = Writer(self._bag_dir, version=BAG_VERSION, storage_plugin=plugin)
        self._writer.open()
        self._connections = {}

    def _connection(self, topic: str, msgtype: str):
        key = (topic, msgtype)
        if key not in self._connections:
            self._connections[key] = self._writer.add_connection(topic, msgtype, typestore=typestore())
        return self._connections[key]

    def write(self, topic: str, msg, log_ns: int) -> None:
        msgtype = msg.__msgtype__
        self._writer.write(self._connection(topic, msgtype), log_ns, typestore().serialize_cdr(msg, msgtype))

    def write_raw(self, topic: str, msgtype: str, raw: bytes, log_ns: int) -> None:
        """Copy an already serialized message (e.g. an input image) unchanged."""
        self._writer.write(self._connection(topic, msgtype), log_ns, raw)

    def set_custom_data(self, key: str, value: str) -> None:
        """A string stored in the bag's metadata (rosbag2 custom_data)."""
        self._writer.set_custom_data(key, value)

    def _close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def commit(self) -> None:
        """Finish the bag (index, metadata) and move it to the output path."""
        self._close()
        built = self._bag_dir / f"{self._bag_dir.name}.mcap" if self._mcap else self._bag_dir
        if self.output.is_dir():  # --overwrite of a bag folder
            shutil.rmtree(self.output)
        elif self.output.exists() and built.is_dir():  # --overwrite of a file by a bag folder
            self.output.unlink()
        os.replace(built, self.output)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def abort(self) -> None:
        try:
            self._close()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
