"""A camera's calibration as image_geometry reads a CameraInfo, and the one remap that undistorts and resizes.

Rectified input (D all zero, or the `rectified` parameter): the intrinsics are P's left 3x3 (image_geometry's
reading for image_rect; equal to K for an undistorted raw camera). Distorted input (plumb_bob,
rational_polynomial, equidistant D): the node undistorts inside the remap that also crops to the model's
aspect and resizes: each output pixel of the model-size pinhole camera K_out = plan.intrinsics(K) (the same
focal length and centre as the raw K, cropped and scaled like any image) is traced back through D to the raw
image; the remap samples the box-averaged raw image there (so a large downscale does not alias), one table
pair per camera and calibration, built once. The published CameraInfo then describes that undistorted,
resized image (D zero, P = [K_out | 0]).
Shapes: K [3,3], D [n], P [3,4]; maps float32 [out_h,out_w] in the box-averaged image's pixel coordinates.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from fsmde_ros.geometry.resize import plan_resize, remap_box, resize_on_host, supersampling
from fsmde_ros.geometry.rig import scale_intrinsics

# distortion model -> the lengths of D it takes (ROS sensor_msgs/distortion_models.hpp)
DISTORTION_MODELS = {"plumb_bob": (5,), "rational_polynomial": (8,), "equidistant": (4,)}


@dataclasses.dataclass(frozen=True)
class Calibration:
    """One camera's CameraInfo: K, D, distortion model, P at width x height [px]; rectified: the topic is known to
    carry rectified images whatever D says."""

    K: np.ndarray
    width: int
    height: int
    D: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    model: str = "plumb_bob"
    P: np.ndarray | None = None
    rectified: bool = False

    @property
    def distorted(self) -> bool:
        return not self.rectified and bool(np.any(np.asarray(self.D) != 0))

    def intrinsics(self) -> np.ndarray:
        """The pinhole K [3,3] of the images as the node treats them: P's for rectified images (when P is set),
        else K (a distorted image is undistorted to K's focal length and centre)."""
        P = self.P
        if not self.distorted and P is not None and P[0, 0] > 0 and P[1, 1] > 0:
            return np.asarray(P[:, :3], dtype=np.float64)
        return np.asarray(self.K, dtype=np.float64)

    def problem(self) -> str | None:
        """Why this calibration cannot be used (naming the field), or None. A K with non-finite entries is a broken
        CameraInfo even where P gives the intrinsics (a rectified image)."""
        if not np.all(np.isfinite(self.K)):
            return "K has non-finite entries"
        if self.P is not None and not np.all(np.isfinite(self.P)):
            return "P has non-finite entries"
        if not self.distorted:
            return None
        if self.model not in DISTORTION_MODELS:
            return (f"distortion model {self.model!r} is not supported (supported: {', '.join(DISTORTION_MODELS)}); "
                    "rectify the images (image_proc) or publish one of those")
        if len(self.D) not in DISTORTION_MODELS[self.model]:
            return f"D has {len(self.D)} coefficients, {self.model} takes {' or '.join(map(str, DISTORTION_MODELS[self.model]))}"
        if not np.all(np.isfinite(self.D)):
            return "D has non-finite entries"
        return None

    def scaled(self, width: int, height: int) -> "Calibration":
        """The same camera at another image size (binning, a resized stream): K and P scale, D stays."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        P = None if self.P is None else np.concatenate([scale_intrinsics(self.P[:, :3], sx, sy), self.P[:, 3:]], axis=1)
        return dataclasses.replace(self, K=scale_intrinsics(self.K, sx, sy), P=P, width=width, height=height)

    def key(self) -> tuple:
        """What the remap tables depend on (besides the resize plan)."""
        return (self.model, self.width, self.height, np.asarray(self.K, np.float64).tobytes(),
                np.asarray(self.D, np.float64).tobytes())


def _pool_origin(plan) -> tuple[int, int]:
    """(left, top) [px] where the box grid of the whole raw image starts: the crop's origin on the remap's box grid
    (the remap may reach outside the aspect crop: distortion pulls the corners in)."""
    kx, ky = remap_box(plan)
    return plan.x0 % kx, plan.y0 % ky


def undistort_maps(cal: Calibration, plan) -> tuple[np.ndarray, np.ndarray]:
    """(map_x, map_y) float32 [out_h,out_w]: where each output pixel of the undistorted model-size image (K_out =
    plan.intrinsics(cal.K)) samples the box-averaged raw image of `remap_on_host` (pixel centres at integers)."""
    m = supersampling(plan)
    K_out = scale_intrinsics(plan.intrinsics(cal.K), m, m)
    size = (plan.out_w * m, plan.out_h * m)
    D = np.asarray(cal.D, dtype=np.float64)
    if cal.model == "equidistant":
        mx, my = cv2.fisheye.initUndistortRectifyMap(cal.K, D, np.eye(3), K_out, size, cv2.CV_32FC1)
    else:
        mx, my = cv2.initUndistortRectifyMap(cal.K, D, None, K_out, size, cv2.CV_32FC1)
    left, top = _pool_origin(plan)
    kx, ky = remap_box(plan)
    return ((mx + 0.5 - left) / kx - 0.5).astype(np.float32), ((my + 0.5 - top) / ky - 0.5).astype(np.float32)


def remap_on_host(image: np.ndarray, plan, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """uint8 [H,W,3] raw -> [out_h,out_w,3] undistorted at the model size: the box average of the whole image on the
    plan's box grid, then one bilinear remap (in place of the plain bilinear resize); outside the raw image: black."""
    left, top = _pool_origin(plan)
    kx, ky = remap_box(plan)
    h, w = image.shape[:2]
    raw = image[top:top + (h - top) // ky * ky, left:left + (w - left) // kx * kx]
    while (kx, ky) != (1, 1):  # 2 x 2 (or 2 x 1) averages: a box of boxes is the whole box's average
        fx, fy = min(kx, 2), min(ky, 2)
        raw = cv2.resize(raw, (raw.shape[1] // fx, raw.shape[0] // fy), interpolation=cv2.INTER_AREA)
        kx, ky = kx // fx, ky // fy
    out = cv2.remap(raw, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if out.shape[1] != plan.out_w:  # supersampled: the 2 x 2 average to the output size
        out = cv2.resize(out, (plan.out_w, plan.out_h), interpolation=cv2.INTER_AREA)
    return out


class ModelInput:
    """Camera images to the model's width x height, with their intrinsics: the undistorting remap for a distorted
    camera (its tables built once per camera and calibration), the plain crop-and-resize otherwise. The node's
    pipeline and the `bag:` dataset use this one path, so training sees the pixels the node feeds the student."""

    def __init__(self, width: int, height: int):
        self.width, self.height = int(width), int(height)
        self._maps: dict[int, tuple] = {}  # camera -> ((calibration key, plan), maps)

    def __call__(self, i: int, image: np.ndarray, K: np.ndarray, distorted: Calibration | None = None
                 ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Camera i's image uint8 [H,W,3] with K [3,3] at that size (or the calibration of a distorted camera) ->
        (image [height,width,3], K at that size, whether it was resized)."""
        h, w = image.shape[:2]
        if distorted is not None:
            plan = plan_resize(w, h, self.width, self.height)
            return remap_on_host(image, plan, self.maps(i, distorted, plan)), plan.intrinsics(distorted.K), True
        if (w, h) == (self.width, self.height):
            return image, np.asarray(K, dtype=np.float64), False
        out, plan = resize_on_host(image, self.width, self.height)
        return out, plan.intrinsics(K), True

    def maps(self, i: int, cal: Calibration, plan) -> tuple[np.ndarray, np.ndarray]:
        """Camera i's remap tables for this calibration and size, built once (and again when its calibration changes)."""
        key = (cal.key(), plan)
        cached = self._maps.get(i)
        if cached is None or cached[0] != key:
            cached = self._maps[i] = (key, undistort_maps(cal, plan))
        return cached[1]
