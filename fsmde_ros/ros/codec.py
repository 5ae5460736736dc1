"""The one codec between numpy and ROS 2 messages, for rclpy (the node) and rosbags (bags, offline).

Decoding reads the message fields that rclpy and rosbags messages share, so the same function
takes either: images zero-copy where the encoding allows (rgb8 is a view of the buffer), depth
as 32FC1 in metres (REP-118: NaN = invalid), intrinsics from CameraInfo, clouds in the node's
layout. Building goes through a `MessageBuilder` of one side: `MessageBuilder.rclpy()` (the
installed message packages) or `MessageBuilder.bags()` (the rosbags typestore, no ROS needed);
both build the same messages with the same names. Every failure is a `MessageError`.
Timestamps are integer nanoseconds (`stamp_ns`), a bag's log time.
"""
from __future__ import annotations

import array
import importlib
from functools import lru_cache
from typing import Any, Callable

import cv2
import numpy as np

from fsmde_ros.errors import MessageError
from fsmde_ros.geometry.cloud import SurroundCloud
from fsmde_ros.geometry.rig import quaternion_from_rotation
from fsmde_ros.service.calibration import Calibration

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
TF = "tf2_msgs/msg/TFMessage"
DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"
JPEG_FORMAT = "rgb8; jpeg compressed bgr8"  # the image_transport convention for colour JPEG

# The encodings camera drivers publish, as (channels of the pixel array, bytes per channel, OpenCV conversion to
# RGB or None). mono is replicated to 3 channels; 16-bit images keep their top 8 bits (ROS: full 16-bit scale).
# ROS names a Bayer pattern by its first row (rggb: R G / G B); OpenCV by the second row's 2nd-3rd pixels, so
# bayer_rggb8 is OpenCV's BayerBG (as cv_bridge maps them). ROS 'yuv422' is UYVY, 'yuv422_yuy2' is YUYV.
ENCODINGS = {
    "rgb8": (3, 1, None), "bgr8": (3, 1, cv2.COLOR_BGR2RGB), "rgba8": (4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, 1, cv2.COLOR_BGRA2RGB), "mono8": (1, 1, cv2.COLOR_GRAY2RGB),
    "bayer_rggb8": (1, 1, cv2.COLOR_BayerBG2RGB), "bayer_bggr8": (1, 1, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": (1, 1, cv2.COLOR_BayerGR2RGB), "bayer_grbg8": (1, 1, cv2.COLOR_BayerGB2RGB),
    "yuv422": (2, 1, cv2.COLOR_YUV2RGB_UYVY), "uyvy": (2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, 1, cv2.COLOR_YUV2RGB_YUY2), "yuyv": (2, 1, cv2.COLOR_YUV2RGB_YUY2),
    "rgb16": (3, 2, None), "bgr16": (3, 2, cv2.COLOR_BGR2RGB), "rgba16": (4, 2, cv2.COLOR_RGBA2RGB),
    "bgra16": (4, 2, cv2.COLOR_BGRA2RGB), "mono16": (1, 2, cv2.COLOR_GRAY2RGB),
}
SUPPORTED_ENCODINGS = tuple(ENCODINGS)

# The node's cloud: x, y, z float32 [m] in base_link, rgb packed in a float32 (PCL / RViz), camera index.
CLOUD_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb", "camera"],
                        "formats": [np.float32, np.float32, np.float32, np.float32, np.uint8],
                        "offsets": [0, 4, 8, 12, 16], "itemsize": 20})
XYZ_DTYPE = np.dtype({"names": ["x", "y", "z"], "formats": [np.float32] * 3, "offsets": [0, 4, 8], "itemsize": 12})
POINTFIELD_FLOAT32, POINTFIELD_UINT8 = 7, 2  # sensor_msgs/PointField datatypes


# -- time -------------------------------------------------------------------------------------------
def stamp_ns(t: float) -> int:
    """Seconds (float) -> integer nanoseconds, rounded to the nearest nanosecond."""
    return int(round(float(t) * 1e9))


def header_ns(header: Any) -> int:
    """A message header's stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


# -- decoding (rclpy or rosbags messages) -------------------------------------------------------------
def _bytes(data: Any) -> np.ndarray:
    """A message's uint8[] field as a uint8 numpy view (bytes, array.array or ndarray)."""
    return data.view(np.uint8).reshape(-1) if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)


