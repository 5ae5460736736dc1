"""Launch the surround_depth node (and optionally RViz).

    ros2 launch fsmde_ros surround_depth.launch.py rig:=nuscenes model:=/path/to/student.onnx use_rviz:=true
    ros2 launch fsmde_ros surround_depth.launch.py namespace:=trailer node_name:=rear_depth \
        remappings:="/cam_front/image_raw:=/trailer/front/image_rect,points:=/trailer/points"

params_file holds the node's parameters; `rig`, `model` and `backend` override it only when given.
RViz opens the rig's layout (config/rviz/<rig>.rviz, or one generated for a rig YAML). Every
process exchanging images with the node needs the same Fast DDS profile (64 MB shared memory
segments); this launch file sets it for the processes it starts. RMW_IMPLEMENTATION is yours.
"""
import os
import tempfile

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from fsmde_ros.app.launch_support import node_parameters, output_namespace, remappings, rviz_config_for

OVERRIDES = ("rig", "model", "backend")  # launch arguments that override params_file when given


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def launch_setup(context, config: str):
    value = {name: context.launch_configurations.get(name, "") for name in
             (*OVERRIDES, "params_file", "use_rviz", "use_sim_time", "namespace", "node_name", "remappings")}
    sim_time = _truthy(value["use_sim_time"])
    name = value["node_name"] or "surround_depth"
    actions = [Node(package="fsmde_ros", executable="surround_depth_node", name=name, namespace=value["namespace"],
                    output="screen", remappings=remappings(value["remappings"]),
                    parameters=node_parameters(value["params_file"], {k: value[k] for k in OVERRIDES}, sim_time))]
    if _truthy(value["use_rviz"]):
        layout = rviz_config_for(value["rig"] or "ddad", config, tempfile.gettempdir(),
                                 output_namespace(value["namespace"], name))
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", str(layout)],
                            parameters=[{"use_sim_time": sim_time}]))
    return actions


def generate_launch_description() -> LaunchDescription:
    config = os.path.join(get_package_share_directory("fsmde_ros"), "config")
    return LaunchDescription([
        DeclareLaunchArgument("rig", default_value="",
                              description="camera rig preset (ddad, nuscenes) or path to a rig YAML: topics, frames, "
                                          "intrinsics and mounts (empty: params_file's, ddad by default)"),
        DeclareLaunchArgument("model", default_value="",
                              description="exported student .onnx (empty: params_file's, the bundled default student)"),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto, tensorrt, onnxruntime or torch (empty: params_file's, auto)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(config, "surround_depth.yaml"),
                              description="node parameters (YAML with surround_depth: ros__parameters:)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node (two rigs on one vehicle: one namespace each); its "
                                          "outputs are /<namespace>/<node_name>/..."),
        DeclareLaunchArgument("node_name", default_value="surround_depth",
                              description="name of the node (its ~/ outputs and its parameters live under it)"),
        DeclareLaunchArgument("remappings", default_value="",
                              description="comma-separated FROM:=TO topic remaps of the node's inputs and outputs, e.g. "
                                          "/cam_front/image_raw:=/front/image_rect,points:=/perception/surround_points"),
        DeclareLaunchArgument("use_rviz", default_value="false",
                              description="also start RViz with the rig's layout (config/rviz/<rig>.rviz)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when replaying a bag with --clock)"),
        DeclareLaunchArgument("fastdds_profile", default_value=os.path.join(config, "fastdds_shm.xml"),
                              description="Fast DDS profile with 64 MB shared-memory segments for large images; "
                                          "camera drivers and bag players need the same one"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("fastdds_profile")),
        OpaqueFunction(function=launch_setup, kwargs={"config": config}),
    ])
