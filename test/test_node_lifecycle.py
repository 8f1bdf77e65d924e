"""Lifecycle of the human3r node, driven through its ~/change_state and ~/get_state services
(what `ros2 lifecycle set` does), plus parameter validation. Real rclpy, tiny checkpoint."""

import threading
from pathlib import Path

import pytest
import yaml

from ros_helpers import REFERENCE_FILES, Harness, change_state, make_node, wait_until

from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import GetState  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from human3r_ros.ros import parameters as params  # noqa: E402
from human3r_ros.ros.node import Human3RNode  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "config" / "human3r.yaml"


@pytest.fixture(scope="module")
def harness():
    h = Harness(offset=11)
    yield h
    h.close()


def get_state(harness) -> int:
    return harness.call(GetState, "/human3r/get_state", GetState.Request()).current_state.id


def remove(harness, node):
    harness.executor.remove_node(node)
    node.destroy_node()


def test_full_lifecycle(harness, reference_dir):
    node = make_node(harness, reference_dir)
    try:
        assert get_state(harness) == State.PRIMARY_STATE_UNCONFIGURED
        assert change_state(harness, Transition.TRANSITION_CONFIGURE)
        assert get_state(harness) == State.PRIMARY_STATE_INACTIVE
        assert change_state(harness, Transition.TRANSITION_ACTIVATE)
        assert get_state(harness) == State.PRIMARY_STATE_ACTIVE
        wait_until(lambda: "/human3r/humans" in dict(harness.client.get_topic_names_and_types()), 5,
                   "the ~/humans publisher")
        assert harness.call(Trigger, "/human3r/reset", Trigger.Request()).success
        assert change_state(harness, Transition.TRANSITION_DEACTIVATE)
        assert get_state(harness) == State.PRIMARY_STATE_INACTIVE
        assert node._pipeline is None and not node._cameras[""].subscribed
        assert change_state(harness, Transition.TRANSITION_CLEANUP)
        assert get_state(harness) == State.PRIMARY_STATE_UNCONFIGURED
        assert node._engine is None
        assert change_state(harness, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert get_state(harness) == State.PRIMARY_STATE_FINALIZED
    finally:
        remove(harness, node)


def test_missing_checkpoint_fails_and_node_stays_unconfigured(harness, reference_dir):
    harness.collect(Log, "/rosout", QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                                       durability=DurabilityPolicy.TRANSIENT_LOCAL))
    node = make_node(harness, reference_dir, checkpoint="/nonexistent/human3r.pth")
    try:
        assert not change_state(harness, Transition.TRANSITION_CONFIGURE)
        assert get_state(harness) == State.PRIMARY_STATE_UNCONFIGURED
        reply = harness.call(Trigger, "/human3r/reset", Trigger.Request())  # still alive and answering
        assert not reply.success and "configure" in reply.message
        wait_until(lambda: any("checkpoint file not found" in m.msg and m.name == "human3r"
                               for m in harness.snapshot("/rosout")), 5, "the failure reason on /rosout")
        # Fixing the parameter makes the next configure succeed.
        node.set_parameters([Parameter("checkpoint", value=str(reference_dir / REFERENCE_FILES["checkpoint"]))])
        assert change_state(harness, Transition.TRANSITION_CONFIGURE)
        assert get_state(harness) == State.PRIMARY_STATE_INACTIVE
    finally:
        remove(harness, node)


@pytest.mark.parametrize("name, value, reason", [
    ("device", "tpu", "cpu, cuda or cuda:N"),
    ("precision", "fp8", "fp32"),
    ("compile", "fast", "max-autotune-no-cudagraphs"),
    ("reliability", "sometimes", "best_effort"),
    ("image_size", 100, "not a valid step"),  # not a multiple of 16: rclpy range step
    ("image_size", 224, "224"),
    ("image_size", 2048, "out of range"),
    ("detection_threshold", 1.5, "out of range"),
    ("cloud_decimation", 0, "out of range"),
    ("cloud_confidence_threshold", 0.5, "out of range"),
    ("camera_frame", "human3r_world", "differ"),
    ("world_frame", "/map", "leading"),
    ("body_frame_prefix", "", "non-empty"),
    ("image_size", "big", "Wrong parameter type"),
    ("autostart", True, "read-only"),
])
def test_bad_parameter_rejected(harness, reference_dir, name, value, reason):
    node = make_node(harness, reference_dir)
    try:
        before = node.get_parameter(name).value
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful
        assert reason and reason in result.reason
        assert node.get_parameter(name).value == before
    finally:
        remove(harness, node)


