"""Depth metrics: the standard monocular-depth errors and surround cross-view consistency.

Ground truth is valid where it is finite and min_depth < gt < max_depth (NaN, inf and 0 are
"no measurement", as in REP-118 images and sparse lidar maps). A NaN prediction at a valid
ground-truth pixel is an error, never averaged away silently. Predictions are clamped to
[min_depth, max_depth]; with median scaling each image is first scaled by
median(gt) / median(pred) over its valid pixels (the scale-aligned protocol).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fsmde_ros.geometry.projection import reproject_depth

METRIC_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
# Evaluation depth caps [m] of the surround-depth protocol (SurroundDepth, VFDepth): DDAD's lidar
# reaches 250 m and is capped at 200 m; nuScenes' 32-beam lidar is sparse beyond ~80 m.
MAX_DEPTH_M = {"ddad": 200.0, "nuscenes": 80.0}
DEFAULT_EVAL_MAX_DEPTH_M = MAX_DEPTH_M["nuscenes"]  # any other rig: the common 80 m cap
# Closest valid ground truth [m]; returns nearer than this are lidar noise or the ego vehicle.
MIN_DEPTH_M = 0.1
# Agreement thresholds of the a1/a2/a3 accuracies: max(gt/pred, pred/gt) < 1.25**k.
DELTA_THRESHOLD = 1.25


def _check_pair(pred: np.ndarray, gt: np.ndarray, min_depth: float, max_depth: float) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {pred.shape} vs {gt.shape}")
    if pred.ndim not in (2, 3):
        raise ValueError(f"depth maps must be [H,W] or [N,H,W], got shape {pred.shape}")
    if not 0 <= min_depth < max_depth:
        raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")


def _image_metrics(pred: np.ndarray, gt: np.ndarray, min_depth: float, max_depth: float,
                   median_scaling: bool, label: str) -> dict[str, float]:
    """Metrics of one image; pred, gt [H,W] metres. Empty dict when no valid GT."""
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
    n = int(valid.sum())
    if n == 0:
        return {}
    p = pred[valid].astype(np.float64)
    g = gt[valid].astype(np.float64)
    if np.isnan(p).any():
        raise ValueError(f"{label}: prediction is NaN at {int(np.isnan(p).sum())} of {n} pixels with valid "
                         "ground truth; fix the model output (metrics would be silently wrong)")
    if median_scaling:
        p = p * (np.median(g) / np.median(p))
    p = np.clip(p, min_depth, max_depth)
    thresh = np.maximum(g / p, p / g)
    diff = g - p
    return {
        "abs_rel": float(np.mean(np.abs(diff) / g)),
        "sq_rel": float(np.mean(diff ** 2 / g)),
        "rmse": float(np.sqrt(np.mean(diff ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2))),
        "a1": float(np.mean(thresh < DELTA_THRESHOLD)),
        "a2": float(np.mean(thresh < DELTA_THRESHOLD ** 2)),
        "a3": float(np.mean(thresh < DELTA_THRESHOLD ** 3)),
        "valid_pixels": n,
    }


def compute_depth_metrics(pred: np.ndarray, gt: np.ndarray, min_depth: float = MIN_DEPTH_M,
                          max_depth: float = DEFAULT_EVAL_MAX_DEPTH_M, median_scaling: bool = False,
                          camera_names: Sequence[str] | None = None) -> dict:
    """Standard depth metrics of pred vs gt, [H,W] or [N,H,W] (N cameras), metres.

    Returns the seven METRIC_KEYS averaged over the cameras that have valid ground truth,
    plus `per_camera` (a dict per camera, with `valid_pixels`; empty for a camera without
    valid GT) and `cameras_evaluated`. Raises ValueError when no pixel has valid GT.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    _check_pair(pred, gt, min_depth, max_depth)
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    names = list(camera_names) if camera_names is not None else [f"camera {i}" for i in range(len(pred))]
    if len(names) != len(pred):
        raise ValueError(f"{len(names)} camera names for {len(pred)} depth maps")
    per_camera = [_image_metrics(p, g, min_depth, max_depth, median_scaling, name)
                  for p, g, name in zip(pred, gt, names)]
    scored = [m for m in per_camera if m]
    if not scored:
        raise ValueError(f"no ground-truth pixel lies in ({min_depth}, {max_depth}) m: nothing to evaluate")
    out: dict = {k: float(np.mean([m[k] for m in scored])) for k in METRIC_KEYS}
    out["per_camera"] = dict(zip(names, per_camera))
    out["cameras_evaluated"] = len(scored)
    return out


