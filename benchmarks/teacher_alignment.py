"""Which reference fixes the teacher's shift best (docs/method.md §3): the shape error of the aligned teacher.

For each view of held-out synthetic worlds (4 per rig, 192x320, the bundled student's size), the teacher's
shift b is fitted (distill/teacher_alignment.py) to: the view's lidar returns; the student's own depth (the
bundled ONNX student, as a trained student); the ground plane at the camera's known height and pitch; the
true dense depth (an oracle, the floor set by the teacher's own errors); and, for comparison, the
percentile normalisation of before (0 at the image's 1st percentile of disparity). The figure is the mean
over views of mean |log d_aligned - log d_true| after removing the view's median offset: the error of the
shape that the bins see, in log depth (one bin of the relative grid is 0.075), overall and by true range.

    .venv/bin/python benchmarks/teacher_alignment.py [--onnx models/fsmde_default.onnx] [--frames 0 11]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fsmde_ros.data.synthetic import SyntheticSurround  # noqa: E402
from fsmde_ros.distill.teacher_alignment import fit_teacher_shift  # noqa: E402

GROUND_MIN_RANGE_M, GROUND_MAX_RANGE_M = 1.0, 30.0  # ground pixels used by the ground-plane fit
WORLDS = [("ddad", 100), ("nuscenes", 101), ("ddad", 102), ("nuscenes", 103), ("ddad", 104), ("nuscenes", 105),
          ("ddad", 106), ("nuscenes", 107)]
BANDS = {"all": (0.0, np.inf), "< 30 m": (0.0, 30.0), "30-80 m": (30.0, 80.0), "> 80 m": (80.0, np.inf)}


def ground_inverse_depth(K: np.ndarray | torch.Tensor, T_base_cam: np.ndarray | torch.Tensor, height: int, width: int,
                         ground_z_m: float = 0.0) -> torch.Tensor:
    """Inverse z-depth [M,H,W] [1/m] of the ground plane z = ground_z_m (base frame) per camera, 0 where a
    pixel's ray does not meet it within [GROUND_MIN_RANGE_M, GROUND_MAX_RANGE_M] (above the horizon, too near
    or too far). K [M,3,3] at height x width, T_base_cam [M,4,4] (camera optical frame in the base frame)."""
    K = torch.as_tensor(K, dtype=torch.float64)
    T = torch.as_tensor(T_base_cam, dtype=torch.float64, device=K.device)
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64, device=K.device) + 0.5,
                          torch.arange(width, dtype=torch.float64, device=K.device) + 0.5, indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(-1, 3)  # [P,3]
    rays = torch.einsum("mij,pj->mpi", torch.linalg.inv(K), pix)  # camera rays with z = 1
    dirs_z = torch.einsum("mj,mpj->mp", T[:, 2, :3], rays)  # the rays' z component in the base frame
    cam_z = T[:, 2, 3][:, None] - ground_z_m
    depth = -cam_z / torch.where(dirs_z < 0, dirs_z, torch.full_like(dirs_z, -1e-12))  # z-depth to the plane
    rng = depth * rays.norm(dim=-1)
    ok = (dirs_z < 0) & (rng >= GROUND_MIN_RANGE_M) & (rng <= GROUND_MAX_RANGE_M)
    return torch.where(ok, 1.0 / depth, torch.zeros_like(depth)).reshape(-1, height, width).float()



def percentile_log_depth(t: torch.Tensor) -> torch.Tensor:
    """The normalisation of before: u = (t - P1) / (P99 - P1), depth ~ 1 / u (nan where u <= 0)."""
    flat = t.reshape(len(t), -1)
    lo, hi = (torch.quantile(flat, q, dim=1)[:, None, None] for q in (0.01, 0.99))
    u = (t - lo) / (hi - lo)
    return torch.where(u > 0, -torch.log(u.clamp_min(1e-30)), torch.full_like(u, float("nan")))


def shape_errors(log_est: torch.Tensor, depth: torch.Tensor) -> dict[str, list[float]]:
    """Per view and band: mean |log est - log true - median offset| over the pixels both know."""
    out: dict[str, list[float]] = {k: [] for k in BANDS}
    good = torch.isfinite(depth) & (depth < 200)
    for v in range(len(depth)):
        ok = good[v] & torch.isfinite(log_est[v])
        if ok.sum() < 10:
            continue
        diff = log_est[v] - torch.log(torch.where(good[v], depth[v], torch.ones_like(depth[v])))
        off = diff[ok].median()
        for band, (lo, hi) in BANDS.items():
            sel = ok & (depth[v] >= lo) & (depth[v] < hi)
            if sel.sum() >= 10:
                out[band].append(float((diff[sel] - off).abs().mean()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", default=str(ROOT / "models/fsmde_default.onnx"), help="the student whose depth is a reference")
    ap.add_argument("--frames", type=int, nargs="+", default=[0, 11], help="frames of each 12-frame world")
    args = ap.parse_args()
    import onnxruntime as ort

    sess = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
    _, h, w, _ = sess.get_inputs()[0].shape
    methods = ("lidar", "student", "ground plane", "percentiles (before)", "dense depth (oracle)")
    errs = {m: {b: [] for b in BANDS} for m in methods}
    refused = {m: 0 for m in methods}
    for rig, seed in WORLDS:
        ds = SyntheticSurround(rig, seed=seed, height=h, width=w, frames=12)
        for i in args.frames:
            it = ds[i]
            t, depth = torch.from_numpy(it["teacher"]), torch.from_numpy(it["depth"])
            lidar = torch.from_numpy(it["lidar_depth"])
            student = torch.from_numpy(sess.run(None, {"images": it["images"],
                                                       "focal_px": it["K"][:, 0, 0].astype(np.float32)})[0])
            ground = ground_inverse_depth(it["K"], it["T_base_cam"], h, w)
            dense = torch.isfinite(depth) & (depth < 200)
            refs = {"lidar": (1 / lidar.clamp_min(1e-6), lidar > 0), "student": (1 / student.clamp_min(0.1), student > 0),
                    "ground plane": (ground, ground > 0),
                    "dense depth (oracle)": (torch.where(dense, 1 / depth, torch.zeros_like(depth)), dense)}
            for m in methods:
                if m == "percentiles (before)":
                    est = percentile_log_depth(t)
                else:
                    _, b, ok = fit_teacher_shift(t, *refs[m])
                    refused[m] += int((~ok).sum())
                    dt = t - b[:, None, None]
                    est = torch.where((dt > 0) & ok[:, None, None], -torch.log(dt.clamp_min(1e-30)),
                                      torch.full_like(dt, float("nan")))
                for band, vals in shape_errors(est, depth).items():
                    errs[m][band] += vals
    views = len(WORLDS) * len(args.frames) * 6
    print(f"shape error of the aligned teacher, mean |log depth| after the view's median offset ({views} views, "
          f"{h}x{w}; one bin = 0.075)\n")
    print("| reference | " + " | ".join(BANDS) + " | fits refused |")
    print("|---|" + "---:|" * (len(BANDS) + 1))
    for m in methods:
        print(f"| {m} | " + " | ".join(f"{np.mean(errs[m][b]):.3f}" for b in BANDS) + f" | {refused[m]} |")


if __name__ == "__main__":
    main()
