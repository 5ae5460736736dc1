"""Which convolutions to quantise, and how: INT8 variants of one student against its FP32 graph, in one run.

Each variant is `fsmde quantize`'s QDQ graph with one choice changed; all are scored on the same held-out
synthetic sets (metric abs_rel on the lidar returns, ratio to FP32) and timed on ONNX Runtime CPU, round-robin
so that a shared machine slows all alike. The default of `fsmde quantize` is the row `keep float at 1/8`.

    .venv/bin/python benchmarks/int8_choices.py [--onnx models/fsmde_default.onnx] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fsmde_ros.data.surround import CachedDataset  # noqa: E402
from fsmde_ros.export.quantize import high_resolution_convs, quantize_student  # noqa: E402
from fsmde_ros.model.contract import read_model_info  # noqa: E402
from fsmde_ros.paths import DATASET_CACHE_DIR  # noqa: E402

CALIBRATION = ("synthetic:ddad?seed=0&frames=8", "synthetic:nuscenes?seed=1&frames=8")  # the bundled twin's
HELD_OUT = ("synthetic:ddad?seed=100&frames=30&stride=6", "synthetic:nuscenes?seed=101&frames=30&stride=6",
            "synthetic:ddad?seed=102&frames=30&stride=6", "synthetic:nuscenes?seed=103&frames=30&stride=6")


def sets_of(specs, height: int, width: int, step: int = 1) -> list[dict]:
    items = []
    for spec in specs:
        ds = CachedDataset(spec, height, width, DATASET_CACHE_DIR)
        items += [ds[i] for i in range(0, len(ds), step)]
    return items


def abs_rel(session: ort.InferenceSession, items: list[dict]) -> float:
    """Mean over sets of the metric abs_rel on the lidar returns (0.5-80 m)."""
    errors = []
    for item in items:
        depth = session.run(["depth"], {"images": item["images"], "focal_px": item["K"][:, 0, 0].astype(np.float32)})[0]
        gt = item["lidar_depth"]
        ok = np.isfinite(gt) & (gt > 0.5) & (gt < 80)
        errors.append(np.mean(np.abs(np.clip(depth[ok], 0.5, 80) - gt[ok]) / gt[ok]))
    return float(np.mean(errors))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", type=Path, default=Path("models/fsmde_default.onnx"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=8, help="timed runs per variant (round-robin)")
    args = ap.parse_args()
    info = read_model_info(args.onnx)
    h, w = info["height"], info["width"]
    cal = [(s["images"], s["K"][:, 0, 0].astype(np.float32)) for s in sets_of(CALIBRATION, h, w)]
    test = sets_of(HELD_OUT, h, w, step=2)
    all_convs = len([n for n in onnx.load(str(args.onnx)).graph.node if n.op_type == "Conv"])
    variants = {"every convolution int8": dict(keep_float_stride=0),
                "keep float at 1/2": dict(keep_float_stride=2),
                "keep float at 1/4": dict(keep_float_stride=4),
                "keep float at 1/8 (default)": dict(keep_float_stride=8),
                "keep float at 1/4, entropy calibration": dict(keep_float_stride=4, method="entropy")}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.log_severity_level = args.threads, 3
    sessions = {"fp32": ort.InferenceSession(str(args.onnx), opts, providers=["CPUExecutionProvider"])}
    kept = {"fp32": all_convs}
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in variants.items():
            out = quantize_student(args.onnx, cal, Path(tmp) / f"{len(sessions)}.onnx", kw.get("method", "percentile"),
                                   kw["keep_float_stride"])
            sessions[name] = ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])
            kept[name] = len(high_resolution_convs(onnx.load(str(args.onnx)), kw["keep_float_stride"])) \
                if kw["keep_float_stride"] else 0
        times = {k: [] for k in sessions}
        feed = {"images": test[0]["images"], "focal_px": test[0]["K"][:, 0, 0].astype(np.float32)}
        for s in sessions.values():
            s.run(None, feed)
        for _ in range(args.repeats):
            for k, s in sessions.items():
                t = time.perf_counter()
                s.run(None, feed)
                times[k].append(time.perf_counter() - t)
        errors = {k: abs_rel(s, test) for k, s in sessions.items()}
    base_err, base_t = errors["fp32"], statistics.median(times["fp32"])
    print(f"# {args.onnx} ({h}x{w}), {len(test)} held-out sets of {len(HELD_OUT)} worlds, ONNX Runtime "
          f"{ort.__version__} CPU, {args.threads} threads; calibration {len(cal)} sets")
    print("| variant | float convolutions | lidar abs_rel | vs FP32 | ms per set | FP32 / this (speed) |")
    print("|---|---:|---:|---:|---:|---:|")
    for k in sessions:
        t = statistics.median(times[k])
        print(f"| {k} | {kept[k]} of {all_convs} | {errors[k]:.4f} | {errors[k] / base_err:.3f}x | {t * 1e3:.1f} | "
              f"{base_t / t:.2f} |")


if __name__ == "__main__":
    main()
