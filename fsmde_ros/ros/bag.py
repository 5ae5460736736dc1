"""Surround datasets as rosbag2 (MCAP or sqlite3), written with `rosbags` (no ROS installation needed).

`write_bag` turns any SurroundDataset (synthetic, DDAD, nuScenes) into a bag that `ros2 bag play`
(or `fsmde play`) replays into the node:
- per camera, on the rig's topics: `sensor_msgs/Image` rgb8 (or `CompressedImage` JPEG on
  `<image_topic>/compressed`) and `sensor_msgs/CameraInfo`, stamped with the camera's own
  time (the item's `stamps[i]` when the dataset has per-camera stamps, else its `stamp`) and the
  camera's optical frame;
- `/tf_static`: base_link -> each camera optical frame, offered transient-local (latched) in the
  metadata so `ros2 bag play` republishes it latched; written at the first set and again where
  the mounts change (a dataset of several scenes or vehicles);
- `/tf`: world -> base_link per set when the dataset has `T_world_base`;
- optionally `/lidar/points` (PointCloud2 x, y, z in base_link): the item's `lidar_points`,
  else its `lidar_depth` unprojected.
Log times equal header stamps, so replay keeps the sensors' timing. The metadata also names
the rig (`custom_data: fsmde_ros.rig`), which `fsmde process` uses when no --rig is given.

Bad input: a set whose data file is missing or corrupt (the dataset raises FileNotFoundError or
`CorruptFileError`, both naming the file) is skipped with a warning naming it (`skip_bad=True`,
the default; `fsmde bag --strict` stops instead), the skips are counted and reported at the end,
and the conversion goes on; any other error stops it and removes the half-written bag. Ctrl-C
(KeyboardInterrupt) closes the bag properly instead: metadata.yaml is written and the sets written
so far stay readable; the interrupt still propagates (`fsmde bag` then exits 130).
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fsmde_ros.errors import FsmdeError
from fsmde_ros.ros import codec

BAG_MESSAGES = codec.MessageBuilder.bags()

FORMATS = ("mcap", "sqlite3")
WORLD_FRAME = "world"
LIDAR_TOPIC = "/lidar/points"
RIG_KEY = "fsmde_ros.rig"  # custom_data key naming the rig preset that recorded the bag
# custom_data key: what was subtracted from every stamp of the bag [ns] (0 or absent: the recording's own clock)
STAMP_OFFSET_KEY = "fsmde_ros.stamp_offset_ns"
MAX_STAMP_S = 2**31 - 1  # builtin_interfaces/Time.sec is an int32 (and rosbag2's int64 ns log time ends in 2262)
REBASED_START_S = 1_000_000_000  # a re-based bag starts here (2001-09-09): far from 0, which ROS reads as "unset"
BAG_VERSION = 9  # rosbag2 metadata version of Iron and later (Jazzy, Kilted read it)


class BagError(FsmdeError, ValueError):
    """A bag cannot be written or read as asked; the message says what and how to fix it."""


# -- QoS profiles offered in bag metadata (what `ros2 bag play` republishes with) -------------------
def offered_qos(durability: str = "volatile", reliability: str = "reliable", depth: int = 10):
    """A rosbags Qos (keep-last) for `offered_qos_profiles`."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability[reliability.upper()], QosDurability[durability.upper()],
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


def latched_qos(depth: int = 1):
    """transient_local + reliable: late subscribers (tf listeners) still get /tf_static."""
    return offered_qos("transient_local", "reliable", depth)


def stamp_offset_s(stamp_s: float) -> int:
    """Whole seconds to subtract from every stamp of a bag whose first set is at `stamp_s` [s]: 0 for clocks
    ROS messages can carry; for one they cannot (DDAD's reads the year 2464, past int32 seconds), the offset
    that moves the first set to REBASED_START_S. Whole seconds keep the relative timing exact."""
    if 0 <= stamp_s < MAX_STAMP_S - 10 * 365 * 86400:  # ten years of headroom for a long recording
        return 0
    return int(np.floor(stamp_s)) - REBASED_START_S


def camera_stamps(item: dict, views: int) -> np.ndarray:
    """Per-camera stamps [views] in seconds: the item's `stamps` when present, else `stamp` for all."""
    stamps = item.get("stamps")
    if stamps is None:
        return np.full(views, float(item["stamp"]))
    stamps = np.asarray(stamps, dtype=np.float64).reshape(-1)
    if stamps.shape != (views,):
        raise BagError(f"item {item.get('index', '?')}: stamps has {stamps.size} values for {views} cameras")
    return stamps