def is_compressed(msg: Any) -> bool:
    """True for a CompressedImage (it has `format`, an Image has `encoding`)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def check_image(msg: Any) -> tuple[str, int, int, int, int]:
    """Cheap validation of an Image (encoding, size, buffer length) -> (encoding, h, w, bytes per pixel, step)."""
    enc = str(msg.encoding).lower()
    if enc not in ENCODINGS:
        raise MessageError(f"unsupported encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    h, w = int(msg.height), int(msg.width)
    channels, depth, _ = ENCODINGS[enc]
    c = channels * depth
    if h <= 0 or w <= 0:
        raise MessageError(f"empty image {w}x{h}")
    if channels == 2 and w % 2:
        raise MessageError(f"{enc} packs pixel pairs: the width must be even, got {w}")
    step = int(msg.step) or w * c
    if step < w * c:
        raise MessageError(f"step {step} is smaller than width*channels = {w * c}")
    if len(msg.data) < step * (h - 1) + w * c:
        raise MessageError(f"truncated buffer: {len(msg.data)} bytes for {w}x{h} {enc} with step {step}")
    return enc, h, w, c, step


def image_to_rgb(msg: Any) -> np.ndarray:
    """Image (any of ENCODINGS) or CompressedImage (jpeg, png) -> uint8 [H,W,3] RGB, in OpenCV's kernels.

    rgb8 with a packed step is a view of the message's buffer (no copy)."""
    buf = _bytes(msg.data)
    if is_compressed(msg):
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        if bgr is None:
            raise MessageError(f"cannot decode compressed image (format {msg.format!r}, {buf.size} bytes)")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    enc, h, w, c, step = check_image(msg)
    channels, depth, code = ENCODINGS[enc]
    img = np.lib.stride_tricks.as_strided(buf, shape=(h, w * c), strides=(step, 1))
    if depth == 2:  # 16 bit: the top 8 bits, in the message's byte order
        big = bool(getattr(msg, "is_bigendian", 0))
        img = (np.ascontiguousarray(img).view(">u2" if big else "<u2") >> 8).astype(np.uint8)
    img = img.reshape(h, w, channels) if channels > 1 else img.reshape(h, w)
    return img if code is None else cv2.cvtColor(np.ascontiguousarray(img), code)


def image_to_depth(msg: Any) -> np.ndarray:
    """Image 32FC1 -> float32 [H,W] metres."""
    if msg.encoding != "32FC1":
        raise MessageError(f"expected 32FC1 depth, got {msg.encoding!r}")
    return _bytes(msg.data).view(np.float32).reshape(msg.height, msg.step // 4)[:, : msg.width]


def camera_info_K(msg: Any) -> np.ndarray:
    """Intrinsics [3,3] float64 of a CameraInfo (whether they are usable is the service's call:
    fsmde_ros.service.surround_service.camera_info_problem); MessageError when K is not 9 numbers."""
    try:
        return np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    except (TypeError, ValueError):
        raise MessageError(f"CameraInfo.k must be 9 numbers, got {len(msg.k)}") from None


def camera_info_calibration(msg: Any, rectified: bool = False) -> Calibration:
    """A CameraInfo as image_geometry reads it (K, D, distortion model, P, size; service/calibration.py);
    rectified: the topic is known to carry rectified images. MessageError when K or P has the wrong length."""
    P = np.asarray(msg.p, dtype=np.float64)
    if P.size not in (0, 12):
        raise MessageError(f"CameraInfo.p must be 12 numbers, got {P.size}")
    return Calibration(K=camera_info_K(msg), width=int(msg.width), height=int(msg.height),
                       D=np.asarray(msg.d, dtype=np.float64), model=str(msg.distortion_model or "plumb_bob"),
                       P=P.reshape(3, 4) if P.size else None, rectified=rectified)


def transform_matrix(transform: Any) -> np.ndarray:
    """A geometry_msgs/Transform (translation, rotation quaternion) as a [4,4] float64 matrix."""
    from fsmde_ros.geometry.rig import rotation_from_quaternion

    t, q = transform.translation, transform.rotation
    T = np.eye(4)
    T[:3, :3] = rotation_from_quaternion([q.x, q.y, q.z, q.w])
    T[:3, 3] = (t.x, t.y, t.z)
    return T


def cloud_array(msg: Any) -> np.ndarray:
    """The points of a PointCloud2 built here, as a structured array (CLOUD_DTYPE or XYZ_DTYPE)."""
    dtype = CLOUD_DTYPE if msg.point_step == CLOUD_DTYPE.itemsize else XYZ_DTYPE
    return _bytes(msg.data).view(dtype)[: msg.width * msg.height]


def cloud_xyz(msg: Any) -> np.ndarray:
    """x, y, z [M,3] float32 of any PointCloud2 whose x, y, z fields are float32 (a lidar driver's, with any other
    fields and padding between them), in the message's frame; non-finite points dropped."""
    fields = {f.name: f for f in msg.fields}
    if not {"x", "y", "z"} <= set(fields) or any(fields[k].datatype != POINTFIELD_FLOAT32 for k in "xyz"):
        raise MessageError(f"PointCloud2 needs float32 x, y, z fields, got {[(f.name, f.datatype) for f in msg.fields]}")
    n, step = int(msg.width) * int(msg.height), int(msg.point_step)
    buf = _bytes(msg.data)
    if buf.size < n * step:
        raise MessageError(f"truncated PointCloud2: {buf.size} bytes for {n} points of {step}")
    dtype = np.dtype({"names": ["x", "y", "z"], "formats": [(">f4" if msg.is_bigendian else "<f4")] * 3,
                      "offsets": [int(fields[k].offset) for k in "xyz"], "itemsize": step})
    pts = buf[: n * step].view(dtype)
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=1).astype(np.float32)
    return xyz[np.isfinite(xyz).all(axis=1)]


