"""Cross-interaction KD (docs/method.md §3): the teacher's scale-invariant bin probabilities q teach
the student's bin probabilities p; the GT teaches the student's metric bin centres c through sum_k q_k c_k.

q comes from the teacher alone (no GT, no student): its relative disparity t (an unknown per-image
affine map of inverse depth, larger = nearer) is made scale- and shift-invariant per image and
placed on a bin axis whose index means the same for teacher and student, bin 0 nearest:
with u = (t - P1(t)) / (P99(t) - P1(t)) the normalised disparity (P = percentile; the shift cancels
in the difference, the scale in the ratio; u ~ d_near / d where the image shows sky or far scene):
- 'log' (default): z = N * log(u) / log(far_floor), uniform in log depth relative to the image's
  near end (the ground below the camera, at a height fixed by the rig): bins of equal relative
  width (6 % at N = 64, far_floor 0.02), keeping the teacher's spacing;
- 'disparity': z = N * (1 - u), a uniform grid in normalised disparity (fine near, coarse far);
- 'rank': z = N * (rank of the pixel by decreasing disparity + 1/2) / (informative pixels),
  equal-mass bins, invariant to any increasing map of t.
q_k = softmax_k(-(z - k - 1/2)^2 / tau). Pixels at the teacher's far floor (u < teacher_far_floor:
sky, or beyond what it resolves) are not informative: left out of the KL, and put in the last bin.
Because q never depends on the centres, SILog(sum_k q_k c_k, gt) is a real regression of the
centres onto the GT, reducible by them, and KL(q || p) reaches the pixel logits only.
Shapes: q [B,V,N,h,w] at the student's bin grid h x w; teacher [B,V,Ht,Wt] at any resolution.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from fsmde_ros.distill.config import CI_BINNINGS, DistillConfig
from fsmde_ros.distill.supervised import silog_loss, valid_gt

# Percentiles [%] of an image's teacher disparity that become 0 and 1 of the normalised disparity:
# robust to the few pixels of noise or a blurred edge at either end.
DISPARITY_RANGE_PERCENTILES = (1.0, 99.0)


class TeacherBins(NamedTuple):
    """The teacher's bin distribution: q, log q [B,V,N,h,w]; informative [B,V,h,w] bool; z [B,V,h,w] in bins."""

    q: torch.Tensor
    log_q: torch.Tensor
    informative: torch.Tensor
    position: torch.Tensor


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


def normalised_disparity(teacher: torch.Tensor) -> torch.Tensor:
    """[B,V,h,w] relative disparity -> u [B,V,h,w]: 0 at the image's 1st percentile, 1 at its 99th (not clamped).

    Invariant to a positive affine map of the teacher: the percentiles move with it.
    """
    b, v, h, w = teacher.shape
    flat = teacher.float().reshape(b * v, h * w)
    lo_p, hi_p = DISPARITY_RANGE_PERCENTILES
    lo, hi = (torch.quantile(flat, p / 100.0, dim=1, keepdim=True) for p in (lo_p, hi_p))
    u = (flat - lo) / (hi - lo).clamp_min(1e-12)
    return u.reshape(b, v, h, w)


