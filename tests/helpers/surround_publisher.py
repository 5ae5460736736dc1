"""Publish a synthetic surround sequence on a rig's camera topics, in its own process, over DDS.

Used by the node tests: nuScenes-like stamp spreads (cameras fire one after another as the
lidar sweeps), CameraInfo beside each image, and scripted faults (a camera that stops, an image
with an unsupported encoding). With --oracle the images carry the true depth (see oracle_model).

usage: surround_publisher.py --rig nuscenes --height 96 --width 160 --frames 20 [--oracle] ...
"""
import argparse
import sys
import time
from pathlib import Path

import cv2
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fsmde_ros.ros.codec import MessageBuilder  # noqa: E402

BUILD = MessageBuilder.rclpy()
from fsmde_ros.data.synthetic import SyntheticSurround  # noqa: E402
from tests.helpers.oracle_model import encode_depth  # noqa: E402

NUSCENES_OFFSET_S = 0.0083  # consecutive cameras fire ~8 ms apart as the lidar sweeps past


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rig", default="nuscenes")
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--rate", type=float, default=10.0, help="sets per second")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--oracle", action="store_true", help="encode the true depth in the pixels")
    ap.add_argument("--offset", type=float, default=NUSCENES_OFFSET_S, help="stamp offset between cameras [s]")
    ap.add_argument("--stop-camera", type=int, default=-1, help="this camera stops publishing after --stop-after frames")
    ap.add_argument("--stop-after", type=int, default=5)
    ap.add_argument("--bad-camera", type=int, default=-1, help="this camera sends one yuv422 image at frame --bad-at")
    ap.add_argument("--bad-at", type=int, default=3)
    ap.add_argument("--no-info", action="store_true", help="do not publish CameraInfo (the node uses the rig)")
    ap.add_argument("--compressed", action="store_true", help="send PNG CompressedImage on <image_topic>/compressed")
    ap.add_argument("--wait-for", type=int, default=1, help="wait until this many subscribers match each image topic")
    args = ap.parse_args()

    ds = SyntheticSurround(args.rig, seed=args.seed, height=args.height, width=args.width, frames=args.frames)
    frames = [ds[i] for i in range(args.frames)]  # render first, so publishing keeps its rate
    rclpy.init()
    node = rclpy.create_node("surround_publisher")
    cams = ds.rig.cameras
    if args.compressed:
        pub_img = [node.create_publisher(CompressedImage, c.image_topic + "/compressed", qos_profile_sensor_data)
                   for c in cams]
    else:
        pub_img = [node.create_publisher(Image, c.image_topic, qos_profile_sensor_data) for c in cams]
    pub_info = [node.create_publisher(CameraInfo, c.info_topic, qos_profile_sensor_data) for c in cams]
    deadline = time.monotonic() + 30
    while min(p.get_subscription_count() for p in pub_img) < args.wait_for and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)
    period = 1.0 / args.rate
    start = time.monotonic()
    for n, item in enumerate(frames):
        images = encode_depth(item["depth"]) if args.oracle else item["images"]
        for i, cam in enumerate(cams):
            if i == args.stop_camera and n >= args.stop_after:
                continue
            header = Header(frame_id=cam.frame_id)
            t = item["stamp"] + i * args.offset
            header.stamp.sec, header.stamp.nanosec = int(t), int(round((t - int(t)) * 1e9))
            if i == args.bad_camera and n == args.bad_at:
                bad = Image(header=header, height=args.height, width=args.width, encoding="nv21",
                            step=args.width * 2, data=bytes(args.height * args.width * 2))
                pub_img[i].publish(bad)
                continue
            if not args.no_info:
                pub_info[i].publish(BUILD.camera_info(item["K"][i], args.width, args.height, header))
            if args.compressed:  # PNG: lossless, so oracle depth survives
                png = cv2.imencode(".png", cv2.cvtColor(images[i], cv2.COLOR_RGB2BGR))[1]
                pub_img[i].publish(CompressedImage(header=header, format="png", data=png.tobytes()))
            else:
                pub_img[i].publish(BUILD.rgb_image(images[i], header))
        rclpy.spin_once(node, timeout_sec=0.0)
        time.sleep(max(0.0, start + (n + 1) * period - time.monotonic()))
    time.sleep(0.5)
    print(f"published {len(frames)} frames", flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
