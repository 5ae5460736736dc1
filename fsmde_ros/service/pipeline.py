"""The node's per-set work, ROS-free: one deployment graph per input size, or preprocess -> backend -> postprocess.

This module only chooses between the two paths. Where the backend runs a composed graph (ONNX Runtime,
TensorRT: runtime/deployment.py's DeploymentGraph, which builds its feeds and compacts its cloud), the six
images go in at the size they arrive, each decoded buffer as it is, and the graph resizes, runs
the student, masks depth and computes the cloud. A new input size composes a new graph once (and says so). Otherwise (the torch backend, or cameras of mixed
sizes in one set) the host path: preprocess resizes each image to the model's size (a centre crop to its aspect ratio, never a
non-uniform stretch, an integer box average, then bilinear: 3-5 ms for a DDAD image on a 2-core CPU) and maps
the intrinsics through the same plan; postprocess marks depth
outside [min_depth, max_depth] with REP-117's -Inf / +Inf (NaN: invalid) and fuses the cloud with CloudFuser (same points).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import numpy as np

from fsmde_ros.geometry.cloud import DEFAULT_MAX_DEPTH_M, CloudFuser, SurroundCloud
from fsmde_ros.geometry.rig import CameraRig
from fsmde_ros.runtime.base import DepthBackend
from fsmde_ros.runtime.deployment import DeploymentGraph, pose_inputs
from fsmde_ros.service.calibration import Calibration, ModelInput


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
    """Wraps a backend with the node's pre- and post-processing (see the module doc)."""

    def __init__(self, backend: DepthBackend, rig: CameraRig, min_depth: float = 0.5, max_depth: float = DEFAULT_MAX_DEPTH_M,
                 cloud_stride: int = 4, max_depth_std_ratio: float = 0.0, make_cloud: bool = True,
                 cloud_overlap: str = "nearest_axis", composed: bool = True, graph_cache_dir: str | None = None,
                 info=print):
        """composed: run a deployment graph where the backend can (else the host path); info: says when one is composed."""
        if len(rig) != backend.views:
            raise ValueError(f"rig {rig.name!r} has {len(rig)} cameras but the model takes {backend.views} views")
        if not 0 <= min_depth < max_depth:
            raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
        self.backend, self.rig = backend, rig
        self.height, self.width = backend.height, backend.width
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.cloud_stride, self.max_depth_std_ratio = int(cloud_stride), float(max_depth_std_ratio)
        self.make_cloud, self.cloud_overlap = make_cloud, cloud_overlap
        self.composed = composed and backend.model_path is not None
        self.graph_cache_dir, self.info = graph_cache_dir, info
        self._deployments: dict[tuple[int, int, bool], DeploymentGraph | None] = {}  # None: the host path for it
        self.to_model = ModelInput(self.width, self.height)  # resize, crop, undistort: the images at the model's size
        self.set_poses(rig.T_base_cam)

    def set_outputs(self, min_depth: float, max_depth: float, max_depth_std_ratio: float, cloud_stride: int,
                    cloud_overlap: str) -> None:
        """The run-time output parameters, from the next set on. Depth bounds and the std ratio are inputs of the graph
        (no change to it); a new stride or overlap mode fuses on the host at once and composes the graph for it when
        next needed (cached per stride and mode)."""
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.max_depth_std_ratio = float(max_depth_std_ratio)
        if (int(cloud_stride), cloud_overlap) != (self.cloud_stride, self.cloud_overlap):
            self.cloud_stride, self.cloud_overlap = int(cloud_stride), cloud_overlap
            self._deployments = {}
            self.set_poses(self.T_base_cam)

    def set_poses(self, T_base_cam: np.ndarray) -> None:
        """Use these camera mounts [V,4,4] (camera optical frame -> base) from the next set on: a run-time input of
        the host path and the graph alike, never a rebuild (the node passes what TF says)."""
        T = np.asarray(T_base_cam, dtype=np.float64)
        fuser = CloudFuser(T, self.cloud_stride, self.cloud_overlap)
        if self.make_cloud:  # the rig's own intrinsics at the model size: what a set carries unless CameraInfo differs
            fuser.prepare(self.rig.resized(self.width, self.height).K, self.height, self.width)
        # one assignment each, so that a set in flight sees the old or the new mounts, never half of each
        self.fuser, self.T_base_cam, self._poses = fuser, T, pose_inputs(T)

    def resizes_on_host(self, w_in: int, h_in: int, undistort: bool = False) -> bool:
        """Will a set of images at w_in x h_in take the host path, so that each image can be brought to the model's size
        as it arrives (service/frames.py)? True without a composed graph, or when none could be composed for this size;
        False when the graph takes them (or before its first set: composing is left to the set)."""
        if (w_in, h_in) == (self.width, self.height) and not undistort:
            return False  # nothing to resize
        if not self.composed:
            return True
        key = (w_in, h_in, undistort)
        return key in self._deployments and self._deployments[key] is None

    def model_image(self, i: int, image: np.ndarray, K: np.ndarray | None, distorted: Calibration | None = None
                    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Camera i's image uint8 [H,W,3] -> (image [h,w,3] at the model's size, K [3,3] at that size, resized): the
        host path's per-image work. K at the image's size, or None for the rig preset scaled to it; distorted: the
        camera's calibration when it is undistorted in the same remap."""
        h, w = image.shape[:2]
        k = self.rig.cameras[i].resized(w, h).K if K is None else np.asarray(K, dtype=np.float64)
        return self.to_model(i, image, k, distorted)

    def preprocess(self, images: Sequence[np.ndarray | None], K: Sequence[np.ndarray | None],
                   distorted: Sequence[Calibration | None] | None = None,
                   prepared: Sequence[tuple[np.ndarray, np.ndarray, bool] | None] | None = None) -> PreparedBatch:
        """images: per camera uint8 [H_i,W_i,3] RGB or None (absent); K: per camera [3,3] at that
        image's size, or None to use the rig preset scaled to it; distorted: per camera the calibration of a
        distorted camera at that size (undistorted in the one remap that resizes), or None; prepared: per camera
        what `model_image` gave for it already (as the frame arrived), or None to do it now."""
        v = len(self.rig)
        if len(images) != v or len(K) != v:
            raise ValueError(f"expected {v} images and intrinsics, got {len(images)} and {len(K)}")
        batch = np.zeros((v, self.height, self.width, 3), np.uint8)
        K_out = np.zeros((v, 3, 3))
        present = np.zeros(v, bool)
        resized = {}
        for i, (img, k) in enumerate(zip(images, K)):
            if img is None:
                K_out[i] = self.rig.cameras[i].resized(self.width, self.height).K
                continue
            done = prepared[i] if prepared is not None else None
            batch[i], K_out[i], was_resized = done if done is not None else \
                self.model_image(i, img, k, distorted[i] if distorted is not None else None)
            if was_resized:
                resized[i] = img.shape[1::-1]
            present[i] = True
        return PreparedBatch(batch, K_out, present, resized)

    def postprocess(self, depth: np.ndarray, depth_std: np.ndarray, batch: PreparedBatch) -> tuple[np.ndarray, SurroundCloud | None]:
        """Depth with REP-117's values: -Inf nearer than min_depth, +Inf farther than max_depth, NaN invalid (and for
        absent cameras); and the fused cloud (none of those in it)."""
        depth = np.array(depth, np.float32)  # a copy: the backend's buffer may be reused by the next set
        with np.errstate(invalid="ignore"):  # in place: 1.6x faster than two np.where temporaries at 6x384x640
            depth[depth < self.min_depth] = -np.inf
            depth[depth > self.max_depth] = np.inf
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

    def run(self, images: Sequence[np.ndarray | None], K: Sequence[np.ndarray | None],
            distorted: Sequence[Calibration | None] | None = None,
            prepared: Sequence[tuple[np.ndarray, np.ndarray, bool] | None] | None = None) -> SetResult:
        """One set, through the deployment graph for its input size where there is one; per-stage timings [ms].
        distorted (see `preprocess`): such sets take the undistorting graph (an input grid per camera; no rebuild when a
        calibration changes) or, on the host path, the undistorting remap; prepared (see `preprocess`): the host
        path's per-image work done as the frames arrived (unused when the set takes the graph)."""
        sizes = {img.shape[:2] for img in images if img is not None}
        undistort = distorted is not None and any(c is not None for c in distorted)
        deployment = self.deployment(*sizes.pop()[::-1], undistort) if len(sizes) == 1 and self.composed else None
        if deployment is not None:
            return self._run_composed(deployment, images, K, distorted)
        t0 = time.perf_counter()
        batch = self.preprocess(images, K, distorted, prepared)
        t1 = time.perf_counter()
        depth, std = self.backend.infer(batch.images, batch.K[:, 0, 0].astype(np.float32))
        t2 = time.perf_counter()
        result = self.finish(batch, depth, std)
        t3 = time.perf_counter()
        result.timings_ms = {"preprocess_ms": (t1 - t0) * 1e3, "infer_ms": (t2 - t1) * 1e3, "postprocess_ms": (t3 - t2) * 1e3}
        return result

    def deployment(self, w_in: int, h_in: int, undistort: bool = False) -> DeploymentGraph | None:
        """The composed graph for images of w_in x h_in (the undistorting variant for a set with distorted cameras),
        composed (or read from the cache) on first use; None: this size takes the host path."""
        key = (w_in, h_in, undistort)
        if key not in self._deployments:
            start = time.perf_counter()
            try:
                graph, path, composed = DeploymentGraph.open(self.backend, w_in, h_in, self.cloud_stride,
                                                             self.cloud_overlap, self.graph_cache_dir, undistort)
            except Exception as exc:  # noqa: BLE001 - the host path still works: say why once, never retry per set
                self.info(f"images at {w_in}x{h_in}: cannot compose or load the deployment graph "
                          f"({type(exc).__name__}: {exc}); resizing and fusing on the host for this size")
                graph = None
            self._deployments[key] = graph
            if graph is not None:
                self.info(f"images at {w_in}x{h_in}: {'composed' if composed else 'loaded'} the deployment graph "
                          f"({'undistortion, ' if undistort else ''}resize to "
                          f"{self.width}x{self.height}, student, masking and cloud in {self.backend.name}) in "
                          f"{time.perf_counter() - start:.1f} s: {path}")
        return self._deployments[key]

    def composed_feeds(self, d: DeploymentGraph, images: Sequence[np.ndarray | None], K: Sequence[np.ndarray | None],
                       distorted: Sequence[Calibration | None] | None = None
                       ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """The graph's inputs for one set with this pipeline's run-time settings (DeploymentGraph.feeds): (feeds,
        K [V,3,3] at the model size, present [V] bool)."""
        return d.feeds(images, K, distorted, rig=self.rig, fuser=self.fuser, poses=self._poses,
                       depth_range=(self.min_depth, self.max_depth), max_std_ratio=self.max_depth_std_ratio)

    def _run_composed(self, d: DeploymentGraph, images: Sequence[np.ndarray | None], K: Sequence[np.ndarray | None],
                      distorted: Sequence[Calibration | None] | None = None) -> SetResult:
        t0 = time.perf_counter()
        feeds, K_model, present = self.composed_feeds(d, images, K, distorted)
        t1 = time.perf_counter()
        out = d.run(feeds)
        t2 = time.perf_counter()
        cloud = out.cloud() if self.make_cloud else None
        t3 = time.perf_counter()
        plan = d.plan
        resized = {} if (plan.in_w, plan.in_h) == (self.width, self.height) else \
            {i: (plan.in_w, plan.in_h) for i in np.flatnonzero(present)}
        return SetResult(out.depth, out.depth_std, K_model, out.images, present, cloud,
                         {"preprocess_ms": (t1 - t0) * 1e3, "infer_ms": (t2 - t1) * 1e3,
                          "postprocess_ms": (t3 - t2) * 1e3}, resized)
