"""Camera rigs: six cameras around a vehicle, their topics, frames, intrinsics and mounts.

Conventions (REP-103/105):
- `base_link`: x forward, y left, z up, metres.
- camera optical frame (`frame_id`): z forward (viewing direction), x right, y down.
- `T_base_cam` [4,4] maps points from the camera optical frame into `base_link`.
- Pixel centres lie at integer coordinates: pixel (u, v) covers [u-0.5, u+0.5] (the OpenCV and
  ROS CameraInfo convention), so resizing by s maps u to s*(u+0.5)-0.5 (see `Camera.resized`).

Cameras are ordered around the ring (clockwise seen from above, front first) so that camera
i and camera (i+1) % N are neighbours whose fields of view overlap.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from fsmde_ros.errors import FsmdeError
from fsmde_ros.paths import config_dir

BASE_FRAME = "base_link"

# Rotation from the camera optical frame (z fwd, x right, y down) to a camera "body" frame
# that follows REP-103 (x fwd, y left, z up); yaw/pitch/roll in presets rotate that body frame.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


class RigError(FsmdeError, ValueError):
    """A rig preset is missing or malformed; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class Camera:
    """One pinhole camera of the rig (images are assumed rectified)."""

    name: str
    image_topic: str
    info_topic: str
    frame_id: str
    width: int
    height: int
    K: np.ndarray  # [3,3] float64, pixels
    T_base_cam: np.ndarray  # [4,4] float64, optical frame -> base_link

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def horizontal_fov_deg(self) -> float:
        """Full horizontal field of view [deg] of the pinhole model."""
        left = np.arctan2(self.K[0, 2] + 0.5, self.fx)
        right = np.arctan2(self.width - 0.5 - self.K[0, 2], self.fx)
        return float(np.degrees(left + right))

    @property
    def yaw_deg(self) -> float:
        """Heading of the optical axis in base_link [deg], 0 = forward, positive = left."""
        axis = self.T_base_cam[:3, 2]
        return float(np.degrees(np.arctan2(axis[1], axis[0])))

    def resized(self, width: int, height: int) -> "Camera":
        """The same camera at another image size (pixel-centre convention of the module doc)."""
        K = scale_intrinsics(self.K, width / self.width, height / self.height)
        return dataclasses.replace(self, width=int(width), height=int(height), K=K)


def strided_camera(cam: "Camera", k: int) -> "Camera":
    """The camera seen through image[::k, ::k] (pixel j is original pixel k*j, so K scales by 1/k
    without the half-pixel shift of a resize)."""
    K = np.array(cam.K, dtype=np.float64, copy=True)
    K[:2] /= k
    K[2] = (0.0, 0.0, 1.0)
    return dataclasses.replace(cam, width=-(-cam.width // k), height=-(-cam.height // k), K=K)


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Scale K [...,3,3] for an image resized by (sx, sy) with pixel centres at integers."""
    K = np.array(K, dtype=np.float64, copy=True)
    K[..., 0, 0] *= sx
    K[..., 0, 1] *= sx
    K[..., 1, 1] *= sy
    K[..., 0, 2] = sx * (K[..., 0, 2] + 0.5) - 0.5
    K[..., 1, 2] = sy * (K[..., 1, 2] + 0.5) - 0.5
    return K


@dataclasses.dataclass(frozen=True)
class CameraRig:
    """An ordered ring of cameras on one vehicle."""

    name: str
    cameras: tuple[Camera, ...]
    base_frame: str = BASE_FRAME
    source: str = "<memory>"

    def __post_init__(self) -> None:
        if len(self.cameras) < 2:
            raise RigError(f"{self.source}: a rig needs at least 2 cameras, got {len(self.cameras)}")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise RigError(f"{self.source}: camera names must be unique, got {names}")

    def __len__(self) -> int:
        return len(self.cameras)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def neighbours(self) -> list[tuple[int, int]]:
        """Adjacent camera index pairs around the ring: (0,1), (1,2), ..., (N-1,0)."""
        n = len(self.cameras)
        return [(i, (i + 1) % n) for i in range(n)]

    @property
    def K(self) -> np.ndarray:
        """Intrinsics of all cameras, [N,3,3] float64."""
        return np.stack([c.K for c in self.cameras])

    @property
    def T_base_cam(self) -> np.ndarray:
        """Mounts of all cameras, [N,4,4] float64 (optical frame -> base_link)."""
        return np.stack([c.T_base_cam for c in self.cameras])

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(width, height) of each camera in pixels."""
        return [(c.width, c.height) for c in self.cameras]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"rig {self.name!r} has no camera {name!r}; cameras: {self.names}") from None

    def resized(self, width: int, height: int) -> "CameraRig":
        """Every camera resized to width x height (intrinsics scaled per axis)."""
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        return dataclasses.replace(self, cameras=tuple(c.resized(width, height) for c in self.cameras))

    def strided(self, k: int) -> "CameraRig":
        """Every camera as seen through image[::k, ::k] (see strided_camera)."""
        return dataclasses.replace(self, cameras=tuple(strided_camera(c, k) for c in self.cameras))

    def describe(self) -> str:
        """A human-readable table of the rig (used by `fsmde rig show`)."""
        lines = [f"rig {self.name} ({self.source}), base frame {self.base_frame}, {len(self)} cameras in ring order"]
        lines.append(f"{'#':>2} {'name':<16} {'size':>10} {'fx':>8} {'fy':>8} {'cx':>8} {'cy':>8}"
                     f" {'hfov':>6} {'yaw':>7} {'x,y,z [m]':>20}  topic")
        for i, c in enumerate(self.cameras):
            t = c.T_base_cam[:3, 3]
            lines.append(
                f"{i:>2} {c.name:<16} {c.width:>4}x{c.height:<5} {c.fx:8.1f} {c.fy:8.1f} {c.K[0, 2]:8.1f}"
                f" {c.K[1, 2]:8.1f} {c.horizontal_fov_deg:5.1f}° {c.yaw_deg:6.1f}°"
                f" {t[0]:6.2f},{t[1]:6.2f},{t[2]:5.2f}  {c.image_topic}"
            )
        lines.append("neighbours: " + ", ".join(f"{self.names[a]}<->{self.names[b]}" for a, b in self.neighbours))
        return "\n".join(lines)


def rotation_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) Ry(pitch) Rx(roll), angles in radians (REP-103 fixed-axis roll, pitch, yaw)."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return rz @ ry @ rx


