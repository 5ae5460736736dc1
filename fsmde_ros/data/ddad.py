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
Evaluation caps DDAD depth at `DDAD_MAX_DEPTH_M` (the GT itself is not capped).
"""
from __future__ import annotations

import calendar
import dataclasses
import json
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np

from fsmde_ros.data.lidar_projection import lidar_depth_maps
from fsmde_ros.geometry import invert_transform, transform_points
from fsmde_ros.rig import Camera, CameraRig, RigError, load_rig, rotation_from_quaternion, scale_intrinsics

# Ring order of config/rigs/ddad.yaml (clockwise from above, front first): front, front-right,
# back-right, back, back-left, front-left.
DDAD_CAMERAS = ("CAMERA_01", "CAMERA_06", "CAMERA_08", "CAMERA_09", "CAMERA_07", "CAMERA_05")
DDAD_LIDAR = "LIDAR"
DDAD_MAX_DEPTH_M = 200.0  # evaluation cap (DESIGN.md section 6)
DATASET_JSON = "ddad.json"
SPLITS = {"train": 0, "val": 1, "test": 2, "train_overfit": 3}  # dgp.proto.DatasetSplit
POINT_CHANNELS = {"X": 0, "Y": 1, "Z": 2}  # dgp.proto.PointCloud.ChannelType
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "k5", "k6", "p1", "p2")
FRONT_AXIS_TOLERANCE_DEG = 45.0  # the front camera must look within this of +x of the vehicle frame


class DDADFormatError(ValueError):
    """A DDAD/DGP file is missing a field or malformed; the message names the file and field."""


class CorruptFileError(ValueError):
    """A data file (image, point cloud) exists but cannot be decoded; `path` is the file, which the
    message names. Dataset readers raise it from `__getitem__`, and `write_bag` skips such sets."""

    def __init__(self, path: str | Path, what: str, detail: str = ""):
        self.path = Path(path)
        super().__init__(f"corrupt {what} file {self.path}" + (f": {detail}" if detail else ""))


def _field(d: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A proto field by its proto name, or its lowerCamelCase JSON name."""
    if name in d:
        return d[name]
    parts = name.split("_")
    camel = parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
    return d.get(camel, default)


_RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?(Z|z|[+-]\d\d:\d\d)?$")


def parse_timestamp(value: Any) -> float:
    """Seconds since the epoch from a protobuf Timestamp as JSON: an RFC 3339 string (what
    protobuf writes, nanosecond digits kept), {seconds, nanos}, or integer microseconds (DGP's
    file names)."""
    if isinstance(value, Mapping):
        return float(int(value.get("seconds", 0))) + int(value.get("nanos", 0)) * 1e-9
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        return float(value) * 1e-6
    text = str(value).strip()
    if text.isdigit():
        return int(text) * 1e-6
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not a timestamp: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    secs = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    frac = float(m.group(7)) if m.group(7) else 0.0
    zone = m.group(8)
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return secs + frac


def pose_matrix(pose: Mapping[str, Any] | None) -> np.ndarray | None:
    """4x4 of a DGP Pose {translation {x,y,z}, rotation {qw,qx,qy,qz}}; None where the pose is
    empty (absent, or an all-zero quaternion, which DGP reads as 'no pose')."""
    if not pose:
        return None
    t = _field(pose, "translation", {}) or {}
    r = _field(pose, "rotation", {}) or {}
    q = np.array([float(r.get(k, 0.0)) for k in ("qx", "qy", "qz", "qw")])
    if np.linalg.norm(q) < 1e-9:
        return None
    T = np.eye(4)
    T[:3, :3] = rotation_from_quaternion(q)
    T[:3, 3] = [float(t.get(k, 0.0)) for k in ("x", "y", "z")]
    return T


@dataclasses.dataclass(frozen=True)
class SensorCalibration:
    """One sensor of a DGP SampleCalibration: K [3,3] (None for a lidar), p_VS [4,4], distortion."""

    name: str
    K: np.ndarray | None
    T_vehicle_sensor: np.ndarray
    distortion: dict


