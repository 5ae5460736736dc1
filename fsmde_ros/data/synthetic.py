"""Synthetic surround sequences: a procedural street ray-cast for any `CameraRig`.

Each item of `SyntheticSurround` is one time step of the ego vehicle driving along the street
(consecutive items are consecutive frames in one static world) with, per camera:
- `images` [N,H,W,3] uint8 RGB (with a little sensor noise),
- `depth` [N,H,W] float32 dense z-depth along the optical axis [m]; +inf where the ray hits
  nothing within `WORLD_RADIUS_M` (sky),
- `lidar_depth` [N,H,W] float32 sparse z-depth [m] (0 = no return) of a roof lidar (HDL-32E-like
  pattern) ray-cast from its own origin, projected into the camera; returns that the camera
  cannot see (parallax: hidden behind a nearer surface from the camera's viewpoint) are removed
  by a z-buffer test against `depth`, so where valid it agrees with `depth` to pixel rounding,
- `teacher` [N,H,W] float32: a simulated relative-depth foundation model, the true inverse
  depth under an unknown per-image affine map, blurred at depth edges, with smooth structured
  errors and noise; never metric (`simulated_teacher.py`),
- `teacher_features` [N,16,gh,gw] float32: that model's patch features (surface identity, normal,
  relative range; gw = 37 patch columns), with independent errors per view.
Geometry: `K` [N,3,3] float64 of the rendered size (= rig.resized(width, height).K),
`T_base_cam` [N,4,4] float64, `T_world_base` [4,4] float64 (the ego pose; world x along the
road), `stamp` [s] = STAMP_T0_S + i / fps.

The world depends on the seed only, except that its extent follows the drive length
(frames * speed / fps) and the ego lane is kept free of (static) traffic over the drive: a
longer sequence of the same seed shows the same street, minus the cars in the ego lane that
the longer drive would run into.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import yaml

from fsmde_ros.data.raycast import AzimuthCuller, CameraCuller, cast, shadowed
from fsmde_ros.data.scene import KIND_CYLINDER, STREET_MARGIN_M, STREET_STYLES, Scene, street_scene
from fsmde_ros.data.shading import albedo, light, normals, sky
from fsmde_ros.data.simulated_teacher import simulate_teacher, simulate_teacher_features
from fsmde_ros.errors import ConfigError
from fsmde_ros.viz import depth_pictures as viz
from fsmde_ros.geometry.projection import (
    camera_rays,
    invert_transform,
    project,
    transform_points,
)
from fsmde_ros.geometry.rig import CameraRig, load_rig, rig_to_dict

WORLD_RADIUS_M = 250.0  # camera rays travelling farther than this are sky (depth +inf)
LIDAR_XYZ_M = (0.0, 0.0, 1.9)  # roof lidar position in base_link
LIDAR_ELEVATION_DEG = np.linspace(-30.67, 10.67, 32)  # the 32 beams of a Velodyne HDL-32E
LIDAR_AZIMUTH_STEP_DEG = 0.2  # horizontal resolution of a 32-beam spinning lidar at 10-15 Hz
LIDAR_MAX_RANGE_M = 100.0  # returns beyond this are dropped (HDL-32E: 80-100 m)
LIDAR_ZBUFFER_REL_TOL = 0.03  # a return is hidden from the camera if it is >3 % behind the camera's surface
MIN_CAMERA_Z_M = 0.1  # lidar points closer than this to a camera plane are not projected
IMAGE_NOISE_STD = 1.5  # sensor noise on the 0..255 scale
STAMP_T0_S = 1_700_000_000.0  # stamp of frame 0 (a plausible ROS time, not 0)
PREVIEW_DEPTH_RANGE_M = (1.0, 120.0)  # colour scale of preview.png


class Surface(NamedTuple):
    """What each pixel of a rendered view sees: primitive kind and index [H,W], world normal [H,W,3], range [H,W] m (inf = sky)."""

    kind: np.ndarray
    index: np.ndarray
    normal_world: np.ndarray
    range_m: np.ndarray


def render_view(scene: Scene, K: np.ndarray, T_world_cam: np.ndarray, height: int, width: int,
                shadows: bool = True, surface: bool = False):
    """Ray-cast one pinhole view: (rgb [H,W,3] uint8, depth [H,W] float32 z-depth in metres, inf = sky),
    and with surface=True also the `Surface` the pixels see (for the simulated teacher's features)."""
    K = np.asarray(K, dtype=np.float64)
    T_world_cam = np.asarray(T_world_cam, dtype=np.float64)
    origin = T_world_cam[:3, 3]
    dirs = camera_rays(K, height, width) @ T_world_cam[:3, :3].T
    culler = CameraCuller(K, T_world_cam, height, width)
    hits = cast(scene, origin, dirs, culler, WORLD_RADIUS_M)
    rgb = sky(dirs)
    sel = np.flatnonzero(np.isfinite(hits.t).ravel())
    if len(sel):
        d = dirs.reshape(-1, 3)[sel]
        t = hits.t.ravel()[sel]
        p = origin + t[:, None] * d
        dist = t * np.linalg.norm(d, axis=1)
        fp = dist / K[0, 0]  # footprint of a pixel on a facing surface [m]
        n = normals(scene, hits, p, sel, dirs)
        shadow = np.zeros(len(sel), bool)
        if shadows:
            grid_p = np.full((height * width, 3), np.nan)
            grid_n = np.zeros((height * width, 3))
            grid_p[sel], grid_n[sel] = p, n
            mask = shadowed(scene, grid_p.reshape(height, width, 3), grid_n.reshape(height, width, 3),
                            scene.sun, culler)
            shadow = mask.ravel()[sel]
        col = light(albedo(scene, hits, p, sel, dirs, fp), n, scene.sun, shadow, dist)
        rgb.reshape(-1, 3)[sel] = col
    out = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), hits.t.astype(np.float32)
    if not surface:
        return out
    normal = np.zeros((height * width, 3))
    rng_m = np.full(height * width, np.inf)
    if len(sel):
        normal[sel], rng_m[sel] = n, dist
    return (*out, Surface(hits.kind, hits.index, normal.reshape(height, width, 3), rng_m.reshape(height, width)))


