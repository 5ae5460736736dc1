"""TensorRT backend: an engine from the cache, buffers allocated once, one CUDA stream.

The host sends uint8 images only (1 byte per channel) through a pinned staging buffer; the
engine normalises on the GPU. Tensors are bound by name, never by index. `infer_device` keeps
the results on the GPU for consumers that fuse the cloud there; `infer` downloads once.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fsmde_ros.model.contract import INPUT_NAMES, OUTPUT_NAMES, read_model_info
from fsmde_ros.runtime.base import DepthBackend
from fsmde_ros.runtime.engine_build import (
    TensorRTUnavailable,
    current_gpu,
    ensure_engine,
    import_tensorrt,
)

log = logging.getLogger(__name__)


class TensorRTBackend(DepthBackend):
    """Runs the student's TensorRT engine (built from `model_path` on first use, then cached)."""

    def __init__(self, model_path: str | Path, precision: str = "fp16", engine_cache_dir: str | Path | None = None):
        trt = import_tensorrt()
        import torch

        current_gpu()  # raises TensorRTUnavailable without a GPU
        info = read_model_info(model_path)
        self.views, self.height, self.width = info["views"], info["height"], info["width"]
        self.precision = precision
        self._torch = torch
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine_path = ensure_engine(model_path, precision, engine_cache_dir)
        self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:  # corrupt despite a matching sidecar: rebuild once
            log.warning("cached engine %s does not deserialize; rebuilding it", engine_path)
            engine_path = ensure_engine(model_path, precision, engine_cache_dir, force=True)
            self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                raise RuntimeError(f"TensorRT cannot load the engine it just built ({engine_path}); "
                                   "check that the TensorRT and driver versions match")
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        if not set(INPUT_NAMES) | set(OUTPUT_NAMES) <= names:
            raise RuntimeError(f"engine {engine_path} has tensors {sorted(names)}, expected "
                               f"{list(INPUT_NAMES) + list(OUTPUT_NAMES)}")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        dev = torch.device("cuda")
        self.images_host = torch.empty(self.input_shape, dtype=torch.uint8).pin_memory()
        self.focal_host = torch.empty(self.views, dtype=torch.float32).pin_memory()
        self.buffers = {
            "images": torch.empty(self.input_shape, dtype=torch.uint8, device=dev),
            "focal_px": torch.empty(self.views, dtype=torch.float32, device=dev),
            "depth": torch.empty((self.views, self.height, self.width), dtype=torch.float32, device=dev),
            "depth_std": torch.empty((self.views, self.height, self.width), dtype=torch.float32, device=dev),
        }
        for name, tensor in self.buffers.items():
            shape = tuple(self.engine.get_tensor_shape(name))
            if shape != tuple(tensor.shape):
                raise RuntimeError(f"engine tensor {name} has shape {shape}, expected {tuple(tensor.shape)}")
            self.context.set_tensor_address(name, tensor.data_ptr())
        self.engine_path = engine_path
        self.name = f"tensorrt:{precision}"

    def infer_device(self, images: np.ndarray, focal_px: np.ndarray):
        """Run and leave (depth, depth_std) on the GPU as torch tensors [V,H,W] (valid until the next call)."""
        images, focal = self.check_inputs(images, focal_px)
        torch = self._torch
        self.images_host.numpy()[...] = images
        self.focal_host.numpy()[...] = focal
        with torch.cuda.stream(self.stream):
            self.buffers["images"].copy_(self.images_host, non_blocking=True)
            self.buffers["focal_px"].copy_(self.focal_host, non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
        return self.buffers["depth"], self.buffers["depth_std"]

    def _infer(self, images: np.ndarray, focal_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        depth, std = self.infer_device(images, focal_px)
        with self._torch.cuda.stream(self.stream):
            out = self._torch.stack([depth, std]).to("cpu", non_blocking=True)
        self.stream.synchronize()
        return out[0].numpy(), out[1].numpy()


__all__ = ["TensorRTBackend", "TensorRTUnavailable"]
