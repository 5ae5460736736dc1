"""ROS 2 messages as `rosbags` objects: build, serialise and decode them without rclpy.

The rosbag2 side of `fsmde_ros.ros_msgs`: the same encodings and layouts (rgb8 images, 32FC1
depth in metres with NaN = invalid, rectified pinhole CameraInfo, the node's PointCloud2 layout),
but as instances of the `rosbags` typestore classes, so that bags are written and processed on
machines without ROS. Timestamps are integer nanoseconds (`stamp_to_ns`), the bag's log time.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from ..geometry import SurroundCloud
from ..rig import quaternion_from_rotation

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
TF = "tf2_msgs/msg/TFMessage"
DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"
JPEG_FORMAT = "rgb8; jpeg compressed bgr8"  # the image_transport convention for colour JPEG

# The node's cloud layout (ros_msgs.CLOUD_DTYPE, kept equal by a test: ros_msgs needs the ROS wheels).
CLOUD_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb", "camera"],
                        "formats": [np.float32, np.float32, np.float32, np.float32, np.uint8],
                        "offsets": [0, 4, 8, 12, 16], "itemsize": 20})
XYZ_DTYPE = np.dtype({"names": ["x", "y", "z"], "formats": [np.float32] * 3, "offsets": [0, 4, 8], "itemsize": 12})
_FLOAT32, _UINT8 = 7, 2  # sensor_msgs/PointField datatypes


@lru_cache(maxsize=1)
def typestore():
    """The rosbags typestore matching the ROS 2 wheels (Kilted), or the newest this rosbags knows."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(getattr(Stores, "ROS2_KILTED", Stores.LATEST))


def msg_class(name: str):
    """The typestore class of a message type, e.g. msg_class('sensor_msgs/msg/Image')."""
    return typestore().types[name]


def serialize(msg: Any) -> bytes:
    """CDR bytes of a typestore message (what rosbag2 stores and DDS carries)."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def deserialize(raw: bytes, msgtype: str) -> Any:
    return typestore().deserialize_cdr(raw, msgtype)


# -- QoS profiles offered in bag metadata (what `ros2 bag play` republishes with) -------------------
def qos(durability: str = "volatile", reliability: str = "reliable", depth: int = 10):
    """A rosbags Qos (keep-last) for `offered_qos_profiles`."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability[reliability.upper()], QosDurability[durability.upper()],
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


def latched_qos(depth: int = 1):
    """transient_local + reliable: late subscribers (tf listeners) still get /tf_static."""
    return qos("transient_local", "reliable", depth)


# -- time -------------------------------------------------------------------------------------------
def stamp_to_ns(t: float) -> int:
    """Seconds (float) -> integer nanoseconds, rounded to the nearest nanosecond."""
    return int(round(float(t) * 1e9))


def ns_to_sec(ns: int) -> float:
    return ns * 1e-9


def time_msg(ns: int):
    return msg_class("builtin_interfaces/msg/Time")(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def header_ns(header) -> int:
    """A message header's stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def header(ns: int, frame_id: str):
    return msg_class("std_msgs/msg/Header")(stamp=time_msg(ns), frame_id=str(frame_id))


# -- builders ---------------------------------------------------------------------------------------
def rgb_image(rgb: np.ndarray, hdr):
    """uint8 [H,W,3] RGB -> Image rgb8."""
    h, w = rgb.shape[:2]
    data = np.ascontiguousarray(rgb, dtype=np.uint8).reshape(-1)
    return msg_class(IMAGE)(header=hdr, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3, data=data)


def jpeg_image(rgb: np.ndarray, hdr, quality: int = 90):
    """uint8 [H,W,3] RGB -> CompressedImage (JPEG)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {rgb.shape}")
    return msg_class(COMPRESSED)(header=hdr, format=JPEG_FORMAT, data=buf.reshape(-1))


def depth_image(depth_m: np.ndarray, hdr):
    """float32 [H,W] metres -> Image 32FC1 (NaN = invalid, REP-118)."""
    h, w = depth_m.shape
    data = np.ascontiguousarray(depth_m, dtype=np.float32).reshape(-1).view(np.uint8)
    return msg_class(IMAGE)(header=hdr, height=h, width=w, encoding="32FC1", is_bigendian=0, step=w * 4, data=data)


def camera_info(K: np.ndarray, width: int, height: int, hdr):
    """A rectified pinhole CameraInfo for K at width x height (plumb_bob, zero distortion, P = [K | 0])."""
    P = np.zeros((3, 4))
    P[:, :3] = K
    roi = msg_class("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return msg_class(CAMERA_INFO)(
        header=hdr, height=int(height), width=int(width), distortion_model="plumb_bob", d=np.zeros(5),
        k=np.asarray(K, dtype=np.float64).reshape(-1).copy(), r=np.eye(3).reshape(-1), p=P.reshape(-1),
        binning_x=0, binning_y=0, roi=roi)


def transform_stamped(T: np.ndarray, parent: str, child: str, ns: int):
    """T [4,4] (child frame -> parent frame) as geometry_msgs/TransformStamped."""
    x, y, z = (float(v) for v in T[:3, 3])
    qx, qy, qz, qw = (float(v) for v in quaternion_from_rotation(T[:3, :3]))
    tf = msg_class("geometry_msgs/msg/Transform")(
        translation=msg_class("geometry_msgs/msg/Vector3")(x=x, y=y, z=z),
        rotation=msg_class("geometry_msgs/msg/Quaternion")(x=qx, y=qy, z=qz, w=qw))
    return msg_class("geometry_msgs/msg/TransformStamped")(header=header(ns, parent), child_frame_id=child,
                                                           transform=tf)


def tf_message(transforms: list):
    return msg_class(TF)(transforms=list(transforms))


def _fields(dtype: np.dtype) -> list:
    field = msg_class("sensor_msgs/msg/PointField")
    return [field(name=n, offset=int(dtype.fields[n][1]), count=1,
                  datatype=_UINT8 if dtype.fields[n][0] == np.uint8 else _FLOAT32) for n in dtype.names]


def _cloud_msg(points: np.ndarray, hdr):
    n = len(points)
    return msg_class(POINTCLOUD2)(header=hdr, height=1, width=n, fields=_fields(points.dtype), is_bigendian=False,
                                  point_step=points.dtype.itemsize, row_step=points.dtype.itemsize * n,
                                  data=np.frombuffer(points.tobytes(), np.uint8), is_dense=True)


def xyz_cloud(xyz: np.ndarray, hdr):
    """[M,3] points -> PointCloud2 with x, y, z float32 (the lidar)."""
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    points = np.zeros(len(xyz), XYZ_DTYPE)
    points["x"], points["y"], points["z"] = xyz.T
    return _cloud_msg(points, hdr)


def surround_cloud(cloud: SurroundCloud, hdr):
    """SurroundCloud -> PointCloud2 in the node's layout (x, y, z, rgb packed float32, camera uint8)."""
    points = np.zeros(len(cloud), CLOUD_DTYPE)
    points["x"], points["y"], points["z"] = cloud.xyz[:, 0], cloud.xyz[:, 1], cloud.xyz[:, 2]
    if cloud.rgb is not None:
        rgb = cloud.rgb.astype(np.uint32)
        points["rgb"] = ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).view(np.float32)
    points["camera"] = cloud.camera
    return _cloud_msg(points, hdr)


