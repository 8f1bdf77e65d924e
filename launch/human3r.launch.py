"""Start the human3r lifecycle node on a camera topic and bring it to `active`.

    ros2 launch human3r_ros human3r.launch.py image:=/camera/color/image_raw \
        checkpoint:=/models/human3r_672L.pth body_model_dir:=/models/body_models

The node is configured as soon as it starts and activated once configuration succeeds
(lifecycle events, like `ros2 lifecycle set`). A failed configure leaves it unconfigured with the
reason in the log. Other parameters come from `params_file` (default: the installed
config/human3r.yaml); `checkpoint`, `body_model_dir` and `device` given here override it.

Several cameras on one node: a params file with `cameras` and `extrinsics` (see the installed
config/two_cameras.yaml); each camera reads <name>/image:

    ros2 launch human3r_ros human3r.launch.py params_file:=$(ros2 pkg prefix human3r_ros)/share/human3r_ros/config/two_cameras.yaml \
        checkpoint:=human3r_672S
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

PACKAGE = "human3r_ros"
# Launch arguments that override the params file only when given (an empty default must not
# overwrite a checkpoint set in the user's own params file).
OPTIONAL_OVERRIDES = ("checkpoint", "body_model_dir", "device")


def _lifecycle_node(context):
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    overrides = {name: LaunchConfiguration(name).perform(context) for name in OPTIONAL_OVERRIDES}
    overrides = {name: value for name, value in overrides.items() if value}
    node = LifecycleNode(
        package=PACKAGE,
        executable="human3r_node",
        name="human3r",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[LaunchConfiguration("params_file"), {"use_sim_time": use_sim_time, **overrides}],
        remappings=[("image", LaunchConfiguration("image"))],
    )
    configure = EmitEvent(event=ChangeState(
        lifecycle_node_matcher=matches_action(node), transition_id=Transition.TRANSITION_CONFIGURE))
    # Only configuring -> inactive: a later manual deactivate (active -> inactive) must stay inactive.
    activate_when_configured = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(
            lifecycle_node_matcher=matches_action(node), transition_id=Transition.TRANSITION_ACTIVATE))],
    ))
    return [activate_when_configured, node, configure]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="Camera image topic (sensor_msgs/Image; with compressed:=true in the "
                                          "params file, the CompressedImage topic, e.g. .../image_raw/compressed)"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "human3r.yaml"]),
                              description="YAML with the node's parameters (node name: human3r)"),
        DeclareLaunchArgument("checkpoint", default_value="", description="Human3R checkpoint (overrides params_file)"),
        DeclareLaunchArgument("body_model_dir", default_value="",
                              description="Folder with smplx/SMPLX_NEUTRAL.npz (overrides params_file)"),
        DeclareLaunchArgument("device", default_value="", description="cpu | cuda | cuda:N (overrides params_file)"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node (one per camera)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (true when replaying a bag with --clock)"),
        DeclareLaunchArgument("rviz", default_value="false", description="Also start RViz with rviz/human3r.rviz"),
        OpaqueFunction(function=_lifecycle_node),
        Node(
            package="rviz2", executable="rviz2", name="human3r_rviz", output="log",
            arguments=["-d", PathJoinSubstitution([share, "rviz", "human3r.rviz"])],
            parameters=[{"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}],
            condition=IfCondition(LaunchConfiguration("rviz")),
        ),
    ])
