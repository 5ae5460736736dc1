"""ONNX Runtime backend: TensorRT, CUDA or CPU execution providers, in that order of preference."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fsmde_ros.model.contract import OUTPUT_NAMES, read_model_info
from fsmde_ros.runtime.base import DepthBackend, GraphRunner, require_int8_model
from fsmde_ros.runtime.engine_cache import ort_trt_cache_dir

log = logging.getLogger(__name__)


def tensorrt_provider_options(model: str | Path, precision: str, cache_dir: str | Path | None = None) -> dict:
    """ONNX Runtime's TensorRT provider options for `model`: fp16 as asked, the engine and timing caches on, in the
    folder keyed like the native engines (engine_cache.ort_trt_cache_dir: ONNX hash, GPU, TensorRT version,
    precision), created here."""
    gpu, trt_version = None, None
    try:
        from fsmde_ros.runtime.engine_build import current_gpu, import_tensorrt

        gpu, trt_version = current_gpu(), import_tensorrt().__version__
    except Exception:  # noqa: BLE001 - no torch/tensorrt package here: ONNX Runtime's own names still carry the sm
        pass
    folder = ort_trt_cache_dir(model, precision, cache_dir, gpu, trt_version)
    folder.mkdir(parents=True, exist_ok=True)
    return {"trt_fp16_enable": precision in ("fp16", "int8"), "trt_int8_enable": precision == "int8",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(folder), "trt_timing_cache_enable": True, "trt_timing_cache_path": str(folder)}
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeBackend(DepthBackend):
    """Runs an exported student with onnxruntime (or onnxruntime-gpu)."""

    def __init__(self, model_path: str | Path, providers: list[str] | None = None, threads: int = 0,
                 precision: str = "fp32", engine_cache_dir: str | Path | None = None):
        import onnxruntime as ort

        info = read_model_info(model_path)
        require_int8_model(model_path, precision)
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
        self._options, self._providers, self.precision_asked = opts, wanted, precision
        self.engine_cache_dir = engine_cache_dir
        self.session = self._session(self.model_path)
        active = self.session.get_providers()[0]
        self.precision = precision if active == "TensorrtExecutionProvider" or precision == "int8" else "fp32"
        self.name = f"onnxruntime:{active}"

    def graph_runner(self, path: str | Path) -> GraphRunner:
        """A session for the composed deployment graph with this backend's providers and threads."""
        session = self._session(Path(path))
        names = [o.name for o in session.get_outputs()]
        return lambda feeds: dict(zip(names, session.run(names, feeds)))

    def _session(self, model: Path):
        """A session for `model` with this backend's providers; the TensorRT provider with its engine and timing caches
        in the model's own folder of the cache (`tensorrt_provider_options`), so no start rebuilds an engine."""
        import onnxruntime as ort

        provider_opts = [tensorrt_provider_options(model, self.precision_asked, self.engine_cache_dir)
                         if p == "TensorrtExecutionProvider" else {} for p in self._providers]
        return ort.InferenceSession(str(model), sess_options=self._options, providers=self._providers,
                                    provider_options=provider_opts)

    def _infer(self, images: np.ndarray, focal_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        depth, std = self.session.run(list(OUTPUT_NAMES), {"images": images, "focal_px": focal_px})
        return depth, std