def test_model_parameters_locked_while_configured(harness, reference_dir):
    node = make_node(harness, reference_dir)
    try:
        assert node.set_parameters([Parameter("max_people", value=3)])[0].successful  # runtime parameter
        assert node._settings.max_people == 3
        assert change_state(harness, Transition.TRANSITION_CONFIGURE)
        result = node.set_parameters([Parameter("device", value="cpu")])[0]
        assert not result.successful and "cleanup" in result.reason
        assert change_state(harness, Transition.TRANSITION_CLEANUP)
        assert node.set_parameters([Parameter("detection_threshold", value=0.5)])[0].successful
    finally:
        remove(harness, node)


def test_compile_parameter_reaches_the_network(harness, reference_dir):
    node = make_node(harness, reference_dir, compile="default")
    try:
        assert change_state(harness, Transition.TRANSITION_CONFIGURE)
        net = node._engine.net
        # compilation itself happens on the first frame (test_compiled.py checks the graphs)
        assert node._engine.compile_mode == "default" and net.enc_blocks[0]._compiled_call_impl is not None
    finally:
        remove(harness, node)


def _threads_of_a_new_thread() -> int:
    # torch's thread count is per OS thread once set; new threads (the node's worker) take the
    # process-wide value that set_num_threads stored last
    import torch

    seen = []
    reader = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    reader.start()
    reader.join()
    return seen[0]


def test_cpu_threads_apply_while_configured_only(harness, reference_dir):
    before = _threads_of_a_new_thread()
    node = make_node(harness, reference_dir, cpu_threads=before + 1)
    try:
        assert change_state(harness, Transition.TRANSITION_CONFIGURE)
        assert _threads_of_a_new_thread() == before + 1
        assert change_state(harness, Transition.TRANSITION_CLEANUP)
        assert _threads_of_a_new_thread() == before  # process-wide setting given back with the model
    finally:
        remove(harness, node)


def test_bad_override_refused_at_start(harness, reference_dir):
    with pytest.raises(ValueError, match="device"):
        # another name: a refused node is finalised only when its last reference goes, and would
        # take the /rosout registration of later nodes named human3r with it
        Human3RNode(context=harness.context, cli_args=["--ros-args", "-r", "__node:=refused_human3r"],
                    parameter_overrides=[Parameter("device", value="gpu0")])


def test_autostart_reaches_active(harness, reference_dir):
    node = make_node(harness, reference_dir, autostart=True)
    try:
        wait_until(lambda: node._pipeline is not None, 60, "autostart to activate the node")
        assert get_state(harness) == State.PRIMARY_STATE_ACTIVE
    finally:
        change_state(harness, Transition.TRANSITION_DEACTIVATE)
        remove(harness, node)


def test_config_file_lists_every_parameter_with_valid_defaults():
    values = yaml.safe_load(CONFIG.read_text())["/**/human3r"]["ros__parameters"]
    declared = set(params.Settings.__dataclass_fields__)
    assert set(values) == declared
    assert params.check_all(params.Settings(**values)) is None
    # every parameter has a comment on its line
    lines = [line for line in CONFIG.read_text().splitlines() if ":" in line and line.startswith("    ")
             and not line.strip().startswith("#")]
    assert all("#" in line for line in lines if line.split(":")[0].strip() in declared)


def test_params_file_applies_in_any_namespace(harness, tmp_path):
    # The installed YAML, read by rcl exactly as `--params-file` / launch pass it.
    edited = tmp_path / "human3r.yaml"
    edited.write_text(CONFIG.read_text().replace("cloud_decimation: 2", "cloud_decimation: 5"))
    node = Human3RNode(context=harness.context,
                       cli_args=["--ros-args", "--params-file", str(edited), "-r", "__ns:=/front_camera"])
    try:
        assert node.get_fully_qualified_name() == "/front_camera/human3r"
        assert node.get_parameter("cloud_decimation").value == 5
        assert node._settings.cloud_decimation == 5
    finally:
        node.destroy_node()


def test_two_camera_params_file(harness, reference_dir):
    # the worked example of the README, read by rcl as `--params-file` passes it
    node = Human3RNode(context=harness.context, cli_args=[
        "--ros-args", "--params-file", str(CONFIG.parent / "two_cameras.yaml"),
        "-p", f"checkpoint:={reference_dir / REFERENCE_FILES['checkpoint']}"])
    try:
        assert list(node._cameras) == ["front", "left"]
        assert [c.topic for c in node._cameras.values()] == ["front/image", "left/image"]
        assert params.camera_input(node, "left", node._settings) == (True, "best_effort")
        assert params.camera_extrinsics(node, "left")[:3] == [-0.10, 0.0, 0.0]
        assert node._fused_outputs(node._settings).cameras == ["front", "left"]
    finally:
        node.destroy_node()
