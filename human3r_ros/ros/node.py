"""Lifecycle node `human3r`: camera images in; people, camera pose, TF, scene cloud, path,
markers and diagnostics out.

Threads: the image callback only stores the newest message in a one-slot buffer (a frame that
is replaced before the worker takes it counts as dropped), and a worker thread runs the engine
and publishes. The executor therefore stays free for services and lifecycle commands, and the
newest image is always the next one processed. Every output carries the input image's stamp.

Lifecycle: configure loads the checkpoint (and body model), activate subscribes and starts the
worker, deactivate stops it, cleanup frees the model. Everything the node publishes is built by
the pure functions in human3r_ros.ros.conversions.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections import deque
from dataclasses import asdict
from typing import Optional

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Pose, PoseStamped
from nav_msgs.msg import Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from human3r_msgs.msg import HumanArray
from human3r_ros.engine.cpu_memory import keep_freed_memory, resident_mb
from human3r_ros.engine.stream import StampedStream
from human3r_ros.ros import conversions as conv
from human3r_ros.ros import parameters as params

NODE_NAME = "human3r"
OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)  # reliable: every subscriber can match
DIAGNOSTICS_PERIOD_S = 1.0
NO_IMAGE_WARNING_S = 5.0
RATE_WINDOW_S = 10.0  # the reported frame rate averages over this much recent time...
RATE_WINDOW_FRAMES = 100  # ...and at most this many frames


class LatestSlot:
    """Depth-1 hand-over between the image callback and the worker: newest message wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._msg = None

    def put(self, msg) -> bool:
        """Store `msg`; True when it replaced a message the worker never took (a dropped frame)."""
        with self._lock:
            dropped = self._msg is not None
            self._msg = msg
            self._ready.set()
        return dropped

    def take(self, timeout: float):
        if not self._ready.wait(timeout):
            return None
        with self._lock:
            msg, self._msg = self._msg, None
            self._ready.clear()
        return msg

    def clear(self) -> None:
        self.take(0.0)


