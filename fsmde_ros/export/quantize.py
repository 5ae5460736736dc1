"""An INT8 student: any exported student (the ONNX contract) quantised to a QDQ (explicitly quantised) ONNX.

Calibrated on surround sets of a dataset spec at the model's size (the images and focal lengths the node would
feed it). Only the convolutions are quantised (the encoder, the ring fusion, the decoder: nearly all the
multiply-adds); the input's cast and normalisation, the depth-bin head (its logits, the softmax over the bins,
the expectation and the std) stay in float, where 8 bits would cost accuracy for no speed. So do the
convolutions at 1/2, 1/4 and 1/8 of the input resolution (`keep_float_stride`): on the bundled student the
finest ones cost most of the accuracy (abs_rel on 4 held-out worlds +3.0 % with every convolution int8, +0.0 %
keeping 1/4 and finer float, -0.3 % keeping 1/8 and finer, which also runs fastest on a CPU; on all 8 held-out
worlds only 1/8 stays within 3 % on both rigs; docs/benchmarks.md). Weights per channel,
activations per tensor, both symmetric int8: what TensorRT's explicit quantisation takes (precision:=int8 builds
an INT8 engine from it) and what ONNX Runtime runs on a CPU. The I/O contract stays: uint8 images in, float32
depth and depth_std out.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx

from fsmde_ros.errors import ConfigError
from fsmde_ros.model.contract import read_model_info

CALIBRATION_METHODS = ("percentile", "entropy", "minmax")
DEFAULT_KEEP_FLOAT_STRIDE = 8  # convolutions at 1/8 of the input resolution or finer stay float (measured)
def high_resolution_convs(model: onnx.ModelProto, stride: int) -> list[str]:
    """Names of the Conv nodes whose output is at 1/stride of the input image's resolution or finer (symbolic shape
    inference on the model's fixed input size)."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    height = next(i for i in inferred.graph.input if i.name == "images").type.tensor_type.shape.dim[1].dim_value
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    names = []
    for node in inferred.graph.node:
        shape = dims.get(node.output[0]) if node.op_type == "Conv" else None
        if shape and len(shape) == 4 and shape[2] and shape[2] * stride >= height:
            names.append(node.name)
    return names


def quantize_student(model_path: str | Path, sets: Iterable[tuple[np.ndarray, np.ndarray]], out: str | Path,
                     method: str = CALIBRATION_METHODS[0], keep_float_stride: int = DEFAULT_KEEP_FLOAT_STRIDE) -> Path:
    """Write the INT8 (QDQ) twin of the student at model_path to `out`, calibrated on `sets` of (images uint8
    [V,H,W,3], focal_px float32 [V]); the student's metadata carried over, with precision int8 and the method.
    keep_float_stride: convolutions at 1/keep_float_stride of the input resolution or finer stay float (0: none)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    info = read_model_info(model_path)
    feeds = [{"images": np.ascontiguousarray(images, np.uint8), "focal_px": np.asarray(focal, np.float32)}
             for images, focal in sets]
    if not feeds:
        raise ConfigError("no calibration sets: give a dataset spec with at least one surround set")
    shape = (info["views"], info["height"], info["width"], 3)
    if any(f["images"].shape != shape for f in feeds):
        raise ConfigError(f"calibration images must be {shape} (the model's size), got {feeds[0]['images'].shape}")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    calibrate = {"percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy,
                 "minmax": CalibrationMethod.MinMax}[method]
    source = onnx.load(str(model_path))  # read once: the convolutions to keep float and the metadata to carry over
    kept = high_resolution_convs(source, keep_float_stride) if keep_float_stride else []
    with tempfile.TemporaryDirectory(prefix="fsmde_quantize_") as tmp:
        staged = Path(tmp) / "student_int8.onnx"
        quantize_static(str(model_path), str(staged), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                        op_types_to_quantize=["Conv"], calibrate_method=calibrate, nodes_to_exclude=kept,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        model = onnx.load(str(staged))
    meta = {p.key: p.value for p in source.metadata_props}
    meta.update({"precision": "int8", "quantization": f"QDQ int8 symmetric, Conv only ({len(kept)} at 1/"
                                                       f"{keep_float_stride} resolution or finer kept float), {method} "
                                                       f"calibration on {len(feeds)} sets"})
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(out))
    read_model_info(out)  # the contract holds
    return out
