"""Publish or count sensor_msgs/Image over DDS in its own process (used by test_dds_transport).

usage: image_link.py pub TOPIC COUNT WIDTH HEIGHT | image_link.py sub TOPIC SECONDS
"""
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image


def publish(topic: str, count: int, width: int, height: int) -> None:
    node = rclpy.create_node("image_link_pub")
    pub = node.create_publisher(Image, topic, qos_profile_sensor_data)
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)  # let discovery settle on both sides
    data = np.random.default_rng(0).integers(0, 255, size=height * width * 3, dtype=np.uint8).tobytes()
    for i in range(count):
        msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=data)
        msg.header.frame_id = f"{i}"
        pub.publish(msg)
        time.sleep(0.1)
    time.sleep(1.0)
    print("published", count, flush=True)


def subscribe(topic: str, seconds: float) -> None:
    node = rclpy.create_node("image_link_sub")
    got = set()
    sizes = set()

    def on_image(msg: Image) -> None:
        got.add(msg.header.frame_id)
        sizes.add(len(msg.data))

    node.create_subscription(Image, topic, on_image, qos_profile_sensor_data)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(f"received {len(got)} sizes {sorted(sizes)}", flush=True)


if __name__ == "__main__":
    rclpy.init()
    if sys.argv[1] == "pub":
        publish(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        subscribe(sys.argv[2], float(sys.argv[3]))
    rclpy.shutdown()
