"""StudentConfig: every architectural choice of the surround student in one dataclass."""
from __future__ import annotations

import dataclasses
from typing import Any

from fsmde_ros.errors import ConfigError, dataclass_from_dict

# ImageNet RGB statistics, of the timm encoders and of the teachers (DINOv2 / Depth Anything); the student
# normalises inside the network (and so inside the exported graph), so callers always send raw RGB.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass
class StudentConfig:
    """Architecture of `SurroundDepthStudent` (saved inside every checkpoint and ONNX file)."""

    encoder: str = "mobilenetv3_large_100"  # any timm model with features_only support
    num_views: int = 6
    num_bins: int = 64
    # The network predicts depth for a camera of focal length `canonical_focal_px` and the head
    # multiplies by fx / canonical_focal_px (canonical-camera scaling), so one set of weights
    # serves lenses and resolutions it was not trained on. The bin range is canonical depth.
    canonical_focal_px: float = 250.0
    min_depth_m: float = 0.5
    max_depth_m: float = 250.0
    fusion_channels: int = 128  # bottleneck width after the cross-view ring fusion
    ring_pad: int = 2  # feature columns borrowed from each neighbouring view at the bottleneck
    decoder_channels: tuple[int, int, int] = (96, 64, 48)  # at strides 16, 8, 4
    bin_mlp_hidden: int = 128
    # Bin centres in log depth relative to the view's reference (median) depth: bin k is the same relative
    # depth in every view (model/bins.py). P0.1-P99.9 of log(depth / median) on the synthetic streets are
    # -2.05 and 2.47 (sky counted as infinitely far): 64 bins of 7.8 % each.
    relative_log_range: tuple[float, float] = (-2.3, 2.5)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not 0 < self.min_depth_m < self.max_depth_m:
            raise ConfigError(f"need 0 < min_depth_m < max_depth_m, got {self.min_depth_m}, {self.max_depth_m}")
        if self.num_bins < 2 or self.num_views < 1 or self.canonical_focal_px <= 0:
            raise ConfigError(f"bad StudentConfig: num_bins={self.num_bins}, num_views={self.num_views}, "
                             f"canonical_focal_px={self.canonical_focal_px}")
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        self.relative_log_range = tuple(float(r) for r in self.relative_log_range)
        if len(self.relative_log_range) != 2 or not self.relative_log_range[0] < 0 < self.relative_log_range[1]:
            raise ConfigError(f"relative_log_range needs (lo < 0 < hi) in log depth, got {self.relative_log_range}")
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if len(self.decoder_channels) != 3:
            raise ConfigError(f"decoder_channels needs 3 widths (strides 16, 8, 4), got {self.decoder_channels}")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples), so it survives torch.load(weights_only=True) and JSON."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudentConfig":
        return dataclass_from_dict(cls, d, "StudentConfig")
