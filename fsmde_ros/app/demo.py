"""`make demo` / `fsmde demo`: the whole product on the embedded default, in its own processes.

1. render a short synthetic surround sequence (a held-out seed of the DDAD-like rig);
2. write it as a rosbag2 (MCAP) with images, CameraInfo and /tf_static;
3. start the real `surround_depth` node (bundled student, backend auto) in its own process;
4. replay the bag into it over DDS with `fsmde play` (another process);
5. record everything the node publishes (this process), write it as a bag;
6. draw the pictures and score the depth against the synthetic lidar ground truth.
Every stage says what it does; a failing stage stops the demo with a message and exit code 1.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from fsmde_ros.errors import FsmdeError
from fsmde_ros.paths import fastdds_profile, resolve_model
from fsmde_ros.service.params import PARAMS_BY_NAME

STAGES = 6


class DemoError(FsmdeError, RuntimeError):
    """A demo stage failed; the message says which and why."""


def _stage(n: int, text: str) -> None:
    print(f"[demo {n}/{STAGES}] {text}", flush=True)


def _save(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


SAFE_DOMAINS = range(0, 102)  # ROS 2's safe DDS domain IDs on Linux (others can collide with ephemeral ports)


def choose_domain(environ: dict | None = None) -> int:
    """The DDS domain of the demo: ROS_DOMAIN_ID when the user set one, else a random one of SAFE_DOMAINS
    (the demo's processes then meet nobody else's)."""
    environ = os.environ if environ is None else environ
    value = environ.get("ROS_DOMAIN_ID", "").strip()
    if value:
        if not value.isdigit() or int(value) > 232:
            raise DemoError(f"ROS_DOMAIN_ID={value!r} is not a DDS domain id (0-232; 0-101 is the safe range)")
        return int(value)
    return random.choice(SAFE_DOMAINS)


def _ros_env(domain: int) -> dict:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               RMW_IMPLEMENTATION="rmw_fastrtps_cpp", PYTHONUNBUFFERED="1",
               FASTDDS_DEFAULT_PROFILES_FILE=str(fastdds_profile()))
    return env


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM (the node shuts down cleanly on it), then SIGKILL if it has not exited within `timeout` s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_demo(out_dir: str | Path = "demo_out", rig: str = "ddad", frames: int = 30, seed: int = 100,
             model: str | Path | None = None, backend: str = "auto", rate: float = 1.0) -> dict:
    """Run the demo; returns the summary (also written to out_dir/summary.json)."""
    from fsmde_ros.data.surround import open_dataset
    from fsmde_ros.model.contract import read_model_info
    from fsmde_ros.ros.bag import write_bag

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        model = resolve_model(model, "--model ")
    except FileNotFoundError as exc:
        raise DemoError(str(exc)) from None
    info = read_model_info(model)
    height, width = info["height"], info["width"]

    _stage(1, f"rendering {frames} frames of the synthetic {rig} world (seed {seed}, {width}x{height}, 6 cameras)")
    dataset = open_dataset(f"synthetic:{rig}?seed={seed}&frames={frames}", height, width)
    items = [dataset[i] for i in range(len(dataset))]

    _stage(2, "writing them as a rosbag2 (MCAP): images, CameraInfo, /tf_static, /tf")
    bag = _fresh(out / "input_bag")
    write_bag(dataset, bag, format="mcap", progress=False)

    recorder = _replay_through_node(bag, dataset.rig, rig, model, backend, rate, out)
    try:
        output_bag = _fresh(out / "output_bag")
        if not recorder.messages:
            raise DemoError(f"the node published nothing; {_see_log(out / 'node.log')}")
        recorder.write_bag(output_bag)
        _stage(6, f"drawing pictures and scoring against the synthetic ground truth into {out}")
        summary = _report(recorder, items, dataset.rig, out, model)
    finally:
        recorder.close()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print_summary(summary, out)
    return summary


def _see_log(path: Path) -> str:
    """Where the node's log is, and its last 2000 characters (for an error message)."""
    return f"see {path}:\n" + path.read_text()[-2000:]


def _fresh(path: Path) -> Path:
    """path, with whatever a previous run left there removed (a bag is never written over)."""
    if path.exists():
        import shutil

        shutil.rmtree(path)
    return path


