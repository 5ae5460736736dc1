"""Conversions between ROS 2 messages and numpy (message packages only, no rclpy).

Images are read zero-copy where the encoding allows (rgb8 is a view of the message buffer) and
depth is written as 32FC1 in metres (REP-118: NaN where invalid). Everything is vectorised.
"""
from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from .geometry import SurroundCloud

# 3-channel encodings we take, and how to get RGB from them; mono8 is replicated to 3 channels.
COLOR_ENCODINGS = {"rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB}
SUPPORTED_ENCODINGS = tuple(COLOR_ENCODINGS) + ("mono8",)
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


class ImageConversionError(ValueError):
    """An image message cannot be turned into RGB; the message says why (encoding, size, buffer)."""


def stamp_to_sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def check_image(msg: Image) -> tuple[str, int, int, int, int]:
    """Cheap validation of an Image (encoding, size, buffer length) -> (encoding, h, w, channels, step)."""
    enc = msg.encoding.lower()
    if enc not in _CHANNELS:
        raise ImageConversionError(f"unsupported encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    h, w, c = int(msg.height), int(msg.width), _CHANNELS[enc]
    if h <= 0 or w <= 0:
        raise ImageConversionError(f"empty image {w}x{h}")
    step = int(msg.step) or w * c
    if step < w * c:
        raise ImageConversionError(f"step {step} is smaller than width*channels = {w * c}")
    if len(msg.data) < step * (h - 1) + w * c:
        raise ImageConversionError(f"truncated buffer: {len(msg.data)} bytes for {w}x{h} {enc} with step {step}")
    return enc, h, w, c, step


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> uint8 [H,W,3] RGB (a view for rgb8)."""
    enc, h, w, c, step = check_image(msg)
    buf = np.frombuffer(msg.data, dtype=np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data.view(np.uint8)
    rows = np.lib.stride_tricks.as_strided(buf, shape=(h, w * c), strides=(step, 1))
    img = rows.reshape(h, w, c)
    if enc == "mono8":
        return np.repeat(img, 3, axis=2)
    code = COLOR_ENCODINGS[enc]
    return img if code is None else cv2.cvtColor(np.ascontiguousarray(img), code)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png) -> uint8 [H,W,3] RGB."""
    buf = np.frombuffer(msg.data, dtype=np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data.view(np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise ImageConversionError(f"cannot decode compressed image (format {msg.format!r}, {buf.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_image(rgb: np.ndarray, header: Header) -> Image:
    """uint8 [H,W,3] RGB -> sensor_msgs/Image rgb8."""
    h, w = rgb.shape[:2]
    return Image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                 data=np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())


def depth_to_image(depth_m: np.ndarray, header: Header) -> Image:
    """float32 [H,W] metres -> sensor_msgs/Image 32FC1 (NaN stays NaN: REP-118 invalid)."""
    h, w = depth_m.shape
    return Image(header=header, height=h, width=w, encoding="32FC1", is_bigendian=0, step=w * 4,
                 data=np.ascontiguousarray(depth_m, dtype=np.float32).tobytes())


def image_to_depth(msg: Image) -> np.ndarray:
    """sensor_msgs/Image 32FC1 -> float32 [H,W] metres."""
    if msg.encoding != "32FC1":
        raise ImageConversionError(f"expected 32FC1 depth, got {msg.encoding!r}")
    buf = np.frombuffer(msg.data, dtype=np.float32) if not isinstance(msg.data, np.ndarray) else msg.data.view(np.float32)
    return buf.reshape(msg.height, msg.step // 4)[:, : msg.width]


def camera_info_K(msg: CameraInfo) -> np.ndarray:
    """Intrinsics [3,3] float64 of a CameraInfo; ValueError when they are not a usable pinhole."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"CameraInfo has unusable intrinsics K={K.ravel().tolist()}")
    return K


def make_camera_info(K: np.ndarray, width: int, height: int, header: Header) -> CameraInfo:
    """A rectified pinhole CameraInfo for K at width x height (no distortion, P = [K | 0])."""
    P = np.zeros((3, 4))
    P[:, :3] = K
    return CameraInfo(header=header, width=int(width), height=int(height), distortion_model="plumb_bob",
                      d=[0.0] * 5, k=np.asarray(K, dtype=np.float64).ravel().tolist(),
                      r=np.eye(3).ravel().tolist(), p=P.ravel().tolist())


CLOUD_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb", "camera"],
                        "formats": [np.float32, np.float32, np.float32, np.float32, np.uint8],
                        "offsets": [0, 4, 8, 12, 16], "itemsize": 20})
CLOUD_FIELDS = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
                PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
                PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
                PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1),
                PointField(name="camera", offset=16, datatype=PointField.UINT8, count=1)]


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """uint8 [M,3] -> float32 [M] with 0x00RRGGBB in its bits (the PCL / RViz convention)."""
    rgb = rgb.astype(np.uint32)
    return ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).view(np.float32)


def cloud_to_msg(cloud: SurroundCloud, header: Header) -> PointCloud2:
    """SurroundCloud -> PointCloud2 (x, y, z float32, rgb packed float32, camera uint8), dense."""
    n = len(cloud)
    points = np.zeros(n, dtype=CLOUD_DTYPE)
    points["x"], points["y"], points["z"] = cloud.xyz[:, 0], cloud.xyz[:, 1], cloud.xyz[:, 2]
    if cloud.rgb is not None:
        points["rgb"] = pack_rgb(cloud.rgb)
    points["camera"] = cloud.camera
    return PointCloud2(header=header, height=1, width=n, fields=CLOUD_FIELDS, is_bigendian=False,
                       point_step=CLOUD_DTYPE.itemsize, row_step=CLOUD_DTYPE.itemsize * n,
                       data=points.tobytes(), is_dense=True)


def msg_to_cloud_array(msg: PointCloud2) -> np.ndarray:
    """PointCloud2 written by cloud_to_msg -> structured array with x, y, z, rgb, camera."""
    buf = np.frombuffer(msg.data, dtype=np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data.view(np.uint8)
    return buf.view(CLOUD_DTYPE)[: msg.width * msg.height]
