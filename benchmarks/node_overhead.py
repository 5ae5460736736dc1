"""Sets/s and latency through the real node over DDS against the bare backend, in one run.

The node runs the exported student in its own process while this process publishes six camera
topics as fast as the node takes them: closed loop, a new set goes out whenever fewer than
`--in-flight` sets are unanswered, so the node always has the next set waiting and no set is
wasted. It counts what comes out; latency is publish-to-receive of the depth of the last camera
of each set. Windows of node traffic alternate with windows of the bare backend (same model, in
this process, no ROS) while the node idles, so slow drifts of a shared machine hit both alike.
Target: node >= 0.8x bare.

    .venv/bin/python benchmarks/node_overhead.py [--rig ddad --height 192 --width 320 --seconds 20]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from fsmde_ros.paths import use_fastdds_profile  # noqa: E402

use_fastdds_profile()
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", "91")


def export_student(path: Path, rig: str, height: int, width: int) -> None:
    subprocess.run([sys.executable, "-m", "fsmde_ros", "export", "--out", str(path), "--rig", rig,
                    "--height", str(height), "--width", str(width)], check=True, cwd=REPO, capture_output=True)


class BareBackend:
    """The same model through the same backend factory, timed in windows."""

    def __init__(self, model: Path, images: np.ndarray, focal: np.ndarray):
        from fsmde_ros.runtime import create_backend

        self.backend = create_backend("auto", model)
        self.images, self.focal = images, focal
        self.sets, self.seconds = 0, 0.0
        for _ in range(3):
            self.backend.infer(images, focal)

    def window(self, seconds: float) -> None:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.backend.infer(self.images, self.focal)
            self.sets += 1
        self.seconds += time.perf_counter() - start


def node_vs_bare(model: Path, rig_name: str, frame: dict, in_flight: int, seconds: float, windows: int,
                 bare: BareBackend, node_params: list[str] | None = None) -> dict:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from fsmde_ros.ros import codec as ros_msgs

    BUILD = ros_msgs.MessageBuilder.rclpy()
    from fsmde_ros.geometry.rig import load_rig

    rig = load_rig(rig_name)
    node_proc = subprocess.Popen([sys.executable, "-m", "fsmde_ros.ros.node", "--ros-args", "-p", f"rig:={rig_name}",
                                  "-p", f"model:={model}", "-p", "publish_rig_tf:=false",
                                  *[a for p in node_params or [] for a in ("-p", p.replace("=", ":=", 1))]], cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    rclpy.init()
    node = rclpy.create_node("node_overhead_bench")
    pubs = [node.create_publisher(Image, c.image_topic, qos_profile_sensor_data) for c in rig.cameras]
    infos = [node.create_publisher(CameraInfo, c.info_topic, qos_profile_sensor_data) for c in rig.cameras]
    sent: dict[float, float] = {}
    last = rig.names[-1]

    def on_depth(msg):
        t = ros_msgs.header_sec(msg.header)
        if t in sent:
            answered[t] = time.monotonic() - sent[t]

    node.create_subscription(Image, f"/surround_depth/{last}/depth", on_depth,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    from diagnostic_msgs.msg import DiagnosticArray

    diagnostics = {}

    def on_diag(msg):
        for status in msg.status:
            if status.name.endswith("pipeline"):
                diagnostics.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    deadline = time.monotonic() + 60
    while min(p.get_subscription_count() for p in pubs) == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    msgs = [BUILD.rgb_image(frame["images"][i], Header(frame_id=c.frame_id)) for i, c in enumerate(rig.cameras)]
    def traffic(seconds: float, counted: bool) -> None:
        """Closed-loop node traffic; answers for sets sent in this window count when `counted`."""
        end = time.monotonic() + seconds
        last_send = 0.0
        window = set()
        while time.monotonic() < end:
            unanswered = sum(1 for t in window if t not in answered)
            # a set the node dropped is never answered: after 1 s without an answer, send anyway
            if unanswered < in_flight or time.monotonic() - last_send > 1.0:
                now_ros = node.get_clock().now().to_msg()
                t = now_ros.sec + now_ros.nanosec * 1e-9
                sent[t] = last_send = time.monotonic()
                window.add(t)
                for i, c in enumerate(rig.cameras):
                    msgs[i].header.stamp = now_ros
                    infos[i].publish(BUILD.camera_info(frame["K"][i], msgs[i].width, msgs[i].height,
                                                               msgs[i].header))
                    pubs[i].publish(msgs[i])
            rclpy.spin_once(node, timeout_sec=0.05)  # returns as soon as an answer arrives; no busy loop
        drain = time.monotonic() + 1.0  # let the node finish what it has before the bare window
        while time.monotonic() < drain and any(t not in answered for t in window):
            rclpy.spin_once(node, timeout_sec=0.05)
        if counted:
            counted_sets.extend(t for t in window if t in answered)
            node_seconds.append(seconds)

    answered: dict[float, float] = {}
    counted_sets: list[float] = []
    node_seconds: list[float] = []
    traffic(5.0, counted=False)  # warm-up
    window_s = seconds / windows
    for _ in range(windows):
        traffic(window_s, counted=True)
        bare.window(window_s)
    node_proc.terminate()
    node_proc.wait(timeout=10)
    node.destroy_node()
    rclpy.shutdown()
    lat = [answered[t] for t in counted_sets]
    return {"sets_per_s": len(counted_sets) / sum(node_seconds), "latency_mean_ms": 1e3 * statistics.mean(lat),
            "latency_p99_ms": 1e3 * float(np.percentile(lat, 99)),
            "node_stages_ms": {k.replace(" mean [ms]", ""): v for k, v in diagnostics.items() if k.endswith("_ms mean [ms]")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rig", default="ddad")
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds of each of node and bare")
    ap.add_argument("--in-flight", type=int, default=2, help="unanswered sets allowed (2 keeps the node busy)")
    ap.add_argument("--windows", type=int, default=4, help="alternating node / bare windows")
    ap.add_argument("--node-param", nargs="+", default=[], metavar="NAME=VALUE",
                    help="extra node parameters, e.g. cloud_overlap=all")
    args = ap.parse_args()
    from fsmde_ros.data.synthetic import SyntheticSurround

    frame = SyntheticSurround(args.rig, height=args.height, width=args.width, frames=1)[0]
    focal = frame["K"][:, 0, 0].astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "student.onnx"
        export_student(model, args.rig, args.height, args.width)
        bare_backend = BareBackend(model, frame["images"], focal)
        result = node_vs_bare(model, args.rig, frame, args.in_flight, args.seconds, args.windows, bare_backend,
                              args.node_param)
        bare, name = bare_backend.sets / bare_backend.seconds, bare_backend.backend.name
    print(f"# {args.rig} rig, 6 x {args.height}x{args.width}, {name}, untrained fsmde_mnv3l student"
          + (f"; node parameters {' '.join(args.node_param)}" if args.node_param else ""))
    print("| path | sets/s | latency mean [ms] | latency p99 [ms] |")
    print("|---|---:|---:|---:|")
    print(f"| bare backend (same process, no ROS) | {bare:.2f} | {1e3 / bare:.1f} | |")
    print(f"| node over DDS (closed loop, {args.in_flight} sets in flight) | {result['sets_per_s']:.2f} | "
          f"{result['latency_mean_ms']:.1f} | {result['latency_p99_ms']:.1f} |")
    print(f"node / bare = {result['sets_per_s'] / bare:.2f}")
    print("node stages (mean, from /diagnostics):", ", ".join(f"{k} {v} ms" for k, v in result["node_stages_ms"].items()))


if __name__ == "__main__":
    main()
