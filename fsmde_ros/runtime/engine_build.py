"""Build TensorRT engines from the exported ONNX, into the engine cache, with build progress.

Needs the `tensorrt` Python package and an NVIDIA GPU (extra `gpu`); the import is deferred so
the rest of the package works without them.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from fsmde_ros.errors import FsmdeError
from fsmde_ros.runtime.deployment_graph import FP32_LAYER_PREFIX
from fsmde_ros.runtime.engine_cache import EngineCache, EngineKey, file_sha256

log = logging.getLogger(__name__)
WORKSPACE_BYTES = 2 << 30  # 2 GiB of builder scratch: enough for the student, fits Jetson Orin


class TensorRTUnavailable(FsmdeError, RuntimeError):
    """TensorRT or a CUDA GPU is missing; the message says which."""


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(f"the tensorrt Python package is not installed ({exc}); "
                                  "install the `gpu` extra or use backend:=onnxruntime") from None
    return trt


def current_gpu() -> tuple[str, str]:
    """(GPU name, compute capability) of CUDA device 0."""
    try:
        import torch
    except ImportError:
        raise TensorRTUnavailable("torch is needed to query the GPU") from None
    if not torch.cuda.is_available():
        raise TensorRTUnavailable("no CUDA GPU is visible (torch.cuda.is_available() is False)")
    major, minor = torch.cuda.get_device_capability(0)
    return torch.cuda.get_device_name(0), f"{major}.{minor}"


def engine_key(onnx_path: str | Path, precision: str) -> EngineKey:
    trt = import_tensorrt()
    name, cc = current_gpu()
    return EngineKey(file_sha256(onnx_path), name, cc, trt.__version__, precision)


def _progress_monitor(trt):
    """A tqdm-backed IProgressMonitor (TensorRT calls it from its own threads)."""
    from tqdm import tqdm

    class BuildProgress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._bars: dict[str, tqdm] = {}
            self._lock = threading.Lock()

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                depth = 0 if parent_phase is None else 1
                self._bars[phase_name] = tqdm(total=num_steps, desc=f"TensorRT {phase_name}", position=depth,
                                              leave=depth == 0, unit="step")

        def step_complete(self, phase_name, step):
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.update(step + 1 - bar.n)
            return True  # never cancel

        def phase_finish(self, phase_name):
            with self._lock:
                bar = self._bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()

    return BuildProgress()


def build_engine_bytes(onnx_path: str | Path, precision: str = "fp16", workspace_bytes: int = WORKSPACE_BYTES) -> bytes:
    """Parse the ONNX and build a serialized engine (minutes on embedded GPUs; progress is shown)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "int8":  # explicit quantisation: the QDQ nodes say what runs in int8; the rest may use fp16
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        _keep_fp32(trt, network, config)
    elif precision == "fp16":
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16; building FP16 anyway (it will run, perhaps slowly)")
        config.set_flag(trt.BuilderFlag.FP16)
        _keep_fp32(trt, network, config)
    monitor = _progress_monitor(trt)
    config.progress_monitor = monitor
    start = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    log.info("built %s engine from %s in %.0f s", precision, onnx_path, time.monotonic() - start)
    return bytes(serialized)


def _keep_fp32(trt, network, config) -> None:
    """The deployment graph's own layers (named FP32_LAYER_PREFIX*: resize, masking, cloud geometry) with float outputs
    run in FP32 in an FP16 engine: pixel bounds at 640 px and points at 200 m need more than FP16's 11 bits. (Only the
    student's own layers take FP16.)"""
    floats = (trt.float32, trt.float16)
    kept = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name.startswith(FP32_LAYER_PREFIX) and all(layer.get_output(k).dtype in floats for k in range(layer.num_outputs)):
            layer.precision = trt.float32
            for k in range(layer.num_outputs):
                layer.set_output_type(k, trt.float32)
            kept += 1
    if kept:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)


def ensure_engine(onnx_path: str | Path, precision: str = "fp16", cache_dir: str | Path | None = None,
                  force: bool = False) -> Path:
    """Return a cached engine for this ONNX on this GPU, building it only when missing or stale."""
    onnx_path = Path(onnx_path)
    key = engine_key(onnx_path, precision)
    cache = EngineCache(cache_dir) if cache_dir else EngineCache()
    path, why = (None, "rebuild requested") if force else cache.lookup(onnx_path.stem, key)
    if path is not None:
        log.info("using cached TensorRT engine %s", path)
        return path
    log.warning("building TensorRT %s engine for %s on %s (sm %s, TensorRT %s): %s",
                precision, onnx_path.name, key.gpu_name, key.compute_capability, key.tensorrt_version, why)
    return cache.store(onnx_path.stem, key, build_engine_bytes(onnx_path, precision), extra={"onnx": str(onnx_path)})
