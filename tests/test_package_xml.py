"""package.xml declares exactly the ROS packages the code uses (issue 14, item 21: it declared cv_bridge and
tf2_ros, never imported, and lacked tf2_msgs, geometry_msgs, rcl_interfaces, rosgraph_msgs, rosidl_runtime_py,
ament_index_python and rviz2)."""
import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NON_ROS = {"python3-numpy", "python3-opencv", "python3-yaml", "python3-tqdm", "python3-pytest"}  # rosdep keys


def ros_packages_used() -> set[str]:
    """ROS packages imported (ast) or named in message type strings ('pkg/msg/Name') by the package and
    its launch files, and the packages whose executables the launch file starts."""
    from tests.test_layering import ROS_PACKAGES

    found = set()
    sources = list((REPO / "fsmde_ros").rglob("*.py")) + list((REPO / "launch").glob("*.py"))
    known = ROS_PACKAGES | {"ament_index_python"}
    for path in sources:
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
        found |= set(re.findall(r"\"(\w+)/msg/\w+\"", text))
        found |= set(re.findall(r"package=\"(\w+)\"", text)) - {"fsmde_ros"}
    return {p for p in found if p in known or p.endswith("_msgs") or p.endswith("_interfaces") or p == "rviz2"}


def declared() -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    tags = ("depend", "exec_depend", "build_depend")
    return {e.text.strip() for t in tags for e in root.iter(t)} - NON_ROS


def test_package_xml_declares_what_the_code_uses_and_nothing_else():
    used = ros_packages_used() - {"rosbags"}  # rosbags is a PyPI package (setup.py), no ROS package
    assert declared() == used
