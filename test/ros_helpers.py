"""Test-only helpers for real rclpy tests: an isolated context, a spinning executor, bounded waits.

Each harness gets its own rclpy Context on a domain id derived from the process id, restricted
to localhost, so parallel test runs do not see each other's topics.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, ShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from human3r_ros.ros.conversions import array_to_image, ns_to_stamp
from human3r_ros.ros.msg_arrays import NS_PER_S
from human3r_ros.ros.rclpy_compat import restrict_discovery_to_localhost

# read by rcl when a context starts, so before any Harness (Humble reads another variable)
restrict_discovery_to_localhost()

REFERENCE_FILES = {
    "checkpoint": "tiny_plain_checkpoint.pth",
    "body_model_dir": "synthetic_smplx",
    "io": "tiny_plain_io.npz",
}


def domain_id(offset: int = 0) -> int:
    # FastDDS supports domain ids 0..232; 1..200 keeps clear of the default 0.
    return 1 + (os.getpid() + offset) % 200


def stamp(seconds: float) -> Time:
    return ns_to_stamp(round(seconds * NS_PER_S))


def image_msg(rgb: np.ndarray, t: float, frame_id: str = "camera_optical", encoding: str = "rgb8") -> Image:
    return array_to_image(rgb, round(t * NS_PER_S), frame_id, encoding)


class Harness:
    """Context + MultiThreadedExecutor spinning in a thread + a client node for the test."""

    def __init__(self, offset: int = 0) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id(offset))
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.client = Node("human3r_test_client", context=self.context)
        self.executor.add_node(self.client)
        self._nodes = [self.client]
        self._lock = threading.Lock()
        self.received: dict[str, list] = {}
        self.callback_errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        # Executor.spin ends at the first callback that raises, and every later service call then
        # hangs: keep spinning, keep the error, and fail the test with it on close
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except (ExternalShutdownException, ShutdownException):
                return
            except Exception as error:
                if not self.context.ok():
                    return
                self.callback_errors.append(error)

    def add_node(self, node) -> None:
        self._nodes.append(node)
        self.executor.add_node(node)

    def collect(self, msg_type, topic: str, qos=None, key: str | None = None) -> list:
        """Subscribe the client node to `topic`; returns the list the messages are appended to."""
        key = key or topic
        store = self.received.setdefault(key, [])
        qos = qos or QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)

        def keep(msg):
            with self._lock:
                store.append(msg)

        self.client.create_subscription(msg_type, topic, keep, qos)
        return store

    def snapshot(self, key: str) -> list:
        with self._lock:
            return list(self.received.get(key, []))

    def call(self, srv_type, name: str, request, timeout: float = 10.0):
        client = self.client.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
            future = client.call_async(request)
            done = threading.Event()
            future.add_done_callback(lambda _f: done.set())
            assert done.wait(timeout), f"service {name} did not answer within {timeout} s"
            return future.result()
        finally:
            self.client.destroy_client(client)

    def close(self) -> None:
        # Stop spinning before shutdown (an executor thread alive at shutdown aborts the process).
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)
        for node in self._nodes:
            node.destroy_node()
        rclpy.shutdown(context=self.context)
        assert not self.callback_errors, f"a callback raised into the executor: {self.callback_errors[0]!r}"


def wait_until(predicate: Callable[[], object], timeout: float, what: str, period: float = 0.02):
    """Poll `predicate` until truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --------------------------------------------------------------------------- the node under test

def make_node(harness: Harness, reference_dir, *, body_model: bool = False, image_topic: str | None = None,
              node_name: str | None = None, **overrides):
    """A human3r node on the tiny checkpoint (CPU, 64 px, plain state update), added to `harness`;
    `overrides` set or replace parameters, `image_topic` remaps its image input, `node_name` renames
    the node (its topics, /diagnostics status and /rosout logger)."""
    from rclpy.parameter import Parameter

    from human3r_ros.ros.node import Human3RNode

    values = {"checkpoint": str(reference_dir / REFERENCE_FILES["checkpoint"]), "device": "cpu",
              "image_size": 64, "ttt3r": False, "reset_interval": 0}
    if body_model:
        values["body_model_dir"] = str(reference_dir / REFERENCE_FILES["body_model_dir"])
    values.update(overrides)
    remaps = ([f"image:={image_topic}"] if image_topic else []) + ([f"__node:={node_name}"] if node_name else [])
    cli_args = ["--ros-args", *[arg for remap in remaps for arg in ("-r", remap)]] if remaps else None
    node = Human3RNode(context=harness.context, cli_args=cli_args,
                       parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    harness.add_node(node)
    return node


def change_state(harness: Harness, transition_id: int, node: str = "human3r") -> bool:
    """Ask the node for a lifecycle transition through its service, as `ros2 lifecycle set` does."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    return harness.call(ChangeState, f"/{node}/change_state",
                        ChangeState.Request(transition=Transition(id=transition_id)), timeout=60).success
