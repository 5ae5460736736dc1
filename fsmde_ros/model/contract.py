"""The exported model's contract, readable without torch: I/O names, shapes, metadata, and what runs it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx

from fsmde_ros.errors import FsmdeError

DEFAULT_OPSET = 17  # the ONNX opset a student is exported at (and the lowest the exporter accepts)
INPUT_NAMES = ("images", "focal_px")
OUTPUT_NAMES = ("depth", "depth_std")
# name -> (ONNX element type, rank): images uint8 [V,H,W,3] RGB, focal_px float32 [V], depth and its std float32 [V,H,W] m
CONTRACT = {"images": ("UINT8", 4), "focal_px": ("FLOAT", 1), "depth": ("FLOAT", 3), "depth_std": ("FLOAT", 3)}


class DepthPredictor(Protocol):
    """Anything that runs the student (every runtime backend): images uint8 [V,H,W,3] RGB and focal_px [V]
    -> (depth, depth_std) float32 [V,H,W] metres, at a fixed views x height x width."""

    name: str
    views: int
    height: int
    width: int

    def infer(self, images: np.ndarray, focal_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class OnnxModelError(FsmdeError, ValueError):
    """A model file is missing, corrupt or lacks the fsmde I/O; the message names the file."""


def read_model_info(path: str | Path) -> dict[str, Any]:
    """Validate an exported model and return its I/O shapes and metadata (clear errors naming the file)."""
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"model {path} not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for corrupt files
        raise OnnxModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    inputs = {i.name: i for i in model.graph.input}
    outputs = {o.name: o for o in model.graph.output}
    if not set(INPUT_NAMES) <= set(inputs) or not set(OUTPUT_NAMES) <= set(outputs):
        raise OnnxModelError(f"{path}: expected inputs {list(INPUT_NAMES)} and outputs {list(OUTPUT_NAMES)}, "
                             f"found inputs {list(inputs)} and outputs {list(outputs)}; export it with `fsmde export`")
    dims = [d.dim_value for d in inputs["images"].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[3] != 3 or min(dims) <= 0:
        raise OnnxModelError(f"{path}: input 'images' must be static [V,H,W,3], found {dims}")
    for name, value in {**inputs, **outputs}.items():
        if name not in CONTRACT:
            continue
        dtype, rank = CONTRACT[name]
        tensor = value.type.tensor_type
        got = onnx.TensorProto.DataType.Name(tensor.elem_type)
        if got != dtype:
            raise OnnxModelError(f"{path}: '{name}' must be {dtype.lower()}, found {got.lower()}; "
                                 "export the student with `fsmde export`")
        if tensor.HasField("shape") and len(tensor.shape.dim) != rank:
            raise OnnxModelError(f"{path}: '{name}' must have rank {rank}, found {len(tensor.shape.dim)}")
    meta = {p.key: p.value for p in model.metadata_props}
    return {"path": str(path), "views": dims[0], "height": dims[1], "width": dims[2], "metadata": meta}


def recorded_rig(path: str | Path) -> dict[str, str]:
    """{'rig': name, 'views': count} an exported ONNX student records in its metadata ({} for other files, e.g. a
    .pt checkpoint); the rig name is '' or 'unknown' when the export named none."""
    if Path(path).suffix != ".onnx":
        return {}
    info = read_model_info(path)
    return {"rig": info["metadata"].get("rig", ""), "views": str(info["views"])}


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def is_quantized(path: str | Path) -> bool:
    """True for an ONNX with QDQ nodes: an INT8 student (fsmde quantize)."""
    model = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in QDQ_OPS for n in model.graph.node)
