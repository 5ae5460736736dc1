"""Cross-interaction KD (docs/method.md §3): the teacher's scale-invariant bin probabilities q teach the
student's bin probabilities p where the GT is silent; the GT teaches the student's metric bin centres c
through sum_k q_k c_k.

q on a bin axis that means one relative depth in every image: the teacher's relative disparity t (an
unknown per-image affine map of inverse depth, t = a / d + b) is freed of its shift b per image
(teacher_alignment.py: a robust fit to the image's lidar returns; on an image without any, to the
student's own current depth, detached), so that 1 / (t - b) has the teacher's shape and the true depth's
proportions; its log, relative to the image's median (sky counted as infinitely far), is placed on the
student's fixed relative grid g_k (model/bins.py), bin 0 nearest:
    z(x) = (log(1 / (t(x) - b)) - median - lo) / step,   q_k(x) = softmax_k(-(z(x) - k - 1/2)^2 / tau).
The scale a cancels in the median, so q is the same for any positive affine map of t; it depends on no
centre of the student (a change of its per-view scale rescales its depth, which moves a, not b). Pixels
with t <= b (sky, beyond what the teacher resolves), off the grid, or in a view that could not be aligned
are not informative: left out of both terms.
Terms: 'ci_kl' = KL(q || p) over the informative cells without GT (where the lidar speaks the GT terms
teach p; `ci_kl_at_gt` weights those cells, 0 by default, so that the two targets never fight);
'ci_depth' = SILog(sum_k q_k c_k, upsampled, GT) over the GT pixels of informative cells (reaches the
centres only: with q fixed it is a regression of each view's scale onto the GT).
Shapes: q [B,V,N,h,w] at the student's bin grid h x w; teacher [B,V,Ht,Wt] at any resolution.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from fsmde_ros.distill.config import DistillConfig
from fsmde_ros.distill.supervised import downsample_sparse_depth, silog_loss, valid_gt
from fsmde_ros.distill.teacher_alignment import fit_teacher_shift

STUDENT_FIT_STRIDE = 2  # the student's depth is sampled every 2nd pixel each way for the shift's fit
# How a view's teacher shift was resolved (`TeacherBins.source`).
ALIGNED_NONE, ALIGNED_LIDAR, ALIGNED_STUDENT = 0, 1, 2


class TeacherBins(NamedTuple):
    """q, log q [B,V,N,h,w]; informative [B,V,h,w] bool; position z [B,V,h,w] in bins; source [B,V] (ALIGNED_*)."""

    q: torch.Tensor
    log_q: torch.Tensor
    informative: torch.Tensor
    position: torch.Tensor
    source: torch.Tensor


def resize_teacher(teacher: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B,V,Ht,Wt] -> [B,V,*size], bilinear (antialiased when shrinking); exact for affine maps of the values."""
    if teacher.ndim != 4:
        raise ValueError(f"teacher must be [B,V,H,W], got {tuple(teacher.shape)}")
    if tuple(teacher.shape[-2:]) == tuple(size):
        return teacher.float()
    b, v = teacher.shape[:2]
    shrink = teacher.shape[-2] > size[0] or teacher.shape[-1] > size[1]
    x = F.interpolate(teacher.float().flatten(0, 1)[:, None], size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return x.reshape(b, v, *size)


@torch.no_grad()
def teacher_shift(teacher: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor,
                  student_depth: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per view, the teacher's shift b [B,V] and how it was found, source [B,V] (ALIGNED_*).

    teacher [B,V,Ht,Wt] (resized to the GT's H x W), gt / valid [B,V,H,W]; student_depth [B,V,H,W] m for the
    views whose lidar fit fails or that have none (None: those views stay unaligned).
    """
    b, v, h, w = gt.shape
    t = resize_teacher(teacher, (h, w)).flatten(0, 1)
    inv = torch.where(valid, 1.0 / gt.float().clamp_min(1e-6), torch.zeros_like(gt, dtype=torch.float)).flatten(0, 1)
    _, shift, ok = fit_teacher_shift(t, inv, valid.flatten(0, 1))
    source = torch.where(ok, ALIGNED_LIDAR, ALIGNED_NONE)
    if student_depth is not None and not bool(ok.all()):
        # every STUDENT_FIT_STRIDE-th pixel each way: thousands of points per view are plenty for two numbers
        d = student_depth.detach().float().flatten(0, 1)[:, ::STUDENT_FIT_STRIDE, ::STUDENT_FIT_STRIDE]
        usable = torch.isfinite(d) & (d > 0)  # no range cut: a rescaled student then moves a, never b
        todo = ~ok
        t_sub = t[todo][:, ::STUDENT_FIT_STRIDE, ::STUDENT_FIT_STRIDE]
        _, s_shift, s_ok = fit_teacher_shift(t_sub, 1.0 / d[todo].clamp_min(1e-6), usable[todo])
        shift[todo] = s_shift
        source[todo] = torch.where(s_ok, ALIGNED_STUDENT, ALIGNED_NONE)
    return shift.reshape(b, v), source.reshape(b, v)


@torch.no_grad()
def teacher_bin_probs(teacher: torch.Tensor, shift: torch.Tensor, source: torch.Tensor, grid: torch.Tensor,
                      size: tuple[int, int], tau: float) -> TeacherBins:
    """The teacher's bin distribution q [B,V,N,*size] on the relative grid g [N] (the student's, log depth
    relative to the view's median), given each view's shift [B,V] and source [B,V] (`teacher_shift`)."""
    n = grid.numel()
    lo = float(grid[0]) - 0.5 * float(grid[1] - grid[0])
    step = float(grid[1] - grid[0])
    t = resize_teacher(teacher, size)
    dt = t - shift[..., None, None].to(t)
    log_depth = torch.where(dt > 0, -torch.log(dt.clamp_min(1e-30)), torch.full_like(dt, float("inf")))
    ref = torch.median(log_depth.flatten(2), dim=2).values  # [B,V]; inf sorts last: the sky counts as far
    z = (log_depth - ref[..., None, None] - lo) / step
    informative = (source > ALIGNED_NONE)[..., None, None] & torch.isfinite(z) & (z >= 0) & (z < n)
    z = torch.where(informative, z, torch.full_like(z, n - 0.5))
    centre = torch.arange(n, device=z.device, dtype=torch.float32)[:, None, None] + 0.5  # [N,1,1]
    log_q = torch.log_softmax(-(z[:, :, None] - centre) ** 2 / tau, dim=2)
    return TeacherBins(log_q.exp(), log_q, informative, z, source)


def log_probs(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """The student's log bin probabilities [B,V,N,h,w] (from its logits where it has them), float32."""
    if "logits" in out:
        return torch.log_softmax(out["logits"].float(), dim=2)
    return torch.log(out["probs"].float().clamp_min(1e-12))


def cross_interaction_kd(out: dict[str, torch.Tensor], bins: TeacherBins, gt: torch.Tensor,
                         cfg: DistillConfig, log_p: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """'ci_kl' and 'ci_depth' (see the module doc), each only when its weight is > 0 ('ci_depth' only when
    the batch has GT). out: 'centres' [B,V,N], 'logits' (or 'probs') [B,V,N,h,w], 'depth' [B,V,H,W];
    bins from `teacher_bin_probs`; gt [B,V,H,W] metres (0 = none)."""
    depth, centres = out["depth"], out["centres"]
    scores = out["logits"] if "logits" in out else out["probs"]
    if gt.shape != depth.shape or depth.ndim != 4:
        raise ValueError(f"gt must be [B,V,H,W] = {tuple(depth.shape)}, got {tuple(gt.shape)}")
    if scores.ndim != 5 or centres.shape != scores.shape[:3] or bins.q.shape != scores.shape:
        raise ValueError(f"need centres [B,V,N], logits/probs [B,V,N,h,w] and q of the same shape, got "
                         f"{tuple(centres.shape)}, {tuple(scores.shape)} and {tuple(bins.q.shape)}")
    valid = valid_gt(gt, cfg.gt_max_depth_m)
    terms: dict[str, torch.Tensor] = {}
    if cfg.w_ci_kl > 0:
        _, has_gt = downsample_sparse_depth(gt, tuple(scores.shape[-2:]), valid)
        kl = (bins.q * (bins.log_q - (log_probs(out) if log_p is None else log_p))).sum(dim=2)  # [B,V,h,w]
        weight = bins.informative.float() * torch.where(has_gt, cfg.ci_kl_at_gt, 1.0)
        terms["ci_kl"] = (kl * weight).sum() / weight.sum().clamp_min(1)
    if cfg.w_ci_depth > 0 and bool(valid.any()):
        with torch.autocast(depth.device.type, enabled=False):  # fp32 even under AMP
            dq = torch.einsum("bvnhw,bvn->bvhw", bins.q, centres.float())
        dq = F.interpolate(dq.flatten(0, 1)[:, None], size=depth.shape[-2:], mode="bilinear", align_corners=False)
        informative = F.interpolate(bins.informative.float().flatten(0, 1)[:, None], size=depth.shape[-2:],
                                    mode="nearest").reshape(depth.shape) > 0.5
        terms["ci_depth"] = silog_loss(dq.reshape(depth.shape), gt, valid & informative,
                                       cfg.silog_variance_focus, cfg.silog_per_image)
    return terms
