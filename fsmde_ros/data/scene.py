"""Procedural street scenes for the synthetic surround world, as arrays of primitives.

World frame: x along the road (the driving direction), y to the left, z up, metres; the ground
is the plane z = 0, the road centre line is y = 0 and the ego vehicle drives in the right
lane (y < 0) towards +x. Primitives: axis-aligned boxes (buildings, car parts, sidewalks,
lamp arms), vertical cylinders (poles, trunks) and spheres (tree crowns), each with a
material, a base colour and material parameters that `shading` turns into textures.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Primitive kinds (`Scene.bounds`, `raycast.Hits.kind`); 0 = no hit.
KIND_NONE, KIND_GROUND, KIND_BOX, KIND_CYLINDER, KIND_SPHERE = 0, 1, 2, 3, 4
# Materials (`Scene.*_mat`); the ground's material follows from y (road, markings, verge).
MAT_PLAIN, MAT_SIDEWALK, MAT_BUILDING, MAT_CAR_BODY, MAT_CAR_CABIN, MAT_TYRE = 0, 1, 2, 3, 4, 5
MAT_POLE, MAT_TRUNK, MAT_FOLIAGE = 6, 7, 8

KERB_HEIGHT_M = 0.15  # sidewalks are boxes this high: their road-facing side is the kerb
BUILDING_SETBACK_M = (8.0, 20.0)  # facades stand this far from the road centre, as in a town street
FACADE_JITTER_M = 7.0  # facades of one row stand up to this much further back than the nearest
BACK_ROW_Y_M = (34.0, 48.0)  # a second row of taller buildings fills the gaps of the first
STREET_MARGIN_M = 160.0  # the street extends this far beyond both ends of the drive
SMALL_OBJECT_CULL_M = 120.0  # cars, poles, trees farther than this are a few pixels: skipped
LARGE_OBJECT_CULL_M = 1e4  # buildings are never culled by distance (the cast's range still applies)
PARKING_WIDTH_M = 2.1  # a parking strip between the lane and the kerb, on some streets
CAR_HEIGHT_M = (1.40, 1.60)
CAR_LENGTH_M = (4.1, 4.9)
CAR_WIDTH_M = (1.75, 1.90)
SUN_ELEVATION_DEG = (35.0, 65.0)  # a daytime sun: lit faces and shadows differ by orientation

FACADE_COLOURS = np.array([  # sRGB in [0,1]: render, brick, stone, concrete, pastel
    [0.80, 0.74, 0.62], [0.62, 0.33, 0.25], [0.70, 0.68, 0.64], [0.55, 0.56, 0.58],
    [0.86, 0.80, 0.66], [0.72, 0.52, 0.38], [0.78, 0.80, 0.78], [0.66, 0.72, 0.78],
    [0.88, 0.86, 0.80], [0.50, 0.40, 0.34],
])
# The domain-shifted streets' facades (held-out evaluation only): glass, dark brick, painted colours.
SHIFTED_FACADE_COLOURS = np.array([
    [0.30, 0.42, 0.55], [0.35, 0.18, 0.16], [0.20, 0.45, 0.40], [0.85, 0.55, 0.30], [0.55, 0.30, 0.50],
    [0.25, 0.25, 0.28], [0.92, 0.92, 0.95], [0.60, 0.70, 0.35], [0.45, 0.50, 0.62], [0.75, 0.35, 0.30],
])
CAR_COLOURS = np.array([
    [0.90, 0.90, 0.90], [0.08, 0.08, 0.09], [0.62, 0.63, 0.65], [0.35, 0.36, 0.38],
    [0.12, 0.18, 0.38], [0.62, 0.08, 0.07], [0.20, 0.30, 0.22], [0.80, 0.72, 0.50],
    [0.15, 0.40, 0.65],
])


@dataclasses.dataclass(frozen=True)
class StreetStyle:
    """What a domain shift changes (`STREET_STYLES`): the look and the build of a street, not its geometry rules.

    density multiplies how often poles, trees and traffic occur (their spacing is divided by it) and the
    chance of a parking strip; the window tuples are the (low, high) of the facade pattern's draws [m or share].
    """

    facade_colours: np.ndarray
    sun_elevation_deg: tuple[float, float]
    floors_front: tuple[int, int]  # floors of the first row of buildings [low, high)
    floors_back: tuple[int, int]
    window_spacing_m: tuple[float, float]
    window_width_share: tuple[float, float]
    density: float


STREET_STYLES = {
    "street": StreetStyle(FACADE_COLOURS, SUN_ELEVATION_DEG, (2, 9), (4, 13), (2.2, 3.6), (0.35, 0.6), 1.0),
    # held-out domain shift: other palettes and window patterns, a low sun, taller buildings, denser streets
    "shifted": StreetStyle(SHIFTED_FACADE_COLOURS, (12.0, 25.0), (5, 14), (8, 20), (1.5, 2.4), (0.6, 0.85), 1.6),
}


@dataclasses.dataclass(frozen=True)
class StreetLayout:
    """Cross-section of the road; `side` tuples are (left y>0, right y<0)."""

    lane_width_m: float  # one lane each way: the centre line is y = 0, edge lines at |y| = lane
    kerb_m: tuple[float, float]  # kerb at |y| = kerb_m (lane plus an optional parking strip)
    sidewalk_width_m: tuple[float, float]
    grass_verge: tuple[bool, bool]  # verge between sidewalk and buildings: grass or paving

    @property
    def ego_lane_y_m(self) -> float:
        """Centre of the ego (right) lane."""
        return -self.lane_width_m / 2


@dataclasses.dataclass(frozen=True)
class Scene:
    """All primitives of one world; `params` columns are material-specific (see `_Builder`)."""

    layout: StreetLayout | None  # None: no ground plane (test scenes)
    sun: np.ndarray  # [3] unit vector towards the sun
    seed: int
    box_lo: np.ndarray  # [Nb,3]
    box_hi: np.ndarray  # [Nb,3]
    box_mat: np.ndarray  # [Nb] int
    box_color: np.ndarray  # [Nb,3] sRGB in [0,1]
    box_param: np.ndarray  # [Nb,6]
    box_cull: np.ndarray  # [Nb] metres
    cyl_xy: np.ndarray  # [Nc,2] axis position
    cyl_z: np.ndarray  # [Nc,2] bottom, top
    cyl_r: np.ndarray  # [Nc]
    cyl_mat: np.ndarray
    cyl_color: np.ndarray
    cyl_cull: np.ndarray
    sph_c: np.ndarray  # [Ns,3]
    sph_r: np.ndarray  # [Ns]
    sph_mat: np.ndarray
    sph_color: np.ndarray
    sph_cull: np.ndarray

    @property
    def has_ground(self) -> bool:
        return self.layout is not None

    def bounds(self) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per primitive kind: (kind, lo [n,3], hi [n,3], cull distance [n], casts-shadow mask [n])."""
        cyl_lo = np.column_stack([self.cyl_xy - self.cyl_r[:, None], self.cyl_z[:, 0]])
        cyl_hi = np.column_stack([self.cyl_xy + self.cyl_r[:, None], self.cyl_z[:, 1]])
        r = self.sph_r[:, None]
        return [
            (KIND_BOX, self.box_lo, self.box_hi, self.box_cull, self.box_mat != MAT_SIDEWALK),
            (KIND_CYLINDER, cyl_lo, cyl_hi, self.cyl_cull, np.ones(len(self.cyl_r), bool)),
            (KIND_SPHERE, self.sph_c - r, self.sph_c + r, self.sph_cull, np.ones(len(self.sph_r), bool)),
        ]


