"""The shipped Fast DDS profile carries full-size camera images between processes.

Regression: with Fast DDS defaults (512 KB shared-memory segments) most 1 MB+ images were lost.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.ros_env import ros_env

pytest.importorskip("rclpy", reason="needs rclpy (make setup installs the ROS 2 wheels)")
LINK = str(Path(__file__).resolve().parents[1] / "helpers" / "image_link.py")
COUNT = 20


@pytest.mark.parametrize("width, height", [(1936, 1216)])  # DDAD full resolution, 7 MB rgb8
def test_full_resolution_images_cross_processes(width, height):
    env = ros_env()
    sub = subprocess.Popen([sys.executable, LINK, "sub", "/link_test/image", "12"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pub = subprocess.run([sys.executable, LINK, "pub", "/link_test/image", str(COUNT), str(width), str(height)],
                         env=env, capture_output=True, text=True, timeout=60)
    out, _ = sub.communicate(timeout=60)
    assert pub.returncode == 0, pub.stderr
    received = int(re.search(r"received (\d+)", out).group(1))
    assert received >= 0.8 * COUNT, f"only {received}/{COUNT} images arrived:\n{out}"
    assert str(width * height * 3) in out
