"""Lidar point clouds projected into cameras as sparse z-depth maps (the DDAD and nuScenes GT).

As SurroundDepth builds its evaluation depth (tools/export_gt_depth_{ddad,nusc}.py, DDAD through
DGP): move the points into the camera's optical frame (z forward, x right, y down), keep those
with z > 0, project them with the pinhole K, take a pixel index and keep those on the image.
The index differs: DGP truncates the projected coordinates (`uv.astype(int)`: pixel (floor(u),
floor(v)) for points with 0 <= u < W, 0 <= v < H), which puts a point half a pixel right of and
below where it lands; here the default (`pixels="round"`) is the geometric one, and
`pixels="truncate"` (dataset spec option `gt_pixels=truncate`) reproduces the published convention
for numbers comparable with papers. SurroundDepth writes the depths in file order, so where several
points hit one pixel the last one wins; here the **nearest** return wins (a z-buffer), which is
the visible surface whenever the lidar sees both a foreground object and the background behind it.

Conventions (see fsmde_ros.geometry.rig): pixel centres lie at integer coordinates, so with
rounding a projected point (u, v) belongs to pixel (floor(u + 0.5), floor(v + 0.5)) and lies on
the image when -0.5 <= u < W - 0.5 and -0.5 <= v < H - 0.5 (`fsmde_ros.geometry.projection.in_image`). Depth is z along the
optical axis in metres (REP-118), 0 where no point landed. K may carry a skew term K[0, 1]
(DGP calibrations have a `skew` field); it is applied.

Project at the resolution you need (with K scaled by `fsmde_ros.rig.scale_intrinsics`) rather
than resizing a sparse depth map: resizing mixes returns with empty pixels.
"""
from __future__ import annotations

import numpy as np

from fsmde_ros.geometry.projection import transform_points


PIXEL_CONVENTIONS = ("round", "truncate")  # geometric (pixel centres at integers) | DGP / SurroundDepth


def project_to_depth(points_cam: np.ndarray, K: np.ndarray, height: int, width: int, min_depth: float = 0.0,
                     max_depth: float = np.inf, pixels: str = "round") -> np.ndarray:
    """Sparse z-depth [H,W] float32 (0 = none) of camera-frame points [N,3] seen through K [3,3].

    Points with min_depth < z <= max_depth that land on the image are kept; the nearest wins per
    pixel. min_depth is strict so that the default keeps every point in front of the camera.
    pixels: "round" (the point's nearest pixel centre) or "truncate" (DGP's index, see the module doc).
    """
    if pixels not in PIXEL_CONVENTIONS:
        raise ValueError(f"pixels must be one of {', '.join(PIXEL_CONVENTIONS)}, got {pixels!r}")
    pts = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be [3,3], got shape {K.shape}")
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    depth = np.zeros((int(height), int(width)), np.float32)
    z = pts[:, 2]
    keep = np.isfinite(pts).all(axis=1) & (z > min_depth) & (z <= max_depth)
    pts, z = pts[keep], z[keep]
    if not len(z):
        return depth
    x, y = pts[:, 0] / z, pts[:, 1] / z
    u = K[0, 0] * x + K[0, 1] * y + K[0, 2]
    v = K[1, 1] * y + K[1, 2]
    shift = 0.5 if pixels == "round" else 0.0
    ui = np.floor(u + shift).astype(np.int64)
    vi = np.floor(v + shift).astype(np.int64)
    on = (ui >= 0) & (ui < width) & (vi >= 0) & (vi < height)
    pix, z = vi[on] * width + ui[on], z[on]
    if not len(z):
        return depth
    order = np.argsort(z, kind="stable")  # nearest first, so the first hit of each pixel wins
    pix, first = np.unique(pix[order], return_index=True)
    depth.ravel()[pix] = z[order][first].astype(np.float32)
    return depth


def lidar_depth_maps(points: np.ndarray, T_cam_points: np.ndarray, K: np.ndarray, height: int, width: int,
                     min_depth: float = 0.0, max_depth: float = np.inf, pixels: str = "round") -> np.ndarray:
    """Sparse z-depth [V,H,W] float32 of points [N,3] in V cameras.

    T_cam_points [V,4,4] maps the points' frame into each camera's optical frame (one per camera,
    so each may include its own ego motion); K [V,3,3] are the intrinsics at height x width.
    """
    T = np.asarray(T_cam_points, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    if T.ndim != 3 or T.shape[1:] != (4, 4) or K.shape != (len(T), 3, 3):
        raise ValueError(f"need T_cam_points [V,4,4] and K [V,3,3], got {T.shape} and {K.shape}")
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return np.stack([project_to_depth(transform_points(T[c], pts), K[c], height, width, min_depth, max_depth, pixels)
                     for c in range(len(T))]) if len(T) else np.zeros((0, height, width), np.float32)


