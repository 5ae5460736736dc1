"""`fsmde eval`: standard depth metrics and cross-view consistency of a student on a dataset.

The student runs through the same backends as the node (ONNX model or checkpoint), on the
dataset's images at the model's resolution; GT is the sparse lidar depth (the surround-depth
protocol) or, with dense_gt, the synthetic world's dense depth. Metric (no scaling) and
scale-aligned (per-image median scaling) results are reported separately, and the model's
uncertainty by the sparsification protocol (abs_rel, pixels ranked by depth_std / depth).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsmde_ros.eval.metrics import (
    DEFAULT_EVAL_MAX_DEPTH_M,
    MAX_DEPTH_M,
    METRIC_KEYS,
    MIN_DEPTH_M,
    DepthMetricAccumulator,
    SparsificationAccumulator,
    cross_view_consistency,
)
from fsmde_ros.model.contract import DepthPredictor


def evaluate(backend: DepthPredictor, dataset, max_depth: float | None = None, min_depth: float = MIN_DEPTH_M,
             dense_gt: bool = False, limit: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Metrics of `backend` on `dataset` (items at the backend's resolution)."""
    from tqdm import tqdm

    rig = dataset.rig
    max_depth = max_depth or MAX_DEPTH_M.get(rig.name, DEFAULT_EVAL_MAX_DEPTH_M)
    metric = DepthMetricAccumulator(rig.names, min_depth, max_depth)
    scaled = DepthMetricAccumulator(rig.names, min_depth, max_depth, median_scaling=True)
    sparsification = SparsificationAccumulator(min_depth, max_depth)
    consistency = []
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in tqdm(range(n), desc=f"eval {rig.name}", unit="set", disable=not progress):
        item = dataset[i]
        depth, std = backend.infer(item["images"], item["K"][:, 0, 0].astype(np.float32))
        gt = item["depth"] if dense_gt else item["lidar_depth"]
        metric.update(depth, gt)
        scaled.update(depth, gt)
        sparsification.update(depth, std, gt)
        consistency.append(cross_view_consistency(depth, rig, max_depth=max_depth))
    pairs = [p for c in consistency for p in c["pairs"].values() if p["pixels"]]
    try:
        uncertainty = sparsification.result()
    except ValueError:  # no image with two or more GT pixels: nothing to rank (a very sparse lidar)
        uncertainty = None
    return {
        "rig": rig.name, "sets": n, "backend": backend.name, "min_depth": min_depth, "max_depth": max_depth,
        "gt": "dense" if dense_gt else "lidar",
        "metric": metric.result(), "median_scaled": scaled.result(), "uncertainty": uncertainty,
        "consistency": {"abs_m": float(np.mean([p["abs_m"] for p in pairs])) if pairs else float("nan"),
                        "rel": float(np.mean([p["rel"] for p in pairs])) if pairs else float("nan")},
    }


def format_table(results: dict[str, Any]) -> str:
    """A Markdown table: one row per camera and the average, metric and median-scaled."""
    head = "| " + " | ".join(["camera", "scaling", *METRIC_KEYS]) + " |"
    rows = [head, "|" + "---|" * (len(METRIC_KEYS) + 2)]
    for scaling in ("metric", "median_scaled"):
        res = results[scaling]
        for name, m in res["per_camera"].items():
            if m:
                rows.append(f"| {name} | {scaling} | " + " | ".join(f"{m[k]:.3f}" for k in METRIC_KEYS) + " |")
        rows.append(f"| **mean** | {scaling} | " + " | ".join(f"**{res[k]:.3f}**" for k in METRIC_KEYS) + " |")
    c = results["consistency"]
    rows.append(f"\ncross-view consistency (median disagreement in overlaps): {c['abs_m']:.3f} m, {c['rel']:.3f} relative")
    u = results.get("uncertainty")
    if u:
        rows.append(f"uncertainty (abs_rel sparsification, pixels ranked by depth_std/depth): AUSE {u['ause']:.3f} "
                    f"(random ranking {u['ause_random']:.3f}), AURG {u['aurg']:.3f}, "
                    f"Spearman(std/depth, abs_rel) {u['spearman']:.3f}")
    return "\n".join(rows)


def write_results(results: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    return path


class LiveStudent:
    """A student being trained, as a DepthPredictor for evaluate(): uint8 images [V,H,W,3] in, depth and its std
    [V,H,W] metres out, in eval mode for the call (BatchNorm running statistics), then back to training."""

    name = "training student"

    def __init__(self, model, device, height: int, width: int):
        self._model, self.device = model, device
        self.views, self.height, self.width = model.config.num_views, height, width

    @torch.inference_mode()
    def infer(self, images: np.ndarray, focal_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        was_training = self._model.training
        self._model.eval()
        try:
            x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255
            focal = torch.from_numpy(np.asarray(focal_px, np.float32)).to(self.device)
            d, s = self._model.predict(x[None], focal[None])
        finally:
            self._model.train(was_training)
        return d[0].float().cpu().numpy(), s[0].float().cpu().numpy()
