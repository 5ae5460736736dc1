"""Bags: `write_bag` (rosbags, MCAP and sqlite3), `fsmde play` driving the real node over DDS,
and `fsmde process` (the node's pipeline offline, bag to bag).

The bags hold a tiny synthetic nuScenes-like sequence (3 sets at 48x80) with per-camera stamps
8.3 ms apart. Where the node or the pipeline runs, the images carry the true depth and the
model is the oracle (tests/helpers/oracle_model.py), so outputs are checked against ground truth.
"""
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("rosbags", reason="needs rosbags (the `ros` extra)")
from rosbags.rosbag2 import Reader  # noqa: E402

from fsmde_ros.app.cli import main as cli_main  # noqa: E402
from fsmde_ros.app.demo import stop_process  # noqa: E402
from fsmde_ros.data.surround import open_dataset  # noqa: E402
from fsmde_ros.geometry.cloud import fuse_cloud  # noqa: E402
from fsmde_ros.geometry.rig import rotation_from_quaternion  # noqa: E402
from fsmde_ros.ros import codec  # noqa: E402
from fsmde_ros.ros.bag import (  # noqa: E402
    BAG_MESSAGES,  # noqa: E402
    BagError,
    BagWriter,
    camera_stamps,
    write_bag,
)
from fsmde_ros.ros.play import play_bag, play_messages, qos_kind  # noqa: E402
from fsmde_ros.ros.process import process_bag  # noqa: E402
from tests.helpers.oracle_model import encode_depth, write_oracle_model  # noqa: E402
from tests.helpers.ros_env import REPO, next_domain, ros_env, start_node  # noqa: E402

H, W, FRAMES = 48, 80, 3
OFFSET_S = 0.0083  # nuScenes-like: consecutive cameras fire ~8 ms apart
MIN_DEPTH, MAX_DEPTH = 0.5, 80.0


class ListDataset:
    """Rendered items (rendered once per module) with per-camera stamps; optionally the oracle's images."""

    def __init__(self, rig, items, oracle=False):
        self.rig, self.items, self.oracle = rig, items, oracle

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        item = dict(self.items[i])
        item["stamps"] = item["stamp"] + OFFSET_S * np.arange(len(self.rig))
        if self.oracle:
            item["images"] = encode_depth(item["depth"])
        return item


@pytest.fixture(scope="module")
def sequence():
    ds = open_dataset(f"synthetic:nuscenes?frames={FRAMES}", height=H, width=W)
    return ListDataset(ds.rig, [ds[i] for i in range(len(ds))])


@pytest.fixture(scope="module")
def oracle_bag(sequence, tmp_path_factory):
    """(bag of depth-encoded images, oracle model) shared by the play and process tests."""
    root = tmp_path_factory.mktemp("oracle")
    bag = write_bag(ListDataset(sequence.rig, sequence.items, oracle=True), root / "in", progress=False)
    return bag, write_oracle_model(root / "oracle.onnx", 6, H, W)


def read_all(path):
    """topic -> [(log_ns, msg)] and the connections, read back with rosbags."""
    out = {}
    with Reader(path) as reader:
        conns = {c.topic: c for c in reader.connections}
        for conn, ns, raw in reader.messages():
            out.setdefault(conn.topic, []).append((ns, codec.from_cdr(raw, conn.msgtype)))
    return out, conns


def bag_topics(path):
    """topic -> (message type, message count), as `ros2 bag info` lists them, read back with rosbags."""
    with Reader(path) as reader:
        return {t: (info.msgtype, info.msgcount) for t, info in reader.topics.items()}


def expected_topics(rig, compressed=False, lidar=False):
    topics = {"/tf_static": (codec.TF, 1), "/tf": (codec.TF, FRAMES)}
    for cam in rig.cameras:
        image = (cam.image_topic + "/compressed", codec.COMPRESSED) if compressed else (cam.image_topic, codec.IMAGE)
        topics[image[0]] = (image[1], FRAMES)
        topics[cam.info_topic] = (codec.CAMERA_INFO, FRAMES)
    if lidar:
        topics["/lidar/points"] = (codec.POINTCLOUD2, FRAMES)
    return topics