def cloud_array(msg) -> np.ndarray:
    """The points of a PointCloud2 written here, as a structured array (CLOUD_DTYPE or XYZ_DTYPE)."""
    dtype = CLOUD_DTYPE if msg.point_step == CLOUD_DTYPE.itemsize else XYZ_DTYPE
    return np.frombuffer(np.asarray(msg.data, np.uint8).tobytes(), dtype)[: msg.width * msg.height]


def diagnostic_array(ns: int, statuses: list[tuple[str, int, str, dict[str, str]]], hardware_id: str):
    """[(name, level, message, key-values)] -> DiagnosticArray stamped ns."""
    kv, status = msg_class("diagnostic_msgs/msg/KeyValue"), msg_class("diagnostic_msgs/msg/DiagnosticStatus")
    return msg_class(DIAGNOSTICS)(header=header(ns, ""), status=[
        status(level=int(level), name=name, message=message, hardware_id=hardware_id,
               values=[kv(key=str(k), value=str(v)) for k, v in values.items()])
        for name, level, message, values in statuses])


# -- decoders ---------------------------------------------------------------------------------------
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
_TO_RGB = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB}


def image_to_rgb(msg) -> np.ndarray:
    """Image (rgb8, bgr8, rgba8, bgra8, mono8) or CompressedImage (jpeg, png) -> uint8 [H,W,3] RGB."""
    data = np.asarray(msg.data, dtype=np.uint8)
    if msg.__msgtype__ == COMPRESSED:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if bgr is None:
            raise ValueError(f"cannot decode compressed image (format {msg.format!r}, {data.size} bytes)")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    enc = msg.encoding.lower()
    if enc not in _CHANNELS:
        raise ValueError(f"unsupported encoding {msg.encoding!r}; supported: {', '.join(_CHANNELS)}")
    h, w, c = int(msg.height), int(msg.width), _CHANNELS[enc]
    step = int(msg.step) or w * c
    if h <= 0 or w <= 0 or step < w * c or data.size < step * (h - 1) + w * c:
        raise ValueError(f"malformed {enc} image: {w}x{h}, step {step}, {data.size} bytes")
    img = np.lib.stride_tricks.as_strided(data, shape=(h, w, c), strides=(step, c, 1))
    if enc == "mono8":
        return np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img) if enc == "rgb8" else cv2.cvtColor(np.ascontiguousarray(img), _TO_RGB[enc])


def image_to_depth(msg) -> np.ndarray:
    """Image 32FC1 -> float32 [H,W] metres."""
    if msg.encoding != "32FC1":
        raise ValueError(f"expected 32FC1 depth, got {msg.encoding!r}")
    buf = np.asarray(msg.data, np.uint8).view(np.float32)
    return buf.reshape(msg.height, msg.step // 4)[:, : msg.width]


def camera_info_K(msg) -> np.ndarray:
    """Intrinsics [3,3] of a CameraInfo; ValueError when they are not a usable pinhole."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"CameraInfo has unusable intrinsics K={K.ravel().tolist()}")
    return K
