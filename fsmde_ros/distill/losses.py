"""The distillation objective (docs/method.md): the weighted sum of the GT terms (`supervised.py`), the
cross-interaction KD (`cross_interaction.py`) and the view-relational KD (`relational.py`) under one
`DistillConfig` (`config.py`).

Conventions: B surround sets of V views; depth [B,V,H,W] metres at the input resolution; bins and
decoder features at h x w = H/4 x W/4; GT sparse lidar depth (0 = no return); the teacher relative,
disparity-like [B,V,Ht,Wt] at any resolution, its features [B,V,Ct,ht,wt] at any resolution.
"""
from __future__ import annotations

from typing import Any

import torch

from fsmde_ros.distill.config import DistillConfig
from fsmde_ros.distill.cross_interaction import (
    cross_interaction_kd,
    log_probs,
    teacher_bin_probs,
    teacher_shift,
)
from fsmde_ros.distill.relational import OverlapIndices, view_relational_kd
from fsmde_ros.distill.supervised import (
    bin_chamfer_loss,
    bin_nll_loss,
    silog_loss,
    uncertainty_nll,
    valid_gt,
)


def distillation_loss(out: dict[str, torch.Tensor], batch: dict[str, Any], cfg: DistillConfig,
                      overlap: OverlapIndices | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Total = sum of weight * term over the enabled terms; returns (total, {term: unweighted float}).

    out: the student's forward dict; batch: 'gt' [B,V,H,W] m (all 0 for a teacher-only set: the GT terms are
    then skipped, not computed), 'teacher' [B,V,Ht,Wt] (the CI terms), 'teacher_features' [B,V,Ct,ht,wt]
    (vr_feat), optionally 'generator' (a torch.Generator for the random draws, so that training never depends
    on the global RNG); overlap: `overlap_indices` at the feature resolution (vr_feat). Terms: silog, bins,
    bin_nll, sigma_nll, ci_kl, ci_depth, vr_feat.
    """
    depth, gt = out["depth"], batch["gt"]
    if depth.ndim != 4 or gt.shape != depth.shape:
        raise ValueError(f"gt must match the student's depth [B,V,H,W] = {tuple(depth.shape)}, got {tuple(gt.shape)}")
    valid = valid_gt(gt, cfg.gt_max_depth_m)
    has_gt = bool(valid.any())
    log_p = log_probs(out)  # [B,V,N,h,w], shared by bin_nll and ci_kl
    terms: dict[str, torch.Tensor] = {}
    if has_gt and cfg.w_silog > 0:
        terms["silog"] = silog_loss(depth, gt, valid, cfg.silog_variance_focus, cfg.silog_per_image)
    if has_gt and cfg.w_bins > 0:
        terms["bins"] = bin_chamfer_loss(out["centres"], gt, valid, cfg.chamfer_max_points, cfg.chamfer_space,
                                         generator=batch.get("generator"), directions=cfg.chamfer_directions)
    if has_gt and cfg.w_bin_nll > 0:
        terms["bin_nll"] = bin_nll_loss(log_p, out["centres"], gt, valid)
    if has_gt and cfg.w_sigma_nll > 0:
        terms["sigma_nll"] = uncertainty_nll(depth, out["sigma_rel"], gt, valid)
    if cfg.w_ci_kl > 0 or cfg.w_ci_depth > 0:
        if batch.get("teacher") is None:
            raise ValueError("the cross-interaction KD terms are enabled but the batch has no 'teacher' (use the "
                             "'supervised' preset or provide teacher predictions)")
        shift, source = teacher_shift(batch["teacher"], gt, valid, depth if cfg.ci_student_shift else None)
        bins = teacher_bin_probs(batch["teacher"], shift, source, out["grid"][0, 0], tuple(log_p.shape[-2:]),
                                 cfg.tau_bins)
        terms.update(cross_interaction_kd(out, bins, gt, cfg, log_p))
    if cfg.w_vr_feat > 0:
        if batch.get("teacher_features") is None:
            raise ValueError("view-relational KD (w_vr_feat > 0) needs the teacher's features: cache them with "
                             "`fsmde teach --features` (the synthetic world has them), or set w_vr_feat: 0")
        if overlap is None:
            raise ValueError("the view-relational term needs overlap=overlap_indices(rig, h, w, cfg.vr_samples)")
        terms["vr_feat"] = view_relational_kd(out["features"], batch["teacher_features"], overlap, cfg.vr_temperature)
    total = depth.sum() * 0.0
    for k, t in terms.items():
        total = total + getattr(cfg, "w_" + k) * t
    return total, {k: float(t.detach()) for k, t in terms.items()}
