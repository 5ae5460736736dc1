"""The node and `fsmde process` run one per-set service and one output writer: the same bag, bad inputs
included, gives the same message on every output topic (depth, depth_std, camera_info, points) and the
same counters through both (issue 13: they had drifted; a set with no decodable image was skipped
silently by one and counted as failed by the other; issue 24: each built its own messages)."""
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="needs rosbags (make setup installs it)")
from rosbags.rosbag2 import Reader  # noqa: E402

from fsmde_ros.app.demo import stop_process  # noqa: E402
from fsmde_ros.data.surround import open_dataset  # noqa: E402
from fsmde_ros.geometry.rig import load_rig  # noqa: E402
from fsmde_ros.ros import codec  # noqa: E402
from fsmde_ros.ros.bag import BagWriter, write_bag  # noqa: E402
from fsmde_ros.ros.process import process_bag  # noqa: E402
from tests.helpers.oracle_model import encode_depth, write_oracle_model  # noqa: E402
from tests.helpers.ros_env import REPO, next_domain, ros_env, start_node  # noqa: E402

H, W, FRAMES = 48, 80, 5
BAD_ENCODING = (1, 2)  # (set, camera): an image in an encoding the node does not take
TRUNCATED = (3, 4)  # (set, camera): an image whose buffer is shorter than its size says
BAD_INFO = (2, 0)  # (set, camera): a CameraInfo with NaN intrinsics
COUNTERS = ("bad_inputs", "failed_sets", "sets_published")


class OracleImages:
    """The synthetic items with their images replaced by the oracle model's depth encoding."""

    def __init__(self, ds):
        self.rig, self.items = ds.rig, [ds[i] for i in range(len(ds))]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return {**self.items[i], "images": encode_depth(self.items[i]["depth"])}


