"""Resolving the teacher's affine nuisance per image (docs/method.md §3): the two numbers that turn a relative
disparity into a depth whose shape is the teacher's.

A relative teacher predicts t = a / d + b (a > 0, b unknown per image: larger = nearer). The shift b decides
the shape of its depth: 1 / (t - b) is proportional to the true depth only when b is right, and binning
relative to the image's own reference then removes a. So only b has to be found; a and b are fitted,
t ~ a / d_ref + b, on pixels of known depth d_ref: the image's lidar returns (what MiDaS-style evaluation
does) or, on an image without any, the student's own current depth (which of the two, and the ground plane
that was measured against them: docs/method.md). The fit is iteratively reweighted least squares with
Tukey's biweight on residuals scaled by their median absolute deviation: the teacher's errors at edges and
thin structures are outliers, the fit uses the rest. A fit is refused (ok False) when it has too few points or a slope <= 0.
Shapes: teacher [M,P] values, x [M,P] inverse depths [1/m], mask [M,P] bool, per image M; results [M].
"""
from __future__ import annotations

import torch

MIN_FIT_POINTS = 20  # fewer inliers than this and an image's fit is refused
TUKEY_C = 4.685  # Tukey's biweight constant (95 % efficiency for normal residuals), in MAD-sigmas
FIT_ITERATIONS = 10


def robust_affine_fit(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                      iterations: int = FIT_ITERATIONS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit y ~ slope * x + intercept per row of [M,P] over `mask` (IRLS, Tukey biweight on MAD-scaled residuals).

    Returns (slope [M], intercept [M], ok [M] bool: enough points and slope > 0). Rows that cannot be fitted
    get slope 1, intercept 0 and ok False.
    """
    x, y = x.double(), y.double()
    w = mask.double()
    slope = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
    intercept = torch.zeros_like(slope)
    for it in range(iterations + 1):
        sw = w.sum(1).clamp_min(1e-12)
        mx, my = (w * x).sum(1) / sw, (w * y).sum(1) / sw
        dx, dy = x - mx[:, None], y - my[:, None]
        var = (w * dx * dx).sum(1)
        slope = torch.where(var > 0, (w * dx * dy).sum(1) / var.clamp_min(1e-300), torch.ones_like(var))
        intercept = my - slope * mx
        if it == iterations:
            break
        r = y - slope[:, None] * x - intercept[:, None]
        r_masked = torch.where(mask, r, torch.full_like(r, float("nan")))
        med = torch.nanmedian(r_masked, dim=1).values
        mad = torch.nanmedian((r_masked - med[:, None]).abs(), dim=1).values
        scale = (1.4826 * torch.nan_to_num(mad, nan=0.0)).clamp_min(1e-12)
        u = r / (TUKEY_C * scale[:, None])
        w = torch.where(mask & (u.abs() < 1), (1 - u * u) ** 2, torch.zeros_like(u))
    inliers = (w > 0).sum(1)
    ok = (inliers >= MIN_FIT_POINTS) & (slope > 0) & torch.isfinite(slope) & torch.isfinite(intercept)
    return slope.float(), intercept.float(), ok


def fit_teacher_shift(teacher: torch.Tensor, reference_inv: torch.Tensor, reference_mask: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """teacher [M,H,W] relative disparity, reference_inv [M,H,W] known inverse depths [1/m] on reference_mask:
    (scale [M], shift [M], ok [M]) with teacher ~ scale * reference_inv + shift (see `robust_affine_fit`)."""
    m = teacher.shape[0]
    mask = (reference_mask & torch.isfinite(teacher)).reshape(m, -1)
    # only the known points take part: gathered to the front (a lidar is ~2 % of the pixels), padding masked out
    k = max(1, int(mask.sum(1).max()))
    idx = torch.topk(mask.to(torch.uint8), k, dim=1, sorted=False).indices
    x = reference_inv.reshape(m, -1).gather(1, idx)
    y = torch.nan_to_num(teacher).reshape(m, -1).gather(1, idx)
    return robust_affine_fit(x, y, mask.gather(1, idx))
