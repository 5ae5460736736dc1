"""The GT terms (docs/method.md §1, §2, §5): SILog on the student's depth, the bin-centre Chamfer, the GT's
likelihood under the student's bin distribution, and the GT's likelihood under its uncertainty (what makes
depth_std mean something).

Conventions: B surround sets of V views; depth in metres, [B,V,H,W] at the input resolution;
bins at h x w = H/4 x W/4. GT is sparse lidar depth, 0 (or non-finite) = no return. An image
(view) without valid GT contributes 0 to these terms, never NaN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# SILog's sqrt has an infinite slope at 0 (a perfect fit): below this it continues linearly, d / sqrt(eps),
# so the loss is exact above eps, exactly 0 at 0, and its gradient stays bounded.
_EPS_SQRT = 1e-6


def valid_gt(gt: torch.Tensor, max_depth: float | None = None) -> torch.Tensor:
    """Mask of usable GT: finite, > 0 and, when given, <= max_depth [m]."""
    ok = torch.isfinite(gt) & (gt > 0)
    return ok & (gt <= max_depth) if max_depth is not None else ok


def silog_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None,
               variance_focus: float = 0.85, per_image: bool = True) -> torch.Tensor:
    """Scale-invariant log loss, BTS/AdaBins form 10 * sqrt(mean(g^2) - lambda * mean(g)^2), g = log pred - log gt.

    pred, gt [...,H,W] metres (same shape), valid [...,H,W] bool (default: gt finite and > 0).
    per_image=True (default): computed per image (the last two axes) and averaged over the
    images that have valid GT (every view counts alike, and each view's own scale is judged);
    False: pooled over all valid pixels of the batch (BTS). No valid GT -> 0 with grad.
    """
    if pred.shape != gt.shape or pred.ndim < 2:
        raise ValueError(f"silog_loss needs pred and gt of the same shape [...,H,W], got {tuple(pred.shape)} and {tuple(gt.shape)}")
    valid = valid_gt(gt) if valid is None else valid.bool() & valid_gt(gt)
    if valid.shape != gt.shape:
        raise ValueError(f"valid must be {tuple(gt.shape)}, got {tuple(valid.shape)}")
    dims = (-2, -1) if per_image else tuple(range(pred.ndim))
    safe_gt = torch.where(valid, gt.float(), torch.ones_like(gt, dtype=torch.float))
    g = torch.where(valid, torch.log(pred.float().clamp_min(1e-3)) - torch.log(safe_gt), torch.zeros_like(safe_gt))
    n = valid.sum(dim=dims).float()
    mean_g = g.sum(dim=dims) / n.clamp_min(1)
    mean_g2 = (g * g).sum(dim=dims) / n.clamp_min(1)
    d = (mean_g2 - variance_focus * mean_g ** 2).clamp_min(0)
    per = 10.0 * torch.where(d > _EPS_SQRT, torch.sqrt(d.clamp_min(_EPS_SQRT)), d / _EPS_SQRT ** 0.5)
    has = (n > 0).float()
    return (per * has).sum() / has.sum().clamp_min(1)


def bin_chamfer_loss(centres: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None, max_points: int = 4096,
                     space: str = "log", generator: torch.Generator | None = None,
                     directions: str = "both") -> torch.Tensor:
    """Chamfer (AdaBins) between each view's bin centres and its valid GT depths.

    centres [B,V,N] metres, gt [B,V,H,W] metres. Per view: mean over GT depths of the squared
    distance to the nearest centre (every return near a bin) and, with directions='both', plus the
    mean over centres of the squared distance to the nearest GT depth (every bin near a return);
    in log depth (space='log') or metres (space='metric', AdaBins' literal form); averaged over
    views with valid GT. Views with more than max_points valid pixels use a random subset.
    """
    if centres.ndim != 3 or gt.ndim != 4 or centres.shape[:2] != gt.shape[:2]:
        raise ValueError(f"bin_chamfer_loss needs centres [B,V,N] and gt [B,V,H,W], got {tuple(centres.shape)} and {tuple(gt.shape)}")
    if space not in ("log", "metric"):
        raise ValueError(f"space must be 'log' or 'metric', got {space!r}")
    if directions not in ("both", "gt_to_centres"):
        raise ValueError(f"directions must be 'both' or 'gt_to_centres', got {directions!r}")
    valid = valid_gt(gt) if valid is None else valid.bool() & valid_gt(gt)
    c = centres.float().flatten(0, 1)  # [BV,N]
    g, mask = gt.float().flatten(0, 1).flatten(1), valid.flatten(0, 1).flatten(1)  # [BV,HW]
    if g.shape[1] > max_points:  # valid pixels score in [1,2), invalid in [0,1): topk keeps valid ones first
        score = torch.rand(g.shape, generator=generator, device=generator.device if generator else g.device).to(g.device)
        keep = torch.topk(score + mask.float(), max_points, dim=1).indices
        g, mask = g.gather(1, keep), mask.gather(1, keep)
    g = torch.where(mask, g, torch.ones_like(g))
    if space == "log":
        c, g = torch.log(c.clamp_min(1e-6)), torch.log(g)
    d2 = (c[:, :, None] - g[:, None, :]) ** 2  # [BV,N,M]
    n = mask.sum(1).float()
    c_to_g = torch.where(mask[:, None, :], d2, torch.full_like(d2, 1e12)).min(dim=2).values.mean(dim=1)
    g_to_c = (d2.min(dim=1).values * mask).sum(1) / n.clamp_min(1)
    has = n > 0
    per = torch.where(has, g_to_c + (c_to_g if directions == "both" else 0.0), torch.zeros_like(g_to_c))
    return per.sum() / has.float().sum().clamp_min(1)


def downsample_sparse_depth(gt: torch.Tensor, size: tuple[int, int], valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse GT [B,V,H,W] m -> (depth [B,V,*size], has [B,V,*size] bool): per cell of the bin grid the
    geometric mean of its valid returns (cells without a return: has = False)."""
    b, v = gt.shape[:2]
    m = valid.float().flatten(0, 1)[:, None]
    logd = torch.log(torch.where(valid, gt.float(), torch.ones_like(gt, dtype=torch.float))).flatten(0, 1)[:, None]
    count = F.adaptive_avg_pool2d(m, size)
    mean = F.adaptive_avg_pool2d(logd * m, size) / count.clamp_min(1e-12)
    return torch.exp(mean).reshape(b, v, *size), (count > 0).reshape(b, v, *size)


def bin_nll_loss(log_p: torch.Tensor, centres: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood of the GT under the student's bin distribution, in nats per GT cell.

    log_p [B,V,N,h,w] log bin probabilities, centres [B,V,N] m increasing, gt [B,V,H,W] m sparse.
    Each cell's GT depth d* is split between the two centres around it, linearly in depth (the
    target's mean is d* exactly; beyond the first or last centre all of it goes there), and the
    loss is the cross-entropy -sum_k target_k log p_k: a proper scoring rule, so p learns to be as
    broad as the student's real doubt and its std (depth_std) ranks its errors. The centres are a
    stop-gradient here (they are taught by SILog and the Chamfer). No GT -> 0 with grad.
    """
    if log_p.ndim != 5 or centres.shape != log_p.shape[:3] or gt.ndim != 4 or gt.shape[:2] != centres.shape[:2]:
        raise ValueError(f"bin_nll_loss needs log_p [B,V,N,h,w], centres [B,V,N], gt [B,V,H,W], got "
                         f"{tuple(log_p.shape)}, {tuple(centres.shape)}, {tuple(gt.shape)}")
    valid = valid_gt(gt) if valid is None else valid.bool() & valid_gt(gt)
    b, v, n, h, w = log_p.shape
    d, has = downsample_sparse_depth(gt, (h, w), valid)
    c = centres.detach().float().reshape(b * v, n).contiguous()
    d = d.reshape(b * v, h * w).contiguous()
    hi = torch.searchsorted(c, d).clamp(0, n - 1)  # first centre >= d
    lo = (hi - 1).clamp_min(0)
    c_lo, c_hi = c.gather(1, lo), c.gather(1, hi)
    w_hi = torch.where(hi > lo, ((d - c_lo) / (c_hi - c_lo).clamp_min(1e-9)).clamp(0, 1), torch.ones_like(d))
    lp = log_p.float().reshape(b * v, n, h * w)
    nll = -((1 - w_hi) * lp.gather(1, lo[:, None]).squeeze(1) + w_hi * lp.gather(1, hi[:, None]).squeeze(1))
    m = has.reshape(b * v, h * w).float()
    return (nll * m).sum() / m.sum().clamp_min(1)


def uncertainty_nll(depth: torch.Tensor, sigma_rel: torch.Tensor, gt: torch.Tensor,
                    valid: torch.Tensor | None = None) -> torch.Tensor:
    """Laplace negative log-likelihood of the GT in log depth, the student's depth held fixed (detached).

    depth, sigma_rel, gt [B,V,H,W] (metres, relative one-sigma, metres): with the Laplace scale
    s = sigma_rel / sqrt(2) (a Laplace of scale s has std sqrt(2) s) and e = |log depth - log gt|, the mean
    over valid GT of e / s + log s. Minimised per pixel by s = e, so sigma_rel learns the size of the
    depth's own error; the depth is detached, so this term teaches nothing but the uncertainty, and the
    uncertainty branch (model/bins.py) is in no other term: no KD can spend it. No GT -> 0 with grad.
    """
    if not depth.shape == sigma_rel.shape == gt.shape:
        raise ValueError(f"uncertainty_nll needs depth, sigma_rel and gt of one shape, got {tuple(depth.shape)}, "
                         f"{tuple(sigma_rel.shape)}, {tuple(gt.shape)}")
    valid = valid_gt(gt) if valid is None else valid.bool() & valid_gt(gt)
    d = depth.detach().float().clamp_min(1e-3)
    s = sigma_rel.float().clamp_min(1e-4) / 2 ** 0.5
    safe = torch.where(valid, gt.float(), torch.ones_like(d))
    e = (torch.log(d) - torch.log(safe)).abs()
    nll = torch.where(valid, e / s + torch.log(s), torch.zeros_like(d))
    return nll.sum() / valid.float().sum().clamp_min(1)
