"""The bundled student against its goals, on held-out worlds it never saw (4 per rig), side by side.

    .venv/bin/python benchmarks/bundled_student.py --onnx models/fsmde_default.onnx [--before old.onnx] [--control c.onnx]
        [--int8 models/fsmde_default_int8.onnx]

For each of the ablation's held-out worlds (benchmarks/ablation.py: HELD_OUT), at the model's
resolution: the student's metric abs_rel (no scaling) on the lidar returns and on the dense
depth, its uncertainty by the sparsification protocol (AUSE against a random ranking's,
Spearman of depth_std/depth with the error), and the simulated teacher aligned to the GT per image with a
scale and shift (the fair reference) and with a median scale only. Prints one row per world, the mean per
rig, and the goals as ratios: `student / median-scaled teacher lidar = X` (goal <= 1.00), `spearman = X`
(>= 0.4), `ause / random = X` (<= 0.6). With --before (a previous model), --control (e.g. the recipe's
supervised-only control) and --int8 (the student's INT8 twin: `int8 / fp32` ratios, goals within 3 % on
abs_rel and 5 % on AUSE), those are scored in the same run.
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
from fsmde_ros.model.contract import is_quantized  # noqa: E402
from fsmde_ros.paths import DATASET_CACHE_DIR  # noqa: E402
from fsmde_ros.runtime import create_backend  # noqa: E402

KEYS = ("lidar", "dense", "lidar_scaled", "ause", "ause_random", "spearman")


def score(onnx: Path, worlds: list[str]) -> dict[str, dict[str, float]]:
    """world spec -> the student's figures (KEYS) and the teacher's oracle-median abs_rel (lidar, dense)."""
    backend = create_backend("onnxruntime", onnx, precision="int8" if is_quantized(onnx) else "fp32")
    out = {}
    for spec in worlds:
        ds = CachedDataset(spec, backend.height, backend.width, DATASET_CACHE_DIR)
        lidar = evaluate(backend, ds, progress=False)
        dense = evaluate(backend, ds, dense_gt=True, progress=False)
        u = lidar["uncertainty"]
        out[spec] = {"lidar": lidar["metric"]["abs_rel"], "dense": dense["metric"]["abs_rel"],
                     "lidar_scaled": lidar["median_scaled"]["abs_rel"], "ause": u["ause"],
                     "ause_random": u["ause_random"], "spearman": u["spearman"],
                     "teacher_lidar": teacher_reference(ds), "teacher_dense": teacher_reference(ds, "depth"),
                     "teacher_lidar_median": teacher_reference(ds, fit="median")}
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
    ap.add_argument("--int8", type=Path, help="the student's INT8 twin (fsmde quantize), scored in the same run")
    ap.add_argument("--json", type=Path, help="write every figure as JSON")
    args = ap.parse_args()
    models = {"student": args.onnx, **({"int8": args.int8} if args.int8 else {}),
              **({"control": args.control} if args.control else {}), **({"before": args.before} if args.before else {})}
    results = {name: score(path, HELD_OUT) for name, path in models.items()}
    print("| model | world | lidar abs_rel | dense abs_rel | lidar, median-scaled | AUSE | random AUSE | Spearman "
          "| teacher lidar | teacher dense | teacher lidar, median-scaled |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, scores in results.items():
        rows = list(scores.items()) + [(f"mean {rig}", v) for rig, v in per_rig(scores).items()]
        for world, v in rows:
            print(f"| {name} | {world.replace('synthetic:', '')} | {v['lidar']:.3f} | {v['dense']:.3f} | "
                  f"{v['lidar_scaled']:.3f} | {v['ause']:.3f} | {v['ause_random']:.3f} | {v['spearman']:.3f} | "
                  f"{v['teacher_lidar']:.3f} | {v['teacher_dense']:.3f} | {v['teacher_lidar_median']:.3f} |")
    for name, scores in results.items():
        for rig, v in per_rig(scores).items():
            print(f"{name} {rig}: student / median-scaled teacher lidar = {v['lidar'] / v['teacher_lidar_median']:.2f}, "
                  f"student / scale-and-shift teacher lidar = {v['lidar'] / v['teacher_lidar']:.2f}, "
                  f"student / teacher dense = {v['dense'] / v['teacher_dense']:.2f}, spearman = {v['spearman']:.2f}, "
                  f"ause / random = {v['ause'] / v['ause_random']:.2f}")
    if "int8" in results:
        fp32, int8 = per_rig(results["student"]), per_rig(results["int8"])
        for rig in fp32:
            print(f"int8 / fp32 {rig}: lidar abs_rel {int8[rig]['lidar'] / fp32[rig]['lidar']:.3f}, dense abs_rel "
                  f"{int8[rig]['dense'] / fp32[rig]['dense']:.3f}, AUSE {int8[rig]['ause'] / fp32[rig]['ause']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"models": {k: str(v) for k, v in models.items()}, "results": results,
                                         "per_rig": {k: per_rig(v) for k, v in results.items()}}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
