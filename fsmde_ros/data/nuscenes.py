"""nuScenes as a SurroundDataset, read through the official `nuscenes-devkit`.

Install the `nuscenes` extra (`pip install -c constraints.txt 'fsmde_ros[nuscenes]'`, i.e.
nuscenes-devkit, which pins numpy<2 like this project); it is imported only when a reader is made.

Items are nuScenes *samples* (the 2 Hz annotated keyframes): the six CAM_* keyframe images in the
ring order of config/rigs/nuscenes.yaml (CAM_FRONT, CAM_FRONT_RIGHT, CAM_BACK_RIGHT, CAM_BACK,
CAM_BACK_LEFT, CAM_FRONT_LEFT: clockwise from above, front first) and the LIDAR_TOP keyframe sweep
as GT depth.

Frames and time: nuScenes cameras fire as the lidar sweeps past them, so each camera image has
its own timestamp and ego pose (up to ~50 ms from the lidar's). As the devkit's
`NuScenesExplorer.map_pointcloud_to_image` does, lidar points go lidar -> ego at the lidar time
(lidar calibrated_sensor) -> global (lidar ego_pose) -> ego at the camera time (camera ego_pose,
inverted) -> camera (camera calibrated_sensor, inverted), then through the camera intrinsic. The
nuScenes camera frame is the optical frame (z forward, x right, y down) and the ego frame is
x forward, y left, z up, so `T_base_cam` is the camera's calibrated_sensor transform as is and
base_link is the nuScenes ego frame. The projection itself follows SurroundDepth
(tools/export_gt_depth_nusc.py): z > 0 (`min_depth`, where the devkit's visualiser drops points
nearer than 1 m and a 1-pixel border), nearest pixel, keyframe sweep only (no sweep accumulation);
the nearest return wins per pixel (fsmde_ros.data.lidar_projection). Images are resized with
the node's crop and resize (`fsmde_ros.geometry.resize`: the same pixels and K); the lidar is projected at the item
size.

Item keys (SurroundDataset interface): images uint8 [6,H,W,3] RGB, lidar_depth float32 [6,H,W]
(0 = none), K [6,3,3] at HxW, T_base_cam [6,4,4], stamp [s] (the lidar/sample time), stamps [6]
per camera [s], T_world_base [4,4] (global <- ego at the lidar time), T_world_base_cams [6,4,4]
(ego pose at each camera's time), lidar_points float32 [N,3] in base_link at the lidar time, index,
camera_names, scene, sample_token. Evaluation caps nuScenes depth at `fsmde_ros.eval.metrics.MAX_DEPTH_M['nuscenes']`.

Splits: nuScenes' official scene lists, `nuscenes.utils.splits.create_splits_scenes()`: `train`
(700 scenes) / `val` (150) / `test` (150) of v1.0-trainval / v1.0-test, and `mini_train` (8) /
`mini_val` (2: scene-0103, scene-0916) of v1.0-mini; with a mini version, `train`/`val` mean
`mini_train`/`mini_val`. `split="all"` takes every scene of the version. SurroundDepth trains on
the keyframes of the official train split and evaluates on the keyframes of the official val split
of v1.0-trainval (its datasets/nusc/{train,val}.txt are those sample tokens).

Day/night: nuScenes marks conditions only in the free-text scene description ("Night, ...",
"Rain, ..."); the usual convention for nuScenes day/night depth evaluation is a keyword test on
it. `condition` filters scenes that way: `all` (default), `day` (no "night"), `night`, `rain`,
`clear` (no "rain"), or a combination such as `day-clear`, `night-rain`.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from fsmde_ros.data.dataset_files import (
    CorruptFileError,
    build_rig,
    read_rgb,
)
from fsmde_ros.data.lidar_projection import lidar_depth_maps
from fsmde_ros.errors import ConfigError, MissingFileError
from fsmde_ros.geometry.projection import invert_transform, transform_points
from fsmde_ros.geometry.resize import plan_resize, resize_on_host
from fsmde_ros.geometry.rig import RigError, load_rig

NUSCENES_CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT")
NUSCENES_LIDAR = "LIDAR_TOP"
DEVKIT_HINT = ("install the 'nuscenes' extra: pip install -c constraints.txt 'fsmde_ros[nuscenes]' "
               "(or pip install -c constraints.txt nuscenes-devkit)")
# the tables this reader needs (the devkit loads a few more and names any it cannot find)
TABLES = ("scene.json", "sample.json", "sample_data.json", "calibrated_sensor.json", "ego_pose.json", "sensor.json")
CONDITION_WORDS = {"day": ("night", False), "night": ("night", True), "rain": ("rain", True), "clear": ("rain", False)}


def devkit() -> SimpleNamespace:
    """The nuscenes-devkit pieces this reader uses, or an ImportError naming the extra."""
    try:
        from nuscenes.nuscenes import NuScenes
        from nuscenes.utils.data_classes import LidarPointCloud
        from nuscenes.utils.geometry_utils import transform_matrix
        from nuscenes.utils.splits import create_splits_scenes
        from pyquaternion import Quaternion
    except ImportError as exc:
        raise ImportError(f"reading nuScenes needs nuscenes-devkit, which is not importable ({exc}); "
                          f"{DEVKIT_HINT}") from exc
    return SimpleNamespace(NuScenes=NuScenes, LidarPointCloud=LidarPointCloud, transform_matrix=transform_matrix,
                           create_splits_scenes=create_splits_scenes, Quaternion=Quaternion)


def condition_filter(condition: str):
    """A predicate on a scene description for `condition` (see the module doc)."""
    cond = (condition or "all").strip().lower()
    if cond == "all":
        return lambda description: True
    words = cond.split("-")
    bad = [w for w in words if w not in CONDITION_WORDS]
    if bad or not words:
        raise ConfigError(f"unknown nuScenes condition {condition!r}; use all, day, night, rain, clear or a "
                         "combination like day-clear, night-rain")
    tests = [CONDITION_WORDS[w] for w in words]
    return lambda description: all((word in description.lower()) == wanted for word, wanted in tests)


def split_scene_names(split: str, version: str, kit: SimpleNamespace | None = None) -> list[str] | None:
    """Scene names of an official split (None for 'all'); train/val mean mini_* on a mini version."""
    if split == "all":
        return None
    kit = kit or devkit()
    splits = kit.create_splits_scenes()
    name = split
    if version.endswith("mini") and split in ("train", "val"):
        name = "mini_" + split
    if name not in splits:
        raise ConfigError(f"unknown nuScenes split {split!r}; use one of {sorted(splits)} or 'all'")
    return list(splits[name])


def table_directory(root: Path, version: str) -> Path:
    """`root/version`, checked to hold the tables this reader needs (a MissingFileError saying what is there)."""
    if not root.is_dir():
        raise MissingFileError(f"nuScenes root not found: {root}")
    table_dir = root / version
    if not table_dir.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("v1.0"))
        raise MissingFileError(f"nuScenes tables for version {version!r} not found: {table_dir} "
                                f"(versions under {root}: {have or 'none'}); expected a nuScenes root "
                                f"holding {version}/ with the tables {', '.join(TABLES)}")
    lacking = [t for t in TABLES if not (table_dir / t).is_file()]
    if lacking:
        raise MissingFileError(f"{table_dir} is not a nuScenes table directory: it lacks {', '.join(lacking)} "
                                f"(expected {', '.join(TABLES)})")
    return table_dir


class NuScenesDataset:
    """nuScenes samples of one split as surround items (see the module doc)."""

    def __init__(self, root: str | Path, version: str = "v1.0-mini", split: str = "val", height: int | None = None,
                 width: int | None = None, cameras: Sequence[str] = NUSCENES_CAMERAS, condition: str = "all",
                 min_depth: float = 0.0, nusc: Any = None, gt_pixels: str = "round"):
        self.root = Path(root).expanduser()
        table_dir = table_directory(self.root, version)
        if (height is None) != (width is None):
            raise ConfigError("give both height and width, or neither (native resolution)")
        if height is not None and (height <= 0 or width <= 0):
            raise ConfigError(f"image size must be positive, got {width}x{height}")
        self.kit = devkit()
        self.version, self.split, self.condition = version, split, condition
        self.camera_names = list(cameras)
        if len(self.camera_names) < 2 or len(set(self.camera_names)) != len(self.camera_names):
            raise ConfigError(f"cameras must be at least 2 distinct CAM_* channels, got {list(cameras)}")
        self.min_depth = float(min_depth)
        self.gt_pixels = gt_pixels  # lidar_projection.PIXEL_CONVENTIONS: "round" or SurroundDepth's "truncate"
        if nusc is None:
            try:
                nusc = self.kit.NuScenes(version=version, dataroot=str(self.root), verbose=False)
            except AssertionError as exc:  # the devkit asserts on missing map masks and the like
                raise MissingFileError(f"nuScenes {version} under {self.root}: {exc}") from None
        self.nusc = nusc
        self._index_samples()
        self.rig = self._first_sample_rig(table_dir, height, width)

    def _index_samples(self) -> None:
        """self.scenes (the split's scenes that meet the condition, by name) and, in their order, every sample's
        token (self.sample_tokens) and scene name (self._scene_of); a ConfigError when none is left."""
        nusc, version, split, condition = self.nusc, self.version, self.split, self.condition
        wanted = split_scene_names(split, version, self.kit)
        keep = condition_filter(condition)
        self.scenes = sorted((s for s in nusc.scene if (wanted is None or s["name"] in wanted)
                              and keep(s.get("description", ""))), key=lambda s: s["name"])
        self.sample_tokens: list[str] = []
        self._scene_of: list[str] = []
        for scene in self.scenes:
            token = scene["first_sample_token"]
            while token:
                self.sample_tokens.append(token)
                self._scene_of.append(scene["name"])
                token = nusc.get("sample", token)["next"]
        if not self.sample_tokens:
            raise ConfigError(f"nuScenes {version} under {self.root} has no samples in split {split!r} "
                             f"with condition {condition!r} (scenes in the tables: "
                             f"{sorted(s['name'] for s in nusc.scene)})")

    def _first_sample_rig(self, table_dir: Path, height: int | None, width: int | None):
        """The rig at the item size, from the first sample's calibrations (one calibration a scene in nuScenes);
        sets self.height, self.width (the cameras' native size when not given)."""
        nusc = self.nusc
        first = nusc.get("sample", self.sample_tokens[0])
        missing = [c for c in self.camera_names + [NUSCENES_LIDAR] if c not in first["data"]]
        if missing:
            raise ConfigError(f"nuScenes sample {first['token']} (scene {self._scene_of[0]}) has no keyframe for "
                             f"{', '.join(missing)} in {table_dir / 'sample_data.json'}")
        records = [nusc.get("sample_data", first["data"][c]) for c in self.camera_names]
        sizes = [self._native_size(sd) for sd in records]
        if height is None:
            if len(set(sizes)) != 1:
                raise ConfigError(f"nuScenes cameras have different image sizes {sizes}; pass height and width")
            width, height = sizes[0]
        self.height, self.width = int(height), int(width)
        try:
            preset = {c.name.upper(): c for c in load_rig("nuscenes").cameras}
        except RigError:
            preset = {}
        entries = []
        for name, sd, (w, h) in zip(self.camera_names, records, sizes):
            cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            K = self._intrinsic(cs, name)
            entries.append((name, plan_resize(w, h, self.width, self.height).intrinsics(K), self._pose(cs),
                            self.width, self.height))
        return build_rig("nuscenes", entries, preset, source=f"{table_dir} (scene {self.scenes[0]['name']})")

    # ----------------------------------------------------------------- helpers
    def _pose(self, record: dict) -> np.ndarray:
        """4x4 of a calibrated_sensor or ego_pose record (rotation w, x, y, z)."""
        return self.kit.transform_matrix(np.asarray(record["translation"], dtype=np.float64),
                                         self.kit.Quaternion(record["rotation"]))

    @staticmethod
    def _intrinsic(cs: dict, name: str) -> np.ndarray:
        K = np.asarray(cs.get("camera_intrinsic") or [], dtype=np.float64)
        if K.shape != (3, 3):
            raise ConfigError(f"nuScenes calibrated_sensor {cs.get('token')} of {name} has no 3x3 camera_intrinsic")
        return K

    def _native_size(self, sd: dict) -> tuple[int, int]:
        if sd.get("width") and sd.get("height"):
            return int(sd["width"]), int(sd["height"])
        img = read_rgb(self.root / sd["filename"])
        return img.shape[1], img.shape[0]

    def _lidar_points(self, sd: dict) -> np.ndarray:
        path = self.root / sd["filename"]
        if not path.is_file():
            raise MissingFileError(f"nuScenes lidar file not found: {path}")
        try:
            return self.kit.LidarPointCloud.from_file(str(path)).points[:3].T.astype(np.float64)
        except (ValueError, OSError) as exc:  # a size that is no multiple of 5 float32s, unreadable bytes
            raise CorruptFileError(path, "lidar", str(exc)) from None

    # ----------------------------------------------------------------- items
    def __len__(self) -> int:
        return len(self.sample_tokens)

    def __getitem__(self, i: int) -> dict:
        n = len(self.sample_tokens)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for {n} nuScenes samples")
        i = int(i) % n
        nusc = self.nusc
        sample = nusc.get("sample", self.sample_tokens[i])
        missing = [c for c in self.camera_names + [NUSCENES_LIDAR] if c not in sample["data"]]
        if missing:
            raise ConfigError(f"nuScenes sample {sample['token']} (index {i}, scene {self._scene_of[i]}) has no "
                             f"keyframe for {', '.join(missing)} in {self.root / self.version / 'sample_data.json'}")
        lidar_sd = nusc.get("sample_data", sample["data"][NUSCENES_LIDAR])
        T_ego_lidar = self._pose(nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"]))
        T_global_ego_l = self._pose(nusc.get("ego_pose", lidar_sd["ego_pose_token"]))
        V, H, W = len(self.camera_names), self.height, self.width
        images = np.zeros((V, H, W, 3), np.uint8)
        K = np.zeros((V, 3, 3))
        T_base_cam = np.zeros((V, 4, 4))
        T_world_base_cams = np.zeros((V, 4, 4))
        T_cam_lidar = np.zeros((V, 4, 4))
        stamps = np.zeros(V)
        T_global_lidar = T_global_ego_l @ T_ego_lidar
        for c, name in enumerate(self.camera_names):
            sd = nusc.get("sample_data", sample["data"][name])
            cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            img = read_rgb(self.root / sd["filename"])
            h0, w0 = img.shape[:2]
            images[c], plan = resize_on_host(img, W, H)  # the node's crop and resize: the same pixels and K
            K[c] = plan.intrinsics(self._intrinsic(cs, name))
            T_base_cam[c] = self._pose(cs)
            T_world_base_cams[c] = self._pose(nusc.get("ego_pose", sd["ego_pose_token"]))
            T_cam_lidar[c] = invert_transform(T_base_cam[c]) @ invert_transform(T_world_base_cams[c]) @ T_global_lidar
            stamps[c] = sd["timestamp"] * 1e-6
        pts = self._lidar_points(lidar_sd)
        depth = lidar_depth_maps(pts, T_cam_lidar, K, H, W, min_depth=self.min_depth, pixels=self.gt_pixels)
        return {
            "images": images, "lidar_depth": depth, "K": K, "T_base_cam": T_base_cam,
            "stamp": lidar_sd["timestamp"] * 1e-6, "stamps": stamps, "T_world_base": T_global_ego_l,
            "T_world_base_cams": T_world_base_cams,
            "lidar_points": transform_points(T_ego_lidar, pts).astype(np.float32),
            "camera_names": list(self.camera_names), "scene": self._scene_of[i], "sample_token": sample["token"],
            "index": i,
        }
