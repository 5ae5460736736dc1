"""`bag:` datasets: your own recordings for `fsmde teach`, `distill` and `eval` (a SurroundDataset, data/surround.py).

    bag:/path/to/recording?rig=my_rig.yaml&lidar=/lidar/points[&slop=0.06&stride=1&base_frame=base_link]

- rig: a rig YAML or preset name (default: the rig the bag records in its metadata, as `fsmde bag` writes it);
  its image topics (an Image topic, or `<topic>/compressed`) and CameraInfo topics are read;
- sets: the images grouped by their header stamps with the node's own synchroniser (`slop` [s], default the
  node's), in the order of the recording;
- pixels: each camera's first CameraInfo read as the node reads it (P for rectified images, D undistorted in
  the remap that crops to the item's aspect and resizes: service/calibration.py ModelInput), so a student
  trained here sees what the node feeds it on the car; without CameraInfo the rig's intrinsics;
- mounts: /tf_static (base_frame <- each camera's frame), else the rig YAML's;
- GT: with `lidar=TOPIC`, the PointCloud2 nearest the set's stamp (within slop), moved into base_frame with
  /tf_static and projected into each camera at the item size (data/lidar_projection.py); without it the sets
  have no GT (lidar_depth all 0): teacher-only sets, which `fsmde distill` trains by the teacher alone.
Importing this module registers the `bag` kind with `open_dataset` (the app does it for teach, distill, eval).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from fsmde_ros.data.lidar_projection import lidar_depth_maps
from fsmde_ros.data.surround import FrameSubset, register_dataset_kind
from fsmde_ros.errors import ConfigError
from fsmde_ros.geometry.projection import invert_transform
from fsmde_ros.geometry.resize import plan_resize
from fsmde_ros.geometry.rig import CameraRig, load_rig
from fsmde_ros.ros import codec
from fsmde_ros.ros.bag import RIG_KEY, BagError, bag_custom_data, open_bag, tf_lookup, tf_static_tree
from fsmde_ros.service.calibration import ModelInput
from fsmde_ros.service.params import PARAMS_BY_NAME
from fsmde_ros.service.sync import SurroundSynchronizer

OPTIONS = ("rig", "lidar", "slop", "stride", "base_frame")


class BagSurround:
    """The surround sets of a rosbag2 at height x width (see the module doc); items as the other readers give."""

    def __init__(self, path: str | Path, height: int = 192, width: int = 320, rig: str | None = None,
                 lidar: str | None = None, slop: float | None = None, base_frame: str | None = None):
        self.path, self.height, self.width, self.lidar_topic = Path(path), int(height), int(width), lidar
        self.slop = float(PARAMS_BY_NAME["slop"].default if slop is None else slop)
        reader = open_bag(self.path)
        try:
            rig_name = rig or bag_custom_data(reader).get(RIG_KEY)
            if not rig_name:
                raise ConfigError(f"bag:{path}: the bag names no rig; pass ?rig=my_rig.yaml (`fsmde rig from-bag` writes one)")
            native = load_rig(rig_name)
            self.base_frame = base_frame or native.base_frame
            topics = reader.topics
            self.image_topics = []
            for cam in native.cameras:
                topic = next((t for t in (cam.image_topic, cam.image_topic + "/compressed") if t in topics), None)
                if topic is None:
                    raise ConfigError(f"bag:{path}: no {cam.image_topic} (nor its /compressed) for camera {cam.name}; "
                                      f"the bag has {', '.join(sorted(topics))}")
                self.image_topics.append(topic)
            if lidar is not None and lidar not in topics:
                raise ConfigError(f"bag:{path}: no lidar topic {lidar}; the bag has {', '.join(sorted(topics))}")
            tree = tf_static_tree(reader)
            self.native_rig = self._with_mounts(native, tree)
            self.calibrations = self._calibrations(reader, native)
            self.sets = self._index_sets(reader, native)
            self.lidar_index = self._index_lidar(reader) if lidar else []
            self.T_base_lidar = None
            if lidar and self.lidar_index:
                frame = self._lidar_frame(reader)
                self.T_base_lidar = tf_lookup(tree, self.base_frame, frame) if frame != self.base_frame else np.eye(4)
                if self.T_base_lidar is None:
                    raise ConfigError(f"bag:{path}: /tf_static has no {self.base_frame} <- {frame} (the lidar's frame)")
        finally:
            reader.close()
        if not self.sets:
            raise ConfigError(f"bag:{path}: no complete surround set within slop {self.slop} s")
        self.rig = dataclasses.replace(self.native_rig, cameras=tuple(
            dataclasses.replace(c, width=self.width, height=self.height,
                                K=plan_resize(c.width, c.height, self.width, self.height).intrinsics(c.K))
            for c in self.native_rig.cameras))
        self._reader, self._pid = None, None
        self.to_model = ModelInput(self.width, self.height)

    # -- indexing ---------------------------------------------------------------------------------
    def _with_mounts(self, rig: CameraRig, tree) -> CameraRig:
        cams = []
        for cam in rig.cameras:
            T = tf_lookup(tree, self.base_frame, cam.frame_id)
            cams.append(cam if T is None else dataclasses.replace(cam, T_base_cam=T))
        return dataclasses.replace(rig, cameras=tuple(cams))

    def _calibrations(self, reader, rig: CameraRig) -> list:
        """Each camera's first CameraInfo as a Calibration (None: none recorded, the rig's intrinsics are used)."""
        out: list = [None] * len(rig)
        wanted = {cam.info_topic: i for i, cam in enumerate(rig.cameras)}
        for conn, _, raw in reader.messages(connections=[c for c in reader.connections if c.topic in wanted]):
            i = wanted[conn.topic]
            if out[i] is None:
                out[i] = codec.camera_info_calibration(codec.from_cdr(raw, conn.msgtype))
            if all(c is not None for c in out):
                break
        return out

    def _index_sets(self, reader, rig: CameraRig) -> list[tuple[int, list[tuple[str, int]]]]:
        """[(set stamp [ns], [(topic, log time [ns]) per camera])] from the images' header stamps."""
        sync = SurroundSynchronizer(rig.names, self.slop, queue_size=100, camera_timeout=1e9, allow_partial=False)
        cams = {t: i for i, t in enumerate(self.image_topics)}
        sets = []
        for conn, log_ns, raw in reader.messages(connections=[c for c in reader.connections if c.topic in cams]):
            stamp = codec.header_stamp_ns_of_cdr(raw)
            for synced in sync.add_ns(cams[conn.topic], stamp, (conn.topic, log_ns), log_ns * 1e-9):
                sets.append((synced.stamp_ns, list(synced.messages)))
        return sets

    def _index_lidar(self, reader) -> list[tuple[int, int]]:
        """[(header stamp [ns], log time [ns])] of the lidar topic, by stamp."""
        conns = [c for c in reader.connections if c.topic == self.lidar_topic]
        return sorted((codec.header_stamp_ns_of_cdr(raw), log_ns) for _, log_ns, raw in reader.messages(connections=conns))

    def _lidar_frame(self, reader) -> str:
        conns = [c for c in reader.connections if c.topic == self.lidar_topic]
        for conn, _, raw in reader.messages(connections=conns):
            return str(codec.from_cdr(raw, conn.msgtype).header.frame_id)
        return self.base_frame

    # -- items ------------------------------------------------------------------------------------
    def _read(self, topic: str, log_ns: int) -> Any:
        """The message of `topic` logged at log_ns (the reader opened once per process: loader workers fork)."""
        if self._reader is None or self._pid != os.getpid():
            self._reader, self._pid = open_bag(self.path), os.getpid()
        conns = [c for c in self._reader.connections if c.topic == topic]
        for conn, _, raw in self._reader.messages(connections=conns, start=log_ns, stop=log_ns + 1):
            return codec.from_cdr(raw, conn.msgtype)
        raise BagError(f"{self.path}: no {topic} message at {log_ns} ns")

    def __len__(self) -> int:
        return len(self.sets)

    def __getitem__(self, i: int) -> dict:
        """Set i: images [V,H,W,3] uint8, K [V,3,3] at H x W, T_base_cam [V,4,4], lidar_depth [V,H,W] (0 = none), stamps."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"set {i} out of range for {len(self)} sets")
        i = int(i) % len(self)
        stamp_ns, members = self.sets[i]
        V, H, W = len(self.rig), self.height, self.width
        images, K = np.zeros((V, H, W, 3), np.uint8), np.zeros((V, 3, 3))
        for c, (topic, log_ns) in enumerate(members):
            rgb = codec.image_to_rgb(self._read(topic, log_ns))
            cal = self.calibrations[c]
            if cal is not None and (cal.width, cal.height) != rgb.shape[1::-1]:
                cal = cal.scaled(rgb.shape[1], rgb.shape[0])
            k = cal.intrinsics() if cal is not None else self.native_rig.cameras[c].resized(rgb.shape[1], rgb.shape[0]).K
            images[c], K[c], _ = self.to_model(c, rgb, k, cal if cal is not None and cal.distorted else None)
        lidar = np.zeros((V, H, W), np.float32)
        if self.lidar_index:
            stamps = np.array([s for s, _ in self.lidar_index])
            j = int(np.argmin(np.abs(stamps - stamp_ns)))
            if abs(stamps[j] - stamp_ns) <= self.slop * 1e9:
                xyz = codec.cloud_xyz(self._read(self.lidar_topic, self.lidar_index[j][1]))
                T_cam_lidar = np.stack([invert_transform(T) @ self.T_base_lidar for T in self.rig.T_base_cam])
                lidar = lidar_depth_maps(xyz, T_cam_lidar, K, H, W)
        return {"images": images, "lidar_depth": lidar, "K": K, "T_base_cam": self.rig.T_base_cam,
                "stamp": stamp_ns * 1e-9, "index": i, "camera_names": self.rig.names}


def open_bag_dataset(spec: str, target: str, opts: dict[str, str], height: int, width: int):
    """open_dataset's opener for `bag:` specs (see the module doc)."""
    unknown = set(opts) - set(OPTIONS)
    if unknown:
        raise ConfigError(f"{spec}: unknown options {sorted(unknown)}; bag takes {', '.join(OPTIONS)}")
    if not target:
        raise ConfigError(f"{spec}: bag needs a path, e.g. bag:/data/my_drive?rig=my_rig.yaml")
    ds = BagSurround(target, height, width, rig=opts.get("rig"), lidar=opts.get("lidar"),
                     slop=float(opts["slop"]) if "slop" in opts else None, base_frame=opts.get("base_frame"))
    stride = int(opts.get("stride", 1))
    return ds if stride == 1 else FrameSubset(ds, stride)


register_dataset_kind("bag", open_bag_dataset)