class DepthMetricAccumulator:
    """Averages per-image metrics over a dataset, per camera then over cameras (the usual protocol)."""

    def __init__(self, camera_names: Sequence[str], min_depth: float = MIN_DEPTH_M, max_depth: float = DEFAULT_EVAL_MAX_DEPTH_M,
                 median_scaling: bool = False):
        self.camera_names = list(camera_names)
        self.min_depth, self.max_depth, self.median_scaling = min_depth, max_depth, median_scaling
        self._sums = {name: dict.fromkeys(METRIC_KEYS, 0.0) for name in self.camera_names}
        self._counts = dict.fromkeys(self.camera_names, 0)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one surround set: pred, gt [N,H,W] metres, N = number of cameras."""
        pred, gt = np.asarray(pred), np.asarray(gt)
        _check_pair(pred, gt, self.min_depth, self.max_depth)
        if pred.ndim != 3 or len(pred) != len(self.camera_names):
            raise ValueError(f"expected [{len(self.camera_names)},H,W], got {pred.shape}")
        for name, p, g in zip(self.camera_names, pred, gt):
            m = _image_metrics(p, g, self.min_depth, self.max_depth, self.median_scaling, name)
            if m:
                self._counts[name] += 1
                for k in METRIC_KEYS:
                    self._sums[name][k] += m[k]

    def result(self) -> dict:
        """Averaged metrics (METRIC_KEYS), `per_camera` averages and `images` counted per camera."""
        per_camera = {n: ({k: s / self._counts[n] for k, s in self._sums[n].items()} if self._counts[n] else {})
                      for n, s in self._sums.items()}
        scored = [m for m in per_camera.values() if m]
        if not scored:
            raise ValueError("no image with valid ground truth was added")
        out: dict = {k: float(np.mean([m[k] for m in scored])) for k in METRIC_KEYS}
        out["per_camera"] = per_camera
        out["images"] = dict(self._counts)
        return out


def cross_view_consistency(depths: np.ndarray, rig, max_depth: float = DEFAULT_EVAL_MAX_DEPTH_M) -> dict:
    """Disagreement of adjacent views' depths where they overlap, depths [N,H,W] metres.

    For each neighbour pair (i, j) of `rig` (resized to the depth resolution if needed), both
    directions: camera i's points are reprojected into camera j and compared with camera j's
    own depth at those pixels. Reports the median absolute difference [m] and the median
    relative difference |d_i->j - d_j| / d_j per pair and averaged (medians, so that the few
    pixels occluded in one view but not the other do not dominate), plus the overlap pixel counts.
    """
    depths = np.asarray(depths, dtype=np.float32)
    if depths.ndim != 3 or len(depths) != len(rig):
        raise ValueError(f"depths must be [{len(rig)},H,W] for rig {rig.name!r}, got {depths.shape}")
    h, w = depths.shape[1:]
    if any(size != (w, h) for size in rig.sizes):
        rig = rig.resized(w, h)
    with np.errstate(invalid="ignore"):
        clean = np.where(np.isfinite(depths) & (depths > 0) & (depths <= max_depth), depths, np.nan)
    pairs = {}
    for i, j in rig.neighbours:
        abs_m, rel, count = [], [], 0
        for a, b in ((i, j), (j, i)):
            ca, cb = rig.cameras[a], rig.cameras[b]
            warped = reproject_depth(clean[a], ca.K, ca.T_base_cam, cb.K, cb.T_base_cam, (w, h))
            both = np.isfinite(warped) & np.isfinite(clean[b])
            if both.any():
                diff = np.abs(warped[both] - clean[b][both])
                abs_m.append(diff)
                rel.append(diff / clean[b][both])
                count += int(both.sum())
        key = f"{rig.names[i]}-{rig.names[j]}"
        if count:
            pairs[key] = {"abs_m": float(np.median(np.concatenate(abs_m))),
                          "rel": float(np.median(np.concatenate(rel))), "pixels": count}
        else:
            pairs[key] = {"abs_m": float("nan"), "rel": float("nan"), "pixels": 0}
    measured = [p for p in pairs.values() if p["pixels"]]
    return {
        "abs_m": float(np.mean([p["abs_m"] for p in measured])) if measured else float("nan"),
        "rel": float(np.mean([p["rel"] for p in measured])) if measured else float("nan"),
        "pairs": pairs,
    }


# Sparsification protocol (Poggi et al., CVPR 2020): fractions of an image's pixels removed, most
# uncertain first, 0, 2 %, ..., 98 %; curves are normalised by the image's error with nothing removed.
SPARSIFICATION_FRACTIONS = np.arange(50) / 50.0
SPEARMAN_PIXELS_PER_IMAGE = 2000  # lidar pixels per image kept for the pooled rank correlation


def _remaining_mean(err_sorted: np.ndarray) -> np.ndarray:
    """Mean error after removing each fraction of the pixels from the end of err_sorted [P]."""
    keep = np.maximum(1, np.round(len(err_sorted) * (1.0 - SPARSIFICATION_FRACTIONS)).astype(np.int64))
    return np.cumsum(err_sorted)[keep - 1] / keep


def sparsification_curves(err: np.ndarray, uncertainty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(model, oracle) curves [len(SPARSIFICATION_FRACTIONS)] of one image's per-pixel errors err [P]:
    the mean error of the pixels left after removing the most uncertain (model) or the largest-error
    (oracle) fraction, normalised by the mean error of all pixels (a random ranking's expected curve is 1)."""
    err, uncertainty = np.asarray(err, np.float64), np.asarray(uncertainty, np.float64)
    if err.shape != uncertainty.shape or err.ndim != 1 or len(err) == 0:
        raise ValueError(f"err and uncertainty must be non-empty [P] of the same size, got {err.shape}, {uncertainty.shape}")
    base = max(float(err.mean()), 1e-12)
    model = _remaining_mean(err[np.argsort(uncertainty, kind="stable")]) / base
    oracle = _remaining_mean(np.sort(err)) / base
    return model, oracle


