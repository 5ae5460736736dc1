"""TensorRT backend: engines from the cache, buffers allocated once, one CUDA stream.

The host sends uint8 images only (1 byte per channel) through pinned staging buffers; the engine
normalises on the GPU. Tensors are bound by name, never by index, with the shapes and dtypes the
engine reports. The same runner serves the student's engine and the composed deployment graph's
(runtime/deployment_graph.py): upload once, run, download once, one synchronisation per set.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fsmde_ros.model.contract import INPUT_NAMES, OUTPUT_NAMES, read_model_info
from fsmde_ros.runtime.base import DepthBackend, require_int8_model
from fsmde_ros.runtime.engine_build import (
    TensorRTUnavailable,
    current_gpu,
    ensure_engine,
    import_tensorrt,
)

log = logging.getLogger(__name__)


class EngineRunner:
    """One deserialised engine with a device buffer and a pinned host buffer per I/O tensor, by name."""

    def __init__(self, runtime, onnx_path: str | Path, precision: str, engine_cache_dir: str | Path | None):
        import torch

        trt = import_tensorrt()
        self._torch = torch
        engine_path = ensure_engine(onnx_path, precision, engine_cache_dir)
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:  # corrupt despite a matching sidecar: rebuild once
            log.warning("cached engine %s does not deserialize; rebuilding it", engine_path)
            engine_path = ensure_engine(onnx_path, precision, engine_cache_dir, force=True)
            self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                raise RuntimeError(f"TensorRT cannot load the engine it just built ({engine_path}); "
                                   "check that the TensorRT and driver versions match")
        self.engine_path = engine_path
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.inputs, self.outputs = [], []
        self.device, self.host = {}, {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            if min(shape, default=1) < 0:
                raise RuntimeError(f"engine {engine_path}: tensor {name} has a dynamic shape {shape}; "
                                   "export the model with static shapes")
            dtype = torch.from_numpy(np.empty(0, trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            self.device[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self.host[name] = torch.empty(shape, dtype=dtype).pin_memory()
            self.context.set_tensor_address(name, self.device[name].data_ptr())
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.device[name].shape)

    def _upload_and_run(self, feeds: dict[str, np.ndarray]) -> None:
        """Stage `feeds` (numpy, by name) in pinned memory, upload and enqueue the engine on `self.stream`; the outputs
        land in the device buffers (`__call__` downloads them)."""
        torch = self._torch
        self.stream.synchronize()  # the previous call's uploads have left the pinned buffers before they are rewritten
        missing = set(self.inputs) - set(feeds)
        if missing:
            raise ValueError(f"engine {self.engine_path.name} needs inputs {sorted(missing)}")
        with torch.cuda.stream(self.stream):
            for name in self.inputs:
                self.host[name].numpy()[...] = feeds[name]
                self.device[name].copy_(self.host[name], non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run and download every output once (one synchronisation); the arrays are the caller's (copied out of the
        pinned buffers, which the next call rewrites)."""
        self._upload_and_run(feeds)
        with self._torch.cuda.stream(self.stream):
            for name in self.outputs:
                self.host[name].copy_(self.device[name], non_blocking=True)
        self.stream.synchronize()
        return {name: self.host[name].numpy().copy() for name in self.outputs}


class TensorRTBackend(DepthBackend):
    """Runs the student's TensorRT engine (built from `model_path` on first use, then cached)."""

    def __init__(self, model_path: str | Path, precision: str = "fp16", engine_cache_dir: str | Path | None = None):
        trt = import_tensorrt()
        current_gpu()  # raises TensorRTUnavailable without a GPU
        info = read_model_info(model_path)
        require_int8_model(model_path, precision)
        self.model_path = Path(model_path)
        self.views, self.height, self.width = info["views"], info["height"], info["width"]
        self.precision, self.engine_cache_dir = precision, engine_cache_dir
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.runner = EngineRunner(self._runtime, model_path, precision, engine_cache_dir)
        names = set(self.runner.inputs) | set(self.runner.outputs)
        if not set(INPUT_NAMES) | set(OUTPUT_NAMES) <= names:
            raise RuntimeError(f"engine {self.runner.engine_path} has tensors {sorted(names)}, expected "
                               f"{list(INPUT_NAMES) + list(OUTPUT_NAMES)}")
        expected = {"images": self.input_shape, "focal_px": (self.views,),
                    "depth": (self.views, self.height, self.width), "depth_std": (self.views, self.height, self.width)}
        for name, shape in expected.items():
            if self.runner.shape(name) != shape:
                raise RuntimeError(f"engine tensor {name} has shape {self.runner.shape(name)}, expected {shape}")
        self.engine_path = self.runner.engine_path
        self.name = f"tensorrt:{precision}"

    def _infer(self, images: np.ndarray, focal_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.runner({"images": images, "focal_px": focal_px})
        return out["depth"], out["depth_std"]

    def graph_runner(self, path: str | Path) -> EngineRunner:
        """The composed deployment graph's engine (cached like the student's: its key has the graph's hash)."""
        return EngineRunner(self._runtime, path, self.precision, self.engine_cache_dir)


__all__ = ["EngineRunner", "TensorRTBackend", "TensorRTUnavailable"]
