"""Distorted cameras through the node's remap (issue 22 goals), side by side in one run.

One synthetic DDAD-rig set rendered through a pinhole at the cameras' native size (default 1936x1216), then
seen through a plumb_bob lens (k1 -0.28, k2 0.08, small tangential terms) and an equidistant (fisheye) lens:
the bundled student's depth on the same rays (the intrinsics the node publishes) against the pinhole set's,
mean relative difference in the outer half of each image, for the lens undistorted in the node's remap,
ignored (the image taken as pinhole, as before), and undistorted with OpenCV at full resolution before the
same resize (a reference). Then the host's cost per image: the plain resize vs the undistorting remap.

    .venv/bin/python benchmarks/undistortion.py [--width 1936 --height 1216] [--repeats 30]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fsmde_ros.data.synthetic import SyntheticSurround  # noqa: E402
from fsmde_ros.runtime import create_backend  # noqa: E402
from fsmde_ros.geometry.resize import plan_resize, resize_on_host  # noqa: E402
from fsmde_ros.service.calibration import Calibration, remap_on_host, undistort_maps  # noqa: E402
from fsmde_ros.service.pipeline import SurroundDepthPipeline  # noqa: E402
from tests.helpers.lens import EQUIDISTANT_D, PLUMB_BOB_D, distort, outer_half_relative_difference  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=1936)
    ap.add_argument("--height", type=int, default=1216)
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--repeats", type=int, default=30, help="timed runs per host path")
    args = ap.parse_args()
    W, H = args.width, args.height
    ds = SyntheticSurround("ddad", seed=args.seed, height=H, width=W, frames=1)
    item = ds[0]
    backend = create_backend("onnxruntime", ROOT / "models/fsmde_default.onnx")
    pipe = SurroundDepthPipeline(backend, ds.rig, make_cloud=False, composed=False, max_depth=250.0)
    K = list(item["K"])
    pinhole = pipe.run(list(item["images"]), K)
    print(f"one DDAD-rig set at {W}x{H}, bundled student at {backend.width}x{backend.height}; mean relative depth "
          "difference to the pinhole set, outer half of each image\n")
    print("| lens | undistorted in the node's remap | lens ignored (before) | cv2.undistort at full size, then resize |")
    print("|---|---:|---:|---:|")
    for model, D in (("plumb_bob", PLUMB_BOB_D), ("equidistant", EQUIDISTANT_D)):
        raws = [distort(img, k, D, model) for img, k in zip(item["images"], K)]
        ours = pipe.run(raws, K, [Calibration(k, W, H, D=D, model=model) for k in K])
        ignored = pipe.run(raws, K)
        if model == "equidistant":
            cv = [cv2.fisheye.undistortImage(r, k, D, Knew=k) for r, k in zip(raws, K)]
        else:
            cv = [cv2.undistort(r, k, D) for r, k in zip(raws, K)]
        reference = pipe.run(cv, K)
        seen = ours.images.sum(-1) > 0
        cells = [outer_half_relative_difference(r.depth, pinhole.depth, pinhole.K, seen) for r in (ours, ignored, reference)]
        print(f"| {model} {np.round(D, 3).tolist()} | " + " | ".join(f"{100 * c:.1f} %" for c in cells) + " |")
    plan = plan_resize(W, H, backend.width, backend.height)
    cal = Calibration(K[0], W, H, D=PLUMB_BOB_D)
    maps = undistort_maps(cal, plan)
    img = distort(item["images"][0], K[0], PLUMB_BOB_D, "plumb_bob")
    times = {"resize": [], "remap": []}
    for _ in range(args.repeats):  # alternated, so that both see the same machine
        t0 = time.perf_counter()
        resize_on_host(img, backend.width, backend.height)
        t1 = time.perf_counter()
        remap_on_host(img, plan, maps)
        t2 = time.perf_counter()
        times["resize"].append(t1 - t0)
        times["remap"].append(t2 - t1)
    a, b = (1e3 * float(np.median(times[k])) for k in ("resize", "remap"))
    print(f"\nhost ms per image ({W}x{H} -> {backend.width}x{backend.height}, median of {args.repeats}): resize {a:.2f}, "
          f"undistort + crop + resize (one remap) {b:.2f}; remap / resize = {b / a:.2f}")


if __name__ == "__main__":
    main()
