"""A tiny DDAD dataset in the real DGP on-disk format, built from a known geometry.

Layout (as the DDAD download, ddad_train_val/, plus SurroundDepth's mask folder beside it):

    <base>/raw_data/ddad.json
    <base>/raw_data/<scene>/scene_<sha1>.json
    <base>/raw_data/<scene>/calibration/<sha1>.json
    <base>/raw_data/<scene>/rgb/CAMERA_XX/<t_us>.png
    <base>/raw_data/<scene>/point_cloud/LIDAR/<t_us>.npz
    <base>/mask/CAMERA_XX/<scene>/mask.png

Geometry: the vehicle frame is x forward, y left, z up. Cameras are optical frames (z along the
view, x right, y down) mounted at a yaw/pitch; the lidar sits on the roof with a small yaw/roll.
The ego drives forward (and turns slightly); every camera fires `CAMERA_DELAY_S[c]` after the
lidar, so the world poses of lidar and cameras differ. Each check point is *designed in a camera*:
a pixel (u, v) and a z-depth give the point in that camera frame at the camera's time, which is
moved to the world and then into the lidar frame at the lidar's time and written to the .npz.
The reader must therefore bring it back to exactly (u, v, z).

All maths here is the fixture's own (quaternions, rotations, pinhole), independent of fsmde_ros.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np

HEIGHT, WIDTH = 64, 96
SCENE_VAL, SCENE_TRAIN = "000150", "000000"
LIDAR = "LIDAR"
# first lidar time [us], on DDAD's own clock: the official DGP test scene reads 2464-11-12T01:04:09.936530Z (file
# names are such 17-digit microsecond stamps), past what ROS time (int32 s) and rosbag2 (int64 ns) hold
T0_US = 15_616_458_249_936_530
FRAME_DT_US = 100_000  # 10 Hz
SPEED_MPS = 10.0
YAW_RATE_DPS = 5.0
BODY_ROWS_FROM = 56  # mask rows >= this are ego body in every camera

# name: (fx, fy, cx, cy, xyz in vehicle [m], yaw [deg], pitch [deg, + looks down], delay after lidar [s])
CAMERAS = {
    "CAMERA_01": (110.0, 108.0, 47.3, 31.6, (1.93, 0.00, 1.61), 0.0, 1.0, 0.000),
    "CAMERA_05": (50.0, 50.5, 48.2, 32.1, (1.68, 0.52, 1.58), 58.0, 2.0, 0.050),
    "CAMERA_06": (50.5, 50.0, 47.6, 31.2, (1.68, -0.52, 1.58), -58.0, 2.0, 0.017),
    "CAMERA_07": (49.5, 49.5, 48.0, 32.0, (0.62, 0.55, 1.60), 122.0, 2.0, 0.067),
    "CAMERA_08": (50.2, 50.2, 47.0, 31.9, (0.62, -0.55, 1.60), -122.0, 2.0, 0.033),
    "CAMERA_09": (108.0, 108.0, 48.5, 31.5, (-0.35, 0.00, 1.62), 180.0, 1.0, 0.083),
}
LIDAR_MOUNT = ((0.80, 0.05, 1.95), 1.5, 0.0, 0.7)  # xyz, yaw, pitch, roll [deg]

# Check points designed per camera: (camera, u, v, z). The CAMERA_01 ones include a row on a
# plane 20 m ahead and an occluded pair on one pixel (the nearer, 8 m, must win).
PLANE_Z = 20.0
CHECKS = ([("CAMERA_01", 40, 30, 12.0)] + [("CAMERA_01", u, 50, PLANE_Z) for u in range(10, 90, 10)]
          + [("CAMERA_01", 60, 20, 8.0), ("CAMERA_05", 50, 40, 6.5), ("CAMERA_09", 30, 12, 15.0)])
OCCLUDED = ("CAMERA_01", 60, 20, 25.0)  # behind the 8 m check on the same pixel
BODY_POINT = ("CAMERA_09", 48, 60, 4.0)  # on an ego-body pixel: removed when masks are on
BEHIND_POINT = ("CAMERA_01", 40, 30, -5.0)  # behind CAMERA_01: never in its image


# ------------------------------------------------------------------ own maths
def rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])


def rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1.0, 0], [-math.sin(a), 0, math.cos(a)]])


def rot_x(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[1.0, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


# columns: the optical x (right), y (down), z (forward) axes in a forward-looking body frame
OPTICAL_IN_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def quat_wxyz_from_matrix(R: np.ndarray) -> tuple[float, float, float, float]:
    tr = R[0, 0] + R[1, 1] + R[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        w, x, y, z = 0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        w, x, y, z = (R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        w, x, y, z = (R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s
    else:
        s = 2.0 * math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        w, x, y, z = (R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s
    n = math.sqrt(w * w + x * x + y * y + z * z)
    return w / n, x / n, y / n, z / n


def matrix_from_quat_wxyz(w: float, x: float, y: float, z: float) -> np.ndarray:
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def make_pose(R: np.ndarray, t) -> tuple[np.ndarray, dict]:
    """(4x4 truth, DGP Pose JSON); the truth is rebuilt from the written quaternion."""
    q = quat_wxyz_from_matrix(R)
    T = np.eye(4)
    T[:3, :3] = matrix_from_quat_wxyz(*q)
    T[:3, 3] = t
    js = {"translation": {"x": float(t[0]), "y": float(t[1]), "z": float(t[2])},
          "rotation": {"qw": q[0], "qx": q[1], "qy": q[2], "qz": q[3]}}
    return T, js


def inv(T: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def apply(T: np.ndarray, p) -> np.ndarray:
    return T[:3, :3] @ np.asarray(p, dtype=np.float64) + T[:3, 3]


def K_of(name: str) -> np.ndarray:
    fx, fy, cx, cy = CAMERAS[name][:4]
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def pixel_to_camera(name: str, u: float, v: float, z: float) -> np.ndarray:
    fx, fy, cx, cy = CAMERAS[name][:4]
    return np.array([(u - cx) / fx * z, (v - cy) / fy * z, z])


def ego_pose(t_s: float) -> np.ndarray:
    """World <- vehicle at time t_s after T0: constant speed along a gentle left turn."""
    yaw = YAW_RATE_DPS * t_s
    T = np.eye(4)
    T[:3, :3] = rot_z(yaw)
    # straight-line approximation is fine: any smooth, known motion will do
    T[:3, 3] = [SPEED_MPS * t_s, 0.02 * SPEED_MPS * t_s, 0.0]
    return T


def iso(t_us: int) -> str:
    sec, us = divmod(t_us, 1_000_000)
    return dt.datetime.fromtimestamp(sec, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{us:06d}Z"


def sha1(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------ the dataset
@dataclasses.dataclass
class DDADFixture:
    base: Path
    root: Path  # the dataset root (holds ddad.json)
    mask_dir: Path
    T_vehicle_cam: dict  # name -> 4x4 (optical -> vehicle)
    T_vehicle_lidar: np.ndarray
    images: dict  # (scene, frame, camera) -> uint8 RGB
    lidar_vehicle: dict  # (scene, frame) -> [N,3] points in the vehicle frame at lidar time
    cam_stamps: dict  # (scene, frame, camera) -> s
    lidar_stamps: dict  # (scene, frame) -> s
    ego_at_lidar: dict  # (scene, frame) -> 4x4 world <- vehicle
    scene_json: dict  # scene -> path


def _intrinsics_json(K: np.ndarray | None) -> dict:
    fields = dict.fromkeys(["fx", "fy", "cx", "cy", "skew", "fov", "k1", "k2", "k3", "k4", "k5", "k6", "p1", "p2",
                            "s1", "s2", "s3", "s4", "taux", "tauy", "alpha", "beta", "w", "xi"], 0.0)
    fields.update(fisheye=0, equirectangular=0)
    if K is not None:
        fields.update(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2])
    return fields


def scaled_K(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K of an image resized by (sx, sy), pixel centres at integers (the fixture's own maths)."""
    K = np.array(K, dtype=np.float64)
    K[0, 0], K[1, 1] = K[0, 0] * sx, K[1, 1] * sy
    K[0, 2], K[1, 2] = sx * (K[0, 2] + 0.5) - 0.5, sy * (K[1, 2] + 0.5) - 0.5
    return K