# -- write_bag ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, lidar", [("mcap", False), ("sqlite3", True)])
def test_bag_reads_back_with_topics_types_counts_stamps_and_metadata(sequence, tmp_path, fmt, lidar):
    rig = sequence.rig
    path = write_bag(sequence, tmp_path / "bag", format=fmt, with_lidar=lidar, progress=False)
    assert bag_topics(path) == expected_topics(rig, lidar=lidar)
    assert list(path.glob("*.mcap" if fmt == "mcap" else "*.db3"))
    # metadata.yaml is what `ros2 bag info` reads: topics, types, counts, the latched /tf_static, the rig
    meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == fmt and meta["custom_data"] == {"fsmde_ros.rig": "nuscenes"}
    listed = {t["topic_metadata"]["name"]: (t["topic_metadata"]["type"], t["message_count"])
              for t in meta["topics_with_message_count"]}
    assert listed == expected_topics(rig, lidar=lidar)
    qos = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"][0]
           for t in meta["topics_with_message_count"]}
    assert qos["/tf_static"]["durability"] == "transient_local" and qos["/tf_static"]["reliability"] == "reliable"

    msgs, _ = read_all(path)
    for c, cam in enumerate(rig.cameras):
        for f, ((ns_img, img), (ns_info, info)) in enumerate(zip(msgs[cam.image_topic], msgs[cam.info_topic])):
            item = sequence[f]
            want = codec.stamp_ns(item["stamps"][c])
            assert ns_img == ns_info == codec.header_ns(img.header) == codec.header_ns(info.header) == want
            assert abs(codec.header_ns(img.header) * 1e-9 - item["stamps"][c]) < 1e-6
            assert img.header.frame_id == info.header.frame_id == cam.frame_id
            assert (img.encoding, img.height, img.width) == ("rgb8", H, W)
            np.testing.assert_array_equal(codec.image_to_rgb(img), item["images"][c])
            np.testing.assert_allclose(np.reshape(info.k, (3, 3)), item["K"][c])
            assert (info.width, info.height) == (W, H)
    (ns0, tf_static), = msgs["/tf_static"]
    assert ns0 == codec.stamp_ns(sequence[0]["stamp"])
    for t, cam in zip(tf_static.transforms, rig.cameras):
        assert (t.header.frame_id, t.child_frame_id) == ("base_link", cam.frame_id)
        q = t.transform.rotation
        np.testing.assert_allclose(rotation_from_quaternion([q.x, q.y, q.z, q.w]), cam.T_base_cam[:3, :3], atol=1e-9)
        tr = t.transform.translation
        np.testing.assert_allclose([tr.x, tr.y, tr.z], cam.T_base_cam[:3, 3])
    for f, (ns, tf) in enumerate(msgs["/tf"]):
        (t,) = tf.transforms
        assert ns == codec.stamp_ns(sequence[f]["stamp"])
        assert (t.header.frame_id, t.child_frame_id) == ("world", "base_link")
        assert t.transform.translation.x == pytest.approx(sequence[f]["T_world_base"][0, 3])
    if lidar:
        for f, (ns, cloud) in enumerate(msgs["/lidar/points"]):
            pts = codec.cloud_array(cloud)
            assert cloud.header.frame_id == "base_link" and len(pts) > 100
            assert np.isfinite(pts["x"]).all() and np.all(pts["z"] > -0.5)


