"""The `surround_depth` ROS 2 node: the only module that imports rclpy; wiring only.

Six camera topics -> SurroundSynchronizer -> newest complete set -> one worker thread ->
SurroundDepthPipeline (one batched inference) -> per-camera depth / depth_std / camera_info,
one fused cloud in base_link, and /diagnostics at 1 Hz. Callbacks only validate and queue; a
bad input is logged once per camera and kind, counted, and dropped, never raised.
"""
from __future__ import annotations

import dataclasses
import queue
import sys
import threading
import time
from pathlib import Path

import rclpy
import rclpy.executors
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from . import ros_msgs
from .diagnostics import NodeHealth
from .metrics import cross_view_consistency
from .params import NODE_PARAMS, validate_params
from .paths import share_dir
from .pipeline import SurroundDepthPipeline
from .rig import RigError, load_rig, quaternion_from_rotation, scale_intrinsics
from .runtime import create_backend
from .sync import SurroundSynchronizer

NODE_NAME = "surround_depth"
DEFAULT_MODEL = "models/fsmde_default.onnx"  # relative to the package share directory
CONSISTENCY_PERIOD_S = 2.0  # the cross-view consistency of the last set is refreshed this often
CONSISTENCY_SUBSAMPLE = 2  # ...on every 2nd pixel: a quarter of the cost, the same statistic
SYNC_POLL_HZ = 10.0  # how often silent cameras are checked (and partial sets emitted)


class ConfigurationError(RuntimeError):
    """The node cannot start with its parameters; the message says what to change."""


def _descriptor(spec) -> ParameterDescriptor:
    desc = ParameterDescriptor(description=spec.description + (f" ({spec.constraint_text()})" if spec.choices else ""),
                               read_only=spec.read_only)
    if isinstance(spec.default, float) and spec.min is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max), step=0.0)]
    elif isinstance(spec.default, int) and not isinstance(spec.default, bool) and spec.min is not None:
        desc.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=1)]
    return desc


