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