@pytest.fixture(scope="module")
def bad_bag(tmp_path_factory):
    """A nuScenes-rig bag of FRAMES sets with one bad encoding, one truncated image and one NaN CameraInfo."""
    root = tmp_path_factory.mktemp("parity")
    dataset = OracleImages(open_dataset(f"synthetic:nuscenes?frames={FRAMES}", height=H, width=W))
    good = write_bag(dataset, root / "good", progress=False)
    reader = Reader(good)
    reader.open()
    rig_topics = {c.image_topic: i for i, c in enumerate(dataset.rig.cameras)}
    info_topics = {c.info_topic: i for i, c in enumerate(dataset.rig.cameras)}
    seen: dict[str, int] = {}
    with BagWriter(root / "bad", "mcap", {"fsmde_ros.rig": "nuscenes"}) as bag:
        for conn, ns, raw in reader.messages():
            k = seen[conn.topic] = seen.get(conn.topic, -1) + 1  # the set this message belongs to
            cam = rig_topics.get(conn.topic, info_topics.get(conn.topic))
            msg = codec.from_cdr(raw, conn.msgtype)
            if conn.topic in rig_topics and (k, cam) == BAD_ENCODING:
                msg.encoding = "nv21"  # (yuv422 is taken since issue 22)
            elif conn.topic in rig_topics and (k, cam) == TRUNCATED:
                msg.data = msg.data[: len(msg.data) // 2]
            elif conn.topic in info_topics and (k, cam) == BAD_INFO:
                msg.k = np.full(9, np.nan)
            else:
                bag.copy(conn, ns, raw)
                continue
            bag.write(conn.topic, msg, ns)
    reader.close()
    return root / "bad", write_oracle_model(root / "oracle.onnx", 6, H, W)


def _counters(statuses) -> dict[str, str]:
    """The counters of a DiagnosticArray's statuses: the pipeline's and each camera's dropped inputs."""
    out = {}
    for st in statuses:
        values = {kv.key: kv.value for kv in st.values}
        if st.name.endswith("pipeline"):
            out.update({k: values.get(k, "0") for k in COUNTERS})
        else:
            out.update({f"{st.name} {k}": v for k, v in values.items() if k.startswith("dropped")})
    return out


def _process(bag, model, out):
    """fsmde process over the bag: (summary, {(output topic, header stamp [ns]): (type, CDR)}, counters)."""
    summary = process_bag(bag, out, params={"model": str(model), "backend": "onnxruntime"}, progress=False)
    outputs, diagnostics = {}, None
    reader = Reader(out)
    reader.open()
    for conn, ns, raw in reader.messages():
        if conn.topic.startswith("/surround_depth/"):
            key = (conn.topic, codec.header_ns(codec.from_cdr(raw, conn.msgtype).header))
            assert key not in outputs, f"{key} written twice"
            outputs[key] = (conn.msgtype, bytes(raw))
        elif conn.topic == "/diagnostics":
            diagnostics = codec.from_cdr(raw, conn.msgtype)
    reader.close()
    return summary, outputs, _counters(diagnostics.status)


def _output_topics(names):
    return {f"/surround_depth/{n}/{kind}" for n in names for kind in ("depth", "depth_std", "camera_info")} | {
        "/surround_depth/points"}


def test_the_node_and_fsmde_process_give_the_same_messages_and_counters_for_the_same_bad_inputs(bad_bag, tmp_path):
    rclpy = pytest.importorskip("rclpy", reason="needs rclpy")
    import rclpy.executors
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message

    bag, model = bad_bag
    summary, offline_outputs, offline = _process(bag, model, tmp_path / "out")
    assert summary.sets == FRAMES - 2, "the sets with a bad image are incomplete and never run"
    assert offline["bad_inputs"] == "3" and offline["failed_sets"] == "0" and offline["sets_published"] == "3"
    names = load_rig("nuscenes").names
    types = {topic: msgtype for (topic, _), (msgtype, _) in offline_outputs.items()}
    assert set(types) == _output_topics(names), "every output topic, each camera's and the cloud"
    assert len(offline_outputs) == 3 * len(types), "one message per set on each"

    domain = next_domain()
    env = ros_env(domain)
    node = start_node({"rig": "nuscenes", "model": str(model), "backend": "onnxruntime", "publish_rig_tf": "false",
                       "qos_reliability": "reliable"}, env)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    rec = rclpy.create_node("parity_recorder", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(rec)
    live_outputs, diagnostics = {}, []
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    for topic, msgtype in types.items():
        rec.create_subscription(codec.rclpy_class(msgtype), topic, lambda m, t=topic: live_outputs.__setitem__(
            (t, codec.header_ns(m.header)), m), qos)
    rec.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)

    def spin(seconds, until=lambda: False):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not until():
            executor.spin_once(timeout_sec=0.05)

    try:
        spin(40, until=lambda: bool(diagnostics) or node.poll() is not None)
        assert node.poll() is None, node.stdout.read()
        play = subprocess.run([sys.executable, "-m", "fsmde_ros", "play", str(bag), "--rate", "0.5",
                               "--qos-reliability", "reliable", "--wait-for-subscribers", "1", "--wait-timeout", "20"],
                              env=env, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert play.returncode == 0, play.stdout + play.stderr
        spin(15, until=lambda: _counters(diagnostics[-1].status).get("sets_published") == offline["sets_published"]
             and len(live_outputs) == len(offline_outputs))
        spin(1.5)  # one more /diagnostics after the last set
    finally:
        stop_process(node)
        executor.shutdown()
        rec.destroy_node()
        rclpy.shutdown(context=context)
    assert _counters(diagnostics[-1].status) == offline
    assert sorted(live_outputs) == sorted(offline_outputs)
    for key, (msgtype, raw) in offline_outputs.items():
        # message for message, every field: the bag's, read into the node's message class, equals the node's (header,
        # sizes, encoding, intrinsics, cloud fields, and the data byte for byte, NaN and +-Inf where they are). Not the
        # CDR bytes: rclpy leaves the alignment padding uninitialised
        offline_msg = deserialize_message(raw, codec.rclpy_class(msgtype))
        assert offline_msg == live_outputs[key], f"{key} differs between the node and fsmde process"
