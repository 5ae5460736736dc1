"""Bags into the node: `fsmde play` (live, through rclpy) and `fsmde process` (offline, bag to bag).

play: every message is published on its topic with its type, as the CDR bytes stored in the
bag (no deserialisation), at the bag's timing scaled by 1/rate; stamps are left as recorded, so
a loop is a time jump back for subscribers (the node's synchroniser restarts its epoch). Images
go out with sensor-data QoS, /tf_static latched; /clock on request. Message classes come from
the installed ROS 2 Python packages (`<pkg>.msg`): a topic whose package is missing is skipped
with a warning. rclpy is imported only when `play_bag` runs.

process: the node's per-set work (SurroundSynchronizer + SurroundDepthPipeline) over a bag with
`rosbags` only, as fast as the backend runs, into a new bag with the node's output topics.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .data import bag_msgs as bm
from .data.bag import (RIG_KEY, BagError, BagWriter, HelpFormatter, bag_custom_data, bag_format, describe_bag,
                       open_bag)

OUTPUT_NS = "/surround_depth"  # the node's name: its ~/ topics live here
DEFAULT_MODEL = "models/fsmde_default.onnx"  # as node.DEFAULT_MODEL (node.py imports rclpy)
SENSOR_TYPES = {bm.IMAGE, bm.COMPRESSED, bm.CAMERA_INFO, bm.POINTCLOUD2, "sensor_msgs/msg/Imu",
                "sensor_msgs/msg/LaserScan"}
IMAGE_TYPES = {bm.IMAGE, bm.COMPRESSED}
LOOP_JUMP_S = 1.0  # sync.SurroundSynchronizer restarts its epoch on jumps back of >= max(1 s, 10 slop)
CLOCK_PERIOD_S = 0.025  # /clock at 40 Hz while waiting between messages (ros2 bag play's default)


def ensure_fastdds_profile() -> None:
    """Point Fast DDS at the project's profile (large shared-memory segments for images) unless set."""
    if not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        from .paths import config_dir

        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(config_dir() / "fastdds_shm.xml")


def message_class(msgtype: str):
    """The rclpy message class of 'pkg/msg/Name' (rosidl_runtime_py when present, else `pkg.msg`)."""
    try:
        from rosidl_runtime_py.utilities import get_message
    except ImportError:
        get_message = None
    if get_message is not None:
        try:
            return get_message(msgtype)
        except (AttributeError, ValueError, ImportError):
            pass  # the import below says why
    pkg, _, name = msgtype.partition("/msg/")
    if not pkg or not name:
        raise ImportError(f"{msgtype!r} is not a message type name (pkg/msg/Name)")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except ModuleNotFoundError:
        raise ImportError(f"the Python package {pkg!r} is not installed") from None
    except AttributeError:
        raise ImportError(f"{pkg}.msg has no message {name!r}") from None


def qos_kind(topic: str, msgtype: str, offered: Sequence[Any] = ()) -> str:
    """'latched' (/tf_static or offered transient_local), 'sensor' (images, infos, clouds) or 'reliable'."""
    if topic == "/tf_static" or any(getattr(q.durability, "name", "") == "TRANSIENT_LOCAL" for q in offered):
        return "latched"
    return "sensor" if msgtype in SENSOR_TYPES else "reliable"


# -- play: timing (ROS-free) --------------------------------------------------------------------------
@dataclasses.dataclass
class PlayStats:
    published: int = 0
    passes: int = 0
    seconds: float = 0.0


