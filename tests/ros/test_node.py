"""The surround_depth node end to end: real processes (publisher, node) and real DDS.

The publisher sends six nuScenes-like camera streams (stamps ~8 ms apart per camera) of the
synthetic world; with the oracle model the node must publish exactly the world's depth, so the
stamps, frames, depth values and the fused cloud can be checked against ground truth.
"""
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="needs rclpy (make setup installs the ROS 2 wheels)")
import rclpy.executors  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from fsmde_ros.app.demo import stop_process  # noqa: E402
from fsmde_ros.data.synthetic import SyntheticSurround  # noqa: E402
from fsmde_ros.geometry.cloud import fuse_cloud  # noqa: E402
from fsmde_ros.ros import codec  # noqa: E402
from tests.helpers.oracle_model import write_oracle_model  # noqa: E402
from tests.helpers.ros_env import REPO, next_domain, ros_env, start_node  # noqa: E402

H, W = 96, 160
RIG = "nuscenes"
PUBLISHER = str(REPO / "tests" / "helpers" / "surround_publisher.py")
MIN_DEPTH, MAX_DEPTH, STRIDE = 0.5, 80.0, 2


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    return write_oracle_model(tmp_path_factory.mktemp("model") / "oracle.onnx", 6, H, W)


@pytest.fixture(scope="module")
def world():
    return SyntheticSurround(RIG, seed=0, height=H, width=W, frames=30)


