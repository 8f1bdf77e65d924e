"""REP-155 (ROS4HRI) body topics: hri_msgs messages and the per-body publishers.

Per processed frame: /humans/bodies/tracked (hri_msgs/IdsList) lists the bodies seen in it;
per tracked body, /humans/bodies/<id>/roi (NormalizedRegionOfInterest2D), /cropped
(sensor_msgs/Image, the ROI's pixels, built only while subscribed) and, with a body model,
/skeleton2d (Skeleton2D). Every message carries the source image's header (stamp and camera
frame): the ROI and skeleton are fractions of that image. The arrays come from the ROS-free
human3r_ros.ros.hri_arrays.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Sequence

import numpy as np
from hri_msgs.msg import IdsList, NormalizedRegionOfInterest2D, Skeleton2D
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from human3r_ros.ros.conversions import array_to_image, stamp_to_ns
from human3r_ros.ros.hri_arrays import BodyIds, frame_hri_arrays, roi_pixel_box
from human3r_ros.ros.rclpy_compat import PublisherEventCallbacks

BODIES_NAMESPACE = "/humans/bodies"
TRACKED_TOPIC = f"{BODIES_NAMESPACE}/tracked"
# libhri / pyhri subscribe to every REP-155 topic with the system-default QoS (reliable,
# volatile): a reliable, volatile publisher reaches them and best-effort subscribers alike.
HRI_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)


def _create_publisher(node, msg_type, topic: str):
    # No QoS event handlers: they are waitables of the node, and destroying one from the worker
    # thread while an executor thread puts it in its wait set kills that executor thread
    # (InvalidHandle, seen in test_hri). Publishers themselves are never waited on.
    return node.create_publisher(msg_type, topic, HRI_QOS,
                                 event_callbacks=PublisherEventCallbacks(use_default_callbacks=False))


def body_topic(body_id: str, name: str) -> str:
    """Absolute topic of one body's output, e.g. /humans/bodies/kqzt3/roi."""
    return f"{BODIES_NAMESPACE}/{body_id}/{name}"


def ids_message(ids: Sequence[str], header: Header) -> IdsList:
    return IdsList(header=header, ids=list(ids))


def roi_message(roi: np.ndarray, confidence: float, header: Header) -> NormalizedRegionOfInterest2D:
    """(xmin, ymin, xmax, ymax) fractions of the image -> NormalizedRegionOfInterest2D."""
    xmin, ymin, xmax, ymax = np.asarray(roi, dtype=np.float64).reshape(4).tolist()
    return NormalizedRegionOfInterest2D(header=header, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax,
                                        c=float(confidence))


