"""Launch the surround_depth node: `ros2 launch fsmde_ros surround_depth.launch.py rig:=nuscenes`."""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("fsmde_ros")
    config = os.path.join(share, "config")
    return LaunchDescription([
        DeclareLaunchArgument("rig", default_value="ddad",
                              description="camera rig preset (ddad, nuscenes) or path to a rig YAML"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(config, "surround_depth.yaml"),
                              description="node parameters (YAML, ros__parameters)"),
        DeclareLaunchArgument("fastdds_profile", default_value=os.path.join(config, "fastdds_shm.xml"),
                              description="Fast DDS profile with 64 MB shared-memory segments for large images; "
                                          "camera drivers and bag players need the same one"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("fastdds_profile")),
        Node(
            package="fsmde_ros",
            executable="surround_depth_node",
            name="surround_depth",
            output="screen",
            parameters=[LaunchConfiguration("params_file"), {"rig": LaunchConfiguration("rig")}],
        ),
    ])
