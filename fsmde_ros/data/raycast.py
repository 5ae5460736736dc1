"""Vectorised ray casting against a `Scene`: ground plane z=0, axis-aligned boxes, vertical
cylinders and spheres (world frame: x along the road, y left, z up, metres).

Rays come as a grid `dirs [R,C,3]` from one origin (a camera centre or a lidar). A ray's
parameter `t` is in units of its direction vector: camera rays are built with optical-axis
component 1, so `t` is the z-depth; lidar rays are unit vectors, so `t` is the range.
Every primitive is tested only on the grid rectangle(s) its bounding box can cover, given by a
culler (`CameraCuller`: projection into the image, `AzimuthCuller`: azimuth columns of a
spinning lidar); objects farther than their own cull distance or the cast's range are skipped.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from fsmde_ros.data.scene import (
    KIND_BOX,
    KIND_CYLINDER,
    KIND_GROUND,
    KIND_NONE,
    KIND_SPHERE,
    Scene,
)

__all__ = ["KIND_NONE", "KIND_GROUND", "KIND_BOX", "KIND_CYLINDER", "KIND_SPHERE", "FACE_CAP", "Hits",
           "CameraCuller", "AzimuthCuller", "cast", "shadowed"]
FACE_CAP = 3  # `Hits.face` of a cylinder's top cap (box faces are the axis 0, 1, 2 they face along)
T_EPS = 1e-6  # smallest accepted ray parameter: hits at the origin itself are not hits
TINY_DIR = 1e-12  # direction components of exactly 0 are nudged to this so 1/d stays finite
SHADOW_EPS_M = 2e-3  # shadow rays start this far off the surface, so a face does not shadow itself

Rect = tuple[int, int, int, int]  # (row0, row1, col0, col1) of the ray grid, half-open


@dataclasses.dataclass
class Hits:
    """Nearest hit per ray of a grid [R,C]: t (inf = miss), primitive kind, index and face."""

    t: np.ndarray  # [R,C] float64 ray parameter
    kind: np.ndarray  # [R,C] int8, KIND_*
    index: np.ndarray  # [R,C] int32 index within the primitives of that kind
    face: np.ndarray  # [R,C] int8, box: axis 0/1/2 of the face normal; cylinder: FACE_CAP or 0


class CameraCuller:
    """Image rectangles covered by boxes for a pinhole camera (exact near-plane clipping)."""

    NEAR_M = 0.05  # near plane: points closer than this along the optical axis are clipped

    def __init__(self, K: np.ndarray, T_world_cam: np.ndarray, height: int, width: int):
        self.K = np.asarray(K, dtype=np.float64)
        T_cam_world = np.linalg.inv(T_world_cam)
        self.R, self.t = T_cam_world[:3, :3], T_cam_world[:3, 3]
        self.height, self.width = int(height), int(width)

    def rects(self, lo: np.ndarray, hi: np.ndarray) -> list[list[Rect]]:
        """Rectangles of the image each box lo/hi [n,3] may cover (empty list: not visible)."""
        corners = _box_corners(lo, hi) @ self.R.T + self.t  # [n,8,3] camera frame
        a, b = corners[:, _EDGES[:, 0]], corners[:, _EDGES[:, 1]]  # [n,12,3]
        za, zb = a[..., 2] - self.NEAR_M, b[..., 2] - self.NEAR_M
        with np.errstate(divide="ignore", invalid="ignore"):
            s = za / (za - zb)
        crossing = (za * zb) < 0
        clipped = a + np.where(crossing, s, 0.0)[..., None] * (b - a)
        pts = np.concatenate([corners, clipped], axis=1)  # [n,20,3]
        ok = np.concatenate([corners[..., 2] >= self.NEAR_M, crossing], axis=1)
        z = np.where(ok, pts[..., 2], 1.0)
        uvw = pts @ self.K.T
        u, v = uvw[..., 0] / z, uvw[..., 1] / z
        c0 = np.maximum(np.floor(np.where(ok, u, np.inf).min(1)) - 1, 0)
        c1 = np.minimum(np.ceil(np.where(ok, u, -np.inf).max(1)) + 2, self.width)
        r0 = np.maximum(np.floor(np.where(ok, v, np.inf).min(1)) - 1, 0)
        r1 = np.minimum(np.ceil(np.where(ok, v, -np.inf).max(1)) + 2, self.height)
        show = ok.any(axis=1) & (c0 < c1) & (r0 < r1)
        out: list[list[Rect]] = [[] for _ in range(len(lo))]
        for i in np.flatnonzero(show):
            out[i].append((int(r0[i]), int(r1[i]), int(c0[i]), int(c1[i])))
        return out


class AzimuthCuller:
    """Column ranges of a 360° lidar grid [rows, cols] (column j at world azimuth yaw + j*2π/cols) per box."""

    def __init__(self, origin: np.ndarray, rows: int, cols: int, yaw: float = 0.0):
        self.origin = np.asarray(origin, dtype=np.float64)
        self.rows, self.cols, self.yaw = int(rows), int(cols), float(yaw)

    def rects(self, lo: np.ndarray, hi: np.ndarray) -> list[list[Rect]]:
        """Grid rectangles each box lo/hi [n,3] may cover; wrap-around gives two rectangles."""
        step = 2 * np.pi / self.cols
        ox, oy = self.origin[:2]
        xs = np.stack([lo[:, 0], hi[:, 0], hi[:, 0], lo[:, 0]], axis=1) - ox
        ys = np.stack([lo[:, 1], lo[:, 1], hi[:, 1], hi[:, 1]], axis=1) - oy
        centre = np.arctan2(ys.mean(1), xs.mean(1)) - self.yaw
        off = np.angle(np.exp(1j * (np.arctan2(ys, xs) - self.yaw - centre[:, None])))
        inside = (lo[:, 0] <= ox) & (ox <= hi[:, 0]) & (lo[:, 1] <= oy) & (oy <= hi[:, 1])
        c0 = np.floor((centre + off.min(1)) / step).astype(np.int64) - 1
        c1 = np.ceil((centre + off.max(1)) / step).astype(np.int64) + 2
        out: list[list[Rect]] = []
        for i in range(len(lo)):
            if inside[i] or c1[i] - c0[i] >= self.cols:
                out.append([(0, self.rows, 0, self.cols)])
                continue
            a = int(c0[i] % self.cols)
            b = a + int(c1[i] - c0[i])
            if b <= self.cols:
                out.append([(0, self.rows, a, b)])
            else:
                out.append([(0, self.rows, a, self.cols), (0, self.rows, 0, b - self.cols)])
        return out


_EDGES = np.array([(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7),
                   (0, 4), (1, 5), (2, 6), (3, 7)])


def _box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The 8 corners [n,8,3] of boxes lo/hi [n,3] (corner k takes hi on axis a where bit a is set)."""
    bits = (np.arange(8)[:, None] >> np.arange(3)[None, :]) & 1  # [8,3]
    return np.where(bits[None].astype(bool), hi[:, None, :], lo[:, None, :])


