"""TRI's DGP "SceneDataset" JSON (the on-disk format of DDAD), parsed without the `dgp` package.

The dataset index, scenes, samples, datums, calibrations and lidar point files, as the
protobufs in TRI-ML/dgp (dgp/proto/*.proto) define them; `fsmde_ros.data.ddad` turns them into
surround items, and its docstring gives the frames and conventions.
"""
from __future__ import annotations

import calendar
import dataclasses
import json
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fsmde_ros.data.dataset_files import CorruptFileError
from fsmde_ros.errors import ConfigError, FsmdeError, MissingFileError
from fsmde_ros.geometry.rig import rotation_from_quaternion

DATASET_JSON = "ddad.json"


SPLITS = {"train": 0, "val": 1, "test": 2, "train_overfit": 3}  # dgp.proto.DatasetSplit


POINT_CHANNELS = {"X": 0, "Y": 1, "Z": 2}  # dgp.proto.PointCloud.ChannelType


DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "k5", "k6", "p1", "p2")

RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?(Z|z|[+-]\d\d:\d\d)?$")


class DDADFormatError(FsmdeError, ValueError):
    """A DDAD/DGP file is missing a field or malformed; the message names the file and field."""


def field(d: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A proto field by its proto name, or its lowerCamelCase JSON name."""
    if name in d:
        return d[name]
    parts = name.split("_")
    camel = parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
    return d.get(camel, default)


def parse_timestamp(value: Any) -> float:
    """Seconds since the epoch from a protobuf Timestamp as JSON: an RFC 3339 string (what
    protobuf writes, nanosecond digits kept), {seconds, nanos}, or integer microseconds (DGP's
    file names)."""
    if isinstance(value, Mapping):
        return float(int(value.get("seconds", 0))) + int(value.get("nanos", 0)) * 1e-9
    if isinstance(value, bool):
        raise ConfigError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        return float(value) * 1e-6
    text = str(value).strip()
    if text.isdigit():
        return int(text) * 1e-6
    m = RFC3339.match(text)
    if not m:
        raise ConfigError(f"not a timestamp: {value!r}")
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
    t = field(pose, "translation", {}) or {}
    r = field(pose, "rotation", {}) or {}
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
    data = read_json(path, "calibration")
    names = field(data, "names")
    intr = field(data, "intrinsics")
    extr = field(data, "extrinsics")
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
                t = field(e, "translation", {}) or {}
                T[:3, 3] = [float(t.get(key, 0.0)) for key in ("x", "y", "z")]
        dist = {key: float(k[key]) for key in DISTORTION_KEYS if float(k.get(key, 0.0) or 0.0) != 0.0}
        out[str(name).upper()] = SensorCalibration(str(name), K, T, dist)
    return out


def read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise MissingFileError(f"DDAD {what} file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DDADFormatError(f"{path}: not valid JSON ({exc})") from None


def find_dataset_json(root: str | Path) -> Path:
    """The SceneDataset JSON of a DDAD root (ddad.json, or a DGP scene_dataset*.json), or the
    root itself when it is a .json file."""
    root = Path(root).expanduser()
    if not root.exists():
        raise MissingFileError(f"DDAD root not found: {root}")
    if root.is_file():
        if root.suffix != ".json":
            raise MissingFileError(f"DDAD root {root} is a file but not a dataset .json")
        return root
    candidate = root / DATASET_JSON
    if candidate.is_file():
        return candidate
    others = sorted(root.glob("scene_dataset*.json"))
    if len(others) == 1:
        return others[0]
    raise MissingFileError(f"DDAD dataset file not found: {candidate} (the root must hold ddad.json, "
                            f"as in the DDAD download ddad_train_val/)")


@dataclasses.dataclass(frozen=True)
class Datum:
    filename: str
    stamp: float
    pose: np.ndarray | None  # p_WS of the datum, None if the JSON has none
    width: int = 0
    height: int = 0
    point_format: tuple = ()


@dataclasses.dataclass(frozen=True)
class Sample:
    scene: int  # index into DDADDataset.scenes
    stamp: float
    calibration_key: str
    cams: tuple[Datum, ...]
    lidar: Datum | None


@dataclasses.dataclass(frozen=True)
class DDADScene:
    name: str  # the scene directory name (e.g. 000150); SurroundDepth's scene id
    directory: Path
    json_path: Path
    description: str = ""


def datum_record(datum: Mapping[str, Any], where: str) -> tuple[str, str, Datum]:
    """(name upper, kind, Datum) of one Scene.data entry."""
    ident = field(datum, "id", {}) or {}
    name = str(ident.get("name", "")).upper()
    value = field(datum, "datum", {}) or {}
    kind = "image" if "image" in value else ("point_cloud" if field(value, "point_cloud") is not None else "")
    if not kind:
        return name, "", Datum("", 0.0, None)
    body = value["image"] if kind == "image" else field(value, "point_cloud")
    filename = body.get("filename")
    if not filename:
        raise DDADFormatError(f"{where}: datum {name} has no filename")
    ts = ident.get("timestamp")
    try:
        stamp = parse_timestamp(ts) if ts is not None else float("nan")
    except ValueError:
        raise DDADFormatError(f"{where}: datum {name} has a malformed timestamp {ts!r}") from None
    fmt = tuple(field(body, "point_format", []) or ())
    return name, kind, Datum(str(filename), stamp, pose_matrix(body.get("pose")), int(body.get("width", 0) or 0),
                              int(body.get("height", 0) or 0), fmt)


def xyz_columns(point_format: Sequence) -> list[int]:
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
        raise MissingFileError(f"DDAD point cloud not found: {path}")
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
    return X[:, xyz_columns(point_format)].astype(np.float64)
