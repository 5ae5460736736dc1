"""Distillation losses: SILog, bin Chamfer, bin likelihood, cross-interaction KD, view-relational KD, the config, the total."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsmde_ros.data.synthetic import SyntheticSurround
from fsmde_ros.distill.config import DistillConfig, ablation_presets
from fsmde_ros.distill.cross_interaction import (
    cross_interaction_kd,
    register_to_student,
    teacher_bin_position,
    teacher_bin_probs,
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
    std_laplace_nll,
)
from fsmde_ros.geometry.projection import overlap_mask
from fsmde_ros.geometry.rig import load_rig
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
N_BINS = 16
BIN_GRID = (H // 4, W // 4)


def teacher_of(depth, scale=2.0, shift=0.1):
    """A relative teacher: an affine map of inverse depth (larger = nearer)."""
    return scale / depth + shift


@pytest.mark.parametrize("binning", ["log", "disparity", "rank"])
def test_q_is_the_same_for_the_teacher_under_any_positive_affine_map_of_its_disparity(binning):
    cfg = DistillConfig(ci_binning=binning)
    t = teacher_of(smooth_depth(2, 6, 2 * H, 2 * W, seed=3))
    ref = teacher_bin_probs(t, N_BINS, BIN_GRID, cfg)
    for a, b in ((0.01, 0.0), (37.0, 5.0), (1.0, -0.3)):
        other = teacher_bin_probs(a * t + b, N_BINS, BIN_GRID, cfg)
        assert torch.equal(other.informative, ref.informative)
        torch.testing.assert_close(other.q, ref.q, atol=1e-4, rtol=0)
    assert ref.q.shape == (2, 6, N_BINS, *BIN_GRID)
    torch.testing.assert_close(ref.q.sum(dim=2), torch.ones(2, 6, *BIN_GRID))


@pytest.mark.parametrize("binning", ["log", "disparity", "rank"])
def test_bin_position_grows_with_depth_and_the_sky_is_not_informative(binning):
    depth = smooth_depth(1, 6, *BIN_GRID, seed=4)
    t = teacher_of(depth)
    t[..., :3, :] = 0.1  # the top rows: sky (disparity 0 plus the teacher's shift)
    z, informative = teacher_bin_position(t, N_BINS, BIN_GRID, binning, far_floor=0.02)
    assert not informative[..., :3, :].any() and informative[..., 3:, :].float().mean() > 0.95
    assert (z[..., :3, :] == N_BINS - 0.5).all()  # the farthest bin
    for v in range(6):  # per view: farther pixels sit in farther bins (ties of the field aside)
        ok = informative[0, v]
        ranks_z = torch.argsort(torch.argsort(z[0, v][ok])).float()
        ranks_d = torch.argsort(torch.argsort(depth[0, v][ok])).float()
        assert torch.corrcoef(torch.stack([ranks_z, ranks_d]))[0, 1] > 0.98, v
    assert z.min() >= 0 and z.max() < N_BINS


def _student_out(centres, logits, depth_hw=(H, W)):
    probs = torch.softmax(logits, dim=2)
    depth = torch.einsum("bvnhw,bvn->bvhw", probs, centres)
    depth = F.interpolate(depth.flatten(0, 1)[:, None], size=depth_hw, mode="bilinear").reshape(*depth.shape[:2], *depth_hw)
    return {"centres": centres, "logits": logits, "probs": probs, "depth": depth}


def test_q_depends_on_neither_the_students_centres_nor_the_gt():
    """The ill-posed KD of before built q from the student's own centres and the image's lidar."""
    g = torch.Generator().manual_seed(0)
    depth = smooth_depth(1, 6, H, W, seed=5)
    batch = {"teacher": teacher_of(depth), "gt": sparse(depth, 0.2)}
    logits = torch.randn(1, 6, N_BINS, *BIN_GRID, generator=g)
    narrow = torch.linspace(1.0, 30.0, N_BINS).repeat(1, 6, 1)
    wide = torch.exp(torch.linspace(math.log(0.6), math.log(200.0), N_BINS)).repeat(1, 6, 1)
    cfg = ablation_presets()["ci_kd"]
    kl = [distillation_loss(_student_out(c, logits), batch, cfg)[1]["ci_kl"] for c in (narrow, wide)]
    assert kl[0] == pytest.approx(kl[1], rel=1e-6)  # same p, so the same KL only if q is the same
    other_gt = {**batch, "gt": sparse(depth * 1.7, 0.05, seed=9)}
    terms = [distillation_loss(_student_out(wide, logits), b, cfg)[1] for b in (batch, other_gt)]
    assert terms[0]["ci_kl"] == pytest.approx(terms[1]["ci_kl"], rel=1e-6)
    assert terms[0]["ci_depth"] != pytest.approx(terms[1]["ci_depth"], rel=1e-3)  # the GT does reach ci_depth


def test_kl_is_zero_when_the_student_follows_the_teacher():
    depth = smooth_depth(1, 6, H, W, seed=6)
    bins = teacher_bin_probs(teacher_of(depth), N_BINS, BIN_GRID, DistillConfig())
    centres = torch.linspace(1.0, 60.0, N_BINS).repeat(1, 6, 1)
    terms = cross_interaction_kd(_student_out(centres, bins.log_q.clone()), bins, sparse(depth), DistillConfig())
    assert abs(float(terms["ci_kl"])) < 1e-5
    flat = cross_interaction_kd(_student_out(centres, torch.zeros_like(bins.q)), bins, sparse(depth), DistillConfig())
    assert float(flat["ci_kl"]) > 0.5


def test_registration_moves_q_by_the_students_shift_and_keeps_its_shape():
    """On the log grid a depth scale is a shift of the bin axis: a student whose bins sit 3 bins off
    the teacher's anchor (but follows its structure) gets KL ~ 0 after registration, not before."""
    depth = smooth_depth(1, 6, H, W, seed=7, lo=4.0, hi=30.0)
    bins = teacher_bin_probs(teacher_of(depth), N_BINS, BIN_GRID, DistillConfig(tau_bins=2.0))
    shifted = teacher_bin_position(teacher_of(depth), N_BINS, BIN_GRID, "log")[0]
    inner = bins.informative & (shifted < N_BINS - 4)  # room to move 3 bins
    bins = bins._replace(informative=inner)
    itself = register_to_student(bins, bins.log_q, 2.0)  # registered to itself: (nearly) no shift
    assert (itself.position - bins.position)[inner].abs().max() < 0.1
    moved_p = _bins_at_shift(bins, 3.0)
    reg = register_to_student(bins, moved_p, 2.0)
    kl_before = float(((bins.q * (bins.log_q - moved_p)).sum(2)[inner]).mean())
    kl_after = float(((reg.q * (reg.log_q - moved_p)).sum(2)[inner]).mean())
    assert kl_before > 1.0 and kl_after < 0.05, (kl_before, kl_after)
    assert torch.allclose((reg.position - bins.position)[inner], torch.tensor(3.0), atol=0.1)


