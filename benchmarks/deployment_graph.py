"""The node's per-set work with and without the deployment graph, side by side in one run (no ROS).

For six images at the cameras' own size (default DDAD's 1936x1216) and the given student, it times
SurroundDepthPipeline.run through the composed graph (ONNX Runtime) and through the host path (cv2
resize + the student + numpy cloud), one after the other, plus the bare student on model-size images and
the host resize of one image. Prints a table and the ratios.

    .venv/bin/python benchmarks/deployment_graph.py --input-size 1936x1216 --model models/fsmde_default.onnx
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from fsmde_ros.geometry.resize import resize_on_host
from fsmde_ros.geometry.rig import load_rig
from fsmde_ros.paths import DEFAULT_MODEL
from fsmde_ros.runtime import create_backend
from fsmde_ros.service.pipeline import SurroundDepthPipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input-size", default="1936x1216", help="WxH of the camera images")
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="exported student (.onnx)")
    ap.add_argument("--rig", default="ddad")
    ap.add_argument("--sets", type=int, default=10, help="timed sets per path")
    args = ap.parse_args()
    w_in, h_in = (int(v) for v in args.input_size.lower().split("x"))
    rig = load_rig(args.rig)
    backend = create_backend("onnxruntime", args.model)
    images = list(np.random.default_rng(0).integers(0, 256, (len(rig), h_in, w_in, 3), dtype=np.uint8))
    cache = tempfile.mkdtemp(prefix="fsmde_deploy_")
    paths = {"graph": SurroundDepthPipeline(backend, rig, composed=True, graph_cache_dir=cache, info=lambda s: None),
             "host": SurroundDepthPipeline(backend, rig, composed=False)}
    times = {k: [] for k in paths}
    stages = {k: [] for k in paths}
    for name, p in paths.items():  # one path after the other: two ONNX Runtime sessions alternating make each
        p.run(images, [None] * len(rig))  # other's spinning threads compete for the cores (compose / warm up)
        time.sleep(1.0)
        for _ in range(args.sets):
            t = time.perf_counter()
            result = p.run(images, [None] * len(rig))
            times[name].append((time.perf_counter() - t) * 1e3)
            stages[name].append(result.timings_ms)
    bare = []
    focal = result.K[:, 0, 0].astype(np.float32)
    for _ in range(args.sets):
        t = time.perf_counter()
        backend.infer(result.images, focal)
        bare.append((time.perf_counter() - t) * 1e3)
    resize = []
    for _ in range(20):
        t = time.perf_counter()
        resize_on_host(images[0], backend.width, backend.height)
        resize.append((time.perf_counter() - t) * 1e3)
    print(f"{len(rig)} images {w_in}x{h_in} -> model {backend.width}x{backend.height}, {backend.name}, "
          f"{args.sets} sets each (median ms)")
    print(f"{'path':<6} {'per set':>8} {'host before':>12} {'graph/student':>14} {'host after':>11}")
    for name in paths:
        s = {k: np.median([t[k] for t in stages[name]]) for k in stages[name][0]}
        print(f"{name:<6} {np.median(times[name]):8.1f} {s['preprocess_ms']:12.1f} {s['infer_ms']:14.1f} "
              f"{s['postprocess_ms']:11.1f}")
    print(f"bare student on model-size images: {np.median(bare):.1f} ms; host resize of one image: "
          f"{np.median(resize):.2f} ms")
    print(f"graph / host per set = {np.median(times['graph']) / np.median(times['host']):.2f}")


if __name__ == "__main__":
    main()
