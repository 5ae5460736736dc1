"""colcon builds and installs the package the way a ROS 2 workspace does."""
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COLCON = shutil.which("colcon", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
IGNORE = shutil.ignore_patterns(".venv", ".git", "__pycache__", "build", "install", "log", "demo_out", "*.egg-info",
                                ".pytest_cache")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    if COLCON is None:
        pytest.skip("colcon not installed (make setup installs colcon-common-extensions)")
    ws = tmp_path_factory.mktemp("ws")
    shutil.copytree(REPO, ws / "src" / "fsmde_ros", ignore=IGNORE)
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run([COLCON, "build", "--packages-select", "fsmde_ros", "--event-handlers", "console_direct+"],
                          cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ws


def test_colcon_installs_executables_launch_and_config(workspace):
    prefix = workspace / "install" / "fsmde_ros"
    for exe in ("surround_depth_node", "fsmde"):
        path = prefix / "lib" / "fsmde_ros" / exe
        assert path.is_file() and os.access(path, os.X_OK), f"{path} missing"
    share = prefix / "share" / "fsmde_ros"
    assert (share / "launch" / "surround_depth.launch.py").is_file()
    assert (share / "config" / "rigs" / "ddad.yaml").is_file()
    assert (share / "config" / "rigs" / "nuscenes.yaml").is_file()
    assert (share / "config" / "fastdds_shm.xml").is_file()
    assert (share / "package.xml").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "fsmde_ros").is_file()


def test_installed_package_finds_its_presets_through_the_ament_index(workspace):
    """Installed (not a checkout), rigs are read from share/fsmde_ros via AMENT_PREFIX_PATH."""
    prefix = workspace / "install" / "fsmde_ros"
    site = next(prefix.glob("lib/python3*/site-packages"))
    env = dict(os.environ, PYTHONPATH=str(site), AMENT_PREFIX_PATH=str(prefix))
    proc = subprocess.run([sys.executable, str(prefix / "lib" / "fsmde_ros" / "fsmde"), "rig", "list"],
                          cwd=workspace, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert str(prefix / "share" / "fsmde_ros" / "config" / "rigs" / "nuscenes.yaml") in proc.stdout


def test_installed_node_starts_with_a_rig_and_rejects_a_bad_one(workspace, tmp_path):
    pytest.importorskip("rclpy", reason="needs rclpy (make setup installs the ROS 2 wheels)")
    from tests.helpers.oracle_model import write_oracle_model
    from tests.helpers.ros_env import ros_env

    model = write_oracle_model(tmp_path / "oracle.onnx", 6, 48, 80)
    prefix = workspace / "install" / "fsmde_ros"
    site = next(prefix.glob("lib/python3*/site-packages"))
    env = dict(ros_env(), PYTHONPATH=str(site), AMENT_PREFIX_PATH=str(prefix))
    node = [sys.executable, str(prefix / "lib" / "fsmde_ros" / "surround_depth_node"), "--ros-args"]
    bad = subprocess.run(node + ["-p", "rig:=kitti", "-p", f"model:={model}"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "no rig preset 'kitti'" in bad.stderr
    proc = subprocess.Popen(node + ["-p", "rig:=nuscenes", "-p", f"model:={model}", "-p", "backend:=auto"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(60, proc.kill)  # never hang the suite on a silent node
    watchdog.start()
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "backend onnxruntime" in line:
                break
        assert any("input 80x48 x 6 views" in line for line in lines), "".join(lines)
        assert proc.poll() is None, "the node keeps running"
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.wait(timeout=20)
