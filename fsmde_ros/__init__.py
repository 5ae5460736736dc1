"""fsmde_ros: real-time full-surround monocular metric depth for ROS 2.

Layers, each a folder, each importing only those before it (docs/architecture.md):
geometry -> data -> model -> distill / export -> runtime -> service -> ros -> app.
Everything below `ros/` is ROS-free and imports and tests without rclpy.
"""
__version__ = "0.1.0"
