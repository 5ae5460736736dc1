"""StudentForExport: the student behind the exported model's I/O contract (model/contract.py).

images uint8 [V,H,W,3] RGB and focal_px float32 [V] (fx at H x W) in; depth and depth_std float32 [V,H,W]
metres out. One module for what export/onnx.py traces and runtime/torch_backend.py runs, so the checkpoint
and its ONNX take the same bytes and give the same depth.
"""
from __future__ import annotations

import torch
from torch import nn

from fsmde_ros.model.student import SurroundDepthStudent


class StudentForExport(nn.Module):
    """Wraps the student with the graph's I/O contract (uint8 HWC in, [V,H,W] metres out)."""

    def __init__(self, student: SurroundDepthStudent):
        super().__init__()
        self.student = student

    def forward(self, images: torch.Tensor, focal_px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float().div(255.0).unsqueeze(0)
        depth, std = self.student.predict(x, focal_px.unsqueeze(0))
        return depth[0], std[0]
