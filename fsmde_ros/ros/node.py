"""The `surround_depth` ROS 2 node: topics, parameters and threads around SurroundDepthService.

Six camera topics -> SurroundSynchronizer -> newest complete set -> one worker thread ->
SurroundDepthPipeline (one batched inference) -> per-camera depth / depth_std / camera_info,
one fused cloud in base_link, and /diagnostics at 1 Hz. Callbacks only validate and queue; a
bad input is logged once per camera and kind, counted, and dropped, never raised.
"""
from __future__ import annotations

import copy
import queue
import sys
import threading
import time

import rclpy
import rclpy.executors
import rclpy.time
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions, QoSPolicyKind
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from fsmde_ros.errors import FsmdeError
from fsmde_ros.ros import codec
from fsmde_ros.ros.codec import MessageBuilder
from fsmde_ros.ros.outputs import DIAGNOSTICS_TOPIC, OutputTopics, OutputWriter
from fsmde_ros.service.params import (
    NODE_NAME,
    NODE_PARAMS,
    PARAMS_BY_NAME,
    closest_parameter,
)
from fsmde_ros.service.surround_service import SurroundDepthService

SYNC_POLL_HZ = 10.0  # how often silent cameras are checked (and partial sets emitted)
ROS_OWN_PARAMETERS = {"use_sim_time", "start_type_description_service"}  # declared by rclpy itself


def _descriptor(spec) -> ParameterDescriptor:
    live = " [read-only: fixed at start]" if spec.read_only else " [settable at run time: ros2 param set]"
    desc = ParameterDescriptor(description=spec.description + (f" ({spec.constraint_text()})" if spec.choices else "")
                               + live, read_only=spec.read_only)
    if isinstance(spec.default, float) and spec.min is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max), step=0.0)]
    elif isinstance(spec.default, int) and not isinstance(spec.default, bool) and spec.min is not None:
        desc.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=1)]
    return desc


