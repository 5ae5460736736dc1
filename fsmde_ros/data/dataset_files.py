"""What the dataset readers (DDAD, nuScenes) share: reading camera files, naming a bad one,
and building a CameraRig from a dataset's calibration with the preset's topics and frames."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from fsmde_ros.errors import FsmdeError, MissingFileError
from fsmde_ros.geometry.rig import Camera, CameraRig


class CorruptFileError(FsmdeError, ValueError):
    """A data file (image, point cloud) exists but cannot be decoded; `path` is the file, which the
    message names. Dataset readers raise it from `__getitem__`, and `write_bag` skips such sets."""

    def __init__(self, path: str | Path, what: str, detail: str = ""):
        self.path = Path(path)
        super().__init__(f"corrupt {what} file {self.path}" + (f": {detail}" if detail else ""))


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as uint8 [H,W,3] RGB; FileNotFoundError when it is missing, CorruptFileError
    when it exists but does not decode (garbage or truncated bytes)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"image not found: {path}")
    raw = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    if img is None:
        raise CorruptFileError(path, "image", "not a decodable PNG/JPEG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


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
