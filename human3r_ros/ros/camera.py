"""One camera's input plumbing: its image subscription (with QoS events), its newest-frame slot,
its counters and its stream's time rules. The node keeps one `Camera` per camera it serves."""

from __future__ import annotations

import threading
from typing import Callable

from rclpy.qos import QoSPolicyKind, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from human3r_ros.ros.counters import StreamCounters
from human3r_ros.ros.rclpy_compat import subscription_event_callbacks
from human3r_ros.ros.rectification import CalibrationError, CameraCalibration, Rectifier



class FrameSlots:
    """Newest-frame-wins hand-over from the image callbacks to the worker, one slot per camera:
    a frame replaced before the worker took it is dropped (counted), never queued."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._msgs: dict[str, object] = {}
        self._turn = 0  # fair turns: the next batch starts after the camera served first last time

    def put(self, camera: str, msg) -> bool:
        """Store `msg`; True when it replaced a message the worker never took."""
        with self._lock:
            replaced = camera in self._msgs
            self._msgs[camera] = msg
            self._ready.notify()
        return replaced

    def take(self, order: list[str], timeout: float) -> list[tuple[str, object]]:
        """Wait up to `timeout` s for frames; return the newest one of every camera that has one,
        in turn order (a camera is never served twice before another waiting one)."""
        with self._lock:
            if not self._msgs and not self._ready.wait_for(lambda: bool(self._msgs), timeout):
                return []
            start = self._turn % len(order)
            turn = order[start:] + order[:start]
            taken = [(name, self._msgs.pop(name)) for name in turn if name in self._msgs]
            self._msgs.clear()  # frames of cameras no longer served
            self._turn = start + 1
        return taken

    def clear(self) -> None:
        with self._lock:
            self._msgs.clear()


def image_qos(reliability: str) -> QoSProfile:
    """Sensor-data QoS (best effort, keep last 5) with the reliability the parameter asks for."""
    return QoSProfile(depth=qos_profile_sensor_data.depth, history=qos_profile_sensor_data.history,
                      durability=qos_profile_sensor_data.durability,
                      reliability=(ReliabilityPolicy.RELIABLE if reliability == "reliable"
                                   else ReliabilityPolicy.BEST_EFFORT))


class Camera:
    """One camera: `topic` (relative names are remappable and namespaced) feeding `slots`."""

    def __init__(self, name: str, topic: str, slots: FrameSlots, on_event: Callable[[], None]) -> None:
        self.name = name
        self.topic = topic
        self.counters = StreamCounters()
        self.stream = None  # engine.stream.StampedStream while a model is loaded
        self.qos_problem = ""  # set by an incompatible-QoS event, cleared by the next image
        self.reliability = ""
        self.compressed = False
        self.calibration: CameraCalibration | None = None  # from the newest CameraInfo
        self.calibration_problem = ""  # why the newest CameraInfo cannot be used
        self.rectifier = Rectifier()  # undistortion maps built once per calibration
        self.model_focal_px = float("nan")  # the model's focal estimate of the last processed frame
        self._slots = slots
        self._on_event = on_event  # lets the node report at once
        self._sub = None
        self._info_sub = None
        self._info_topic = ""

    @property
    def topic_name(self) -> str:
        return self._sub.topic_name if self._sub is not None else self.topic

    @property
    def subscribed(self) -> bool:
        return self._sub is not None

    def subscribe(self, node, compressed: bool, reliability: str, callback_group) -> None:
        """(Re)subscribe the images with this type and QoS (the CameraInfo subscription stays)."""
        if self._sub is not None:
            node.destroy_subscription(self._sub)
        self.qos_problem = ""
        self.reliability = reliability
        self.compressed = compressed
        events = subscription_event_callbacks(incompatible_qos=self._on_incompatible_qos,
                                              message_lost=self._on_message_lost)
        self._sub = node.create_subscription(CompressedImage if compressed else Image, self.topic,
                                             self._on_image, image_qos(reliability),
                                             callback_group=callback_group, event_callbacks=events)
        self.counters.restart_silence()

    def subscribe_camera_info(self, node, topic: str, callback_group) -> None:
        """The newest CameraInfo on `topic` is kept (sensor-data QoS: any publisher serves it)."""
        self.calibration, self.calibration_problem = None, ""
        self._info_sub = node.create_subscription(CameraInfo, topic, self._on_camera_info,
                                                  image_qos("best_effort"), callback_group=callback_group)
        # kept apart: a callback already running when unsubscribe() drops the subscription still names it
        self._info_topic = self._info_sub.topic_name

    def unsubscribe(self, node) -> None:
        for sub in (self._sub, self._info_sub):
            if sub is not None:
                node.destroy_subscription(sub)
        self._sub = self._info_sub = None

    def _on_camera_info(self, msg) -> None:
        try:
            self.calibration, self.calibration_problem = CameraCalibration.from_camera_info(msg), ""
        except CalibrationError as exc:
            self.calibration, self.calibration_problem = None, f"CameraInfo on {self._info_topic}: {exc}"

    def _on_image(self, msg) -> None:
        self.qos_problem = ""
        self.counters.on_received(self._slots.put(self.name, msg))

    def _on_incompatible_qos(self, info) -> None:
        policy = QoSPolicyKind(info.last_policy_kind).name
        advice = {"RELIABILITY": ("set parameter reliability:=best_effort: the camera publishes best effort, "
                                  "which a reliable subscription cannot receive")}.get(
            policy, "the camera's publisher QoS cannot serve this subscription")
        self.qos_problem = (f"incompatible QoS on {self.topic_name} ({self.reliability} subscription): "
                            f"policy {policy}; {advice}")
        self._on_event()

    def _on_message_lost(self, info) -> None:
        self.counters.on_lost(info.total_count_change)

    def description(self) -> str:
        kind = "CompressedImage" if self.compressed else "Image"
        return f"{self.topic_name} ({kind}, {self.reliability})"