class _Builder:
    """Collects primitives, then freezes them into a `Scene`."""

    def __init__(self) -> None:
        self.boxes: list[tuple] = []
        self.cyls: list[tuple] = []
        self.sphs: list[tuple] = []

    def box(self, lo, hi, mat, color, param=(), cull=LARGE_OBJECT_CULL_M) -> None:
        p = np.zeros(6)
        p[:len(param)] = param
        self.boxes.append((np.minimum(lo, hi), np.maximum(lo, hi), mat, np.asarray(color, float), p, cull))

    def cylinder(self, x, y, z0, z1, r, mat, color, cull=SMALL_OBJECT_CULL_M) -> None:
        self.cyls.append(((x, y), (z0, z1), r, mat, np.asarray(color, float), cull))

    def sphere(self, centre, r, mat, color, cull=SMALL_OBJECT_CULL_M) -> None:
        self.sphs.append((centre, r, mat, np.asarray(color, float), cull))

    def build(self, layout: StreetLayout | None, sun: np.ndarray, seed: int) -> Scene:
        def cols(items, n, widths):
            if not items:
                return [np.zeros((0,) + w) if w else np.zeros(0) for w in widths]
            return [np.array([it[k] for it in items], dtype=np.float64) for k in range(n)]

        b = cols(self.boxes, 6, [(3,), (3,), (), (3,), (6,), ()])
        c = cols(self.cyls, 6, [(2,), (2,), (), (), (3,), ()])
        s = cols(self.sphs, 5, [(3,), (), (), (3,), ()])
        return Scene(layout, np.asarray(sun, float) / np.linalg.norm(sun), int(seed),
                     b[0], b[1], b[2].astype(np.int16), b[3], b[4], b[5],
                     c[0], c[1], c[2], c[3].astype(np.int16), c[4], c[5],
                     s[0], s[1], s[2].astype(np.int16), s[3], s[4])


