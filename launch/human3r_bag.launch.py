"""human3r on a recorded bag: same as human3r.launch.py, with use_sim_time true.

Play the bag with its clock, or the node's (and RViz's) time stands still:

    ros2 launch human3r_ros human3r_bag.launch.py image:=/camera/color/image_raw checkpoint:=/models/h3r.pth
    ros2 bag play --clock <bag>          # --clock publishes /clock from the bag's timestamps

Outputs carry the images' stamps. When the bag loops (`--loop`) the stamps jump back; the node
then resets its state and starts a new sequence (logged, and counted in /diagnostics).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = "human3r_ros"
PASSED_THROUGH = {
    "image": ("/camera/image_raw", "Camera image topic in the bag"),
    "params_file": (PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "human3r.yaml"]),
                    "YAML with the node's parameters"),
    "checkpoint": ("", "Human3R checkpoint (overrides params_file)"),
    "body_model_dir": ("", "Folder with smplx/SMPLX_NEUTRAL.npz (overrides params_file)"),
    "device": ("", "cpu | cuda | cuda:N (overrides params_file)"),
    "namespace": ("", "Namespace of the node"),
    "rviz": ("false", "Also start RViz"),
}


def generate_launch_description() -> LaunchDescription:
    arguments = [DeclareLaunchArgument(name, default_value=default, description=text)
                 for name, (default, text) in PASSED_THROUGH.items()]
    main_launch = PathJoinSubstitution([FindPackageShare(PACKAGE), "launch", "human3r.launch.py"])
    forwarded = {name: LaunchConfiguration(name) for name in PASSED_THROUGH}
    return LaunchDescription([
        *arguments,
        IncludeLaunchDescription(PythonLaunchDescriptionSource(main_launch),
                                 launch_arguments={**forwarded, "use_sim_time": "true"}.items()),
    ])