def lidar_directions(beams: int = len(LIDAR_ELEVATION_DEG)) -> np.ndarray:
    """Unit beam directions [beams, columns, 3] of the lidar in its own frame (column j at azimuth j*step);
    fewer beams than 32 keep every (32 / beams)-th (a sparser lidar over the same field of view)."""
    if beams < 1 or len(LIDAR_ELEVATION_DEG) % beams:
        raise ConfigError(f"beams must divide {len(LIDAR_ELEVATION_DEG)}, got {beams}")
    az = np.radians(np.arange(0.0, 360.0, LIDAR_AZIMUTH_STEP_DEG))
    el = np.radians(LIDAR_ELEVATION_DEG[::len(LIDAR_ELEVATION_DEG) // beams])
    ce = np.cos(el)[:, None]
    return np.stack([ce * np.cos(az), ce * np.sin(az), np.sin(el)[:, None] * np.ones_like(az)], axis=-1)


def lidar_scan(scene: Scene, T_world_base: np.ndarray, beams: int = len(LIDAR_ELEVATION_DEG)) -> np.ndarray:
    """Returns [M,3] of one lidar sweep in base_link [m] (instantaneous, noise-free, range-limited)."""
    R = T_world_base[:3, :3]
    origin = T_world_base[:3, :3] @ np.asarray(LIDAR_XYZ_M) + T_world_base[:3, 3]
    dirs = lidar_directions(beams)
    yaw = float(np.arctan2(R[1, 0], R[0, 0]))
    culler = AzimuthCuller(origin, dirs.shape[0], dirs.shape[1], yaw=yaw)
    hits = cast(scene, origin, dirs @ R.T, culler, LIDAR_MAX_RANGE_M)
    ok = np.isfinite(hits.t)
    return np.asarray(LIDAR_XYZ_M) + hits.t[ok][:, None] * dirs[ok]


def project_lidar(points_base: np.ndarray, K: np.ndarray, T_base_cam: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Sparse z-depth [N,H,W] float32 (0 = none) of points [M,3] in cameras K [N,3,3], T_base_cam [N,4,4].

    The nearest point wins per pixel (nearest pixel centre); a point more than
    LIDAR_ZBUFFER_REL_TOL behind or in front of the camera's dense depth [N,H,W] at that pixel
    (or where that depth is sky) is hidden from, or not resolved by, the camera and dropped.
    """
    n, h, w = depth.shape
    out = np.zeros((n, h, w), np.float32)
    for c in range(n):
        pc = transform_points(invert_transform(T_base_cam[c]), points_base)
        uv, z = project(pc[pc[:, 2] > MIN_CAMERA_Z_M], K[c])
        u, v = np.rint(uv[:, 0]).astype(np.int64), np.rint(uv[:, 1]).astype(np.int64)
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        pix, z = v[inside] * w + u[inside], z[inside]
        order = np.lexsort((z, pix))
        pix, first = np.unique(pix[order], return_index=True)
        z = z[order][first]
        dense = depth[c].ravel()[pix]
        keep = np.isfinite(dense) & (np.abs(z - dense) <= LIDAR_ZBUFFER_REL_TOL * dense)
        out[c].ravel()[pix[keep]] = z[keep]
    return out


GT_CHOICES = ("lidar", "none")


class SyntheticSurround:
    """A len()-able dataset of surround frames of one procedural street, deterministic by seed.

    The regimes of real data: gt='none' makes a teacher-only world (no lidar returns, no dense depth: what
    a fleet's camera-only logs give), beams < 32 a sparser lidar, domain='shifted' a street of another look
    (scene.STREET_STYLES) for held-out evaluation."""

    def __init__(self, rig: CameraRig | str, seed: int = 0, height: int = 192, width: int = 320,
                 frames: int = 100, speed_mps: float = 8.0, fps: float = 10.0, shadows: bool = True,
                 gt: str = "lidar", beams: int = len(LIDAR_ELEVATION_DEG), domain: str = "street"):
        if gt not in GT_CHOICES:
            raise ConfigError(f"gt must be one of {', '.join(GT_CHOICES)}, got {gt!r}")
        if domain not in STREET_STYLES:
            raise ConfigError(f"domain must be one of {', '.join(STREET_STYLES)}, got {domain!r}")
        lidar_directions(beams)  # checks beams
        base = load_rig(rig) if isinstance(rig, (str, Path)) else rig
        self.rig = base.resized(width, height)
        self.seed, self.height, self.width = int(seed), int(height), int(width)
        self.frames, self.speed_mps, self.fps, self.shadows = int(frames), float(speed_mps), float(fps), shadows
        self.gt, self.beams, self.domain = gt, int(beams), domain
        drive_m = max(self.frames - 1, 0) * self.speed_mps / self.fps
        self.scene = street_scene(self.seed, -STREET_MARGIN_M, drive_m + STREET_MARGIN_M, (0.0, drive_m),
                                  STREET_STYLES[domain])

    def __len__(self) -> int:
        return self.frames

    def stamp(self, i: int) -> float:
        """Stamp [s] of frame i, without rendering it."""
        return STAMP_T0_S + i / self.fps

    def ego_pose(self, i: int) -> np.ndarray:
        """T_world_base [4,4] of frame i: in the right lane, i * speed / fps metres along +x."""
        T = np.eye(4)
        T[0, 3] = i * self.speed_mps / self.fps
        T[1, 3] = self.scene.layout.ego_lane_y_m
        return T

    def __getitem__(self, i: int) -> dict:
        """Frame i: images [N,H,W,3] uint8, depth/lidar_depth/teacher [N,H,W] float32, teacher_features, K, poses, stamp."""
        if not -self.frames <= i < self.frames:
            raise IndexError(f"frame {i} out of range for {self.frames} frames")
        i = int(i) % self.frames
        T_world_base = self.ego_pose(i)
        K, T_base_cam = self.rig.K, self.rig.T_base_cam
        n = len(self.rig)
        images = np.zeros((n, self.height, self.width, 3), np.uint8)
        depth = np.zeros((n, self.height, self.width), np.float32)
        teacher = np.zeros_like(depth)
        features = []
        for c in range(n):
            rgb, depth[c], surf = render_view(self.scene, K[c], T_world_base @ T_base_cam[c], self.height,
                                              self.width, self.shadows, surface=True)
            rng = np.random.default_rng([self.seed, i, c, 0x7EAC])
            noise = rng.normal(scale=IMAGE_NOISE_STD, size=rgb.shape)
            images[c] = np.clip(rgb + noise, 0, 255).round().astype(np.uint8)
            teacher[c] = simulate_teacher(depth[c], rng, thin=surf.kind == KIND_CYLINDER)
            features.append(simulate_teacher_features(surf.kind, surf.index, surf.normal_world, surf.range_m, rng))
        item = {
            "images": images, "depth": depth, "teacher": teacher, "teacher_features": np.stack(features),
            "K": K, "T_base_cam": T_base_cam, "T_world_base": T_world_base,
            "stamp": self.stamp(i), "camera_names": self.rig.names, "index": i,
        }
        if self.gt == "none":  # a teacher-only world: no GT of any kind
            del item["depth"]
            item["lidar_depth"] = np.zeros_like(depth)
        else:
            item["lidar_depth"] = project_lidar(lidar_scan(self.scene, T_world_base, self.beams), K, T_base_cam, depth)
        return item


def write_synthetic_sequence(rig_name_or_rig: CameraRig | str, frames: int, out_dir: str | Path,
                             height: int = 192, width: int = 320, seed: int = 0,
                             speed_mps: float = 8.0, fps: float = 10.0, overwrite: bool = False) -> Path:
    """Write frames of a synthetic sequence (PNGs, per-frame npz, rig.yaml, preview.png); returns out_dir.

    A non-empty out_dir is refused (its frames would mix with these), unless `overwrite`: then it is
    emptied first."""
    import shutil

    from tqdm import tqdm

    if frames < 1:
        raise ConfigError(f"frames must be >= 1, got {frames}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise ConfigError(f"{out} exists and is not empty; its frames would mix with the new ones: remove it, "
                              "choose another --out, or pass --overwrite to replace it")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True, exist_ok=True)
    ds = SyntheticSurround(rig_name_or_rig, seed=seed, height=height, width=width, frames=frames,
                           speed_mps=speed_mps, fps=fps)
    names = ds.rig.names
    for i in tqdm(range(frames), desc=f"synthetic {ds.rig.name} seed {seed}", unit="frame"):
        item = ds[i]
        frame_dir = out / f"frame_{i:04d}"
        frame_dir.mkdir(exist_ok=True)
        for name, img in zip(names, item["images"]):
            cv2.imwrite(str(frame_dir / f"{name}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        np.savez_compressed(out / f"frame_{i:04d}.npz", **{k: np.asarray(item[k]) for k in (
            "depth", "lidar_depth", "teacher", "K", "T_base_cam", "T_world_base", "stamp")},
            camera_names=np.array(names))
        if i == 0:
            yaws = [c.yaw_deg for c in ds.rig.cameras]
            preview = viz.surround_preview(item["images"], item["depth"], names, yaws, *PREVIEW_DEPTH_RANGE_M)
            cv2.imwrite(str(out / "preview.png"), cv2.cvtColor(preview, cv2.COLOR_RGB2BGR))
    meta = rig_to_dict(ds.rig)
    meta["synthetic"] = {
        "seed": int(seed), "frames": int(frames), "fps": float(fps), "speed_mps": float(speed_mps),
        "height": int(height), "width": int(width), "stamp_t0_s": STAMP_T0_S,
        "images": "frame_XXXX/<camera>.png (RGB)",
        "arrays": "frame_XXXX.npz: depth, lidar_depth, teacher [N,H,W] float32; K [N,3,3]; T_base_cam [N,4,4]; "
                  "T_world_base [4,4]; stamp [s]; camera_names",
        "depth": "z-depth along the optical axis [m], +inf = sky (no hit within %g m)" % WORLD_RADIUS_M,
        "lidar_depth": "sparse z-depth [m], 0 = no return; z-buffered against depth",
        "teacher": "relative inverse depth, unknown per-image scale and shift (not metric)",
        "preview": "preview.png (frame 0)",
    }
    (out / "rig.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return out
