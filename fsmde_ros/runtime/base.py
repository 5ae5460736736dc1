"""The one interface every inference backend implements (TensorRT, ONNX Runtime, PyTorch)."""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Callable

import numpy as np

GraphRunner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]  # feeds by name -> outputs by name


class DepthBackend(abc.ABC):
    """infer(images uint8 [V,H,W,3] RGB, focal_px [V]) -> (depth, depth_std) float32 [V,H,W] metres."""

    #: what actually runs, e.g. "onnxruntime:CPUExecutionProvider" or "tensorrt:fp16"
    name: str = "unset"
    views: int
    height: int
    width: int
    precision: str = "fp32"
    #: why faster backends were passed over when this one was picked by `auto`
    skipped: list[str] = []
    #: the exported student this backend runs (None for a checkpoint): what a deployment graph is composed from
    model_path: Path | None = None

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(V, H, W, 3): the only image batch shape this backend accepts."""
        return (self.views, self.height, self.width, 3)

    def check_inputs(self, images: np.ndarray, focal_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Validate and normalise inputs; a clear ValueError instead of a crash inside the runtime."""
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            raise ValueError(f"{self.name}: images must be a uint8 numpy array, got "
                             f"{getattr(images, 'dtype', type(images).__name__)}")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{self.name}: images must be [V,H,W,3] RGB, got shape {images.shape} "
                             f"(channel count {images.shape[-1] if images.ndim else 'n/a'})")
        if images.shape != self.input_shape:
            raise ValueError(f"{self.name}: the model takes images {self.input_shape}, got {images.shape}; "
                             "resize to the model resolution first (and scale the intrinsics with it)")
        focal = np.asarray(focal_px, dtype=np.float32).reshape(-1)
        if focal.shape != (self.views,):
            raise ValueError(f"{self.name}: focal_px must have {self.views} values, got shape {np.shape(focal_px)}")
        if not np.all(np.isfinite(focal)) or np.any(focal <= 0):
            raise ValueError(f"{self.name}: focal_px must be finite and positive, got {focal.tolist()}")
        return np.ascontiguousarray(images), focal

    def infer(self, images: np.ndarray, focal_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Depth and its std for one surround set, each float32 [V,H,W] metres."""
        images, focal = self.check_inputs(images, focal_px)
        return self._infer(images, focal)

    def graph_runner(self, path: str | Path) -> GraphRunner | None:
        """A runner for a composed deployment graph (runtime/deployment_graph.py) on this backend's device and
        settings, or None where the backend cannot run one (then the host resizes and fuses the cloud)."""
        return None

    @abc.abstractmethod
    def _infer(self, images: np.ndarray, focal_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Backend-specific inference on validated inputs."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.input_shape}>"


def require_int8_model(model_path: str | Path, precision: str) -> None:
    """precision int8 runs an INT8 (QDQ) student only: ConfigError in one line for any other model."""
    if precision != "int8":
        return
    from fsmde_ros.errors import ConfigError
    from fsmde_ros.model.contract import is_quantized

    if not is_quantized(model_path):
        raise ConfigError(f"precision int8 needs an INT8 (QDQ) student; {Path(model_path).name} has no QDQ nodes: "
                          f"make one with `fsmde quantize {model_path} --calibration SPEC --out student_int8.onnx`")
