"""ONNX Runtime backend: TensorRT, CUDA or CPU execution providers, in that order of preference."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fsmde_ros.model.contract import OUTPUT_NAMES, read_model_info
from fsmde_ros.runtime.base import DepthBackend, GraphRunner

log = logging.getLogger(__name__)
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeBackend(DepthBackend):
    """Runs an exported student with onnxruntime (or onnxruntime-gpu)."""

    def __init__(self, model_path: str | Path, providers: list[str] | None = None, threads: int = 0,
                 precision: str = "fp32"):
        import onnxruntime as ort

        info = read_model_info(model_path)
        self.model_path = Path(model_path)
        self.views, self.height, self.width = info["views"], info["height"], info["width"]
        self.metadata = info["metadata"]
        available = ort.get_available_providers()
        wanted = list(providers) if providers else [p for p in PREFERRED_PROVIDERS if p in available]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise RuntimeError(f"onnxruntime providers {missing} are not available here (available: {available})")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads > 0:
            opts.intra_op_num_threads = threads
        provider_opts = []
        for p in wanted:
            provider_opts.append({"trt_fp16_enable": precision == "fp16"} if p == "TensorrtExecutionProvider" else {})
        self._session_args = dict(sess_options=opts, providers=wanted, provider_options=provider_opts)
        self.session = ort.InferenceSession(str(self.model_path), **self._session_args)
        active = self.session.get_providers()[0]
        self.precision = precision if active == "TensorrtExecutionProvider" else "fp32"
        self.name = f"onnxruntime:{active}"

    def graph_runner(self, path: str | Path) -> GraphRunner:
        """A session for the composed deployment graph with this backend's providers and threads."""
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), **self._session_args)
        names = [o.name for o in session.get_outputs()]
        return lambda feeds: dict(zip(names, session.run(names, feeds)))

    def _infer(self, images: np.ndarray, focal_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        depth, std = self.session.run(list(OUTPUT_NAMES), {"images": images, "focal_px": focal_px})
        return depth, std