class Stats:
    """Counters for /diagnostics (written by the worker and callbacks, read by the timer)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.processed = self.dropped = self.skipped = self.time_resets = 0
        self.finish_times: deque[float] = deque(maxlen=RATE_WINDOW_FRAMES)  # monotonic, per published frame
        self.latency_s = float("nan")
        self.last_error = ""
        self.note = ""  # one-shot remark for the next report (a skipped frame, a time reset)
        self.note_level = DiagnosticStatus.OK
        self.last_image = 0.0  # monotonic time of the last image received (or of activation)

    def remark(self, text: str, level: bytes) -> None:
        with self.lock:
            self.note, self.note_level = text, level


class TfSender:
    """/tf through tf2_ros when installed, else a plain tf2_msgs/TFMessage publisher (same wire)."""

    def __init__(self, node) -> None:
        try:
            from tf2_ros import TransformBroadcaster
        except ImportError:
            from tf2_msgs.msg import TFMessage  # raises ImportError when neither exists

            self._message = TFMessage
            self._publisher = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
            self._broadcaster = None
        else:
            self._broadcaster = TransformBroadcaster(node)
            self._publisher = self._broadcaster.pub_tf

    def send(self, transforms) -> None:
        if not transforms:
            return
        if self._broadcaster is not None:
            self._broadcaster.sendTransform(transforms)
        else:
            self._publisher.publish(self._message(transforms=transforms))

    def close(self, node) -> None:
        node.destroy_publisher(self._publisher)


class Human3RNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._settings = params.declare(self)
        problem = params.check_all(self._settings)
        if problem:
            raise ValueError(f"invalid parameter: {problem}")
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._refresh_settings)

        self._engine = None
        self._engine_lock = threading.Lock()  # the engine and the stream state below
        self._threads_before: int | None = None  # torch CPU threads before cpu_threads applied
        self._stream: Optional[StampedStream] = None  # the engine with the stream's time rules
        self._path = Path()
        self._warned: set[str] = set()

        self._slot = LatestSlot()
        self._stats = Stats()
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._image_sub = None
        self._pubs: dict = {}
        self._tf: Optional[TfSender] = None
        self._diag_pub = None
        self._diag_timer = None

        # Separate groups: a reset request never waits behind an image callback and vice versa.
        self._image_group = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=MutuallyExclusiveCallbackGroup())
        self._autostart_timer = self.create_timer(0.0, self._autostart) if self._settings.autostart else None

    # ------------------------------------------------------------------ parameters

    def _validate_parameters(self, changes) -> SetParametersResult:
        current = asdict(self._settings)
        current.update({p.name: p.value for p in changes})
        for p in changes:
            if p.name in params.ON_CONFIGURE and self._engine is not None:
                return SetParametersResult(successful=False, reason=(
                    f"{p.name} is read when the model loads; cleanup the node, set it, then configure again"))
            error = params.validation_error(p.name, p.value, current)
            if error:
                return SetParametersResult(successful=False, reason=error)
        return SetParametersResult(successful=True)

    def _refresh_settings(self, _changes) -> None:
        self._settings = params.snapshot(self)

    # ------------------------------------------------------------------ lifecycle

    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self._settings
        try:
            self._engine = self._load_engine(s)
        except Exception as exc:  # any load failure leaves the node alive and unconfigured
            self._set_error(f"configure failed: {exc}")
            self.get_logger().error(f"configure failed: {exc}")
            self._release_model()  # undoes what loading had already changed (cpu_threads)
            return TransitionCallbackReturn.FAILURE
        self._stream = StampedStream(self._engine)
        self._path = Path()
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        mesh = "with SMPL-X body model" if self._engine.has_body_model else "without body model (no meshes)"
        self.get_logger().info(f"loaded {s.checkpoint} on {self._engine.device} ({s.precision}), {mesh}")
        if s.compile != "off":
            self.get_logger().info(f"compile '{s.compile}': the first frames of each image size compile "
                                   "the network (seconds on a GPU, a minute or more on a small CPU)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self._settings
        self._pubs = {
            "humans": self.create_publisher(HumanArray, "~/humans", OUTPUT_QOS),
            "cloud": self.create_publisher(PointCloud2, "~/scene/points", OUTPUT_QOS),
            "path": self.create_publisher(Path, "~/camera_path", OUTPUT_QOS),
            "markers": self.create_publisher(MarkerArray, "~/markers", OUTPUT_QOS),
        }
        try:
            self._tf = TfSender(self)
        except ImportError:
            self._tf = None
            self.get_logger().warning("neither tf2_ros nor tf2_msgs is installed: TF output disabled")
        qos = QoSProfile(depth=qos_profile_sensor_data.depth, history=qos_profile_sensor_data.history,
                         durability=qos_profile_sensor_data.durability,
                         reliability=(ReliabilityPolicy.RELIABLE if s.reliability == "reliable"
                                      else ReliabilityPolicy.BEST_EFFORT))
        msg_type = CompressedImage if s.compressed else Image
        self._slot.clear()
        self._stop.clear()
        with self._stats.lock:
            self._stats.last_image = time.monotonic()  # the no-image warning counts from activation
        self._worker = threading.Thread(target=self._run_worker, name="human3r_worker", daemon=True)
        self._worker.start()
        self._image_sub = self.create_subscription(msg_type, "image", self._on_image, qos,
                                                   callback_group=self._image_group)
        self.get_logger().info(
            f"listening on {self._image_sub.topic_name} ({msg_type.__name__}, {s.reliability})")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_streaming()
        if self._settings.reset_on_deactivate:
            self._reset_stream()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_model()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_streaming()
        self._release_model()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_streaming()
        self._release_model()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    def _load_engine(self, s: params.Settings):
        if not s.checkpoint:
            raise ValueError("parameter 'checkpoint' is empty: set it to a Human3R checkpoint file")
        if not os.path.isfile(s.checkpoint):
            raise FileNotFoundError(f"checkpoint file not found: {s.checkpoint}")
        if s.body_model_dir and not os.path.isdir(s.body_model_dir):
            raise FileNotFoundError(f"body_model_dir is not a folder: {s.body_model_dir}")
        import torch

        if s.cpu_threads:
            # process-wide: restored when the model is released
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(s.cpu_threads)
        device = s.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device '{s.device}' requested but CUDA is not available to torch "
                               f"{torch.__version__}; set device:=cpu")
        from human3r_ros.engine import Human3REngine

        return Human3REngine.from_checkpoint(
            s.checkpoint, body_model_dir=s.body_model_dir or None, device=device, precision=s.precision,
            ttt3r=s.ttt3r, reset_interval=s.reset_interval, size=s.image_size,
            det_threshold=s.detection_threshold, compile_mode=s.compile)

    def _stop_streaming(self) -> None:
        if self._image_sub is not None:
            self.destroy_subscription(self._image_sub)
            self._image_sub = None
        self._stop.set()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        self._slot.clear()
        for publisher in self._pubs.values():
            self.destroy_publisher(publisher)
        self._pubs = {}
        if self._tf is not None:
            self._tf.close(self)
            self._tf = None

    def _release_model(self) -> None:
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self.destroy_publisher(self._diag_pub)
            self._diag_timer = self._diag_pub = None
        with self._engine_lock:
            engine, self._engine, self._stream = self._engine, None, None
        if engine is not None:
            on_cuda = engine.device.type == "cuda"
            del engine
            gc.collect()
            if on_cuda:
                import torch

                torch.cuda.empty_cache()
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    # ------------------------------------------------------------------ services

    def _on_reset(self, _request, response):
        with self._engine_lock:
            if self._engine is None:
                response.success, response.message = False, "no model loaded: configure the node first"
                return response
        self._reset_stream()
        self.get_logger().info("reset requested: recurrent state and tracks cleared")
        response.success, response.message = True, "recurrent state and tracks cleared"
        return response

    def _reset_stream(self) -> None:
        with self._engine_lock:
            if self._stream is not None:
                self._stream.reset()
            self._path = Path()

    # ------------------------------------------------------------------ streaming

    def _on_image(self, msg) -> None:
        dropped = self._slot.put(msg)
        with self._stats.lock:
            self._stats.last_image = time.monotonic()
            self._stats.dropped += int(dropped)

    def _run_worker(self) -> None:
        while not self._stop.is_set():
            msg = self._slot.take(timeout=0.1)
            if msg is None:
                continue
            try:
                self._process(msg)
            except Exception as exc:  # never let one frame end the stream
                self._skip(f"frame {conv.stamp_to_seconds(msg.header.stamp):.3f} failed: {exc!r}", error=True)

    def _process(self, msg) -> None:
        s = self._settings
        stamp = msg.header.stamp
        stamp_ns = conv.stamp_to_ns(stamp)
        try:
            rgb = conv.compressed_image_to_rgb(msg) if isinstance(msg, CompressedImage) else conv.image_to_rgb(msg)
        except conv.ImageConversionError as exc:
            self._skip(f"image skipped: {exc}")
            return
        with self._engine_lock:
            stream = self._stream
            if stream is None:
                return
            if stamp_ns == 0:
                self._warn_once("zero_stamp", "images carry no stamp (0): outputs will too, and the "
                                "time-going-backwards check is off")
            stream.engine.max_people = s.max_people  # an output setting: may change while streaming
            outcome = stream.step(rgb, stamp_ns)
            if outcome.time_reset:  # a looping bag or a restarted source: a new sequence
                self._path = Path()
                self.get_logger().warning(outcome.note)
                with self._stats.lock:
                    self._stats.time_resets += 1
                self._stats.remark(outcome.note, DiagnosticStatus.WARN)
            result = outcome.result
            if result is None:
                self._skip(f"image skipped: {outcome.note}")
                return
            camera_pose = conv.matrix_to_pose(result.c2w)
            conv.append_to_path(self._path, PoseStamped(header=Header(stamp=stamp, frame_id=s.world_frame),
                                                        pose=camera_pose), s.path_max_length)
            # a long path is the costliest message after the cloud: copy it only for listeners
            pubs = self._pubs
            listened = s.publish_path and "path" in pubs and pubs["path"].get_subscription_count() > 0
            path = Path(header=self._path.header, poses=list(self._path.poses)) if listened else None
            faces = stream.engine.faces
        self._publish(s, result, camera_pose, msg.header, rgb.shape[:2], path, faces)
        latency = (self.get_clock().now().nanoseconds - stamp_ns) * 1e-9
        with self._stats.lock:
            self._stats.processed += 1
            self._stats.finish_times.append(time.monotonic())
            self._stats.latency_s = latency

    def _publish(self, s: params.Settings, result, camera_pose: Pose, image_header, input_hw,
                 path: Optional[Path], faces) -> None:
        pubs = self._pubs
        if not pubs:
            return  # deactivated meanwhile
        header = Header(stamp=image_header.stamp, frame_id=s.world_frame)
        people = conv.publishable_people(result)
        poses = conv.body_poses(people)
        pubs["humans"].publish(conv.frame_to_human_array(
            result, people, header, input_hw=input_hw, to_input_pixels=result.to_input_pixels,
            include_vertices=s.publish_vertices, camera_pose=camera_pose, poses=poses))
        if s.publish_tf and self._tf is not None:
            transforms = conv.body_transforms(people, header.stamp, s.world_frame, s.body_frame_prefix, poses)
            if s.camera_frame == image_header.frame_id:
                self._warn_once("camera_frame", f"camera_frame '{s.camera_frame}' is the image's own frame, "
                                "which already has a parent: not publishing it (choose another camera_frame)")
            else:
                transforms.insert(0, conv.pose_to_transform(camera_pose, header.stamp, s.world_frame, s.camera_frame))
            self._tf.send(transforms)
        if s.publish_cloud and pubs["cloud"].get_subscription_count() > 0:
            pubs["cloud"].publish(conv.pointmap_to_cloud(
                result.pts3d_world, conv.frame_colours(result), header, conf=result.conf,
                conf_threshold=s.cloud_confidence_threshold, stride=s.cloud_decimation,
                human_mask=result.human_mask if s.cloud_remove_humans else None))
        if path is not None:
            pubs["path"].publish(path)
        if s.publish_markers and pubs["markers"].get_subscription_count() > 0:
            pubs["markers"].publish(conv.people_markers_cdr(people, header, faces))

    # ------------------------------------------------------------------ reporting

    def _skip(self, reason: str, error: bool = False) -> None:
        (self.get_logger().error if error else self.get_logger().warning)(reason, throttle_duration_sec=5.0)
        with self._stats.lock:
            self._stats.skipped += 1
            self._stats.last_error = reason
        self._stats.remark(reason, DiagnosticStatus.ERROR if error else DiagnosticStatus.WARN)
        self._publish_diagnostics()  # report problems at once, not on the next tick

    def _set_error(self, reason: str) -> None:
        with self._stats.lock:
            self._stats.last_error = reason

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    def _publish_diagnostics(self) -> None:
        publisher = self._diag_pub
        if publisher is None:
            return
        st = self._stats
        now = time.monotonic()
        with st.lock:
            recent = [t for t in st.finish_times if now - t <= RATE_WINDOW_S]
            rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
            note, level, st.note = st.note, st.note_level, ""
            silent_s = now - st.last_image
            values = {
                "frame_rate_hz": rate, "latency_s": st.latency_s, "frames_processed": st.processed,
                "frames_dropped": st.dropped, "frames_skipped": st.skipped, "time_resets": st.time_resets,
                "last_error": st.last_error,
            }
        engine = self._engine
        device = str(engine.device) if engine is not None else self._settings.device
        values.update(memory_figures(device))
        subscription = self._image_sub
        if note:
            message = note
        elif subscription is None:
            level, message = DiagnosticStatus.OK, "configured, inactive"
        elif silent_s > NO_IMAGE_WARNING_S:
            # The usual cause of "no output": wrong topic or a QoS reliability mismatch.
            level, message = DiagnosticStatus.WARN, (
                f"no image on {subscription.topic_name} for {silent_s:.0f} s: check the topic remapping and "
                f"that parameter reliability ({self._settings.reliability}) suits the camera's publisher")
        else:
            level, message = DiagnosticStatus.OK, "processing"
        publisher.publish(conv.diagnostics_message(
            self.get_clock().now().to_msg(), f"{self.get_name()}: processing", device,
            level, message, values))


def memory_figures(device: str) -> dict:
    """Device memory for CUDA (allocated / reserved by torch), and this process's resident memory."""
    figures = {}
    if device.startswith("cuda") and "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            figures["device_memory_allocated_mb"] = torch.cuda.memory_allocated(device) / 2**20
            figures["device_memory_reserved_mb"] = torch.cuda.memory_reserved(device) / 2**20
    rss = resident_mb()
    if rss is not None:
        figures["host_memory_rss_mb"] = rss
    return figures


def main(args=None) -> int:
    # before rclpy starts its threads, so that every thread shares the one tuned heap
    keep_freed_memory()
    rclpy.init(args=args)
    try:
        node = Human3RNode()
    except Exception as exc:  # bad parameter overrides: say why and exit non-zero
        print(f"[{NODE_NAME}] {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node._stop_streaming()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