def load_calibration(path: str | Path) -> dict[str, SensorCalibration]:
    """A DGP calibration JSON -> {sensor name (upper case): SensorCalibration}."""
    path = Path(path)
    data = _read_json(path, "calibration")
    names = _field(data, "names")
    intr = _field(data, "intrinsics")
    extr = _field(data, "extrinsics")
    if not isinstance(names, list) or not isinstance(intr, list) or not isinstance(extr, list):
        raise DDADFormatError(f"{path}: a calibration needs lists 'names', 'intrinsics' and 'extrinsics'")
    if not len(names) == len(intr) == len(extr):
        raise DDADFormatError(f"{path}: 'names', 'intrinsics' and 'extrinsics' differ in length "
                              f"({len(names)}, {len(intr)}, {len(extr)})")
    out = {}
    for name, k, e in zip(names, intr, extr):
        fx, fy = float(k.get("fx", 0.0)), float(k.get("fy", 0.0))
        K = None
        if fx > 0 and fy > 0:
            K = np.array([[fx, float(k.get("skew", 0.0)), float(k.get("cx", 0.0))],
                          [0.0, fy, float(k.get("cy", 0.0))], [0.0, 0.0, 1.0]])
        T = pose_matrix(e)
        if T is None:  # an empty pose (DGP reads it as identity): the sensor defines the vehicle frame
            T = np.eye(4)
            if e:
                t = _field(e, "translation", {}) or {}
                T[:3, 3] = [float(t.get(key, 0.0)) for key in ("x", "y", "z")]
        dist = {key: float(k[key]) for key in DISTORTION_KEYS if float(k.get(key, 0.0) or 0.0) != 0.0}
        out[str(name).upper()] = SensorCalibration(str(name), K, T, dist)
    return out


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"DDAD {what} file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DDADFormatError(f"{path}: not valid JSON ({exc})") from None