def test_compressed_bag_decodes_to_the_images_within_jpeg_tolerance(sequence, tmp_path):
    path = write_bag(sequence, tmp_path / "bag", compressed=True, jpeg_quality=95, progress=False)
    assert bag_topics(path) == expected_topics(sequence.rig, compressed=True)
    msgs, _ = read_all(path)
    for c, cam in enumerate(sequence.rig.cameras):
        for f, (ns, msg) in enumerate(msgs[cam.image_topic + "/compressed"]):
            assert msg.format == codec.JPEG_FORMAT and ns == codec.stamp_ns(sequence[f]["stamps"][c])
            rgb = codec.image_to_rgb(msg)
            mse = np.mean((rgb.astype(float) - sequence[f]["images"][c]) ** 2)
            psnr = 10 * np.log10(255.0 ** 2 / mse)
            assert rgb.shape == (H, W, 3) and psnr > 30.0, psnr  # JPEG q95 of a noisy 80x48 image: ~36 dB


def test_camera_stamps_default_to_the_set_stamp_and_a_bag_is_never_overwritten(sequence, tmp_path):
    np.testing.assert_array_equal(camera_stamps({"stamp": 5.0}, 6), np.full(6, 5.0))
    with pytest.raises(BagError, match="stamps has 2 values for 6 cameras"):
        camera_stamps({"stamp": 5.0, "stamps": [1.0, 2.0]}, 6)
    path = write_bag(sequence, tmp_path / "bag", limit=1, progress=False)
    assert bag_topics(path)["/tf"] == (codec.TF, 1)
    with pytest.raises(BagError, match="exists already"):
        write_bag(sequence, path, progress=False)
    assert bag_topics(path)["/tf"] == (codec.TF, 1), "the existing bag is untouched"


def test_tf_static_is_written_again_where_the_mounts_change(sequence, tmp_path):
    items = [dict(it) for it in sequence.items]
    items[2]["T_base_cam"] = items[2]["T_base_cam"].copy()
    items[2]["T_base_cam"][0, :3, 3] += 0.1  # another scene: the front camera sits 10 cm elsewhere
    path = write_bag(ListDataset(sequence.rig, items), tmp_path / "bag", progress=False)
    msgs, _ = read_all(path)
    assert [ns for ns, _ in msgs["/tf_static"]] == [codec.stamp_ns(items[i]["stamp"]) for i in (0, 2)]
    assert msgs["/tf_static"][1][1].transforms[0].transform.translation.x == pytest.approx(
        items[2]["T_base_cam"][0, 0, 3])


def test_a_failed_write_leaves_nothing_behind(sequence, tmp_path):
    class Broken(ListDataset):
        def __getitem__(self, i):
            if i == 1:
                raise RuntimeError("disk on fire")
            return super().__getitem__(i)

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_bag(Broken(sequence.rig, sequence.items), tmp_path / "bag", progress=False)
    assert not (tmp_path / "bag").exists()


