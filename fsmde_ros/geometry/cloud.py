"""Fusing the six depth maps into one point cloud in base_link (REP-103), numpy only.

`CloudFuser` caches the per-camera ray grids, rotated into base_link, and the pixels another
camera may claim, so a frame costs one masked multiply-add; `cloud_overlap: nearest_axis` hands
each point seen by two cameras to the one that sees it nearer its optical axis.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from fsmde_ros.geometry.projection import (
    in_image,
    invert_transform,
    pixel_grid,
    project,
)


@dataclasses.dataclass
class SurroundCloud:
    """A fused point cloud in base_link: xyz [M,3] float32 m, rgb [M,3] uint8 or None, camera [M] uint8."""

    xyz: np.ndarray
    camera: np.ndarray
    rgb: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


DEFAULT_MAX_DEPTH_M = 80.0  # [m] the node's range: farther is +Inf in the depth (REP-117) and not in the cloud
OVERLAP_CHOICES = ("nearest_axis", "all")
# Depths [m] at which a camera's rays are tested against the other cameras' images once per rig and
# image size, to find the pixels whose points another camera may claim (from the bumper to the horizon).
HANDOVER_SAMPLE_DEPTHS_M = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 35.0, 60.0, 100.0, 200.0, 500.0)


class CloudFuser:
    """Fuses N depth maps into one base_link cloud; the per-camera ray grids (rotated into
    base_link) are cached, since they change only with the intrinsics or the image size.

    overlap='nearest_axis' hands each point seen by two cameras to one of them: a point is kept
    only if no other present camera sees it closer to that camera's optical axis. Neighbouring
    monocular estimates never agree exactly, and both copies of a surface would show as a doubled
    wall (a seam) in the cloud; the camera nearer its axis also sees the point with more context
    and less distortion. 'all' keeps every camera's points.
    """

    def __init__(self, T_base_cam: np.ndarray, stride: int = 1, overlap: str = "nearest_axis"):
        self.T_base_cam = np.asarray(T_base_cam, dtype=np.float64)
        if self.T_base_cam.ndim != 3 or self.T_base_cam.shape[1:] != (4, 4):
            raise ValueError(f"T_base_cam must be [N,4,4], got {self.T_base_cam.shape}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if overlap not in OVERLAP_CHOICES:
            raise ValueError(f"overlap must be one of {OVERLAP_CHOICES}, got {overlap!r}")
        self.stride, self.overlap = int(stride), overlap
        self._T_cam_base = np.stack([invert_transform(T) for T in self.T_base_cam]).astype(np.float32)
        self._cos_axis: np.ndarray | None = None
        self._rivals: list[list[tuple[int, np.ndarray]]] | None = None
        self._key: bytes | None = None
        self._claim: np.ndarray | None = None  # claim_masks() for the cached intrinsics
        self._rays: np.ndarray | None = None
        self._origins = self.T_base_cam[:, :3, 3].astype(np.float32)

    def _rays_base(self, K: np.ndarray, h: int, w: int) -> np.ndarray:
        key = K.tobytes() + bytes(f"{h}x{w}", "ascii")
        if key != self._key:
            u, v = pixel_grid(h, w, self.stride)
            fx, fy = K[:, 0, 0, None, None], K[:, 1, 1, None, None]
            cx, cy = K[:, 0, 2, None, None], K[:, 1, 2, None, None]
            rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones((len(K),) + u.shape)], axis=-1)
            self._rays = np.einsum("nij,nhwj->nhwi", self.T_base_cam[:, :3, :3], rays).astype(np.float32)
            self._cos_axis = (1.0 / np.linalg.norm(rays, axis=-1)).astype(np.float32)  # [n,h',w'] angle to own axis
            self._rivals = self._find_rivals(K, h, w) if self.overlap == "nearest_axis" else None
            self._claim = None
            self._key = key
        return self._rays

    def _find_rivals(self, K: np.ndarray, h: int, w: int) -> list[list[tuple[int, np.ndarray]]]:
        """Per camera i: [(j, mask [h',w'] bool)] for the cameras j that see some of i's strided rays
        at any of HANDOVER_SAMPLE_DEPTHS_M (only those pixels are checked per frame). Pairs are
        screened on a sparse set of rays first: most cameras of a ring never see each other."""
        depths = np.asarray(HANDOVER_SAMPLE_DEPTHS_M, dtype=np.float32)[:, None, None]
        n = len(K)

        def seen_by(rays: np.ndarray, i: int, j: int) -> np.ndarray:
            pts = rays.reshape(1, -1, 3) * depths + self._origins[i]  # [D,P,3] base_link
            uv, z = project(pts @ self._T_cam_base[j, :3, :3].T + self._T_cam_base[j, :3, 3], K[j])
            return ((z > 0) & in_image(uv, w, h)).any(axis=0).reshape(rays.shape[:-1])

        # screening rays: every k-th (about 8 px apart in the image) plus the whole border, where
        # every overlap of a ring of cameras begins
        k = max(1, 8 // self.stride)
        screen = [np.concatenate([r[::k, ::k].reshape(-1, 3), r[[0, -1]].reshape(-1, 3), r[:, [0, -1]].reshape(-1, 3)])
                  for r in self._rays]
        rivals: list[list[tuple[int, np.ndarray]]] = []
        for i in range(n):
            found = []
            for j in range(n):
                if j != i and seen_by(screen[i], i, j).any():
                    mask = seen_by(self._rays[i], i, j)
                    if mask.any():
                        found.append((j, mask))
            rivals.append(found)
        return rivals

    def prepare(self, K: np.ndarray, h: int, w: int) -> None:
        """Compute the per-rig caches for intrinsics K [N,3,3] at h x w now (e.g. at start-up) instead of
        on the first frame."""
        self._rays_base(np.asarray(K, dtype=np.float64), h, w)

    def claim_masks(self) -> np.ndarray:
        """[N,N,h',w'] bool for the prepared intrinsics: camera j may take camera i's strided pixel [i, j] from it
        (nearest_axis handover; all False for overlap 'all'). The deployment graph takes it as an input; built once
        per intrinsics and size, like the ray grids."""
        if self._rays is None:
            raise RuntimeError("call prepare(K, h, w) first")
        if self._claim is None:
            n, hs, ws = self._rays.shape[:3]
            self._claim = np.zeros((n, n, hs, ws), bool)
            for i, rivals in enumerate(self._rivals or []):
                for j, mask in rivals:
                    self._claim[i, j] = mask
        return self._claim

    def __call__(self, depths: np.ndarray, K: np.ndarray, images: np.ndarray | None = None, min_depth: float = 0.1,
                 max_depth: float = DEFAULT_MAX_DEPTH_M, depth_std: np.ndarray | None = None,
                 max_std_ratio: float | None = None) -> SurroundCloud:
        """depths [N,H,W] metres -> cloud of every stride-th pixel with depth in [min_depth, max_depth]
        (NaN and inf dropped, REP-118) and, with max_std_ratio, depth_std / depth <= that ratio."""
        depths = np.asarray(depths)
        K = np.asarray(K, dtype=np.float64)
        if depths.ndim != 3:
            raise ValueError(f"depths must be [N,H,W], got shape {depths.shape}")
        n, h, w = depths.shape
        if K.shape != (n, 3, 3) or self.T_base_cam.shape[0] != n:
            raise ValueError(f"need K [{n},3,3] and T_base_cam [{n},4,4], got {K.shape} and {self.T_base_cam.shape}")
        if images is not None and images.shape[:3] != (n, h, w):
            raise ValueError(f"images must be [{n},{h},{w},3] like depths, got {images.shape}")
        if not 0 <= min_depth < max_depth:
            raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
        s = self.stride
        d = depths[:, ::s, ::s]
        with np.errstate(invalid="ignore"):
            keep = (d >= min_depth) & (d <= max_depth)
            if max_std_ratio is not None and depth_std is not None:
                keep &= depth_std[:, ::s, ::s] <= max_std_ratio * d
        cam = np.nonzero(keep)[0]
        xyz = self._rays_base(K, h, w)[keep] * d[keep].astype(np.float32)[:, None] + self._origins[cam]
        rgb = images[:, ::s, ::s][keep] if images is not None else None
        if self.overlap == "nearest_axis" and len(cam):
            present = keep.reshape(n, -1).any(axis=1)  # a camera without points (absent, or all out of range) claims none
            own = self._keep_nearest_axis(xyz, cam, np.flatnonzero(keep), K, h, w, present)
            xyz, cam, rgb = xyz[own], cam[own], rgb[own] if rgb is not None else None
        return SurroundCloud(xyz=xyz, camera=cam.astype(np.uint8), rgb=rgb)

    def _keep_nearest_axis(self, xyz: np.ndarray, cam: np.ndarray, flat: np.ndarray, K: np.ndarray, h: int, w: int,
                           present: np.ndarray) -> np.ndarray:
        """[M] bool: the points (base_link [M,3], from camera cam [M] sorted, at strided grid index flat [M])
        that no other present camera sees inside its image at a smaller angle to its optical axis."""
        keep = np.ones(len(xyz), dtype=bool)
        cos_axis = self._cos_axis.reshape(-1)
        per_cam = self._rays.shape[1] * self._rays.shape[2]
        bounds = np.searchsorted(cam, np.arange(len(K) + 1))
        for i, rivals in enumerate(self._rivals):
            lo, hi = bounds[i], bounds[i + 1]
            for j, mask in rivals:
                if not present[j] or lo == hi:
                    continue
                idx = lo + np.flatnonzero(mask.reshape(-1)[flat[lo:hi] - i * per_cam])
                p = xyz[idx] @ self._T_cam_base[j, :3, :3].T + self._T_cam_base[j, :3, 3]
                uv, z = project(p, K[j])
                seen = (z > 0) & in_image(uv, w, h)
                cos = z / np.sqrt(np.einsum("ij,ij->i", p, p))
                keep[idx[seen & (cos > cos_axis[flat[idx]])]] = False
        return keep


def fuse_cloud(
    depths: np.ndarray,
    K: np.ndarray,
    T_base_cam: np.ndarray,
    images: np.ndarray | None = None,
    stride: int = 1,
    min_depth: float = 0.1,
    max_depth: float = DEFAULT_MAX_DEPTH_M,
    depth_std: np.ndarray | None = None,
    max_std_ratio: float | None = None,
    overlap: str = "all",
) -> SurroundCloud:
    """Fuse N depth maps [N,H,W] (m) into one cloud in base_link (one-off form of CloudFuser).

    Keeps every `stride`-th pixel in both axes whose depth lies in [min_depth, max_depth]
    (NaN and inf are dropped, REP-118) and, when `max_std_ratio` is given, whose
    depth_std / depth is at most that ratio. `images` [N,H,W,3] uint8 colours the points.
    overlap: 'all' (default here) or 'nearest_axis' (one camera per point, see CloudFuser).
    """
    return CloudFuser(T_base_cam, stride, overlap)(depths, K, images, min_depth, max_depth, depth_std, max_std_ratio)
