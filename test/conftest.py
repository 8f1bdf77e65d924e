"""Shared pytest fixtures."""

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Lets plain `pytest` import the package from a source checkout.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
REFERENCE_DIR = Path(os.environ.get("HUMAN3R_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    # Missing fixtures must fail loudly, never skip: these tests are the correctness evidence.
    assert REFERENCE_DIR.is_dir(), (
        f"reference fixtures not found at {REFERENCE_DIR}; set HUMAN3R_REFERENCE_DIR"
    )
    return REFERENCE_DIR


# ---------------------------------------------------------------------------------------- ROS
# rclpy is imported inside the fixtures, so tests that need no ROS also run under a plain
# Python. Without `source env.sh` these fixtures error out (never skip).

def _private_domain_id() -> int:
    # 201..231: away from the default domain 0 and from test/ros_helpers.py's 1..200, so parallel
    # test runs and a robot on the same network do not see these test topics.
    return 201 + os.getpid() % 31


@pytest.fixture
def rclpy_context():
    """An initialised rclpy Context of its own (localhost discovery, private domain id)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=_private_domain_id())
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


@pytest.fixture
def ros_executor(rclpy_context):
    """A SingleThreadedExecutor on `rclpy_context`; nodes added to it are destroyed afterwards.

    Tests drive it with spin_once(timeout_sec=...) in bounded loops (see spin_until).
    """
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=rclpy_context)
    try:
        yield executor
    finally:
        # Stop the executor before the context shuts down: shutting down under a spinning
        # executor aborts the process ("terminate called without an active exception").
        nodes = list(executor.get_nodes())
        executor.shutdown(timeout_sec=5.0)
        for node in nodes:
            node.destroy_node()
