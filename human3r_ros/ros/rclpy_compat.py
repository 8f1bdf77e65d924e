"""The few rclpy calls that differ between the ROS 2 distros the node runs on: Humble (rclpy 3.3),
Jazzy (7.1) and Kilted (9.x).

Each shim detects the feature itself, not the distro's name (a robot's environment need not set
ROS_DISTRO), and takes the newer API where it exists. Jazzy and Kilted take the same branch of
every shim here; only Humble takes the fallbacks (read from rclpy's humble branch, not run here).
"""

from __future__ import annotations

import inspect
import os
from typing import Callable, MutableMapping, Sequence

from rclpy.node import Node

try:  # Iron and later
    from rclpy import event_handler as _events
except ImportError:  # Humble: the same classes, older module name
    from rclpy import qos_event as _events

SubscriptionEventCallbacks = _events.SubscriptionEventCallbacks
PublisherEventCallbacks = _events.PublisherEventCallbacks
QoSRequestedIncompatibleQoSInfo = _events.QoSRequestedIncompatibleQoSInfo

# Iron and later read ROS_AUTOMATIC_DISCOVERY_RANGE and moved the QoS events to event_handler in
# the same release, so the module name tells which variable this rclpy's rcl reads.
READS_DISCOVERY_RANGE = _events.__name__ == "rclpy.event_handler"

# Every subscription event of any supported distro (incompatible_type and matched are Iron+).
KNOWN_SUBSCRIPTION_EVENTS = frozenset(
    {"deadline", "incompatible_qos", "liveliness", "message_lost", "incompatible_type", "matched"})
SUBSCRIPTION_EVENTS = KNOWN_SUBSCRIPTION_EVENTS & frozenset(
    inspect.signature(SubscriptionEventCallbacks.__init__).parameters)

HAS_POST_SET_PARAMETERS_CALLBACK = hasattr(Node, "add_post_set_parameters_callback")  # Iron+


def subscription_event_callbacks(use_default_callbacks: bool = True, **callbacks: Callable) -> SubscriptionEventCallbacks:
    """`create_subscription(..., event_callbacks=...)` argument with the given event callbacks.

    Events this rclpy does not have (see SUBSCRIPTION_EVENTS) are left out; a name that no
    distro knows raises ValueError."""
    unknown = sorted(set(callbacks) - KNOWN_SUBSCRIPTION_EVENTS)
    if unknown:
        raise ValueError(f"unknown subscription event(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(KNOWN_SUBSCRIPTION_EVENTS))}")
    kept = {name: callback for name, callback in callbacks.items() if name in SUBSCRIPTION_EVENTS}
    return SubscriptionEventCallbacks(use_default_callbacks=use_default_callbacks, **kept)


def add_parameter_callbacks(node: Node, validate: Callable, apply: Callable[[Sequence], None]):
    """Register `validate(parameters) -> SetParametersResult`, which may refuse a set, and
    `apply(parameters)`, called once the node has stored the values `validate` accepted (so
    `apply` may read them back with node.get_parameter()).

    Iron and later: `apply` is a post-set callback, run before the set returns. Humble has no
    post-set callbacks: there `apply` runs on the node's executor when the node's own
    /parameter_events message arrives (published after the values are stored), i.e. shortly
    after the set returns, with the parameters rebuilt from that message. Returns that
    subscription on Humble, else None."""
    node.add_on_set_parameters_callback(validate)
    if HAS_POST_SET_PARAMETERS_CALLBACK:
        node.add_post_set_parameters_callback(apply)
        return None
    from rcl_interfaces.msg import ParameterEvent
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_parameter_events

    own_name = node.get_fully_qualified_name()

    def on_parameter_event(event) -> None:
        if event.node != own_name:
            return
        stored = [Parameter.from_parameter_msg(p) for p in (*event.new_parameters, *event.changed_parameters)]
        if stored:
            apply(stored)

    return node.create_subscription(ParameterEvent, "/parameter_events", on_parameter_event,
                                    qos_profile_parameter_events)


def matched_publisher_count(node: Node, subscription) -> int:
    """Publishers matched with `subscription` (Jazzy and later). Humble has no such call: there it
    is the number of publishers on the subscription's topic, QoS-incompatible ones included."""
    count = getattr(subscription, "get_publisher_count", None)
    if count is not None:
        return count()
    return node.count_publishers(subscription.topic_name)


def check_fields_option(msg_type, check: bool) -> dict:
    """Keyword arguments that turn a message constructor's field checks on or off: {} where the
    message has no such switch (Humble's messages always check)."""
    if "_check_fields" in msg_type.__slots__:
        return {"check_fields": check}
    return {}


def restrict_discovery_to_localhost(environ: MutableMapping[str, str] = os.environ) -> str:
    """Keep DDS discovery on this host for contexts initialised afterwards (tests, demos).

    Sets the variable this distro reads (Iron+: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST;
    Humble: ROS_LOCALHOST_ONLY=1; Jazzy warns that the latter is deprecated, so it is not set
    there) unless the environment already sets it. Returns the variable's name."""
    name, value = (("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST") if READS_DISCOVERY_RANGE
                   else ("ROS_LOCALHOST_ONLY", "1"))
    environ.setdefault(name, value)
    return name
