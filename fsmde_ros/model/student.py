"""SurroundDepthStudent: shared encoder, ring fusion of adjacent views, lean U-Net, depth-bin head.

Shapes: B surround sets of V views; images [B,V,3,H,W] float RGB in [0,1] (normalised inside),
focal_px [B,V]. The decoder stops at stride 4 (bins at 1/4 resolution) and only the depth and
its std are upsampled to H x W: a full-resolution decoder or bin softmax costs ~10x on a CPU.
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from fsmde_ros.errors import ConfigError, MissingFileError
from fsmde_ros.model.bins import DepthBinHead
from fsmde_ros.model.config import StudentConfig


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, padding: int | tuple[int, int] | None = None) -> nn.Sequential:
    pad = kernel // 2 if padding is None else padding
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def separable_block(cin: int, cout: int) -> nn.Sequential:
    """1x1 mix then depthwise 3x3: ~8x fewer multiply-adds than a dense 3x3 at stride 4."""
    return nn.Sequential(conv_bn_relu(cin, cout, kernel=1),
                         nn.Conv2d(cout, cout, 3, padding=1, groups=cout, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class RingFusion(nn.Module):
    """Lets each view see its neighbours at the bottleneck: the cameras form a ring.

    Views are in ring order (clockwise), so view i's right edge continues into view i+1's left
    edge. Each view's feature map is padded with `pad` columns of its neighbours and convolved
    across the seam, then a pooled descriptor of both neighbours is added (global context).
    """

    def __init__(self, in_channels: int, channels: int, pad: int):
        super().__init__()
        self.pad = pad
        self.reduce = conv_bn_relu(in_channels, channels, kernel=1)
        self.seam = conv_bn_relu(channels, channels, kernel=3, padding=(1, 0))
        self.context = nn.Linear(2 * channels, channels)

    def forward(self, x: torch.Tensor, views: int) -> torch.Tensor:
        """x [B*V,C,h,w] -> fused [B*V,channels,h,w]."""
        x = self.reduce(x)
        m, c, h, w = x.shape
        v = x.reshape(m // views, views, c, h, w)
        left, right = torch.roll(v, 1, dims=1), torch.roll(v, -1, dims=1)
        k = max(1, min(self.pad, w))
        padded = torch.cat([left[..., w - k:], v, right[..., :k]], dim=-1).reshape(m, c, h, w + 2 * k)
        seam = self.seam(padded)[..., k - 1: k - 1 + w]  # 3x3 conv without width padding: w + 2k - 2 columns
        pooled = torch.cat([left.mean(dim=(-1, -2)), right.mean(dim=(-1, -2))], dim=-1).reshape(m, 2 * c)
        return x + seam + self.context(pooled)[:, :, None, None]


class LeanDecoder(nn.Module):
    """U-Net decoder from stride 32 to stride 4: upsample, concatenate the skip, one separable block each."""

    def __init__(self, bottleneck: int, skips: list[int], channels: tuple[int, int, int]):
        super().__init__()
        ins = [bottleneck, channels[0], channels[1]]
        self.blocks = nn.ModuleList(separable_block(i + s, c) for i, s, c in zip(ins, skips, channels))

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """x [M,C,h/32,w/32], skips at strides 16, 8, 4 -> features [M,channels[-1],h/4,w/4]."""
        for block, skip in zip(self.blocks, skips):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x


class SurroundDepthStudent(nn.Module):
    """The real-time surround student (docs/method.md: the network and its depth-bin head)."""

    def __init__(self, config: StudentConfig | None = None, encoder_weights: str | Path | None = None):
        super().__init__()
        self.config = config = config or StudentConfig()
        kwargs = {}
        if encoder_weights is not None:
            path = Path(encoder_weights)
            if not path.is_file():
                raise MissingFileError(f"encoder weights {path} not found (ImageNet weights load only from a local file)")
            kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}
        # out_indices 1..4: strides 4, 8, 16, 32
        self.encoder = timm.create_model(config.encoder, features_only=True, out_indices=(1, 2, 3, 4), **kwargs)
        chans = self.encoder.feature_info.channels()
        self.fusion = RingFusion(chans[3], config.fusion_channels, config.ring_pad)
        self.decoder = LeanDecoder(config.fusion_channels, [chans[2], chans[1], chans[0]], config.decoder_channels)
        self.head = DepthBinHead(config.decoder_channels[-1], config.fusion_channels, config.num_bins,
                                 config.min_depth_m, config.max_depth_m, config.canonical_focal_px,
                                 tuple(config.relative_log_range), hidden=config.bin_mlp_hidden)
        self.register_buffer("mean", torch.tensor(config.mean).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).reshape(1, 3, 1, 1), persistent=False)

    def _check(self, images: torch.Tensor, focal_px: torch.Tensor) -> None:
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [B,V,3,H,W], got {tuple(images.shape)}")
        if focal_px.shape != images.shape[:2]:
            raise ValueError(f"focal_px must be [B,V] = {tuple(images.shape[:2])}, got {tuple(focal_px.shape)}")

    def forward_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [B,V,3,H,W] in [0,1] -> bottleneck [B*V,Cf,H/32,W/32], features [B*V,Cd,H/4,W/4], pooled [B*V,Cf]."""
        b, v = images.shape[:2]
        x = (images.flatten(0, 1) - self.mean) / self.std
        f4, f8, f16, f32 = self.encoder(x)
        bottleneck = self.fusion(f32, v)
        features = self.decoder(bottleneck, [f16, f8, f4])
        return {"bottleneck": bottleneck, "features": features, "pooled": bottleneck.mean(dim=(-1, -2))}

    def forward_head(self, feats: dict[str, torch.Tensor], focal_px: torch.Tensor,
                     out_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Bin head on decoder features; depth, depth_std and sigma_rel [M,1,H,W] upsampled to out_size (H, W).

        Each pixel of the bin grid is a distribution of mean d and std d * sigma_rel (the uncertainty
        branch); the upsampled pixel's is the bilinear mixture of its neighbours': depth is the mixture's
        mean and depth_std its std, sqrt(up(sigma^2 + d^2) - up(d)^2), so a pixel between a near and a far
        neighbour (a depth edge, where the errors are) is uncertain; interpolating the std itself would
        only average two small stds. sigma_rel (bilinear) is what the GT's likelihood trains.
        Moments in units of max_depth_m (<= 1), so that fp16 engines do not overflow.
        probs/logits stay channels-last [M,h,w,N] here (the fast layout); `forward` permutes them.
        """
        out = self.head(feats["features"], feats["pooled"], focal_px.flatten())
        unit = self.config.max_depth_m

        def up(x):
            return F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)

        mean = out["depth"] / unit
        moment2 = up(mean * mean + (out["depth_std"] / unit) ** 2)
        mean = up(mean)
        out["depth"] = mean * unit
        out["depth_std"] = torch.sqrt((moment2 - mean * mean).clamp_min(0) + 1e-12) * unit
        out["sigma_rel"] = up(out["sigma_rel"])
        return out

    def predict(self, images: torch.Tensor, focal_px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference only: (depth, depth_std) [B,V,H,W] metres, without the training outputs."""
        self._check(images, focal_px)
        b, v, _, h, w = images.shape
        out = self.forward_head(self.forward_features(images), focal_px, (h, w))
        return out["depth"].reshape(b, v, h, w), out["depth_std"].reshape(b, v, h, w)

    def forward(self, images: torch.Tensor, focal_px: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [B,V,3,H,W] float in [0,1], focal_px [B,V] -> dict of [B,V,...] tensors.

        depth, depth_std [B,V,H,W] m; sigma_rel [B,V,H,W] (relative one-sigma); bin_std [B,V,H/4,W/4] m;
        probs, logits [B,V,N,H/4,W/4]; centres [B,V,N] m; grid [B,V,N] (relative log bin centres);
        features [B,V,C,H/4,W/4] (decoder), bottleneck [B,V,Cf,H/32,W/32].
        """
        self._check(images, focal_px)
        b, v, _, h, w = images.shape
        feats = self.forward_features(images)
        out = self.forward_head(feats, focal_px, (h, w))
        for k in ("depth", "depth_std", "sigma_rel", "bin_std"):
            out[k] = out[k][:, 0]
        out["probs"], out["logits"] = out["probs"].permute(0, 3, 1, 2), out["logits"].permute(0, 3, 1, 2)
        out.update(features=feats["features"], bottleneck=feats["bottleneck"])
        return {k: t.reshape(b, v, *t.shape[1:]) for k, t in out.items()}


# Named students: a default config per encoder, so tests and benchmarks cover each for free.
STUDENTS: dict[str, StudentConfig] = {
    "fsmde_mnv3l": StudentConfig(encoder="mobilenetv3_large_100"),
    "fsmde_mnv4s": StudentConfig(encoder="mobilenetv4_conv_small"),
    "fsmde_effb0": StudentConfig(encoder="efficientnet_b0"),
    "fsmde_r18": StudentConfig(encoder="resnet18"),
    "fsmde_lcnet": StudentConfig(encoder="lcnet_100"),
}
DEFAULT_STUDENT = "fsmde_mnv3l"


def create_student(name: str = DEFAULT_STUDENT, encoder_weights: str | Path | None = None, **overrides) -> SurroundDepthStudent:
    """Build a named student (see STUDENTS), optionally overriding config fields."""
    if name not in STUDENTS:
        raise ConfigError(f"unknown student {name!r}; choose one of {', '.join(STUDENTS)}")
    cfg = StudentConfig.from_dict({**STUDENTS[name].to_dict(), **overrides})
    return SurroundDepthStudent(cfg, encoder_weights=encoder_weights)
