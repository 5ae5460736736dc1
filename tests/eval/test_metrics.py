"""Depth metrics against hand-computed values, NaN handling, and cross-view consistency."""
import math

import numpy as np
import pytest

from fsmde_ros.eval.metrics import (
    DepthMetricAccumulator,
    SparsificationAccumulator,
    compute_depth_metrics,
    cross_view_consistency,
    sparsification_curves,
    spearman,
)
from fsmde_ros.geometry.rig import load_rig
from tests.geometry.test_projection_and_cloud import _ground_depth


def test_metrics_match_hand_computed_example():
    # pixel 3 has no GT (0), pixel 4 is beyond max_depth: both are ignored
    pred = np.array([[2.0, 4.0, 7.0, 9.0, 50.0]])
    gt = np.array([[1.0, 5.0, 7.0, 0.0, 90.0]])
    m = compute_depth_metrics(pred, gt, min_depth=0.1, max_depth=80.0)
    assert m["abs_rel"] == pytest.approx((1.0 + 0.2 + 0.0) / 3)
    assert m["sq_rel"] == pytest.approx((1.0 + 0.2 + 0.0) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(2.0 / 3))
    assert m["rmse_log"] == pytest.approx(math.sqrt((math.log(0.5) ** 2 + math.log(1.25) ** 2) / 3))
    # ratios 2.0, 1.25 (not < 1.25), 1.0
    assert m["a1"] == pytest.approx(1 / 3)
    assert m["a2"] == pytest.approx(2 / 3)
    assert m["a3"] == pytest.approx(2 / 3)
    assert m["per_camera"]["camera 0"]["valid_pixels"] == 3


def test_median_scaling_removes_a_global_scale_and_clamping_applies():
    rng = np.random.default_rng(1)
    gt = rng.uniform(2, 60, size=(2, 20, 30))
    m = compute_depth_metrics(gt * 3.0, gt, max_depth=80.0)
    # without clamping abs_rel would be exactly 2; far pixels are clamped to 80 m
    assert m["abs_rel"] == pytest.approx(np.mean(np.minimum(3 * gt, 80.0) / gt - 1))
    assert m["abs_rel"] < 1.9
    scaled = compute_depth_metrics(gt * 3.0, gt, max_depth=80.0, median_scaling=True)
    assert scaled["abs_rel"] < 1e-9 and scaled["a1"] == 1.0


def test_per_camera_average_and_camera_without_gt():
    gt = np.full((3, 4, 4), 10.0)
    gt[2] = 0.0  # no lidar returns in camera 2
    pred = gt.copy()
    pred[0] *= 1.1
    m = compute_depth_metrics(pred, gt, camera_names=["a", "b", "c"])
    assert m["cameras_evaluated"] == 2 and m["per_camera"]["c"] == {}
    assert m["abs_rel"] == pytest.approx((0.1 + 0.0) / 2)


def test_nan_prediction_at_valid_gt_is_an_error_not_a_silent_number():
    gt = np.full((2, 4, 4), 10.0)
    pred = gt.copy()
    pred[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="camera 1.*NaN at 1 of 16"):
        compute_depth_metrics(pred, gt)
    # NaN in the ground truth means "no measurement" (REP-118) and is skipped
    gt[0, 0, 0] = np.nan
    pred[1, 2, 2] = 10.0
    assert compute_depth_metrics(pred, gt)["per_camera"]["camera 0"]["valid_pixels"] == 15


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="shapes differ"):
        compute_depth_metrics(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="no ground-truth pixel"):
        compute_depth_metrics(np.ones((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        compute_depth_metrics(np.ones((4, 4)), np.ones((4, 4)), min_depth=5, max_depth=1)


def test_accumulator_averages_images_per_camera():
    acc = DepthMetricAccumulator(["a", "b"], max_depth=80.0)
    gt = np.full((2, 4, 4), 10.0)
    acc.update(gt * 1.2, gt)
    acc.update(gt, gt)
    r = acc.result()
    assert r["abs_rel"] == pytest.approx(0.1) and r["images"] == {"a": 2, "b": 2}


def test_cross_view_consistency_is_zero_for_true_depth_and_sees_a_wrong_camera():
    rig = load_rig("nuscenes").resized(160, 90)
    depths = np.stack([_ground_depth(c) for c in rig.cameras]).astype(np.float32)
    good = cross_view_consistency(depths, rig)
    assert good["rel"] < 0.03 and all(p["pixels"] > 0 for p in good["pairs"].values())
    bad = depths.copy()
    bad[0] *= 1.3  # the front camera is 30 % too far
    worse = cross_view_consistency(bad, rig)
    assert worse["pairs"]["CAM_FRONT-CAM_FRONT_RIGHT"]["rel"] > 0.15
    assert worse["pairs"]["CAM_BACK_RIGHT-CAM_BACK"]["rel"] < 0.03
    # a full-resolution rig is resized to the depth resolution automatically
    assert cross_view_consistency(depths, load_rig("nuscenes"))["rel"] == pytest.approx(good["rel"])


# -- uncertainty: the sparsification protocol ------------------------------------------------------
def _noisy(seed=0, shape=(3, 40, 60)):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(2.0, 60.0, shape)
    sigma = rng.uniform(0.01, 0.4, shape)  # each pixel's true relative error scale
    return rng, gt, gt * np.exp(sigma * rng.normal(size=shape)), sigma


def test_an_uncertainty_that_knows_the_errors_beats_a_random_one():
    rng, gt, pred, sigma = _noisy()
    informed = SparsificationAccumulator(max_depth=80.0)
    informed.update(pred, sigma * pred, gt)
    random = SparsificationAccumulator(max_depth=80.0)
    random.update(pred, rng.uniform(size=gt.shape) * pred, gt)
    a, b = informed.result(), random.result()
    assert a["ause_random"] == pytest.approx(b["ause_random"])  # the oracle depends on the errors only
    assert a["ause"] < 0.6 * a["ause_random"] and a["aurg"] > 0.2 and a["spearman"] > 0.4
    assert b["ause"] == pytest.approx(b["ause_random"], abs=0.05) and abs(b["aurg"]) < 0.05 and abs(b["spearman"]) < 0.1
    assert a["images"] == 3 and len(a["curve"]["model"]) == len(a["curve"]["fractions"])


def test_sparsification_curves_of_a_perfect_and_an_inverted_ranking():
    err = np.array([0.5, 0.1, 0.3, 0.05, 0.2])
    model, oracle = sparsification_curves(err, err)  # ranked by the error itself: the oracle
    np.testing.assert_allclose(model, oracle)
    assert model[0] == pytest.approx(1.0) and np.all(np.diff(oracle) <= 1e-12)
    inverted, _ = sparsification_curves(err, -err)  # most certain where it is most wrong
    assert inverted[-1] > 1.0
    assert spearman(err, err) == pytest.approx(1.0) and spearman(err, -err) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same size"):
        sparsification_curves(err, err[:3])


def test_sparsification_counts_only_valid_gt():
    _, gt, pred, sigma = _noisy(1, (1, 20, 30))
    gt[0, :10] = 0.0  # no return
    acc = SparsificationAccumulator(max_depth=80.0)
    acc.update(pred, sigma * pred, gt)
    full = SparsificationAccumulator(max_depth=80.0)
    full.update(pred[:, 10:], (sigma * pred)[:, 10:], gt[:, 10:])
    assert acc.result()["ause"] == pytest.approx(full.result()["ause"])
    with pytest.raises(ValueError, match="no image"):
        SparsificationAccumulator().result()
