"""Inference backends behind one interface; `create_backend` picks and explains."""
from __future__ import annotations

import logging
from pathlib import Path

from fsmde_ros.errors import ConfigError
from fsmde_ros.runtime.base import DepthBackend

log = logging.getLogger(__name__)
BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
ONNX_BACKENDS = ("auto", "tensorrt", "onnxruntime")  # the backends that run an exported .onnx


def create_backend(kind: str, model_path: str | Path, **options) -> DepthBackend:
    """Create a backend by kind (auto, tensorrt, onnxruntime, torch) for an ONNX model or checkpoint.

    `auto` tries TensorRT, then ONNX Runtime with TensorRT/CUDA providers, then ONNX Runtime on
    the CPU, logging why each faster one was skipped. Options: precision, engine_cache_dir,
    threads (ONNX Runtime), height/width/device (torch).
    """
    if kind not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {kind!r}")
    precision = options.get("precision", "fp16")
    if kind == "torch":
        from fsmde_ros.runtime.torch_backend import TorchBackend

        return TorchBackend(model_path, options.get("height"), options.get("width"), options.get("device"))
    if kind == "tensorrt":
        from fsmde_ros.runtime.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(model_path, precision, options.get("engine_cache_dir"))
    if kind == "onnxruntime":
        from fsmde_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model_path, options.get("providers"), options.get("threads", 0), precision,
                                  options.get("engine_cache_dir"))
    return _auto(model_path, precision, options)


def _auto(model_path: str | Path, precision: str, options: dict) -> DepthBackend:
    from fsmde_ros.model.contract import read_model_info

    read_model_info(model_path)  # a missing or corrupt model is the user's error, not a reason to fall back
    skipped = []
    try:
        from fsmde_ros.runtime.tensorrt_backend import TensorRTBackend

        backend = TensorRTBackend(model_path, precision, options.get("engine_cache_dir"))
    except Exception as exc:  # noqa: BLE001 - every failure here means "try the next backend"
        skipped.append(f"tensorrt: {exc}")
    else:
        log.info("backend auto -> %s", backend.name)
        return backend
    import onnxruntime as ort

    from fsmde_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

    available = ort.get_available_providers()
    for provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
        if provider not in available:
            skipped.append(f"onnxruntime:{provider}: not in this onnxruntime build (available: {', '.join(available)})")
            continue
        try:
            backend = OnnxRuntimeBackend(model_path, [provider, "CPUExecutionProvider"], options.get("threads", 0), precision,
                                         options.get("engine_cache_dir"))
        except Exception as exc:  # noqa: BLE001
            skipped.append(f"onnxruntime:{provider}: {exc}")
            continue
        if backend.name.endswith(provider):
            _log_choice(backend, skipped)
            return backend
        skipped.append(f"onnxruntime:{provider}: session fell back to {backend.name}")
    backend = OnnxRuntimeBackend(model_path, ["CPUExecutionProvider"], options.get("threads", 0))
    _log_choice(backend, skipped)
    return backend


def _log_choice(backend: DepthBackend, skipped: list[str]) -> None:
    backend.skipped = list(skipped)
    for reason in skipped:
        log.info("backend auto: skipped %s", reason)
    log.info("backend auto -> %s", backend.name)


__all__ = ["BACKENDS", "ONNX_BACKENDS", "DepthBackend", "create_backend"]
