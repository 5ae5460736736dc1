"""Appearance of the synthetic world: procedural textures per material, Lambertian sun plus
ambient light with cast shadows, a sky gradient and distance haze.

Textures are functions of the world position of a hit, so every camera and every frame sees
the same surface pattern; patterns finer than a pixel's footprint on the surface fade to their
mean (or are box-filtered analytically for stripes and windows) so far surfaces do not alias.
"""
from __future__ import annotations

import numpy as np

from fsmde_ros.data import scene as sc
from fsmde_ros.data.raycast import (
    FACE_CAP,
    KIND_BOX,
    KIND_CYLINDER,
    KIND_GROUND,
    KIND_SPHERE,
    Hits,
)

SUN_RGB = np.array([1.0, 0.96, 0.88]) * 0.62  # direct sunlight on a face turned to the sun
AMBIENT_RGB = np.array([0.50, 0.54, 0.62])  # skylight on an upward face (bluish); walls get 80 %
SKY_HORIZON_RGB = np.array([0.80, 0.86, 0.92])
SKY_ZENITH_RGB = np.array([0.30, 0.50, 0.82])
HAZE_M = 700.0  # aerial perspective: surfaces fade towards the horizon colour with distance
ASPHALT_RGB = np.array([0.31, 0.31, 0.33])
MARKING_RGB = np.array([0.86, 0.86, 0.82])
GLASS_RGB = np.array([0.14, 0.18, 0.24])
MARKING_WIDTH_M = 0.15
CENTRE_DASH_M, CENTRE_PERIOD_M = 3.0, 9.0  # dashed centre line: 3 m paint, 6 m gap


NOISE_PERIOD = 256  # lattice period of the value noise: at the finest scale used (0.3 m) it repeats every 77 m
_NOISE_FLAT = np.random.default_rng(0x7E57).random(NOISE_PERIOD * NOISE_PERIOD)  # fixed: textures are part of the world


def _lattice(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0,1) per integer lattice point (ix, iy) for a seed (a table look-up, periodic)."""
    mask = NOISE_PERIOD - 1  # a power of two: & wraps like a modulo
    return _NOISE_FLAT.take(((ix + 101 * seed) & mask) * NOISE_PERIOD + ((iy + 37 * seed) & mask))


def value_noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth value noise in [0,1) with unit lattice spacing."""
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    ix, iy = x0.astype(np.int64), y0.astype(np.int64)
    a, b = _lattice(ix, iy, seed), _lattice(ix + 1, iy, seed)
    c, d = _lattice(ix, iy + 1, seed), _lattice(ix + 1, iy + 1, seed)
    return (a + (b - a) * sx) * (1 - sy) + (c + (d - c) * sx) * sy


def fbm(x, y, seed: int, scale_m: float, fp: np.ndarray, octaves: int = 3) -> np.ndarray:
    """Fractal noise in ~[0,1] of feature size scale_m [m]; octaves finer than the footprint fp [m] fade to 0.5."""
    out, total, amp, s = 0.0, 0.0, 1.0, scale_m
    for k in range(octaves):
        w = amp * np.clip(1.5 - fp / s, 0.0, 1.0)
        out = out + w * (value_noise(x / s, y / s, seed + 17 * k) - 0.5)
        total, amp, s = total + amp, amp * 0.5, s * 0.5
    return 0.5 + out / total


