"""Distillation losses: SILog, bin Chamfer, bin likelihood, cross-interaction KD, view-relational KD, the config, the total."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsmde_ros.data.synthetic import SyntheticSurround
from fsmde_ros.distill.config import GT_TERMS, DistillConfig, ablation_presets
from fsmde_ros.distill.cross_interaction import (
    ALIGNED_LIDAR,
    ALIGNED_NONE,
    ALIGNED_STUDENT,
    cross_interaction_kd,
    teacher_bin_probs,
    teacher_shift,
)
from fsmde_ros.distill.losses import distillation_loss
from fsmde_ros.distill.relational import (
    overlap_indices,
    relation_matrix,
    view_relational_kd,
)
from fsmde_ros.distill.supervised import (
    bin_chamfer_loss,
    bin_nll_loss,
    silog_loss,
    uncertainty_nll,
)
from fsmde_ros.geometry.projection import overlap_mask
from fsmde_ros.geometry.rig import load_rig
from fsmde_ros.model.bins import relative_grid
from fsmde_ros.model.student import create_student

H, W = 64, 96  # student input; bins and features at 16 x 24


def smooth_depth(b, v, h, w, seed=0, lo=2.0, hi=60.0):
    """A smooth positive depth field [B,V,h,w] (log-uniform in [lo, hi]), built in disparity so that
    a bilinear resize of the disparity is the same field."""
    g = torch.Generator().manual_seed(seed)
    d0 = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(b * v, 1, 4, 6, generator=g))
    disp = F.interpolate(1.0 / d0, size=(h, w), mode="bilinear", align_corners=False)
    return 1.0 / disp.reshape(b, v, h, w)


def sparse(depth, frac=0.1, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(depth.shape, generator=g) < frac, depth, torch.zeros_like(depth))


# -- SILog ------------------------------------------------------------------------------------------
def test_silog_zero_for_exact_scale_invariant_with_lambda_one_positive_otherwise():
    gt = sparse(smooth_depth(2, 6, H, W))
    assert float(silog_loss(gt.clone(), gt)) == 0.0
    assert float(silog_loss(3 * gt, gt, variance_focus=1.0)) < 1e-3
    # lambda = 0.85: a pure scale error costs 10 * sqrt(0.15) * |log k|
    assert float(silog_loss(3 * gt, gt)) == pytest.approx(10 * math.sqrt(0.15) * math.log(3), rel=1e-3)
    noisy = gt * torch.exp(0.2 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(3)))
    assert float(silog_loss(noisy, gt, variance_focus=1.0)) > 1.0
    # only valid GT counts: errors where gt = 0 change nothing
    assert float(silog_loss(torch.where(gt > 0, gt, 1000.0), gt)) == 0.0


def test_silog_is_per_image_by_default_pooled_on_request():
    gt = sparse(smooth_depth(1, 2, H, W))
    pred = gt * torch.tensor([2.0, 1.0]).reshape(1, 2, 1, 1)  # a different scale per view
    assert float(silog_loss(pred, gt, variance_focus=1.0)) < 1e-3
    assert float(silog_loss(pred, gt, variance_focus=1.0, per_image=False)) > 1.0


def test_silog_empty_gt_is_zero_with_grad_and_does_not_dilute():
    pred = smooth_depth(2, 6, H, W).requires_grad_(True)
    loss = silog_loss(pred, torch.zeros_like(pred))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.isfinite(pred.grad).all()
    gt = sparse(smooth_depth(1, 6, H, W, seed=4))
    p = smooth_depth(1, 6, H, W, seed=5)
    half = gt.clone()
    half[:, 3:] = 0  # views without any return are left out of the mean, not counted as 0
    assert float(silog_loss(p, half)) == pytest.approx(float(silog_loss(p[:, :3], gt[:, :3])), rel=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        silog_loss(p, gt[..., :-1])


# -- bin chamfer ------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", ["log", "metric"])
def test_chamfer_zero_when_centres_are_the_gt_values(space):
    centres = torch.tensor([1.0, 3.0, 7.0, 20.0, 55.0]).repeat(2, 6, 1)
    g = torch.Generator().manual_seed(0)
    gt = centres[..., torch.randint(0, 5, (H * W,), generator=g)].reshape(2, 6, H, W)
    gt = torch.where(torch.rand(gt.shape, generator=g) < 0.5, gt, torch.zeros_like(gt))
    gt[..., 0, :5] = centres  # every centre appears
    assert float(bin_chamfer_loss(centres, gt, space=space, max_points=H * W)) < 1e-10
    moved = centres * torch.tensor([1.0, 1.2, 1.0, 0.9, 1.0])
    assert float(bin_chamfer_loss(moved, gt, space=space, max_points=H * W)) > 1e-3
    # both directions: a centre that no GT depth is near, a GT depth that no centre is near
    extra_centre = torch.cat([centres, torch.full((2, 6, 1), 150.0)], dim=-1)
    assert float(bin_chamfer_loss(extra_centre, gt, space=space, max_points=H * W)) > 1e-3
    far_gt = gt.clone()
    far_gt[..., -1, :] = 150.0  # one row of far returns
    assert float(bin_chamfer_loss(centres, far_gt, space=space, max_points=H * W)) > 1e-3


def test_chamfer_empty_gt_and_shapes():
    centres = torch.tensor([1.0, 3.0, 7.0]).repeat(1, 6, 1).requires_grad_(True)
    loss = bin_chamfer_loss(centres, torch.zeros(1, 6, 8, 8))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.isfinite(centres.grad).all()
    with pytest.raises(ValueError, match="centres"):
        bin_chamfer_loss(centres[0], torch.zeros(1, 6, 8, 8))


# -- cross-interaction KD ---------------------------------------------------------------------------
N_BINS = 32
BIN_GRID = (H // 4, W // 4)
GRID = relative_grid(N_BINS, (-2.3, 2.5))


def teacher_of(depth, scale=2.0, shift=0.1):
    """A relative teacher: an affine map of inverse depth (larger = nearer)."""
    return scale / depth + shift


def q_of(teacher, gt, student_depth=None):
    valid = gt > 0
    shift, source = teacher_shift(teacher, gt, valid, student_depth)
    return teacher_bin_probs(teacher, shift, source, GRID, BIN_GRID, 2.0)


def with_sky(depth, rows=3):
    """The top rows are sky: infinitely far (inverse depth 0)."""
    d = depth.clone()
    d[..., :rows, :] = float("inf")
    return d


@pytest.mark.parametrize("sky", [False, True], ids=["no sky", "sky"])
@pytest.mark.parametrize("reference", ["lidar", "student"])
def test_q_is_the_same_for_the_teacher_under_any_positive_affine_map_of_its_disparity(sky, reference):
    """Regression (issue 21): the percentile normalisation warped the bin axis differently in every image
    without sky (bin k meant another depth in each); q now depends on the teacher only through its shape."""
    depth = smooth_depth(2, 6, 2 * H, 2 * W, seed=3)
    if sky:
        depth = with_sky(depth, rows=12)
    lidar = sparse(torch.where(torch.isfinite(depth), depth, torch.zeros_like(depth)), 0.1)
    gt, student = (lidar, None) if reference == "lidar" else (torch.zeros_like(lidar), depth * 1.3)
    t = teacher_of(depth)
    ref = q_of(t, gt, student)
    assert (ref.source == (ALIGNED_LIDAR if reference == "lidar" else ALIGNED_STUDENT)).all()
    assert ref.informative.float().mean() > (0.7 if sky else 0.95)
    for a, b in ((0.01, 0.0), (37.0, 5.0), (1.0, -0.3)):
        other = q_of(a * t + b, gt, student)
        assert torch.equal(other.informative, ref.informative)
        torch.testing.assert_close(other.q, ref.q, atol=2e-3, rtol=0)
    assert ref.q.shape == (2, 6, N_BINS, *BIN_GRID)
    torch.testing.assert_close(ref.q.sum(dim=2), torch.ones(2, 6, *BIN_GRID))


def test_one_bin_is_one_relative_depth_in_every_view():
    """Views of one relative structure at other metric scales, teacher scales and shifts: the same bins."""
    base = smooth_depth(1, 1, 2 * H, 2 * W, seed=4)
    depth = torch.cat([base * s for s in (1.0, 2.5, 0.4, 7.0, 1.0, 3.0)], dim=1)
    t = torch.cat([teacher_of(depth[:, v:v + 1], scale=a, shift=b)
                   for v, (a, b) in enumerate(((1, 0), (5, 0.3), (0.2, 0.01), (40, 2.0), (3, 0.0), (1, 1)))], dim=1)
    bins = q_of(t, sparse(depth, 0.1))
    for v in range(1, 6):
        torch.testing.assert_close(bins.position[0, v], bins.position[0, 0], atol=2e-2, rtol=0)


def test_bin_position_grows_with_depth_and_the_sky_is_not_informative():
    depth = with_sky(smooth_depth(1, 6, *BIN_GRID, seed=4))
    bins = q_of(teacher_of(depth), sparse(torch.nan_to_num(depth, posinf=0.0), 0.5))
    assert not bins.informative[..., :3, :].any() and bins.informative[..., 3:, :].float().mean() > 0.95
    for v in range(6):  # per view: farther pixels sit in farther bins
        ok = bins.informative[0, v]
        ranks_z = torch.argsort(torch.argsort(bins.position[0, v][ok])).float()
        ranks_d = torch.argsort(torch.argsort(depth[0, v][ok])).float()
        assert torch.corrcoef(torch.stack([ranks_z, ranks_d]))[0, 1] > 0.98, v
    # one bin step is one step of the relative grid: a pixel twice as far sits log(2) / step bins farther
    step = float(GRID[1] - GRID[0])
    for v in range(6):
        z, d = bins.position[0, v][bins.informative[0, v]], depth[0, v][bins.informative[0, v]]
        slope = torch.linalg.lstsq(torch.stack([torch.log(d), torch.ones_like(d)], 1), z[:, None]).solution[0]
        assert float(slope) == pytest.approx(1 / step, rel=0.02), v


def test_a_view_that_cannot_be_aligned_is_not_informative():
    depth = smooth_depth(1, 6, H, W, seed=5)
    gt = sparse(depth, 0.2)
    gt[0, 2] = 0  # view 2 has no lidar ...
    bins = q_of(teacher_of(depth), gt)  # ... and no student depth is given
    assert bins.source[0, 2] == ALIGNED_NONE and not bins.informative[0, 2].any()
    assert (bins.source[0, [0, 1, 3, 4, 5]] == ALIGNED_LIDAR).all()
    assert q_of(teacher_of(depth), gt, depth).source[0, 2] == ALIGNED_STUDENT


def _student_out(centres, logits, depth_hw=(H, W)):
    probs = torch.softmax(logits, dim=2)
    depth = torch.einsum("bvnhw,bvn->bvhw", probs, centres)
    depth = F.interpolate(depth.flatten(0, 1)[:, None], size=depth_hw, mode="bilinear").reshape(*depth.shape[:2], *depth_hw)
    n = centres.shape[-1]
    grid = relative_grid(n, (-2.3, 2.5)).expand(*centres.shape[:2], n)
    return {"centres": centres, "logits": logits, "probs": probs, "depth": depth, "grid": grid,
            "sigma_rel": torch.full_like(depth, 0.2)}


def test_q_depends_on_neither_the_students_centres_nor_the_gt_values():
    """The ill-posed KD of before built q from the student's own centres. Now a change of the centres (a
    per-view scale of the relative grid) moves neither q nor the KL; the GT reaches only ci_depth."""
    g = torch.Generator().manual_seed(0)
    depth = smooth_depth(1, 6, H, W, seed=5)
    cfg = ablation_presets()["ci_kd"]
    logits = torch.randn(1, 6, N_BINS, *BIN_GRID, generator=g)
    near, far = (torch.exp(GRID + math.log(s)).repeat(1, 6, 1) for s in (3.0, 40.0))
    for gt in (sparse(depth, 0.2), torch.zeros_like(depth)):  # lidar-aligned and student-aligned views
        batch = {"teacher": teacher_of(depth), "gt": gt}
        kl = [distillation_loss(_student_out(c, logits), batch, cfg)[1]["ci_kl"] for c in (near, far)]
        assert kl[0] == pytest.approx(kl[1], rel=1e-5)
    batch = {"teacher": teacher_of(depth), "gt": sparse(depth, 0.2)}
    other_gt = {**batch, "gt": sparse(depth * 1.7, 0.2)}  # the same returns, other metric values
    terms = [distillation_loss(_student_out(far, logits), b, cfg)[1] for b in (batch, other_gt)]
    assert terms[0]["ci_kl"] == pytest.approx(terms[1]["ci_kl"], rel=1e-5)
    assert terms[0]["ci_depth"] != pytest.approx(terms[1]["ci_depth"], rel=1e-3)  # the GT does reach ci_depth


def test_kl_is_taken_where_the_gt_is_silent_only():
    """Regression (issue 21): at lidar cells the KL and the GT likelihood pulled p towards different targets."""
    depth = smooth_depth(1, 6, H, W, seed=6)
    gt = torch.zeros_like(depth)
    gt[..., : H // 2, :] = depth[..., : H // 2, :]  # GT in the top half only
    bins = q_of(teacher_of(depth), gt)
    centres = torch.exp(GRID + math.log(10.0)).repeat(1, 6, 1)
    logits = bins.log_q.clone()
    logits[..., : BIN_GRID[0] // 2, :] = torch.randn_like(logits[..., : BIN_GRID[0] // 2, :]) * 5  # p off q where GT is
    terms = cross_interaction_kd(_student_out(centres, logits), bins, gt, DistillConfig())
    assert abs(float(terms["ci_kl"])) < 1e-5
    both = cross_interaction_kd(_student_out(centres, logits), bins, gt, DistillConfig(ci_kl_at_gt=1.0))
    assert float(both["ci_kl"]) > 0.5
    flat = cross_interaction_kd(_student_out(centres, torch.zeros_like(bins.q)), bins, gt, DistillConfig())
    assert float(flat["ci_kl"]) > 0.5


@pytest.fixture(scope="module")
def synthetic_batch():
    item = SyntheticSurround("ddad", seed=5, height=H, width=W, frames=2)[1]
    return {"teacher": torch.from_numpy(item["teacher"])[None], "gt": torch.from_numpy(item["lidar_depth"])[None]}


def test_with_q_fixed_the_centres_alone_can_fit_ci_depth(synthetic_batch):
    """ci_depth is a real regression of the centres onto the GT: 200 Adam steps on the centres halve it."""
    cfg = DistillConfig(w_ci_kl=0.0)
    bins = q_of(synthetic_batch["teacher"], synthetic_batch["gt"])
    assert bins.informative.float().mean() > 0.5
    log_c = torch.nn.Parameter((GRID + math.log(1.0)).repeat(1, 6, 1).clone())
    logits = torch.zeros(1, 6, N_BINS, *BIN_GRID)
    opt = torch.optim.Adam([log_c], lr=0.05)

    def ci_depth():
        return cross_interaction_kd(_student_out(torch.exp(log_c), logits), bins, synthetic_batch["gt"], cfg)["ci_depth"]

    before = float(ci_depth().detach())
    for _ in range(200):
        loss = ci_depth()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = float(ci_depth().detach())
    assert after <= 0.5 * before, (before, after)


# -- the GT's likelihood under the bin distribution -------------------------------------------------
def test_bin_nll_is_lowest_for_mass_on_the_gt_bins_and_leaves_the_centres_alone():
    centres = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0]).repeat(1, 6, 1).requires_grad_(True)
    gt = torch.zeros(1, 6, 8, 8)
    gt[..., ::4, ::4] = 3.0  # one return per 4 x 4 cell, between the centres 2 and 4
    target = torch.tensor([0.0, 0.5, 0.5, 0.0, 0.0])  # linear in depth: the mean is 3 m exactly
    assert float((target * centres.detach()[0, 0]).sum()) == 3.0
    at_gt = torch.log(torch.where(target > 0, target, torch.full_like(target, 1e-9)))
    sharp = at_gt.reshape(1, 1, 5, 1, 1).expand(1, 6, 5, 2, 2)
    broad = torch.log_softmax(torch.zeros(1, 6, 5, 2, 2), dim=2)
    wrong = torch.log_softmax(torch.tensor([0.0, 0.0, 0.0, 0.0, 9.0]).reshape(1, 1, 5, 1, 1).expand(1, 6, 5, 2, 2), dim=2)
    nll = [float(bin_nll_loss(lp, centres.detach(), gt)) for lp in (sharp, broad, wrong)]
    assert nll[0] == pytest.approx(math.log(2), rel=1e-4) and nll[0] < nll[1] < nll[2]
    logits = torch.zeros(1, 6, 5, 2, 2, requires_grad=True)
    loss = bin_nll_loss(torch.log_softmax(logits, dim=2), centres, gt)
    loss.backward()
    assert centres.grad is None and logits.grad.abs().sum() > 0
    assert float(bin_nll_loss(broad, centres.detach(), torch.zeros_like(gt))) == 0.0  # no GT: 0


def test_uncertainty_nll_is_lowest_when_sigma_is_the_size_of_the_error_and_leaves_the_depth_alone():
    gt = sparse(smooth_depth(1, 6, H, W, seed=8), 0.3)
    err = 0.2
    depth = (gt.clamp_min(1.0) * math.exp(err)).requires_grad_(True)  # a 20 % (log) error everywhere
    best = err * math.sqrt(2)  # a Laplace of scale e has std sqrt(2) e
    nll = {r: float(uncertainty_nll(depth, torch.full_like(gt, r), gt)) for r in (0.05, best, 0.8)}
    assert nll[best] < nll[0.05] and nll[best] < nll[0.8]
    assert nll[best] == pytest.approx(1 + math.log(err), rel=1e-4)
    sigma = torch.full_like(gt, 0.3, requires_grad=True)
    uncertainty_nll(depth, sigma, gt).backward()
    assert depth.grad is None and sigma.grad.abs().sum() > 0
    assert float(uncertainty_nll(depth, sigma, torch.zeros_like(gt)).detach()) == 0.0


# -- gradients through the real student -------------------------------------------------------------
@pytest.fixture(scope="module")
def student_batch():
    torch.manual_seed(0)
    model = create_student("fsmde_mnv3l", num_bins=8)
    g = torch.Generator().manual_seed(0)
    images = F.interpolate(torch.rand(6, 3, 8, 12, generator=g), size=(H, W), mode="bilinear")[None]
    depth = smooth_depth(1, 6, H, W, seed=11)
    batch = {"images": images, "focal_px": torch.full((1, 6), 60.0), "gt": sparse(depth, 0.2),
             "teacher": 3.0 / smooth_depth(1, 6, 32, 48, seed=11) + 0.2,
             "teacher_features": torch.randn(1, 6, 16, 5, 7, generator=g)}
    return model, batch


def _grads(model, loss, params=None):
    params = params or [model.head.logits.weight, model.head.scale.weight]
    return [None if gr is None else float(gr.abs().sum())
            for gr in torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)]


def test_centres_get_no_gradient_from_ci_kl_and_pixel_logits_none_from_ci_depth(student_batch):
    model, batch = student_batch
    model.train()
    out = model(batch["images"], batch["focal_px"])
    shift, source = teacher_shift(batch["teacher"], batch["gt"], batch["gt"] > 0)
    bins = teacher_bin_probs(batch["teacher"], shift, source, out["grid"][0, 0], tuple(out["logits"].shape[-2:]), 2.0)
    ci = cross_interaction_kd(out, bins, batch["gt"], DistillConfig())
    logits_g, scale_g = _grads(model, ci["ci_kl"])
    assert logits_g > 0 and scale_g is None  # the teacher teaches structure (probabilities) only
    logits_g, scale_g = _grads(model, ci["ci_depth"])
    assert logits_g is None and scale_g > 0  # the GT teaches scale (centres) only
    logits_g, scale_g = _grads(model, bin_nll_loss(torch.log_softmax(out["logits"], dim=2), out["centres"], batch["gt"]))
    assert logits_g > 0 and scale_g is None  # the likelihood shapes the distribution over the given centres
    logits_g, scale_g = _grads(model, silog_loss(out["depth"], batch["gt"]))
    assert logits_g > 0 and scale_g > 0


def test_the_uncertainty_gets_no_gradient_from_the_kd_terms(student_batch):
    """Regression (issue 21): the KD phase spent the bin distribution's spread on teacher-vs-GT disagreement;
    depth_std now comes from a branch that only the GT's likelihood trains, and that teaches nothing else."""
    model, batch = student_batch
    model.train()
    out = model(batch["images"], batch["focal_px"])
    ov = overlap_indices(load_rig("nuscenes"), H // 4, W // 4, 32)
    _, terms = distillation_loss(out, batch, DistillConfig(), ov)
    assert {"ci_kl", "ci_depth", "vr_feat", "sigma_nll"} <= set(terms)
    sigma_params = list(model.head.sigma.parameters())
    trunk = [model.head.logits.weight, model.head.scale.weight, model.decoder.blocks[-1][0][0].weight]
    shift, source = teacher_shift(batch["teacher"], batch["gt"], batch["gt"] > 0)
    bins = teacher_bin_probs(batch["teacher"], shift, source, out["grid"][0, 0], tuple(out["logits"].shape[-2:]), 2.0)
    kd = sum(cross_interaction_kd(out, bins, batch["gt"], DistillConfig()).values())
    kd = kd + view_relational_kd(out["features"], batch["teacher_features"], ov, 0.1)
    assert all(g is None for g in _grads(model, kd, sigma_params))
    nll = uncertainty_nll(out["depth"], out["sigma_rel"], batch["gt"])
    grads = _grads(model, nll, sigma_params)
    assert all(g is not None for g in grads) and grads[-1] > 0  # (the first layer's are 0 at init: zero out weight)
    assert all(g is None for g in _grads(model, nll, trunk))  # and it teaches the depth nothing
    torch.testing.assert_close(out["depth_std"] >= out["depth"] * out["sigma_rel"] * 0.999, torch.ones_like(out["depth"], dtype=torch.bool))


def test_overlap_indices_lie_in_the_adjacent_edges_of_the_nuscenes_ring():
    rig = load_rig("nuscenes")
    h, w = 24, 40
    ov = overlap_indices(rig, h, w, 64)
    assert set(ov) == set(rig.neighbours)
    small = rig.resized(w, h)
    for (i, j), (idx_i, idx_j) in ov.items():
        assert len(idx_i) == len(idx_j) and 2 <= len(idx_i) <= 64 and len(set(idx_i.tolist())) == len(idx_i)
        # clockwise ring: camera j = i+1 is to the right of i
        assert (idx_i % w).min() >= 0.6 * w and (idx_j % w).max() <= 0.4 * w
        ci, cj = small.cameras[i], small.cameras[j]
        mask_i = overlap_mask(ci.K, ci.T_base_cam, (w, h), cj.K, cj.T_base_cam, (w, h)).ravel()
        assert mask_i[idx_i.numpy()].all()
        rows = (idx_i // w).numpy()
        assert rows.min() < 0.25 * h and rows.max() > 0.75 * h  # spread over the strip, not one corner


def test_relation_matrix_rows_are_distributions():
    a, b = torch.randn(2, 5, 7), torch.randn(2, 4, 7)
    r, log_r = relation_matrix(a, b, 0.1)
    assert r.shape == (2, 5, 4) and torch.allclose(r.sum(-1), torch.ones(2, 5)) and torch.allclose(log_r.exp(), r)
    with pytest.raises(ValueError, match="relation_matrix"):
        relation_matrix(a, torch.randn(2, 4, 6), 0.1)


def test_view_relational_kd_zero_for_identical_features_positive_otherwise():
    h, w = H // 4, W // 4
    ov = overlap_indices(load_rig("nuscenes"), h, w, 32)
    feats = torch.randn(1, 6, 16, h, w, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    assert float(view_relational_kd(feats, feats.detach().clone(), ov, 0.1).detach()) == 0.0
    other = torch.randn(1, 6, 5, 8, 12)  # teacher features at another resolution and width
    loss = view_relational_kd(feats, other, ov, 0.1)
    assert float(loss.detach()) > 0.01
    loss.backward()
    assert feats.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="teacher_features"):
        view_relational_kd(feats, other[:, :5], ov, 0.1)


# -- config and the total ---------------------------------------------------------------------------
def test_config_from_dict_and_presets():
    with pytest.raises(ValueError, match="w_unknown"):
        DistillConfig.from_dict({"w_unknown": 1})
    with pytest.raises(ValueError, match="tau_bins"):
        DistillConfig(tau_bins=0)
    with pytest.raises(ValueError, match="ci_kl_at_gt"):
        DistillConfig(ci_kl_at_gt=-1.0)
    cfg = DistillConfig.from_dict({"w_bins": 0.0, "tau_bins": 4.0})
    assert cfg.w_bins == 0 and cfg.tau_bins == 4.0 and DistillConfig.from_dict(cfg.to_dict()) == cfg
    presets = ablation_presets()
    assert list(presets) == ["supervised", "ci_kd", "vr_kd", "full"]
    assert presets["full"] == DistillConfig()
    assert ablation_presets(DistillConfig(tau_bins=4.0))["ci_kd"].tau_bins == 4.0


def _batch(seed=0, teacher_features=True):
    depth = smooth_depth(1, 6, H, W, seed=seed)
    batch = {"gt": sparse(depth, 0.2), "teacher": 2.0 / depth + 0.1}
    if teacher_features:
        batch["teacher_features"] = torch.randn(1, 6, 12, 8, 12)
    return batch


def fake_out(b=1, v=6, n=8, seed=0):
    """A student-like output dict with leaf logits, centres and features."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, v, n, H // 4, W // 4, generator=g).requires_grad_(True)
    centres = torch.sort(torch.exp(torch.rand(b, v, n, generator=g) * math.log(100.0)) + 0.5, dim=-1).values
    out = _student_out(centres.requires_grad_(True), logits)
    out["features"] = torch.randn(b, v, 16, H // 4, W // 4, generator=g).requires_grad_(True)
    return out


def test_terms_follow_the_config():
    ov = overlap_indices(load_rig("nuscenes"), H // 4, W // 4, 32)
    gt_terms = {"silog", "bin_nll", "sigma_nll"}
    expect = {"supervised": gt_terms, "ci_kd": gt_terms | {"ci_kl", "ci_depth"}, "vr_kd": gt_terms | {"vr_feat"},
              "full": gt_terms | {"ci_kl", "ci_depth", "vr_feat"}}
    for name, cfg in ablation_presets().items():
        total, terms = distillation_loss(fake_out(), _batch(), cfg, ov)
        assert set(terms) == expect[name], name
        assert all(isinstance(v, float) and math.isfinite(v) for v in terms.values())
        assert float(total.detach()) == pytest.approx(sum(getattr(cfg, "w_" + k) * terms[k] for k in terms), rel=1e-5)
    # a supervised config needs neither teacher nor overlap
    distillation_loss(fake_out(), {"gt": _batch()["gt"]}, ablation_presets()["supervised"])
    with pytest.raises(ValueError, match="teacher"):
        distillation_loss(fake_out(), {"gt": _batch()["gt"]}, DistillConfig())
    with pytest.raises(ValueError, match="fsmde teach --features"):  # vr_feat never silently skipped
        distillation_loss(fake_out(), _batch(teacher_features=False), DistillConfig(), ov)
    with pytest.raises(ValueError, match="overlap"):
        distillation_loss(fake_out(), _batch(), DistillConfig())
    with pytest.raises(ValueError, match="gt"):
        distillation_loss(fake_out(), {"gt": torch.zeros(1, 6, H, W + 1)}, ablation_presets()["supervised"])


def test_a_teacher_only_set_contributes_no_gt_term_and_a_labelled_one_all_of_them():
    ov = overlap_indices(load_rig("nuscenes"), H // 4, W // 4, 32)
    cfg = DistillConfig(w_bins=0.1)
    _, labelled = distillation_loss(fake_out(), _batch(), cfg, ov)
    assert set(labelled) == set(GT_TERMS) | {"ci_kl", "vr_feat"}
    out = fake_out()
    total, teacher_only = distillation_loss(out, dict(_batch(), gt=torch.zeros(1, 6, H, W)), cfg, ov)
    assert set(teacher_only) == {"ci_kl", "vr_feat"}  # the KD from the teacher alone, aligned by the student
    total.backward()
    assert math.isfinite(float(total.detach())) and torch.isfinite(out["logits"].grad).all()
    assert out["centres"].grad is None or float(out["centres"].grad.abs().sum()) == 0  # no GT: no metric scale


def test_a_few_steps_lower_the_total(student_batch):
    _, batch = student_batch
    torch.manual_seed(1)
    model = create_student("fsmde_mnv3l", num_bins=8)
    model.train()
    ov = overlap_indices(load_rig("nuscenes"), H // 4, W // 4, 32)
    cfg = DistillConfig()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)

    def step():
        total, _ = distillation_loss(model(batch["images"], batch["focal_px"]), batch, cfg, ov)
        opt.zero_grad()
        total.backward()
        opt.step()
        return float(total.detach())

    losses = [step() for _ in range(12)]
    assert all(np.isfinite(losses))
    assert min(losses[-3:]) < 0.8 * losses[0], losses