def rotation_from_quaternion(q_xyzw: Sequence[float]) -> np.ndarray:
    """Rotation matrix from a unit quaternion (x, y, z, w), the geometry_msgs order."""
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64) / np.linalg.norm(q_xyzw)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def quaternion_from_rotation(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) of a rotation matrix, w >= 0.

    Shepperd's method: the largest of 4w^2, 4x^2, 4y^2, 4z^2 is taken from the diagonal and the
    other three from off-diagonal sums, so 180-degree rotations (w = 0, where taking each
    component's sign from R[i,j] - R[j,i] fails: those differences are all 0) come out right."""
    R = np.asarray(R, dtype=np.float64)
    t = np.trace(R)
    diag = [t, R[0, 0], R[1, 1], R[2, 2]]
    k = int(np.argmax(diag))
    if k == 0:
        r = np.sqrt(1.0 + t) * 2  # 4w
        q = [(R[2, 1] - R[1, 2]) / r, (R[0, 2] - R[2, 0]) / r, (R[1, 0] - R[0, 1]) / r, r / 4]
    elif k == 1:
        r = np.sqrt(max(0.0, 1.0 + R[0, 0] - R[1, 1] - R[2, 2])) * 2  # 4x
        q = [r / 4, (R[0, 1] + R[1, 0]) / r, (R[0, 2] + R[2, 0]) / r, (R[2, 1] - R[1, 2]) / r]
    elif k == 2:
        r = np.sqrt(max(0.0, 1.0 - R[0, 0] + R[1, 1] - R[2, 2])) * 2  # 4y
        q = [(R[0, 1] + R[1, 0]) / r, r / 4, (R[1, 2] + R[2, 1]) / r, (R[0, 2] - R[2, 0]) / r]
    else:
        r = np.sqrt(max(0.0, 1.0 - R[0, 0] - R[1, 1] + R[2, 2])) * 2  # 4z
        q = [(R[0, 2] + R[2, 0]) / r, (R[1, 2] + R[2, 1]) / r, r / 4, (R[1, 0] - R[0, 1]) / r]
    q = np.asarray(q)
    q = q / np.linalg.norm(q)
    return -q if q[3] < 0 else q


def mount_transform(xyz: Sequence[float], rpy_deg: Sequence[float]) -> np.ndarray:
    """T_base_cam [4,4] for a camera at xyz [m] looking along (roll, pitch, yaw) [deg].

    yaw 0 looks forward (+x of base_link), +90 left; positive pitch tilts the view down.
    """
    roll, pitch, yaw = np.radians(np.asarray(rpy_deg, dtype=np.float64))
    T = np.eye(4)
    T[:3, :3] = rotation_from_rpy(roll, pitch, yaw) @ R_BODY_OPTICAL
    T[:3, 3] = np.asarray(xyz, dtype=np.float64)
    return T


def _field(mapping: Mapping[str, Any], key: str, where: str, source: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise RigError(f"{source}: missing field '{where}{key}'")
    return mapping[key]


def _numbers(value: Any, n: int, field: str, source: str) -> np.ndarray:
    arr = np.asarray(value, dtype=object).ravel()
    try:
        out = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise RigError(f"{source}: field '{field}' must be {n} numbers, got {value!r}") from None
    if out.size != n or arr.size != n:
        raise RigError(f"{source}: field '{field}' must be {n} numbers, got {value!r}")
    if not np.all(np.isfinite(out)):
        raise RigError(f"{source}: field '{field}' must be finite, got {value!r}")
    return out


def _positive_int(value: Any, field: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RigError(f"{source}: field '{field}' must be a positive integer, got {value!r}")
    return value


def _camera_from_dict(d: Mapping[str, Any], i: int, source: str) -> Camera:
    where = f"cameras[{i}]."
    if not isinstance(d, Mapping):
        raise RigError(f"{source}: field 'cameras[{i}]' must be a mapping, got {d!r}")
    name = str(_field(d, "name", where, source))
    width = _positive_int(_field(d, "width", where, source), where + "width", source)
    height = _positive_int(_field(d, "height", where, source), where + "height", source)
    intr = _field(d, "intrinsics", where, source)
    fx, fy, cx, cy = (float(_numbers(_field(intr, k, where + "intrinsics.", source), 1, f"{where}intrinsics.{k}", source)[0])
                      for k in ("fx", "fy", "cx", "cy"))
    if fx <= 0 or fy <= 0:
        raise RigError(f"{source}: field '{where}intrinsics' needs fx, fy > 0, got fx={fx}, fy={fy}")
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    mount = _field(d, "mount", where, source)
    xyz = _numbers(_field(mount, "xyz", where + "mount.", source), 3, where + "mount.xyz", source)
    if isinstance(mount, Mapping) and "quat_xyzw" in mount:
        q = _numbers(mount["quat_xyzw"], 4, where + "mount.quat_xyzw", source)
        if np.linalg.norm(q) < 1e-6:
            raise RigError(f"{source}: field '{where}mount.quat_xyzw' is not a rotation: {q.tolist()}")
        T = np.eye(4)
        T[:3, :3] = rotation_from_quaternion(q)
        T[:3, 3] = xyz
    else:
        rpy = _numbers(_field(mount, "rpy_deg", where + "mount.", source), 3, where + "mount.rpy_deg", source)
        T = mount_transform(xyz, rpy)
    lower = name.lower()
    return Camera(
        name=name,
        image_topic=str(d.get("image_topic", f"/{lower}/image_raw")),
        info_topic=str(d.get("info_topic", f"/{lower}/camera_info")),
        frame_id=str(d.get("frame_id", f"{lower}_optical_frame")),
        width=width,
        height=height,
        K=K,
        T_base_cam=T,
    )


def rig_from_dict(data: Mapping[str, Any], source: str = "<memory>") -> CameraRig:
    """Build a rig from the preset schema (see config/rigs/*.yaml); errors name source and field."""
    if not isinstance(data, Mapping):
        raise RigError(f"{source}: a rig preset must be a mapping with 'name' and 'cameras'")
    name = str(_field(data, "name", "", source))
    cams = _field(data, "cameras", "", source)
    if not isinstance(cams, list) or not cams:
        raise RigError(f"{source}: field 'cameras' must be a non-empty list")
    cameras = tuple(_camera_from_dict(c, i, source) for i, c in enumerate(cams))
    return CameraRig(name=name, cameras=cameras, base_frame=str(data.get("base_frame", BASE_FRAME)), source=source)


def rig_to_dict(rig: CameraRig) -> dict[str, Any]:
    """The rig in the preset schema of config/rigs (so `rig_from_dict` / `load_rig` read it back exactly)."""
    cams = []
    for c in rig.cameras:
        cams.append({
            "name": c.name, "image_topic": c.image_topic, "info_topic": c.info_topic, "frame_id": c.frame_id,
            "width": c.width, "height": c.height,
            "intrinsics": {k: float(v) for k, v in zip(("fx", "fy", "cx", "cy"), (c.fx, c.fy, c.K[0, 2], c.K[1, 2]))},
            "mount": {"xyz": [float(x) for x in c.T_base_cam[:3, 3]],
                      "quat_xyzw": [float(q) for q in quaternion_from_rotation(c.T_base_cam[:3, :3])]},
        })
    return {"name": rig.name, "base_frame": rig.base_frame, "cameras": cams}


def rig_preset_dir() -> Path:
    """Directory of the bundled rig presets (config/rigs)."""
    return config_dir() / "rigs"


def available_rigs() -> list[str]:
    """Names of the bundled presets."""
    return sorted(p.stem for p in rig_preset_dir().glob("*.yaml"))


def load_rig(name_or_path: str | Path) -> CameraRig:
    """Load a bundled preset by name (`ddad`, `nuscenes`) or a preset YAML by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = rig_preset_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise RigError(f"no rig preset {str(name_or_path)!r} (looked for {path}); "
                       f"bundled presets: {', '.join(available_rigs())}, or pass a path to a .yaml file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RigError(f"{path}: not valid YAML: {exc}") from None
    return rig_from_dict(data, source=str(path))
