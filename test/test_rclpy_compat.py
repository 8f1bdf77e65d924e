"""The distro shims (human3r_ros.ros.rclpy_compat) on the real rclpy of this environment.

Kilted and Jazzy take the Iron+ branch of each shim. The Humble fallback of the parameter
callbacks is also run here by switching the module's own feature flag: it only uses
add_on_set_parameters_callback, whose behaviour Humble shares.
"""

from __future__ import annotations

import pytest

from ros_helpers import Harness, wait_until

from geometry_msgs.msg import Point  # noqa: E402
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSPolicyKind, QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from human3r_ros.ros import rclpy_compat  # noqa: E402


@pytest.fixture
def harness():
    h = Harness(offset=73)
    yield h
    h.close()


def test_this_rclpy_takes_the_iron_and_later_branches():
    # Both environments the suite runs in (Kilted, Jazzy) are Iron or later.
    assert rclpy_compat.HAS_POST_SET_PARAMETERS_CALLBACK
    assert rclpy_compat.READS_DISCOVERY_RANGE
    assert {"incompatible_qos", "matched"} <= rclpy_compat.SUBSCRIPTION_EVENTS


@pytest.mark.parametrize("post_set", [True, False], ids=["post_set_callback", "humble_parameter_events"])
def test_parameter_callbacks_apply_only_accepted_values(harness, monkeypatch, post_set):
    monkeypatch.setattr(rclpy_compat, "HAS_POST_SET_PARAMETERS_CALLBACK", post_set)
    node = Node("compat_parameters", context=harness.context)
    node.declare_parameter("limit", 3, ParameterDescriptor())
    applied, stored = [], []

    def validate(parameters):
        bad = [p.name for p in parameters if p.value < 0]
        return SetParametersResult(successful=not bad, reason=f"{bad} must be >= 0" if bad else "")

    def apply(parameters):
        stored.append(node.get_parameter("limit").value)  # apply runs after the node stored the value
        applied.append({p.name: p.value for p in parameters})

    rclpy_compat.add_parameter_callbacks(node, validate, apply)
    harness.add_node(node)
    if not post_set:  # the fallback hears its own /parameter_events: wait until it is matched
        wait_until(lambda: node.count_subscribers("/parameter_events") >= 1, 10.0, "the event subscription")

    refused = node.set_parameters([Parameter("limit", value=-1)])[0]
    assert not refused.successful and "must be >= 0" in refused.reason
    assert node.get_parameter("limit").value == 3

    assert node.set_parameters([Parameter("limit", value=7)])[0].successful
    # events arrive in order: had the refused set been applied, it would come first
    wait_until(lambda: applied, 10.0, "the accepted set to be applied")
    assert applied == [{"limit": 7}] and stored == [7]


def test_subscription_events_report_a_reliability_mismatch(harness):
    node = harness.client
    incompatible, matched = [], []
    callbacks = rclpy_compat.subscription_event_callbacks(
        incompatible_qos=incompatible.append, matched=matched.append)
    reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    subscription = node.create_subscription(String, "compat_events", lambda _m: None, reliable,
                                            event_callbacks=callbacks)
    mismatched = node.create_publisher(String, "compat_events", best_effort)
    event = wait_until(lambda: incompatible[-1:], 10.0, "the incompatible QoS event")[0]
    assert event.last_policy_kind == QoSPolicyKind.RELIABILITY
    # On its topic but never matched: the two publisher counts differ (the Humble fallback
    # counts the topic's publishers).
    assert rclpy_compat.matched_publisher_count(node, subscription) == 0
    assert node.count_publishers("compat_events") == 1

    node.destroy_publisher(mismatched)
    node.create_publisher(String, "compat_events", reliable)
    wait_until(lambda: rclpy_compat.matched_publisher_count(node, subscription) == 1, 10.0,
               "the reliable publisher to match")
    wait_until(lambda: matched, 10.0, "the matched event")


def test_subscription_events_reject_unknown_names():
    with pytest.raises(ValueError, match="unknown subscription event.*incompatible_qoss"):
        rclpy_compat.subscription_event_callbacks(incompatible_qoss=print)


class HumbleStylePoint:
    """What Humble's generated messages look like to the shim: slots without _check_fields."""

    __slots__ = ["_x", "_y", "_z"]


def test_check_fields_option():
    assert rclpy_compat.check_fields_option(HumbleStylePoint, False) == {}
    assert rclpy_compat.check_fields_option(Point, False) == {"check_fields": False}
    # the switch reaches the message: checked constructors refuse unknown fields
    Point(x=1.0, w=2.0, **rclpy_compat.check_fields_option(Point, False))
    with pytest.raises(AssertionError, match="Invalid arguments"):
        Point(x=1.0, w=2.0, **rclpy_compat.check_fields_option(Point, True))


def test_restrict_discovery_to_localhost_sets_the_variable_rcl_reads():
    environ = {}
    assert rclpy_compat.restrict_discovery_to_localhost(environ) == "ROS_AUTOMATIC_DISCOVERY_RANGE"
    assert environ == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    chosen = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    rclpy_compat.restrict_discovery_to_localhost(chosen)
    assert chosen == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}  # the user's choice stays
