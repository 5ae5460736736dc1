"""Pinhole geometry in numpy: pixel grids, unprojection, rigid transforms, projection, overlaps.

Cameras are zero-skew pinholes on rectified images (K[0,1] is ignored).

Depth images are z-depth along the optical axis in metres (REP-118), camera frames are optical
frames (z forward, x right, y down), and `T_base_cam` maps camera points into `base_link`
(see `fsmde_ros.geometry.rig`). Every function is vectorised over pixels; loops run over cameras only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# Distances [m] at which a camera ray is tested for visibility in a neighbour when the overlap
# region is derived from the rig alone (no depth): near kerb to far street, where a car's
# neighbouring cameras share content.
OVERLAP_SAMPLE_DEPTHS_M = (3.0, 5.0, 8.0, 12.0, 20.0, 35.0, 60.0, 100.0)


def pixel_grid(height: int, width: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (u, v), each [H/stride, W/stride] float64."""
    u = np.arange(0, width, stride, dtype=np.float64)
    v = np.arange(0, height, stride, dtype=np.float64)
    return np.meshgrid(u, v)


def camera_rays(K: np.ndarray, height: int, width: int, stride: int = 1) -> np.ndarray:
    """Rays through pixel centres with z = 1 in the optical frame, [H,W,3] float64."""
    K = np.asarray(K, dtype=np.float64)
    u, v = pixel_grid(height, width, stride)
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def unproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points from z-depth: depth [...,H,W], K [...,3,3] -> points [...,H,W,3]."""
    depth = np.asarray(depth)
    K = np.asarray(K, dtype=np.float64)
    if depth.ndim < 2:
        raise ValueError(f"depth must be [...,H,W], got shape {depth.shape}")
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K must be [...,3,3], got shape {K.shape}")
    h, w = depth.shape[-2:]
    u, v = pixel_grid(h, w)
    fx, fy = K[..., 0, 0, None, None], K[..., 1, 1, None, None]
    cx, cy = K[..., 0, 2, None, None], K[..., 1, 2, None, None]
    z = depth.astype(np.float64, copy=False)
    return np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=-1)


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply T [4,4] to points [...,3], or T [N,4,4] to points [N,...,3] (one T per camera)."""
    T = np.asarray(T, dtype=np.float64)
    points = np.asarray(points)
    if T.shape[-2:] != (4, 4) or points.shape[-1] != 3:
        raise ValueError(f"need T [...,4,4] and points [...,3], got {T.shape} and {points.shape}")
    R, t = T[..., :3, :3], T[..., :3, 3]
    if T.ndim == 2:
        return points @ R.T + t
    if T.ndim != 3 or points.shape[0] != T.shape[0]:
        raise ValueError(f"batched T [N,4,4] needs points [N,...,3], got {T.shape} and {points.shape}")
    flat = points.reshape(points.shape[0], -1, 3)
    out = np.einsum("nij,nmj->nmi", R, flat) + t[:, None, :]
    return out.reshape(points.shape)


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms [...,4,4]."""
    T = np.asarray(T, dtype=np.float64)
    R, t = T[..., :3, :3], T[..., :3, 3]
    out = np.zeros_like(T)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, t)
    out[..., 3, 3] = 1.0
    return out


def project(points_cam: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of camera-frame points: points [...,3] -> (uv [...,2], z [...]).

    Points at or behind the camera (z <= 0) get uv = NaN; check `z > 0` before use.
    """
    p = np.asarray(points_cam, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    z = p[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        zs = np.where(z > 0, z, np.nan)
        u = K[0, 0] * p[..., 0] / zs + K[0, 2]
        v = K[1, 1] * p[..., 1] / zs + K[1, 2]
    return np.stack([u, v], axis=-1), z


def in_image(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """True where uv [...,2] falls on a pixel of a width x height image (pixel-centre convention)."""
    u, v = uv[..., 0], uv[..., 1]
    with np.errstate(invalid="ignore"):
        return (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)


def reproject_depth(
    depth_src: np.ndarray,
    K_src: np.ndarray,
    T_base_src: np.ndarray,
    K_dst: np.ndarray,
    T_base_dst: np.ndarray,
    dst_size: tuple[int, int],
) -> np.ndarray:
    """Render the source camera's depth [H,W] (m) into the destination camera.

    Returns the destination z-depth [H_dst,W_dst] float32 of the source points (nearest pixel,
    nearest surface wins), NaN where no source point lands. dst_size is (width, height).
    """
    w_dst, h_dst = dst_size
    pts = unproject(depth_src, K_src)
    valid = np.isfinite(pts[..., 2]) & (pts[..., 2] > 0)
    T_dst_src = invert_transform(T_base_dst) @ np.asarray(T_base_src, dtype=np.float64)
    p_dst = transform_points(T_dst_src, pts[valid])
    uv, z = project(p_dst, K_dst)
    ok = (z > 0) & in_image(uv, w_dst, h_dst)
    ui = np.rint(uv[ok, 0]).astype(np.int64)
    vi = np.rint(uv[ok, 1]).astype(np.int64)
    out = np.full(h_dst * w_dst, np.inf)
    np.minimum.at(out, vi * w_dst + ui, z[ok])
    out[np.isinf(out)] = np.nan
    return out.reshape(h_dst, w_dst).astype(np.float32)


def overlap_mask(
    K_src: np.ndarray,
    T_base_src: np.ndarray,
    src_size: tuple[int, int],
    K_dst: np.ndarray,
    T_base_dst: np.ndarray,
    dst_size: tuple[int, int],
    sample_depths_m: Sequence[float] = OVERLAP_SAMPLE_DEPTHS_M,
) -> np.ndarray:
    """Pixels [H_src,W_src] bool of the source camera that the destination camera also sees.

    Derived from the rig alone: a pixel overlaps when its ray, at any of `sample_depths_m`,
    lands inside the destination image in front of it. Sizes are (width, height).
    """
    w_src, h_src = src_size
    rays = camera_rays(K_src, h_src, w_src)
    T_dst_src = invert_transform(T_base_dst) @ np.asarray(T_base_src, dtype=np.float64)
    mask = np.zeros((h_src, w_src), dtype=bool)
    for d in sample_depths_m:
        uv, z = project(transform_points(T_dst_src, rays * d), K_dst)
        mask |= (z > 0) & in_image(uv, *dst_size)
    return mask