def _lidar_points(item: dict) -> np.ndarray:
    """[M,3] lidar points in base_link: `lidar_points`, else `lidar_depth` unprojected (camera-visible returns)."""
    if item.get("lidar_points") is not None:
        return np.asarray(item["lidar_points"], dtype=np.float32).reshape(-1, 3)
    from fsmde_ros.geometry.cloud import fuse_cloud

    return fuse_cloud(item["lidar_depth"], item["K"], item["T_base_cam"], stride=1, min_depth=1e-3, max_depth=1e6).xyz


class BagWriter:
    """A rosbags Writer whose connections are made on first use (topic + type), as a context
    manager that closes the bag (metadata.yaml) on success and on Ctrl-C (KeyboardInterrupt: what is
    written is kept, readable), and removes it again on any other failure."""

    def __init__(self, out: str | Path, format: str = FORMATS[0], custom_data: dict[str, str] | None = None):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if format not in FORMATS:
            raise BagError(f"bag format must be one of {', '.join(FORMATS)}, got {format!r}")
        self.path = Path(out)
        if self.path.exists():
            raise BagError(f"{self.path} exists already; bags are never overwritten: "
                           "remove it or choose another output")
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin[format.upper()])
        for k, v in (custom_data or {}).items():
            self._writer.set_custom_data(k, str(v))
        self._conns: dict[tuple[str, str], Any] = {}

    def __enter__(self) -> "BagWriter":
        self._writer.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self._writer.close()
            return
        try:
            self._writer.abort()
        finally:
            shutil.rmtree(self.path, ignore_errors=True)

    def _connection(self, topic: str, msgtype: str, qos, msgdef: str | None = None, digest: str | None = None):
        key = (topic, msgtype)
        if key not in self._conns:
            # one Qos (a NamedTuple), a list of them, or None for reliable/volatile/keep-last 10
            profiles = list(qos) if isinstance(qos, list) else [qos if qos is not None else offered_qos()]
            if msgdef and digest:
                self._conns[key] = self._writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=digest,
                                                               offered_qos_profiles=profiles)
            else:
                self._conns[key] = self._writer.add_connection(topic, msgtype, typestore=codec.typestore(),
                                                               offered_qos_profiles=profiles)
        return self._conns[key]

    def set_custom_data(self, key: str, value: str) -> None:
        """A metadata custom_data entry (written when the bag closes)."""
        self._writer.set_custom_data(key, str(value))

    def add_topic(self, topic: str, msgtype: str, qos=None) -> None:
        """Declare a topic now (so it is listed even when no message comes)."""
        self._connection(topic, msgtype, qos)

    def write(self, topic: str, msg, ns: int, qos=None) -> None:
        """Serialise a typestore message onto `topic` at log time `ns`."""
        self._writer.write(self._connection(topic, msg.__msgtype__, qos), int(ns), codec.to_cdr(msg))

    def copy(self, connection, ns: int, raw: bytes) -> None:
        """Copy a raw message from another bag's connection (same type, definition and offered QoS)."""
        ext = getattr(connection, "ext", None)
        qos = list(getattr(ext, "offered_qos_profiles", None) or []) or None
        msgdef = connection.msgdef.data if connection.msgdef is not None else None
        conn = self._connection(connection.topic, connection.msgtype, qos, msgdef, connection.digest)
        self._writer.write(conn, int(ns), raw)


@dataclasses.dataclass
class WriteReport:
    """What `write_bag` wrote: sets written, and (index, reason naming the file) of the sets skipped."""

    written: int = 0
    skipped: list = dataclasses.field(default_factory=list)
    stamp_offset_s: int = 0  # subtracted from every stamp (see stamp_offset_s)


def _bad_input_errors() -> tuple:
    from fsmde_ros.data.dataset_files import CorruptFileError

    return (FileNotFoundError, CorruptFileError)


