"""The node's per-set work, ROS-free: preprocess -> backend -> postprocess, each testable alone.

preprocess: N RGB images of any size (None for a camera left out of a partial set) become one
uint8 batch at the model resolution, with the intrinsics scaled to it. The backend runs the six
views at once. postprocess: depth outside [min_depth, max_depth] becomes NaN (REP-118), and the
cloud is fused in base_link with stride, bounds and the optional uncertainty filter.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import cv2
import numpy as np

from fsmde_ros.geometry.cloud import CloudFuser, SurroundCloud
from fsmde_ros.geometry.rig import CameraRig, scale_intrinsics
from fsmde_ros.runtime.base import DepthBackend


@dataclasses.dataclass
class PreparedBatch:
    """images uint8 [V,h,w,3] at the model size; K [V,3,3] at that size; present [V] bool."""

    images: np.ndarray
    K: np.ndarray
    present: np.ndarray
    resized_from: dict[int, tuple[int, int]]  # camera index -> (width, height) it arrived at, when resized


@dataclasses.dataclass
class SetResult:
    """One processed surround set."""

    depth: np.ndarray  # float32 [V,h,w] metres, NaN invalid
    depth_std: np.ndarray  # float32 [V,h,w] metres
    K: np.ndarray  # [V,3,3] at the output resolution
    images: np.ndarray  # uint8 [V,h,w,3], the network's input
    present: np.ndarray  # [V] bool
    cloud: SurroundCloud | None
    timings_ms: dict[str, float]
    resized_from: dict[int, tuple[int, int]]


class SurroundDepthPipeline:
    """Wraps a backend with the node's pre- and post-processing."""

    def __init__(self, backend: DepthBackend, rig: CameraRig, min_depth: float = 0.5, max_depth: float = 80.0,
                 cloud_stride: int = 4, max_depth_std_ratio: float = 0.0, make_cloud: bool = True,
                 cloud_overlap: str = "nearest_axis"):
        if len(rig) != backend.views:
            raise ValueError(f"rig {rig.name!r} has {len(rig)} cameras but the model takes {backend.views} views")
        if not 0 <= min_depth < max_depth:
            raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
        self.backend, self.rig = backend, rig
        self.height, self.width = backend.height, backend.width
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.cloud_stride, self.max_depth_std_ratio = int(cloud_stride), float(max_depth_std_ratio)
        self.make_cloud = make_cloud
        self.fuser = CloudFuser(rig.T_base_cam, self.cloud_stride, cloud_overlap)
        if make_cloud:  # the rig's own intrinsics at the model size: what a set carries unless CameraInfo differs
            self.fuser.prepare(rig.resized(self.width, self.height).K, self.height, self.width)

    def preprocess(self, images: Sequence[np.ndarray | None], K: Sequence[np.ndarray | None]) -> PreparedBatch:
        """images: per camera uint8 [H_i,W_i,3] RGB or None (absent); K: per camera [3,3] at that
        image's size, or None to use the rig preset scaled to it."""
        v = len(self.rig)
        if len(images) != v or len(K) != v:
            raise ValueError(f"expected {v} images and intrinsics, got {len(images)} and {len(K)}")
        batch = np.zeros((v, self.height, self.width, 3), np.uint8)
        K_out = np.zeros((v, 3, 3))
        present = np.zeros(v, bool)
        resized = {}
        for i, (img, k) in enumerate(zip(images, K)):
            cam = self.rig.cameras[i]
            if img is None:
                K_out[i] = cam.resized(self.width, self.height).K
                continue
            h, w = img.shape[:2]
            k = cam.resized(w, h).K if k is None else np.asarray(k, dtype=np.float64)
            if (h, w) != (self.height, self.width):
                interp = cv2.INTER_AREA if w > self.width else cv2.INTER_LINEAR
                batch[i] = cv2.resize(img, (self.width, self.height), interpolation=interp)
                k = scale_intrinsics(k, self.width / w, self.height / h)
                resized[i] = (w, h)
            else:
                batch[i] = img
            K_out[i] = k
            present[i] = True
        return PreparedBatch(batch, K_out, present, resized)

    def postprocess(self, depth: np.ndarray, depth_std: np.ndarray, batch: PreparedBatch) -> tuple[np.ndarray, SurroundCloud | None]:
        """Depth with NaN outside [min_depth, max_depth] (and for absent cameras), and the fused cloud."""
        with np.errstate(invalid="ignore"):
            invalid = ~np.isfinite(depth) | (depth < self.min_depth) | (depth > self.max_depth)
        depth = np.where(invalid, np.float32(np.nan), depth).astype(np.float32, copy=False)
        depth[~batch.present] = np.nan
        cloud = None
        if self.make_cloud:
            cloud = self.fuser(depth, batch.K, images=batch.images, min_depth=self.min_depth, max_depth=self.max_depth,
                               depth_std=depth_std, max_std_ratio=self.max_depth_std_ratio or None)
        return depth, cloud

    def finish(self, batch: PreparedBatch, depth: np.ndarray, depth_std: np.ndarray) -> SetResult:
        """Postprocess the backend's output for `batch` into a SetResult (timings left empty)."""
        depth, cloud = self.postprocess(depth, depth_std, batch)
        return SetResult(depth, depth_std, batch.K, batch.images, batch.present, cloud, {}, batch.resized_from)

    def run(self, images: Sequence[np.ndarray | None], K: Sequence[np.ndarray | None]) -> SetResult:
        """Preprocess, infer once for all views, postprocess; per-stage timings in milliseconds."""
        t0 = time.perf_counter()
        batch = self.preprocess(images, K)
        t1 = time.perf_counter()
        depth, std = self.backend.infer(batch.images, batch.K[:, 0, 0].astype(np.float32))
        t2 = time.perf_counter()
        result = self.finish(batch, depth, std)
        t3 = time.perf_counter()
        result.timings_ms = {"preprocess_ms": (t1 - t0) * 1e3, "infer_ms": (t2 - t1) * 1e3, "postprocess_ms": (t3 - t2) * 1e3}
        return result
