"""Environment for test processes that talk over real DDS: an isolated domain on localhost
and the project's Fast DDS profile (large shared-memory segments for images)."""
import os
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FASTDDS_PROFILE = REPO / "config" / "fastdds_shm.xml"


def ros_env(domain_id: int | None = None) -> dict:
    """A copy of os.environ for a ROS 2 subprocess on a private DDS domain."""
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id if domain_id is not None else random.randint(20, 200)),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
        FASTDDS_DEFAULT_PROFILES_FILE=str(FASTDDS_PROFILE),
        PYTHONUNBUFFERED="1",
    )
    return env
