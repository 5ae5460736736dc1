"""Record what the surround_depth node publishes (for the demo and offline inspection).

Subscribes, in its own rclpy context, to every output of the node for a rig (depth, depth_std,
camera_info per camera, the cloud, /diagnostics) and to one camera's input topic (to time
input arrival -> output arrival). Keeps the serialized messages, so they can be written to a
rosbag2 with `rosbags`, and decodes depth and clouds lazily. rclpy is imported inside, so this
module imports without ROS.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from fsmde_ros.ros import codec
from fsmde_ros.ros.outputs import DIAGNOSTICS_TOPIC, OutputTopics
from fsmde_ros.service.params import OUTPUT_NAMESPACE


@dataclasses.dataclass
class Recorded:
    topic: str
    type_name: str  # e.g. sensor_msgs/msg/Image
    stamp_ns: int  # header stamp of the message (bag time)
    received: float  # monotonic arrival time [s]
    raw: bytes  # CDR


class OutputRecorder:
    """rclpy subscriber to the node's outputs; spin it with `spin_for`."""

    def __init__(self, rig, namespace: str = OUTPUT_NAMESPACE):
        import rclpy
        import rclpy.executors
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import Image

        self._serialize = serialize_message
        self.rig, self.topics = rig, OutputTopics.of(rig, namespace)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("fsmde_recorder", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.messages: list[Recorded] = []
        self.inputs: dict[int, float] = {}  # stamp_ns of the last camera's image -> arrival [s]
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for topic, msgtype in self.topics.all().items():
            self.node.create_subscription(codec.rclpy_class(msgtype), topic, self._keeper(topic, msgtype), qos)
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC,
                                      self._keeper(DIAGNOSTICS_TOPIC, codec.DIAGNOSTICS), 10)
        self.node.create_subscription(Image, rig.cameras[-1].image_topic, self._on_input, qos_profile_sensor_data)

    def _keeper(self, topic: str, type_name: str):
        def keep(msg) -> None:
            self.messages.append(Recorded(topic, type_name, codec.header_ns(msg.header), time.monotonic(),
                                          self._serialize(msg)))
        return keep

    def _on_input(self, msg) -> None:
        self.inputs[codec.header_ns(msg.header)] = time.monotonic()

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    # -- reading what was recorded -------------------------------------------------------------
    def of(self, topic: str) -> list[Recorded]:
        return [m for m in self.messages if m.topic == topic]

    def latencies_ms(self) -> list[float]:
        """Input arrival of the last camera -> arrival of its depth output, per set, in publish order."""
        out = []
        for m in self.of(self.topics.depth(self.rig.names[-1])):
            if m.stamp_ns in self.inputs:
                out.append((m.received - self.inputs[m.stamp_ns]) * 1e3)
        return out

    def last_status(self, suffix: str) -> dict[str, str]:
        """The key-values of the last /diagnostics status whose name ends with `suffix` ({} if none came)."""
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.serialization import deserialize_message

        for rec in reversed(self.of(DIAGNOSTICS_TOPIC)):
            for status in deserialize_message(rec.raw, DiagnosticArray).status:
                if status.name.endswith(suffix):
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def decode(self, rec: Recorded):
        from rclpy.serialization import deserialize_message

        return deserialize_message(rec.raw, codec.rclpy_class(rec.type_name))

    def write_bag(self, out_dir: str | Path) -> Path:
        """All recorded messages as an MCAP rosbag2 (bag time = header stamps)."""
        from rosbags.rosbag2 import StoragePlugin, Writer

        typestore = codec.typestore()
        out_dir = Path(out_dir)
        with Writer(out_dir, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
            connections = {}
            for rec in sorted(self.messages, key=lambda r: r.stamp_ns):
                if rec.topic not in connections:
                    connections[rec.topic] = writer.add_connection(rec.topic, rec.type_name, typestore=typestore)
                writer.write(connections[rec.topic], rec.stamp_ns, rec.raw)
        return out_dir


def depth_sets(recorder: OutputRecorder) -> dict[int, dict[str, np.ndarray]]:
    """{set stamp of the first camera's image: {camera name: depth [H,W]}} of the recorded depth."""
    sets: dict[int, dict[str, np.ndarray]] = {}
    for cam in recorder.rig.cameras:
        for rec in recorder.of(recorder.topics.depth(cam.name)):
            sets.setdefault(rec.stamp_ns, {})[cam.name] = codec.image_to_depth(recorder.decode(rec)).copy()
    return sets
