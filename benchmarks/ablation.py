"""The paper's ablation on the synthetic benchmark, in one command.

The same student, data and budget, four loss sets: supervised only (SILog + bin Chamfer),
+ cross-interaction KD, + view-relational KD, full. Each is evaluated on a held-out synthetic
split (other seeds, both rig geometries) with lidar ground truth, metric (no scaling) and
median-scaled, and against the world's dense depth (every pixel to the cap: what the cloud
shows, and where the lidar never reaches), plus the cross-view disagreement. Reference rows:
the simulated teacher with oracle median scaling (and with an oracle scale-and-shift fit in
inverse depth); with --supervised-dense, the student supervised by the dense depth itself
(an upper bound on what any teacher could add).

    .venv/bin/python benchmarks/ablation.py [--steps 1000 --out runs/ablation] [--set tau_bins=0.08 ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fsmde_ros.data.surround import CachedDataset  # noqa: E402
from fsmde_ros.distill.evaluate import evaluate  # noqa: E402
from fsmde_ros.distill.losses import DistillConfig, ablation_presets  # noqa: E402
from fsmde_ros.distill.trainer import TrainConfig, run_distillation  # noqa: E402
from fsmde_ros.metrics import MAX_DEPTH_M, DepthMetricAccumulator  # noqa: E402
from fsmde_ros.runtime import create_backend  # noqa: E402

TRAIN = ["synthetic:ddad?seed=0&frames=120&stride=3", "synthetic:nuscenes?seed=1&frames=120&stride=3",
         "synthetic:ddad?seed=2&frames=120&stride=3", "synthetic:nuscenes?seed=3&frames=120&stride=3"]
HELD_OUT = ["synthetic:ddad?seed=100&frames=60&stride=6", "synthetic:nuscenes?seed=101&frames=60&stride=6"]
ROWS = [("supervised", "supervised only"), ("ci_kd", "+ cross-interaction KD"), ("vr_kd", "+ view-relational KD"),
        ("full", "full (CI + VR KD)")]


def teacher_reference(dataset, gt_key: str = "lidar_depth") -> dict:
    """The simulated teacher scored with oracle alignment: median scaling of 1/relative, and a
    least-squares scale+shift in inverse depth against the GT (the strongest fair reference)."""
    rig = dataset.rig
    cap = MAX_DEPTH_M.get(rig.name, 80.0)
    median = DepthMetricAccumulator(rig.names, max_depth=cap, median_scaling=True)
    affine = DepthMetricAccumulator(rig.names, max_depth=cap)
    for i in range(len(dataset)):
        item = dataset[i]
        rel, gt = item["teacher"].astype(np.float64), np.nan_to_num(item[gt_key], nan=0.0, posinf=0.0)
        median.update(1.0 / np.maximum(rel, 1e-6), gt)
        fitted = np.empty_like(rel)
        for v in range(len(rel)):
            ok = (gt[v] > 0.1) & (gt[v] < cap)
            a, b = np.polyfit(rel[v][ok], 1.0 / gt[v][ok], 1)
            fitted[v] = 1.0 / np.maximum(a * rel[v] + b, 1.0 / cap)
        affine.update(fitted, gt)
    return {"median_scaled": median.result(), "affine_fit": affine.result()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000, help="training steps per row (same budget for all)")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--rows", nargs="+", default=[r for r, _ in ROWS], help="subset of rows to run")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="DistillConfig overrides for every row, e.g. --set tau_bins=0.08 align_shape_from=student "
                         "(weights of terms a row switches off stay 0)")
    ap.add_argument("--train-set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="TrainConfig overrides for every row, e.g. --train-set grad_clip=10 gt_source=depth")
    ap.add_argument("--supervised-dense", action="store_true",
                    help="add a reference row: supervised only, on the synthetic world's dense depth (an upper bound)")
    args = ap.parse_args()
    train_over = {}
    for item in args.train_set:
        name, _, value = item.partition("=")
        train_over[name] = yaml.safe_load(value)
    presets = ablation_presets()
    for key, preset in presets.items():
        d = preset.to_dict()
        for item in args.set:
            name, _, value = item.partition("=")
            if name not in d:
                ap.error(f"--set {item}: unknown DistillConfig key {name!r}")
            if name.startswith("w_") and d[name] == 0:
                continue
            d[name] = yaml.safe_load(value)
        presets[key] = DistillConfig.from_dict(d)
    held_out = [CachedDataset(spec, args.height, args.width, "~/.cache/fsmde_ros/datasets") for spec in HELD_OUT]
    results = {}
    rows = [(k, lbl, {}) for k, lbl in ROWS if k in args.rows]
    if args.supervised_dense:
        presets["supervised_dense"] = presets["supervised"]
        rows.append(("supervised_dense", "supervised on dense GT (reference)", {"gt_source": "depth"}))
    for key, label, extra in rows:
        base = dict(out_dir=str(args.out / key), train=TRAIN, height=args.height, width=args.width,
                    distill=presets[key].to_dict(), steps=args.steps, lr=5e-4, warmup_steps=100)
        cfg = TrainConfig.from_dict({**base, **train_over, **extra})
        start = time.monotonic()
        ckpt = run_distillation(cfg, progress=True)
        minutes = (time.monotonic() - start) / 60
        backend = create_backend("torch", ckpt, height=args.height, width=args.width)
        results[key] = {"label": label, "train_minutes": minutes, "distill": presets[key].to_dict(),
                        "eval": [evaluate(backend, ds, progress=False) for ds in held_out],
                        "eval_dense": [evaluate(backend, ds, dense_gt=True, progress=False) for ds in held_out]}
    results["teacher"] = {"label": "teacher (simulated), oracle alignment", "eval": [teacher_reference(ds) for ds in held_out],
                          "eval_dense": [teacher_reference(ds, "depth") for ds in held_out]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(results, indent=2))

    print(f"# held-out: {', '.join(HELD_OUT)}; lidar GT; {args.steps} steps per row at {args.height}x{args.width}"
          + (f"; overrides {' '.join(args.set + args.train_set)}" if args.set or args.train_set else ""))
    print("| row | abs_rel (metric) | a1 (metric) | abs_rel (median-scaled) | dense GT: abs_rel (metric / median-scaled) "
          "| cross-view disagreement (rel) | train [min] |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, res in results.items():
        if key == "teacher":
            med = np.mean([e["median_scaled"]["abs_rel"] for e in res["eval"]])
            aff = np.mean([e["affine_fit"]["abs_rel"] for e in res["eval"]])
            dmed = np.mean([e["median_scaled"]["abs_rel"] for e in res["eval_dense"]])
            daff = np.mean([e["affine_fit"]["abs_rel"] for e in res["eval_dense"]])
            print(f"| {res['label']} | (median) {med:.3f} / (scale+shift) {aff:.3f} | | | "
                  f"(median) {dmed:.3f} / (scale+shift) {daff:.3f} | | |")
            continue
        ev = res["eval"]
        mean = lambda f, ev=ev: np.mean([f(e) for e in ev])  # noqa: E731 - average over the two rigs
        dense = lambda f: np.mean([f(e) for e in res["eval_dense"]])  # noqa: E731
        print(f"| {res['label']} | {mean(lambda e: e['metric']['abs_rel']):.3f} | {mean(lambda e: e['metric']['a1']):.3f} | "
              f"{mean(lambda e: e['median_scaled']['abs_rel']):.3f} | {dense(lambda e: e['metric']['abs_rel']):.3f} / "
              f"{dense(lambda e: e['median_scaled']['abs_rel']):.3f} | {mean(lambda e: e['consistency']['rel']):.4f} | "
              f"{res['train_minutes']:.1f} |")


if __name__ == "__main__":
    main()
