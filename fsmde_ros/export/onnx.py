"""ONNX export of the student: raw uint8 RGB in, metric depth and its std out.

Graph I/O (static shapes, one graph per exported resolution):
  images    uint8   [V,H,W,3]  RGB, as the cameras deliver it (1 byte per channel on the bus)
  focal_px  float32 [V]        fx of each view at H x W
  depth     float32 [V,H,W]    metres
  depth_std float32 [V,H,W]    metres, one sigma of the depth (the uncertainty branch, model/bins.py)
Normalisation and the HWC->CHW change happen inside the graph. The export verifies itself
against PyTorch with ONNX Runtime before it writes the file.
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from fsmde_ros import __version__
from fsmde_ros.errors import ConfigError
from fsmde_ros.model.contract import DEFAULT_OPSET, INPUT_NAMES, OUTPUT_NAMES
from fsmde_ros.model.student import SurroundDepthStudent
from fsmde_ros.model.student_io import StudentForExport

# Largest |onnx - torch| / max|torch| accepted per output; above it the export refuses to write.
MAX_RELATIVE_ERROR = 1e-3


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected| (0 when both are zero)."""
    scale = float(np.abs(expected).max())
    return float(np.abs(actual - expected).max() / scale) if scale > 0 else float(np.abs(actual).max())


def _ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def export_onnx(student: SurroundDepthStudent, out_path: str | Path, height: int, width: int,
                verify_images: np.ndarray, verify_focal_px: np.ndarray, rig: str = "unknown",
                opset: int = DEFAULT_OPSET, extra_metadata: dict[str, Any] | None = None) -> dict[str, float]:
    """Export, check and verify the student at (height, width); returns the measured relative errors.

    verify_images uint8 [V,H,W,3] and verify_focal_px [V] should be real frames (e.g. synthetic
    ones): the ONNX Runtime result must match PyTorch within MAX_RELATIVE_ERROR or nothing is written.
    """
    out_path = Path(out_path)
    views = student.config.num_views
    if verify_images.shape != (views, height, width, 3) or verify_images.dtype != np.uint8:
        raise ConfigError(f"verify_images must be uint8 [{views},{height},{width},3], got "
                         f"{verify_images.dtype} {verify_images.shape}")
    if opset < 17:
        raise ConfigError(f"opset must be >= 17, got {opset}")
    wrapper = StudentForExport(student.eval().cpu()).eval()
    images = torch.from_numpy(np.ascontiguousarray(verify_images))
    focal = torch.from_numpy(np.asarray(verify_focal_px, dtype=np.float32))
    tmp = out_path.with_suffix(".onnx.tmp")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # tracer chatter about shape checks that are static here
        torch.onnx.export(wrapper, (images, focal), str(tmp), input_names=list(INPUT_NAMES),
                          output_names=list(OUTPUT_NAMES), opset_version=opset, dynamo=False)
        expected = [t.numpy() for t in wrapper(images, focal)]
    model = onnx.load(str(tmp))
    onnx.checker.check_model(model, full_check=True)
    meta = {
        "fsmde_version": __version__,
        "height": str(height), "width": str(width), "views": str(views),
        "rig": rig,
        "min_depth_m": str(student.config.min_depth_m), "max_depth_m": str(student.config.max_depth_m),
        "canonical_focal_px": str(student.config.canonical_focal_px),
        "student_config": json.dumps(student.config.to_dict()),
        **{k: str(v) for k, v in (extra_metadata or {}).items()},
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name, model.producer_version = "fsmde_ros", __version__
    onnx.save(model, str(tmp))
    actual = _ort_session(tmp).run(list(OUTPUT_NAMES), {"images": verify_images,
                                                        "focal_px": focal.numpy()})
    errors = {name: relative_error(a, e) for name, a, e in zip(OUTPUT_NAMES, actual, expected)}
    worst = max(errors.values())
    if not np.isfinite(worst) or worst > MAX_RELATIVE_ERROR:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ONNX Runtime disagrees with PyTorch: relative error {errors} > {MAX_RELATIVE_ERROR}; "
                           f"{out_path} not written")
    tmp.replace(out_path)
    return errors
