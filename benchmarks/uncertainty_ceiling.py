"""How far can any per-pixel uncertainty rank this student's errors? Ceilings for the Spearman goal, in one run.

The issue-21 goal asks Spearman(depth_std/depth, relative error) >= 0.4 over the lidar pixels of held-out worlds,
pooled over images. This scores, for one trained student (an ablation run's checkpoint) on held-out worlds B:
- `model`: its own depth_std / depth;
- `boosted cues, fit on held-out A`: a gradient-boosted regressor of log error from per-pixel cues the network
  has (sigma_rel, the bin distribution's relative std, relative and absolute depth, a depth-edge measure, the
  pixel's position), fitted on OTHER held-out worlds A (an optimistic ceiling: it sees the test domain's errors);
- `oracle per-image constant`: each image's true mean error given to all its pixels (what a perfect per-view
  scale uncertainty would add), alone and combined with the model's sigma.

    .venv/bin/python benchmarks/uncertainty_ceiling.py RUN_DIR [RUN_DIR ...]   (default: the ablation's run dirs)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.ablation import HELD_OUT  # noqa: E402
from fsmde_ros.data.surround import CachedDataset  # noqa: E402
from fsmde_ros.eval.metrics import spearman  # noqa: E402
from fsmde_ros.model.checkpoint import load_student  # noqa: E402
from fsmde_ros.paths import DATASET_CACHE_DIR  # noqa: E402

CUES = ("log sigma_rel", "log bin std/depth", "log depth/median", "log depth", "edge", "row", "column")


def collect(model, specs: list[str], height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per lidar pixel of every image of `specs`: cues [P, len(CUES)], relative error [P], image index [P]."""
    cues, errors, image = [], [], []
    for spec in specs:
        ds = CachedDataset(spec, height, width, DATASET_CACHE_DIR)
        for i in range(len(ds)):
            item = ds[i]
            x = torch.from_numpy(item["images"]).permute(0, 3, 1, 2).float()[None] / 255
            with torch.no_grad():
                out = model(x, torch.from_numpy(item["K"][:, 0, 0].astype(np.float32))[None])
            d, sigma = out["depth"][0], out["sigma_rel"][0]
            bin_std = F.interpolate(out["bin_std"][0][:, None], size=d.shape[-2:], mode="bilinear")[:, 0]
            log_d = torch.log(d.clamp_min(0.5))
            gx = F.pad((log_d[:, :, 2:] - log_d[:, :, :-2]).abs(), (1, 1))
            gy = F.pad((log_d[:, 2:] - log_d[:, :-2]).abs(), (0, 0, 1, 1))
            edge = F.max_pool2d((gx + gy)[:, None], 5, 1, 2)[:, 0]
            rows, cols = np.mgrid[0:d.shape[-2], 0:d.shape[-1]]
            gt = item["lidar_depth"]
            for v in range(d.shape[0]):
                ok = np.isfinite(gt[v]) & (gt[v] > 0.5) & (gt[v] < 80)
                if ok.sum() < 20:
                    continue
                p, g = d[v].numpy()[ok].clip(0.5, 80), gt[v][ok]
                cues.append(np.stack([np.log(sigma[v].numpy()[ok]), np.log(bin_std[v].numpy()[ok] / p),
                                      np.log(p / np.median(p)), np.log(p), edge[v].numpy()[ok],
                                      rows[ok] / d.shape[-2], cols[ok] / d.shape[-1]], 1))
                errors.append(np.abs(p - g) / g)
                image.append(np.full(len(p), len(image)))
    return np.concatenate(cues), np.concatenate(errors), np.concatenate(image)


def ceilings(run: Path, height: int, width: int) -> dict[str, float]:
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = load_student(run / "student.pt").eval()
    per_rig = len(HELD_OUT) // 2  # HELD_OUT is rig-major; A: the first half of each rig's worlds, B: the rest
    a = [HELD_OUT[k] for k in range(len(HELD_OUT)) if k % per_rig < per_rig // 2]
    b = [HELD_OUT[k] for k in range(len(HELD_OUT)) if k % per_rig >= per_rig // 2]
    xa, ea, _ = collect(model, a, height, width)
    xb, eb, ib = collect(model, b, height, width)
    boosted = HistGradientBoostingRegressor(max_iter=200, random_state=0).fit(xa, np.log(ea + 1e-3)).predict(xb)
    per_image = np.array([eb[ib == j].mean() for j in range(ib.max() + 1)])[ib]
    return {"abs_rel": float(eb.mean()), "model": spearman(xb[:, 0], eb),
            "boosted cues, fit on held-out A": spearman(boosted, eb),
            "oracle per-image constant": spearman(per_image, eb),
            "oracle per-image constant x model sigma": spearman(np.log(per_image) + xb[:, 0], eb)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path("~/.cache/fsmde_ros/ablation_regime").expanduser()
    ap.add_argument("runs", nargs="*", type=Path, help="run directories with student.pt (default: the ablation's)")
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=160)
    args = ap.parse_args()
    runs = args.runs or sorted(p.parent for p in default.glob("*/student.pt"))
    torch.set_num_threads(2)
    results = {run.name: ceilings(run, args.height, args.width) for run in runs}
    keys = list(next(iter(results.values())))
    print(f"# Spearman(uncertainty, relative error), lidar pixels of held-out worlds B ({args.height}x{args.width})")
    print("| run | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
