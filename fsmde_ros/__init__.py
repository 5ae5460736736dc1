"""fsmde_ros: real-time full-surround monocular metric depth for ROS 2.

The core (rigs, geometry, synthetic world, metrics, model, runtime) is ROS-free;
only `fsmde_ros.ros.node` imports rclpy.
"""
__version__ = "0.1.0"
