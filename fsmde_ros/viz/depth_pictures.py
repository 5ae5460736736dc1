"""Pictures of depth: colour-mapped depth, labelled tiles, mosaics, a colour bar in metres, and the
surround preview (RGB above depth for six cameras in ring layout). OpenCV only; all images RGB uint8.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

DEPTH_COLORMAP = cv2.COLORMAP_TURBO  # perceptual, high contrast; applied to log depth (near = red, far = blue)
INVALID_RGB = (0, 0, 0)  # NaN, inf (sky) and 0 (no measurement) are shown black
FONT = cv2.FONT_HERSHEY_SIMPLEX
NICE_TICKS_M = (0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500)  # colour bar labels


def _depth_scale(depth_m: np.ndarray, min_m: float, max_m: float) -> np.ndarray:
    """Position in [0,1] on the colour scale: 1 at min_m (near), 0 at max_m (far), linear in log depth.

    Log depth gives every factor of distance the same share of colours, so a street from 2 m
    to 100 m uses the whole map (inverse depth would spend it all on the first few metres).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        x = (np.log(max_m) - np.log(depth_m)) / (np.log(max_m) - np.log(min_m))
    return np.clip(x, 0.0, 1.0)


def colorize_depth(depth_m: np.ndarray, min_m: float = 1.0, max_m: float = 100.0) -> np.ndarray:
    """Colour-map depth [H,W] [m] to RGB [H,W,3] uint8 (turbo on log depth; invalid = black)."""
    if not 0 < min_m < max_m:
        raise ValueError(f"need 0 < min_m < max_m, got min_m={min_m}, max_m={max_m}")
    depth_m = np.asarray(depth_m, dtype=np.float64)
    valid = np.isfinite(depth_m) & (depth_m > 0)
    x = _depth_scale(np.where(valid, depth_m, max_m), min_m, max_m)
    rgb = cv2.cvtColor(cv2.applyColorMap((x * 255 + 0.5).astype(np.uint8), DEPTH_COLORMAP), cv2.COLOR_BGR2RGB)
    rgb[~valid] = INVALID_RGB
    return rgb


def label(image: np.ndarray, text: str, scale: float | None = None) -> np.ndarray:
    """A copy of image [H,W,3] uint8 with text in the top-left corner on a dark box."""
    out = np.ascontiguousarray(image).copy()
    scale = scale or max(0.35, out.shape[1] / 700)
    thick = 1 if scale < 0.8 else 2
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    cv2.rectangle(out, (0, 0), (tw + 8, th + base + 6), (0, 0, 0), -1)
    cv2.putText(out, text, (4, th + 3), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def mosaic(tiles: Sequence[np.ndarray], cols: int, pad: int = 2, background: int = 32) -> np.ndarray:
    """Tiles [H,W,3] uint8 (resized to the first tile's size) on a grid of `cols` columns, row-major."""
    if not tiles:
        raise ValueError("mosaic needs at least one tile")
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    out = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, 3), background, np.uint8)
    for k, tile in enumerate(tiles):
        if tile.shape[:2] != (h, w):
            tile = cv2.resize(tile, (w, h), interpolation=cv2.INTER_AREA)
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y:y + h, x:x + w] = tile
    return out


def colorbar(width: int, min_m: float, max_m: float, height: int = 40) -> np.ndarray:
    """A horizontal colour bar [height,width,3] uint8 matching `colorize_depth`, ticks labelled in metres."""
    scale = 0.42
    title = "depth [m]"
    left = cv2.getTextSize(title, FONT, scale, 1)[0][0] + 16  # the title sits left of the bar
    inner = max(width - left - 24, 2)
    bar_h = max(height // 2 - 4, 6)
    out = np.full((height, width, 3), 24, np.uint8)
    depth = np.geomspace(min_m, max_m, inner)  # near (left) to far (right)
    out[4:4 + bar_h, left:left + inner] = colorize_depth(np.repeat(depth[None], bar_h, 0), min_m, max_m)
    cv2.putText(out, title, (8, 4 + bar_h - 3), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    for d in [min_m, *[t for t in NICE_TICKS_M if min_m < t < max_m], max_m]:
        px = left + int(round((1.0 - _depth_scale(np.array(d), min_m, max_m)) * (inner - 1)))
        cv2.line(out, (px, 4 + bar_h), (px, 8 + bar_h), (255, 255, 255), 1)
        text = f"{d:g}"
        tw = cv2.getTextSize(text, FONT, scale, 1)[0][0]
        cv2.putText(out, text, (px - tw // 2, min(height - 3, bar_h + 22)), FONT, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


def surround_layout(yaws_deg: Sequence[float]) -> tuple[list[int], list[int]]:
    """Camera indices (front row, back row) from mount yaws [deg], each row left to right.

    Front row: front-left, front, front-right; back row: back-left, back, back-right (the
    nuScenes devkit's layout), whatever the rig's ring order.
    """
    yaw = np.radians(np.asarray(yaws_deg, dtype=np.float64))
    n_front = -(-len(yaw) // 2)
    by_forwardness = np.argsort(-np.cos(yaw), kind="stable")
    front, back = by_forwardness[:n_front], by_forwardness[n_front:]
    front = sorted(front, key=lambda i: -np.arctan2(np.sin(yaw[i]), np.cos(yaw[i])))
    back = sorted(back, key=lambda i: np.mod(yaw[i], 2 * np.pi))
    return [int(i) for i in front], [int(i) for i in back]


def surround_rows(images: np.ndarray, panels: Sequence[tuple[str, object]], names: Sequence[str],
                  yaws_deg: Sequence[float]) -> np.ndarray:
    """Mosaic of ring rows (front, back; left to right as seen from the car): for each row the RGB
    tiles, then one tile row per panel (suffix, fn(i) -> RGB image of camera i)."""
    front, back = surround_layout(yaws_deg)
    cols = max(len(front), len(back))
    blank = np.zeros_like(images[0])
    tiles: list[np.ndarray] = []
    for row in (front, back):
        row = list(row) + [None] * (cols - len(row))
        tiles += [label(images[i], names[i]) if i is not None else blank for i in row]
        for suffix, make in panels:
            tiles += [label(make(i), f"{names[i]} {suffix}") if i is not None else blank for i in row]
    return mosaic(tiles, cols)


def surround_preview(images: np.ndarray, depth_m: np.ndarray, names: Sequence[str], yaws_deg: Sequence[float],
                     min_m: float = 1.0, max_m: float = 100.0) -> np.ndarray:
    """Mosaic RGB uint8: per ring row (front, back) the RGB tiles above their colour-mapped depth, plus a colour bar."""
    grid = surround_rows(images, [("depth", lambda i: colorize_depth(depth_m[i], min_m, max_m))], names, yaws_deg)
    return np.concatenate([grid, colorbar(grid.shape[1], min_m, max_m)], axis=0)
