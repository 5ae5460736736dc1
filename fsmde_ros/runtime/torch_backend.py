"""PyTorch backend: runs a student checkpoint directly (development, training-time evaluation)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fsmde_ros.model.checkpoint import load_student, read_checkpoint
from fsmde_ros.model.student_io import StudentForExport
from fsmde_ros.runtime.base import DepthBackend


DEFAULT_SIZE = (192, 320)  # (height, width) [px] for a checkpoint that does not say what it was trained at


class TorchBackend(DepthBackend):
    """A checkpoint on CPU or CUDA at a fixed input size: (height, width) given, else the size the checkpoint
    was trained at (`fsmde distill` records it), else DEFAULT_SIZE. Loading is weights-only: a checkpoint
    that pickles Python objects is refused without running them (model.checkpoint.read_checkpoint)."""

    def __init__(self, checkpoint: str | Path, height: int | None = None, width: int | None = None,
                 device: str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        data = read_checkpoint(checkpoint)
        trained = data.get("extra", {})
        student = load_student(checkpoint, data=data).eval().to(self.device)
        self.module = StudentForExport(student).eval()
        height = height or trained.get("height") or DEFAULT_SIZE[0]
        width = width or trained.get("width") or DEFAULT_SIZE[1]
        self.views, self.height, self.width = student.config.num_views, int(height), int(width)
        self.name = f"torch:{self.device.type}"

    @torch.inference_mode()
    def _infer(self, images: np.ndarray, focal_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        depth, std = self.module(torch.from_numpy(images).to(self.device), torch.from_numpy(focal_px).to(self.device))
        return depth.float().cpu().numpy(), std.float().cpu().numpy()
