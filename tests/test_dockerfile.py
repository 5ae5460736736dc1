"""The Dockerfile installs the package the way the README's colcon section says (issue 23 item 7), so the two cannot
drift; building it needs a Docker daemon and the ROS base image, neither of which this CI has."""
import re

from tests.helpers.ros_env import REPO


def _readme_colcon_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## On a machine with ROS 2 installed", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_dockerfile_runs_the_readmes_install_steps():
    docker = (REPO / "Dockerfile").read_text()
    steps = " ".join(_readme_colcon_commands())
    for must in ("rosdep install --from-paths src --ignore-src -y", "python3 -m venv --system-site-packages venv",
                 "touch venv/COLCON_IGNORE", "-c src/fsmde_ros/constraints.txt \"./src/fsmde_ros[gpu]\"",
                 "python -m colcon build --packages-select fsmde_ros"):
        assert must in steps, f"README colcon section lacks: {must}"
        assert must in docker, f"Dockerfile lacks the README's step: {must}"
    assert "fastdds_shm.xml" in docker and "FROM ros:${ROS_DISTRO}-ros-base" in docker