def _aabb_distance(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Distance [n] from point p [3] to boxes lo/hi [n,3] (0 inside)."""
    return np.linalg.norm(np.maximum(np.maximum(lo - p, p - hi), 0.0), axis=-1)


def _slab(o, inv, lo, hi):
    """Slab test against one box, per component (scalars or arrays): (tnear, tfar, per-axis entry parameters)."""
    mins, tfar = [], None
    for a in range(3):
        t1, t2 = (lo[a] - o[a]) * inv[a], (hi[a] - o[a]) * inv[a]
        mins.append(np.minimum(t1, t2))
        mx = np.maximum(t1, t2)
        tfar = mx if tfar is None else np.minimum(tfar, mx)
    tnear = np.maximum(np.maximum(mins[0], mins[1]), mins[2])
    return tnear, tfar, mins


def _cylinder(o, d, a_xy, centre, z0, z1, r):
    """Entry parameter of rays (per-component o, d) into a vertical cylinder with top cap: (t, is_cap)."""
    ox, oy = o[0] - centre[0], o[1] - centre[1]
    b = d[0] * ox + d[1] * oy
    c = ox * ox + oy * oy - r * r
    disc = b * b - a_xy * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(disc)) / a_xy
        z = o[2] + t_side * d[2]
        side = (disc >= 0) & (t_side > T_EPS) & (z >= z0) & (z <= z1)
        t_cap = (z1 - o[2]) / d[2]
    cx, cy = ox + t_cap * d[0], oy + t_cap * d[1]
    cap = (t_cap > T_EPS) & (cx * cx + cy * cy <= r * r) & (d[2] < 0)
    t_side = np.where(side, t_side, np.inf)
    t_cap = np.where(cap, t_cap, np.inf)
    return np.minimum(t_side, t_cap), t_cap < t_side


def _sphere(o, d, dd, centre, r):
    """Entry parameter of rays (per-component o, d; dd = |d|^2) into a sphere (inf = miss)."""
    ox, oy, oz = o[0] - centre[0], o[1] - centre[1], o[2] - centre[2]
    b = d[0] * ox + d[1] * oy + d[2] * oz
    c = ox * ox + oy * oy + oz * oz - r * r
    disc = b * b - dd * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / dd
    return np.where((disc >= 0) & (t > T_EPS), t, np.inf)


def cast(scene: Scene, origin: np.ndarray, dirs: np.ndarray, culler, max_dist_m: float) -> Hits:
    """Nearest hits of rays from origin [3] along dirs [R,C,3] within max_dist_m (Euclidean) of it."""
    o = np.asarray(origin, dtype=np.float64)
    d = np.ascontiguousarray(np.moveaxis(np.where(dirs == 0, TINY_DIR, dirs), -1, 0))  # [3,R,C] planes
    R, C = d.shape[1:]
    dd = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    t_max = max_dist_m / np.sqrt(dd)
    hits = Hits(np.full((R, C), np.inf), np.zeros((R, C), np.int8), np.zeros((R, C), np.int32),
                np.zeros((R, C), np.int8))
    if scene.has_ground and o[2] > 0:
        t = -o[2] / d[2]
        ok = (t > T_EPS) & (t <= t_max)
        hits.t[ok], hits.kind[ok] = t[ok], KIND_GROUND
    inv = 1.0 / d
    a_xy = d[0] * d[0] + d[1] * d[1]

    def update(kind: int, i: int, sl, t: np.ndarray, face=0) -> None:
        better = (t < hits.t[sl]) & (t <= t_max[sl])
        if better.any():
            np.copyto(hits.t[sl], t, where=better)
            np.copyto(hits.kind[sl], kind, where=better)
            np.copyto(hits.index[sl], i, where=better)
            np.copyto(hits.face[sl], face, where=better, casting="unsafe")

    for kind, lo, hi, cull_m, _ in scene.bounds():
        near = _aabb_distance(o, lo, hi) <= np.minimum(cull_m, max_dist_m)
        idx = np.flatnonzero(near)
        for i, rects in zip(idx, culler.rects(lo[idx], hi[idx])):
            for r0, r1, c0, c1 in rects:
                sl = (slice(r0, r1), slice(c0, c1))
                ds = (d[0][sl], d[1][sl], d[2][sl])
                if kind == KIND_BOX:
                    tnear, tfar, mins = _slab(o, (inv[0][sl], inv[1][sl], inv[2][sl]), scene.box_lo[i], scene.box_hi[i])
                    t = np.where((tnear <= tfar) & (tnear > T_EPS), tnear, np.inf)
                    face = np.where(mins[0] == tnear, 0, np.where(mins[1] == tnear, 1, 2))
                    update(kind, i, sl, t, face)
                elif kind == KIND_CYLINDER:
                    t, cap = _cylinder(o, ds, a_xy[sl], scene.cyl_xy[i], *scene.cyl_z[i], scene.cyl_r[i])
                    update(kind, i, sl, t, np.where(cap, FACE_CAP, 0))
                else:
                    update(kind, i, sl, _sphere(o, ds, dd[sl], scene.sph_c[i], scene.sph_r[i]))
    return hits


def shadowed(scene: Scene, points: np.ndarray, normals: np.ndarray, sun: np.ndarray, culler) -> np.ndarray:
    """Whether points [R,C,3] (NaN = none) see an object between them and the sun [3] (unit, towards it)."""
    sun = np.asarray(sun, dtype=np.float64)
    sun = np.where(sun == 0, TINY_DIR, sun)
    inv = 1.0 / sun
    valid = np.isfinite(points[..., 0])
    p = np.moveaxis(np.where(valid[..., None], points + SHADOW_EPS_M * normals, 0.0), -1, 0)
    p = np.ascontiguousarray(p)  # [3,R,C] planes
    out = np.zeros(points.shape[:2], dtype=bool)
    a_xy = sun[0] ** 2 + sun[1] ** 2
    for kind, lo, hi, _, casts in scene.bounds():
        reach = hi[:, 2:3] / sun[2]  # how far along -sun the shadow prism reaches the ground
        p_lo = np.minimum(lo, lo - reach * sun)
        p_hi = np.maximum(hi, hi - reach * sun)
        p_lo[:, 2] = 0.0
        idx = np.flatnonzero(casts)
        for i, rects in zip(idx, culler.rects(p_lo[idx], p_hi[idx])):
            for r0, r1, c0, c1 in rects:
                sl = (slice(r0, r1), slice(c0, c1))
                q = (p[0][sl], p[1][sl], p[2][sl])
                if kind == KIND_BOX:
                    tnear, tfar, _ = _slab(q, inv, scene.box_lo[i], scene.box_hi[i])
                    hit = (tnear <= tfar) & (tfar > T_EPS)
                elif kind == KIND_CYLINDER:
                    hit = np.isfinite(_cylinder(q, sun, a_xy, scene.cyl_xy[i], *scene.cyl_z[i], scene.cyl_r[i])[0])
                else:
                    hit = np.isfinite(_sphere(q, sun, 1.0, scene.sph_c[i], scene.sph_r[i]))
                out[sl] |= hit & valid[sl]
    return out