def smooth_image(rng, height: int, width: int) -> np.ndarray:
    """A random RGB image of the fixture's size, enlarged (smooth: small as PNG or JPEG at native sizes)."""
    img = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    return img if (height, width) == (HEIGHT, WIDTH) else cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)


def write_ddad_fixture(base: str | Path, val_frames: int = 2, train_frames: int = 1,
                       size: tuple[int, int] | None = None) -> DDADFixture:
    """size: (width, height) of the images, default the fixture's 96x64 (the intrinsics scale with it; the 3-D
    points are the same, so the check pixels scale too). DDAD's own is (1936, 1216)."""
    width, height = size or (WIDTH, HEIGHT)
    sx, sy = width / WIDTH, height / HEIGHT
    base = Path(base)
    root = base / "raw_data"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)

    T_vc, ext_json = {}, {}
    for name, (_, _, _, _, xyz, yaw, pitch, _) in CAMERAS.items():
        T_vc[name], ext_json[name] = make_pose(rot_z(yaw) @ rot_y(pitch) @ OPTICAL_IN_BODY, xyz)
    l_xyz, l_yaw, l_pitch, l_roll = LIDAR_MOUNT
    T_vs, lidar_ext = make_pose(rot_z(l_yaw) @ rot_y(l_pitch) @ rot_x(l_roll), l_xyz)

    names = list(CAMERAS) + [LIDAR]
    calib = {"names": names,
             "intrinsics": [_intrinsics_json(scaled_K(K_of(n), sx, sy)) for n in CAMERAS] + [_intrinsics_json(None)],
             "extrinsics": [ext_json[n] for n in CAMERAS] + [lidar_ext]}
    calib_key = sha1(calib)

    fx = DDADFixture(base, root, base / "mask", T_vc, T_vs, {}, {}, {}, {}, {}, {})
    splits = {}
    frame_offset = 0
    for split_id, scene, frames in (("0", SCENE_TRAIN, train_frames), ("1", SCENE_VAL, val_frames)):
        sdir = root / scene
        (sdir / "calibration").mkdir(parents=True, exist_ok=True)
        (sdir / "calibration" / f"{calib_key}.json").write_text(json.dumps(calib, indent=2))
        data, samples = [], []
        for k in range(frames):
            t_l_us = T0_US + (frame_offset + k) * FRAME_DT_US
            t_l = (t_l_us - T0_US) * 1e-6
            pose_ws = ego_pose(t_l) @ T_vs
            keys = []
            points_world = []
            for name, _ in CAMERAS.items():
                delay = CAMERAS[name][7]
                t_c_us = t_l_us + int(round(delay * 1e6))
                pose_wc = ego_pose((t_c_us - T0_US) * 1e-6) @ T_vc[name]
                for cam, u, v, z in CHECKS + [OCCLUDED, BODY_POINT, BEHIND_POINT]:
                    if cam == name:
                        points_world.append(apply(pose_wc, pixel_to_camera(cam, u, v, z)))
                img = smooth_image(rng, height, width)
                rel = f"rgb/{name}/{t_c_us}.png"
                (sdir / rel).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(sdir / rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                fx.images[(scene, k, name)] = img
                fx.cam_stamps[(scene, k, name)] = t_c_us * 1e-6
                _, pose_json = make_pose(pose_wc[:3, :3], pose_wc[:3, 3])
                ident = {"log": "fixture-log", "name": name, "timestamp": iso(t_c_us), "index": str(k)}
                key = sha1(ident)
                data.append({"id": ident, "key": key, "next_key": "", "prev_key": "",
                             "datum": {"image": {"filename": rel, "height": height, "width": width, "channels": 3,
                                                 "annotations": {}, "metadata": {}, "pose": pose_json}}})
                keys.append(key)
            pts_sensor = np.array([apply(inv(pose_ws), p) for p in points_world])
            intensity = rng.uniform(0, 1, size=(len(pts_sensor), 1))
            rel = f"point_cloud/{LIDAR}/{t_l_us}.npz"
            (sdir / rel).parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(sdir / rel, data=np.hstack([pts_sensor, intensity]).astype(np.float64))
            fx.lidar_vehicle[(scene, k)] = np.array([apply(T_vs, p) for p in pts_sensor])
            fx.lidar_stamps[(scene, k)] = t_l_us * 1e-6
            fx.ego_at_lidar[(scene, k)] = ego_pose(t_l)
            _, pose_json = make_pose(pose_ws[:3, :3], pose_ws[:3, 3])
            ident = {"log": "fixture-log", "name": LIDAR, "timestamp": iso(t_l_us), "index": str(k)}
            key = sha1(ident)
            data.append({"id": ident, "key": key, "next_key": "", "prev_key": "",
                         "datum": {"point_cloud": {"filename": rel, "point_format": ["X", "Y", "Z", "INTENSITY"],
                                                   "point_fields": [], "annotations": {}, "metadata": {},
                                                   "pose": pose_json}}})
            keys.append(key)
            samples.append({"id": {"log": "fixture-log", "name": "", "timestamp": iso(t_l_us), "index": str(k)},
                            "datum_keys": keys, "calibration_key": calib_key, "metadata": {}})
        frame_offset += frames
        scene_obj = {"name": scene, "description": "fixture", "log": "fixture-log", "samples": samples,
                     "data": data, "metadata": {}, "ontologies": {}, "creation_date": iso(T0_US)}
        path = sdir / f"scene_{sha1(scene_obj)}.json"
        path.write_text(json.dumps(scene_obj, indent=2))
        fx.scene_json[scene] = path
        splits[split_id] = {"filenames": [f"{scene}/{path.name}"]}
        for name in CAMERAS:  # SurroundDepth mask layout
            mask = np.zeros((height, width), np.uint8)
            mask[int(round(BODY_ROWS_FROM * sy)):] = 255
            mpath = fx.mask_dir / name / scene / "mask.png"
            mpath.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mpath), mask)

    dataset = {"metadata": {"name": "DDAD", "version": "fixture", "creation_date": "2020-01-01", "creator": "tests",
                            "description": "two-frame DDAD fixture", "origin": "PUBLIC",
                            "available_annotation_types": [], "frame_per_second": 10.0},
               "scene_splits": splits}
    (root / "ddad.json").write_text(json.dumps(dataset, indent=2))
    return fx