def _bins_at_shift(bins, shift):
    k = torch.arange(N_BINS, dtype=torch.float32)[:, None, None] + 0.5
    return torch.log_softmax(-((bins.position + shift)[:, :, None] - k) ** 2 / 2.0, dim=2)


@pytest.fixture(scope="module")
def synthetic_batch():
    item = SyntheticSurround("ddad", seed=5, height=H, width=W, frames=2)[1]
    return {"teacher": torch.from_numpy(item["teacher"])[None], "gt": torch.from_numpy(item["lidar_depth"])[None]}


@pytest.mark.parametrize("binning", ["log", "disparity", "rank"])
def test_with_q_fixed_the_centres_alone_can_fit_ci_depth(synthetic_batch, binning):
    """ci_depth is a real regression of the centres onto the GT: 200 Adam steps on the centres halve it."""
    cfg = DistillConfig(ci_binning=binning, w_ci_kl=0.0)
    bins = teacher_bin_probs(synthetic_batch["teacher"], N_BINS, BIN_GRID, cfg)
    log_c = torch.nn.Parameter(torch.linspace(math.log(0.6), math.log(200.0), N_BINS).repeat(1, 6, 1))
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


def test_std_nll_is_lowest_when_the_std_is_the_size_of_the_error():
    gt = sparse(smooth_depth(1, 6, H, W, seed=8), 0.3)
    err = 0.2
    depth = gt.clamp_min(1.0) * math.exp(err)  # a 20 % (log) error everywhere
    nll = {r: float(std_laplace_nll(depth, r * depth, gt)) for r in (0.05, err, 0.8)}
    assert nll[err] < nll[0.05] and nll[err] < nll[0.8]
    assert nll[err] == pytest.approx(1 + math.log(err), rel=1e-4)
    assert float(std_laplace_nll(depth, 0.2 * depth, torch.zeros_like(gt))) == 0.0


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


def _grads(model, loss):
    params = [model.head.logits.weight, model.head.widths.weight]
    return [None if gr is None else float(gr.abs().sum())
            for gr in torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)]


def test_centres_get_no_gradient_from_ci_kl_and_pixel_logits_none_from_ci_depth(student_batch):
    model, batch = student_batch
    model.train()
    out = model(batch["images"], batch["focal_px"])
    bins = teacher_bin_probs(batch["teacher"], out["logits"].shape[2], tuple(out["logits"].shape[-2:]), DistillConfig())
    ci = cross_interaction_kd(out, bins, batch["gt"], DistillConfig())
    logits_g, widths_g = _grads(model, ci["ci_kl"])
    assert logits_g > 0 and widths_g is None  # the teacher teaches structure (probabilities) only
    logits_g, widths_g = _grads(model, ci["ci_depth"])
    assert logits_g is None and widths_g > 0  # the GT teaches scale (centres) only
    logits_g, widths_g = _grads(model, bin_chamfer_loss(out["centres"], batch["gt"]))
    assert logits_g is None and widths_g > 0
    logits_g, widths_g = _grads(model, bin_nll_loss(torch.log_softmax(out["logits"], dim=2), out["centres"], batch["gt"]))
    assert logits_g > 0 and widths_g is None  # the likelihood shapes the distribution over the given centres
    logits_g, widths_g = _grads(model, silog_loss(out["depth"], batch["gt"]))
    assert logits_g > 0 and widths_g > 0


# -- view-relational KD -----------------------------------------------------------------------------
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
    with pytest.raises(ValueError, match="ci_binning"):
        DistillConfig(ci_binning="nearest")
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
    gt_terms = {"silog", "bins", "bin_nll"}
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


def test_total_is_finite_without_gt():
    ov = overlap_indices(load_rig("nuscenes"), H // 4, W // 4, 32)
    out = fake_out()
    batch = dict(_batch(), gt=torch.zeros(1, 6, H, W))
    total, terms = distillation_loss(out, batch, DistillConfig(), ov)
    total.backward()
    assert math.isfinite(float(total.detach()))
    assert terms["silog"] == terms["bins"] == terms["bin_nll"] == terms["ci_depth"] == 0
    assert torch.isfinite(out["logits"].grad).all() and torch.isfinite(out["centres"].grad).all()


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