# -- process ------------------------------------------------------------------------------------------------
def test_process_writes_the_backends_depth_for_every_set(sequence, oracle_bag, tmp_path):
    from fsmde_ros.runtime import create_backend

    bag, model = oracle_bag
    out = tmp_path / "out"
    rc = cli_main(["process", str(bag), "--out", str(out), "--model", str(model), "--backend", "onnxruntime",
                      "--min-depth", str(MIN_DEPTH), "--max-depth", str(MAX_DEPTH), "--cloud-stride", "2",
                      "--diagnostics-every", "2", "--no-progress"])
    assert rc == 0
    msgs, _ = read_all(out)
    rig = sequence.rig
    backend = create_backend("onnxruntime", model)
    for f in range(FRAMES):
        item = ListDataset(rig, sequence.items, oracle=True)[f]
        depth, std = backend.infer(item["images"], item["K"][:, 0, 0].astype(np.float32))
        with np.errstate(invalid="ignore"):
            want = np.where(depth < MIN_DEPTH, -np.inf, np.where(depth > MAX_DEPTH, np.inf, depth))  # REP-117
        for c, cam in enumerate(rig.cameras):
            base = f"/surround_depth/{cam.name}"
            ns, d = msgs[base + "/depth"][f]
            _, s = msgs[base + "/depth_std"][f]
            _, info = msgs[base + "/camera_info"][f]
            assert ns == codec.header_ns(d.header) == codec.stamp_ns(item["stamps"][c])
            assert d.header.frame_id == s.header.frame_id == info.header.frame_id == cam.frame_id
            assert d.encoding == "32FC1" and (d.height, d.width) == (H, W)
            np.testing.assert_array_equal(codec.image_to_depth(d), want[c])  # byte for byte (+-Inf where out of range)
            np.testing.assert_array_equal(codec.image_to_depth(s), std[c])
            np.testing.assert_allclose(np.reshape(info.k, (3, 3)), item["K"][c])
            gt = item["depth"][c]  # and the oracle's depth is the truth (mm-quantised)
            valid = np.isfinite(want[c])
            np.testing.assert_allclose(want[c][valid], gt[valid], atol=1e-3)
        ns, cloud = msgs["/surround_depth/points"][f]
        assert cloud.header.frame_id == "base_link" and ns == codec.stamp_ns(item["stamps"][-1])
        expect = fuse_cloud(want, item["K"], item["T_base_cam"], stride=2, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH,
                            overlap="nearest_axis")  # the node's default cloud_overlap
        assert len(codec.cloud_array(cloud)) == len(expect)
    assert len(msgs["/tf_static"]) == 1 and len(msgs["/tf"]) == FRAMES
    diags = [a for _, a in msgs["/diagnostics"]]
    assert len(diags) == 2, "every 2 sets and at the end"
    values = {kv.key: kv.value for kv in diags[-1].status[0].values}
    assert diags[-1].status[0].name == "surround_depth: pipeline" and values["sets_published"] == str(FRAMES)
    assert values["backend"] == "onnxruntime:CPUExecutionProvider"


