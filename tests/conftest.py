"""Test-session environment: DDS stays on this machine and uses the project's Fast DDS profile.

Set before any test creates a DDS participant in this process (Fast DDS reads the profile once).
"""
import os

from tests.helpers.ros_env import FASTDDS_PROFILE

os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(FASTDDS_PROFILE))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
