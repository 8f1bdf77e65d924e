"""`make demo`: run the human3r node on the bundled sample and show what it published.

Runs the real lifecycle node in this process (rclpy, private DDS domain on localhost),
publishes the sample frames as sensor_msgs/Image one at a time, waits for each HumanArray,
records every output topic (and the input images) into an MCAP bag with `rosbags`, reads
the bag back and draws a top-down preview PNG.

Without a checkpoint it generates small random "demo weights" in the official container
format, so everything runs end to end without the licensed release files; their outputs are
meaningless, and the run says so loudly. A released name (``--checkpoint human3r_672S``) fetches
the real weights from Hugging Face on first use (see human3r_ros.model.hub).

    python -m human3r_ros.tools.demo [--checkpoint human3r_672S | file.pth] [--body-model DIR] [--out out/demo]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # keep the demo off the network

import cv2  # noqa: E402
import numpy as np  # noqa: E402

DEFAULT_OUT = Path("out/demo")
DEMO_WEIGHTS_NAME = "demo_weights.pth"
REAL_IMAGE_SIZE = 512  # what the released checkpoints were trained for
IMAGE_TOPIC = "/camera/image_raw"
NODE = "/human3r"
OUTPUT_TOPICS = {  # topic -> message type (package/msg/Name), everything the node publishes per frame
    f"{NODE}/humans": "human3r_msgs/msg/HumanArray",
    "/tf": "tf2_msgs/msg/TFMessage",
    f"{NODE}/scene/points": "sensor_msgs/msg/PointCloud2",
    f"{NODE}/camera_path": "nav_msgs/msg/Path",
    f"{NODE}/markers": "visualization_msgs/msg/MarkerArray",
}
FRAME_PERIOD_S = 0.1  # the sample plays at 10 frames per second
BANNER = "DEMO WEIGHTS: random, untrained — outputs are meaningless"
REAL_RESULTS_HINT = (
    "for real results: make demo CHECKPOINT=human3r_672S (the released weights by name: downloaded from "
    "Hugging Face once, 3.4 GB, CC BY-NC-SA 4.0 non-commercial; also human3r_672B, human3r_672L, "
    "human3r_896L), or CHECKPOINT=/path/to/checkpoint.pth"
)


class DemoError(RuntimeError):
    """Something the user can fix (missing file, node failed to start): printed as one line."""


@dataclass
class DemoResult:
    bag: Path
    preview: Path
    checkpoint: Path
    demo_weights: bool
    people_per_frame: list = field(default_factory=list)  # [(track_id, score), ...] per frame
    seconds: float = 0.0


def _say(text: str = "") -> None:
    print(text, flush=True)


def _banner(text: str) -> None:
    line = "!" * (len(text) + 8)
    _say(f"\n{line}\n!!! {text} !!!\n{line}\n")


# --------------------------------------------------------------------------- inputs

def _prepare_checkpoint(checkpoint: str, out_dir: Path) -> tuple[Path, bool]:
    """(checkpoint path, True when demo weights were generated)."""
    from human3r_ros.model.hub import WeightsError, is_weights_name, resolve_checkpoint

    if is_weights_name(checkpoint):
        try:
            return resolve_checkpoint(checkpoint, log=_say), False
        except WeightsError as exc:
            raise DemoError(f"CHECKPOINT={checkpoint}: {exc}") from None
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise DemoError(f"CHECKPOINT={checkpoint}: no such file")
        return path.resolve(), False
    from human3r_ros.tools.demo_checkpoint import make_demo_checkpoint

    _banner(BANNER)
    _say(REAL_RESULTS_HINT)
    path = make_demo_checkpoint(out_dir / DEMO_WEIGHTS_NAME).resolve()
    _say(f"wrote demo weights (official container format) to {path}")
    return path, True


def _check_body_model(body_model: str) -> str:
    if not body_model:
        _say("no BODY_MODEL given: people come as head positions and SMPL-X parameters, without joints or "
             "meshes (BODY_MODEL=<dir> with <dir>/smplx/SMPLX_NEUTRAL.npz adds them)")
        return ""
    folder = Path(body_model).expanduser()
    if not (folder / "smplx" / "SMPLX_NEUTRAL.npz").is_file():
        raise DemoError(f"BODY_MODEL={body_model}: expected the file {folder / 'smplx' / 'SMPLX_NEUTRAL.npz'}")
    return str(folder.resolve())


# --------------------------------------------------------------------------- the ROS run

@dataclass
class _Recorded:
    topic: str
    msgtype: str
    log_ns: int
    raw: bytes


class _NodeRun:
    """The node and a client node in a private rclpy context, spun by one executor thread."""

    def __init__(self, params: dict, domain_id: int):
        import rclpy
        from rclpy.exceptions import ParameterException
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node
        from rclpy.parameter import Parameter

        from human3r_ros.ros.node import Human3RNode

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.node = self.client = self._thread = None
        try:
            self.node = Human3RNode(
                context=self.context,
                parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
                cli_args=["--ros-args", "-r", f"image:={IMAGE_TOPIC}"],
            )
            self.client = Node("human3r_demo", context=self.context)
        except (ValueError, ParameterException) as exc:  # invalid parameter values
            self.close()
            raise DemoError(f"the node refused its parameters: {exc}") from None
        except Exception:
            self.close()
            raise
        self.executor.add_node(self.node)
        self.executor.add_node(self.client)
        self._thread = threading.Thread(target=self.executor.spin, name="demo_executor", daemon=True)
        self._thread.start()

    def lifecycle(self, transition_id: int, timeout: float) -> bool:
        """Ask the node for a lifecycle transition through its service (as `ros2 lifecycle set`)."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        client = self.client.create_client(ChangeState, f"{NODE}/change_state")
        try:
            if not client.wait_for_service(timeout_sec=10.0):
                raise DemoError(f"the node's {NODE}/change_state service did not appear")
            done = threading.Event()
            future = client.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
            future.add_done_callback(lambda _f: done.set())
            if not done.wait(timeout):
                raise DemoError(f"lifecycle transition {transition_id} took longer than {timeout:.0f} s")
            return bool(future.result().success)
        finally:
            self.client.destroy_client(client)

    def close(self) -> None:
        import rclpy

        if self.node is not None:
            try:  # from any state: stops the node's worker thread and frees the model
                self.node.trigger_shutdown()
            except Exception as exc:  # already finalized; keep closing the rest
                _say(f"(node shutdown transition: {exc})")
        # The executor must stop before rclpy shuts down (a spinning thread aborts the process).
        self.executor.shutdown(timeout_sec=5.0)
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for node in (self.node, self.client):
            if node is not None:
                node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)


