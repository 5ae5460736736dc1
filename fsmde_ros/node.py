"""The `surround_depth` ROS 2 node (the only module that imports rclpy).

Foundation build: the node validates its rig and reports it. Synchronisation, batched
inference and the depth/cloud outputs are wired here by the runtime-node work (DESIGN.md §3).
"""
from __future__ import annotations

import sys

import rclpy
import rclpy.executors
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.node import Node

from .rig import RigError, available_rigs, load_rig

NODE_NAME = "surround_depth"


class SurroundDepthNode(Node):
    """Loads the camera rig named by the `rig` parameter."""

    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        rig_name = self.declare_parameter(
            "rig", "ddad",
            ParameterDescriptor(type=ParameterType.PARAMETER_STRING, read_only=True,
                                description=f"camera rig preset ({', '.join(available_rigs())}) or path to a rig YAML"),
        ).value
        self.rig = load_rig(rig_name)
        self.get_logger().info("\n" + self.rig.describe())
        self.get_logger().warning("foundation build: depth inference is not wired into this node yet")


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = SurroundDepthNode()
    except RigError as exc:
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
