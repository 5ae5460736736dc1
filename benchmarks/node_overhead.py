"""Sets/s and latency through the real node over DDS against the bare backend, in one run.

The node runs the exported student in its own process while this process publishes six camera
topics as fast as the node takes them: closed loop, a new set goes out whenever fewer than
`--in-flight` sets are unanswered, so the node always has the next set waiting and no set is
wasted. It counts what comes out; latency is publish-to-receive of the depth of the last camera
of each set. Windows of node traffic alternate with windows of the bare backend (same model, in
this process, no ROS) while the node idles, so slow drifts of a shared machine hit both alike.
Target: node >= 0.85x bare.

With `--input-size WxH` the cameras publish images rendered at that size (DDAD's 1936x1216, say), not
upsampled, and the bare backend runs on the same native images: through the deployment graph composed
for that size when the node uses one (`--deployment-graph always`, or auto on a GPU backend), else the
host's resize then the student. `host ms per set` is the node's per-set work on the critical path outside the
backend's own compute (waiting for frames still being prepared, staging, compaction / cloud, publishing), from
/diagnostics; the per-image work done as each frame arrives (decode, the host path's resize) is printed apart.

    .venv/bin/python benchmarks/node_overhead.py [--rig ddad --height 192 --width 320 --seconds 20]
    .venv/bin/python benchmarks/node_overhead.py --input-size 1936x1216 --height 384 --width 640 --deployment-graph always
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
    """The same model through the same backend factory, timed in windows: the student on model-size images, or
    on native images the deployment graph composed for their size (composed) or the host resize + the student."""

    def __init__(self, model: Path, images: np.ndarray, K: np.ndarray, rig: str, deployment_graph: str = "auto",
                 backend: str = "auto", precision: str = "fp16"):
        from fsmde_ros.geometry.resize import resize_on_host
        from fsmde_ros.geometry.rig import load_rig
        from fsmde_ros.runtime import create_backend
        from fsmde_ros.service.pipeline import SurroundDepthPipeline
        from fsmde_ros.service.surround_service import use_deployment_graph

        self.backend = create_backend(backend, model, precision=precision)
        self.sets, self.seconds = 0, 0.0
        h_in, w_in = images.shape[1:3]
        native = (h_in, w_in) != (self.backend.height, self.backend.width)
        self.composed = native and use_deployment_graph(deployment_graph, self.backend)
        if self.composed:
            pipeline = SurroundDepthPipeline(self.backend, load_rig(rig), composed=True, info=lambda s: None)
            deployment = pipeline.deployment(w_in, h_in)
            feeds = pipeline.composed_feeds(deployment, list(images), list(K))[0]
            self.step = lambda: deployment.runner(feeds)
        else:
            focal = K[:, 0, 0].astype(np.float32) * self.backend.width / w_in

            def step():
                small = np.stack([resize_on_host(img, self.backend.width, self.backend.height)[0] for img in images]) \
                    if native else images
                self.backend.infer(small, focal)
            self.step = step
        self.what = ("deployment graph on native images" if self.composed else
                     "host resize + student" if native else "student")
        for _ in range(3):
            self.step()

    def window(self, seconds: float) -> None:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.step()
            self.sets += 1
        self.seconds += time.perf_counter() - start


def start_node(model: Path, rig_name: str, node_params: list[str] | None):
    """The node in its own process, its output into a temporary file: (process, log file)."""
    node_log = tempfile.TemporaryFile("w+")
    node_proc = subprocess.Popen([sys.executable, "-m", "fsmde_ros.ros.node", "--ros-args", "-p", f"rig:={rig_name}",
                                  "-p", f"model:={model}", "-p", "publish_rig_tf:=false",
                                  *[a for p in node_params or [] for a in ("-p", p.replace("=", ":=", 1))]], cwd=REPO,
                                 stdout=node_log, stderr=subprocess.STDOUT)
    return node_proc, node_log


def node_result(latencies: list[float], seconds: float, diagnostics: dict, node_log,
                camera_publish_s: list[float]) -> dict:
    """sets/s, latency mean and p99 [ms], the node's stage means [ms], the sets it dropped (warm-up included) and
    what publishing a set cost this process [ms, median] (SystemExit with the node's log if it answered none)."""
    if not latencies:
        node_log.seek(0)
        raise SystemExit("the node answered no set; its log:\n" + node_log.read()[-3000:])
    return {"sets_per_s": len(latencies) / seconds, "latency_mean_ms": 1e3 * statistics.mean(latencies),
            "latency_p99_ms": 1e3 * float(np.percentile(latencies, 99)),
            "node_stages_ms": {k.replace(" mean [ms]", ""): v for k, v in diagnostics.items() if k.endswith("_ms mean [ms]")},
            "sets_dropped": diagnostics.get("sets_dropped", "0"),  # a counter is listed once it is not zero
            "camera_publish_ms": 1e3 * statistics.median(camera_publish_s)}


def node_vs_bare(model: Path, rig_name: str, frame: dict, in_flight: int, seconds: float, windows: int,
                 bare: BareBackend, node_params: list[str] | None = None) -> dict:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from fsmde_ros.geometry.rig import load_rig
    from fsmde_ros.ros import codec
    from fsmde_ros.ros.outputs import DIAGNOSTICS_TOPIC, OutputTopics

    BUILD = codec.MessageBuilder.rclpy()
    rig = load_rig(rig_name)
    node_proc, node_log = start_node(model, rig_name, node_params)
    rclpy.init()
    node = rclpy.create_node("node_overhead_bench")
    pubs = [node.create_publisher(Image, c.image_topic, qos_profile_sensor_data) for c in rig.cameras]
    infos = [node.create_publisher(CameraInfo, c.info_topic, qos_profile_sensor_data) for c in rig.cameras]
    sent: dict[int, float] = {}  # set stamp [ns] -> when it was sent [s]

    def on_depth(msg):
        t = codec.header_ns(msg.header)
        if t in sent:
            answered[t] = time.monotonic() - sent[t]

    node.create_subscription(Image, OutputTopics.of(rig).depth(rig.names[-1]), on_depth,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    from diagnostic_msgs.msg import DiagnosticArray

    diagnostics = {}

    def on_diag(msg):
        for status in msg.status:
            if status.name.endswith("pipeline"):
                diagnostics.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, on_diag, 10)
    deadline = time.monotonic() + 60
    while min(p.get_subscription_count() for p in pubs) == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    msgs = [BUILD.rgb_image(frame["images"][i], Header(frame_id=c.frame_id)) for i, c in enumerate(rig.cameras)]
    info_msgs = [BUILD.camera_info(frame["K"][i], m.width, m.height, Header(frame_id=m.header.frame_id))
                 for i, m in enumerate(msgs)]  # built once: only their stamps change
    def unanswered(window: set[int]) -> int:
        """Sets still to come back: the node answers in stamp order and keeps only the newest waiting set, so a set
        older than an answered one was dropped (counted in /diagnostics) and is not waited for."""
        newest = max((t for t in window if t in answered), default=-1)
        return sum(1 for t in window if t > newest)

    def traffic(seconds: float, counted: bool) -> None:
        """Closed-loop node traffic; answers for sets sent in this window count when `counted`."""
        begin = time.monotonic()
        end = begin + seconds
        last_send = 0.0
        window = set()
        while time.monotonic() < end:
            # a set the node dropped is never answered: after 1 s without an answer, send anyway
            if unanswered(window) < in_flight or time.monotonic() - last_send > 1.0:
                t = node.get_clock().now().nanoseconds
                stamp = BUILD.time(t)
                sent[t] = last_send = time.monotonic()
                window.add(t)
                publish_start = time.perf_counter()
                for i, c in enumerate(rig.cameras):
                    msgs[i].header.stamp = info_msgs[i].header.stamp = stamp
                    infos[i].publish(info_msgs[i])
                    pubs[i].publish(msgs[i])
                if counted:
                    camera_publish_s.append(time.perf_counter() - publish_start)
            rclpy.spin_once(node, timeout_sec=0.05)  # returns as soon as an answer arrives; no busy loop
        drain = time.monotonic() + 1.0  # let the node finish what it has before the bare window
        while time.monotonic() < drain and unanswered(window):
            rclpy.spin_once(node, timeout_sec=0.05)
        if counted:
            counted_sets.extend(t for t in window if t in answered)
            node_seconds.append(time.monotonic() - begin)  # the drain too: the sets answered in it are counted

    answered: dict[int, float] = {}
    counted_sets: list[int] = []
    node_seconds: list[float] = []
    camera_publish_s: list[float] = []
    traffic(5.0, counted=False)  # warm-up
    window_s = seconds / windows
    for _ in range(windows):
        traffic(window_s, counted=True)
        bare.window(window_s)
    node_proc.terminate()
    node_proc.wait(timeout=10)
    node.destroy_node()
    rclpy.shutdown()
    return node_result([answered[t] for t in counted_sets], sum(node_seconds), diagnostics, node_log,
                       camera_publish_s)


def quantize(model: Path, out: Path, rig: str, sets: int = 4) -> None:
    """The INT8 twin of `model` as a user makes it (`fsmde quantize`), calibrated on synthetic sets at its size."""
    subprocess.run([sys.executable, "-m", "fsmde_ros", "quantize", str(model), "--calibration",
                    f"synthetic:{rig}?seed=0&frames={sets}", "--sets", str(sets), "--out", str(out)],
                   check=True, cwd=REPO, capture_output=True)


def report(label: str, bare_backend: "BareBackend", result: dict, in_flight: int) -> None:
    """One model's rows: bare and node sets/s, node / bare, the host ms per set on the critical path, the stages."""
    bare = bare_backend.sets / bare_backend.seconds
    print(f"| {label}: bare ({bare_backend.what}; same process, no ROS) | {bare:.2f} | {1e3 / bare:.1f} | |")
    print(f"| {label}: node over DDS (closed loop, {in_flight} sets in flight) | {result['sets_per_s']:.2f} | "
          f"{result['latency_mean_ms']:.1f} | {result['latency_p99_ms']:.1f} |")
    stages = result["node_stages_ms"]
    off_path = ("infer_ms", "arrival_prep_ms")  # the backend's compute; the frames' own work as they arrived
    host = sum(float(v) for k, v in stages.items() if k not in off_path and v not in ("", "n/a"))
    print(f"{label}: node / bare = {result['sets_per_s'] / bare:.2f}")
    print(f"{label}: host ms per set = {host:.1f}")
    if "arrival_prep_ms" in stages:
        print(f"{label}: per-image work as frames arrive = {float(stages['arrival_prep_ms']):.1f} ms per set (off the "
              "critical path but for what the set waited for: wait_ms)")
    print(f"{label}: sets the node dropped (newest kept; warm-up included) = {result['sets_dropped']}; publishing a set "
          f"of six images cost this process {result['camera_publish_ms']:.1f} ms (median; the same cores)")
    print(f"{label}: node stages (mean, from /diagnostics):", ", ".join(f"{k} {v} ms" for k, v in stages.items()))


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
    ap.add_argument("--input-size", default=None, metavar="WxH",
                    help="size of the published camera images (rendered at it); default the model's")
    ap.add_argument("--deployment-graph", default="auto", choices=("auto", "always", "never"),
                    help="the node's deployment_graph parameter (the bare run follows it)")
    ap.add_argument("--backend", default="auto", help="the node's backend (the bare run uses the same)")
    ap.add_argument("--precision", default="fp16", choices=("fp16", "fp32"), help="TensorRT precision")
    ap.add_argument("--int8", action="store_true",
                    help="also the student's INT8 twin (fsmde quantize; precision int8), node and bare, in the same run")
    args = ap.parse_args()
    from fsmde_ros.data.synthetic import SyntheticSurround

    w_in, h_in = (int(v) for v in args.input_size.lower().split("x")) if args.input_size else (args.width, args.height)
    frame = SyntheticSurround(args.rig, height=h_in, width=w_in, frames=1)[0]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "student.onnx"
        export_student(model, args.rig, args.height, args.width)
        models = [(args.precision, model)]
        if args.int8:
            quantize(model, Path(tmp) / "student_int8.onnx", args.rig)
            models.append(("int8", Path(tmp) / "student_int8.onnx"))
        for precision, path in models:
            params = [f"deployment_graph={args.deployment_graph}", f"backend={args.backend}", f"precision={precision}",
                      *args.node_param]
            bare_backend = BareBackend(path, frame["images"], frame["K"], args.rig, args.deployment_graph, args.backend,
                                       precision)
            result = node_vs_bare(path, args.rig, frame, args.in_flight, args.seconds, args.windows, bare_backend, params)
            runs.append((precision, params, bare_backend, result))
    print(f"# {args.rig} rig, 6 x {w_in}x{h_in} images -> model {args.height}x{args.width}, "
          f"{runs[0][2].backend.name}, untrained fsmde_mnv3l student; node parameters {' '.join(runs[0][1])}")
    print("| path | sets/s | latency mean [ms] | latency p99 [ms] |")
    print("|---|---:|---:|---:|")
    for precision, _, bare_backend, result in runs:
        report("INT8 twin" if precision == "int8" else "student", bare_backend, result, args.in_flight)
    if len(runs) == 2:
        (_, _, b32, r32), (_, _, b8, r8) = runs
        print(f"INT8 / FP32: bare {(b8.sets / b8.seconds) / (b32.sets / b32.seconds):.2f}, "
              f"node {r8['sets_per_s'] / r32['sets_per_s']:.2f} (sets/s, one run)")


if __name__ == "__main__":
    main()
