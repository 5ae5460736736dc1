"""The launch file and the RViz layout: arguments, topics, and (where launch_ros exists) loading."""
import ast
import importlib.util

import pytest
import yaml

from fsmde_ros.geometry.rig import load_rig
from tests.helpers.ros_env import REPO

LAUNCH = REPO / "launch" / "surround_depth.launch.py"
ARGUMENTS = {"rig", "model", "backend", "params_file", "use_rviz", "use_sim_time", "fastdds_profile", "namespace",
             "node_name", "remappings"}


def _declared_arguments(tree):
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument":
            kwargs = {k.arg for k in node.keywords}
            names[node.args[0].value] = "description" in kwargs
    return names


def test_launch_file_declares_every_argument_with_a_description():
    declared = _declared_arguments(ast.parse(LAUNCH.read_text()))
    assert set(declared) == ARGUMENTS
    assert all(declared.values()), "every launch argument has a description"
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in LAUNCH.read_text()


@pytest.mark.parametrize("rig", ["ddad", "nuscenes"])
def test_each_rig_has_an_rviz_layout_of_its_own_cameras(rig):
    """Regression (issue 14, item 20): `rig:=nuscenes use_rviz:=true` showed six panels on DDAD topics."""
    from fsmde_ros.app.launch_support import rviz_text

    path = REPO / "config" / "rviz" / f"{rig}.rviz"
    assert path.read_text() == rviz_text(load_rig(rig)), "regenerate with fsmde_ros.app.launch_support.rviz_text"
    manager = yaml.safe_load(path.read_text())["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "base_link"
    topics = {d.get("Topic", {}).get("Value") for d in manager["Displays"]} - {None}
    assert topics == {"/surround_depth/points"} | {f"/surround_depth/{n}/depth" for n in load_rig(rig).names}


def test_a_rig_yaml_of_your_own_gets_a_generated_layout(tmp_path):
    from fsmde_ros.app.launch_support import rviz_config_for

    own = tmp_path / "my_rig.yaml"
    own.write_text((REPO / "config" / "rigs" / "nuscenes.yaml").read_text().replace("name: nuscenes", "name: mine", 1))
    layout = rviz_config_for(own, REPO / "config", tmp_path)
    assert layout.parent == tmp_path and "/surround_depth/CAM_FRONT/depth" in layout.read_text()
    assert rviz_config_for("ddad", REPO / "config", tmp_path) == REPO / "config" / "rviz" / "ddad.rviz"


def test_only_the_launch_arguments_given_override_params_file():
    """Regression (issue 14, item 20): the launch file always overrode params_file's rig, model and backend
    with its own defaults."""
    from fsmde_ros.app.launch_support import node_parameters

    params = str(REPO / "config" / "surround_depth.yaml")
    from_file = yaml.safe_load(open(params))["surround_depth"]["ros__parameters"]
    assert node_parameters(params, {"rig": "", "model": "", "backend": ""}, False) == \
        [from_file, {"use_sim_time": False}]
    assert node_parameters(params, {"rig": "nuscenes", "model": "", "backend": "onnxruntime"}, True) == \
        [from_file, {"rig": "nuscenes", "backend": "onnxruntime", "use_sim_time": True}]
    text = LAUNCH.read_text()
    assert "node_parameters(" in text and "rviz_config_for(" in text
    assert "RMW_IMPLEMENTATION" not in text.split('"""', 2)[2], "the user's RMW is respected, not forced"


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="launch_ros is not installed (no PyPI wheel; a ROS 2 installation provides it)")
def test_launch_description_loads():
    spec = importlib.util.spec_from_file_location("surround_depth_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    from launch.actions import DeclareLaunchArgument

    names = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert names == ARGUMENTS


def test_a_namespaced_renamed_node_gets_its_parameters_and_an_rviz_layout_on_its_topics(tmp_path):
    """Issue 23: the launch file had no namespace, node name or remaps, and the layout named /surround_depth."""
    from fsmde_ros.app.launch_support import output_namespace, params_file_values, remappings, rviz_config_for

    assert output_namespace() == "/surround_depth" and output_namespace("/trailer/", "rear") == "/trailer/rear"
    layout = rviz_config_for("nuscenes", REPO / "config", tmp_path, output_namespace("trailer", "rear"))
    text = layout.read_text()
    assert layout.parent == tmp_path and "/trailer/rear/points" in text and "/trailer/rear/CAM_BACK/depth" in text
    assert "/surround_depth/" not in text
    wildcard = tmp_path / "p.yaml"
    wildcard.write_text("/**:\n  ros__parameters:\n    max_depth: 40.0\n")  # the ROS 2 convention for any node
    assert params_file_values(wildcard) == {"max_depth": 40.0}
    assert remappings(" /a:=/b, points:=/x ") == [("/a", "/b"), ("points", "/x")] and remappings("") == []
    with pytest.raises(ValueError, match="FROM:=TO"):
        remappings("/a=/b")


def _installed_package() -> bool:
    try:
        from ament_index_python.packages import get_package_share_directory

        get_package_share_directory("fsmde_ros")
        return True
    except Exception:  # noqa: BLE001 - not importable, or the package is not in a sourced colcon install
        return False


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None or not _installed_package(),
                    reason="needs launch, launch_ros and fsmde_ros in a sourced colcon install (a ROS 2 installation); "
                           "the wheels install has neither launch_ros nor an ament index")
