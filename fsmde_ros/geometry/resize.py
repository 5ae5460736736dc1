"""From a camera's image size to the model's without a non-uniform stretch: the resize plan (a centre crop to the
output's aspect ratio, an integer box average, bilinear for the rest) and its host implementation with OpenCV.

One plan serves every place an image changes size, so that their pixels and intrinsics agree: the node's host
path (service/pipeline.py), the deployment graph (runtime/deployment_graph.py, the same plan in ONNX ops) and
the dataset readers (data/ddad.py, data/nuscenes.py). Pixel centres at integers; sizes (width, height) [px].
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from fsmde_ros.geometry.rig import scale_intrinsics


@dataclasses.dataclass(frozen=True)
class ResizePlan:
    """How an image of in_w x in_h [px] becomes out_w x out_h without a non-uniform stretch: a centre crop
    (x0, y0, crop_w, crop_h) to the output's aspect ratio, then a crop to a multiple of the box (kx, ky) (at most
    k-1 pixels off the crop's right and bottom edges), the average of each box, and bilinear (half-pixel
    centres) to the output. sx, sy: the exact scales of the pixel-edge coordinates (equal within a pixel's
    rounding of the crop); `intrinsics` maps a camera matrix through the whole plan."""

    in_w: int
    in_h: int
    out_w: int
    out_h: int
    kx: int
    ky: int
    x0: int = 0
    y0: int = 0
    crop_w: int = 0  # 0: the whole width (in_w)
    crop_h: int = 0

    @property
    def crop(self) -> tuple[int, int]:
        """(width, height) of the centre crop."""
        return self.crop_w or self.in_w, self.crop_h or self.in_h

    @property
    def pooled(self) -> tuple[int, int]:
        """(width, height) after the box average."""
        cw, ch = self.crop
        return cw // self.kx, ch // self.ky

    @property
    def sx(self) -> float:
        return self.out_w / (self.kx * self.pooled[0])

    @property
    def sy(self) -> float:
        return self.out_h / (self.ky * self.pooled[1])

    def intrinsics(self, K: np.ndarray) -> np.ndarray:
        """K [...,3,3] of the input image -> K of the output (the crop moves the principal point, then the scale)."""
        K = np.array(K, dtype=np.float64, copy=True)
        K[..., 0, 2] -= self.x0
        K[..., 1, 2] -= self.y0
        return scale_intrinsics(K, self.sx, self.sy)


def plan_resize(in_w: int, in_h: int, out_w: int, out_h: int) -> ResizePlan:
    """The centre crop to the output's aspect ratio (the rows or columns of one side cut evenly; none when the
    aspects agree to a pixel), then the largest whole box per axis that keeps at least the output size (1: no
    box), so the bilinear step that follows shrinks by less than 2x and does not alias."""
    if min(in_w, in_h, out_w, out_h) <= 0:
        raise ValueError(f"sizes must be positive, got {in_w}x{in_h} -> {out_w}x{out_h}")
    crop_w, crop_h = in_w, in_h
    if in_w * out_h > in_h * out_w:  # wider than the output: cut columns
        crop_w = min(in_w, max(1, round(in_h * out_w / out_h)))
    else:  # taller (or equal): cut rows
        crop_h = min(in_h, max(1, round(in_w * out_h / out_w)))
    x0, y0 = (in_w - crop_w) // 2, (in_h - crop_h) // 2
    return ResizePlan(in_w, in_h, out_w, out_h, max(1, crop_w // out_w), max(1, crop_h // out_h), x0, y0,
                      crop_w, crop_h)


def resize_on_host(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, ResizePlan]:
    """uint8 [H,W,3] -> [height,width,3] as the deployment graph does (a centre crop to the output's aspect ratio,
    an integer box average, then bilinear), with cv2's fast paths: 3-5 ms for 1936x1216 -> 640x384 here
    (INTER_AREA at that ratio: ~12 ms)."""
    h, w = image.shape[:2]
    plan = plan_resize(w, h, width, height)
    pw, ph = plan.pooled
    image = image[plan.y0:plan.y0 + ph * plan.ky, plan.x0:plan.x0 + pw * plan.kx]  # the centre crop (a view)
    if (plan.kx, plan.ky) != (1, 1):
        image = cv2.resize(image, (pw, ph), interpolation=cv2.INTER_AREA)
    if (pw, ph) != (width, height):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return image, plan


def remap_box(plan) -> tuple[int, int]:
    """The box averaged before the remap: the largest power of two below the resize's box (a lens compresses the
    image's edges, so there the resize's box would span more than an output pixel's footprint and blur; powers of
    two are OpenCV's fast path, a 2 x 2 average at a time), at least 1."""
    def box(k: int) -> int:
        return 1 << max(0, (max(1, k - 1)).bit_length() - 1)
    return box(plan.kx), box(plan.ky)


def supersampling(plan) -> int:
    """1, or 2 when the remap itself would shrink by 1.5x or more (bilinear then aliases): it then samples at twice
    the output size and a 2 x 2 average brings it down."""
    kx, ky = remap_box(plan)
    return 2 if max(plan.kx / kx, plan.ky / ky) >= 1.5 else 1