def play_messages(passes: Callable[[], Iterable[tuple[Any, int, bytes]]], start_ns: int,
                  publish: Callable[[Any, int, bytes], None], rate: float = 1.0, loop: bool = False,
                  clock: Callable[[int], None] | None = None, stop: Callable[[], bool] = lambda: False,
                  now: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                  stats: PlayStats | None = None) -> PlayStats:
    """Publish `passes()`' (connection, log_ns, raw) at wall time (log_ns - start_ns) / rate after each
    pass begins; again from the start while `loop`. `clock(ns)` gets the bag time as it advances.
    `stats` (returned) is updated as it goes, so it is current even when interrupted."""
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    stats = stats if stats is not None else PlayStats()
    t_begin = now()
    while not stop():
        t0, any_msg = now(), False
        for conn, ns, raw in passes():
            target = t0 + (ns - start_ns) * 1e-9 / rate
            while (left := target - now()) > 0 and not stop():
                sleep(min(left, CLOCK_PERIOD_S) if clock else left)
                if clock:
                    clock(start_ns + int(min(now() - t0, target - t0) * rate * 1e9))
            if stop():
                break
            if clock:
                clock(ns)
            publish(conn, ns, raw)
            stats.published += 1
            stats.seconds = now() - t_begin
            any_msg = True
        stats.passes += 1
        if not loop or not any_msg:
            break
    stats.seconds = now() - t_begin
    return stats


# -- play: rclpy ----------------------------------------------------------------------------------------
def play_bag(bag: str | Path, rate: float = 1.0, loop: bool = False, start_offset: float = 0.0,
             topics: Sequence[str] | None = None, clock: bool = False, wait_for_subscribers: int = 0,
             wait_timeout: float = 30.0, reliability: str = "best_effort",
             log: Callable[[str], None] = print) -> PlayStats:
    """Replay a bag through rclpy (see the module doc); returns what was published. Ctrl-C stops cleanly."""
    if not rate > 0:
        raise ValueError(f"--rate must be > 0, got {rate}")
    if start_offset < 0:
        raise ValueError(f"--start-offset must be >= 0 s, got {start_offset}")
    ensure_fastdds_profile()
    reader = open_bag(bag)
    try:
        conns = reader.connections
        if topics:
            unknown = sorted(set(topics) - {c.topic for c in conns})
            if unknown:
                raise BagError(f"bag {bag} has no topic {', '.join(unknown)}; its topics: "
                               f"{', '.join(sorted({c.topic for c in conns}))}")
            conns = [c for c in conns if c.topic in set(topics)]
        start_ns = reader.start_time + int(round(start_offset * 1e9))
        if start_ns > reader.end_time:
            raise ValueError(f"--start-offset {start_offset:g} s is past the end of the bag "
                             f"({reader.duration * 1e-9:.3f} s long)")
        if loop and reader.end_time - start_ns < LOOP_JUMP_S * 1e9:
            log(f"[play] warning: looping less than {LOOP_JUMP_S:g} s of bag: the node's synchroniser takes a "
                "jump back that small for late messages, not a loop, and drops the repeats")
        return _play_rclpy(reader, conns, rate, loop, start_ns, clock, wait_for_subscribers, wait_timeout,
                           reliability, log)
    finally:
        reader.close()


