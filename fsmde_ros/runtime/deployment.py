"""DeploymentGraph: one composed graph (runtime/deployment_graph.py) at run time, for one input size on one backend.

It owns the graph's I/O names: `feeds` builds a set's inputs (the images as they arrive, each passed as it is:
no copy of a contiguous buffer; K at the model's size; the mounts; the depth bounds [m]; the std ratio; present;
the handover masks; the undistortion grid) and `run` gives the outputs by name as `GraphOutputs`, whose `cloud`
compacts the fixed-size cloud with its mask (C order: camera, row, column, as CloudFuser). The service only chooses
between a graph and the host path.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from fsmde_ros.geometry.cloud import CloudFuser, SurroundCloud
from fsmde_ros.geometry.projection import invert_transform
from fsmde_ros.geometry.resize import ResizePlan, plan_resize
from fsmde_ros.geometry.rig import CameraRig
from fsmde_ros.runtime.base import DepthBackend, GraphRunner
from fsmde_ros.runtime.deployment_graph import (
    CAMERA_INPUT,
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    UNDISTORT_GRID,
    deployment_graph,
    undistort_grid,
)


class Distortion(Protocol):
    """What the undistorting graph reads of a distorted camera's calibration (service/calibration.py's Calibration)."""

    K: np.ndarray  # [3,3] at the image's size
    D: np.ndarray  # distortion coefficients
    model: str  # "plumb_bob" | "rational_polynomial" | "equidistant"

    def key(self) -> object: ...


@dataclasses.dataclass
class GraphOutputs:
    """One set's outputs, named as GRAPH_OUTPUTS (h' = ceil(h / stride))."""

    depth: np.ndarray  # float32 [V,h,w] m: -Inf / +Inf outside the bounds (REP-117), NaN for absent cameras
    depth_std: np.ndarray  # float32 [V,h,w] m
    images: np.ndarray  # uint8 [V,h,w,3]: the student's input
    cloud_xyz: np.ndarray  # float32 [V,h',w',3] in base_link, m
    cloud_rgb: np.ndarray  # uint8 [V,h',w',3]
    cloud_valid: np.ndarray  # bool [V,h',w']

    def cloud(self) -> SurroundCloud:
        """The valid points, compacted with one mask: CloudFuser's points in its order."""
        valid = self.cloud_valid
        return SurroundCloud(xyz=self.cloud_xyz[valid], camera=np.nonzero(valid)[0].astype(np.uint8),
                             rgb=self.cloud_rgb[valid])


def pose_inputs(T_base_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The graph's mount inputs (T_base_cam, T_cam_base) float32 [V,4,4] for mounts [V,4,4] (optical frame -> base):
    built once per change of mounts, passed to every set's `feeds`."""
    T = np.asarray(T_base_cam, dtype=np.float64)
    return T.astype(np.float32), np.stack([invert_transform(t) for t in T]).astype(np.float32)


class DeploymentGraph:
    """A composed graph for images of plan.in_w x plan.in_h, its runner, its feeds and its outputs."""

    def __init__(self, runner: GraphRunner, plan: ResizePlan, undistort: bool = False):
        """undistort: the variant that samples `undistort_grid` (a set with distorted cameras)."""
        self.runner, self.plan, self.undistort = runner, plan, undistort
        self.blank = np.zeros((plan.in_h, plan.in_w, 3), np.uint8)  # an absent camera's input (masked in the graph)
        self._grid_key: tuple | None = None  # the cameras' calibrations of the last undistortion grid...
        self._grid_value: np.ndarray | None = None  # ...and that grid [V,h,w,2]

    @classmethod
    def open(cls, backend: DepthBackend, w_in: int, h_in: int, stride: int, overlap: str,
             cache_dir: str | Path | None = None, undistort: bool = False
             ) -> tuple[DeploymentGraph | None, Path, bool]:
        """The graph for images of w_in x h_in on `backend`'s device and settings, composed (or read from the cache):
        (graph, its file, composed now); graph None where the backend runs none. Composing or loading may raise."""
        path, composed = deployment_graph(backend.model_path, w_in, h_in, stride, overlap, cache_dir, undistort)
        runner = backend.graph_runner(path)
        if runner is None:
            return None, path, composed
        return cls(runner, plan_resize(w_in, h_in, backend.width, backend.height), undistort), path, composed

    def feeds(self, images: Sequence[np.ndarray | None], K: Sequence[np.ndarray | None],
              distorted: Sequence[Distortion | None] | None, *, rig: CameraRig, fuser: CloudFuser,
              poses: tuple[np.ndarray, np.ndarray], depth_range: tuple[float, float], max_std_ratio: float
              ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """The graph's inputs for one set, with K [V,3,3] at the model's size and present [V] bool.
        images: per camera uint8 [H_in,W_in,3] or None (absent); K: per camera [3,3] at the input size or None (the
        rig's preset); distorted: per camera its calibration when distorted, or None; fuser: prepared with this set's
        K for the handover masks (cached while K stays); poses: `pose_inputs`; depth_range (min, max) [m];
        max_std_ratio: <= 0 off."""
        v = len(rig)
        if len(images) != v or len(K) != v:
            raise ValueError(f"expected {v} images and intrinsics, got {len(images)} and {len(K)}")
        plan = self.plan
        present = np.array([img is not None for img in images])
        K_model = np.zeros((v, 3, 3))
        feeds, raw_K = {}, []
        for i, (img, k) in enumerate(zip(images, K)):
            feeds[CAMERA_INPUT.format(i)] = self.blank if img is None else np.ascontiguousarray(img)
            k = rig.cameras[i].resized(plan.in_w, plan.in_h).K if k is None or img is None else k
            cal = distorted[i] if distorted is not None and img is not None else None
            raw_K.append(cal.K if cal is not None else k)
            K_model[i] = plan.intrinsics(raw_K[i])
        fuser.prepare(K_model, plan.out_h, plan.out_w)  # the handover masks follow K (cached while K stays)
        values = (K_model.astype(np.float32), *poses, np.array(depth_range, np.float32),
                  np.array([max_std_ratio], np.float32), present, fuser.claim_masks())
        feeds.update(zip(GRAPH_INPUTS, values, strict=True))
        if self.undistort:
            feeds[UNDISTORT_GRID] = self._grid(raw_K, distorted)
        return feeds, K_model, present

    def run(self, feeds: dict[str, np.ndarray]) -> GraphOutputs:
        """One set through the graph (one upload, one run, one download where the backend is a GPU)."""
        out = self.runner(feeds)
        return GraphOutputs(**{name: out[name] for name in GRAPH_OUTPUTS})

    def _grid(self, raw_K: list[np.ndarray], distorted: Sequence[Distortion | None] | None) -> np.ndarray:
        """`undistort_grid` [V,h,w,2] for this set: each distorted camera's from its calibration, each pinhole's
        (raw_K: K at the input size) the plain crop and resize; built once per combination of calibrations (the same
        array is passed while they stay)."""
        plan = self.plan
        cals = list(distorted) if distorted is not None else [None] * len(raw_K)
        key = tuple(c.key() if c is not None else np.asarray(raw_K[i], np.float64).tobytes() for i, c in enumerate(cals))
        if key != self._grid_key:
            self._grid_value = np.stack([undistort_grid(raw_K[i], c.D if c is not None else np.zeros(5),
                                                        c.model if c is not None else "plumb_bob", plan.in_w,
                                                        plan.in_h, plan.out_w, plan.out_h) for i, c in enumerate(cals)])
            self._grid_key = key
        return self._grid_value