def _run_node(frames: Sequence[np.ndarray], params: dict, domain_id: int, frame_timeout: float,
              on_frame: Callable[[int, object, float], None]) -> list[_Recorded]:
    """Feed `frames` to a live node one at a time; everything published comes back recorded."""
    from importlib import import_module

    from lifecycle_msgs.msg import Transition
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from human3r_ros.ros.conversions import array_to_image, stamp_to_ns

    recorded: list[_Recorded] = []
    humans: dict[int, object] = {}  # stamp ns -> HumanArray
    lock = threading.Lock()
    run = _NodeRun(params, domain_id)
    try:
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        subscriptions = []
        for topic, msgtype in OUTPUT_TOPICS.items():
            package, _, name = msgtype.split("/")
            msg_class = getattr(import_module(f"{package}.msg"), name)

            def keep(raw: bytes, topic=topic, msgtype=msgtype, msg_class=msg_class):
                now = run.client.get_clock().now().nanoseconds
                array = deserialize_message(raw, msg_class) if topic == f"{NODE}/humans" else None
                with lock:
                    recorded.append(_Recorded(topic, msgtype, now, raw))
                    if array is not None:
                        humans[stamp_to_ns(array.header.stamp)] = array

            # raw: meshes make marker messages large, and only the people are needed here
            subscriptions.append(run.client.create_subscription(msg_class, topic, keep, qos, raw=True))
        publisher = run.client.create_publisher(Image, IMAGE_TOPIC, qos)

        started = time.monotonic()
        if not run.lifecycle(Transition.TRANSITION_CONFIGURE, timeout=600.0):
            raise DemoError("the node failed to configure (load the checkpoint): see its error above")
        if not run.lifecycle(Transition.TRANSITION_ACTIVATE, timeout=30.0):
            raise DemoError("the node failed to activate: see its error above")
        _say(f"node configured and active in {time.monotonic() - started:.1f} s")
        # The node builds clouds and markers only for matched subscribers: wait for all of ours.
        _wait(lambda: publisher.get_subscription_count() > 0, 10.0, "the node's image subscription")
        _wait(lambda: all(s.get_publisher_count() > 0 for s in subscriptions), 10.0, "the node's publishers")

        stamp0 = time.time_ns()
        stamps = [stamp0 + round(i * FRAME_PERIOD_S * 1e9) for i in range(len(frames))]
        for i, (rgb, stamp_ns) in enumerate(zip(frames, stamps)):
            msg = array_to_image(rgb, stamp_ns, "camera")
            sent = time.monotonic()
            now = run.client.get_clock().now().nanoseconds
            with lock:
                recorded.append(_Recorded(IMAGE_TOPIC, "sensor_msgs/msg/Image", now, serialize_message(msg)))
            publisher.publish(msg)
            _wait(lambda: stamp_ns in humans, frame_timeout, f"the HumanArray of frame {i}")
            on_frame(i, humans[stamp_ns], time.monotonic() - sent)

        # The other outputs of the last frame follow its HumanArray: wait for one per frame each.
        def complete():
            with lock:
                counts = {t: sum(r.topic == t for r in recorded) for t in OUTPUT_TOPICS}
            return all(n >= len(frames) for n in counts.values())

        _wait(complete, 10.0, "the last frame's /tf, cloud, path and markers")
    finally:
        run.close()
    return sorted(recorded, key=lambda r: r.log_ns)


