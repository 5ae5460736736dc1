"""`fsmde rig from-bag` and `fsmde rig check`: a rig YAML from what a recording already carries, and a look at a rig.

from-bag reads a rosbag2 (sqlite3 or MCAP) with `rosbags`: every `sensor_msgs/CameraInfo` topic is a camera
(its image topic is the Image / CompressedImage topic of the same namespace: `/cam/camera_info` pairs with
`/cam/image_raw` or `/cam/image_raw/compressed`; its name is the namespace in capitals, `CAM`), with the
intrinsics of its first CameraInfo (`P` for a rectified one, all-zero `D`; else `K`, and the camera is said to
need the calibration at run time) and its mount from `/tf_static` (the chain base_frame -> header.frame_id).
The cameras are ordered around the ring by yaw (clockwise seen from above, the most forward first, as the
presets are), adjacent pairs are checked for overlap, and anything odd is said: fewer than six cameras, a
camera without a TF path (left out), sizes that change within a topic, distortion.
check prints the ring, the overlap of each adjacent pair, and whether a model's recorded rig matches.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fsmde_ros.errors import FsmdeError
from fsmde_ros.geometry.projection import overlap_mask
from fsmde_ros.geometry.rig import BASE_FRAME, Camera, CameraRig
from fsmde_ros.model.contract import recorded_rig
from fsmde_ros.ros import codec
from fsmde_ros.ros.bag import open_bag, tf_lookup, tf_static_tree

IMAGE_TYPES = (codec.IMAGE, codec.COMPRESSED)
RIG_CAMERAS = 6  # the surround students take six views
OVERLAP_CHECK_WIDTH = 64  # adjacent pairs are checked at this image width [px] (the rig resized to it)
MIN_OVERLAP_SHARE = 0.02  # an adjacent pair overlapping less than this share of the image width is said


class RigToolError(FsmdeError, ValueError):
    """A bag that no rig can be read from, or a rig and model that cannot be compared; the message says why."""


def ring_order(cameras: list[Camera]) -> list[Camera]:
    """Clockwise seen from above (decreasing yaw), starting with the camera that looks most forward."""
    front = min(cameras, key=lambda c: abs(c.yaw_deg))
    return sorted(cameras, key=lambda c: (front.yaw_deg - c.yaw_deg) % 360.0)


def overlaps(rig: CameraRig) -> list[tuple[str, str, float]]:
    """Per adjacent pair (a, b): the share of a's image columns that b also sees (at OVERLAP_CHECK_WIDTH)."""
    out = []
    for i, j in rig.neighbours:
        a, b = rig.cameras[i], rig.cameras[j]
        ha, hb = (max(2, round(OVERLAP_CHECK_WIDTH * c.height / c.width)) for c in (a, b))
        sa, sb = a.resized(OVERLAP_CHECK_WIDTH, ha), b.resized(OVERLAP_CHECK_WIDTH, hb)
        mask = overlap_mask(sa.K, sa.T_base_cam, (OVERLAP_CHECK_WIDTH, ha), sb.K, sb.T_base_cam, (OVERLAP_CHECK_WIDTH, hb))
        out.append((a.name, b.name, float(mask.any(axis=0).mean())))
    return out