@torch.no_grad()
def teacher_bin_position(teacher: torch.Tensor, num_bins: int, size: tuple[int, int], binning: str = "log",
                         far_floor: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher disparity [B,V,Ht,Wt] -> (z [B,V,*size] float in [0, N), informative [B,V,*size] bool).

    z is the pixel's position on the shared bin axis (bin k spans [k, k+1), bin 0 nearest); see the
    module doc for the two binnings. Non-informative pixels get z = N - 1/2 (the farthest bin).
    """
    if binning not in CI_BINNINGS:
        raise ValueError(f"binning must be one of {', '.join(CI_BINNINGS)}, got {binning!r}")
    t = resize_teacher(teacher, size)
    finite = torch.isfinite(t)
    t = torch.where(finite, t, torch.zeros_like(t))
    u = normalised_disparity(t)
    informative = finite & (u >= far_floor)
    b, v, h, w = t.shape
    last = torch.full_like(t, num_bins - 0.5)
    if binning in ("log", "disparity"):  # fixed grids in normalised disparity
        z = (torch.log(u.clamp(far_floor, 1.0)) / math.log(far_floor) if binning == "log"
             else 1.0 - u.clamp(0.0, 1.0)) * num_bins
        return torch.where(informative, z.clamp(0.0, num_bins - 1e-4), last), informative
    # rank by decreasing disparity among the informative pixels (the others sort last and are overwritten)
    key = torch.where(informative, -t, torch.full_like(t, float("inf"))).reshape(b * v, h * w)
    order = torch.argsort(key, dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=t.device).expand(b * v, -1).contiguous())
    count = informative.reshape(b * v, h * w).sum(dim=1, keepdim=True).clamp_min(1)
    z = ((rank.float() + 0.5) / count * num_bins).reshape(b, v, h, w)
    return torch.where(informative, z, last), informative


def _bins_at(z: torch.Tensor, informative: torch.Tensor, num_bins: int, tau: float) -> TeacherBins:
    centre = torch.arange(num_bins, device=z.device, dtype=torch.float32)[:, None, None] + 0.5  # [N,1,1]
    log_q = torch.log_softmax(-(z[:, :, None] - centre) ** 2 / tau, dim=2)
    return TeacherBins(log_q.exp(), log_q, informative, z)


@torch.no_grad()
def teacher_bin_probs(teacher: torch.Tensor, num_bins: int, size: tuple[int, int], cfg: DistillConfig) -> TeacherBins:
    """The teacher's scale-invariant bin probabilities q [B,V,N,*size] (a stop-gradient target; see module doc)."""
    z, informative = teacher_bin_position(teacher, num_bins, size, cfg.ci_binning, cfg.teacher_far_floor)
    return _bins_at(z, informative, num_bins, cfg.tau_bins)


@torch.no_grad()
def register_to_student(bins: TeacherBins, log_p: torch.Tensor, tau: float) -> TeacherBins:
    """q moved along the bin axis, per view, by the shift that best registers it to the student's p.

    On a log grid a depth scale is a shift of the bin axis, and the teacher's anchor (the near end
    of its normalised disparity) is a per-image accident the student cannot see (its log depth
    varies with std 0.27 per camera on the synthetic benchmark, ~4 bins). The KL is therefore taken
    up to that shift: s = median over the informative pixels of (E_p[k] - z), a stop-gradient. The
    shape of q, what the teacher knows, is untouched; only where its axis sits is the student's.
    log_p [B,V,N,h,w]; returns TeacherBins at z + s (clamped into the axis).
    """
    n = log_p.shape[2]
    k = torch.arange(n, device=log_p.device, dtype=torch.float32)[:, None, None] + 0.5
    expected = (log_p.detach().float().exp() * k).sum(dim=2)  # [B,V,h,w]
    diff = torch.where(bins.informative, expected - bins.position, torch.full_like(expected, float("nan")))
    shift = torch.nan_to_num(torch.nanmedian(diff.flatten(2), dim=2).values, nan=0.0)  # [B,V]
    z = torch.where(bins.informative, (bins.position + shift[..., None, None]).clamp(0.0, n - 1e-4), bins.position)
    return _bins_at(z, bins.informative, n, tau)


def log_probs(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """The student's log bin probabilities [B,V,N,h,w] (from its logits where it has them), float32."""
    if "logits" in out:
        return torch.log_softmax(out["logits"].float(), dim=2)
    return torch.log(out["probs"].float().clamp_min(1e-12))


def cross_interaction_kd(out: dict[str, torch.Tensor], bins: TeacherBins, gt: torch.Tensor,
                         cfg: DistillConfig, log_p: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """'ci_kl' = KL(q || p) averaged over the informative pixels (reaches the pixel logits only);
    'ci_depth' = SILog(sum_k q_k c_k, upsampled to H x W, gt) (reaches the centres only). Each only when
    its weight is > 0. out: 'centres' [B,V,N], 'logits' (or 'probs') [B,V,N,h,w], 'depth' [B,V,H,W];
    bins from `teacher_bin_probs`; gt [B,V,H,W] metres (0 = none)."""
    depth, centres = out["depth"], out["centres"]
    scores = out["logits"] if "logits" in out else out["probs"]
    if gt.shape != depth.shape or depth.ndim != 4:
        raise ValueError(f"gt must be [B,V,H,W] = {tuple(depth.shape)}, got {tuple(gt.shape)}")
    if scores.ndim != 5 or centres.shape != scores.shape[:3] or bins.q.shape != scores.shape:
        raise ValueError(f"need centres [B,V,N], logits/probs [B,V,N,h,w] and q of the same shape, got "
                         f"{tuple(centres.shape)}, {tuple(scores.shape)} and {tuple(bins.q.shape)}")
    terms: dict[str, torch.Tensor] = {}
    if cfg.w_ci_kl > 0:
        kl = (bins.q * (bins.log_q - (log_probs(out) if log_p is None else log_p))).sum(dim=2)  # [B,V,h,w]
        mask = bins.informative.float()
        terms["ci_kl"] = (kl * mask).sum() / mask.sum().clamp_min(1)
    if cfg.w_ci_depth > 0:
        with torch.autocast(depth.device.type, enabled=False):  # fp32 even under AMP
            dq = torch.einsum("bvnhw,bvn->bvhw", bins.q, centres.float())
        dq = F.interpolate(dq.flatten(0, 1)[:, None], size=depth.shape[-2:], mode="bilinear", align_corners=False)
        terms["ci_depth"] = silog_loss(dq.reshape(depth.shape), gt, valid_gt(gt, cfg.gt_max_depth_m),
                                       cfg.silog_variance_focus, cfg.silog_per_image)
    return terms