def coverage(inside_m: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Anti-aliased indicator: 1 deep inside a shape, 0 outside, given signed distance inside_m [m]."""
    return np.clip(0.5 + inside_m / np.maximum(fp, 1e-4), 0.0, 1.0)


def _mix(a, b, w):
    return a + (b - a) * np.asarray(w)[..., None]


def sky(dirs: np.ndarray) -> np.ndarray:
    """Sky colour [...,3] of world ray directions [...,3]: pale at the horizon, blue above."""
    el = dirs[..., 2] / np.linalg.norm(dirs, axis=-1)
    return _mix(SKY_HORIZON_RGB, SKY_ZENITH_RGB, np.sqrt(np.clip(el, 0.0, 1.0)))


def _ground(scene: sc.Scene, p: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Road (asphalt, centre and edge lines), sidewalk and verge (grass or paving) by y."""
    lay, seed = scene.layout, scene.seed
    x, y = p[:, 0], p[:, 1]
    left = y > 0
    kerb = np.where(left, lay.kerb_m[0], lay.kerb_m[1])
    outer = kerb + np.where(left, lay.sidewalk_width_m[0], lay.sidewalk_width_m[1])
    ay = np.abs(y)
    out = np.full((len(p), 3), 0.6)  # under the sidewalk slabs (hidden)
    road = ay <= kerb
    if road.any():
        x, y, ay, f = x[road], y[road], ay[road], fp[road]
        patches, grain = fbm(x, y, seed, 4.0, f), fbm(x, y, seed + 5, 0.3, f, octaves=2)
        col = ASPHALT_RGB * ((0.82 + 0.35 * patches) * (0.9 + 0.2 * grain))[:, None]
        dash = CENTRE_DASH_M / 2 - np.abs(np.mod(x, CENTRE_PERIOD_M) - CENTRE_DASH_M / 2)
        paint = np.minimum(coverage(MARKING_WIDTH_M / 2 - ay, f), coverage(dash, 3 * f))
        edge = np.minimum(lay.lane_width_m, kerb[road] - 0.3)
        paint = np.maximum(paint, coverage(MARKING_WIDTH_M / 2 - np.abs(ay - edge), f))
        wear = 0.85 + 0.15 * value_noise(x / 0.5, y / 0.5, seed + 9)
        out[road] = _mix(col, MARKING_RGB * wear[:, None], paint)
    verge = np.abs(p[:, 1]) > outer
    if verge.any():
        g = fbm(p[verge, 0], p[verge, 1], seed + 3, 1.5, fp[verge])
        grass = np.where(left, lay.grass_verge[0], lay.grass_verge[1])[verge]
        out[verge] = np.where(grass[:, None], np.array([0.24, 0.40, 0.14]) * (0.7 + 0.6 * g)[:, None],
                              np.array([0.56, 0.54, 0.50]) * (0.85 + 0.3 * g)[:, None])
    return out


def _sidewalk(p, axis, prm, col, fp, seed):
    """Paving slabs with grout lines on top, kerb stones along the road edge, concrete sides."""
    tile = 0.6
    gx, gy = p[:, 0] / tile, p[:, 1] / tile
    grout = np.minimum(np.abs(gx - np.round(gx)), np.abs(gy - np.round(gy))) * tile
    shade = 0.9 + 0.15 * _lattice(np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64), seed + 11)
    top = col * (shade * (1 - 0.25 * coverage(0.02 - grout, fp)))[:, None]
    kerb_stone = np.abs(np.abs(p[:, 1]) - prm[:, 1]) < 0.25
    top = np.where(kerb_stone[:, None], col * 1.12, top)
    return np.where((axis == 2)[:, None], top, col * 1.08)


