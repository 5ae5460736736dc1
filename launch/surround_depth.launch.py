"""Launch the surround_depth node (and optionally RViz).

    ros2 launch fsmde_ros surround_depth.launch.py rig:=nuscenes model:=/path/to/student.onnx use_rviz:=true

Every process exchanging images with the node needs the same Fast DDS profile (64 MB shared
memory segments); this launch file sets it for the processes it starts.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description() -> LaunchDescription:
    config = os.path.join(get_package_share_directory("fsmde_ros"), "config")
    arg = LaunchConfiguration
    return LaunchDescription([
        DeclareLaunchArgument("rig", default_value="ddad",
                              description="camera rig preset (ddad, nuscenes) or path to a rig YAML: topics, frames, "
                                          "intrinsics and mounts"),
        DeclareLaunchArgument("model", default_value="",
                              description="exported student .onnx (empty: the bundled default student)"),
        DeclareLaunchArgument("backend", default_value="auto",
                              description="auto, tensorrt, onnxruntime or torch (auto picks the fastest that works)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(config, "surround_depth.yaml"),
                              description="node parameters (YAML with surround_depth: ros__parameters:)"),
        DeclareLaunchArgument("use_rviz", default_value="false",
                              description="also start RViz with config/surround_depth.rviz"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when replaying a bag with --clock)"),
        DeclareLaunchArgument("fastdds_profile", default_value=os.path.join(config, "fastdds_shm.xml"),
                              description="Fast DDS profile with 64 MB shared-memory segments for large images; "
                                          "camera drivers and bag players need the same one"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", arg("fastdds_profile")),
        SetEnvironmentVariable("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"),
        Node(
            package="fsmde_ros",
            executable="surround_depth_node",
            name="surround_depth",
            output="screen",
            parameters=[arg("params_file"), {
                "rig": arg("rig"),
                "model": ParameterValue(arg("model"), value_type=str),
                "backend": arg("backend"),
                "use_sim_time": ParameterValue(arg("use_sim_time"), value_type=bool),
            }],
        ),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", os.path.join(config, "surround_depth.rviz")],
            parameters=[{"use_sim_time": ParameterValue(arg("use_sim_time"), value_type=bool)}],
            condition=IfCondition(arg("use_rviz")),
        ),
    ])