def _sun(rng: np.random.Generator, elevation_deg: tuple[float, float] = SUN_ELEVATION_DEG) -> np.ndarray:
    az = rng.uniform(0, 2 * np.pi)
    el = np.radians(rng.uniform(*elevation_deg))
    return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


def box_scene(lo, hi, color=(0.8, 0.5, 0.3), ground: bool = False, sun=(0.3, 0.2, 0.9)) -> Scene:
    """A world made of one plain box lo..hi [3] (and optionally the ground), for tests."""
    b = _Builder()
    b.box(np.asarray(lo, float), np.asarray(hi, float), MAT_PLAIN, color)
    layout = StreetLayout(3.5, (3.5, 3.5), (3.0, 3.0), (True, True)) if ground else None
    return b.build(layout, np.asarray(sun, float), seed=0)


def _car(b: _Builder | None, rng: np.random.Generator, xc: float, yc: float, heading: float) -> None:
    """A car of two boxes (body, cabin) and two tyre blocks, centred at (xc, yc), facing ±x (b None: draw only)."""
    L, W, H = rng.uniform(*CAR_LENGTH_M), rng.uniform(*CAR_WIDTH_M), rng.uniform(*CAR_HEIGHT_M)
    color = CAR_COLOURS[rng.integers(len(CAR_COLOURS))] * rng.uniform(0.9, 1.05)
    Lc = rng.uniform(0.48, 0.56) * L
    if b is None:
        return
    z_body0, z_body1 = 0.30, 0.62 * H
    b.box((xc - L / 2, yc - W / 2, z_body0), (xc + L / 2, yc + W / 2, z_body1), MAT_CAR_BODY, color,
          (heading, xc, yc, W / 2, z_body0, z_body1), SMALL_OBJECT_CULL_M)
    Wc = W - 0.14
    xcab = xc - heading * 0.06 * L
    b.box((xcab - Lc / 2, yc - Wc / 2, z_body1), (xcab + Lc / 2, yc + Wc / 2, H), MAT_CAR_CABIN, color,
          (xcab, Lc / 2, yc, Wc / 2, z_body1, H), SMALL_OBJECT_CULL_M)
    for axle in (-1, 1):
        xa = xc + axle * (L / 2 - 0.85)
        b.box((xa - 0.32, yc - W / 2 - 0.01, 0.0), (xa + 0.32, yc + W / 2 + 0.01, 0.64), MAT_TYRE,
              (0.05, 0.05, 0.05), (xa, 0.32, 0.30), SMALL_OBJECT_CULL_M)


def _buildings(b: _Builder, rng, side: int, x0: float, x1: float, y_min: float, back_row: bool,
               style: StreetStyle) -> None:
    """A row of buildings along x0..x1 on one side (+1 left, -1 right) with facades beyond y_min."""
    x = x0
    while x < x1:
        length = rng.uniform(20, 45) if back_row else rng.uniform(8, 28)
        if back_row:
            y_near, depth, floors = rng.uniform(*BACK_ROW_Y_M), rng.uniform(10, 20), rng.integers(*style.floors_back)
        else:
            y_near = rng.uniform(y_min, y_min + FACADE_JITTER_M)
            depth, floors = rng.uniform(8, 18), rng.integers(*style.floors_front)
        floor_h = rng.uniform(3.0, 3.6)
        height = floors * floor_h + rng.uniform(0.3, 1.5)
        color = style.facade_colours[rng.integers(len(style.facade_colours))] * rng.uniform(0.88, 1.08)
        param = (rng.uniform(*style.window_spacing_m), floor_h, rng.uniform(*style.window_width_share), rng.uniform(0.4, 0.6),
                 float(rng.random() < 0.45), rng.integers(1 << 20))
        b.box((x, side * y_near, 0.0), (x + length, side * (y_near + depth), height), MAT_BUILDING,
              np.clip(color, 0, 1), param)
        x += length + (0.0 if back_row or rng.random() < 0.5 else rng.uniform(1.0, 7.0))