class Recorder:
    """Subscribes (in this test process) to everything the node publishes."""

    def __init__(self, camera_names, domain_id, kinds=("depth", "depth_std", "camera_info", "points")):
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("recorder", context=self.context)
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.depth = {n: [] for n in camera_names}
        self.std = {n: [] for n in camera_names}
        self.info = {n: [] for n in camera_names}
        self.points, self.diagnostics = [], []
        for n in camera_names:
            for kind, msg_type, store in (("depth", Image, self.depth), ("depth_std", Image, self.std),
                                          ("camera_info", CameraInfo, self.info)):
                if kind in kinds:
                    self.node.create_subscription(msg_type, f"/surround_depth/{n}/{kind}", store[n].append, qos)
        if "points" in kinds:
            self.node.create_subscription(PointCloud2, "/surround_depth/points", self.points.append, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)

        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def run_scenario(oracle, node_params, publisher_args, wait_s=4.0, kinds=("depth", "depth_std", "camera_info", "points"),
                 before_publishing=None):
    """Start the node and the publisher in their own processes; record until the publisher ends.
    before_publishing(recorder): called once the recorder is up, before the publisher starts."""
    domain = next_domain()
    env = ros_env(domain)
    params = {"rig": RIG, "model": str(oracle), "backend": "onnxruntime", "publish_rig_tf": "false",
              "min_depth": str(MIN_DEPTH), "max_depth": str(MAX_DEPTH), "cloud_stride": str(STRIDE), **node_params}
    cmd = [sys.executable, "-m", "fsmde_ros.ros.node", "--ros-args"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    node_log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"surround_depth_node_{domain}.log", "w+")
    node = subprocess.Popen(cmd, env=env, stdout=node_log, stderr=subprocess.STDOUT, cwd=REPO)
    from fsmde_ros.geometry.rig import load_rig

    rec = Recorder(load_rig(RIG).names, domain, kinds)
    try:
        if before_publishing is not None:
            before_publishing(rec)
        pub = subprocess.Popen([sys.executable, PUBLISHER, "--rig", RIG, "--height", str(H), "--width", str(W),
                                "--wait-for", "1", *publisher_args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        while pub.poll() is None:
            rec.spin_for(0.2)
            assert node.poll() is None, "node died:\n" + _read(node_log)
        assert pub.returncode == 0, pub.stdout.read()
        rec.spin_for(wait_s)
        alive = node.poll() is None
        return rec, _read(node_log), alive
    finally:
        stop_process(node)
        rec.close()


def _read(f):
    f.flush()
    f.seek(0)
    return f.read()


def _sec(header):
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def test_node_publishes_true_depth_with_input_stamps_frames_and_a_cloud_in_base_link(oracle, world):
    rec, log, alive = run_scenario(oracle, {}, ["--oracle", "--frames", "15"])
    assert alive, log
    if importlib.util.find_spec("tf2_ros") is None:  # the wheels install: the YAML's mounts, said once (issue 22)
        assert log.count("camera mounts from the rig YAML") == 1, log
    rig = world.rig
    stamps = {round(world.stamp(i), 3): i for i in range(15)}
    checked = 0
    for ci, cam in enumerate(rig.cameras):
        msgs = rec.depth[cam.name]
        assert len(msgs) >= 10, f"{cam.name}: only {len(msgs)} depth images\n{log}"
        for msg in msgs[:3]:
            assert msg.encoding == "32FC1" and (msg.height, msg.width) == (H, W)
            assert msg.header.frame_id == cam.frame_id
            t = _sec(msg.header) - ci * 0.0083  # the publisher's per-camera stamp offset
            frame = stamps[round(t, 3)]
            gt = world[frame]["depth"][ci]
            depth = codec.image_to_depth(msg)
            valid = (gt > MIN_DEPTH) & (gt < MAX_DEPTH)
            np.testing.assert_allclose(depth[valid], gt[valid], atol=2e-3)
            assert np.isinf(depth[~valid]).all(), "outside [min_depth, max_depth] is -Inf / +Inf (REP-117)"
            checked += 1
        info = rec.info[cam.name][0]
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), rig.K[ci], rtol=1e-6)
        assert rec.std[cam.name], f"{cam.name}: no depth_std"
    assert checked == 18
    # the cloud: in base_link, stamped with the set, where the world's geometry puts it
    assert len(rec.points) >= 10
    cloud_msg = rec.points[-1]
    assert cloud_msg.header.frame_id == "base_link"
    pts = codec.cloud_array(cloud_msg)
    latest = max(_sec(rec.depth[n][-1].header) for n in rig.names)
    frame = stamps[round(_sec(cloud_msg.header) - 5 * 0.0083, 3)]
    item = world[frame]
    depth = np.where((item["depth"] > MIN_DEPTH) & (item["depth"] < MAX_DEPTH), item["depth"], np.nan)
    expect = fuse_cloud(depth, item["K"], item["T_base_cam"], stride=STRIDE, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH,
                        overlap="nearest_axis")  # the node's default cloud_overlap
    assert abs(len(pts) - len(expect)) <= 0.01 * len(expect)
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=1)
    assert np.all(xyz[:, 2] > -0.05), "nothing lies below the road"
    assert np.mean(np.abs(xyz[:, 2]) < 0.05) > 0.1, "much of the cloud is the road surface (z = 0)"
    assert set(np.unique(pts["camera"])) == set(range(6))
    # the same points as fusing the true depth: nearest expected point within 1 cm (depth travels
    # quantised to millimetres, so a point at the depth bounds may come or go)
    sample = xyz[np.random.default_rng(0).choice(len(xyz), size=min(500, len(xyz)), replace=False)]
    nearest = np.sqrt(((sample[:, None, :] - expect.xyz[None, :, :]) ** 2).sum(-1)).min(axis=1)
    assert np.mean(nearest < 0.01) > 0.99, np.percentile(nearest, [50, 99])
    assert latest >= _sec(cloud_msg.header) - 0.1
    # diagnostics: the live cross-view consistency of true depth is near zero; latency is measured
    pipeline = [s for a in rec.diagnostics for s in a.status if s.name == "surround_depth: pipeline"]
    values = {kv.key: kv.value for kv in pipeline[-1].values}
    assert float(values["cross-view consistency median rel"]) < 0.05, values
    assert float(values["latency p99 [ms]"]) > 0 and int(values["sets_published"]) >= 10


def test_only_topics_with_a_subscriber_are_serialised(oracle):
    """Issue 15: depth_std, camera_info and the cloud were built and serialised for every set with nobody listening
    (~1/3 of the node's publish time at 6x384x640). Listening to depth only, only depth is built."""
    rec, log, alive = run_scenario(oracle, {}, ["--oracle", "--frames", "15"], kinds=("depth",))
    assert alive, log
    assert all(len(rec.depth[n]) >= 10 for n in rec.depth), {n: len(m) for n, m in rec.depth.items()}
    pipeline = [s for a in rec.diagnostics for s in a.status if s.name == "surround_depth: pipeline"]
    values = {kv.key: kv.value for kv in pipeline[-1].values}
    assert int(values["published depth"]) >= 60, values
    assert not {"published depth_std", "published camera_info", "published points"} & set(values), values


