"""Test-session environment: DDS stays on this machine and uses the project's Fast DDS profile.

Set before any test creates a DDS participant in this process (Fast DDS reads the profile once).
"""
import os

import numpy as np
import pytest

from tests.helpers.ros_env import FASTDDS_PROFILE

os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(FASTDDS_PROFILE))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


# -- an exported student, shared by the export and runtime tests ------------------------------------
V, H, W = 6, 64, 96


@pytest.fixture(scope="session")
def frames():
    """(images uint8 [V,H,W,3], focal_px [V]) of random pixels."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(V, H, W, 3), dtype=np.uint8)
    return images, np.linspace(80.0, 160.0, V).astype(np.float32)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, frames):
    """A small untrained student exported to ONNX at V x H x W, with its checkpoint: (onnx, ckpt, student, errors)."""
    import torch

    from fsmde_ros.export.onnx import export_onnx
    from fsmde_ros.model.checkpoint import save_student
    from fsmde_ros.model.student import create_student

    torch.manual_seed(0)
    student = create_student("fsmde_mnv3l", num_bins=16).eval()
    path = tmp_path_factory.mktemp("onnx") / "student.onnx"
    errors = export_onnx(student, path, H, W, *frames, rig="nuscenes")
    ckpt = save_student(student, path.with_suffix(".pt"))
    return path, ckpt, student, errors