def write_bag(dataset, out_dir: str | Path, format: str = FORMATS[0], compressed: bool = False, jpeg_quality: int = 90,
              with_lidar: bool = False, limit: int | None = None, progress: bool = True, skip_bad: bool = True,
              report: WriteReport | None = None) -> Path:
    """Write `dataset` (a SurroundDataset, first `limit` sets) as a rosbag2 directory; returns its path.

    Refuses to overwrite: `out_dir` must not exist. skip_bad: a set whose reading raises
    FileNotFoundError or CorruptFileError (a missing or corrupt data file) is skipped with a warning
    naming the file and counted; the skips are reported in one warning at the end (and in `report`,
    when given). Other failures (and bad files with skip_bad=False, or every set bad) leave nothing
    behind; Ctrl-C keeps the sets written so far in a properly closed bag and re-raises.
    """
    from tqdm import tqdm

    if not 1 <= int(jpeg_quality) <= 100:
        raise BagError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    rig = dataset.rig
    n = len(dataset) if limit is None else min(len(dataset), int(limit))
    if n < 1:
        raise BagError(f"nothing to write: the dataset has {len(dataset)} sets (limit {limit})")
    report = report if report is not None else WriteReport()
    bad = _bad_input_errors() if skip_bad else ()
    with BagWriter(out_dir, format, {RIG_KEY: rig.name}) as bag:
        sensor = offered_qos("volatile", "reliable", 10)
        for cam in rig.cameras:  # declare in rig order, so the bag lists cameras as the rig does
            bag.add_topic(cam.image_topic + "/compressed" if compressed else cam.image_topic,
                          codec.COMPRESSED if compressed else codec.IMAGE, sensor)
            bag.add_topic(cam.info_topic, codec.CAMERA_INFO, sensor)
        prev = None  # (set stamp [ns], mounts) of the previous item
        offset = None  # [s] subtracted from every stamp, decided at the first set read
        try:
            for i in tqdm(range(n), desc=f"bag {bag.path.name}", unit="set", disable=not progress):
                try:
                    item = dataset[i]
                except bad as exc:
                    report.skipped.append((i, str(exc)))
                    warnings.warn(f"bag: skipping set {i}: {exc}", stacklevel=2)
                    continue
                if offset is None:
                    offset = stamp_offset_s(float(item["stamp"]))
                    report.stamp_offset_s = offset
                    if offset:
                        bag.set_custom_data(STAMP_OFFSET_KEY, str(offset * 1_000_000_000))
                        warnings.warn(f"bag: the dataset's clock ({float(item['stamp']):.0f} s) does not fit ROS time; "
                                      f"every stamp is re-based by -{offset} s (kept in the metadata as "
                                      f"{STAMP_OFFSET_KEY}); relative timing is unchanged", stacklevel=2)
                if offset:
                    item = {**item, "stamp": float(item["stamp"]) - offset,
                            "stamps": camera_stamps(item, len(rig)) - offset}
                mounts, set_ns = np.asarray(item["T_base_cam"], dtype=np.float64), codec.stamp_ns(item["stamp"])
                # /tf_static at the start, again when the calibration changes (another DDAD scene or nuScenes
                # log) and where time goes back (a segment that replay puts before the ones written so far)
                new_mounts = prev is None or set_ns < prev[0] or not np.allclose(mounts, prev[1], rtol=0, atol=1e-9)
                _write_item(bag, rig, item, new_mounts, compressed, jpeg_quality, with_lidar)
                report.written += 1
                prev = (set_ns, mounts)
        except KeyboardInterrupt:
            print(f"[bag] interrupted: {bag.path} is closed with the {report.written} sets written so far",
                  file=sys.stderr)
            raise
        if not report.written:
            raise BagError(f"nothing written: all {n} sets were bad (first: {report.skipped[0][1]})")
    if report.skipped:
        first = "; ".join(reason for _, reason in report.skipped[:3])
        warnings.warn(f"bag: skipped {len(report.skipped)} of {n} sets with missing or corrupt files "
                      f"(sets {[i for i, _ in report.skipped]}): {first}" + (" ..." if len(report.skipped) > 3 else ""),
                      stacklevel=2)
    return bag.path