def test_a_silent_camera_is_reported_and_allow_partial_keeps_the_others_flowing(oracle, world):
    rec, log, alive = run_scenario(oracle, {"allow_partial": "true", "camera_timeout": "0.5"},
                                   ["--oracle", "--frames", "30", "--stop-camera", "3", "--stop-after", "5"])
    assert alive, log
    late = world.stamp(20)
    for name in world.rig.names:
        after = [m for m in rec.depth[name] if _sec(m.header) > late]
        if name == "CAM_BACK":
            assert not after, "the silent camera publishes nothing"
        else:
            assert after, f"{name} stopped publishing when CAM_BACK went silent\n{log}"
    statuses = [s for a in rec.diagnostics for s in a.status if s.name == "surround_depth: pipeline"]
    assert any("silent: CAM_BACK" in s.message and s.level == b"\x01" for s in statuses), [s.message for s in statuses]
    values = {kv.key: kv.value for kv in statuses[-1].values}
    assert int(values["sync partial_sets"]) > 0 and values["backend"] == "onnxruntime:CPUExecutionProvider"


def test_an_image_with_a_bad_encoding_is_survived_and_counted(oracle):
    rec, log, alive = run_scenario(oracle, {}, ["--oracle", "--frames", "15", "--bad-camera", "0", "--bad-at", "3"])
    assert alive, log
    assert "dropping input (bad_image)" in log and "nv21" in log
    assert len(rec.depth["CAM_FRONT"]) >= 9, "the camera keeps flowing after its bad image"
    cams = [s for a in rec.diagnostics for s in a.status if s.name == "surround_depth: camera CAM_FRONT"]
    assert any("bad_image" in s.message for s in cams)


def test_compressed_input_and_rig_intrinsics_without_camera_info(oracle, world):
    rec, log, alive = run_scenario(oracle, {"compressed": "true"}, ["--oracle", "--frames", "12", "--compressed",
                                                                     "--no-info"])
    assert alive, log
    msgs = rec.depth["CAM_FRONT_LEFT"]
    assert len(msgs) >= 8, log
    t = _sec(msgs[0].header) - 5 * 0.0083
    frame = min(range(12), key=lambda i: abs(world.stamp(i) - t))
    gt = world[frame]["depth"][5]
    depth = codec.image_to_depth(msgs[0])
    valid = (gt > MIN_DEPTH) & (gt < MAX_DEPTH)
    np.testing.assert_allclose(depth[valid], gt[valid], atol=2e-3)
    # no CameraInfo arrived: the rig preset's intrinsics, scaled to the image size, are published
    np.testing.assert_allclose(np.reshape(rec.info["CAM_FRONT_LEFT"][0].k, (3, 3)), world.rig.K[5], rtol=1e-6)


