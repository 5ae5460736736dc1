"""`fsmde play`: a bag into live topics through rclpy, where `ros2 bag play` is missing.

Every message is published on its topic with its type, as the CDR bytes stored in the bag (no
deserialisation), at the bag's timing scaled by 1/rate; stamps are left as recorded, so a loop
is a time jump back for subscribers (the node's synchroniser restarts its epoch). Images go out
with sensor-data QoS, /tf_static latched; /clock on request. Message classes come from the
installed ROS 2 Python packages (`<pkg>.msg`): a topic whose package is missing is skipped with
a warning. rclpy is imported only when `play_bag` runs.
"""
from __future__ import annotations

import dataclasses
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from fsmde_ros.errors import ConfigError
from fsmde_ros.paths import use_fastdds_profile
from fsmde_ros.ros import codec
from fsmde_ros.ros.bag import STAMP_OFFSET_KEY, BagError, bag_custom_data, open_bag
from fsmde_ros.service.params import RELIABILITY_CHOICES

SENSOR_TYPES = {codec.IMAGE, codec.COMPRESSED, codec.CAMERA_INFO, codec.POINTCLOUD2, "sensor_msgs/msg/Imu",
                "sensor_msgs/msg/LaserScan"}
IMAGE_TYPES = {codec.IMAGE, codec.COMPRESSED}
CLOCK_PERIOD_S = 0.025  # /clock at 40 Hz while waiting between messages (ros2 bag play's default)


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
    return codec.rclpy_class(msgtype)


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
        raise ConfigError(f"rate must be > 0, got {rate}")
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
             wait_timeout: float = 30.0, reliability: str = RELIABILITY_CHOICES[0],
             log: Callable[[str], None] = print) -> PlayStats:
    """Replay a bag through rclpy (see the module doc); returns what was published. Ctrl-C stops cleanly."""
    if not rate > 0:
        raise ConfigError(f"--rate must be > 0, got {rate}")
    if start_offset < 0:
        raise ConfigError(f"--start-offset must be >= 0 s, got {start_offset}")
    use_fastdds_profile()
    reader = open_bag(bag)
    try:
        conns = reader.connections
        if topics:
            unknown = sorted(set(topics) - {c.topic for c in conns})
            if unknown:
                raise BagError(f"bag {bag} has no topic {', '.join(unknown)}; its topics: "
                               f"{', '.join(sorted({c.topic for c in conns}))}")
            conns = [c for c in conns if c.topic in set(topics)]
        offset_ns = int(bag_custom_data(reader).get(STAMP_OFFSET_KEY, 0) or 0)
        if offset_ns:
            log(f"[play] the bag's stamps are re-based: the recording's clock is {offset_ns * 1e-9:.0f} s later "
                f"(metadata {STAMP_OFFSET_KEY}); played as stored")
        start_ns = reader.start_time + int(round(start_offset * 1e9))
        if start_ns > reader.end_time:
            raise ConfigError(f"--start-offset {start_offset:g} s is past the end of the bag "
                             f"({reader.duration * 1e-9:.3f} s long)")
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
            build = codec.MessageBuilder.rclpy()

            def clock_cb(ns: int) -> None:
                clock_pub.publish(Clock(clock=build.time(ns)))

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