def _write_item(bag: BagWriter, rig, item: dict, with_mounts: bool, compressed: bool, quality: int,
                with_lidar: bool) -> None:
    images = np.asarray(item["images"])
    if images.ndim != 4 or images.shape[0] != len(rig) or images.shape[-1] != 3:
        raise BagError(f"item {item.get('index', '?')}: images must be [{len(rig)},H,W,3] RGB, got {images.shape}")
    set_ns = codec.stamp_ns(item["stamp"])
    stamps = [codec.stamp_ns(t) for t in camera_stamps(item, len(rig))]
    if with_mounts:  # the camera mounts, latched, at the set's first stamp
        ns0 = min([set_ns, *stamps])
        tfs = [BAG_MESSAGES.transform_stamped(T, rig.base_frame, cam.frame_id, ns0)
               for cam, T in zip(rig.cameras, np.asarray(item["T_base_cam"]))]
        bag.write("/tf_static", BAG_MESSAGES.tf_message(tfs), ns0, latched_qos())
    if item.get("T_world_base") is not None:
        tf = BAG_MESSAGES.transform_stamped(np.asarray(item["T_world_base"]), WORLD_FRAME, rig.base_frame, set_ns)
        bag.write("/tf", BAG_MESSAGES.tf_message([tf]), set_ns, offered_qos(depth=100))
    if with_lidar:
        bag.write(LIDAR_TOPIC, BAG_MESSAGES.xyz_cloud(_lidar_points(item), BAG_MESSAGES.header(set_ns, rig.base_frame)), set_ns)
    K = np.asarray(item["K"])
    h, w = images.shape[1:3]
    for c, cam in enumerate(rig.cameras):
        hdr = BAG_MESSAGES.header(stamps[c], cam.frame_id)
        bag.write(cam.info_topic, BAG_MESSAGES.camera_info(K[c], w, h, hdr), stamps[c])
        img = BAG_MESSAGES.jpeg_image(images[c], hdr, quality) if compressed else BAG_MESSAGES.rgb_image(images[c], hdr)
        bag.write(cam.image_topic + "/compressed" if compressed else cam.image_topic, img, stamps[c])


# -- reading ----------------------------------------------------------------------------------------
def open_bag(path: str | Path):
    """An open rosbags Reader on a rosbag2 directory (or a single .mcap/.db3), with clear errors."""
    from rosbags.rosbag2 import Reader, ReaderError

    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is not a rosbag2 directory: it has no metadata.yaml")
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, FileNotFoundError, KeyError) as exc:
        raise BagError(f"cannot read bag {path}: {exc}") from None
    return reader


def tf_static_tree(reader) -> dict[str, tuple[str, np.ndarray]]:
    """child frame -> (parent frame, T_parent_child [4,4]) from every /tf_static message of an open bag."""
    tree: dict[str, tuple[str, np.ndarray]] = {}
    for conn, _, raw in reader.messages(connections=[c for c in reader.connections if c.topic == "/tf_static"]):
        for tf in codec.from_cdr(raw, conn.msgtype).transforms:
            tree.setdefault(tf.child_frame_id, (tf.header.frame_id, codec.transform_matrix(tf.transform)))
    return tree


def tf_lookup(tree: dict[str, tuple[str, np.ndarray]], base: str, frame: str) -> np.ndarray | None:
    """T_base_frame [4,4] chained from a `tf_static_tree`, or None when frame does not lead to base."""
    T, seen = np.eye(4), set()
    while frame != base:
        if frame not in tree or frame in seen:
            return None
        seen.add(frame)
        parent, T_pc = tree[frame]
        T, frame = T_pc @ T, parent
    return T


def bag_custom_data(reader) -> dict[str, str]:
    """The bag's metadata custom_data (empty when absent or for a bare storage file)."""
    meta = getattr(reader.storage, "metadata", None)
    return dict(getattr(meta, "custom", None) or {})


def bag_format(path: str | Path) -> str:
    """The storage of a bag directory: 'mcap' or 'sqlite3'."""
    path = Path(path)
    if path.suffix == ".mcap" or any(path.glob("*.mcap")):
        return "mcap"
    return "sqlite3"


def describe_bag(path: str | Path) -> str:
    """A short `ros2 bag info`-like summary."""
    reader = open_bag(path)
    try:
        lines = [f"bag {path}: {reader.message_count} messages over {reader.duration * 1e-9:.2f} s"]
        width = max((len(t) for t in reader.topics), default=0)
        for topic, info in sorted(reader.topics.items()):
            lines.append(f"  {topic:<{width}}  {info.msgtype}  x{info.msgcount}")
        return "\n".join(lines)
    finally:
        reader.close()