def _building(p, axis, idx, scene, fp):
    """Facade colour with a grid of windows (shop windows on some ground floors), grey roof."""
    prm, col = scene.box_param[idx], scene.box_color[idx]
    lo, hi = scene.box_lo[idx], scene.box_hi[idx]
    spacing, floor_h, win_w, win_h, shop, hseed = prm.T
    along = np.where(axis == 1, 0, 1)  # the horizontal axis within the face
    u = p[np.arange(len(p)), along] - lo[np.arange(len(p)), along]
    width = hi[np.arange(len(p)), along] - lo[np.arange(len(p)), along]
    z = p[:, 2]
    cu, cz = u / spacing, z / floor_h
    su, sz, floor = cu - np.floor(cu), cz - np.floor(cz), np.floor(cz)
    shop_floor = (floor == 0) & (shop > 0)
    half_w = np.where(shop_floor, 0.42, win_w / 2)
    z0 = np.where(shop_floor, 0.12, 0.30)
    z1 = np.where(shop_floor, 0.85, 0.30 + win_h)
    inside = np.minimum((half_w - np.abs(su - 0.5)) * spacing, np.minimum(sz - z0, z1 - sz) * floor_h)
    fits = (u > 0.4) & (u < width - 0.4) & ((floor + 1) * floor_h <= hi[:, 2] + 0.1)
    win = coverage(inside, fp) * fits
    tint = _lattice(np.floor(cu).astype(np.int64) + hseed.astype(np.int64), floor.astype(np.int64), 23)
    glass = GLASS_RGB + (0.22 * tint)[:, None] * np.array([0.7, 0.8, 1.0])
    wall = col * (0.9 + 0.2 * fbm(u, z, int(scene.seed) + 31, 2.0, fp, octaves=2))[:, None]
    wall = wall * (1 - 0.15 * coverage(0.12 * floor_h - sz * floor_h, fp) * (floor > 0))[:, None]
    wall = np.where((z < 0.5)[:, None], wall * 0.75, wall)
    face = _mix(wall, glass, win)
    top = axis == 2
    face[top] = np.array([0.34, 0.33, 0.32]) * (0.85 + 0.3 * fbm(p[top, 0], p[top, 1], 41, 3.0, fp[top]))[:, None]
    return face


def _car_body(p, axis, sign, prm, col, fp):
    """Body paint; head lights (front) or red tail lights (back) on the ±x faces; dark bumpers."""
    heading, xc, yc, half_w, z0, z1 = prm.T
    dy, z = np.abs(p[:, 1] - yc), p[:, 2]
    lamp = np.minimum(np.minimum(dy - (half_w - 0.42), half_w - 0.1 - dy), np.minimum(z - (z1 - 0.22), z1 - 0.06 - z))
    lamp = coverage(lamp, fp) * (axis == 0)
    lamp_rgb = np.where((sign == heading)[:, None], [0.95, 0.93, 0.80], [0.75, 0.06, 0.05])
    out = _mix(col, lamp_rgb, lamp)
    bumper = coverage(z0 + 0.12 - z, fp) * (axis != 2)
    return _mix(out, np.array([0.10, 0.10, 0.11]), bumper)


def _car_cabin(p, axis, prm, col, fp):
    """Dark windows framed by body-coloured pillars; roof in body colour."""
    xcab, half_l, yc, half_w, z0, z1 = prm.T
    dx, dy, z = np.abs(p[:, 0] - xcab), np.abs(p[:, 1] - yc), p[:, 2]
    vert = np.minimum(z - z0 - 0.05, z1 - 0.07 - z)
    side = np.minimum(np.minimum(half_l - 0.14 - dx, dx - 0.05), vert)
    front = np.minimum(half_w - 0.1 - dy, vert)
    glass = coverage(np.where(axis == 1, side, front), fp) * (axis != 2)
    refl = GLASS_RGB * 0.5 + (0.10 * np.clip((z - z0) / (z1 - z0), 0, 1))[:, None]
    return _mix(col, refl, glass)


def _tyre(p, axis, prm, fp):
    """Black rubber with a grey hub on the outward faces."""
    xa, zc = prm[:, 0], prm[:, 1]
    r = np.hypot(p[:, 0] - xa, p[:, 2] - zc)
    hub = coverage(0.17 - r, fp) * (axis == 1)
    return _mix(np.full((len(p), 3), 0.045), np.array([0.42, 0.42, 0.43]), hub)