def _play_rclpy(reader, conns, rate, loop, start_ns, clock, wait_for, wait_timeout, reliability, log) -> PlayStats:
    import rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions

    def on_term(signum, frame):
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if main_thread else None  # SIGTERM stops cleanly too
    context = rclpy.Context()  # private: play_bag works beside other rclpy users in the process
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)  # Ctrl-C: KeyboardInterrupt
    node = rclpy.create_node("fsmde_play", context=context)
    stats = PlayStats()
    try:
        pubs, played, latched = {}, [], []
        sensor_rel = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
        counts = {t: info.msgcount for t, info in reader.topics.items()}
        skipped = set()  # (topic, type) already warned about: one warning each, however many connections
        for conn in conns:
            if conn.topic in pubs:
                played.append(conn)
                continue
            if (conn.topic, conn.msgtype) in skipped:
                continue
            try:
                cls = message_class(conn.msgtype)
            except ImportError as exc:
                skipped.add((conn.topic, conn.msgtype))
                log(f"[play] warning: skipping {conn.topic} ({conn.msgtype}): {exc}")
                continue
            kind = qos_kind(conn.topic, conn.msgtype, getattr(conn.ext, "offered_qos_profiles", ()))
            if kind == "latched":
                qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, counts.get(conn.topic, 1)),
                                 reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
                latched.append(conn)
            elif kind == "sensor":
                qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=sensor_rel)
            else:
                qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
            pubs[conn.topic] = node.create_publisher(cls, conn.topic, qos)
            played.append(conn)
        if not played:
            raise BagError("nothing to play: no topic of the bag has its message package installed")
        clock_cb = None
        if clock:
            from rosgraph_msgs.msg import Clock

            clock_pub = node.create_publisher(Clock, "/clock", 10)

            def clock_cb(ns: int) -> None:
                msg = Clock()
                msg.clock.sec, msg.clock.nanosec = int(ns // 1_000_000_000), int(ns % 1_000_000_000)
                clock_pub.publish(msg)

        image_topics = sorted({c.topic for c in played if c.msgtype in IMAGE_TYPES})
        try:
            if wait_for > 0 and image_topics:
                _wait_for_subscribers(pubs, image_topics, wait_for, wait_timeout, log)
            # latched messages before the start offset still belong to the replay (static transforms)
            early = [c for c in latched if start_ns > reader.start_time]
            for conn, _, raw in (reader.messages(connections=early, stop=start_ns) if early else ()):
                pubs[conn.topic].publish(bytes(raw))
            log(f"[play] {len(pubs)} topics from bag time {start_ns * 1e-9:.3f} s, rate {rate:g}"
                + (", looping (Ctrl-C stops)" if loop else ""))
            play_messages(lambda: reader.messages(connections=played, start=start_ns), start_ns,
                          lambda conn, ns, raw: pubs[conn.topic].publish(bytes(raw)), rate, loop, clock_cb,
                          stop=lambda: not context.ok(), stats=stats)
            time.sleep(0.2)  # let the last messages leave before the participant goes
        except KeyboardInterrupt:
            log("[play] stopped")
        log(f"[play] published {stats.published} messages in {stats.passes} pass(es), {stats.seconds:.2f} s")
        return stats
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _wait_for_subscribers(pubs, topics, count, timeout, log) -> None:
    deadline = time.monotonic() + timeout
    waiting = topics
    while waiting and time.monotonic() < deadline:
        waiting = [t for t in topics if pubs[t].get_subscription_count() < count]
        time.sleep(0.05)
    if waiting:
        log(f"[play] after {timeout:g} s, fewer than {count} subscriber(s) on {', '.join(waiting)}; playing anyway")
    else:
        time.sleep(0.5)  # matched here; give the subscribers' side a moment to match us too


# -- process: offline bag -> bag ------------------------------------------------------------------------
# The node's parameters that shape offline processing (the rest are about live topics and QoS).
PROCESS_PARAMS = ("model", "backend", "precision", "engine_cache_dir", "threads", "slop", "queue_size",
                  "camera_timeout", "allow_partial", "min_depth", "max_depth", "cloud_stride", "cloud_overlap", "max_depth_std_ratio",
                  "publish_depth", "publish_std", "publish_cloud")
PROCESS_BACKENDS = ("auto", "tensorrt", "onnxruntime")


@dataclasses.dataclass
class ProcessSummary:
    out: Path
    backend: str
    sets: int = 0            # sets processed and written
    partial_sets: int = 0    # ... of which with a camera left out (allow_partial)
    failed_sets: int = 0     # sets none of whose images could be decoded
    images: int = 0          # image messages read
    unmatched: int = 0       # images in no set (sync drops, a trailing incomplete set)
    seconds: float = 0.0     # wall time
    bag_seconds: float = 0.0  # stamp span of the processed sets


def _resolve_model(model: str) -> Path:
    from .paths import share_dir

    path = Path(model).expanduser() if model else share_dir() / DEFAULT_MODEL
    if not path.is_file():
        raise FileNotFoundError(f"model {path} not found ({'check the path' if model else 'no bundled default'}); "
                                "export one with `fsmde export` and pass --model /path/to/student.onnx")
    return path


def _camera_topics(reader, rig, compressed: bool | None, allow_partial: bool, bag) -> dict[str, int]:
    """image topic -> camera index: raw Image topics, or CompressedImage on <image_topic>/compressed."""
    have = {t: info.msgtype for t, info in reader.topics.items()}
    raw = {c.image_topic: i for i, c in enumerate(rig.cameras) if have.get(c.image_topic) == bm.IMAGE}
    comp = {c.image_topic + "/compressed": i for i, c in enumerate(rig.cameras)
            if have.get(c.image_topic + "/compressed") == bm.COMPRESSED}
    use_comp = compressed if compressed is not None else len(comp) > len(raw)
    found = comp if use_comp else raw
    if len(found) < (1 if allow_partial else len(rig)):
        kind = bm.COMPRESSED if use_comp else bm.IMAGE
        missing = [c.image_topic + ("/compressed" if use_comp else "") for i, c in enumerate(rig.cameras)
                   if i not in found.values()]
        listing = ", ".join(f"{t} ({m})" for t, m in sorted(have.items())) or "none"
        raise BagError(f"bag {bag} lacks the image topics of rig {rig.name!r}: no {kind} on {', '.join(missing)}. "
                       f"The bag has: {listing}. Pass the rig that recorded it with --rig"
                       + ("" if allow_partial else " (or --allow-partial to run without the missing cameras)"))
    return found


class _OfflineNode:
    """The node's per-set work, writing into a bag instead of publishing."""

    def __init__(self, rig, pipeline, backend, writer: BagWriter, p: dict, summary: ProcessSummary):
        self.rig, self.pipeline, self.backend, self.writer = rig, pipeline, backend, writer
        self.p, self.summary = p, summary
        self.info: list[tuple | None] = [None] * len(rig)
        self.bad_inputs = 0
        self.stage_ms: dict[str, list[float]] = {}
        self.first_ns = self.last_ns = None
        self.t0 = time.perf_counter()

    def on_info(self, i: int, msg) -> None:
        try:
            self.info[i] = (bm.camera_info_K(msg), msg.width, msg.height)
        except ValueError:
            self.bad_inputs += 1

    def _intrinsics(self, i: int, width: int, height: int):
        from .rig import scale_intrinsics

        if self.info[i] is None:
            return None  # the pipeline scales the rig preset
        K, w, h = self.info[i]
        return K if (w, h) == (width, height) or not w else scale_intrinsics(K, width / w, height / h)

    def on_set(self, synced) -> None:
        images, Ks, headers = [], [], []
        for i, msg in enumerate(synced.messages):
            rgb = None
            if msg is not None:
                try:
                    rgb = bm.image_to_rgb(msg)
                except ValueError:
                    self.bad_inputs += 1
            images.append(rgb)
            Ks.append(self._intrinsics(i, rgb.shape[1], rgb.shape[0]) if rgb is not None else None)
            headers.append(msg.header if rgb is not None else None)
        if all(img is None for img in images):
            self.summary.failed_sets += 1
            return
        result = self.pipeline.run(images, Ks)
        for k, v in result.timings_ms.items():
            self.stage_ms.setdefault(k, []).append(v)
        w, h, p = self.backend.width, self.backend.height, self.p
        for i, hdr in enumerate(headers):
            if hdr is None:
                continue
            ns, base = bm.header_ns(hdr), f"{OUTPUT_NS}/{self.rig.names[i]}"
            if p["publish_depth"]:
                self.writer.write(base + "/depth", bm.depth_image(result.depth[i], hdr), ns)
                self.writer.write(base + "/camera_info", bm.camera_info(result.K[i], w, h, hdr), ns)
            if p["publish_std"]:
                self.writer.write(base + "/depth_std", bm.depth_image(result.depth_std[i], hdr), ns)
        set_ns = max(bm.header_ns(hdr) for hdr in headers if hdr is not None)
        if p["publish_cloud"] and result.cloud is not None:
            cloud = bm.surround_cloud(result.cloud, bm.header(set_ns, self.rig.base_frame))
            self.writer.write(OUTPUT_NS + "/points", cloud, set_ns)
        self.first_ns = set_ns if self.first_ns is None else self.first_ns
        self.last_ns = set_ns
        self.summary.sets += 1
        self.summary.partial_sets += bool(synced.partial)

    def write_diagnostics(self, sync, now: float) -> None:
        """One DiagnosticArray on /diagnostics, like the node's, at the last set's stamp."""
        from .diagnostics import OK, WARN

        s, wall = self.summary, time.perf_counter() - self.t0
        span = (self.last_ns - self.first_ns) * 1e-9 if self.first_ns is not None else 0.0
        values = {"mode": "offline (fsmde process)", "backend": self.backend.name, "precision": self.backend.precision,
                  "sets_published": s.sets, "partial_sets": s.partial_sets, "failed_sets": s.failed_sets,
                  "bad_inputs": self.bad_inputs, "processing rate [sets/s]": f"{s.sets / max(wall, 1e-9):.2f}",
                  "bag rate [sets/s]": f"{(s.sets - 1) / span:.2f}" if span > 0 else "n/a",
                  **{f"{k} mean [ms]": f"{sum(v) / len(v):.1f}" for k, v in self.stage_ms.items()},
                  **{f"sync {k}": v for k, v in dataclasses.asdict(sync.stats).items()}}
        level = WARN if not s.sets or s.failed_sets or self.bad_inputs else OK
        statuses = [("surround_depth: pipeline", level, f"offline: {s.sets} sets", values)]
        for st in sync.states(now):
            statuses.append((f"surround_depth: camera {st.name}", OK if st.used else WARN,
                             "ok" if st.used else "no sets",
                             {"received": st.received, "used": st.used, "dropped": st.dropped}))
        ns = self.last_ns if self.last_ns is not None else bm.stamp_to_ns(now)
        self.writer.write("/diagnostics", bm.diagnostic_array(ns, statuses, "fsmde process"), ns)


def process_bag(bag: str | Path, out: str | Path, rig: str | None = None, params: dict | None = None,
                compressed: bool | None = None, format: str | None = None, copy_inputs: bool = False,
                diagnostics_every: int = 100, limit: int | None = None, progress: bool = True) -> ProcessSummary:
    """Run the node's pipeline over a bag's camera sets into a new bag (see the module doc).

    rig: preset name or YAML (default: the rig named in the bag's metadata); params: node
    parameters (PROCESS_PARAMS, validated like the node's); compressed: read CompressedImage
    topics (None = whichever the bag has); format: output storage (default: the input's).
    """
    from tqdm import tqdm

    from .params import validate_params
    from .pipeline import SurroundDepthPipeline
    from .rig import load_rig
    from .runtime import create_backend
    from .sync import SurroundSynchronizer

    if Path(out).exists():
        raise BagError(f"{out} exists already; bags are never overwritten: remove it or choose another --out")
    params = dict(params or {})
    rig = rig or params.pop("rig", None)
    p = validate_params(params)
    if p["backend"] not in PROCESS_BACKENDS:
        raise ValueError(f"fsmde process runs exported models: backend must be one of {', '.join(PROCESS_BACKENDS)}")
    reader = open_bag(bag)
    try:
        rig_name = rig or bag_custom_data(reader).get(RIG_KEY)
        if not rig_name:
            raise BagError(f"bag {bag} does not say which rig recorded it (no '{RIG_KEY}' in its metadata); pass --rig")
        rig_obj = load_rig(rig_name)
        images = _camera_topics(reader, rig_obj, compressed, p["allow_partial"], bag)
        infos = {c.info_topic: i for i, c in enumerate(rig_obj.cameras)}
        copied = {"/tf_static", "/tf"} | (set(images) | set(infos) if copy_inputs else set())
        wanted = [c for c in reader.connections if c.topic in images or c.topic in infos or c.topic in copied]
        model = _resolve_model(p["model"])
        try:
            backend = create_backend(p["backend"], model, precision=p["precision"], threads=p["threads"],
                                     engine_cache_dir=str(Path(p["engine_cache_dir"]).expanduser()))
        except Exception as exc:  # noqa: BLE001 - any backend failure at start is a configuration problem
            raise RuntimeError(f"cannot start backend {p['backend']!r} with {model}: {exc}") from None
        pipeline = SurroundDepthPipeline(backend, rig_obj, p["min_depth"], p["max_depth"], p["cloud_stride"],
                                         p["max_depth_std_ratio"], make_cloud=p["publish_cloud"],
                                         cloud_overlap=p["cloud_overlap"])
        sync = SurroundSynchronizer(rig_obj.names, p["slop"], p["queue_size"], p["camera_timeout"], p["allow_partial"])
        counts = [info.msgcount for t, info in reader.topics.items() if t in images]
        total = min(counts) if not p["allow_partial"] else max(counts)
        total = total if limit is None else min(total, int(limit))
        summary = ProcessSummary(out=Path(out), backend=backend.name)
        with BagWriter(out, format or bag_format(bag), {RIG_KEY: rig_obj.name}) as writer:
            work = _OfflineNode(rig_obj, pipeline, backend, writer, p, summary)
            now = 0.0
            with tqdm(total=total, desc=f"process {Path(bag).name}", unit="set", disable=not progress) as bar:
                for conn, ns, raw in reader.messages(connections=wanted):
                    if conn.topic in copied:
                        writer.copy(conn, ns, raw)
                    if conn.topic in infos:
                        work.on_info(infos[conn.topic], bm.deserialize(raw, conn.msgtype))
                    elif conn.topic in images:
                        msg, now = bm.deserialize(raw, conn.msgtype), ns * 1e-9
                        summary.images += 1
                        for synced in sync.add(images[conn.topic], bm.header_ns(msg.header) * 1e-9, msg, now):
                            if limit is not None and summary.sets >= limit:
                                break
                            work.on_set(synced)
                            bar.update(1)
                            if diagnostics_every and summary.sets % diagnostics_every == 0:
                                work.write_diagnostics(sync, now)
                    if limit is not None and summary.sets >= limit:
                        break
            work.write_diagnostics(sync, now)
        summary.unmatched = summary.images - sum(st.used for st in sync.states(now))
        summary.seconds = time.perf_counter() - work.t0
        summary.bag_seconds = ((work.last_ns - work.first_ns) * 1e-9) if work.first_ns is not None else 0.0
        return summary
    finally:
        reader.close()


# -- CLI --------------------------------------------------------------------------------------------------
def _cmd_play(args: argparse.Namespace) -> int:
    play_bag(args.bag, rate=args.rate, loop=args.loop, start_offset=args.start_offset, topics=args.topics,
             clock=args.clock, wait_for_subscribers=args.wait_for_subscribers, wait_timeout=args.wait_timeout,
             reliability=args.qos_reliability)
    return 0


def _cmd_process(args: argparse.Namespace) -> int:
    params = {name: getattr(args, name) for name in PROCESS_PARAMS}
    s = process_bag(args.bag, args.out, rig=args.rig, params=params, compressed=args.compressed, format=args.format,
                    copy_inputs=args.copy_inputs, diagnostics_every=args.diagnostics_every, limit=args.limit,
                    progress=not args.no_progress)
    print(f"[process] {s.sets} sets ({s.partial_sets} partial, {s.failed_sets} failed, {s.unmatched} images in no set) "
          f"in {s.seconds:.1f} s with {s.backend}: {s.sets / max(s.seconds, 1e-9):.1f} sets/s")
    print(describe_bag(s.out))
    if not s.sets:
        print("[process] warning: no complete surround set; check --slop and that all cameras are in the bag",
              file=sys.stderr)
    return 0


def _add_param(parser: argparse.ArgumentParser, name: str, choices: Sequence[str] | None = None) -> None:
    """An option for a node parameter, typed and documented from the node's parameter table."""
    from .params import PARAMS_BY_NAME

    spec = PARAMS_BY_NAME[name]
    flag = "--" + name.replace("_", "-")
    if isinstance(spec.default, bool):
        parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=spec.default,
                            help=spec.description)
    else:
        parser.add_argument(flag, dest=name, type=type(spec.default), default=spec.default,
                            choices=choices or spec.choices, help=spec.description)