def street_scene(seed: int, x_min: float, x_max: float, ego_x_range: tuple[float, float],
                 style: StreetStyle = STREET_STYLES["street"]) -> Scene:
    """A straight street from x_min to x_max [m]; the ego lane is kept free over ego_x_range (+ margin).

    Every row of objects draws from its own random stream, generated from x_min forwards, so a
    longer street is the same world extended (only the end buildings and the traffic ahead of
    the ego lane's free range move with x_max).
    """
    def stream(k: int) -> np.random.Generator:
        return np.random.default_rng([int(seed), 0x5CE7E, k])

    rng = stream(0)
    lane = rng.uniform(3.0, 3.5)
    parking = rng.random(2) < 0.4 * style.density  # parking strip left / right
    kerb = lane + PARKING_WIDTH_M * parking
    sidewalk = rng.uniform(2.0, 4.0, 2)
    layout = StreetLayout(lane, (float(kerb[0]), float(kerb[1])), (float(sidewalk[0]), float(sidewalk[1])),
                          tuple(bool(g) for g in rng.random(2) < 0.5))
    sun, cap_h = _sun(rng, style.sun_elevation_deg), rng.uniform(12, 30, 2)
    b = _Builder()
    for k, side in enumerate((1, -1)):
        hw = kerb[k]
        kerb_out = hw + sidewalk[k]
        b.box((x_min, side * hw, 0.0), (x_max, side * kerb_out, KERB_HEIGHT_M), MAT_SIDEWALK,
              (0.62, 0.61, 0.58), (side, hw))
        y_min = max(BUILDING_SETBACK_M[0], kerb_out + 1.0)
        y_min = min(y_min, BUILDING_SETBACK_M[1] - FACADE_JITTER_M)
        _buildings(b, stream(10 + k), side, x_min, x_max, y_min, back_row=False, style=style)
        _buildings(b, stream(12 + k), side, x_min, x_max, 0.0, back_row=True, style=style)
        rng = stream(14 + k)
        poles = np.arange(x_min + rng.uniform(0, 20), x_max, rng.uniform(22, 32) / style.density)
        y_pole = side * (hw + 0.45)
        for xp in poles:  # street lamp: pole, arm over the road, lamp head
            top = rng.uniform(6.5, 8.0)
            b.cylinder(xp, y_pole, 0.0, top, 0.09, MAT_POLE, (0.45, 0.46, 0.47))
            b.box((xp - 0.06, y_pole - side * 1.6, top - 0.12), (xp + 0.06, y_pole, top), MAT_POLE,
                  (0.45, 0.46, 0.47), (), SMALL_OBJECT_CULL_M)
            b.box((xp - 0.25, y_pole - side * 1.9, top - 0.2), (xp + 0.25, y_pole - side * 1.5, top - 0.05),
                  MAT_POLE, (0.25, 0.25, 0.27), (), SMALL_OBJECT_CULL_M)
        rng = stream(16 + k)
        if rng.random() < 0.8:  # a row of trees on the outer edge of the sidewalk
            y_tree = side * (kerb_out - 0.7)
            for xt in np.arange(x_min + rng.uniform(0, 10), x_max, rng.uniform(7, 14) / style.density):
                xt += rng.uniform(-1.5, 1.5)
                if np.min(np.abs(poles - xt), initial=99.0) < 2.5 or rng.random() < 0.15:
                    continue
                trunk_h, crown = rng.uniform(2.2, 3.4), rng.uniform(1.4, 2.6)
                b.cylinder(xt, y_tree, 0.0, trunk_h + 0.5 * crown, rng.uniform(0.14, 0.24), MAT_TRUNK,
                           (0.36, 0.27, 0.18))
                green = np.array([0.22, 0.40, 0.16]) * rng.uniform(0.75, 1.2) + rng.uniform(-0.04, 0.04, 3)
                b.sphere((xt, y_tree, trunk_h + 0.75 * crown), crown, MAT_FOLIAGE, np.clip(green, 0, 1))
        if parking[k]:  # parked cars along this side's parking strip
            rng = stream(18 + k)
            x = x_min + rng.uniform(0, 5)
            while x < x_max:
                if rng.random() < 0.75:
                    _car(b, rng, x + 2.4, side * (lane + PARKING_WIDTH_M / 2), float(-side))
                x += rng.uniform(5.2, 10.0)
    rng = stream(20)
    x = x_min + rng.uniform(0, 20)  # oncoming lane: sparse stopped traffic
    while x < x_max:
        _car(b, rng, x, lane / 2 + rng.uniform(-0.2, 0.2), -1.0)
        x += rng.uniform(9.0, 45.0) / style.density
    rng = stream(21)
    free0, free1 = ego_x_range[0] - 12.0, ego_x_range[1] + 15.0
    x = x_min + rng.uniform(0, 10)  # ego lane: traffic behind the start and ahead of the end
    while x < x_max:
        _car(None if free0 < x < free1 else b, rng, x, -lane / 2 + rng.uniform(-0.2, 0.2), 1.0)
        x += rng.uniform(9.0, 30.0) / style.density
    # buildings closing the street at both ends
    b.box((x_min - 15, -60, 0), (x_min, 60, cap_h[0]), MAT_BUILDING, FACADE_COLOURS[2], (3.0, 3.3, 0.5, 0.5, 1, 7))
    b.box((x_max, -60, 0), (x_max + 15, 60, cap_h[1]), MAT_BUILDING, FACADE_COLOURS[0], (3.0, 3.3, 0.5, 0.5, 1, 9))
    return b.build(layout, sun, seed)