def test_bad_inputs_fail_with_clear_errors(sequence, oracle_bag, tmp_path):
    bag, model = oracle_bag
    params = {"model": str(model), "backend": "onnxruntime"}
    with pytest.raises(BagError, match="bag .*nope does not exist"):
        process_bag(tmp_path / "nope", tmp_path / "out", params=params)
    with pytest.raises(BagError, match="bag .*nope does not exist"):
        play_bag(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="not a rosbag2 directory: it has no metadata.yaml"):
        process_bag(tmp_path / "empty", tmp_path / "out", params=params)
    with BagWriter(tmp_path / "no_cameras", "mcap", {"fsmde_ros.rig": "nuscenes"}) as w:
        w.write("/tf_static", BAG_MESSAGES.tf_message([]), 1)
    with pytest.raises(BagError, match=r"lacks the image topics of rig 'nuscenes': no sensor_msgs/msg/Image on "
                                       r"/cam_front/image_raw, .*The bag has: /tf_static"):
        process_bag(tmp_path / "no_cameras", tmp_path / "out", params=params)
    with pytest.raises(BagError, match="lacks the image topics of rig 'ddad'"):
        process_bag(bag, tmp_path / "out", rig="ddad", params=params)
    with pytest.raises(BagError, match="exists already"):
        process_bag(bag, bag, params=params)
    with pytest.raises(BagError, match="has no topic /nope"):
        play_bag(bag, topics=["/nope"])
    assert not (tmp_path / "out").exists()
    # the same through the command line: exit code 2 and the reason
    proc = subprocess.run([sys.executable, "-m", "fsmde_ros", "process", str(tmp_path / "nope"), "--out",
                           str(tmp_path / "out"), "--model", str(model)], capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    assert proc.returncode == 2 and "does not exist" in proc.stderr, proc.stderr


# -- play -----------------------------------------------------------------------------------------------------
def test_play_schedule_keeps_the_bag_timing_scaled_by_rate_and_loops():
    t = [0.0]
    sent, clock = [], []
    msgs = [("a", 1_000_000_000, b""), ("b", 1_100_000_000, b""), ("c", 1_300_000_000, b"")]
    stats = play_messages(lambda: iter(msgs), 1_000_000_000, lambda c, ns, raw: sent.append((c, round(t[0], 6))),
                                 rate=2.0, loop=True, clock=clock.append, stop=lambda: len(sent) >= 6,
                                 now=lambda: t[0], sleep=lambda s: t.__setitem__(0, t[0] + s))
    assert sent == [("a", 0.0), ("b", 0.05), ("c", 0.15), ("a", 0.15), ("b", 0.2), ("c", 0.3)]
    assert stats.published == 6 and stats.passes == 2
    first_pass = clock[: clock.index(1_300_000_000) + 1]
    assert first_pass == sorted(first_pass) and first_pass[0] >= 1_000_000_000
    assert qos_kind("/tf_static", codec.TF) == "latched" and qos_kind("/cam/image_raw", codec.IMAGE) == "sensor"
    assert qos_kind("/tf", codec.TF) == "reliable"


@contextlib.contextmanager
def node_with_depth_recorder(model, names, **params):
    """The real node (nuScenes rig, oracle model, ONNX Runtime) and, in this process, a recorder of every camera's
    depth: yields (env, node, depth {camera: [Image]}, spin(seconds, until)); the node's outputs are discovered."""
    rclpy = pytest.importorskip("rclpy", reason="needs rclpy")
    import rclpy.executors
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    domain = next_domain()
    env = ros_env(domain)
    node = start_node({"rig": "nuscenes", "model": str(model), "backend": "onnxruntime", "publish_rig_tf": "false",
                       "min_depth": MIN_DEPTH, "max_depth": MAX_DEPTH, "publish_std": "false",
                       "publish_cloud": "false", **params}, env)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    rec = rclpy.create_node("bag_recorder", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(rec)
    depth = {n: [] for n in names}
    for n in names:
        rec.create_subscription(Image, f"/surround_depth/{n}/depth", depth[n].append,
                                QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))

    def spin(seconds, until=lambda: False):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not until():
            executor.spin_once(timeout_sec=0.05)

    try:
        spin(40, until=lambda: all(rec.count_publishers(f"/surround_depth/{n}/depth") for n in names)
             or node.poll() is not None)
        assert node.poll() is None, node.stdout.read()
        yield env, node, depth, spin
    finally:
        stop_process(node)
        executor.shutdown()
        rec.destroy_node()
        rclpy.shutdown(context=context)


def test_play_drives_the_node_to_the_true_depth_of_every_set(sequence, oracle_bag):
    bag, model = oracle_bag
    rig = sequence.rig
    with node_with_depth_recorder(model, rig.names) as (env, node, depth, spin):
        play = subprocess.Popen([sys.executable, "-m", "fsmde_ros", "play", str(bag), "--rate", "0.25",
                                 "--wait-for-subscribers", "1", "--wait-timeout", "20"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        spin(60, until=lambda: play.poll() is not None)
        log = play.stdout.read()
        assert play.wait(timeout=10) == 0, log
        spin(5, until=lambda: all(len(depth[n]) >= FRAMES for n in rig.names))
    assert "published" in log and "subscriber(s)" not in log, log
    for c, cam in enumerate(rig.cameras):
        got = {codec.header_ns(m.header): m for m in depth[cam.name]}
        assert len(depth[cam.name]) == FRAMES, f"{cam.name}: {len(depth[cam.name])} depth images\n{log}"
        for f in range(FRAMES):
            stamp = codec.stamp_ns(sequence[f]["stamps"][c])
            msg = got[min(got, key=lambda s: abs(s - stamp))]
            assert codec.header_ns(msg.header) == stamp and msg.header.frame_id == cam.frame_id
            gt = sequence[f]["depth"][c]
            valid = (gt > MIN_DEPTH) & (gt < MAX_DEPTH)
            d = codec.image_to_depth(msg)
            np.testing.assert_allclose(d[valid], gt[valid], atol=1e-3)
            assert np.isinf(d[~valid]).all()  # REP-117: -Inf nearer than min, +Inf beyond max


def test_every_pass_of_a_looped_three_set_bag_is_published(oracle_bag, sequence):
    """Regression (issue 14, item 10): a bag loop under 1 s (here 3 sets, 0.2 s) was never taken for a loop:
    the node published the first pass only and dropped every repeat as stale."""
    bag, model = oracle_bag
    rig = sequence.rig
    passes = 4
    with node_with_depth_recorder(model, rig.names) as (env, node, depth, spin):
        play = subprocess.Popen([sys.executable, "-m", "fsmde_ros", "play", str(bag), "--rate", "0.5", "--loop",
                                 "--wait-for-subscribers", "1", "--wait-timeout", "20"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                                preexec_fn=_as_in_a_terminal)
        try:
            spin(60, until=lambda: all(len(depth[n]) >= passes * FRAMES for n in rig.names) or play.poll() is not None)
            play.send_signal(signal.SIGINT)
            log = play.communicate(timeout=20)[0]
            assert node.poll() is None, node.stdout.read()
        finally:
            if play.poll() is None:
                play.kill()
    for n in rig.names:
        stamps = [codec.header_ns(m.header) for m in depth[n]]
        assert len(stamps) >= passes * FRAMES, f"{n}: {len(stamps)} depth images in {passes} passes\n{log}"
        assert len(set(stamps)) == FRAMES and all(stamps.count(s) >= passes for s in set(stamps)), stamps


def test_under_sim_time_the_nodes_latency_is_measured_on_the_bags_clock(oracle_bag):
    """Issue 14, item 6: replayed on the wall clock, a bag's stamps (here 2023) make the node's latency read
    years; with `fsmde play --clock` and use_sim_time the node measures it against /clock."""
    rclpy = pytest.importorskip("rclpy", reason="needs rclpy")
    import rclpy.executors
    from diagnostic_msgs.msg import DiagnosticArray

    bag, model = oracle_bag
    domain = next_domain()
    env = ros_env(domain)
    node = start_node({"rig": "nuscenes", "model": str(model), "backend": "onnxruntime", "use_sim_time": "true",
                       "min_depth": MIN_DEPTH, "max_depth": MAX_DEPTH}, env)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    rec = rclpy.create_node("latency_recorder", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(rec)
    latencies = []

    def on_diagnostics(msg):
        for st in msg.status:
            values = {kv.key: kv.value for kv in st.values}
            if st.name.endswith("pipeline") and values.get("latency mean [ms]", "n/a") != "n/a":
                latencies.append(float(values["latency mean [ms]"]))

    rec.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    try:
        end = time.monotonic() + 40
        while time.monotonic() < end and not rec.count_publishers("/diagnostics") and node.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        play = subprocess.Popen([sys.executable, "-m", "fsmde_ros", "play", str(bag), "--clock", "--rate", "0.5",
                                 "--wait-for-subscribers", "1", "--wait-timeout", "20"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        end = time.monotonic() + 60
        while time.monotonic() < end and (play.poll() is None or not latencies):
            executor.spin_once(timeout_sec=0.1)
        assert play.wait(timeout=10) == 0, play.stdout.read()
    finally:
        stop_process(node)
        executor.shutdown()
        rec.destroy_node()
        rclpy.shutdown(context=context)
    assert latencies, "no latency in /diagnostics"
    assert 0 <= latencies[-1] < 5_000, latencies  # on the wall clock it would read ~1e11 ms (years)


def _as_in_a_terminal():
    """Ctrl-C as a terminal delivers it: a test run as a background job (`make test &` in a script) inherits
    SIGINT ignored, and Python then never turns SIGINT into KeyboardInterrupt in the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_play_loops_until_ctrl_c_and_stops_cleanly(oracle_bag):
    pytest.importorskip("rclpy", reason="needs rclpy")
    bag, _ = oracle_bag
    proc = subprocess.Popen([sys.executable, "-m", "fsmde_ros", "play", str(bag), "--loop", "--clock",
                             "--rate", "4", "--start-offset", "0.05"], env=ros_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO, preexec_fn=_as_in_a_terminal)
    try:
        lines = []
        for line in proc.stdout:  # wait until it plays, then let it loop a little
            lines.append(line)
            if "looping" in line:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out = "".join(lines) + proc.communicate(timeout=20)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "[play] stopped" in out and "from bag time 1700000000.050 s" in out, out
    passes = int(out.split(" pass(es)")[0].split()[-1])
    assert passes >= 2, out


# -- CLI wiring and layouts ---------------------------------------------------------------------------------
def test_register_adds_typed_documented_subcommands():
    from fsmde_ros.app.cli import build_parser

    parser = build_parser()
    a = parser.parse_args(["bag", "--dataset", "synthetic:ddad?frames=2", "--out", "x", "--format", "sqlite3",
                           "--compressed", "--lidar", "--height", "96", "--width", "160"])
    assert (a.format, a.compressed, a.lidar, a.height, a.out) == ("sqlite3", True, True, 96, Path("x"))
    a = parser.parse_args(["play", "b", "--rate", "2", "--loop", "--start-offset", "1.5", "--topics", "/a", "/b",
                           "--clock", "--wait-for-subscribers", "1"])
    assert (a.rate, a.loop, a.start_offset, a.topics, a.clock, a.wait_for_subscribers) == (2.0, True, 1.5, ["/a", "/b"],
                                                                                          True, 1)
    a = parser.parse_args(["process", "b", "--out", "o", "--slop", "0.03", "--no-publish-cloud", "--allow-partial"])
    assert (a.slop, a.publish_cloud, a.allow_partial, a.backend, a.compressed) == (0.03, False, True, "auto", None)
    assert all(callable(parser.parse_args(args).func) for args in (["play", "b"], ["process", "b", "--out", "o"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["process", "b", "--out", "o", "--backend", "torch"])


# -- bad input (issue 6) --------------------------------------------------------------------------------------
CUSTOM_TYPE = "fsmde_test_msgs/msg/Blob"  # a type no Python package here provides


def _bag_with_an_unknown_type(sequence, path):
    """The first sets of `sequence` plus /custom of CUSTOM_TYPE (own msgdef) and /tf (tf2_msgs, not installed here)."""
    write_bag(ListDataset(sequence.rig, sequence.items[:1]), path / "src", progress=False)
    reader = Reader(path / "src")
    reader.open()
    with BagWriter(path / "bag", "mcap", {"fsmde_ros.rig": "nuscenes"}) as w:
        for conn, ns, raw in reader.messages():
            w.copy(conn, ns, raw)
        conn = w._writer.add_connection("/custom", CUSTOM_TYPE, msgdef="uint8[] data", rihs01="RIHS01_" + "0" * 64)
        start = reader.start_time
        for k in range(3):
            w._writer.write(conn, start + k, b"\x00\x01\x00\x00\x00\x00\x00\x00")
    reader.close()
    return path / "bag"


def test_play_skips_a_topic_of_unknown_type_with_one_warning(sequence, tmp_path):
    pytest.importorskip("rclpy", reason="needs rclpy")
    bag = _bag_with_an_unknown_type(sequence, tmp_path)
    domain = next_domain()
    proc = subprocess.run([sys.executable, "-m", "fsmde_ros", "play", str(bag), "--rate", "50"],
                          env=ros_env(domain), capture_output=True, text=True, cwd=REPO, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in out, out
    warned = [line for line in out.splitlines() if "skipping /custom" in line]
    assert len(warned) == 1 and CUSTOM_TYPE in warned[0] and "fsmde_test_msgs" in warned[0], out
    assert "published" in out, out


def test_process_ignores_topics_it_does_not_need(sequence, oracle_bag, tmp_path):
    _, model = oracle_bag
    bag = _bag_with_an_unknown_type(sequence, tmp_path)
    summary = process_bag(bag, tmp_path / "out", params={"model": str(model), "backend": "onnxruntime"},
                                 progress=False)
    assert summary.sets == 1
    assert "/custom" not in bag_topics(tmp_path / "out")


class CorruptAt(ListDataset):
    """Raises what a dataset raises for a corrupt file at the given indices."""

    def __init__(self, rig, items, bad):
        super().__init__(rig, items)
        self.bad = bad

    def __getitem__(self, i):
        from fsmde_ros.data.dataset_files import CorruptFileError

        if i in self.bad:
            raise CorruptFileError(f"/data/scene/rgb/CAMERA_01/{i:04d}.png", "image", "not a decodable PNG/JPEG")
        return super().__getitem__(i)


def test_write_bag_skips_sets_with_corrupt_files_and_reports_them(sequence, tmp_path):
    from fsmde_ros.data.dataset_files import CorruptFileError
    from fsmde_ros.ros.bag import WriteReport

    report = WriteReport()
    with pytest.warns(UserWarning) as record:
        out = write_bag(CorruptAt(sequence.rig, sequence.items, {1}), tmp_path / "bag", progress=False, report=report)
    messages = [str(w.message) for w in record]
    assert sum("skipping set 1" in m and "0001.png" in m for m in messages) == 1, messages
    assert any("skipped 1 of 3 sets" in m for m in messages), messages
    assert report.written == 2 and [i for i, _ in report.skipped] == [1]
    counts = {t: c for t, (_, c) in bag_topics(out).items()}
    assert counts[sequence.rig.cameras[0].image_topic] == 2
    # strict: the first bad set stops the conversion and nothing is left; all bad: nothing to write
    with pytest.raises(CorruptFileError, match="0001.png"):
        write_bag(CorruptAt(sequence.rig, sequence.items, {1}), tmp_path / "strict", progress=False, skip_bad=False)
    assert not (tmp_path / "strict").exists()
    with pytest.warns(UserWarning), pytest.raises(BagError, match="all 3 sets were bad.*0000.png"):
        write_bag(CorruptAt(sequence.rig, sequence.items, {0, 1, 2}), tmp_path / "none", progress=False)
    assert not (tmp_path / "none").exists()


def test_ctrl_c_keeps_the_sets_written_in_a_closed_bag(sequence, tmp_path, capsys):
    class Interrupted(ListDataset):
        def __getitem__(self, i):
            if i == 2:
                raise KeyboardInterrupt
            return super().__getitem__(i)

    with pytest.raises(KeyboardInterrupt):
        write_bag(Interrupted(sequence.rig, sequence.items), tmp_path / "bag", progress=False)
    assert (tmp_path / "bag" / "metadata.yaml").is_file()
    assert "closed with the 2 sets written so far" in capsys.readouterr().err
    counts = {t: c for t, (_, c) in bag_topics(tmp_path / "bag").items()}
    for cam in sequence.rig.cameras:
        assert counts[cam.image_topic] == 2 and counts[cam.info_topic] == 2, counts
    assert len(read_all(tmp_path / "bag")[0][sequence.rig.cameras[0].image_topic]) == 2


def test_fsmde_bag_exits_130_on_ctrl_c_with_the_bag_closed(sequence, tmp_path, monkeypatch):
    from fsmde_ros.ros import bag as bag_mod

    def interrupted(*args, report=None, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bag_mod, "write_bag", interrupted)
    monkeypatch.setattr("fsmde_ros.data.surround.open_dataset", lambda *a: sequence)
    assert cli_main(["bag", "--out", str(tmp_path / "bag")]) == 130
