"""A shortened `make demo`: bag -> real node process -> fsmde play -> recorded outputs -> pictures."""
import json
import subprocess
import sys

import cv2
import pytest

from tests.helpers.ros_env import REPO, ros_env

pytest.importorskip("rclpy", reason="needs rclpy (make setup installs the ROS 2 wheels)")
MODEL = REPO / "models" / "fsmde_default.onnx"


@pytest.mark.skipif(not MODEL.is_file(), reason="the bundled student models/fsmde_default.onnx is missing")
def test_short_demo_writes_pictures_bags_and_a_summary(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fsmde_ros", "demo", "--frames", "8", "--out", str(tmp_path)],
                          cwd=REPO, env=ros_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for stage in range(1, 7):
        assert f"[demo {stage}/6]" in proc.stdout
    for name in ("surround_depth.png", "bev.png", "latency.png"):
        image = cv2.imread(str(tmp_path / name))
        assert image is not None and image.std() > 10, name
    assert (tmp_path / "input_bag" / "metadata.yaml").is_file()
    assert (tmp_path / "output_bag" / "metadata.yaml").is_file()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sets_out"] >= 2 and summary["backend"] == "onnxruntime:CPUExecutionProvider"
    assert 0 < summary["abs_rel"] < 1 and 0 < summary["a1"] <= 1


def test_demo_fails_clearly_without_a_model(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fsmde_ros", "demo", "--frames", "2", "--out", str(tmp_path),
                           "--model", str(tmp_path / "none.onnx")], cwd=REPO, env=ros_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "none.onnx not found" in proc.stderr
