"""A stand-in "model" with the student's ONNX I/O that reads depth back from the image pixels.

The publisher encodes the synthetic world's true depth into RGB (millimetres in 24 bits:
R*65536 + G*256 + B), so the node, run on this graph through the real ONNX Runtime backend,
must publish exactly the true depth: every geometric step after inference can then be checked
against the world's ground truth.
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

MM_PER_M = 1000.0
STD_RATIO = 0.05  # depth_std = 5 % of depth


def encode_depth(depth_m: np.ndarray) -> np.ndarray:
    """float [..,H,W] metres (inf/NaN -> 0) -> uint8 [..,H,W,3] RGB carrying millimetres."""
    mm = np.where(np.isfinite(depth_m), np.round(depth_m * MM_PER_M), 0).astype(np.int64).clip(0, 2 ** 24 - 1)
    return np.stack([(mm >> 16) & 255, (mm >> 8) & 255, mm & 255], axis=-1).astype(np.uint8)


def decode_depth(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return ((rgb[..., 0] << 16) + (rgb[..., 1] << 8) + rgb[..., 2]) / MM_PER_M


def write_oracle_model(path: Path, views: int, height: int, width: int, images_type: int = TensorProto.UINT8) -> Path:
    """Write the decoding graph with inputs images uint8 [V,H,W,3], focal_px [V]; outputs depth, depth_std."""
    weights = helper.make_tensor("weights", TensorProto.FLOAT, [3], [65536.0 / MM_PER_M, 256.0 / MM_PER_M, 1.0 / MM_PER_M])
    ratio = helper.make_tensor("ratio", TensorProto.FLOAT, [], [STD_RATIO])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    nodes = [
        helper.make_node("Cast", ["images"], ["images_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["images_f", "weights"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "axes"], ["depth_raw"], keepdims=0),
        # focal_px enters the graph (times zero) so that the input is really consumed
        helper.make_node("ReduceSum", ["focal_px"], ["focal_sum"], keepdims=0),
        helper.make_node("Mul", ["focal_sum", "zero"], ["focal_zero"]),
        helper.make_node("Add", ["depth_raw", "focal_zero"], ["depth"]),
        helper.make_node("Mul", ["depth", "ratio"], ["depth_std"]),
    ]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [3])
    graph = helper.make_graph(
        nodes, "oracle_depth",
        [helper.make_tensor_value_info("images", images_type, [views, height, width, 3]),
         helper.make_tensor_value_info("focal_px", TensorProto.FLOAT, [views])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [views, height, width]),
         helper.make_tensor_value_info("depth_std", TensorProto.FLOAT, [views, height, width])],
        initializer=[weights, ratio, zero, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
