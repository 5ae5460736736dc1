"""Environment for test processes that talk over real DDS: an isolated domain on localhost
and the project's Fast DDS profile (large shared-memory segments for images)."""
import itertools
import subprocess
import sys
import os
from pathlib import Path

from fsmde_ros.paths import fastdds_profile

REPO = Path(__file__).resolve().parents[2]
FASTDDS_PROFILE = fastdds_profile()


# DDS domains 30..179, handed out in turn: no two tests of a session share one (a random pick collided
# about every other session, and a test could then meet another's participants or stale SHM ports).
_DOMAINS = itertools.count(os.getpid() % 150)


def next_domain() -> int:
    """A DDS domain id no earlier test of this session used."""
    return 30 + next(_DOMAINS) % 150


def ros_env(domain_id: int | None = None) -> dict:
    """A copy of os.environ for a ROS 2 subprocess on a private DDS domain."""
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id if domain_id is not None else next_domain()),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
        FASTDDS_DEFAULT_PROFILES_FILE=str(FASTDDS_PROFILE),
        PYTHONUNBUFFERED="1",
    )
    return env


def start_node(params: dict, env: dict) -> subprocess.Popen:
    """The real surround_depth node in its own process, with `-p name:=value` for each of `params`."""
    cmd = [sys.executable, "-m", "fsmde_ros.ros.node", "--ros-args"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
