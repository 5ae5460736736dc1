"""The per-set service shared by the node and `fsmde process`, ROS-free.

Parameters -> rig, backend, pipeline and synchroniser; camera sets in, depth, clouds and
health out (`SurroundDepthService`). No ROS message and no rclpy here: the ros layer decodes.
"""
