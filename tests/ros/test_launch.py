"""The launch file and the RViz layout: arguments, topics, and (where launch_ros exists) loading."""
import ast
import importlib.util

import pytest
import yaml

from fsmde_ros.geometry.rig import load_rig
from tests.helpers.ros_env import REPO

LAUNCH = REPO / "launch" / "surround_depth.launch.py"
ARGUMENTS = {"rig", "model", "backend", "params_file", "use_rviz", "use_sim_time", "fastdds_profile"}


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


def test_rviz_layout_shows_the_cloud_and_every_depth_topic_in_base_link():
    cfg = yaml.safe_load((REPO / "config" / "surround_depth.rviz").read_text())
    manager = cfg["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "base_link"
    topics = {d.get("Topic", {}).get("Value") for d in manager["Displays"]}
    assert "/surround_depth/points" in topics
    for rig in ("ddad", "nuscenes"):
        for name in load_rig(rig).names:
            assert f"/surround_depth/{name}/depth" in topics


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
