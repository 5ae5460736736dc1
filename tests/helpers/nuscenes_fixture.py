"""A tiny nuScenes database in the real v1.0-mini layout, built from a known geometry.

    <root>/v1.0-mini/{category,attribute,visibility,instance,sensor,calibrated_sensor,ego_pose,
                      log,scene,sample,sample_data,sample_annotation,map}.json
    <root>/maps/<token>.png
    <root>/samples/CAM_*/<name>.jpg, <root>/samples/LIDAR_TOP/<name>.pcd.bin (float32 x,y,z,i,ring)

Scenes use real mini split names: scene-0103 (mini_val, day, 2 samples), scene-0916 (mini_val,
night, 1 sample), scene-0061 (mini_train, day, 1 sample).

The ego drives at `SPEED_MPS` while turning; each camera fires `DELAY_S[cam]` after the lidar and
has its own ego_pose record, so lidar and camera ego poses differ. Each check point is designed
in a camera (pixel, z-depth at the camera's time), moved to the global frame with that camera's
ego pose and then into the lidar frame with the lidar's ego pose and calibration. The reader must
bring it back to the designed pixel and depth. `naive_pixel` gives where it would land if the
ego motion between lidar and camera were ignored.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np

from tests.helpers.ddad_fixture import (
    OPTICAL_IN_BODY,
    apply,
    inv,
    matrix_from_quat_wxyz,
    quat_wxyz_from_matrix,
    rot_x,
    rot_y,
    rot_z,
    scaled_K,
)

VERSION = "v1.0-mini"
HEIGHT, WIDTH = 64, 96
LIDAR = "LIDAR_TOP"
T0_US = 1_532_402_927_647_951
SAMPLE_DT_US = 500_000  # keyframes at 2 Hz
SPEED_MPS = 15.0
YAW_RATE_DPS = 10.0
GLOBAL_ORIGIN = (411.3, 1180.9, 0.2)
GLOBAL_HEADING_DEG = 30.0

# channel: (fx, fy, cx, cy, xyz [m], yaw [deg], pitch [deg], delay after the lidar [s])
CAMERAS = {
    "CAM_FRONT": (80.0, 80.0, 48.6, 31.8, (1.70, 0.02, 1.51), -0.3, 0.3, 0.010),
    "CAM_FRONT_RIGHT": (79.6, 79.6, 47.8, 32.4, (1.55, -0.49, 1.50), -55.8, 0.5, 0.050),
    "CAM_BACK_RIGHT": (79.4, 79.4, 47.5, 32.0, (1.04, -0.48, 1.59), -110.4, 0.4, 0.034),
    "CAM_BACK": (51.0, 51.0, 49.0, 31.0, (0.05, -0.01, 1.57), 180.0, 0.2, 0.026),
    "CAM_BACK_LEFT": (79.2, 79.2, 48.1, 31.5, (1.05, 0.48, 1.56), 109.5, 0.3, 0.042),
    "CAM_FRONT_LEFT": (80.3, 80.3, 48.9, 31.2, (1.52, 0.49, 1.51), 55.4, 0.4, 0.018),
}
LIDAR_MOUNT = ((0.94, 0.0, 1.84), -90.0, 0.3, 0.2)  # xyz, yaw, pitch, roll: LIDAR_TOP's x points right
CHANNEL_ORDER = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT"]
CHECKS = [("CAM_FRONT", 40, 30, 12.0), ("CAM_FRONT_RIGHT", 30, 40, 6.0), ("CAM_BACK_LEFT", 60, 20, 9.0),
          ("CAM_BACK", 50, 35, 7.0)]
OCCLUDED = ("CAM_BACK", 50, 35, 20.0)  # behind the 7 m check on the same pixel
SCENES = [("scene-0061", "Day, parked cars, peds, intersection", 1),
          ("scene-0103", "Day, wait at intersection, peds", 2),
          ("scene-0916", "Night, rain, big street, parked cars", 1)]


def token(*parts) -> str:
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def K_of(name: str) -> np.ndarray:
    fx, fy, cx, cy = CAMERAS[name][:4]
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def pixel_to_camera(name: str, u: float, v: float, z: float) -> np.ndarray:
    fx, fy, cx, cy = CAMERAS[name][:4]
    return np.array([(u - cx) / fx * z, (v - cy) / fy * z, z])


def _quantised(R: np.ndarray, t) -> tuple[np.ndarray, list, list]:
    """(4x4 truth rebuilt from the written quaternion, rotation [w,x,y,z], translation)."""
    q = quat_wxyz_from_matrix(R)
    T = np.eye(4)
    T[:3, :3] = matrix_from_quat_wxyz(*q)
    T[:3, 3] = t
    return T, list(q), [float(x) for x in t]


def ego_pose(t_s: float) -> np.ndarray:
    """Global <- ego at t_s after T0."""
    heading = GLOBAL_HEADING_DEG + YAW_RATE_DPS * t_s
    d = SPEED_MPS * t_s
    a = math.radians(GLOBAL_HEADING_DEG)
    T = np.eye(4)
    T[:3, :3] = rot_z(heading)
    T[:3, 3] = [GLOBAL_ORIGIN[0] + d * math.cos(a), GLOBAL_ORIGIN[1] + d * math.sin(a), GLOBAL_ORIGIN[2]]
    return _quantised(T[:3, :3], T[:3, 3])[0]


def mounts() -> tuple[dict, np.ndarray]:
    cams = {n: _quantised(rot_z(c[5]) @ rot_y(c[6]) @ OPTICAL_IN_BODY, c[4])[0] for n, c in CAMERAS.items()}
    xyz, yaw, pitch, roll = LIDAR_MOUNT
    return cams, _quantised(rot_z(yaw) @ rot_y(pitch) @ rot_x(roll), xyz)[0]


def naive_pixel(name: str, u: float, v: float, z: float, t_lidar: float = 0.0) -> tuple[float, float]:
    """Where a check point would land if lidar and camera shared one ego pose (no ego motion);
    t_lidar: the sample's lidar time after T0 [s]."""
    cams, T_el = mounts()
    delay = CAMERAS[name][7]
    X_global = apply(ego_pose(t_lidar + delay) @ cams[name], pixel_to_camera(name, u, v, z))
    X_lidar = apply(inv(ego_pose(t_lidar) @ T_el), X_global)
    X_cam = apply(inv(cams[name]) @ T_el, X_lidar)
    fx, fy, cx, cy = CAMERAS[name][:4]
    return fx * X_cam[0] / X_cam[2] + cx, fy * X_cam[1] / X_cam[2] + cy


