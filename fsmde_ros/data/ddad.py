"""DDAD (Dense Depth for Autonomous Driving, Toyota Research Institute) as a SurroundDataset.

Reads the dataset's own on-disk layout, TRI's DGP "SceneDataset" format (JSON files serialised
from the protobufs in TRI-ML/dgp, dgp/proto/*.proto):

    <root>/ddad.json                       SceneDataset: metadata + scene_splits
    <root>/<scene>/scene_<sha1>.json       Scene: samples (datum_keys, calibration_key) + data (datums)
    <root>/<scene>/calibration/<sha1>.json SampleCalibration: names, intrinsics, extrinsics
    <root>/<scene>/rgb/CAMERA_XX/<t_us>.png
    <root>/<scene>/point_cloud/LIDAR/<t_us>.npz   key 'data': [N,C] (columns per point_format) or a
                                                  structured array with X, Y, Z fields

`scene_splits` maps the DatasetSplit enum (TRAIN=0, VAL=1, TEST=2, TRAIN_OVERFIT=3; JSON map
keys are strings) to scene JSON paths relative to the root; `split="train"|"val"|...` picks one,
which are the standard DDAD train (150 scenes) / val (50 scenes) splits that SurroundDepth and
most surround-depth papers use (evaluation on val). JSON field names are the proto names
(DGP writes them with preserving_proto_field_name); lowerCamelCase variants are accepted too, as
are proto3's omitted zero values.

Why JSON is parsed here rather than through TRI's `dgp` package: PyPI's `dgp` is an unrelated
project (dataspot's "Data Genus Processor", dgp 0.1.3; checked with `pip download --no-deps dgp`),
TRI's package is installed from GitHub only, pins protobuf-compiled modules and pulls xarray,
pandas, diskcache and a multiprocessing pool per dataset; the few fields needed here are plain JSON.

Frames and conventions (as DGP's own `get_image_from_datum` / `get_point_cloud_from_datum` and
`generate_depth_map` use them):
- calibration `extrinsics[i]` is the pose of sensor i in the **vehicle** frame (p_VS: maps sensor
  coordinates into the vehicle frame). DDAD's vehicle frame is x forward, y left, z up, i.e.
  `base_link` as it is; a warning is raised if the front camera does not look along +x.
- DGP's **camera frame is the optical frame** (DGP projects camera points with cv2.projectPoints
  and K directly: z forward, x right, y down), so `T_base_cam` is the camera extrinsic as is — no
  axis conversion.
- **Lidar points in the .npz are in the LIDAR sensor frame** (DGP: "points are in the lidar
  sensor's (S) frame"), moved to the vehicle frame with the LIDAR extrinsic p_VS.
- each datum carries `pose`, the sensor's pose in the scene's world frame at its own timestamp
  (p_WS for the lidar, p_WC for a camera). GT depth follows DGP/packnet-sfm: lidar -> world with
  p_WS, world -> camera with p_WC^-1, which is lidar -> vehicle -> camera through the calibration
  plus any ego motion between the lidar and camera timestamps. Where a datum has no pose (empty
  in the JSON) or `ego_motion=False`, the calibration chain p_VC^-1 p_VS alone is used.
- `T_world_base` = p_WS p_VS^-1 (ego pose at the lidar time); `T_world_base_cams` [V,4,4] the
  ego pose at each camera's time (p_WC p_VC^-1).

Self-occlusion masks: SurroundDepth ships one PNG per camera and scene (parts of the ego vehicle
in view), laid out `<mask_dir>/<CAMERA_XX>/<scene>/mask.png`, pixel value 0 = scene, non-zero =
ego body (SurroundDepth keeps `mask == 0`). With `masks=True` they are looked up in `mask_dir`
(default: `<root>/mask`, else `<root>/../mask`, as SurroundDepth's data/ddad/{raw_data,mask});
also accepted: `<mask_dir>/<scene>/<CAMERA_XX>.png` and scene-independent
`<mask_dir>/<CAMERA_XX>.png`. Items then carry `mask` bool [V,H,W] (True = scene pixel; a pixel
is scene only if its whole footprint at the item size is) and lidar returns on ego-body pixels
are removed (the camera sees the car body there, the lidar the world behind it).

Items (the SurroundDataset interface, fsmde_ros.data.surround): images uint8 [V,H,W,3] RGB,
lidar_depth float32 [V,H,W] (0 = none), K [V,3,3] at HxW, T_base_cam [V,4,4], stamp [s] (the
sample's time), stamps [V] per camera, T_world_base [4,4], T_world_base_cams [V,4,4],
lidar_points float32 [N,3] in base_link, index, camera_names, scene, and mask when masks are on.
Evaluation caps DDAD depth at `fsmde_ros.eval.metrics.MAX_DEPTH_M['ddad']` (the GT itself is not capped).
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np

from fsmde_ros.data.dataset_files import build_rig, read_rgb
from fsmde_ros.data.dgp import (
    SPLITS,
    DDADFormatError,
    DDADScene,
    Sample,
    SensorCalibration,
    datum_record,
    field,
    find_dataset_json,
    load_calibration,
    load_points,
    parse_timestamp,
    read_json,
)
from fsmde_ros.data.lidar_projection import lidar_depth_maps
from fsmde_ros.errors import ConfigError, MissingFileError
from fsmde_ros.geometry.projection import invert_transform, transform_points
from fsmde_ros.geometry.resize import plan_resize, resize_on_host
from fsmde_ros.geometry.rig import (
    Camera,
    CameraRig,
    RigError,
    load_rig,
)

# Ring order of config/rigs/ddad.yaml (clockwise from above, front first): front, front-right,
# back-right, back, back-left, front-left.
DDAD_CAMERAS = ("CAMERA_01", "CAMERA_06", "CAMERA_08", "CAMERA_09", "CAMERA_07", "CAMERA_05")
DDAD_LIDAR = "LIDAR"
FRONT_AXIS_TOLERANCE_DEG = 45.0  # the front camera must look within this of +x of the vehicle frame


def _preset_topics() -> dict[str, Camera]:
    try:
        return {c.name.upper(): c for c in load_rig("ddad").cameras}
    except RigError:
        return {}


class DDADDataset:
    """DDAD samples of one split as surround items (see the module doc)."""

    def __init__(self, root: str | Path, split: str = "val", cameras: Sequence[str] = DDAD_CAMERAS,
                 height: int | None = None, width: int | None = None, masks: bool = True,
                 mask_dir: str | Path | None = None, scenes: Iterable[str] | None = None,
                 lidar: str = DDAD_LIDAR, ego_motion: bool = True, gt_pixels: str = "round"):
        self.dataset_json = find_dataset_json(root)
        self.root = self.dataset_json.parent
        self.split = split
        self.camera_names = [str(c).upper() for c in cameras]
        if len(self.camera_names) < 2 or len(set(self.camera_names)) != len(self.camera_names):
            raise ConfigError(f"cameras must be at least 2 distinct DDAD camera names, got {list(cameras)}")
        self.lidar_name = lidar.upper()
        self.ego_motion = bool(ego_motion)
        self.gt_pixels = gt_pixels  # lidar_projection.PIXEL_CONVENTIONS: "round" or DGP's "truncate"
        if (height is None) != (width is None):
            raise ConfigError("give both height and width, or neither (native resolution)")
        if height is not None and (height <= 0 or width <= 0):
            raise ConfigError(f"image size must be positive, got {width}x{height}")
        self.scenes, self.samples = self._index(split, None if scenes is None else [str(s) for s in scenes])
        self._calibrations: dict[tuple[int, str], dict[str, SensorCalibration]] = {}
        self._distortion_warned: set = set()
        first = self.samples[0]
        sizes = [self._native_size(first, c) for c in range(len(self.camera_names))]
        self.native_sizes = sizes
        if height is None:
            if len(set(sizes)) != 1:
                raise ConfigError(f"DDAD cameras have different image sizes {sizes}; pass height and width")
            width, height = sizes[0]
        self.height, self.width = int(height), int(width)
        self.mask_dir = self._resolve_mask_dir(masks, mask_dir)
        self._masks: dict[tuple[int, int], np.ndarray | None] = {}
        self._mask_warned: set = set()
        calib = self._calibration(first)
        native = [(name, calib[name].K, calib[name].T_vehicle_sensor, w, h)
                  for name, (w, h) in zip(self.camera_names, sizes)]
        full = build_rig("ddad", native, _preset_topics(), source=str(self.scenes[first.scene].json_path))
        self._check_front(full)
        self.rig = self._at_item_size(full)

    # ----------------------------------------------------------------- index
    def _index(self, split: str, only: list[str] | None) -> tuple[list[DDADScene], list[Sample]]:
        data = read_json(self.dataset_json, "dataset")
        splits = field(data, "scene_splits") if isinstance(data, Mapping) else None
        if not isinstance(splits, Mapping):
            what = "missing field 'scene_splits'" if isinstance(data, Mapping) else f"a JSON {type(data).__name__}"
            raise DDADFormatError(f"{self.dataset_json} is not a DDAD dataset file ({what}); expected the DGP "
                                  f"SceneDataset JSON of a DDAD root (ddad.json with 'metadata' and 'scene_splits', "
                                  f"as in the DDAD download ddad_train_val/)")
        if split not in SPLITS:
            raise ConfigError(f"unknown DDAD split {split!r}; use one of {sorted(SPLITS)}")
        entry = splits.get(str(SPLITS[split]), splits.get(split.upper()))
        if entry is None:
            have = sorted(k for k, v in SPLITS.items() if str(v) in splits or k.upper() in splits)
            raise ConfigError(f"{self.dataset_json} has no {split!r} split; it has {have}")
        files = field(entry, "filenames", []) or []
        scenes, samples = [], []
        skipped = 0
        lacking: dict[str, list[str]] = {}  # camera -> scene files with samples that lack it
        for rel in files:
            path = self.root / rel
            scene = DDADScene(name=path.parent.name, directory=path.parent, json_path=path)
            if only is not None and scene.name not in only:
                continue
            data = read_json(path, "scene")
            scene = dataclasses.replace(scene, description=str(data.get("description", "") if isinstance(data, Mapping) else ""))
            si = len(scenes)
            scene_samples, n_skip, missing = self._scene_samples(si, data, path)
            if scene_samples:
                scenes.append(scene)
                samples.extend(scene_samples)
            skipped += n_skip
            for cam in missing:
                lacking.setdefault(cam, []).append(str(path))
        lack = "; ".join(f"{cam} missing in {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}"
                         for cam, files in sorted(lacking.items()))
        if not samples:
            which = f" among scenes {only}" if only is not None else ""
            raise ConfigError(f"DDAD {split} split of {self.dataset_json} has no samples with cameras "
                             f"{self.camera_names}{which}" + (f" ({lack})" if lack else ""))
        if skipped:
            warnings.warn(f"DDAD {split}: skipped {skipped} samples that lack a camera: {lack}", stacklevel=3)
        return scenes, samples

    def _scene_samples(self, si: int, data: Mapping[str, Any], path: Path) -> tuple[list[Sample], int, set]:
        """(samples with every camera, number skipped, names of the cameras that the skipped ones lack)."""
        if not isinstance(data, Mapping):
            raise DDADFormatError(f"{path} is not a DGP Scene JSON (a JSON {type(data).__name__}; expected an "
                                  "object with 'samples' and 'data')")
        records = {}
        for datum in data.get("data", []) or []:
            key = datum.get("key")
            if key:
                records[key] = datum_record(datum, str(path))
        out, skipped, missing = [], 0, set()
        for j, sample in enumerate(data.get("samples", []) or []):
            by_name = {}
            for key in field(sample, "datum_keys", []) or []:
                if key not in records:
                    raise DDADFormatError(f"{path}: samples[{j}] lists datum key {key} that is not in 'data'")
                name, kind, rec = records[key]
                if kind:
                    by_name[(name, kind)] = rec
            cams = [by_name.get((c, "image")) for c in self.camera_names]
            if any(c is None for c in cams):
                skipped += 1
                missing.update(n for n, c in zip(self.camera_names, cams) if c is None)
                continue
            lidar = by_name.get((self.lidar_name, "point_cloud"))
            ident = field(sample, "id", {}) or {}
            try:
                stamp = parse_timestamp(ident["timestamp"]) if ident.get("timestamp") is not None else float("nan")
            except ValueError:
                raise DDADFormatError(f"{path}: samples[{j}] has a malformed timestamp") from None
            if not np.isfinite(stamp):
                stamp = lidar.stamp if lidar is not None else cams[0].stamp
            calib_key = field(sample, "calibration_key")
            if not calib_key:
                raise DDADFormatError(f"{path}: samples[{j}] has no calibration_key")
            out.append(Sample(si, stamp, str(calib_key), tuple(cams), lidar))
        return out, skipped, missing

    def _calibration(self, sample: Sample) -> dict[str, SensorCalibration]:
        key = (sample.scene, sample.calibration_key)
        if key not in self._calibrations:
            scene = self.scenes[sample.scene]
            calib = load_calibration(scene.directory / "calibration" / f"{sample.calibration_key}.json")
            for name in self.camera_names:
                if name not in calib or calib[name].K is None:
                    raise DDADFormatError(f"{scene.directory / 'calibration' / (sample.calibration_key + '.json')}: "
                                          f"no camera intrinsics for {name}")
                if calib[name].distortion and name not in self._distortion_warned:
                    self._distortion_warned.add(name)
                    warnings.warn(f"DDAD {name} has distortion {calib[name].distortion}; the pinhole model "
                                  "ignores it", stacklevel=3)
            if sample.lidar is not None and self.lidar_name not in calib:
                raise DDADFormatError(f"{scene.directory}: calibration {sample.calibration_key} has no "
                                      f"{self.lidar_name} extrinsics")
            self._calibrations[key] = calib
        return self._calibrations[key]

    def _native_size(self, sample: Sample, c: int) -> tuple[int, int]:
        d = sample.cams[c]
        if d.width > 0 and d.height > 0:
            return d.width, d.height
        img = read_rgb(self.scenes[sample.scene].directory / d.filename)
        return img.shape[1], img.shape[0]

    def _at_item_size(self, rig: CameraRig) -> CameraRig:
        cams = tuple(dataclasses.replace(c, width=self.width, height=self.height,
                                         K=plan_resize(c.width, c.height, self.width, self.height).intrinsics(c.K))
                     for c in rig.cameras)
        return dataclasses.replace(rig, cameras=cams)

    def _check_front(self, rig: CameraRig) -> None:
        if "CAMERA_01" in rig.names:
            yaw = rig.cameras[rig.index("CAMERA_01")].yaw_deg
            if abs(yaw) > FRONT_AXIS_TOLERANCE_DEG:
                warnings.warn(f"DDAD CAMERA_01 looks {yaw:.0f} deg off the vehicle x axis; this reader assumes the "
                              "vehicle frame is x forward, y left, z up (base_link)", stacklevel=3)

    # ----------------------------------------------------------------- masks
    def _resolve_mask_dir(self, masks: bool, mask_dir) -> Path | None:
        if not masks:
            return None
        if mask_dir is not None:
            path = Path(mask_dir).expanduser()
            if not path.is_dir():
                raise MissingFileError(f"DDAD mask directory not found: {path}")
            return path
        for path in (self.root / "mask", self.root.parent / "mask"):
            pattern = "[Cc][Aa][Mm][Ee][Rr][Aa]_*"
            if path.is_dir() and (any(path.glob(pattern)) or any(path.glob("*/" + pattern))):
                return path
        return None

    def _mask_file(self, scene: DDADScene, cam: str) -> Path | None:
        d = self.mask_dir
        for variant in (cam, cam.lower()):
            for path in (d / variant / scene.name / "mask.png", d / scene.name / f"{variant}.png",
                         d / scene.name / variant / "mask.png", d / f"{variant}.png", d / variant / "mask.png"):
                if path.is_file():
                    return path
        return None

    def _mask(self, si: int, c: int) -> np.ndarray | None:
        """Scene-pixel mask [H,W] bool at the item size, or None (no mask file: all scene)."""
        key = (si, c)
        if key not in self._masks:
            scene, cam = self.scenes[si], self.camera_names[c]
            path = self._mask_file(scene, cam)
            mask = None
            if path is None:
                if cam not in self._mask_warned:
                    self._mask_warned.add(cam)
                    warnings.warn(f"no DDAD self-occlusion mask for {cam} in scene {scene.name} under {self.mask_dir}; "
                                  "treating the whole image as scene", stacklevel=3)
            else:
                raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                if raw is None:
                    raise MissingFileError(f"DDAD mask unreadable: {path}")
                body = (raw.reshape(raw.shape[0], raw.shape[1], -1) != 0).any(axis=2).astype(np.float32)
                if body.shape != (self.height, self.width):  # cropped and resized as the images are
                    body = resize_on_host(body, self.width, self.height)[0]
                mask = body <= 0.0
            self._masks[key] = mask
        return self._masks[key]

    # ----------------------------------------------------------------- items
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        n = len(self.samples)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for {n} DDAD samples")
        i = int(i) % n
        sample = self.samples[i]
        scene = self.scenes[sample.scene]
        calib = self._calibration(sample)
        V, H, W = len(self.camera_names), self.height, self.width
        images = np.zeros((V, H, W, 3), np.uint8)
        K = np.zeros((V, 3, 3))
        T_base_cam = np.zeros((V, 4, 4))
        for c, (name, datum) in enumerate(zip(self.camera_names, sample.cams)):
            img = read_rgb(scene.directory / datum.filename)
            h0, w0 = img.shape[:2]
            images[c], plan = resize_on_host(img, W, H)  # the node's crop and resize: the same pixels and K
            K[c] = plan.intrinsics(calib[name].K)
            T_base_cam[c] = calib[name].T_vehicle_sensor
        stamps = np.array([d.stamp for d in sample.cams], dtype=np.float64)
        item: dict[str, Any] = {"images": images, "K": K, "T_base_cam": T_base_cam, "stamp": float(sample.stamp),
                                "stamps": stamps, "camera_names": list(self.camera_names), "scene": scene.name,
                                "index": i}
        T_world_base = None
        if sample.lidar is not None:
            T_vs = calib[self.lidar_name].T_vehicle_sensor
            pts_sensor = load_points(scene.directory / sample.lidar.filename, sample.lidar.point_format)
            T_cam_sensor = np.stack([self._T_cam_lidar(calib[name].T_vehicle_sensor, d.pose, T_vs, sample.lidar.pose)
                                     for name, d in zip(self.camera_names, sample.cams)])
            depth = lidar_depth_maps(pts_sensor, T_cam_sensor, K, H, W, pixels=self.gt_pixels)
            item["lidar_points"] = transform_points(T_vs, pts_sensor).astype(np.float32)
            if sample.lidar.pose is not None:
                T_world_base = sample.lidar.pose @ invert_transform(T_vs)
        else:
            depth = np.zeros((V, H, W), np.float32)
        cams_pose = [d.pose @ invert_transform(calib[name].T_vehicle_sensor) if d.pose is not None else None
                     for name, d in zip(self.camera_names, sample.cams)]
        if T_world_base is None:
            T_world_base = next((p for p in cams_pose if p is not None), np.eye(4))
        item["T_world_base"] = T_world_base
        item["T_world_base_cams"] = np.stack([p if p is not None else T_world_base for p in cams_pose])
        if self.mask_dir is not None:
            mask = np.ones((V, H, W), bool)
            for c in range(V):
                m = self._mask(sample.scene, c)
                if m is not None:
                    mask[c] = m
            depth[~mask] = 0.0
            item["mask"] = mask
        item["lidar_depth"] = depth
        return item

    def _T_cam_lidar(self, T_vc: np.ndarray, pose_wc, T_vs: np.ndarray, pose_ws) -> np.ndarray:
        """Lidar sensor frame -> camera optical frame (world poses when both exist, else calibration)."""
        if self.ego_motion and pose_wc is not None and pose_ws is not None:
            return invert_transform(pose_wc) @ pose_ws
        return invert_transform(T_vc) @ T_vs