def _replay_through_node(bag: Path, rig, rig_name: str, model: Path, backend: str, rate: float, out: Path):
    """Stages 3-5: the node in its own process (its log: out/node.log), `fsmde play` of the bag into it, its
    outputs recorded here. Returns the OutputRecorder, open: the caller closes it."""
    domain = choose_domain()
    env = _ros_env(domain)
    log_path = out / "node.log"
    _stage(3, f"starting the surround_depth node ({model.name}, backend {backend}) on DDS domain {domain}; log: {log_path}")
    node_log = open(log_path, "w")
    node = subprocess.Popen([sys.executable, "-m", "fsmde_ros.ros.node", "--ros-args", "-p", f"rig:={rig_name}",
                             "-p", f"model:={model}", "-p", f"backend:={backend}", "-p", "cloud_stride:=2"],
                            env=env, stdout=node_log, stderr=subprocess.STDOUT)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "RMW_IMPLEMENTATION",
                                           "FASTDDS_DEFAULT_PROFILES_FILE")})
    from fsmde_ros.ros.outputs import DIAGNOSTICS_TOPIC
    from fsmde_ros.ros.recorder import OutputRecorder

    def node_failed(what: str) -> DemoError:
        return DemoError(f"the node exited with code {node.returncode}{what}; {_see_log(log_path)}")

    recorder = OutputRecorder(rig)
    try:
        # the node is ready (spinning, its publishers matched with the recorder) once its 1 Hz
        # /diagnostics arrive; replaying earlier would lose the first sets to DDS discovery
        deadline = time.monotonic() + 60
        while not recorder.of(DIAGNOSTICS_TOPIC) and time.monotonic() < deadline:
            recorder.spin_for(0.2)
            if node.poll() is not None:
                raise node_failed(" while starting")
        if not recorder.of(DIAGNOSTICS_TOPIC):
            raise DemoError(f"the node did not come up within 60 s; see {log_path}")
        _stage(4, f"replaying the bag into the node with `fsmde play` (rate {rate})")
        play = subprocess.Popen([sys.executable, "-m", "fsmde_ros", "play", str(bag), "--rate", str(rate),
                                 "--wait-for-subscribers", "1"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        while play.poll() is None:
            recorder.spin_for(0.2)
            if node.poll() is not None:
                play.kill()
                raise node_failed("")
        if play.returncode != 0:
            raise DemoError(f"`fsmde play` failed (exit {play.returncode}):\n{play.stdout.read()[-2000:]}")
        recorder.spin_for(3.0)  # the last sets are still in flight
        _stage(5, f"recording the node's outputs into {out / 'output_bag'}")
    finally:
        stop_process(node)
        node_log.close()
    return recorder


@dataclasses.dataclass
class _Collected:
    """What the demo reads back from the node, sets keyed by their first camera's stamp [ns]."""

    items: dict[int, dict]        # the rendered item of every set sent
    depth: dict[int, np.ndarray]  # the complete sets that came out: depth [6,H,W] m
    last_std: np.ndarray          # depth_std [6,H,W] m of the last complete set (NaN for a camera with none)
    cloud: np.ndarray | None      # the last cloud's points (codec.CLOUD_DTYPE: x, y, z m in base_link, camera)
    latencies_ms: list[float]     # input arrival -> depth out, per set
    pipeline: dict[str, str]      # the last /diagnostics pipeline status
    received: list[float]         # arrival [s] of the last camera's depth images


def _report(recorder, items, rig, out: Path, model: Path) -> dict:
    """Collect the node's outputs, score them against the ground truth, draw them; the summary."""
    got = _collect(recorder, items, rig)
    scores = _score(got, rig)
    _draw(got, rig, out, model)
    backend, dropped = got.pipeline.get("backend", "unknown"), int(got.pipeline.get("sets_dropped", 0))
    first, last_rx = min(got.received), max(got.received)  # output rate over the replay (10 sets/s at rate 1.0)
    latencies, sets_out = got.latencies_ms, len(got.depth)
    return {
        "model": str(model), "backend": backend, "sets_in": len(items), "sets_out": sets_out,
        "sets_dropped": dropped,
        "sets_per_s": (sets_out - 1) / max(1e-6, last_rx - first) if sets_out > 1 else float("nan"),
        "latency_mean_ms": float(np.mean(latencies)) if latencies else float("nan"),
        "latency_p99_ms": float(np.percentile(latencies, 99)) if latencies else float("nan"),
        **scores,
    }


def _set_stamps_ns(item, rig) -> list[int]:
    """Each camera's image stamp [ns] of a rendered set."""
    from fsmde_ros.ros.codec import stamp_ns

    return [stamp_ns(t) for t in item.get("stamps", [item["stamp"]] * len(rig))]


def _collect(recorder, items, rig) -> _Collected:
    """The complete sets the node published (DemoError when none), the last one's depth_std and cloud, the
    latencies and the last pipeline status."""
    from fsmde_ros.ros.codec import cloud_array, image_to_depth
    from fsmde_ros.ros.recorder import depth_sets

    all_stamps = [_set_stamps_ns(item, rig) for item in items]  # per set, each camera's [ns]
    stamps_of = {stamps[0]: stamps for stamps in all_stamps}
    by_stamp = {stamps[0]: item for stamps, item in zip(all_stamps, items)}
    sets, names, topics = depth_sets(recorder), rig.names, recorder.topics
    # depth images carry their own camera's stamp: regroup by the first camera's stamp of the item
    complete = {}
    for stamps in all_stamps:
        got = {name: sets[key][name] for name, key in zip(names, stamps) if key in sets and name in sets[key]}
        if len(got) == len(names):
            complete[stamps[0]] = np.stack([got[n] for n in names])
    if not complete:
        counts = {n: len(recorder.of(topics.depth(n))) for n in names}
        raise DemoError(f"no complete surround set came out of the node (depth images per camera: {counts}; "
                        f"expected stamps of the first camera: {sorted(by_stamp)[:3]}..., got {sorted(sets)[:3]}...)")
    last = max(complete)
    std = []
    for name, key in zip(names, stamps_of[last]):
        recs = [r for r in recorder.of(topics.depth_std(name)) if r.stamp_ns == key]
        std.append(image_to_depth(recorder.decode(recs[0])) if recs else np.full(complete[last].shape[1:], np.nan))
    clouds = recorder.of(topics.points)
    cloud = cloud_array(recorder.decode(max(clouds, key=lambda r: r.stamp_ns))) if clouds else None
    return _Collected(items=by_stamp, depth=complete, last_std=np.stack(std), cloud=cloud,
                      latencies_ms=recorder.latencies_ms(), pipeline=recorder.last_status("pipeline"),
                      received=[r.received for r in recorder.of(topics.depth(names[-1]))])


def _score(got: _Collected, rig) -> dict:
    """Depth vs the lidar ground truth (metric, no scaling, up to the node's max_depth) and the cameras' disagreement in their overlaps."""
    from fsmde_ros.eval.metrics import DepthMetricAccumulator, cross_view_consistency

    # the node publishes +Inf beyond max_depth and -Inf nearer than min_depth (REP-117); score those pixels as the
    # node's bounds (its defaults, which the demo runs with), and only up to its range
    lo, hi = PARAMS_BY_NAME["min_depth"].default, PARAMS_BY_NAME["max_depth"].default
    metrics = DepthMetricAccumulator(rig.names, max_depth=hi)
    consistency = []
    for key, depth in got.depth.items():
        metrics.update(np.nan_to_num(depth, nan=hi, posinf=hi, neginf=lo), got.items[key]["lidar_depth"])
        consistency.append(cross_view_consistency(depth, rig, max_depth=hi)["rel"])
    result = metrics.result()
    return {"abs_rel": result["abs_rel"], "a1": result["a1"], "rmse": result["rmse"],
            "cross_view_disagreement_rel": float(np.nanmean(consistency))}


def _draw(got: _Collected, rig, out: Path, model: Path) -> None:
    """surround_depth.png (the last complete set), bev.png (the last cloud, if one came) and latency.png."""
    from fsmde_ros.viz.figures import bev_figure, latency_figure, surround_depth_figure

    last = max(got.depth)
    item, t0 = got.items[last], last * 1e-9  # the set's first camera's stamp [s]
    _save(out / "surround_depth.png", surround_depth_figure(item["images"], got.depth[last], got.last_std, rig.names,
                                                            [c.yaw_deg for c in rig.cameras],
                                                            title=f"surround_depth node output, {model.name}, "
                                                                  f"set at t = {t0:.2f} s"))
    if got.cloud is not None:
        pts = got.cloud
        _save(out / "bev.png", bev_figure(np.stack([pts["x"], pts["y"], pts["z"]], axis=1), pts["camera"], rig.names))
    _save(out / "latency.png", latency_figure(got.latencies_ms))


def _print_summary(s: dict, out: Path) -> None:
    print(f"""
  surround sets        {s['sets_out']} of {s['sets_in']} published ({s['sets_dropped']} dropped), {s['sets_per_s']:.1f} sets/s
  backend              {s['backend']}
  latency              mean {s['latency_mean_ms']:.0f} ms, p99 {s['latency_p99_ms']:.0f} ms (input arrival -> depth out)
  depth vs lidar GT    abs_rel {s['abs_rel']:.3f}, a1 {s['a1']:.3f}, rmse {s['rmse']:.2f} m (metric, no scaling, <= {PARAMS_BY_NAME['max_depth'].default:g} m)
  cross-view           median disagreement in the overlaps {100 * s['cross_view_disagreement_rel']:.1f} %
  pictures             {out / 'surround_depth.png'}, {out / 'bev.png'}, {out / 'latency.png'}
  bags                 {out / 'input_bag'} (input), {out / 'output_bag'} (node outputs; open in Foxglove or RViz)
""", flush=True)