class SurroundDepthNode(Node):
    """Real-time full-surround metric depth (DESIGN.md §3)."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        raw = {s.name: self.declare_parameter(s.name, s.default, _descriptor(s)).value for s in NODE_PARAMS}
        try:
            p = self.p = validate_params(raw)
            self.rig = load_rig(p["rig"])
        except (ValueError, RigError) as exc:
            raise ConfigurationError(str(exc)) from None
        model = self._resolve_model(p["model"])
        try:
            self.backend = create_backend(p["backend"], model, precision=p["precision"],
                                          engine_cache_dir=str(Path(p["engine_cache_dir"]).expanduser()),
                                          threads=p["threads"])
        except Exception as exc:  # noqa: BLE001 - any backend failure at start is a configuration problem
            raise ConfigurationError(f"cannot start backend {p['backend']!r} with {model}: {exc}") from None
        for reason in getattr(self.backend, "skipped", []):
            self.get_logger().info(f"backend auto skipped {reason}")
        self.get_logger().info(f"backend {self.backend.name} ({self.backend.precision}), model {model}, "
                               f"input {self.backend.width}x{self.backend.height} x {self.backend.views} views")
        self.pipeline = SurroundDepthPipeline(self.backend, self.rig, p["min_depth"], p["max_depth"], p["cloud_stride"],
                                              p["max_depth_std_ratio"], make_cloud=p["publish_cloud"],
                                              cloud_overlap=p["cloud_overlap"])
        self.consistency_rig = self.rig.resized(self.backend.width, self.backend.height).strided(CONSISTENCY_SUBSAMPLE)
        self.sync = SurroundSynchronizer(self.rig.names, p["slop"], p["queue_size"], p["camera_timeout"], p["allow_partial"])
        self.health = NodeHealth(self.rig.names, self.backend.name, self.backend.precision, p["camera_timeout"])
        self._info_K: list[tuple | None] = [None] * len(self.rig)  # (K, width, height) from CameraInfo
        self._warned: set[tuple[str, str]] = set()
        self._sets: queue.Queue = queue.Queue(maxsize=1)
        self._last_result = None
        self._last_consistency = 0.0
        self._make_io()
        self._running = True
        self._worker = threading.Thread(target=self._work, name="surround_depth_worker", daemon=True)
        self._worker.start()
        self.create_timer(1.0 / SYNC_POLL_HZ, self._poll_sync)
        self.create_timer(1.0, self._publish_diagnostics)
        if p["publish_rig_tf"]:
            self._publish_rig_tf()

    # -- set-up -------------------------------------------------------------------------------
    def _resolve_model(self, model: str) -> Path:
        path = Path(model).expanduser() if model else share_dir() / DEFAULT_MODEL
        if not path.is_file():
            hint = ("the bundled default student is missing from this install" if not model
                    else "check the path")
            raise ConfigurationError(f"model {path} not found ({hint}); export one with `fsmde export` and pass "
                                     "model:=/path/to/student.onnx")
        return path

    def _make_io(self) -> None:
        p = self.p
        reliability = ReliabilityPolicy.RELIABLE if p["qos_reliability"] == "reliable" else ReliabilityPolicy.BEST_EFFORT
        sensor_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p["queue_size"], reliability=reliability)
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_depth, self.pub_std, self.pub_info = {}, {}, {}
        for i, cam in enumerate(self.rig.cameras):
            if p["publish_depth"]:
                self.pub_depth[i] = self.create_publisher(Image, f"~/{cam.name}/depth", out_qos)
                self.pub_info[i] = self.create_publisher(CameraInfo, f"~/{cam.name}/camera_info", out_qos)
            if p["publish_std"]:
                self.pub_std[i] = self.create_publisher(Image, f"~/{cam.name}/depth_std", out_qos)
            if p["compressed"]:
                self.create_subscription(CompressedImage, cam.image_topic + "/compressed",
                                         lambda m, i=i: self._on_image(i, m), sensor_qos)
            else:
                self.create_subscription(Image, cam.image_topic, lambda m, i=i: self._on_image(i, m), sensor_qos)
            self.create_subscription(CameraInfo, cam.info_topic, lambda m, i=i: self._on_info(i, m), sensor_qos)
        self.pub_points = self.create_publisher(PointCloud2, "~/points", out_qos) if p["publish_cloud"] else None
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _publish_rig_tf(self) -> None:
        try:
            from geometry_msgs.msg import TransformStamped
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().warning("tf2_msgs is not installed: not publishing the rig on /tf_static "
                                      "(a ROS 2 installation has it; bags from `fsmde bag` carry /tf_static)")
            return
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
        self._tf_pub = self.create_publisher(TFMessage, "/tf_static", qos)
        transforms = []
        for cam in self.rig.cameras:
            t = TransformStamped()
            t.header.stamp = self.get_clock().now().to_msg()
            t.header.frame_id, t.child_frame_id = self.rig.base_frame, cam.frame_id
            x, y, z = cam.T_base_cam[:3, 3]
            t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = float(x), float(y), float(z)
            q = quaternion_from_rotation(cam.T_base_cam[:3, :3])
            (t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
             t.transform.rotation.w) = (float(v) for v in q)
            transforms.append(t)
        self._tf_pub.publish(TFMessage(transforms=transforms))

    # -- callbacks (never block, never raise) ---------------------------------------------------
    def _drop(self, i: int, kind: str, detail: str) -> None:
        name = self.rig.names[i]
        self.health.camera_error(name, kind)
        if (name, kind) not in self._warned:
            self._warned.add((name, kind))
            self.get_logger().warning(f"camera {name}: dropping input ({kind}): {detail} (logged once; counted in /diagnostics)")

    def _on_image(self, i: int, msg) -> None:
        now = time.monotonic()
        self.health.image_received(self.rig.names[i], now)
        if isinstance(msg, Image):
            try:
                ros_msgs.check_image(msg)
            except ros_msgs.ImageConversionError as exc:
                self._drop(i, "bad_image", str(exc))
                return
        for synced in self.sync.add(i, ros_msgs.stamp_to_sec(msg.header.stamp), msg, now):
            self._enqueue(synced)

    def _on_info(self, i: int, msg: CameraInfo) -> None:
        try:
            self._info_K[i] = (ros_msgs.camera_info_K(msg), msg.width, msg.height)
        except ValueError as exc:
            self._drop(i, "bad_camera_info", f"{exc}; using the last good or the rig's intrinsics")

    def _poll_sync(self) -> None:
        now = time.monotonic()
        for synced in self.sync.poll(now):
            self._enqueue(synced)

    def _enqueue(self, synced) -> None:
        """Keep only the newest complete set for the worker; an older waiting one is dropped and counted."""
        try:
            self._sets.put_nowait(synced)
        except queue.Full:
            try:
                self._sets.get_nowait()
                self.health.count("sets_dropped")
            except queue.Empty:
                pass
            self._sets.put_nowait(synced)

    # -- worker ---------------------------------------------------------------------------------
    def _intrinsics(self, i: int, width: int, height: int):
        info = self._info_K[i]
        if info is None:
            return None  # the pipeline scales the rig preset
        K, w, h = info
        return K if (w, h) == (width, height) or not w else scale_intrinsics(K, width / w, height / h)

    def _work(self) -> None:
        while self._running:
            try:
                synced = self._sets.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._process(synced)
            except Exception as exc:  # noqa: BLE001 - the node survives a failing set, says why, counts it
                self.health.count("failed_sets")
                self.get_logger().error(f"surround set at {synced.stamp:.3f} failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=5.0)

    def _process(self, synced) -> None:
        start = time.perf_counter()
        images, Ks, headers = [], [], []
        for i, msg in enumerate(synced.messages):
            rgb = None
            if msg is not None:
                try:
                    rgb = (ros_msgs.image_to_rgb(msg) if isinstance(msg, Image) else ros_msgs.compressed_to_rgb(msg))
                except ros_msgs.ImageConversionError as exc:
                    self._drop(i, "bad_image", str(exc))
            images.append(rgb)
            Ks.append(self._intrinsics(i, rgb.shape[1], rgb.shape[0]) if rgb is not None else None)
            headers.append(msg.header if rgb is not None else None)
        if not any(img is not None for img in images):
            return
        result = self.pipeline.run(images, Ks)
        result.timings_ms["decode_ms"] = (time.perf_counter() - start) * 1e3 - sum(result.timings_ms.values())
        for i, (w, h) in result.resized_from.items():
            if (self.rig.names[i], f"resize {w}x{h}") not in self._warned:
                self._warned.add((self.rig.names[i], f"resize {w}x{h}"))
                self.get_logger().info(f"camera {self.rig.names[i]}: images arrive at {w}x{h}, resizing to the "
                                       f"model's {self.backend.width}x{self.backend.height} (logged once per size)")
        self._publish(result, headers, synced.stamp)

    def _publish(self, result, headers, stamp: float) -> None:
        start = time.perf_counter()
        for i, header in enumerate(headers):
            if header is None:
                continue
            if i in self.pub_depth:
                self.pub_depth[i].publish(ros_msgs.depth_to_image(result.depth[i], header))
                self.pub_info[i].publish(ros_msgs.make_camera_info(result.K[i], self.backend.width,
                                                                   self.backend.height, header))
            if i in self.pub_std:
                self.pub_std[i].publish(ros_msgs.depth_to_image(result.depth_std[i], header))
        if self.pub_points is not None and result.cloud is not None:
            header = Header(frame_id=self.rig.base_frame)
            header.stamp = _latest_stamp(headers)
            self.pub_points.publish(ros_msgs.cloud_to_msg(result.cloud, header))
        now_ros = self.get_clock().now().nanoseconds * 1e-9
        timings = {**result.timings_ms, "publish_ms": (time.perf_counter() - start) * 1e3}
        self.health.set_published(time.monotonic(), (now_ros - stamp) * 1e3, timings)
        if time.monotonic() - self._last_consistency > CONSISTENCY_PERIOD_S and result.present.all():
            self._last_consistency = time.monotonic()
            k = CONSISTENCY_SUBSAMPLE
            c = cross_view_consistency(result.depth[:, ::k, ::k], self.consistency_rig, max_depth=self.p["max_depth"])
            self.health.consistency = {"median abs [m]": c["abs_m"], "median rel": c["rel"]}

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        self.health.silent = [s.name for s in self.sync.states(now) if s.silent]
        self.health.sync_counters = {f"sync {k}": v for k, v in dataclasses.asdict(self.sync.stats).items()}
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        for name, level, message, values in self.health.report(now):
            array.status.append(DiagnosticStatus(level=bytes([level]), name=name, message=message,
                                                 hardware_id=self.get_name(),
                                                 values=[KeyValue(key=k, value=v) for k, v in values.items()]))
        self.pub_diag.publish(array)

    def destroy_node(self) -> None:
        self._running = False
        worker = getattr(self, "_worker", None)  # absent when the constructor failed
        if worker is not None:
            worker.join(timeout=2.0)
        super().destroy_node()


def _latest_stamp(headers):
    present = [h for h in headers if h is not None]
    return max(present, key=lambda h: (h.stamp.sec, h.stamp.nanosec)).stamp


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = SurroundDepthNode()
    except ConfigurationError as exc:
        print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
