"""DepthBinHead: metric depth as the expectation over depth bins on a relative axis, and its own uncertainty.

Bins (docs/method.md, "the depth-bin head"): bin k has the same meaning in every view and every image, a
fixed relative log depth g_k = lo + (k + 1/2) * (hi - lo) / N around the view's reference depth s (its
median; `relative_log_range` (lo, hi) in StudentConfig). Per view an MLP on pooled bottleneck features
predicts log s; the metric centres are c_k = s * exp(g_k). This is the axis on which the teacher's
scale-invariant bin probabilities are formed (distill/cross_interaction.py), so the same index means the
same relative depth for teacher and student, with or without sky. (Before, the MLP predicted N widths and
a span, and bin k meant a different depth in every view.)
Per pixel, a softmax over N logits gives p_k; depth = sum_k p_k c_k.
Uncertainty: a separate branch reads the pixel features, the bin distribution's relative std and the
pixel's relative depth, all detached, and predicts the relative one-sigma error sigma_rel (of log depth;
trained only by the GT's likelihood, `uncertainty_nll`), so no KD term can spend it; depth_std =
depth * sigma_rel, in metres. Everything is predicted for the canonical focal length f0 and multiplied by fx / f0.
"""
from __future__ import annotations

import math

import torch
from torch import nn

# Initial relative one-sigma of the uncertainty branch (log depth): about a fresh student's error.
SIGMA_INIT = 0.3
SIGMA_LOG_RANGE = (-7.0, 1.5)  # log sigma_rel is clamped here (0.1 % .. 450 %): finite in fp16


def relative_grid(num_bins: int, log_range: tuple[float, float]) -> torch.Tensor:
    """g_k [N]: the bins' centres in log depth relative to a view's reference depth (bin k spans lo + k*step ...)."""
    lo, hi = log_range
    step = (hi - lo) / num_bins
    return lo + step * (torch.arange(num_bins, dtype=torch.float32) + 0.5)


class DepthBinHead(nn.Module):
    """Per-view scale from global features, bin probabilities and the uncertainty from pixel features."""

    def __init__(self, pixel_channels: int, global_channels: int, num_bins: int, min_depth_m: float,
                 max_depth_m: float, canonical_focal_px: float, relative_log_range: tuple[float, float] = (-2.3, 2.5),
                 hidden: int = 128, sigma_hidden: int = 32):
        super().__init__()
        self.num_bins = num_bins
        self.min_depth_m, self.max_depth_m = float(min_depth_m), float(max_depth_m)
        self.canonical_focal_px = float(canonical_focal_px)
        self.relative_log_range = (float(relative_log_range[0]), float(relative_log_range[1]))
        self.register_buffer("grid", relative_grid(num_bins, self.relative_log_range), persistent=False)
        # a per-pixel linear layer on channels-last features: the bin softmax then runs over the
        # last axis and the expectations are matmuls, ~3x faster on CPU than softmax over NCHW dim 1
        self.logits = nn.Linear(pixel_channels, num_bins)
        self.bins_mlp = nn.Sequential(nn.Linear(global_channels, hidden), nn.ReLU(inplace=True))
        self.scale = nn.Linear(hidden, 1)  # where log s sits in [log d_min, log d_max] (sigmoid; 0 = the middle)
        nn.init.zeros_(self.scale.weight)
        nn.init.zeros_(self.scale.bias)
        self.sigma = nn.Sequential(nn.Linear(pixel_channels + 2, sigma_hidden), nn.ReLU(inplace=True),
                                   nn.Linear(sigma_hidden, 1))
        nn.init.zeros_(self.sigma[2].weight)
        nn.init.constant_(self.sigma[2].bias, math.log(SIGMA_INIT))

    def bin_centres(self, global_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(canonical centres [M,N] metres, increasing; log reference depth log s [M,1]) from global_feats [M,G]."""
        log_min, log_max = math.log(self.min_depth_m), math.log(self.max_depth_m)
        log_s = log_min + (log_max - log_min) * torch.sigmoid(self.scale(self.bins_mlp(global_feats)))
        return torch.exp(log_s + self.grid), log_s

    def forward(self, pixel_feats: torch.Tensor, global_feats: torch.Tensor,
                focal_px: torch.Tensor) -> dict[str, torch.Tensor]:
        """pixel_feats [M,C,h,w], global_feats [M,G], focal_px [M] -> metric outputs at h x w.

        Returns logits/probs [M,h,w,N] (channels last), centres [M,N] (metric, scaled by fx/f0),
        centres_canonical [M,N], grid [M,N] (g_k), depth [M,1,h,w] m, bin_std [M,1,h,w] m (the std of
        the bin distribution), sigma_rel [M,1,h,w] (relative one-sigma) and depth_std = depth * sigma_rel [m].
        """
        pix = pixel_feats.permute(0, 2, 3, 1)
        logits = self.logits(pix)
        probs = torch.softmax(logits, dim=-1)
        centres_c, log_s = self.bin_centres(global_feats)
        # work in units of d_max so that fp16 engines neither overflow nor cancel; the variance
        # is the direct sum of p (c - d)^2, not E[c^2] - d^2, which cancels catastrophically in fp16
        c = centres_c / self.max_depth_m
        depth_n = torch.matmul(probs, c[:, None, :, None])  # [M,h,w,1]
        var_n = (probs * (c[:, None, None, :] - depth_n) ** 2).sum(dim=-1, keepdim=True)
        depth_n = depth_n.clamp_min(1e-6)
        rel_bin_std = torch.sqrt(var_n + 1e-12) / depth_n
        rel_depth = torch.log(depth_n) - (log_s - math.log(self.max_depth_m))[:, None, None, :]
        cues = torch.cat([pix, torch.log(rel_bin_std.clamp_min(1e-4)), rel_depth], dim=-1).detach()
        sigma_rel = torch.exp(self.sigma(cues).clamp(*SIGMA_LOG_RANGE))  # [M,h,w,1]
        scale = (focal_px / self.canonical_focal_px).reshape(-1, 1, 1, 1) * self.max_depth_m
        depth = depth_n.permute(0, 3, 1, 2) * scale
        sigma_rel = sigma_rel.permute(0, 3, 1, 2)
        return {
            "logits": logits,
            "probs": probs,
            "centres_canonical": centres_c,
            "centres": centres_c * (focal_px / self.canonical_focal_px)[:, None],
            "grid": self.grid.expand(len(centres_c), -1),
            "depth": depth,
            "bin_std": torch.sqrt(var_n + 1e-12).permute(0, 3, 1, 2) * scale,
            "sigma_rel": sigma_rel,
            "depth_std": depth * sigma_rel,
        }
