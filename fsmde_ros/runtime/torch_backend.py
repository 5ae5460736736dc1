"""PyTorch backend: runs a student checkpoint directly (development, training-time evaluation)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fsmde_ros.export.onnx import StudentForExport
from fsmde_ros.model.checkpoint import load_student
from fsmde_ros.runtime.base import DepthBackend


class TorchBackend(DepthBackend):
    """A checkpoint on CPU or CUDA at a fixed input size (height, width)."""

    def __init__(self, checkpoint: str | Path, height: int, width: int, device: str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        student = load_student(checkpoint).eval().to(self.device)
        self.module = StudentForExport(student).eval()
        self.views, self.height, self.width = student.config.num_views, int(height), int(width)
        self.name = f"torch:{self.device.type}"

    @torch.inference_mode()
    def _infer(self, images: np.ndarray, focal_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        depth, std = self.module(torch.from_numpy(images).to(self.device), torch.from_numpy(focal_px).to(self.device))
        return depth.float().cpu().numpy(), std.float().cpu().numpy()