def rig_from_bag(path: str | Path, base_frame: str = BASE_FRAME, name: str | None = None) -> tuple[CameraRig, list[str]]:
    """The rig a bag's CameraInfo and /tf_static describe, and what was odd about it (see the module doc)."""
    reader = open_bag(path)
    try:
        infos = sorted(t for t, i in reader.topics.items() if i.msgtype == codec.CAMERA_INFO)
        images = {t: i.msgtype for t, i in reader.topics.items() if i.msgtype in IMAGE_TYPES}
        if not infos:
            raise RigToolError(f"bag {path} has no sensor_msgs/CameraInfo topic: record the cameras' camera_info "
                               "topics with the images, or write the rig YAML by hand (config/rigs/*.yaml)")
        if "/tf_static" not in reader.topics:
            raise RigToolError(f"bag {path} has no /tf_static: the camera mounts come from it; record it too "
                               "(ros2 bag record ... /tf_static) or write the mounts by hand")
        first: dict[str, Any] = {}
        sizes: dict[str, set[tuple[int, int]]] = {t: set() for t in infos}
        tree = tf_static_tree(reader)
        for conn, _, raw in reader.messages(connections=[c for c in reader.connections if c.topic in infos]):
            msg = codec.from_cdr(raw, conn.msgtype)
            first.setdefault(conn.topic, msg)
            sizes[conn.topic].add((int(msg.width), int(msg.height)))
    finally:
        reader.close()
    notes, cameras = [], []
    for topic in infos:
        ns = topic.rsplit("/", 1)[0]
        cam_name = ns.strip("/").replace("/", "_").upper() or topic.strip("/").upper()
        info = first.get(topic)
        if info is None:
            notes.append(f"{cam_name}: {topic} has no message; left out")
            continue
        in_ns = sorted((t for t in images if t.rsplit("/", 1)[0] == ns or t.rsplit("/", 2)[0] == ns),
                       key=lambda t: (images[t] != codec.IMAGE, t))
        if not in_ns:
            notes.append(f"{cam_name}: no image topic beside {topic}; left out")
            continue
        image_topic = in_ns[0][: -len("/compressed")] if images[in_ns[0]] == codec.COMPRESSED else in_ns[0]
        frame = str(info.header.frame_id)
        T = tf_lookup(tree, base_frame, frame)
        if T is None:
            notes.append(f"{cam_name}: /tf_static has no path from {base_frame} to its frame {frame!r}; left out")
            continue
        if len(sizes[topic]) > 1:
            notes.append(f"{cam_name}: CameraInfo sizes change within the bag ({', '.join(f'{w}x{h}' for w, h in sorted(sizes[topic]))}); "
                         "the first is written")
        calibration = codec.camera_info_calibration(info)
        K = calibration.intrinsics()  # P for a rectified camera, as image_geometry reads it
        if calibration.distorted:
            notes.append(f"{cam_name}: distorted ({info.distortion_model}, D={list(np.round(info.d, 4))}); the YAML holds "
                         "K only: keep publishing camera_info so the node undistorts")
        cameras.append(Camera(cam_name, image_topic, topic, frame, int(info.width), int(info.height), K, T))
    if not cameras:
        raise RigToolError(f"bag {path}: no camera has both an image topic and a TF path from {base_frame}: "
                           + "; ".join(notes))
    rig = CameraRig(name=name or Path(path).name, cameras=tuple(ring_order(cameras)), base_frame=base_frame,
                    source=str(path))
    if len(rig) != RIG_CAMERAS:
        notes.append(f"{len(rig)} cameras, not {RIG_CAMERAS}: the surround students take six views; distil and "
                     "export one for this rig")
    if len({(c.width, c.height) for c in rig.cameras}) > 1:
        notes.append("cameras of different sizes: " + ", ".join(f"{c.name} {c.width}x{c.height}" for c in rig.cameras))
    notes += [f"{a} and {b} barely overlap ({share:.0%} of {a}'s columns): check their mounts"
              for a, b, share in overlaps(rig) if share < MIN_OVERLAP_SHARE]
    return rig, notes


def check_rig(rig: CameraRig, model: str | Path | None = None) -> tuple[list[str], bool]:
    """Lines describing the ring, its overlaps and the model's recorded rig; False when the model does not fit."""
    lines = rig.describe().splitlines()
    lines += ["overlap of adjacent cameras (share of the first's image columns the second also sees):"]
    lines += [f"  {a} -> {b}: {share:.0%}" + ("  (barely: check the mounts)" if share < MIN_OVERLAP_SHARE else "")
              for a, b, share in overlaps(rig)]
    fits = True
    if model is not None:
        recorded = recorded_rig(model)
        views = recorded.get("views")
        if views is not None and int(views) != len(rig):
            fits = False
            lines.append(f"model {model}: takes {views} views, the rig has {len(rig)} cameras: it cannot run this rig")
        elif recorded.get("rig") in (None, "", "unknown"):
            lines.append(f"model {model}: records no rig; {views or '?'} views")
        elif rig.name not in recorded["rig"].split(","):
            lines.append(f"model {model}: exported for rig {recorded['rig']!r}, not {rig.name!r}: it runs, but was "
                         "trained on other lenses and mounts")
        else:
            lines.append(f"model {model}: exported for this rig ({rig.name!r}, {views} views)")
    return lines, fits


def write_rig_yaml(rig: CameraRig, out: str | Path, notes: list[str]) -> Path:
    """The rig in the preset schema, with what was odd as comments at the top."""
    import yaml

    from fsmde_ros.geometry.rig import rig_to_dict

    out = Path(out)
    head = [f"# rig read from the bag {rig.source} by `fsmde rig from-bag`", "# ring order: clockwise from above, front first"]
    head += [f"# note: {n}" for n in notes]
    out.write_text("\n".join(head) + "\n" + yaml.safe_dump(rig_to_dict(rig), sort_keys=False))
    return out
