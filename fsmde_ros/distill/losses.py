"""Distillation losses (DESIGN.md §5): supervised SILog, bin Chamfer, cross-interaction KD, and the
combination with view-relational KD (`relational.py`) under one `DistillConfig`.

Conventions: B surround sets of V views; depth in metres, [B,V,H,W] at the input resolution;
bins at h x w = H/4 x W/4. GT is sparse lidar depth, 0 (or non-finite) = no return. The teacher
is relative, disparity-like (an unknown per-image affine map of inverse depth, larger = nearer),
[B,V,Ht,Wt] at any resolution: it is resized bilinearly to H x W *before* the alignment, which is
exact for an affine map (interpolation commutes with it), with antialiasing when shrinking.
An image (view) without valid GT contributes 0 to the GT terms, never NaN.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F

from .relational import OverlapIndices, overlap_indices, view_relational_kd  # noqa: F401  (re-exported)

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
                     space: str = "log", generator: torch.Generator | None = None) -> torch.Tensor:
    """Bidirectional Chamfer (AdaBins) between each view's bin centres and its valid GT depths.

    centres [B,V,N] metres, gt [B,V,H,W] metres. Per view: mean over centres of the squared distance
    to the nearest GT depth + mean over GT depths of the squared distance to the nearest centre,
    in log depth (space='log') or metres (space='metric', AdaBins' literal form); averaged over
    views with valid GT. Views with more than max_points valid pixels use a random subset.
    """
    if centres.ndim != 3 or gt.ndim != 4 or centres.shape[:2] != gt.shape[:2]:
        raise ValueError(f"bin_chamfer_loss needs centres [B,V,N] and gt [B,V,H,W], got {tuple(centres.shape)} and {tuple(gt.shape)}")
    if space not in ("log", "metric"):
        raise ValueError(f"space must be 'log' or 'metric', got {space!r}")
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
    per = torch.where(has, c_to_g + g_to_c, torch.zeros_like(g_to_c))
    return per.sum() / has.float().sum().clamp_min(1)


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


def _nanmedian(x: torch.Tensor) -> torch.Tensor:
    return torch.nanmedian(x, dim=-1).values


def _match_median_mad(tn: torch.Tensor, sn: torch.Tensor):
    """NaN-masked teacher/target disparities [M,P] -> (scale, med t, med s, MAD s), each [M]."""
    mt, ms = _nanmedian(tn), _nanmedian(sn)
    dt, ds = _nanmedian((tn - mt[:, None]).abs()), _nanmedian((sn - ms[:, None]).abs())
    return ds / dt.clamp_min(1e-12), mt, ms, ds


def _robust_affine(tn: torch.Tensor, sn: torch.Tensor, trim_iters: int):
    """Affine map t -> s per row, NaN-masked [M,P]: median/MAD matching, then `trim_iters` rounds that drop
    residuals above max(3 sigma_MAD, 5 % of MAD(s)) and match again. -> (scale, med t, med s), each [M]."""
    nan = torch.tensor(float("nan"), device=tn.device)
    scale, mt, ms, ds = _match_median_mad(tn, sn)
    for _ in range(trim_iters):
        r = (sn - (ms[:, None] + scale[:, None] * (tn - mt[:, None]))).abs()
        thr = torch.maximum(3 * 1.4826 * _nanmedian(r), 0.05 * ds)
        keep = r <= thr[:, None]  # NaN -> False; never empty where fitted (half the residuals are <= their median)
        scale, mt, ms, ds = _match_median_mad(torch.where(keep, tn, nan), torch.where(keep, sn, nan))
    return scale, mt, ms


@torch.no_grad()
def align_teacher(teacher_rel: torch.Tensor, student_depth: torch.Tensor, valid: torch.Tensor | None = None,
                  min_depth: float | torch.Tensor = 0.5, max_depth: float | torch.Tensor = 250.0,
                  max_points: int = 65536, trim_iters: int = 3, gt: torch.Tensor | None = None,
                  min_gt_points: int = 64, scale_from_student: bool = True) -> torch.Tensor:
    """Teacher relative disparity [B,V,Ht,Wt] -> depth [B,V,H,W] on the student's scale (no grad).

    A relative teacher is an unknown affine map of inverse depth, t = a/depth + b. Its *shape*
    (the ratio b/a, which sets how near and far relate) and its *scale* are found separately:
    - shape: a robust affine fit in inverse depth, per image: the teacher's median and median
      absolute deviation (MAD) are matched to the target's, s' = med(s) + MAD(s)/MAD(t) (t - med(t)),
      then `trim_iters` times the pixels whose residual exceeds max(3 sigma_MAD, 5 % of MAD(s)) are
      dropped and the match redone (50 % breakdown, exact for the affine model). The target is the
      sparse GT `gt` [B,V,H,W] m where the image has >= min_gt_points valid returns, else the
      student's detached disparity on `valid` pixels (default all), at most max_points per image.
    - scale: images fitted to GT are then multiplied by the stop-gradient median ratio
      med(student depth) / med(teacher depth), so the result is scale-invariant knowledge on the
      student's current scale (the GT teaches the scale through the other terms). Fitting the shape
      to the student instead lets an untrained student's narrow depth spread pass into its own target.
    Depth is clamped to [min_depth, max_depth] (floats or [B,V] tensors, e.g. the student's first
    and last bin centres). Images with no pixel to fit get the student's depth.
    """
    if student_depth.ndim != 4 or teacher_rel.ndim != 4 or teacher_rel.shape[:2] != student_depth.shape[:2]:
        raise ValueError(f"align_teacher needs teacher [B,V,Ht,Wt] and student depth [B,V,H,W], "
                         f"got {tuple(teacher_rel.shape)} and {tuple(student_depth.shape)}")
    if gt is not None and gt.shape != student_depth.shape:
        raise ValueError(f"gt must be {tuple(student_depth.shape)}, got {tuple(gt.shape)}")
    b, v, h, w = student_depth.shape
    t = resize_teacher(teacher_rel.detach(), (h, w))
    sd = student_depth.detach().float()
    s = 1.0 / sd.clamp_min(1e-6)
    ok = torch.isfinite(t) & torch.isfinite(s) & (sd > 0)
    if valid is not None:
        if valid.shape != student_depth.shape:
            raise ValueError(f"valid must be {tuple(student_depth.shape)}, got {tuple(valid.shape)}")
        ok &= valid.bool()
    nan = torch.tensor(float("nan"), device=t.device)
    stride = max(1, -(-h * w // max_points))
    tf, sf, of = (x.reshape(b * v, h * w)[:, ::stride] for x in (t, s, ok))
    scale, mt, ms = _robust_affine(torch.where(of, tf, nan), torch.where(of, sf, nan), trim_iters)
    fitted = of.any(dim=1) & torch.isfinite(scale)
    t_all = t.reshape(b * v, h * w)
    on_gt = torch.zeros_like(fitted)
    if gt is not None:
        gv = (valid_gt(gt) & torch.isfinite(t)).reshape(b * v, h * w)  # all pixels: sparse lidar rows must not be strided away
        g = 1.0 / torch.where(gv, gt.float().reshape(b * v, h * w), torch.ones_like(t_all))
        g_scale, g_mt, g_ms = _robust_affine(torch.where(gv, t_all, nan), torch.where(gv, g, nan), trim_iters)
        on_gt = (gv.sum(dim=1) >= min_gt_points) & torch.isfinite(g_scale) & (g_scale > 0)
        scale, mt, ms = (torch.where(on_gt, a, c) for a, c in ((g_scale, scale), (g_mt, mt), (g_ms, ms)))
        fitted = fitted | on_gt
    disp = ms[:, None] + scale[:, None] * (t_all - mt[:, None])
    depth = 1.0 / torch.nan_to_num(disp, nan=0.0).clamp_min(1e-6)
    if on_gt.any() and scale_from_student:  # GT-shaped: carry over to the student's scale by the median ratio (in log depth: the median shift)
        ratio = torch.exp(_nanmedian(torch.log(sd.reshape(b * v, -1).clamp_min(1e-6))) - _nanmedian(torch.log(depth)))
        depth = torch.where(on_gt[:, None], depth * ratio[:, None], depth)
    lo = torch.as_tensor(min_depth, dtype=torch.float, device=t.device).expand(b, v).reshape(-1, 1)
    hi = torch.as_tensor(max_depth, dtype=torch.float, device=t.device).expand(b, v).reshape(-1, 1)
    depth = torch.minimum(torch.maximum(depth, lo), hi)
    depth = torch.where(fitted[:, None], depth, torch.minimum(torch.maximum(sd.reshape(b * v, -1), lo), hi))
    return depth.reshape(b, v, h, w)


def downsample_depth(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B,V,H,W] metres -> [B,V,*size], area-averaged in log depth (geometric mean)."""
    b, v = depth.shape[:2]
    x = torch.log(depth.float().clamp_min(1e-6)).flatten(0, 1)[:, None]
    return torch.exp(F.adaptive_avg_pool2d(x, size)).reshape(b, v, *size)


def teacher_bin_probs(teacher_depth: torch.Tensor, centres: torch.Tensor, tau: float,
                      assignment: str = "interp") -> tuple[torch.Tensor, torch.Tensor]:
    """Soft assignment of teacher depth to the student's bins -> (q, log q) [B,V,N,h,w] (no grad).

    teacher_depth [B,V,h,w] m, centres [B,V,N] m, increasing. The teacher's depth is taken as
    log-normal with std sqrt(tau/2) in log depth (its assumed relative error) and mean d_t, and
    - 'interp' (default): its mass is split between neighbouring centres by linear interpolation
      in depth (each bin's share is the integral of the density against the bin's hat function,
      closed form). The shares sum to 1 and sum_k q_k c_k = d_t exactly (clamped to [c_1, c_N])
      whatever the bin spacing: adaptive bins crowd where the GT is (4-8 m on a roof lidar) and
      leave gaps of x2-x4 further out, where a kernel would snap the teacher to a centre.
      Over dense bins q is the smooth bump of the kernel, over a wide gap it is two-hot.
    - 'kernel': q_k ∝ exp(-(log d - log c_k)^2 / tau), the plain Gaussian kernel at the centres
      (quantises the teacher to the nearest centre where bins are sparse; kept for the ablation).
    """
    if teacher_depth.ndim != 4 or centres.ndim != 3 or teacher_depth.shape[:2] != centres.shape[:2]:
        raise ValueError(f"teacher_bin_probs needs depth [B,V,h,w] and centres [B,V,N], "
                         f"got {tuple(teacher_depth.shape)} and {tuple(centres.shape)}")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if assignment not in ("interp", "kernel"):
        raise ValueError(f"assignment must be 'interp' or 'kernel', got {assignment!r}")
    if assignment == "kernel":
        ld = torch.log(teacher_depth.detach().float().clamp_min(1e-6))[:, :, None]
        lc = torch.log(centres.detach().float().clamp_min(1e-6))[..., None, None]
        log_q = torch.log_softmax(-(ld - lc) ** 2 / tau, dim=2)
        return log_q.exp(), log_q
    # float64: the hat shares are differences of nearly equal integrals where bins are dense
    d = teacher_depth.detach().double().clamp_min(1e-6)[:, :, None]  # [B,V,1,h,w]
    c = centres.detach().double().clamp_min(1e-6)[..., None, None]  # [B,V,N,1,1]
    sigma = math.sqrt(tau / 2)
    mu = torch.log(d) - sigma ** 2 / 2  # log-normal with mean d
    lo, hi = torch.log(c[:, :, :-1]), torch.log(c[:, :, 1:])  # each gap [c_k, c_k+1] in log depth
    phi = torch.special.ndtr
    mass = phi((hi - mu) / sigma) - phi((lo - mu) / sigma)  # P(c_k < D < c_k+1)
    # E[(D - c_k)/(c_k+1 - c_k); gap] = (d/c_k * P'(gap) - P(gap)) / (c_k+1/c_k - 1), P' under the shifted density
    shifted = phi((hi - mu) / sigma - sigma) - phi((lo - mu) / sigma - sigma)
    upper = (d / c[:, :, :-1] * shifted - mass) / (c[:, :, 1:] / c[:, :, :-1] - 1).clamp_min(1e-12)
    upper = torch.minimum(upper.clamp_min(0), mass)
    q = torch.zeros(d.shape[0], d.shape[1], c.shape[2], d.shape[3], d.shape[4], dtype=torch.float64, device=d.device)
    q[:, :, :-1] += mass - upper
    q[:, :, 1:] += upper
    q[:, :, :1] += phi((torch.log(c[:, :, :1]) - mu) / sigma)  # below the first centre: clamped to it
    q[:, :, -1:] += phi((mu - torch.log(c[:, :, -1:])) / sigma)  # above the last
    q = q / q.sum(dim=2, keepdim=True)
    q = q.float()
    return q, torch.log(q.clamp_min(1e-30))


def _log_probs(out: dict[str, torch.Tensor]) -> torch.Tensor:
    if "logits" in out:
        return torch.log_softmax(out["logits"].float(), dim=2)
    return torch.log(out["probs"].float().clamp_min(1e-12))


def aligned_teacher(teacher_rel: torch.Tensor, depth: torch.Tensor, centres: torch.Tensor, gt: torch.Tensor,
                    cfg: "DistillConfig") -> torch.Tensor:
    """`align_teacher` as the config says: shape from the GT (or the student), clamped to the centres' range."""
    use_gt = cfg.align_shape_from == "gt"
    return align_teacher(teacher_rel, depth, min_depth=centres[..., 0], max_depth=centres[..., -1],
                         max_points=cfg.align_max_points, gt=valid_gt(gt, cfg.gt_max_depth_m).float() * gt if use_gt else None,
                         min_gt_points=cfg.align_min_gt_points, scale_from_student=cfg.align_scale_from == "student")


def cross_interaction_kd(out: dict[str, torch.Tensor], teacher_rel: torch.Tensor, gt: torch.Tensor, cfg: "DistillConfig",
                         aligned: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Cross-interaction KD terms: 'ci_kl' = KL(q || p) per pixel averaged densely (q a stop-gradient
    target from the aligned teacher), 'ci_depth' = SILog(sum_k q_k c_k upsampled to H x W, gt), which
    trains the centres only. Each only when its weight is > 0.

    out: 'depth' [B,V,H,W], 'centres' [B,V,N], 'logits' (or 'probs') [B,V,N,h,w]; teacher_rel
    [B,V,Ht,Wt] (unused when `aligned`, a precomputed `align_teacher` result [B,V,H,W], is given;
    else aligned here and clamped to the student's centre range); gt [B,V,H,W] m.
    """
    depth, centres = out["depth"], out["centres"]
    scores = out["logits"] if "logits" in out else out["probs"]
    if gt.shape != depth.shape or depth.ndim != 4:
        raise ValueError(f"gt must be [B,V,H,W] = {tuple(depth.shape)}, got {tuple(gt.shape)}")
    if scores.ndim != 5 or centres.shape != scores.shape[:3] or centres.shape[:2] != depth.shape[:2]:
        raise ValueError(f"need centres [B,V,N] and logits/probs [B,V,N,h,w] of the batch, "
                         f"got {tuple(centres.shape)} and {tuple(scores.shape)}")
    h4, w4 = scores.shape[-2:]
    if aligned is None:
        c = centres.detach()
        aligned = aligned_teacher(teacher_rel, depth, c, gt, cfg)
    q, log_q = teacher_bin_probs(downsample_depth(aligned, (h4, w4)), centres, cfg.tau_bins, cfg.bin_assignment)
    terms: dict[str, torch.Tensor] = {}
    if cfg.w_ci_kl > 0:
        terms["ci_kl"] = (q * (log_q - _log_probs(out))).sum(dim=2).mean()
    if cfg.w_ci_depth > 0:
        with torch.autocast(depth.device.type, enabled=False):  # fp32 even under AMP
            dq = torch.einsum("bvnhw,bvn->bvhw", q, centres.float())
        dq = F.interpolate(dq.flatten(0, 1)[:, None], size=depth.shape[-2:], mode="bilinear", align_corners=False)
        terms["ci_depth"] = silog_loss(dq.reshape(depth.shape), gt, valid_gt(gt, cfg.gt_max_depth_m),
                                       cfg.silog_variance_focus, cfg.silog_per_image)
    return terms


@dataclasses.dataclass
class DistillConfig:
    """Weights and temperatures of every loss term; weight 0 switches a term off (not computed).

    The paper's exact values are not public. Defaults: SILog lambda = 0.85 and its factor 10
    (BTS/AdaBins), chamfer weight 0.1 (AdaBins). KD weights 1.0: the KL terms are in nats per
    pixel/row (<= log N, log M), the same order as a converged SILog, and ci_depth is a SILog like
    the supervised term. tau_bins 0.02: kernel std sqrt(tau/2) = 0.1 in log depth, about one bin of
    64 log-spaced bins over [0.5, 250] m and the affine-aligned error of Depth Anything on driving
    scenes (~10 %); bin_assignment 'interp' spreads that kernel onto the bins by linear
    interpolation, exact in expectation (`teacher_bin_probs`). vr_temperature 0.1: the usual
    temperature of cosine-similarity relations (contrastive / pixel-relation KD). vr_samples 256 per strip (a 256x256 relation per pair).
    Chamfer in log depth (the head's bins are log-spaced; in metres far returns would dominate by
    ~1e4), 'metric' gives AdaBins' literal form. align_shape_from 'gt': the teacher's inverse-depth
    affine map is fitted to the lidar GT of the image and only its scale is taken from the student
    (the design's stop-gradient median ratio), 'student': both from the student (`align_teacher`).
    """

    w_silog: float = 1.0
    w_bins: float = 0.1
    w_ci_kl: float = 1.0
    w_ci_depth: float = 1.0
    w_vr_feat: float = 1.0  # computed only when the batch carries teacher_features
    w_vr_depth: float = 1.0
    silog_variance_focus: float = 0.85
    silog_per_image: bool = True
    chamfer_space: str = "log"
    chamfer_max_points: int = 4096  # GT depths per view in the chamfer (random subset beyond)
    tau_bins: float = 0.02
    bin_assignment: str = "interp"  # teacher depth -> bin probabilities: 'interp' (exact in expectation) or 'kernel'
    vr_temperature: float = 0.1
    vr_samples: int = 256
    vr_patch: int = 3  # log-depth patch size of the teacher-depth relation descriptor (at h x w)
    align_shape_from: str = "gt"  # the teacher's affine shape fitted to 'gt' (lidar; student where too few) or 'student'
    align_scale_from: str = "student"  # the aligned teacher's scale: the student's median ('student') or the GT fit's ('gt')
    align_min_gt_points: int = 64  # GT returns an image needs for the GT fit
    align_max_points: int = 65536  # pixels per image in the teacher's median/MAD fit to the student
    gt_max_depth_m: float | None = None  # ignore GT beyond this (None: keep all)

    def __post_init__(self) -> None:
        bad = [k for k in ("w_silog", "w_bins", "w_ci_kl", "w_ci_depth", "w_vr_feat", "w_vr_depth") if getattr(self, k) < 0]
        bad += [k for k in ("tau_bins", "vr_temperature") if getattr(self, k) <= 0]
        if not 0 <= self.silog_variance_focus <= 1:
            bad.append("silog_variance_focus")
        if self.bin_assignment not in ("interp", "kernel"):
            bad.append("bin_assignment")
        if self.chamfer_space not in ("log", "metric"):
            bad.append("chamfer_space")
        if self.vr_samples < 2 or self.vr_patch < 1 or self.vr_patch % 2 == 0:
            bad.append("vr_samples/vr_patch")
        if self.align_shape_from not in ("gt", "student") or self.align_scale_from not in ("gt", "student"):
            bad.append("align_shape_from")
        if self.chamfer_max_points < 1 or self.align_max_points < 1 or self.align_min_gt_points < 2:
            bad.append("max_points")
        if bad:
            raise ValueError(f"bad DistillConfig values for {bad}: {self}")

    @property
    def uses_teacher(self) -> bool:
        return self.w_ci_kl > 0 or self.w_ci_depth > 0 or self.w_vr_feat > 0 or self.w_vr_depth > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DistillConfig":
        d = dict(d or {})
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown DistillConfig keys {unknown}")
        return cls(**d)


def ablation_presets() -> dict[str, DistillConfig]:
    """The ablation table's four rows: supervised only, + cross-interaction KD, + view-relational KD, full."""
    no_ci, no_vr = dict(w_ci_kl=0.0, w_ci_depth=0.0), dict(w_vr_feat=0.0, w_vr_depth=0.0)
    return {"supervised": DistillConfig(**no_ci, **no_vr), "ci_kd": DistillConfig(**no_vr),
            "vr_kd": DistillConfig(**no_ci), "full": DistillConfig()}


def distillation_loss(out: dict[str, torch.Tensor], batch: dict[str, Any], cfg: DistillConfig,
                      overlap: OverlapIndices | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Total = sum of weight * term over the enabled terms; returns (total, {term: unweighted float}).

    out: the student's forward dict; batch: 'gt' [B,V,H,W] m, 'teacher' [B,V,Ht,Wt] (needed by the
    KD terms), optional 'teacher_features' [B,V,Ct,ht,wt]; overlap: `overlap_indices` at the
    feature resolution (needed by the view-relational terms). Terms: silog, bins, ci_kl,
    ci_depth, vr_feat (only with teacher_features), vr_depth.
    """
    depth, gt = out["depth"], batch["gt"]
    if depth.ndim != 4 or gt.shape != depth.shape:
        raise ValueError(f"gt must match the student's depth [B,V,H,W] = {tuple(depth.shape)}, got {tuple(gt.shape)}")
    valid = valid_gt(gt, cfg.gt_max_depth_m)
    terms: dict[str, torch.Tensor] = {}
    if cfg.w_silog > 0:
        terms["silog"] = silog_loss(depth, gt, valid, cfg.silog_variance_focus, cfg.silog_per_image)
    if cfg.w_bins > 0:
        terms["bins"] = bin_chamfer_loss(out["centres"], gt, valid, cfg.chamfer_max_points, cfg.chamfer_space)
    if cfg.uses_teacher:
        if batch.get("teacher") is None:
            raise ValueError("the KD terms are enabled but the batch has no 'teacher' (use the 'supervised' preset "
                             "or provide teacher predictions)")
        aligned = aligned_teacher(batch["teacher"], depth, out["centres"].detach(), gt, cfg)
        if cfg.w_ci_kl > 0 or cfg.w_ci_depth > 0:
            terms.update(cross_interaction_kd(out, batch["teacher"], gt, cfg, aligned=aligned))
        if cfg.w_vr_feat > 0 or cfg.w_vr_depth > 0:
            if overlap is None:
                raise ValueError("the view-relational terms need overlap=overlap_indices(rig, h, w, cfg.vr_samples)")
            feats = out["features"]
            teacher_lo = downsample_depth(aligned, feats.shape[-2:])
            terms.update(view_relational_kd(feats, teacher_lo, overlap, cfg, batch.get("teacher_features")))
    weights = {"silog": cfg.w_silog, "bins": cfg.w_bins, "ci_kl": cfg.w_ci_kl, "ci_depth": cfg.w_ci_depth,
               "vr_feat": cfg.w_vr_feat, "vr_depth": cfg.w_vr_depth}
    total = depth.sum() * 0.0
    for k, t in terms.items():
        total = total + weights[k] * t
    return total, {k: float(t.detach()) for k, t in terms.items()}