def test_the_launch_file_runs_for_real_with_a_rig_override_a_params_file_and_a_namespace(tmp_path):
    """Issue 23 item 6: the launch file started under launch's own LaunchService, as `ros2 launch` does; the node
    comes up under /ci/surround_depth with rig from the argument and max_depth from the params file, publishes
    depth for a set it is sent, and stops cleanly on SIGINT."""
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers.ros_env import next_domain, ros_env

    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    max_depth: 42.0\n    backend: onnxruntime\n")
    script = ("import sys\nfrom launch import LaunchDescription, LaunchService\n"
              "from launch.actions import IncludeLaunchDescription\n"
              "from launch.launch_description_sources import PythonLaunchDescriptionSource\n"
              f"ls = LaunchService()\nls.include_launch_description(IncludeLaunchDescription(PythonLaunchDescriptionSource("
              f"{str(LAUNCH)!r}), launch_arguments={{'rig': 'nuscenes', 'params_file': {str(params)!r}, "
              "'namespace': 'ci'}.items()))\nsys.exit(ls.run())\n")
    domain = next_domain()
    env = ros_env(domain)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    import rclpy
    from rcl_interfaces.srv import GetParameters

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("launch_check", context=ctx)
    try:
        client = node.create_client(GetParameters, "/ci/surround_depth/get_parameters")
        end = time.monotonic() + 60
        while not client.service_is_ready() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.2)
            assert proc.poll() is None, proc.stdout.read()
        assert ("surround_depth", "/ci") in node.get_node_names_and_namespaces()
        future = client.call_async(GetParameters.Request(names=["rig", "max_depth"]))
        while not future.done() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.2)
        rig, max_depth = future.result().values
        assert rig.string_value == "nuscenes" and max_depth.double_value == 42.0
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        depth = []
        node.create_subscription(Image, "/ci/surround_depth/CAM_FRONT/depth", depth.append,
                                 QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE))
        pub = subprocess.Popen([sys.executable, str(REPO / "tests" / "helpers" / "surround_publisher.py"), "--rig",
                                "nuscenes", "--height", "192", "--width", "320", "--frames", "8", "--wait-for", "1"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        end = time.monotonic() + 120
        while (pub.poll() is None or not depth) and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert pub.returncode == 0 and depth, "the launched node published depth for the sets it was sent"
        assert depth[0].encoding == "32FC1"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    assert proc.returncode == 0 and "Traceback" not in out, out
