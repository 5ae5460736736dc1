"""The bundled student against its goals, on held-out worlds it never saw (4 per rig), side by side.

    .venv/bin/python benchmarks/bundled_student.py --onnx models/fsmde_default.onnx [--before old.onnx] [--control c.onnx]

For each of the ablation's held-out worlds (benchmarks/ablation.py: HELD_OUT), at the model's
resolution: the student's metric abs_rel (no scaling) on the lidar returns and on the dense
depth, its uncertainty by the sparsification protocol (AUSE against a random ranking's,
Spearman of depth_std/depth with the error), and the simulated teacher with oracle median
scaling. Prints one row per world, the mean per rig, and the issue-12 goals as ratios:
`student / teacher lidar = X` (goal <= 1.00), `spearman = X` (>= 0.4), `ause / random = X` (<= 0.6).
With --before (a previous model) and --control (e.g. the recipe's supervised-only phase), those
are scored in the same run for comparison.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.ablation import HELD_OUT, teacher_reference  # noqa: E402
from fsmde_ros.data.surround import CachedDataset  # noqa: E402
from fsmde_ros.distill.evaluate import evaluate  # noqa: E402
from fsmde_ros.paths import DATASET_CACHE_DIR  # noqa: E402
from fsmde_ros.runtime import create_backend  # noqa: E402

KEYS = ("lidar", "dense", "lidar_scaled", "ause", "ause_random", "spearman")


def score(onnx: Path, worlds: list[str]) -> dict[str, dict[str, float]]:
    """world spec -> the student's figures (KEYS) and the teacher's oracle-median abs_rel (lidar, dense)."""
    backend = create_backend("onnxruntime", onnx)
    out = {}
    for spec in worlds:
        ds = CachedDataset(spec, backend.height, backend.width, DATASET_CACHE_DIR)
        lidar = evaluate(backend, ds, progress=False)
        dense = evaluate(backend, ds, dense_gt=True, progress=False)
        u = lidar["uncertainty"]
        out[spec] = {"lidar": lidar["metric"]["abs_rel"], "dense": dense["metric"]["abs_rel"],
                     "lidar_scaled": lidar["median_scaled"]["abs_rel"], "ause": u["ause"],
                     "ause_random": u["ause_random"], "spearman": u["spearman"],
                     "teacher_lidar": teacher_reference(ds), "teacher_dense": teacher_reference(ds, "depth")}
    return out


def per_rig(scores: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    rigs = sorted({spec.split(":")[1].split("?")[0] for spec in scores})
    return {rig: {k: float(np.mean([v[k] for s, v in scores.items() if f":{rig}?" in s])) for k in next(iter(scores.values()))}
            for rig in rigs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", type=Path, default=Path("models/fsmde_default.onnx"), help="the student to score")
    ap.add_argument("--before", type=Path, help="a previous student, scored in the same run")
    ap.add_argument("--control", type=Path, help="a control student (e.g. supervised only), scored in the same run")
    ap.add_argument("--json", type=Path, help="write every figure as JSON")
    args = ap.parse_args()
    models = {"student": args.onnx, **({"control": args.control} if args.control else {}),
              **({"before": args.before} if args.before else {})}
    results = {name: score(path, HELD_OUT) for name, path in models.items()}
    print("| model | world | lidar abs_rel | dense abs_rel | lidar, median-scaled | AUSE | random AUSE | Spearman "
          "| teacher lidar | teacher dense |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, scores in results.items():
        rows = list(scores.items()) + [(f"mean {rig}", v) for rig, v in per_rig(scores).items()]
        for world, v in rows:
            print(f"| {name} | {world.replace('synthetic:', '')} | {v['lidar']:.3f} | {v['dense']:.3f} | "
                  f"{v['lidar_scaled']:.3f} | {v['ause']:.3f} | {v['ause_random']:.3f} | {v['spearman']:.3f} | "
                  f"{v['teacher_lidar']:.3f} | {v['teacher_dense']:.3f} |")
    for name, scores in results.items():
        for rig, v in per_rig(scores).items():
            print(f"{name} {rig}: student / teacher lidar = {v['lidar'] / v['teacher_lidar']:.2f}, "
                  f"student / teacher dense = {v['dense'] / v['teacher_dense']:.2f}, spearman = {v['spearman']:.2f}, "
                  f"ause / random = {v['ause'] / v['ause_random']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"models": {k: str(v) for k, v in models.items()}, "results": results,
                                         "per_rig": {k: per_rig(v) for k, v in results.items()}}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
