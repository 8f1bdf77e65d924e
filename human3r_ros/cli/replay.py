"""``human3r-replay``: publish a bag's camera images live, with ``/clock``, for the human3r node.

A small stand-in for ``ros2 bag play`` (absent from the PyPI ROS wheels) that only plays the
camera topic: messages go out as recorded (serialized bytes, unchanged) at their recorded
spacing divided by ``--rate``, and ``/clock`` follows the bag's log time so nodes with
``use_sim_time`` run on bag time. Finite unless told to loop forever.

Library use: :func:`replay` publishes with any rclpy node (e.g. inside a test).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Mapping, Optional

from human3r_ros.cli import CliError
from human3r_ros.cli.bags import BagSource
from human3r_ros.cli.sources import Window
from human3r_ros.ros.msg_arrays import NS_PER_S, ns_to_sec_nanosec

PROG = "human3r-replay"
log = logging.getLogger(PROG)


def parse_remaps(items) -> dict[str, str]:
    """["FROM:=TO", ...] -> {FROM: TO}."""
    remaps = {}
    for item in items or ():
        source, sep, target = item.partition(":=")
        if not sep or not source or not target:
            raise CliError(f"--topic-remap {item!r}: expected FROM:=TO, e.g. /camera/image_raw:=/image")
        remaps[source] = target
    return remaps


def _message_class(msgtype: str):
    package, _, name = msgtype.split("/")  # "sensor_msgs/msg/Image"
    return getattr(importlib.import_module(f"{package}.msg"), name)


def replay(node, bag: Path, *, topic: Optional[str] = None, rate: float = 1.0, loops: int = 1,
           remap: Optional[Mapping[str, str]] = None, clock: bool = True, clock_hz: float = 40.0,
           start: float = 0.0, duration: Optional[float] = None, wait_for_subscriber: float = 0.0,
           stop: Optional[threading.Event] = None) -> int:
    """Publish the images of `topic` (default: the bag's only image topic) with `node`.

    rate: playback speed factor; loops: passes over the bag (0 = until `stop` is set);
    remap: topic renames (image topic and /clock); clock: publish rosgraph_msgs/Clock with the
    bag's log time, at each image and `clock_hz` times a second in between; start/duration:
    seconds from the bag's first message; wait_for_subscriber: seconds to wait for a subscriber
    of the image topic before starting. Returns the number of images published."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    if rate <= 0 or loops < 0 or clock_hz <= 0:
        raise CliError("rate and clock_hz must be > 0, loops >= 0")
    remap = dict(remap or {})
    stop = stop or threading.Event()
    published = 0
    with BagSource(Path(bag), Window(start, duration), topic) as source:
        out_topic = remap.get(source.topic, source.topic)
        # reliable: matches both reliable and best-effort (sensor-data) subscribers
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        images = node.create_publisher(_message_class(source.msgtype), out_topic, qos)
        clock_pub = node.create_publisher(Clock, remap.get("/clock", "/clock"), qos) if clock else None
        try:
            deadline = time.monotonic() + wait_for_subscriber
            while images.get_subscription_count() == 0 and time.monotonic() < deadline and not stop.is_set():
                time.sleep(0.01)
            log.info("publishing %s (%s) on %s at x%g", source.topic, source.msgtype, out_topic, rate)
            passes = 0
            while not stop.is_set() and (loops == 0 or passes < loops):
                published += _play_once(source, images, clock_pub, rate, clock_hz, stop)
                passes += 1
        finally:
            node.destroy_publisher(images)
            if clock_pub is not None:
                node.destroy_publisher(clock_pub)
    return published


def _publish_clock(publisher, bag_ns: int) -> None:
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    sec, nanosec = ns_to_sec_nanosec(bag_ns)
    publisher.publish(Clock(clock=Time(sec=sec, nanosec=nanosec)))


def _play_once(source: BagSource, images, clock_pub, rate: float, clock_hz: float, stop: threading.Event) -> int:
    """One pass: each message at wall time start + (log time - first log time) / rate."""
    count = 0
    first_ns = wall0 = None
    for _connection, log_ns, raw in source.raw_messages():
        if first_ns is None:
            first_ns, wall0 = log_ns, time.monotonic()
        due = wall0 + (log_ns - first_ns) / NS_PER_S / rate
        while not stop.is_set():
            left = due - time.monotonic()
            if left <= 0:
                break
            if clock_pub is not None:  # keep bag time moving between images
                _publish_clock(clock_pub, first_ns + round((time.monotonic() - wall0) * rate * NS_PER_S))
            time.sleep(min(left, 1.0 / clock_hz))
        if stop.is_set():
            break
        if clock_pub is not None:
            _publish_clock(clock_pub, log_ns)
        images.publish(bytes(raw))  # the recorded CDR bytes, unchanged
        count += 1
    return count


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Publish a ROS 2 bag's camera images (Image or "
                                "CompressedImage) and /clock at the recorded rate.")
    p.add_argument("bag", type=Path, help="bag folder, or .mcap / .db3 file")
    p.add_argument("--image-topic", metavar="TOPIC", help="topic to play (default: the bag's only image topic)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1)")
    p.add_argument("--loop", type=int, nargs="?", const=0, default=1, metavar="N",
                   help="play N times; without N: until Ctrl-C (default: once)")
    p.add_argument("--topic-remap", action="append", metavar="FROM:=TO",
                   help="publish FROM as TO (repeatable; /clock too)")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument("--start", type=float, default=0.0, metavar="SEC", help="skip the bag's first SEC seconds")
    p.add_argument("--duration", type=float, metavar="SEC", help="play at most SEC seconds of the bag")
    p.add_argument("--wait-for-subscriber", type=float, default=0.0, metavar="SEC",
                   help="wait up to SEC seconds for a subscriber of the image topic before playing")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Arguments after --ros-args go to rclpy (e.g. -p use_sim_time:=true), the rest are ours.
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    args = build_parser().parse_args(argv[:split])
    logging.basicConfig(level=logging.INFO, format=f"{PROG}: %(message)s", stream=sys.stderr)
    try:
        remaps = parse_remaps(args.topic_remap)
    except CliError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    import rclpy

    rclpy.init(args=[PROG, *argv[split:]])
    node = rclpy.create_node("human3r_replay")
    try:
        count = replay(node, args.bag, topic=args.image_topic, rate=args.rate, loops=args.loop, remap=remaps,
                       clock=not args.no_clock, start=args.start, duration=args.duration,
                       wait_for_subscriber=args.wait_for_subscriber)
        log.info("published %d images", count)
        return 0
    except CliError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
