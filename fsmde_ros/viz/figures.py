"""The demo's pictures: surround depth with uncertainty, the fused cloud from above, latency.

OpenCV only (no matplotlib), all images RGB uint8, built from plain arrays so that the demo,
the README and tests can make them from any source (live node output, a bag, a dataset).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from fsmde_ros.viz.depth_pictures import FONT, colorbar, colorize_depth, surround_rows

# Distinct, colour-blind-friendlier colours per camera (ring order), RGB.
CAMERA_COLOURS = np.array([(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
                           (213, 94, 0), (204, 121, 167), (160, 160, 160)], dtype=np.uint8)
EGO_SIZE_M = (4.8, 1.9)  # length, width of the drawn ego vehicle (a mid-size car)
STD_RATIO_MAX = 0.4  # uncertainty panels map depth_std / depth from 0 (black) to this (white): depth_std is a
# one-sigma error (docs/method.md): the bundled student's median std/depth is 0.08, its P99 0.3 (held-out world 100)


def uncertainty_image(depth_m: np.ndarray, std_m: np.ndarray) -> np.ndarray:
    """Relative uncertainty std/depth [H,W] as RGB (black = certain, bright = uncertain; NaN = dark blue)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = std_m / depth_m
    valid = np.isfinite(ratio)
    x = np.clip(np.where(valid, ratio, 0) / STD_RATIO_MAX, 0, 1)
    rgb = cv2.cvtColor(cv2.applyColorMap((x * 255).astype(np.uint8), cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    rgb[~valid] = (10, 10, 40)
    return rgb


def surround_depth_figure(images: np.ndarray, depth_m: np.ndarray, std_m: np.ndarray | None, names: Sequence[str],
                          yaws_deg: Sequence[float], min_m: float = 1.0, max_m: float = 100.0,
                          title: str | None = None) -> np.ndarray:
    """Front row and back row (left to right as seen from the car): RGB, depth, uncertainty tiles."""
    panels = [("depth", lambda i: colorize_depth(depth_m[i], min_m, max_m))]
    if std_m is not None:
        panels.append(("std/depth", lambda i: uncertainty_image(depth_m[i], std_m[i])))
    grid = surround_rows(images, panels, names, yaws_deg)
    parts = [grid, colorbar(grid.shape[1], min_m, max_m)]
    if std_m is not None:
        parts.append(_ratio_bar(grid.shape[1]))
    if title:
        parts.insert(0, _title_bar(grid.shape[1], title))
    return np.concatenate(parts, axis=0)


def _title_bar(width: int, text: str, height: int = 34) -> np.ndarray:
    bar = np.full((height, width, 3), 24, np.uint8)
    cv2.putText(bar, text, (10, height - 10), FONT, 0.6, (240, 240, 240), 1, cv2.LINE_AA)
    return bar


def _ratio_bar(width: int, height: int = 40) -> np.ndarray:
    """Colour bar of the uncertainty panels (std / depth)."""
    bar = np.full((height, width, 3), 24, np.uint8)
    x0, x1 = 160, width - 30
    ramp = cv2.applyColorMap(np.linspace(0, 255, x1 - x0).astype(np.uint8)[None, :], cv2.COLORMAP_INFERNO)
    bar[6:20, x0:x1] = cv2.cvtColor(np.repeat(ramp, 14, axis=0), cv2.COLOR_BGR2RGB)
    cv2.putText(bar, "std / depth", (8, 18), FONT, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):  # ticks at fractions of the scale, labelled in std / depth
        x = int(x0 + frac * (x1 - x0 - 1))
        cv2.putText(bar, f"{frac * STD_RATIO_MAX:.2f}", (max(0, x - 10), 36), FONT, 0.4, (230, 230, 230), 1, cv2.LINE_AA)
    return bar


def bev_figure(xyz: np.ndarray, camera: np.ndarray, names: Sequence[str], range_m: float = 40.0,
               px_per_m: float = 10.0, ring_step_m: float = 10.0) -> np.ndarray:
    """The fused cloud seen from above: base_link x up, y left; points coloured by camera,
    the ego vehicle, range rings and a legend. xyz [M,3] metres, camera [M] index."""
    size = int(2 * range_m * px_per_m)
    img = np.full((size, size, 3), 18, np.uint8)
    c = size / 2

    def to_px(x, y):
        return (c - y * px_per_m), (c - x * px_per_m)  # image u grows right (= -y), v grows down (= -x)

    for r in np.arange(ring_step_m, range_m + 1e-6, ring_step_m):
        cv2.circle(img, (int(c), int(c)), int(r * px_per_m), (70, 70, 70), 1, cv2.LINE_AA)
        cv2.putText(img, f"{r:.0f} m", (int(c + 4), int(c - r * px_per_m + 14)), FONT, 0.4, (140, 140, 140), 1,
                    cv2.LINE_AA)
    xyz = np.asarray(xyz)
    if len(xyz):
        order = np.argsort(xyz[:, 2])  # draw low points first so that walls stay visible over the road
        u, v = to_px(xyz[order, 0], xyz[order, 1])
        keep = (u >= 0) & (u < size) & (v >= 0) & (v < size)
        colours = CAMERA_COLOURS[np.asarray(camera)[order][keep] % len(CAMERA_COLOURS)]
        img[v[keep].astype(int), u[keep].astype(int)] = colours
    length, width = EGO_SIZE_M
    u0, v0 = to_px(length * 0.75, width / 2)
    u1, v1 = to_px(-length * 0.25, -width / 2)
    cv2.rectangle(img, (int(u0), int(v0)), (int(u1), int(v1)), (255, 255, 255), 2)
    tip = to_px(length * 0.75 + 1.0, 0)
    cv2.arrowedLine(img, (int(c), int(c)), (int(tip[0]), int(tip[1])), (255, 255, 255), 2, tipLength=0.4)
    for i, name in enumerate(names):
        y = 20 + 18 * i
        cv2.rectangle(img, (10, y - 10), (22, y + 2), tuple(int(v) for v in CAMERA_COLOURS[i % len(CAMERA_COLOURS)]), -1)
        cv2.putText(img, name, (28, y), FONT, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    cv2.putText(img, "fused cloud, base_link from above (x forward = up)", (10, size - 10), FONT, 0.45,
                (200, 200, 200), 1, cv2.LINE_AA)
    return img


def latency_figure(latency_ms: Sequence[float], width: int = 900, height: int = 320, title: str = "") -> np.ndarray:
    """End-to-end latency per published set (input stamp -> output), with mean and p99 lines."""
    img = np.full((height, width, 3), 250, np.uint8)
    lat = np.asarray(latency_ms, dtype=np.float64)
    left, right, top, bottom = 60, 20, 30, 40
    cv2.putText(img, title or "end-to-end latency per surround set", (left, 20), FONT, 0.55, (20, 20, 20), 1,
                cv2.LINE_AA)
    if lat.size == 0:
        cv2.putText(img, "no sets were published", (left, height // 2), FONT, 0.7, (200, 0, 0), 2, cv2.LINE_AA)
        return img
    top_ms = max(10.0, float(np.percentile(lat, 100)) * 1.15)
    w, h = width - left - right, height - top - bottom

    def y_of(ms):
        return int(top + h - ms / top_ms * h)

    for k in range(6):
        ms = top_ms * k / 5
        cv2.line(img, (left, y_of(ms)), (width - right, y_of(ms)), (225, 225, 225), 1)
        cv2.putText(img, f"{ms:.0f}", (8, y_of(ms) + 4), FONT, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    xs = left + (np.arange(lat.size) / max(1, lat.size - 1) * w).astype(int)
    pts = np.stack([xs, [y_of(v) for v in lat]], axis=1).astype(np.int32)
    cv2.polylines(img, [pts], False, (31, 119, 180), 2, cv2.LINE_AA)
    for value, name, colour in ((lat.mean(), "mean", (44, 160, 44)), (np.percentile(lat, 99), "p99", (214, 39, 40))):
        cv2.line(img, (left, y_of(value)), (width - right, y_of(value)), colour, 1, cv2.LINE_AA)
        cv2.putText(img, f"{name} {value:.0f} ms", (width - right - 120, y_of(value) - 4), FONT, 0.45, colour, 1,
                    cv2.LINE_AA)
    cv2.putText(img, "set", (width // 2, height - 10), FONT, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, "ms", (8, top - 8), FONT, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    return img


def sparsification_figure(curves: Sequence[tuple[str, dict]], width: int = 640, height: int = 400,
                          title: str = "sparsification of abs_rel, pixels ranked by depth_std / depth") -> np.ndarray:
    """Sparsification curves (Poggi et al.): per entry (label, `SparsificationAccumulator.result()`), the
    model's curve (solid) and the oracle's (dashed) in one colour, the random ranking at 1, and AUSE/AURG."""
    img = np.full((height, width, 3), 250, np.uint8)
    left, right, top, bottom = 60, 20, 34, 44
    w, h = width - left - right, height - top - bottom
    cv2.putText(img, title, (left, 22), FONT, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    top_y = max([1.05] + [max(r["curve"]["model"]) * 1.05 for _, r in curves])

    def px(f, y):
        return int(left + f / 0.98 * w), int(top + h - min(y, top_y) / top_y * h)

    for y in np.arange(0.0, top_y + 1e-9, 0.2):
        cv2.line(img, px(0, y), px(0.98, y), (225, 225, 225), 1)
        cv2.putText(img, f"{y:.1f}", (14, px(0, y)[1] + 4), FONT, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    for f in (0.0, 0.25, 0.5, 0.75):
        cv2.putText(img, f"{f:.2f}", (px(f, 0)[0] - 12, top + h + 16), FONT, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, "fraction of pixels removed (most uncertain first)", (left + 80, height - 8), FONT, 0.45,
                (60, 60, 60), 1, cv2.LINE_AA)
    cv2.line(img, px(0, 1.0), px(0.98, 1.0), (150, 150, 150), 1, cv2.LINE_AA)
    cv2.putText(img, "random", (px(0.85, 1.0)[0], px(0, 1.0)[1] - 6), FONT, 0.4, (120, 120, 120), 1, cv2.LINE_AA)
    for n, (label, res) in enumerate(curves):
        colour = tuple(int(c) for c in CAMERA_COLOURS[(n * 4) % len(CAMERA_COLOURS)])
        fr = res["curve"]["fractions"]
        for key, dashed in (("model", False), ("oracle", True)):
            pts = np.array([px(f, y) for f, y in zip(fr, res["curve"][key])], np.int32)
            if dashed:
                for a in range(0, len(pts) - 1, 2):
                    cv2.line(img, tuple(pts[a]), tuple(pts[a + 1]), colour, 1, cv2.LINE_AA)
            else:
                cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        cv2.putText(img, f"{label}: AUSE {res['ause']:.3f} (random {res['ause_random']:.3f}), AURG {res['aurg']:.3f}",
                    (left + 10, top + h - 26 - 18 * (len(curves) - 1 - n)), FONT, 0.45, colour, 1, cv2.LINE_AA)
    cv2.putText(img, "solid: model, dashed: oracle (largest errors first)", (left + 10, top + h - 8), FONT, 0.4,
                (90, 90, 90), 1, cv2.LINE_AA)
    return img