def find_dataset_json(root: str | Path) -> Path:
    """The SceneDataset JSON of a DDAD root (ddad.json, or a DGP scene_dataset*.json), or the
    root itself when it is a .json file."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"DDAD root not found: {root}")
    if root.is_file():
        if root.suffix != ".json":
            raise FileNotFoundError(f"DDAD root {root} is a file but not a dataset .json")
        return root
    candidate = root / DATASET_JSON
    if candidate.is_file():
        return candidate
    others = sorted(root.glob("scene_dataset*.json"))
    if len(others) == 1:
        return others[0]
    raise FileNotFoundError(f"DDAD dataset file not found: {candidate} (the root must hold ddad.json, "
                            f"as in the DDAD download ddad_train_val/)")


@dataclasses.dataclass(frozen=True)
class _Datum:
    filename: str
    stamp: float
    pose: np.ndarray | None  # p_WS of the datum, None if the JSON has none
    width: int = 0
    height: int = 0
    point_format: tuple = ()


@dataclasses.dataclass(frozen=True)
class _Sample:
    scene: int  # index into DDADDataset.scenes
    stamp: float
    calibration_key: str
    cams: tuple[_Datum, ...]
    lidar: _Datum | None


@dataclasses.dataclass(frozen=True)
class DDADScene:
    name: str  # the scene directory name (e.g. 000150); SurroundDepth's scene id
    directory: Path
    json_path: Path
    description: str = ""


def _datum_record(datum: Mapping[str, Any], where: str) -> tuple[str, str, _Datum]:
    """(name upper, kind, _Datum) of one Scene.data entry."""
    ident = _field(datum, "id", {}) or {}
    name = str(ident.get("name", "")).upper()
    value = _field(datum, "datum", {}) or {}
    kind = "image" if "image" in value else ("point_cloud" if _field(value, "point_cloud") is not None else "")
    if not kind:
        return name, "", _Datum("", 0.0, None)
    body = value["image"] if kind == "image" else _field(value, "point_cloud")
    filename = body.get("filename")
    if not filename:
        raise DDADFormatError(f"{where}: datum {name} has no filename")
    ts = ident.get("timestamp")
    try:
        stamp = parse_timestamp(ts) if ts is not None else float("nan")
    except ValueError:
        raise DDADFormatError(f"{where}: datum {name} has a malformed timestamp {ts!r}") from None
    fmt = tuple(_field(body, "point_format", []) or ())
    return name, kind, _Datum(str(filename), stamp, pose_matrix(body.get("pose")), int(body.get("width", 0) or 0),
                              int(body.get("height", 0) or 0), fmt)


def _xyz_columns(point_format: Sequence) -> list[int]:
    """Column indices of X, Y, Z in an [N,C] DGP point array (default 0, 1, 2)."""
    if not point_format:
        return [0, 1, 2]
    names = [POINT_CHANNELS.get(p, p) if isinstance(p, str) else int(p) for p in point_format]
    try:
        return [names.index(c) for c in (0, 1, 2)]
    except ValueError:
        raise DDADFormatError(f"point_format {list(point_format)} lacks X, Y or Z") from None


def load_points(path: str | Path, point_format: Sequence = ()) -> np.ndarray:
    """XYZ [N,3] float64 of a DGP point cloud .npz (key 'data'), in the sensor frame."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DDAD point cloud not found: {path}")
    try:
        with np.load(path) as z:
            if "data" not in z.files:
                raise DDADFormatError(f"{path}: no 'data' array (has {z.files})")
            X = z["data"]
    except DDADFormatError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # garbage or truncated .npz
        raise CorruptFileError(path, "point cloud", str(exc) or type(exc).__name__) from None
    if X.dtype.fields is not None:
        missing = [f for f in ("X", "Y", "Z") if f not in X.dtype.fields]
        if missing:
            raise DDADFormatError(f"{path}: structured point array lacks fields {missing}")
        return np.stack([X["X"].ravel(), X["Y"].ravel(), X["Z"].ravel()], axis=1).astype(np.float64)
    if X.ndim != 2 or X.shape[1] < 3:
        raise DDADFormatError(f"{path}: 'data' must be [N,>=3], got shape {X.shape}")
    return X[:, _xyz_columns(point_format)].astype(np.float64)


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as uint8 [H,W,3] RGB; FileNotFoundError when it is missing, CorruptFileError
    when it exists but does not decode (garbage or truncated bytes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    raw = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    if img is None:
        raise CorruptFileError(path, "image", "not a decodable PNG/JPEG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize_image(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """INTER_AREA resize (no-op at the same size)."""
    if img.shape[1] == width and img.shape[0] == height:
        return img
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def _preset_topics() -> dict[str, Camera]:
    try:
        return {c.name.upper(): c for c in load_rig("ddad").cameras}
    except RigError:
        return {}


def build_rig(name: str, cams: Sequence[tuple[str, np.ndarray, np.ndarray, int, int]],
              preset: Mapping[str, Camera], source: str) -> CameraRig:
    """A CameraRig from (camera name, K, T_base_cam, width, height), topics/frames from a preset."""
    cameras = []
    for cam_name, K, T, w, h in cams:
        ref = preset.get(cam_name.upper())
        lower = cam_name.lower()
        cameras.append(Camera(
            name=cam_name,
            image_topic=ref.image_topic if ref else f"/{lower}/image_raw",
            info_topic=ref.info_topic if ref else f"/{lower}/camera_info",
            frame_id=ref.frame_id if ref else f"{lower}_optical_frame",
            width=int(w), height=int(h), K=np.array(K, dtype=np.float64), T_base_cam=np.array(T, dtype=np.float64)))
    return CameraRig(name=name, cameras=tuple(cameras), source=source)


class DDADDataset:
    """DDAD samples of one split as surround items (see the module doc)."""

    def __init__(self, root: str | Path, split: str = "val", cameras: Sequence[str] = DDAD_CAMERAS,
                 height: int | None = None, width: int | None = None, masks: bool = True,
                 mask_dir: str | Path | None = None, scenes: Iterable[str] | None = None,
                 lidar: str = DDAD_LIDAR, ego_motion: bool = True):
        self.dataset_json = find_dataset_json(root)
        self.root = self.dataset_json.parent
        self.split = split
        self.camera_names = [str(c).upper() for c in cameras]
        if len(self.camera_names) < 2 or len(set(self.camera_names)) != len(self.camera_names):
            raise ValueError(f"cameras must be at least 2 distinct DDAD camera names, got {list(cameras)}")
        self.lidar_name = lidar.upper()
        self.ego_motion = bool(ego_motion)
        if (height is None) != (width is None):
            raise ValueError("give both height and width, or neither (native resolution)")
        if height is not None and (height <= 0 or width <= 0):
            raise ValueError(f"image size must be positive, got {width}x{height}")
        self.scenes, self.samples = self._index(split, None if scenes is None else [str(s) for s in scenes])
        self._calibrations: dict[tuple[int, str], dict[str, SensorCalibration]] = {}
        self._distortion_warned: set = set()
        first = self.samples[0]
        sizes = [self._native_size(first, c) for c in range(len(self.camera_names))]
        self.native_sizes = sizes
        if height is None:
            if len(set(sizes)) != 1:
                raise ValueError(f"DDAD cameras have different image sizes {sizes}; pass height and width")
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
    def _index(self, split: str, only: list[str] | None) -> tuple[list[DDADScene], list[_Sample]]:
        data = _read_json(self.dataset_json, "dataset")
        splits = _field(data, "scene_splits") if isinstance(data, Mapping) else None
        if not isinstance(splits, Mapping):
            what = "missing field 'scene_splits'" if isinstance(data, Mapping) else f"a JSON {type(data).__name__}"
            raise DDADFormatError(f"{self.dataset_json} is not a DDAD dataset file ({what}); expected the DGP "
                                  f"SceneDataset JSON of a DDAD root (ddad.json with 'metadata' and 'scene_splits', "
                                  f"as in the DDAD download ddad_train_val/)")
        if split not in SPLITS:
            raise ValueError(f"unknown DDAD split {split!r}; use one of {sorted(SPLITS)}")
        entry = splits.get(str(SPLITS[split]), splits.get(split.upper()))
        if entry is None:
            have = sorted(k for k, v in SPLITS.items() if str(v) in splits or k.upper() in splits)
            raise ValueError(f"{self.dataset_json} has no {split!r} split; it has {have}")
        files = _field(entry, "filenames", []) or []
        scenes, samples = [], []
        skipped = 0
        lacking: dict[str, list[str]] = {}  # camera -> scene files with samples that lack it
        for rel in files:
            path = self.root / rel
            scene = DDADScene(name=path.parent.name, directory=path.parent, json_path=path)
            if only is not None and scene.name not in only:
                continue
            data = _read_json(path, "scene")
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
            raise ValueError(f"DDAD {split} split of {self.dataset_json} has no samples with cameras "
                             f"{self.camera_names}{which}" + (f" ({lack})" if lack else ""))
        if skipped:
            warnings.warn(f"DDAD {split}: skipped {skipped} samples that lack a camera: {lack}", stacklevel=3)
        return scenes, samples

    def _scene_samples(self, si: int, data: Mapping[str, Any], path: Path) -> tuple[list[_Sample], int, set]:
        """(samples with every camera, number skipped, names of the cameras that the skipped ones lack)."""
        if not isinstance(data, Mapping):
            raise DDADFormatError(f"{path} is not a DGP Scene JSON (a JSON {type(data).__name__}; expected an "
                                  "object with 'samples' and 'data')")
        records = {}
        for datum in data.get("data", []) or []:
            key = datum.get("key")
            if key:
                records[key] = _datum_record(datum, str(path))
        out, skipped, missing = [], 0, set()
        for j, sample in enumerate(data.get("samples", []) or []):
            by_name = {}
            for key in _field(sample, "datum_keys", []) or []:
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
            ident = _field(sample, "id", {}) or {}
            try:
                stamp = parse_timestamp(ident["timestamp"]) if ident.get("timestamp") is not None else float("nan")
            except ValueError:
                raise DDADFormatError(f"{path}: samples[{j}] has a malformed timestamp") from None
            if not np.isfinite(stamp):
                stamp = lidar.stamp if lidar is not None else cams[0].stamp
            calib_key = _field(sample, "calibration_key")
            if not calib_key:
                raise DDADFormatError(f"{path}: samples[{j}] has no calibration_key")
            out.append(_Sample(si, stamp, str(calib_key), tuple(cams), lidar))
        return out, skipped, missing

    def _calibration(self, sample: _Sample) -> dict[str, SensorCalibration]:
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

    def _native_size(self, sample: _Sample, c: int) -> tuple[int, int]:
        d = sample.cams[c]
        if d.width > 0 and d.height > 0:
            return d.width, d.height
        img = read_rgb(self.scenes[sample.scene].directory / d.filename)
        return img.shape[1], img.shape[0]

    def _at_item_size(self, rig: CameraRig) -> CameraRig:
        cams = tuple(dataclasses.replace(c, width=self.width, height=self.height,
                                         K=scale_intrinsics(c.K, self.width / c.width, self.height / c.height))
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
                raise FileNotFoundError(f"DDAD mask directory not found: {path}")
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
                    raise FileNotFoundError(f"DDAD mask unreadable: {path}")
                body = (raw.reshape(raw.shape[0], raw.shape[1], -1) != 0).any(axis=2).astype(np.float32)
                if body.shape != (self.height, self.width):
                    body = cv2.resize(body, (self.width, self.height), interpolation=cv2.INTER_AREA)
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
            images[c] = resize_image(img, W, H)
            K[c] = scale_intrinsics(calib[name].K, W / w0, H / h0)
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
            depth = lidar_depth_maps(pts_sensor, T_cam_sensor, K, H, W)
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