@pytest.mark.parametrize("params, message", [
    ({"model": "/nonexistent/student.onnx"}, "model /nonexistent/student.onnx not found"),
    ({"backend": "tflite"}, "backend must be one of auto, tensorrt, onnxruntime, torch"),
    ({"rig": "kitti"}, "no rig preset 'kitti'"),
    ({"min_depth": "90.0"}, "min_depth (90.0) must be below max_depth"),
    # issue 14, item 2: each of these ended in a traceback with exit 1
    ({"slop": "-1.0"}, "parameter slop must be in [0, 1], got -1.0"),
    ({"slop": "2.0"}, "parameter slop must be in [0, 1], got 2.0"),
    ({"slop": "abc"}, "parameter slop must be a double in [0, 1], got 'abc'"),
    ({"queue_size": "0"}, "parameter queue_size must be in [1, 100], got 0"),
    ({"camera_timeout": "0.0"}, "parameter camera_timeout must be in [0.05, 60], got 0.0"),
    ({"threads": "-1"}, "parameter threads must be in [0, 256], got -1"),
])
def test_bad_configuration_fails_fast_with_the_reason(oracle, params, message):
    cmd = [sys.executable, "-m", "fsmde_ros.ros.node", "--ros-args"]
    for k, v in {"rig": RIG, "model": str(oracle), **params}.items():
        cmd += ["-p", f"{k}:={v}"]
    proc = subprocess.run(cmd, env=ros_env(), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _start_and_read_log(oracle, params, until="backend onnxruntime", timeout=40.0):
    """Start the node with `params`, read its log until `until` appears (or it exits), stop it; the log."""
    proc = start_node({"rig": RIG, "model": str(oracle), "backend": "onnxruntime", **params}, ros_env())
    lines, end = [], time.monotonic() + timeout
    try:
        while time.monotonic() < end and proc.poll() is None:
            line = proc.stdout.readline()
            lines.append(line)
            if until in line:
                break
    finally:
        stop_process(proc)
    return "".join(lines) + (proc.stdout.read() or "")


def test_an_integer_for_a_double_parameter_is_taken_as_that_double(oracle):
    """Regression (issue 14, item 2): `-p slop:=1` raised InvalidParameterTypeException."""
    log = _start_and_read_log(oracle, {"slop": "1", "max_depth": "60"})
    assert "backend onnxruntime" in log and "Traceback" not in log, log


def test_a_misspelt_parameter_is_warned_about_with_the_closest_name(oracle):
    """Regression (issue 14, item 3): `-p slopp:=0.1` was silently ignored."""
    log = _start_and_read_log(oracle, {"slopp": "0.1"})
    assert "unknown parameter 'slopp' is ignored; did you mean 'slop'?" in log, log


@pytest.mark.parametrize("views, images_type, message", [
    (4, "UINT8", "the model takes 4 views but rig 'nuscenes' has 6 cameras"),
    (6, "FLOAT", "'images' must be uint8, found float"),
])
def test_a_model_that_breaks_the_contract_stops_the_node_at_start_with_exit_2(tmp_path, views, images_type, message):
    """Regression (issue 14, item 4): a model for 4 views crashed with a traceback; one with float32 images
    started and then failed every set."""
    from onnx import TensorProto

    model = write_oracle_model(tmp_path / "bad.onnx", views, H, W, images_type=getattr(TensorProto, images_type))
    cmd = [sys.executable, "-m", "fsmde_ros.ros.node", "--ros-args", "-p", f"rig:={RIG}", "-p", f"model:={model}",
           "-p", "backend:=onnxruntime"]
    proc = subprocess.run(cmd, env=ros_env(), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_backend_torch_starts_from_a_checkpoint(tmp_path):
    """Regression (issue 14, item 5): `backend:=torch` never started (`cannot start backend 'torch' ...: 'height'`)."""
    from fsmde_ros.model.checkpoint import save_student
    from fsmde_ros.model.student import create_student

    ckpt = save_student(create_student("fsmde_lcnet", num_bins=8), tmp_path / "student.pt",
                        extra={"height": H, "width": W})
    log = _start_and_read_log(ckpt, {"backend": "torch"}, until="backend torch")
    assert f"backend torch:cpu (fp32), model {ckpt}, input {W}x{H} x 6 views" in log, log


def _set_parameter(rec, name, value, timeout_s=30.0):
    """`ros2 param set /surround_depth NAME VALUE` through the node's set_parameters service: (successful, reason)."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client = getattr(rec, "param_client", None) or rec.node.create_client(SetParameters, "/surround_depth/set_parameters")
    rec.param_client = client
    end = time.monotonic() + timeout_s
    while not client.service_is_ready() and time.monotonic() < end:
        rec.spin_for(0.2)
    assert client.service_is_ready(), "the node's parameter service never came up"
    pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value)) if isinstance(value, float) \
        else ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(value))
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=pv)]))
    while not future.done() and time.monotonic() < end:
        rec.spin_for(0.1)
    result = future.result().results[0]
    return result.successful, result.reason


def test_max_depth_set_at_run_time_shows_in_the_next_depth_and_cloud_and_a_bad_value_is_refused(oracle, world):
    """Issue 23: every parameter was read-only; depth bounds, stride, std ratio and publish switches are live now."""
    said = {}

    def tune(rec):
        said["negative"] = _set_parameter(rec, "max_depth", -5.0)
        said["above"] = _set_parameter(rec, "min_depth", 500.0)
        said["model"] = _set_parameter(rec, "model", "other.onnx")
        said["ok"] = _set_parameter(rec, "max_depth", 20.0)

    rec, log, alive = run_scenario(oracle, {}, ["--oracle", "--frames", "10"], kinds=("depth", "points"),
                                   before_publishing=tune)
    assert alive, log
    assert not said["negative"][0] and "max_depth" in said["negative"][1] and "1000" in said["negative"][1], said
    assert not said["above"][0] and "must stay below max_depth" in said["above"][1], said
    assert not said["model"][0], "structural parameters stay read-only"
    assert said["ok"] == (True, ""), said
    checked, beyond = 0, 0
    for ci, cam in enumerate(world.rig.cameras):
        for msg in rec.depth[cam.name][:3]:
            depth = codec.image_to_depth(msg)
            finite = np.isfinite(depth)
            assert finite.any() and depth[finite].max() <= 20.0
            beyond += int(np.isposinf(depth).sum())
            checked += 1
    assert checked >= 12 and beyond > 0, log  # what lies beyond the new max_depth is +Inf
    assert rec.points, log
    from fsmde_ros.geometry.projection import invert_transform, transform_points

    for msg in rec.points[:3]:
        pts = codec.cloud_array(msg)
        assert len(pts)
        xyz = np.stack([pts["x"], pts["y"], pts["z"]], 1).astype(np.float64)
        for c, T in enumerate(world.rig.T_base_cam):  # each point's z-depth in its own camera: within max_depth
            mine = pts["camera"] == c
            assert transform_points(invert_transform(T), xyz[mine])[:, 2].max(initial=0) <= 20.0 + 1e-3


def test_a_qos_override_changes_the_reliability_of_the_subscription_it_names(oracle):
    """Issue 23: qos_overrides.* were accepted and ignored."""
    from rclpy.qos import ReliabilityPolicy as R

    domain = next_domain()
    env = ros_env(domain)
    from fsmde_ros.geometry.rig import load_rig

    rig = load_rig(RIG)
    front, back = rig.cameras[0].image_topic, rig.cameras[3].image_topic
    cmd = [sys.executable, "-m", "fsmde_ros.ros.node", "--ros-args", "-p", f"rig:={RIG}", "-p", f"model:={oracle}",
           "-p", "backend:=onnxruntime", "-p", f"qos_overrides.{front}.subscription.reliability:=reliable",
           "-p", "qos_overrides./surround_depth/points.publisher.durability:=transient_local"]
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"surround_depth_qos_{domain}.log", "w+")
    node = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    rec = Recorder(rig.names, domain, kinds=())
    try:
        def info(topic, subs=True):
            get = rec.node.get_subscriptions_info_by_topic if subs else rec.node.get_publishers_info_by_topic
            return [i for i in get(topic) if i.node_name == "surround_depth"]

        end = time.monotonic() + 30
        while time.monotonic() < end and not (info(front) and info(back) and info("/surround_depth/points", False)):
            rec.spin_for(0.2)
            assert node.poll() is None, _read(log)
        assert info(front)[0].qos_profile.reliability == R.RELIABLE, "the named subscription follows the override"
        assert info(back)[0].qos_profile.reliability == R.BEST_EFFORT, "the others keep the sensor-data default"
        from rclpy.qos import DurabilityPolicy as D

        assert info("/surround_depth/points", False)[0].qos_profile.durability == D.TRANSIENT_LOCAL  # an output too
        assert "unknown parameter" not in _read(log)
    finally:
        stop_process(node)
        rec.close()


def test_two_nodes_in_two_namespaces_on_one_domain_do_not_cross(oracle, tmp_path):
    """Issue 23: a second rig (or a trailer's) runs beside the first: its outputs and parameters are its own."""
    domain = next_domain()
    env = ros_env(domain)
    base = [sys.executable, "-m", "fsmde_ros.ros.node", "--ros-args", "-p", f"rig:={RIG}", "-p", f"model:={oracle}",
            "-p", "backend:=onnxruntime"]
    logs = {ns: open(tmp_path / f"{ns}.log", "w+") for ns in ("front_rig", "trailer")}
    nodes = {ns: subprocess.Popen(base + ["-r", f"__ns:=/{ns}"] + (["-p", "max_depth:=20.0"] if ns == "trailer" else []),
                                  env=env, stdout=logs[ns], stderr=subprocess.STDOUT, cwd=REPO) for ns in logs}
    from fsmde_ros.geometry.rig import load_rig

    names = load_rig(RIG).names
    rec = Recorder(names, domain, kinds=())
    got = {ns: [] for ns in logs}
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    for ns in logs:
        rec.node.create_subscription(Image, f"/{ns}/surround_depth/{names[0]}/depth", got[ns].append, qos)
    try:
        pub = subprocess.Popen([sys.executable, PUBLISHER, "--rig", RIG, "--height", str(H), "--width", str(W),
                                "--wait-for", "2", "--oracle", "--frames", "8"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        while pub.poll() is None:
            rec.spin_for(0.2)
            for ns, node in nodes.items():
                assert node.poll() is None, _read(logs[ns])
        rec.spin_for(3.0)
        assert len(got["front_rig"]) >= 4 and len(got["trailer"]) >= 4, {ns: len(v) for ns, v in got.items()}
        front = [codec.image_to_depth(m) for m in got["front_rig"]]
        trailer = [codec.image_to_depth(m) for m in got["trailer"]]
        assert max(np.nanmax(d[np.isfinite(d)]) for d in trailer) <= 20.0  # its own max_depth ...
        assert max(np.nanmax(d[np.isfinite(d)]) for d in front) > 20.0     # ... not the other's
        topics = {t for t, _ in rec.node.get_topic_names_and_types()}
        assert "/surround_depth/points" not in topics and {"/front_rig/surround_depth/points",
                                                            "/trailer/surround_depth/points"} <= topics
    finally:
        for node in nodes.values():
            stop_process(node)
        rec.close()