def _ranks(x: np.ndarray) -> np.ndarray:
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two samples [P] (ties broken by order; NaN for fewer than 3 values)."""
    if len(a) < 3:
        return float("nan")
    ra, rb = _ranks(np.asarray(a)), _ranks(np.asarray(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / max(np.sqrt((ra * ra).sum() * (rb * rb).sum()), 1e-12))


class SparsificationAccumulator:
    """Does the model's uncertainty rank its errors? Per image: sparsification curves of abs_rel with
    pixels ranked by depth_std / depth; over the dataset: AUSE (area between the model's and the
    oracle's curve), the same for a random ranking, AURG (area between random and model: > 0 is
    better than random) and Spearman(std/depth, abs_rel) pooled over a sample of every image's pixels."""

    def __init__(self, min_depth: float = MIN_DEPTH_M, max_depth: float = DEFAULT_EVAL_MAX_DEPTH_M, seed: int = 0):
        self.min_depth, self.max_depth = min_depth, max_depth
        self._model, self._oracle, self._unc, self._err = [], [], [], []
        self._rng = np.random.default_rng(seed)

    def update(self, pred: np.ndarray, std: np.ndarray, gt: np.ndarray) -> None:
        """Add images: pred, std, gt [N,H,W] (or [H,W]) metres; only pixels with valid GT count."""
        pred, std, gt = (np.asarray(a, np.float64) for a in (pred, std, gt))
        if not pred.shape == std.shape == gt.shape:
            raise ValueError(f"pred, std and gt shapes differ: {pred.shape}, {std.shape}, {gt.shape}")
        for p, s, g in zip(*(a.reshape(-1, *a.shape[-2:]) for a in (pred, std, gt))):
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(g) & (g > self.min_depth) & (g < self.max_depth) & np.isfinite(p) & np.isfinite(s)
            if ok.sum() < 2:
                continue
            pc = np.clip(p[ok], self.min_depth, self.max_depth)
            err, unc = np.abs(pc - g[ok]) / g[ok], s[ok] / pc
            model, oracle = sparsification_curves(err, unc)
            self._model.append(model)
            self._oracle.append(oracle)
            pick = self._rng.permutation(len(err))[:SPEARMAN_PIXELS_PER_IMAGE]
            self._unc.append(unc[pick])
            self._err.append(err[pick])

    def result(self) -> dict:
        """ause, ause_random, aurg, spearman and the mean curves (fractions, model, oracle, random)."""
        if not self._model:
            raise ValueError("no image with valid ground truth was added")
        model, oracle = np.mean(self._model, axis=0), np.mean(self._oracle, axis=0)
        f = SPARSIFICATION_FRACTIONS
        area = lambda y: float(np.trapz(y, f))  # noqa: E731  (np.trapz: numpy < 2)
        return {"ause": area(model - oracle), "ause_random": area(1.0 - oracle), "aurg": area(1.0 - model),
                "spearman": spearman(np.concatenate(self._unc), np.concatenate(self._err)), "images": len(self._model),
                "curve": {"fractions": f.tolist(), "model": model.tolist(), "oracle": oracle.tolist(),
                          "random": np.ones_like(f).tolist()}}