def skeleton_message(points: np.ndarray, header: Header) -> Skeleton2D:
    """(18, 3) COCO-18 (x, y, c) in Skeleton2D's order -> Skeleton2D."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (18, 3):
        raise ValueError(f"a Skeleton2D takes 18 keypoints (x, y, c), got an array of shape {points.shape}")
    msg = Skeleton2D(header=header)
    # fill the 18 points the message already holds: building new ones doubles the cost
    for point, (x, y, c) in zip(msg.skeleton, points.tolist()):
        point.x, point.y, point.c = x, y, c
    return msg


class HriBodyPublishers:
    """The REP-155 body topics of one node.

    publish() sends /humans/bodies/tracked for every processed frame and each tracked body's
    roi, cropped (and skeleton2d); a body's publishers are created when it is first seen and
    destroyed once it has not been tracked for `timeout_s` seconds (checked at each publish()
    and expire()). close() destroys them all. Thread-safe (the node's worker publishes while
    lifecycle callbacks may close).

    Several cameras (each with its own tracker) share one manager: each names its bodies with
    its own BodyIds, and the tracked list holds every camera's latest bodies (a camera silent
    for `timeout_s` drops out of it). `body_ids`: the namer of the default camera "";
    `close_ack_timeout_s`: how long close() waits at most for listeners to get the empty list."""

    def __init__(self, node, timeout_s: float = 5.0, body_ids: Optional[BodyIds] = None,
                 clock: Callable[[], float] = time.monotonic, close_ack_timeout_s: float = 1.0) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        self._node = node
        self.timeout_s = float(timeout_s)
        self._namers = {"": body_ids or BodyIds()}  # camera -> its BodyIds
        self._clock = clock
        self._close_ack_timeout_s = float(close_ack_timeout_s)
        self._lock = threading.Lock()
        self._tracked = _create_publisher(node, IdsList, TRACKED_TOPIC)
        self._bodies: dict[str, dict] = {}  # id -> {"seen": clock time, topic name -> publisher}
        self._latest: dict[str, tuple[float, list[str]]] = {}  # camera -> (clock time, its last ids)

    def _namer(self, camera: str) -> BodyIds:
        namer = self._namers.get(camera)
        if namer is None:
            namer = self._namers[camera] = BodyIds()
        return namer

    def body_id(self, track_id: int, camera: str = "") -> str:
        """The REP-155 id of a camera's tracker id (also the suffix of its body_<id> TF frame)."""
        return self._namer(camera)(track_id)

    def new_sequence(self, camera: str = "") -> None:
        """The camera's tracker was reset (ids start again from 0): name its next bodies afresh."""
        self._namer(camera).new_sequence()

    @property
    def bodies(self) -> list[str]:
        """Ids that currently have publishers (tracked within the timeout)."""
        with self._lock:
            return sorted(self._bodies)

    def publish(self, result, people: Sequence, image_header: Header, input_hw: tuple[int, int],
                boxes: Optional[np.ndarray] = None, image: Optional[np.ndarray] = None,
                camera: str = "") -> list[str]:
        """One processed frame of `camera`: its people's roi, cropped and skeleton2d, then the
        tracked list (also when nobody is seen). `image_header`: the input image's; `input_hw`:
        its (height, width); `boxes`: people_boxes_model_px(result, people) when the caller has
        them; `image`: the input image (H x W x 3 uint8 RGB) for /cropped (none without it).
        Returns this frame's ids."""
        if image is not None and tuple(np.shape(image)[:2]) != tuple(input_hw):
            raise ValueError(f"image is {np.shape(image)[0]}x{np.shape(image)[1]} but input_hw is "
                             f"{input_hw[0]}x{input_hw[1]}: give the input image the ROIs refer to")
        rois, skeletons = frame_hri_arrays(result, people, input_hw, boxes)
        header = Header(stamp=image_header.stamp, frame_id=image_header.frame_id)
        namer = self._namer(camera)
        ids = [namer(p.track_id) for p in people]
        with self._lock:
            if self._tracked is None:
                return ids  # closed meanwhile
            now = self._clock()
            self._latest[camera] = (now, ids)
            for i, (body_id, person) in enumerate(zip(ids, people)):
                body = self._bodies.setdefault(body_id, {})
                body["seen"] = now
                self._publisher(body_id, "roi").publish(roi_message(rois[i], person.score, header))
                if image is not None:
                    cropped = self._publisher(body_id, "cropped")
                    if cropped.get_subscription_count() > 0:  # a copy of pixels: only for listeners
                        x0, y0, x1, y1 = roi_pixel_box(rois[i], input_hw)
                        cropped.publish(array_to_image(image[y0:y1, x0:x1], stamp_to_ns(header.stamp),
                                                       header.frame_id))
                if skeletons is not None:  # only with a body model: no silent skeleton2d topics
                    self._publisher(body_id, "skeleton2d").publish(skeleton_message(skeletons[i], header))
            self._expire(now)
            self._tracked.publish(ids_message([i for _, cam_ids in self._latest.values() for i in cam_ids], header))
        return ids

    def expire(self) -> None:
        """Destroy the publishers of bodies not tracked for timeout_s (publish() does this too;
        call it from a timer to also drop them while no frames come)."""
        with self._lock:
            self._expire(self._clock())

    def close(self) -> None:
        """Destroy every publisher; listeners first get an empty tracked list (stamped now), so
        they drop these bodies instead of keeping them until the node comes back."""
        with self._lock:
            for body_id in list(self._bodies):
                self._drop(body_id)
            if self._tracked is not None:
                if any(ids for _, ids in self._latest.values()):
                    self._tracked.publish(ids_message([], Header(stamp=self._node.get_clock().now().to_msg())))
                    # destroyed at once, the publisher may never deliver it: wait (briefly) for the acks
                    self._tracked.wait_for_all_acked(Duration(seconds=self._close_ack_timeout_s))
                self._latest.clear()
                self._node.destroy_publisher(self._tracked)
                self._tracked = None

    # the callers hold the lock

    _TOPIC_TYPES = {"roi": NormalizedRegionOfInterest2D, "cropped": Image, "skeleton2d": Skeleton2D}

    def _publisher(self, body_id: str, name: str):
        body = self._bodies[body_id]
        if name not in body:
            body[name] = _create_publisher(self._node, self._TOPIC_TYPES[name], body_topic(body_id, name))
        return body[name]

    def _drop(self, body_id: str) -> None:
        body = self._bodies.pop(body_id)
        for name in self._TOPIC_TYPES:
            if name in body:
                self._node.destroy_publisher(body[name])

    def _expire(self, now: float) -> None:
        for camera in [c for c, (seen, _) in self._latest.items() if now - seen > self.timeout_s]:
            del self._latest[camera]
        for body_id in [b for b, body in self._bodies.items() if now - body["seen"] > self.timeout_s]:
            self._drop(body_id)
