"""View-relational KD (docs/method.md §4): cross-view relation matrices over the overlap strips.

For each adjacent camera pair (i, j) of the ring, M positions are sampled in camera i's strip
that camera j also sees and M in camera j's strip that camera i sees. A relation matrix is the
row softmax of the cosine similarities between the two strips' features, divided by a
temperature; the student's relation (its decoder features) follows the teacher's (the
foundation model's features, resampled to the student's grid) by KL(R_teacher || R_student), in
both directions (i -> j rows and j -> i rows). What it transfers: which positions of one view
are the same surface as which of the other, so that the student's two views describe a seam alike.
Positions are flat indices into h*w (row-major).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fsmde_ros.geometry.projection import overlap_mask

# Overlap: {(i, j): (indices in camera i [M] long, indices in camera j [M] long)} at h x w.
OverlapIndices = dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]]


def _spread(flat: np.ndarray, m: int) -> np.ndarray:
    """m of the sorted flat indices, evenly spaced through them (row-major: a regular grid of the strip)."""
    pick = np.linspace(0, len(flat) - 1, m).round().astype(np.int64)
    return flat[pick]


def overlap_indices(rig, h: int, w: int, samples: int) -> OverlapIndices:
    """Per adjacent pair (i, j) of `rig`: flat indices at h x w of camera i's overlap strip with j and of
    camera j's strip with i, M = min(samples, both strip sizes) each. Pairs with M < 2 are left out.

    Compute once per rig and feature resolution (the rig is resized to w x h, so it must be the
    rig at the student's input aspect; the cameras' native sizes do not matter).
    """
    if h < 1 or w < 1 or samples < 2:
        raise ValueError(f"need h, w >= 1 and samples >= 2, got h={h}, w={w}, samples={samples}")
    small = rig.resized(w, h)
    out: OverlapIndices = {}
    for i, j in small.neighbours:
        ci, cj = small.cameras[i], small.cameras[j]
        mi = overlap_mask(ci.K, ci.T_base_cam, (w, h), cj.K, cj.T_base_cam, (w, h))
        mj = overlap_mask(cj.K, cj.T_base_cam, (w, h), ci.K, ci.T_base_cam, (w, h))
        fi, fj = np.flatnonzero(mi), np.flatnonzero(mj)
        m = min(samples, len(fi), len(fj))
        if m >= 2:
            out[(i, j)] = (torch.from_numpy(_spread(fi, m)), torch.from_numpy(_spread(fj, m)))
    return out


def relation_matrix(feats_a: torch.Tensor, feats_b: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """feats_a [B,M,C], feats_b [B,M',C'=C] -> (R, log R) [B,M,M']: row softmax of cosine similarity / temperature."""
    if feats_a.ndim != 3 or feats_b.ndim != 3 or feats_a.shape[0] != feats_b.shape[0] or feats_a.shape[2] != feats_b.shape[2]:
        raise ValueError(f"relation_matrix needs [B,M,C] and [B,M',C], got {tuple(feats_a.shape)} and {tuple(feats_b.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    with torch.autocast(feats_a.device.type, enabled=False):  # fp32 even under AMP: logits reach 1/temperature
        a = F.normalize(feats_a.float(), dim=-1, eps=1e-8)
        b = F.normalize(feats_b.float(), dim=-1, eps=1e-8)
        log_r = torch.log_softmax(torch.bmm(a, b.transpose(1, 2)) / temperature, dim=-1)
    return log_r.exp(), log_r


def _gather(feats: torch.Tensor, view: int, index: torch.Tensor) -> torch.Tensor:
    """feats [B,V,C,h*w] -> [B,M,C] at the flat positions `index` of one view."""
    return feats[:, view].index_select(-1, index).transpose(1, 2)


def relational_kl(student: torch.Tensor, teacher: torch.Tensor, overlap: OverlapIndices, temperature: float) -> torch.Tensor:
    """student [B,V,C,h,w], teacher [B,V,C',h,w] (detached here) -> mean over pairs and both directions of
    KL(R_teacher || R_student), each averaged over rows and the batch. 0 (with grad) when there are no pairs."""
    b, v, _, h, w = student.shape
    s = student.flatten(-2)
    t = teacher.detach().flatten(-2)
    total, count = student.sum() * 0.0, 0
    for (i, j), (idx_i, idx_j) in overlap.items():
        if max(i, j) >= v:
            raise ValueError(f"overlap pair {(i, j)} does not fit {v} views (rig and batch disagree)")
        if int(max(idx_i.max(), idx_j.max())) >= h * w:  # CPU tensors from overlap_indices: no device sync
            raise ValueError(f"overlap indices exceed the feature grid {h}x{w}: built for another resolution?")
        idx_i, idx_j = idx_i.to(student.device), idx_j.to(student.device)
        si, sj, ti, tj = _gather(s, i, idx_i), _gather(s, j, idx_j), _gather(t, i, idx_i), _gather(t, j, idx_j)
        for (ta, tb), (sa, sb) in (((ti, tj), (si, sj)), ((tj, ti), (sj, si))):
            r_t, log_t = relation_matrix(ta, tb, temperature)
            _, log_s = relation_matrix(sa, sb, temperature)
            total = total + (r_t * (log_t - log_s)).sum(-1).mean()
            count += 1
    return total / max(count, 1)


def view_relational_kd(student_features: torch.Tensor, teacher_features: torch.Tensor, indices: OverlapIndices,
                       temperature: float) -> torch.Tensor:
    """The view-relational term 'vr_feat': student_features [B,V,C,h,w] (decoder), teacher_features
    [B,V,Ct,ht,wt] (bilinearly resampled to h x w, detached), indices from `overlap_indices(rig, h, w, ...)`.
    Exactly 0 when the two relations coincide (e.g. identical features)."""
    if student_features.ndim != 5:
        raise ValueError(f"student_features must be [B,V,C,h,w], got {tuple(student_features.shape)}")
    b, v, _, h, w = student_features.shape
    if teacher_features.ndim != 5 or teacher_features.shape[:2] != (b, v):
        raise ValueError(f"teacher_features must be [B,V,Ct,ht,wt] with B,V = {(b, v)}, got {tuple(teacher_features.shape)}")
    tf = teacher_features.detach().float()
    if tf.shape[-2:] != (h, w):
        tf = F.interpolate(tf.flatten(0, 1), size=(h, w), mode="bilinear", align_corners=False).reshape(b, v, -1, h, w)
    return relational_kl(student_features, tf, indices, temperature)
