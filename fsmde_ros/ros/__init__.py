"""Everything that knows a ROS message, rclpy or rosbags: the node, the one codec, bags, play,
offline processing and the output recorder. Nothing below this layer imports ROS.
"""