# --------------------------------------------------------------------------- bag and preview

def _write_bag(path: Path, recorded: Sequence[_Recorded], checkpoint: Path, demo_weights: bool) -> None:
    from human3r_ros.cli.bags import BagWriter

    writer = BagWriter(path)
    try:
        for r in recorded:
            writer.write_raw(r.topic, r.msgtype, r.raw, r.log_ns)  # as received: no decode/encode
        writer.set_custom_data("human3r_demo.checkpoint", "demo weights (random, untrained)" if demo_weights
                               else str(checkpoint))
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def _read_bag(path: Path, topics: Sequence[str]) -> dict[str, list]:
    """Messages of `topics` in the bag, per topic, in log-time order (rosbags message objects)."""
    from rosbags.rosbag2 import Reader

    from human3r_ros.cli.bags import typestore

    store = typestore()
    found: dict[str, list] = {}
    with Reader(path) as reader:
        wanted = [c for c in reader.connections if c.topic in topics]
        for connection, _, raw in reader.messages(connections=wanted):
            found.setdefault(connection.topic, []).append(store.deserialize_cdr(raw, connection.msgtype))
    return found


def _xyz(point) -> list[float]:
    return [point.x, point.y, point.z]


def _preview_data(topics: dict[str, list], demo_weights: bool, checkpoint: Path, with_body: bool):
    from human3r_ros.ros.conversions import PALETTE
    from human3r_ros.ros.msg_arrays import raw_image_to_rgb
    from human3r_ros.tools.preview import PersonTrack, PreviewData

    clouds = topics.get(f"{NODE}/scene/points", [])
    arrays = [np.frombuffer(bytes(c.data), dtype=_cloud_dtype(c), count=c.width * c.height) for c in clouds]
    cloud = np.concatenate(arrays) if arrays else np.zeros(0, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                                                     ("rgb", "<u4")])
    points = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)
    rgb = cloud["rgb"].astype(np.uint32)
    colours = np.stack([(rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255], axis=1).astype(np.uint8)

    paths = topics.get(f"{NODE}/camera_path", [])
    poses = paths[-1].poses if paths else []
    cameras = np.array([_xyz(p.pose.position) for p in poses], dtype=np.float64).reshape(-1, 3)
    forward = np.array([0.0, 0.0, 1.0])
    if poses:
        q = poses[-1].pose.orientation  # the optical axis is the rotation's third column
        forward = np.array([2 * (q.x * q.z + q.w * q.y), 2 * (q.y * q.z - q.w * q.x), 1 - 2 * (q.x**2 + q.y**2)])

    tracks: dict[int, PersonTrack] = {}
    arrays_h = topics.get(f"{NODE}/humans", [])
    for array in arrays_h:
        for human in array.humans:
            track = tracks.setdefault(int(human.id), PersonTrack(int(human.id)))
            track.heads.append(_xyz(human.head_position))
            track.joints = np.array([_xyz(j) for j in human.joints]).reshape(-1, 3) if human.joints else None

    images = topics.get(IMAGE_TOPIC, [])
    last_boxes = []
    if arrays_h:
        last_boxes = [(int(h.id), h.roi.x_offset, h.roi.y_offset, h.roi.width, h.roi.height)
                      for h in arrays_h[-1].humans if h.roi.width > 0 and h.roi.height > 0]
    source = ("DEMO WEIGHTS (random, untrained): the geometry is meaningless" if demo_weights
              else f"checkpoint {checkpoint.name}")
    body = "SMPL-X joints shown" if with_body else "no body model: head positions only"
    return PreviewData(
        points=points, colours=colours, camera_positions=cameras, camera_forward=forward,
        tracks=sorted(tracks.values(), key=lambda t: t.track_id), palette=PALETTE,
        title=f"human3r demo: top view of the world frame (x-z plane), {len(arrays_h)} frames, "
              f"{len(tracks)} track ids",
        subtitle=f"{source}; {body}", alert=demo_weights,
        last_image=raw_image_to_rgb(images[-1]) if images else None, last_boxes=last_boxes,
    )


def _cloud_dtype(cloud) -> np.dtype:
    """Structured dtype of a PointCloud2 from its fields (FLOAT32 x/y/z and a UINT32/FLOAT32 rgb)."""
    kinds = {7: "<f4", 6: "<u4"}  # PointField FLOAT32, UINT32
    names, formats, offsets = [], [], []
    for f in cloud.fields:
        names.append(f.name)
        formats.append("<u4" if f.name == "rgb" else kinds[f.datatype])
        offsets.append(f.offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": cloud.point_step})


# --------------------------------------------------------------------------- entry points

def _describe_people(array) -> str:
    if not array.humans:
        return "nobody"
    people = ", ".join(f"id {h.id} ({h.score:.2f})" for h in array.humans)
    return f"{len(array.humans)} {'person' if len(array.humans) == 1 else 'people'}: {people}"


def run_demo(checkpoint: str = "", body_model: str = "", out_dir: Path = DEFAULT_OUT, device: str = "",
             image_size: int = 0, frames_dir: Optional[Path] = None, domain_id: Optional[int] = None,
             frame_timeout: float = 300.0) -> DemoResult:
    """The whole demo; returns where the outputs are. Raises DemoError for problems the user can fix."""
    import torch

    from human3r_ros.tools.demo_checkpoint import DEMO_IMAGE_SIZE
    from human3r_ros.tools.preview import render_preview
    from human3r_ros.tools.sample import SAMPLE_DIR, sample_frames

    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt, demo_weights = _prepare_checkpoint(checkpoint, out_dir)
    body_dir = _check_body_model(body_model)
    frames = sample_frames(frames_dir or SAMPLE_DIR)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    image_size = image_size or (DEMO_IMAGE_SIZE if demo_weights else REAL_IMAGE_SIZE)
    domain_id = domain_id if domain_id is not None else 1 + os.getpid() % 200  # private: not the robot's 0
    _say(f"running the human3r node on {len(frames)} sample frames from {frames_dir or SAMPLE_DIR} "
         f"(device {device}, image_size {image_size}, ROS domain {domain_id}, localhost only)")

    people: list = []

    def report(i, array, seconds):
        people.append([(int(h.id), float(h.score)) for h in array.humans])
        _say(f"  frame {i}: {_describe_people(array)}  [{seconds:.2f} s]")

    params = {"checkpoint": str(ckpt), "body_model_dir": body_dir, "device": device, "image_size": image_size,
              "reliability": "reliable"}
    if demo_weights and device == "cpu":
        # The tiny demo network gains nothing from more threads, and on a busy machine
        # OpenMP threads waiting for each other make it many times slower.
        params["cpu_threads"] = 1
    recorded = _run_node(frames, params, domain_id, frame_timeout, report)

    bag = out_dir / "outputs.mcap"
    _write_bag(bag, recorded, ckpt, demo_weights)
    preview = out_dir / "preview.png"
    shown = (IMAGE_TOPIC, f"{NODE}/humans", f"{NODE}/scene/points", f"{NODE}/camera_path")
    data = _preview_data(_read_bag(bag, shown), demo_weights, ckpt, bool(body_dir))
    if not cv2.imwrite(str(preview), render_preview(data)):
        raise DemoError(f"could not write {preview}")
    return DemoResult(bag, preview, ckpt, demo_weights, people, time.monotonic() - started)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m human3r_ros.tools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=os.environ.get("CHECKPOINT", ""),
                        help="Human3R checkpoint (.pth / .safetensors) or released name (human3r_672S, human3r_672B, "
                             "human3r_672L, human3r_896L: downloaded once); empty: generate random demo weights "
                             "(default: $CHECKPOINT)")
    parser.add_argument("--body-model", default=os.environ.get("BODY_MODEL", ""),
                        help="folder with smplx/SMPLX_NEUTRAL.npz; empty: no joints or meshes (default: $BODY_MODEL)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--device", default="", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--image-size", type=int, default=0,
                        help=f"long side of the model input (default {REAL_IMAGE_SIZE}; demo weights 256)")
    parser.add_argument("--domain-id", type=int, help="ROS domain id (default: a private one per run)")
    args = parser.parse_args(argv)
    try:
        result = run_demo(args.checkpoint, args.body_model, args.out, args.device, args.image_size,
                          domain_id=args.domain_id)
    except DemoError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    _say(f"\ndone in {result.seconds:.1f} s")
    _say(f"  recorded outputs: {result.bag.resolve()}")
    _say(f"  preview:          {result.preview.resolve()}")
    _say(f"  checkpoint:       {result.checkpoint.resolve()}")
    if result.demo_weights:
        _banner(BANNER)
        _say(REAL_RESULTS_HINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