def header_stamp_ns_of_cdr(raw: bytes) -> int:
    """The header stamp [ns] of a serialised message whose first field is a std_msgs/Header (Image, CompressedImage,
    CameraInfo, PointCloud2): read from the CDR bytes without deserialising the rest (a bag is indexed by it)."""
    import struct

    order = "<" if raw[1] == 1 else ">"  # the encapsulation: CDR little or big endian
    sec, nanosec = struct.unpack_from(order + "iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """uint8 [M,3] -> float32 [M] with 0x00RRGGBB in its bits (the PCL / RViz convention)."""
    rgb = rgb.astype(np.uint32)
    return ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).view(np.float32)


# -- building ---------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def typestore():
    """The rosbags typestore matching the ROS 2 wheels (Kilted), or the newest this rosbags knows."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(getattr(Stores, "ROS2_KILTED", Stores.LATEST))


def to_cdr(msg: Any) -> bytes:
    """CDR bytes of a rosbags message (what rosbag2 stores and DDS carries)."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def from_cdr(raw: bytes, msgtype: str) -> Any:
    """A rosbags message from its CDR bytes."""
    return typestore().deserialize_cdr(raw, msgtype)


def rclpy_class(msgtype: str) -> type:
    """The installed ROS 2 Python class of 'pkg/msg/Name' (ImportError naming what is missing)."""
    pkg, _, name = msgtype.partition("/msg/")
    if not pkg or not name:
        raise ImportError(f"{msgtype!r} is not a message type name (pkg/msg/Name)")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except ModuleNotFoundError:
        raise ImportError(f"the Python package {pkg!r} is not installed") from None
    except AttributeError:
        raise ImportError(f"{pkg}.msg has no message {name!r}") from None


class MessageBuilder:
    """Builds the package's messages on one side (rclpy or rosbags); see the module doc.

    cls: type name -> class; u8 / f64: how a numpy array goes into a uint8[] / float64[] field;
    byte: how an int goes into a `byte` field (DiagnosticStatus.level)."""

    def __init__(self, cls: Callable[[str], type], u8: Callable[[np.ndarray], Any],
                 f64: Callable[[np.ndarray], Any], byte: Callable[[int], Any]):
        self.cls, self.u8, self.f64, self.byte = lru_cache(maxsize=None)(cls), u8, f64, byte

    @classmethod
    def rclpy(cls) -> "MessageBuilder":
        return cls(rclpy_class, lambda a: array.array("B", a.tobytes()),
                   lambda a: np.asarray(a, np.float64).reshape(-1).tolist(), lambda v: bytes([int(v)]))

    @classmethod
    def bags(cls) -> "MessageBuilder":
        return cls(lambda name: typestore().types[name], lambda a: a.reshape(-1).view(np.uint8),
                   lambda a: np.asarray(a, np.float64).reshape(-1), int)

    def make(self, msgtype: str, **fields) -> Any:
        return self.cls(msgtype)(**fields)

    def time(self, ns: int) -> Any:
        return self.make("builtin_interfaces/msg/Time", sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))

    def header(self, ns: int, frame_id: str) -> Any:
        return self.make("std_msgs/msg/Header", stamp=self.time(ns), frame_id=str(frame_id))

    def rgb_image(self, rgb: np.ndarray, header: Any) -> Any:
        """uint8 [H,W,3] RGB -> Image rgb8."""
        h, w = rgb.shape[:2]
        return self.make(IMAGE, header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                         data=self.u8(np.ascontiguousarray(rgb, dtype=np.uint8)))

    def jpeg_image(self, rgb: np.ndarray, header: Any, quality: int = 90) -> Any:
        """uint8 [H,W,3] RGB -> CompressedImage (JPEG)."""
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise MessageError(f"JPEG encoding failed for an image of shape {rgb.shape}")
        return self.make(COMPRESSED, header=header, format=JPEG_FORMAT, data=self.u8(buf))

    def depth_image(self, depth_m: np.ndarray, header: Any) -> Any:
        """float32 [H,W] metres -> Image 32FC1 (NaN stays NaN: REP-118 invalid)."""
        h, w = depth_m.shape
        return self.make(IMAGE, header=header, height=h, width=w, encoding="32FC1", is_bigendian=0, step=w * 4,
                         data=self.u8(np.ascontiguousarray(depth_m, dtype=np.float32)))

    def camera_info(self, K: np.ndarray, width: int, height: int, header: Any) -> Any:
        """A rectified pinhole CameraInfo for K at width x height (plumb_bob, zero distortion, P = [K | 0])."""
        P = np.zeros((3, 4))
        P[:, :3] = K
        roi = self.make("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0,
                        do_rectify=False)
        return self.make(CAMERA_INFO, header=header, height=int(height), width=int(width),
                         distortion_model="plumb_bob", d=self.f64(np.zeros(5)), k=self.f64(np.asarray(K, np.float64)),
                         r=self.f64(np.eye(3)), p=self.f64(P), binning_x=0, binning_y=0, roi=roi)

    def transform_stamped(self, T: np.ndarray, parent: str, child: str, ns: int) -> Any:
        """T [4,4] (child frame -> parent frame) as geometry_msgs/TransformStamped."""
        x, y, z = (float(v) for v in T[:3, 3])
        qx, qy, qz, qw = (float(v) for v in quaternion_from_rotation(T[:3, :3]))
        tf = self.make("geometry_msgs/msg/Transform",
                       translation=self.make("geometry_msgs/msg/Vector3", x=x, y=y, z=z),
                       rotation=self.make("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw))
        return self.make("geometry_msgs/msg/TransformStamped", header=self.header(ns, parent), child_frame_id=child,
                         transform=tf)

    def tf_message(self, transforms: list) -> Any:
        return self.make(TF, transforms=list(transforms))

    def _cloud(self, points: np.ndarray, header: Any) -> Any:
        n, dtype = len(points), points.dtype
        fields = [self.make("sensor_msgs/msg/PointField", name=name, offset=int(dtype.fields[name][1]), count=1,
                            datatype=POINTFIELD_UINT8 if dtype.fields[name][0] == np.uint8 else POINTFIELD_FLOAT32)
                  for name in dtype.names]
        return self.make(POINTCLOUD2, header=header, height=1, width=n, fields=fields, is_bigendian=False,
                         point_step=dtype.itemsize, row_step=dtype.itemsize * n,
                         data=self.u8(np.frombuffer(points.tobytes(), np.uint8)), is_dense=True)

    def xyz_cloud(self, xyz: np.ndarray, header: Any) -> Any:
        """[M,3] points -> PointCloud2 with x, y, z float32 (the lidar)."""
        xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
        points = np.zeros(len(xyz), XYZ_DTYPE)
        points["x"], points["y"], points["z"] = xyz.T
        return self._cloud(points, header)

    def surround_cloud(self, cloud: SurroundCloud, header: Any) -> Any:
        """SurroundCloud -> PointCloud2 in the node's layout (CLOUD_DTYPE), dense."""
        points = np.zeros(len(cloud), CLOUD_DTYPE)
        points["x"], points["y"], points["z"] = cloud.xyz[:, 0], cloud.xyz[:, 1], cloud.xyz[:, 2]
        if cloud.rgb is not None:
            points["rgb"] = pack_rgb(cloud.rgb)
        points["camera"] = cloud.camera
        return self._cloud(points, header)

    def diagnostic_array(self, ns: int, statuses: list[tuple[str, int, str, dict[str, str]]], hardware_id: str) -> Any:
        """[(name, level, message, key-values)] -> DiagnosticArray stamped ns."""
        return self.make(DIAGNOSTICS, header=self.header(ns, ""), status=[
            self.make("diagnostic_msgs/msg/DiagnosticStatus", level=self.byte(level), name=name, message=message,
                      hardware_id=hardware_id,
                      values=[self.make("diagnostic_msgs/msg/KeyValue", key=str(k), value=str(v))
                              for k, v in values.items()])
            for name, level, message, values in statuses])