class SurroundDepthNode(Node):
    """Real-time full-surround metric depth: the wiring of SurroundDepthService to topics (docs/architecture.md)."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        log = self.get_logger()
        values = self._checked_overrides(log)
        raw = {s.name: self.declare_parameter(s.name, values.get(s.name, s.default), _descriptor(s),
                                              ignore_override=True).value for s in NODE_PARAMS}
        self.service = SurroundDepthService.from_params(raw, codec, warn=log.warning, info=log.info,
                                                        clock=time.monotonic, mount_lookup=self._tf_lookup())
        self.health = self.service.health
        self.health.start(time.monotonic())
        self.p, self.rig, self.backend = self.service.p, self.service.rig, self.service.backend
        for reason in getattr(self.backend, "skipped", []):
            log.info(f"backend auto skipped {reason}")
        log.info(f"backend {self.backend.name} ({self.backend.precision}), model {self.service.model}, "
                 f"input {self.backend.width}x{self.backend.height} x {self.backend.views} views")
        self.build = MessageBuilder.rclpy()
        self.outputs = OutputWriter(self.build, OutputTopics.of(self.rig, root="~"), self.rig.base_frame,
                                    self.backend.width, self.backend.height)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._sets: queue.Queue = queue.Queue(maxsize=1)
        self._make_io()
        self._running = True
        self._worker = threading.Thread(target=self._work, name="surround_depth_worker", daemon=True)
        self._worker.start()
        # on the steady clock, not the node's: under use_sim_time, /clock stops with the bag, and /diagnostics
        # and the camera timeouts (arrival time, time.monotonic) must go on
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(1.0 / SYNC_POLL_HZ, self._poll_sync, clock=steady)
        self.create_timer(1.0, self._publish_diagnostics, clock=steady)
        if self.p["publish_rig_tf"]:
            self._publish_rig_tf()

    # -- set-up -------------------------------------------------------------------------------
    def _tf_lookup(self):
        """The camera mounts from the vehicle's TF (base_frame <- camera frame), or None without tf2_ros (the
        wheels install: the rig YAML's mounts are used, and the service says so once)."""
        try:
            from tf2_ros import Buffer, TransformException, TransformListener
        except ImportError:
            return None
        self._tf_buffer = Buffer()
        self._tf_listener = TransformListener(self._tf_buffer, self)

        def lookup(base: str, frame: str):
            try:
                return codec.transform_matrix(self._tf_buffer.lookup_transform(base, frame, rclpy.time.Time()).transform)
            except TransformException:
                return None
        return lookup

    def _on_set_parameters(self, params) -> SetParametersResult:
        """`ros2 param set` on a run-time parameter: validated by the table (a bad value refused with the reason, the
        old value kept), applied from the next set. rclpy itself refuses the read-only ones."""
        changes = {}
        for param in params:
            spec = PARAMS_BY_NAME.get(param.name)
            if spec is None or spec.read_only:
                continue
            try:
                changes[param.name] = spec.validate(param.value)
            except FsmdeError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if changes:
            try:
                self.service.apply_runtime_params(changes)
            except FsmdeError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            self.get_logger().info("parameters set: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
        return SetParametersResult(successful=True)

    def _checked_overrides(self, log) -> dict:
        """The `-p name:=value` / params-file values, checked against the parameter table before rclpy sees
        them: a bad value is a ConfigError naming parameter, value and range (exit 2, not rclpy's
        traceback); an integer for a double is taken as that double; an unknown name is warned about."""
        values = {}
        for name, param in self._parameter_overrides.items():
            if name in PARAMS_BY_NAME:
                values[name] = PARAMS_BY_NAME[name].validate(param.value)
            elif name not in ROS_OWN_PARAMETERS and not name.startswith("qos_overrides."):
                near = closest_parameter(name)
                log.warning(f"unknown parameter '{name}' is ignored" + (f"; did you mean '{near}'?" if near else
                            f"; the parameters are {', '.join(PARAMS_BY_NAME)}"))
        return values

    def _make_io(self) -> None:
        p = self.p
        reliability = ReliabilityPolicy.RELIABLE if p["qos_reliability"] == "reliable" else ReliabilityPolicy.BEST_EFFORT
        sensor_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p["queue_size"], reliability=reliability)
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        # `-p qos_overrides./topic.subscription.reliability:=reliable` (history, depth, reliability, durability) per
        # topic, as ROS 2 users set them; rclpy declares those parameters (read-only) and applies them to the profile
        # it is given, in place: each entity gets its own copy, or one topic's override would reach them all
        kinds = (QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH, QoSPolicyKind.RELIABILITY, QoSPolicyKind.DURABILITY)
        overridable = {"qos_overriding_options": QoSOverridingOptions(policy_kinds=kinds)}
        # every output exists; the publish_* switches (live) gate them
        self.pubs = {topic: self.create_publisher(codec.rclpy_class(msgtype), topic, copy.copy(out_qos), **overridable)
                     for topic, msgtype in self.outputs.topics.all().items()}
        self.pub_points = self.pubs[self.outputs.topics.points]
        for i, cam in enumerate(self.rig.cameras):
            if p["compressed"]:
                self.create_subscription(CompressedImage, cam.image_topic + "/compressed",
                                         lambda m, i=i: self._on_image(i, m), copy.copy(sensor_qos), **overridable)
            else:
                self.create_subscription(Image, cam.image_topic, lambda m, i=i: self._on_image(i, m), copy.copy(sensor_qos),
                                         **overridable)
            self.create_subscription(CameraInfo, cam.info_topic, lambda m, i=i: self._on_info(i, m), copy.copy(sensor_qos),
                                     **overridable)
        self.pub_diag = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)

    def _publish_rig_tf(self) -> None:
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().warning("tf2_msgs is not installed: not publishing the rig on /tf_static "
                                      "(a ROS 2 installation has it; bags from `fsmde bag` carry /tf_static)")
            return
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
        self._tf_pub = self.create_publisher(TFMessage, "/tf_static", qos)
        now = self.get_clock().now().nanoseconds
        self._tf_pub.publish(self.build.tf_message([self.build.transform_stamped(cam.T_base_cam, self.rig.base_frame,
                                                                                 cam.frame_id, now)
                                                    for cam in self.rig.cameras]))

    # -- callbacks (never block, never raise) ---------------------------------------------------
    def _on_image(self, i: int, msg) -> None:
        # callbacks run one at a time (single-threaded executor); only the worker runs sets
        for synced in self.service.on_image(i, codec.header_ns(msg.header), msg, time.monotonic(),
                                            compressed=isinstance(msg, CompressedImage)):
            self._enqueue(synced)

    def _on_info(self, i: int, msg: CameraInfo) -> None:
        self.service.on_camera_info(i, msg)

    def _poll_sync(self) -> None:
        for synced in self.service.poll(time.monotonic()):
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
    def _work(self) -> None:
        while self._running:
            try:
                synced = self._sets.get(timeout=0.2)
            except queue.Empty:
                continue
            try:  # the cloud is compacted only for a listener
                self.service.pipeline.make_cloud = (self.service.p["publish_cloud"]
                                                    and self.pub_points.get_subscription_count() > 0)
                output = self.service.run(synced)
                if output is not None:
                    self._publish(output)
            except Exception as exc:  # noqa: BLE001 - the node survives a failing set, says why, counts it
                self.service.failed(time.monotonic())
                self.get_logger().error(f"surround set at {synced.stamp:.3f} failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=5.0)

    def _publish(self, output) -> None:
        """Serialise and publish only what someone listens to (counted per kind in /diagnostics)."""
        start = time.perf_counter()
        for out in self.outputs.messages(output, self.service.p):  # p read once: `ros2 param set` lands between sets
            publisher = self.pubs[out.topic]
            if publisher.get_subscription_count() > 0:
                publisher.publish(out.build())
                self.health.count(f"published {out.kind}")
        now_ros = self.get_clock().now().nanoseconds * 1e-9
        self.service.published(output, time.monotonic(), (now_ros - output.stamp) * 1e3,
                               (time.perf_counter() - start) * 1e3)

    def _publish_diagnostics(self) -> None:
        self.service.refresh_mounts()  # TF may come late (a static broadcaster started after the node) or change
        statuses = self.service.report(time.monotonic())
        array = self.build.diagnostic_array(self.get_clock().now().nanoseconds, statuses, self.get_name())
        self.pub_diag.publish(array)

    def destroy_node(self) -> None:
        self._running = False
        worker = getattr(self, "_worker", None)  # absent when the constructor failed
        if worker is not None:
            worker.join(timeout=2.0)
        service = getattr(self, "service", None)
        if service is not None:
            service.close()
        super().destroy_node()


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = SurroundDepthNode()
    except FsmdeError as exc:
        print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    except Exception:
        if not rclpy.ok():  # SIGINT / SIGTERM while starting: the context went first; a clean stop, not a bug
            print(f"{NODE_NAME}: stopped while starting", file=sys.stderr)
            return 0
        raise
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