def albedo(scene: sc.Scene, hits: Hits, p: np.ndarray, sel: np.ndarray, dirs: np.ndarray, fp: np.ndarray):
    """Surface colour [M,3] of the hits at flat indices sel [M] with world points p [M,3]."""
    kind, idx = hits.kind.ravel()[sel], hits.index.ravel()[sel]
    face = hits.face.ravel()[sel].astype(np.int64)
    out = np.zeros((len(sel), 3))
    g = kind == KIND_GROUND
    if g.any():
        out[g] = _ground(scene, p[g], fp[g])
    m = kind == KIND_BOX
    mats = np.where(m, scene.box_mat[idx] if len(scene.box_mat) else -1, -1)
    for mat in np.unique(mats[m]):
        k = mats == mat
        i, a, q, f = idx[k], face[k], p[k], fp[k]
        col = scene.box_color[i]
        if mat == sc.MAT_SIDEWALK:
            out[k] = _sidewalk(q, a, scene.box_param[i], col, f, scene.seed)
        elif mat == sc.MAT_BUILDING:
            out[k] = _building(q, a, i, scene, f)
        elif mat == sc.MAT_CAR_BODY:
            sign = -np.sign(dirs.reshape(-1, 3)[sel[k], 0])
            out[k] = _car_body(q, a, sign, scene.box_param[i], col, f)
        elif mat == sc.MAT_CAR_CABIN:
            out[k] = _car_cabin(q, a, scene.box_param[i], col, f)
        elif mat == sc.MAT_TYRE:
            out[k] = _tyre(q, a, scene.box_param[i], f)
        else:
            out[k] = col
    c = kind == KIND_CYLINDER
    if c.any():
        i, q = idx[c], p[c]
        ang = np.arctan2(q[:, 1] - scene.cyl_xy[i, 1], q[:, 0] - scene.cyl_xy[i, 0])
        bark = np.where(scene.cyl_mat[i] == sc.MAT_TRUNK, 0.45, 0.1)
        out[c] = scene.cyl_color[i] * (1 + bark * (value_noise(ang * 3, q[:, 2] * 4, 51) - 0.5))[:, None]
    s = kind == KIND_SPHERE
    if s.any():
        i, q, f = idx[s], p[s], fp[s]
        n1 = fbm(q[:, 0] + 0.7 * q[:, 2], q[:, 1] - 0.5 * q[:, 2], scene.seed + 61, 0.6, f)
        n2 = fbm(q[:, 1] + 0.6 * q[:, 2] + 100 * i, q[:, 0], scene.seed + 67, 0.35, f)
        out[s] = scene.sph_color[i] * (0.55 + 0.9 * n1 * n2 + 0.2 * n2)[:, None]
    return out


def normals(scene: sc.Scene, hits: Hits, p: np.ndarray, sel: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Unit surface normals [M,3], facing the ray origin, of the hits at flat indices sel [M]."""
    kind, idx = hits.kind.ravel()[sel], hits.index.ravel()[sel]
    face = hits.face.ravel()[sel].astype(np.int64)
    d = dirs.reshape(-1, 3)[sel]
    n = np.zeros((len(sel), 3))
    n[:, 2] = 1.0  # ground and cylinder caps
    b = kind == KIND_BOX
    n[b] = 0.0
    n[np.flatnonzero(b), face[b]] = -np.sign(d[b, face[b]])
    c = (kind == KIND_CYLINDER) & (face != FACE_CAP)
    if c.any():
        rel = p[c, :2] - scene.cyl_xy[idx[c]]
        n[c] = np.column_stack([rel / np.linalg.norm(rel, axis=1, keepdims=True), np.zeros(c.sum())])
    s = kind == KIND_SPHERE
    if s.any():
        n[s] = (p[s] - scene.sph_c[idx[s]]) / scene.sph_r[idx[s], None]
    return n


def light(albedo_rgb: np.ndarray, n: np.ndarray, sun: np.ndarray, shadow: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Lambertian sun (off in shadow) plus hemispherical ambient, then haze: colour [M,3]."""
    direct = np.clip(n @ sun, 0.0, 1.0) * (~shadow)
    ambient = AMBIENT_RGB * (0.8 + 0.2 * n[:, 2:3])
    rgb = albedo_rgb * (ambient + direct[:, None] * SUN_RGB)
    return _mix(rgb, SKY_HORIZON_RGB, 1.0 - np.exp(-dist / HAZE_M))
