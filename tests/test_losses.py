"""Distillation losses: SILog, bin Chamfer, cross-interaction KD, view-relational KD, the config and the total."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsmde_ros.distill.losses import (DistillConfig, ablation_presets, align_teacher, bin_chamfer_loss,
                                      cross_interaction_kd, distillation_loss, downsample_depth, overlap_indices,
                                      silog_loss, teacher_bin_probs)
from fsmde_ros.distill.relational import depth_descriptors, relation_matrix, view_relational_kd
from fsmde_ros.geometry import overlap_mask
from fsmde_ros.model.student import create_student
from fsmde_ros.rig import load_rig

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


def fake_out(b=1, v=6, n=8, seed=0, requires_grad=True):
    """A student-like output dict: logits [B,V,N,h,w], centres [B,V,N], depth [B,V,H,W]."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, v, n, H // 4, W // 4, generator=g).requires_grad_(requires_grad)
    centres = torch.sort(torch.exp(torch.rand(b, v, n, generator=g) * math.log(100.0)) + 0.5, dim=-1).values
    centres.requires_grad_(requires_grad)
    probs = torch.softmax(logits, dim=2)
    depth = torch.einsum("bvnhw,bvn->bvhw", probs, centres)
    depth = F.interpolate(depth.flatten(0, 1)[:, None], size=(H, W), mode="bilinear").reshape(b, v, H, W)
    feats = torch.randn(b, v, 16, H // 4, W // 4, generator=g).requires_grad_(requires_grad)
    return {"logits": logits, "probs": probs, "centres": centres, "depth": depth, "features": feats}


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
@pytest.mark.parametrize("teacher_size", [(H, W), (H // 2, W // 2), (2 * H, 2 * W)])
def test_align_teacher_recovers_the_student_scale(teacher_size):
    b, v = 2, 6
    depth = smooth_depth(b, v, H, W)
    g = torch.Generator().manual_seed(7)
    a = 0.5 + 20 * torch.rand(b, v, 1, 1, generator=g)
    off = -0.3 + 2 * torch.rand(b, v, 1, 1, generator=g)
    teacher = a / smooth_depth(b, v, *teacher_size) + off  # same field at the teacher's resolution
    aligned = align_teacher(teacher, depth.clone().requires_grad_(True))  # no grad although the student has
    assert aligned.shape == depth.shape and not aligned.requires_grad and (aligned > 0).all()
    assert float(((aligned - depth).abs() / depth).median()) < 0.02


def test_align_teacher_ignores_teacher_outliers():
    depth = smooth_depth(2, 6, H, W)
    g = torch.Generator().manual_seed(8)
    teacher = (0.5 + 20 * torch.rand(2, 6, 1, 1, generator=g)) / depth + 0.5
    bad = torch.rand(teacher.shape, generator=g) < 0.2  # 20 % of the pixels are garbage
    corrupt = torch.where(bad, 50 * torch.rand(teacher.shape, generator=g), teacher)
    err = lambda aligned: float(((aligned - depth).abs() / depth)[~bad].median())  # noqa: E731
    assert err(align_teacher(corrupt, depth)) < 0.01
    assert err(align_teacher(corrupt, depth, trim_iters=0)) > 0.05  # plain median/MAD matching is biased


def test_align_teacher_clamps_to_the_bin_range():
    depth = smooth_depth(1, 6, H, W)
    aligned = align_teacher(1.0 / depth, depth, min_depth=5.0, max_depth=30.0)
    assert float(aligned.min()) >= 5.0 - 1e-4 and float(aligned.max()) <= 30.0 + 1e-3


def test_align_teacher_takes_the_shape_from_gt_and_the_scale_from_the_student():
    """An untrained student with a flat, wrongly scaled depth must not flatten its own target: the GT-fitted
    teacher keeps the true near/far structure (log-depth spread) and sits at the student's median depth."""
    b, v = 1, 6
    true = smooth_depth(b, v, H, W, lo=2.0, hi=80.0)
    teacher = 3.0 / true + 0.4  # relative: unknown scale and shift of inverse depth
    student = torch.full_like(true, 7.0) * (1 + 0.01 * torch.rand(true.shape, generator=torch.Generator().manual_seed(3)))
    lidar = sparse(true, frac=0.05)
    aligned = align_teacher(teacher, student, gt=lidar)
    log_err = torch.log(aligned) - torch.log(true)
    assert float(log_err.flatten(2).std(-1).max()) < 0.02  # the true shape, up to one factor per image...
    assert torch.allclose(torch.log(aligned).flatten(2).median(-1).values, torch.log(torch.tensor(7.0)), atol=0.03)  # ...the student's
    from_student = align_teacher(teacher, student)  # the shape from the flat student: nearly flat too
    assert float(torch.log(from_student).std()) < 0.2 * float(torch.log(true).std())
    metric = align_teacher(teacher, student, gt=lidar, scale_from_student=False)  # align_scale_from='gt'
    assert float(((metric - true).abs() / true).max()) < 0.01


def test_align_teacher_falls_back_to_the_student_without_enough_gt():
    depth = smooth_depth(1, 6, H, W)
    teacher = 2.0 / depth + 0.1
    few = torch.zeros_like(depth)
    few[0, 2, 10, :20] = depth[0, 2, 10, :20] * 3  # 20 returns in view 2, none elsewhere (a 3x wrong GT scale)
    aligned = align_teacher(teacher, depth, gt=few, min_gt_points=64)
    assert float(((aligned - depth).abs() / depth).median()) < 0.02
    with pytest.raises(ValueError, match="gt must be"):
        align_teacher(teacher, depth, gt=few[:, :3])


def test_cross_interaction_kd_is_invariant_to_the_teachers_scale_and_shift():
    out = fake_out()
    teacher = 2.0 / smooth_depth(1, 6, 48, 72, seed=9) + 0.05
    gt = sparse(smooth_depth(1, 6, H, W, seed=9))
    cfg = DistillConfig()
    t1 = cross_interaction_kd(out, teacher, gt, cfg)
    t2 = cross_interaction_kd(out, 7 * teacher + 0.3, gt, cfg)
    assert set(t1) == {"ci_kl", "ci_depth"}
    for k in t1:
        assert float(t1[k].detach()) == pytest.approx(float(t2[k].detach()), rel=1e-4, abs=1e-6)


def test_ci_kl_is_minimal_when_the_student_follows_the_teacher():
    out = fake_out()
    aligned = smooth_depth(1, 6, H, W, seed=2)
    q, log_q = teacher_bin_probs(downsample_depth(aligned, (H // 4, W // 4)), out["centres"], 0.02)
    assert q.shape == out["logits"].shape and torch.allclose(q.sum(2), torch.ones(()))
    gt = torch.zeros(1, 6, H, W)
    cfg = DistillConfig(w_ci_depth=0)
    matched = dict(out, logits=log_q.clone())
    kl = lambda o: float(cross_interaction_kd(o, None, gt, cfg, aligned=aligned)["ci_kl"].detach())  # noqa: E731
    kl_match, kl_random = kl(matched), kl(out)
    kl_flat = kl(dict(out, logits=0.5 * log_q))  # the right mode, too flat
    assert abs(kl_match) < 1e-5 and kl_flat > 0.01 and kl_random > 0.5
    # the soft assignment peaks at the bin nearest in log depth
    d = torch.tensor([[[[10.0]]]])
    c = torch.tensor([[[1.0, 9.0, 12.0, 50.0]]])
    assert int(teacher_bin_probs(d, c, 0.02)[0].argmax(2)) == 1


@pytest.mark.parametrize("depth", [3.0, 10.0, 20.0, 70.0, 140.0])
def test_teacher_bin_probs_keep_the_teachers_depth_across_wide_bin_gaps(depth):
    """Adaptive bins crowd near the car and leave x2-x4 gaps far out: the default assignment must not
    snap the teacher to a centre there (its expectation is the teacher's depth), the kernel does."""
    c = torch.tensor([[[1.0, 2.0, 4.0, 4.2, 4.4, 4.6, 4.8, 5.0, 15.0, 60.0, 200.0]]])
    d = torch.full((1, 1, 2, 3), depth)
    q, log_q = teacher_bin_probs(d, c, 0.02)
    assert torch.allclose(q.sum(2), torch.ones(())) and bool((q >= 0).all())
    expect = (q * c[..., None, None]).sum(2)
    assert torch.allclose(expect, d, rtol=1e-4)
    assert torch.allclose(log_q.exp(), q, atol=1e-6)
    kernel = (teacher_bin_probs(d, c, 0.02, "kernel")[0] * c[..., None, None]).sum(2)
    if depth in (10.0, 20.0, 140.0):  # inside a wide gap, away from a centre
        assert float((kernel / d - 1).abs().max()) > 0.2


def test_teacher_bin_probs_over_dense_bins_spread_by_the_temperature():
    c = torch.exp(torch.linspace(math.log(0.5), math.log(250.0), 64))[None, None]
    gap = math.log(500.0) / 63  # log spacing of the bins
    for tau in (0.005, 0.02, 0.08):
        q, _ = teacher_bin_probs(torch.full((1, 1, 1, 1), 20.0), c, tau)
        lc, w = torch.log(c[0, 0]), q[0, 0, :, 0, 0]
        spread = float(torch.sqrt((w * (lc - (w * lc).sum()) ** 2).sum()))
        # the kernel's std in log depth, widened by the interpolation between neighbours (~gap^2 / 6)
        assert spread == pytest.approx(math.sqrt(tau / 2 + gap ** 2 / 6), rel=0.1)
    with pytest.raises(ValueError, match="assignment"):
        teacher_bin_probs(torch.ones(1, 1, 1, 1), c, 0.02, "nearest")


# -- gradients through the real student -------------------------------------------------------------
@pytest.fixture(scope="module")
def student_batch():
    torch.manual_seed(0)
    model = create_student("fsmde_mnv3l", num_bins=8)
    g = torch.Generator().manual_seed(0)
    images = F.interpolate(torch.rand(6, 3, 8, 12, generator=g), size=(H, W), mode="bilinear")[None]
    depth = smooth_depth(1, 6, H, W, seed=11)
    batch = {"images": images, "focal_px": torch.full((1, 6), 60.0), "gt": sparse(depth, 0.2),
             "teacher": 3.0 / smooth_depth(1, 6, 32, 48, seed=11) + 0.2}
    return model, batch


def _grads(model, loss):
    params = [model.head.logits.weight, model.head.widths[-1].weight]
    return [None if gr is None else float(gr.abs().sum())
            for gr in torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)]


def test_gradients_reach_probs_from_ci_kl_and_centres_from_gt_terms(student_batch):
    model, batch = student_batch
    model.train()
    out = model(batch["images"], batch["focal_px"])
    ci = cross_interaction_kd(out, batch["teacher"], batch["gt"], DistillConfig())
    logits_g, widths_g = _grads(model, ci["ci_kl"])
    assert logits_g > 0 and widths_g is None  # the teacher teaches structure (probabilities) only
    logits_g, widths_g = _grads(model, ci["ci_depth"])
    assert logits_g is None and widths_g > 0  # the GT teaches scale (centres) only
    logits_g, widths_g = _grads(model, bin_chamfer_loss(out["centres"], batch["gt"]))
    assert logits_g is None and widths_g > 0
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


def test_view_relational_kd_zero_for_identical_relations_positive_otherwise():
    h, w = H // 4, W // 4
    ov = overlap_indices(load_rig("nuscenes"), h, w, 32)
    cfg = DistillConfig()
    out = fake_out()
    feats = out["features"]
    teacher_depth = smooth_depth(1, 6, h, w, seed=3)
    same = view_relational_kd(feats, teacher_depth, ov, cfg, teacher_features=feats.detach().clone())
    assert float(same["vr_feat"].detach()) == 0.0
    desc = depth_descriptors(teacher_depth, cfg.vr_patch)
    assert float(view_relational_kd(desc, teacher_depth, ov, cfg)["vr_depth"]) == 0.0
    # scale-invariant: the depth relation ignores the teacher's global scale
    assert float(view_relational_kd(desc, 3 * teacher_depth, ov, cfg)["vr_depth"]) < 1e-5
    other = torch.randn(1, 6, 5, 8, 12)  # teacher features at another resolution and width
    terms = view_relational_kd(feats, teacher_depth, ov, cfg, teacher_features=other)
    assert float(terms["vr_feat"].detach()) > 0.01 and float(terms["vr_depth"].detach()) > 0.01
    (terms["vr_feat"] + terms["vr_depth"]).backward()
    assert feats.grad.abs().sum() > 0
    assert "vr_feat" not in view_relational_kd(feats, teacher_depth, ov, cfg)  # no teacher features
    with pytest.raises(ValueError, match="teacher_depth"):
        view_relational_kd(feats, teacher_depth[..., :-1], ov, cfg)


# -- config and the total ---------------------------------------------------------------------------
def test_config_from_dict_and_presets():
    with pytest.raises(ValueError, match="w_unknown"):
        DistillConfig.from_dict({"w_unknown": 1})
    with pytest.raises(ValueError, match="tau_bins"):
        DistillConfig(tau_bins=0)
    with pytest.raises(ValueError, match="align_shape_from"):
        DistillConfig(align_shape_from="teacher")
    cfg = DistillConfig.from_dict({"w_bins": 0.0, "tau_bins": 0.05})
    assert cfg.w_bins == 0 and cfg.tau_bins == 0.05 and DistillConfig.from_dict(cfg.to_dict()) == cfg
    presets = ablation_presets()
    assert list(presets) == ["supervised", "ci_kd", "vr_kd", "full"]
    assert presets["full"] == DistillConfig()


def _batch(seed=0, teacher_features=False):
    depth = smooth_depth(1, 6, H, W, seed=seed)
    batch = {"gt": sparse(depth, 0.2), "teacher": 2.0 / depth + 0.1}
    if teacher_features:
        batch["teacher_features"] = torch.randn(1, 6, 12, 8, 12)
    return batch


def test_terms_follow_the_config():
    ov = overlap_indices(load_rig("nuscenes"), H // 4, W // 4, 32)
    expect = {"supervised": {"silog", "bins"}, "ci_kd": {"silog", "bins", "ci_kl", "ci_depth"},
              "vr_kd": {"silog", "bins", "vr_feat", "vr_depth"},
              "full": {"silog", "bins", "ci_kl", "ci_depth", "vr_feat", "vr_depth"}}
    for name, cfg in ablation_presets().items():
        total, terms = distillation_loss(fake_out(), _batch(teacher_features=True), cfg, ov)
        assert set(terms) == expect[name], name
        assert all(isinstance(v, float) and math.isfinite(v) for v in terms.values())
        weights = {k: getattr(cfg, "w_" + k) for k in terms}
        assert float(total.detach()) == pytest.approx(sum(weights[k] * terms[k] for k in terms), rel=1e-5)
    _, terms = distillation_loss(fake_out(), _batch(), DistillConfig(w_bins=0, w_ci_kl=0), ov)
    assert set(terms) == {"silog", "ci_depth", "vr_depth"}  # no teacher features: no vr_feat
    # a supervised config needs neither teacher nor overlap
    distillation_loss(fake_out(), {"gt": _batch()["gt"]}, ablation_presets()["supervised"])
    with pytest.raises(ValueError, match="teacher"):
        distillation_loss(fake_out(), {"gt": _batch()["gt"]}, DistillConfig())
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
    assert math.isfinite(float(total.detach())) and terms["silog"] == 0 and terms["bins"] == 0 and terms["ci_depth"] == 0
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