@dataclasses.dataclass
class NuScenesFixture:
    root: Path
    T_ego_cam: dict
    T_ego_lidar: np.ndarray
    images: dict  # (scene, k, channel) -> decoded uint8 RGB
    cam_stamps: dict  # (scene, k, channel) -> s
    lidar_stamps: dict  # (scene, k) -> s
    ego_at_lidar: dict  # (scene, k) -> 4x4
    ego_at_cam: dict  # (scene, k, channel) -> 4x4
    lidar_ego: dict  # (scene, k) -> [N,3] points in the ego frame at lidar time (float32 file precision)


def write_nuscenes_fixture(root: str | Path, size: tuple[int, int] | None = None) -> NuScenesFixture:
    """size: (width, height) of the images, default the fixture's 96x64 (the intrinsics scale with it; the 3-D
    points are the same). nuScenes' own is (1600, 900)."""
    width, height = size or (WIDTH, HEIGHT)
    sx, sy = width / WIDTH, height / HEIGHT
    root = Path(root)
    tables = root / VERSION
    tables.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    T_ec, T_el = mounts()
    fx = NuScenesFixture(root, T_ec, T_el, {}, {}, {}, {}, {}, {})
    channels = CHANNEL_ORDER + [LIDAR]
    sensor = [{"token": token("sensor", ch), "channel": ch, "modality": "lidar" if ch == LIDAR else "camera"}
              for ch in channels]
    calibrated = []
    for ch in channels:
        T = T_el if ch == LIDAR else T_ec[ch]
        q = quat_wxyz_from_matrix(T[:3, :3])
        calibrated.append({"token": token("cs", ch), "sensor_token": token("sensor", ch),
                           "translation": [float(x) for x in T[:3, 3]], "rotation": list(q),
                           "camera_intrinsic": [] if ch == LIDAR else scaled_K(K_of(ch), sx, sy).tolist()})
    logs, scenes, samples, sample_data, ego_poses = [], [], [], [], []
    clock = 0
    for scene_name, description, n in SCENES:
        log_token = token("log", scene_name)
        logs.append({"token": log_token, "logfile": f"n015-2018-07-24-11-22-45+0800-{scene_name}", "vehicle": "n015",
                     "date_captured": "2018-07-24", "location": "singapore-onenorth"})
        s_tokens = [token("sample", scene_name, k) for k in range(n)]
        prev_sd = {}
        for k in range(n):
            t_l_us = T0_US + clock * SAMPLE_DT_US
            t_l = (t_l_us - T0_US) * 1e-6
            clock += 1
            samples.append({"token": s_tokens[k], "timestamp": t_l_us, "prev": s_tokens[k - 1] if k else "",
                            "next": s_tokens[k + 1] if k + 1 < n else "", "scene_token": token("scene", scene_name)})
            E_l = ego_pose(t_l)
            fx.ego_at_lidar[(scene_name, k)] = E_l
            fx.lidar_stamps[(scene_name, k)] = t_l_us * 1e-6
            points_global = []
            for ch in channels:
                delay = 0.0 if ch == LIDAR else CAMERAS[ch][7]
                t_us = t_l_us + int(round(delay * 1e6))
                E = ego_pose((t_us - T0_US) * 1e-6)
                ep_token = token("ego", scene_name, k, ch)
                ego_poses.append({"token": ep_token, "timestamp": t_us,
                                  "rotation": list(quat_wxyz_from_matrix(E[:3, :3])),
                                  "translation": [float(x) for x in E[:3, 3]]})
                name = f"n015-2018-07-24-11-22-45+0800__{ch}__{t_us}"
                if ch == LIDAR:
                    filename = f"samples/{ch}/{name}.pcd.bin"
                else:
                    filename = f"samples/{ch}/{name}.jpg"
                    fx.ego_at_cam[(scene_name, k, ch)] = E
                    fx.cam_stamps[(scene_name, k, ch)] = t_us * 1e-6
                    for cam, u, v, z in CHECKS + [OCCLUDED]:
                        if cam == ch:
                            points_global.append(apply(E @ T_ec[ch], pixel_to_camera(cam, u, v, z)))
                    img = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
                    img = cv2.GaussianBlur(img, (5, 5), 1.0)  # JPEG-friendly
                    if (height, width) != (HEIGHT, WIDTH):
                        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
                    (root / filename).parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(root / filename), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, 95])
                    fx.images[(scene_name, k, ch)] = cv2.cvtColor(cv2.imread(str(root / filename)), cv2.COLOR_BGR2RGB)
                sd_token = token("sd", scene_name, k, ch)
                sample_data.append({"token": sd_token, "sample_token": s_tokens[k], "ego_pose_token": ep_token,
                                    "calibrated_sensor_token": token("cs", ch), "timestamp": t_us,
                                    "fileformat": "pcd" if ch == LIDAR else "jpg", "is_key_frame": True,
                                    "height": 0 if ch == LIDAR else height, "width": 0 if ch == LIDAR else width,
                                    "filename": filename, "prev": prev_sd.get(ch, ""), "next": ""})
                if ch in prev_sd:
                    next(r for r in sample_data if r["token"] == prev_sd[ch])["next"] = sd_token
                prev_sd[ch] = sd_token
            pts_lidar = np.array([apply(inv(E_l @ T_el), p) for p in points_global])
            scan = np.zeros((len(pts_lidar), 5), np.float32)
            scan[:, :3] = pts_lidar
            scan[:, 3] = rng.uniform(0, 100, len(pts_lidar))
            scan[:, 4] = np.arange(len(pts_lidar)) % 32
            lidar_file = root / f"samples/{LIDAR}/n015-2018-07-24-11-22-45+0800__{LIDAR}__{t_l_us}.pcd.bin"
            lidar_file.parent.mkdir(parents=True, exist_ok=True)
            scan.tofile(lidar_file)
            fx.lidar_ego[(scene_name, k)] = np.array([apply(T_el, p) for p in scan[:, :3].astype(np.float64)])
        scenes.append({"token": token("scene", scene_name), "log_token": log_token, "nbr_samples": n,
                       "first_sample_token": s_tokens[0], "last_sample_token": s_tokens[-1], "name": scene_name,
                       "description": description})
    map_token = token("map", "singapore-onenorth")
    (root / "maps").mkdir(exist_ok=True)
    cv2.imwrite(str(root / "maps" / f"{map_token}.png"), np.zeros((4, 4), np.uint8))
    maps = [{"category": "semantic_prior", "token": map_token, "filename": f"maps/{map_token}.png",
             "log_tokens": [lg["token"] for lg in logs]}]
    for name, rows in (("category", []), ("attribute", []), ("visibility", []), ("instance", []),
                       ("sample_annotation", []), ("sensor", sensor), ("calibrated_sensor", calibrated),
                       ("ego_pose", ego_poses), ("log", logs), ("scene", scenes), ("sample", samples),
                       ("sample_data", sample_data), ("map", maps)):
        (tables / f"{name}.json").write_text(json.dumps(rows, indent=0))
    return fx