def register(subparsers: Any) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Add `fsmde play` and `fsmde process` to an argparse subparsers object."""
    fmt = HelpFormatter
    play = subparsers.add_parser("play", help="replay a rosbag2 through rclpy (where `ros2 bag play` is missing)",
                                 description="Publish a bag's messages with their original timing through rclpy, "
                                             "using the project's Fast DDS profile.", formatter_class=fmt)
    play.add_argument("bag", type=Path, help="rosbag2 directory (MCAP or sqlite3)")
    play.add_argument("--rate", type=float, default=1.0, help="playback speed factor (2 = twice as fast)")
    play.add_argument("--loop", action="store_true", help="start again at the beginning when the bag ends")
    play.add_argument("--start-offset", type=float, default=0.0, help="skip the bag's first S seconds")
    play.add_argument("--topics", nargs="+", help="play only these topics (default: all)")
    play.add_argument("--clock", action="store_true", help="publish the bag time on /clock (use_sim_time)")
    play.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                      help="before starting, wait until each image topic has N subscribers")
    play.add_argument("--wait-timeout", type=float, default=30.0, help="[s] give up waiting and play anyway")
    play.add_argument("--qos-reliability", choices=("best_effort", "reliable"), default="best_effort",
                      help="reliability of the sensor topics (images, infos, clouds); /tf_static is always latched")
    play.set_defaults(func=_cmd_play)

    proc = subparsers.add_parser("process", help="run the node's pipeline over a bag offline into a new bag",
                                 description="Group the rig's six cameras into sets, run the depth model on each "
                                             f"as fast as the backend allows, and write {OUTPUT_NS}/<camera>/depth, "
                                             "depth_std, camera_info, the fused cloud, /diagnostics and the input's "
                                             "/tf_static and /tf into a new bag.", formatter_class=fmt)
    proc.add_argument("bag", type=Path, help="input rosbag2 directory")
    proc.add_argument("--out", type=Path, required=True, help="output bag directory (must not exist)")
    proc.add_argument("--rig", help="rig preset or YAML (default: the rig named in the bag's metadata)")
    proc.add_argument("--compressed", action=argparse.BooleanOptionalAction, default=None,
                      help="read CompressedImage on <image_topic>/compressed (default: whichever the bag has)")
    proc.add_argument("--format", choices=("mcap", "sqlite3"), help="output storage (default: the input's)")
    proc.add_argument("--copy-inputs", action="store_true", help="also copy the camera images and infos")
    proc.add_argument("--diagnostics-every", type=int, default=100, metavar="N",
                      help="write /diagnostics every N sets (and at the end; 0 = only at the end)")
    proc.add_argument("--limit", type=int, help="process the first N sets only")
    proc.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = proc.add_argument_group("node parameters (as the surround_depth node's)")
    for name in PROCESS_PARAMS:
        _add_param(g, name, PROCESS_BACKENDS if name == "backend" else None)
    proc.set_defaults(func=_cmd_process)
    return play, proc


def main(argv: list[str] | None = None) -> int:
    """`python -m fsmde_ros.replay play|process ...`: the `fsmde` command line, same parsing and errors."""
    from .cli import main as fsmde_main

    return fsmde_main(argv)


if __name__ == "__main__":
    sys.exit(main())
