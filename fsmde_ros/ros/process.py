"""`fsmde process`: the node's per-set work over a bag, offline, into a new bag.

The same `SurroundDepthService` as the node (parameters, synchroniser, pipeline, health), fed
from a bag with `rosbags` only (no ROS installation needed), as fast as the backend runs; the
outputs go into a new bag on the node's topics, with /diagnostics from the same NodeHealth.
Bag time stands in for arrival time, so camera timeouts and partial sets behave as in replay.
"""
from __future__ import annotations

import dataclasses
import time
from contextlib import closing
from pathlib import Path

from fsmde_ros.errors import ConfigError
from fsmde_ros.geometry.rig import load_rig
from fsmde_ros.ros import codec
from fsmde_ros.ros.bag import (
    RIG_KEY,
    STAMP_OFFSET_KEY,
    BagError,
    BagWriter,
    bag_custom_data,
    bag_format,
    open_bag,
)
from fsmde_ros.runtime import ONNX_BACKENDS
from fsmde_ros.service.params import OUTPUT_NAMESPACE as OUTPUT_NS
from fsmde_ros.service.surround_service import SetOutput, SurroundDepthService

BAG_MESSAGES = codec.MessageBuilder.bags()


@dataclasses.dataclass
class ProcessSummary:
    out: Path
    backend: str
    sets: int = 0            # sets processed and written
    partial_sets: int = 0    # ... of which with a camera left out (allow_partial)
    failed_sets: int = 0     # sets none of whose images could be decoded
    bad_inputs: int = 0      # images and CameraInfos dropped as unusable (per camera in /diagnostics)
    images: int = 0          # image messages read
    unmatched: int = 0       # images in no set (sync drops, a trailing incomplete set)
    seconds: float = 0.0     # wall time
    bag_seconds: float = 0.0  # stamp span of the processed sets


def _camera_topics(reader, rig, compressed: bool | None, allow_partial: bool, bag) -> dict[str, int]:
    """image topic -> camera index: raw Image topics, or CompressedImage on <image_topic>/compressed."""
    have = {t: info.msgtype for t, info in reader.topics.items()}
    raw = {c.image_topic: i for i, c in enumerate(rig.cameras) if have.get(c.image_topic) == codec.IMAGE}
    comp = {c.image_topic + "/compressed": i for i, c in enumerate(rig.cameras)
            if have.get(c.image_topic + "/compressed") == codec.COMPRESSED}
    use_comp = compressed if compressed is not None else len(comp) > len(raw)
    found = comp if use_comp else raw
    if len(found) < (1 if allow_partial else len(rig)):
        kind = codec.COMPRESSED if use_comp else codec.IMAGE
        missing = [c.image_topic + ("/compressed" if use_comp else "") for i, c in enumerate(rig.cameras)
                   if i not in found.values()]
        listing = ", ".join(f"{t} ({m})" for t, m in sorted(have.items())) or "none"
        raise BagError(f"bag {bag} lacks the image topics of rig {rig.name!r}: no {kind} on {', '.join(missing)}. "
                       f"The bag has: {listing}. Pass the rig that recorded it with --rig"
                       + ("" if allow_partial else " (or --allow-partial to run without the missing cameras)"))
    return found


def write_outputs(writer: BagWriter, service: SurroundDepthService, out: SetOutput) -> int:
    """Write one set's outputs on the node's topics (as the node publishes them); returns the set's stamp [ns]."""
    p, rig, r = service.p, service.rig, out.result
    w, h = service.backend.width, service.backend.height
    stamps = []
    for i, msg in enumerate(out.messages):
        if msg is None:
            continue
        hdr, base = msg.header, f"{OUTPUT_NS}/{rig.names[i]}"
        ns = codec.header_ns(hdr)
        stamps.append(ns)
        if p["publish_depth"]:
            writer.write(base + "/depth", BAG_MESSAGES.depth_image(r.depth[i], hdr), ns)
            writer.write(base + "/camera_info", BAG_MESSAGES.camera_info(r.K[i], w, h, hdr), ns)
        if p["publish_std"]:
            writer.write(base + "/depth_std", BAG_MESSAGES.depth_image(r.depth_std[i], hdr), ns)
    set_ns = max(stamps)
    if p["publish_cloud"] and r.cloud is not None:
        writer.write(OUTPUT_NS + "/points", BAG_MESSAGES.surround_cloud(r.cloud, BAG_MESSAGES.header(set_ns, rig.base_frame)),
                     set_ns)
    return set_ns


def process_bag(bag: str | Path, out: str | Path, rig: str | None = None, params: dict | None = None,
                compressed: bool | None = None, format: str | None = None, copy_inputs: bool = False,
                diagnostics_every: int = 100, limit: int | None = None, progress: bool = True,
                log=print) -> ProcessSummary:
    """Run the node's per-set service over a bag's camera sets into a new bag (see the module doc).

    rig: preset name or YAML (default: the rig named in the bag's metadata); params: node
    parameters (PROCESS_PARAMS, validated like the node's); compressed: read CompressedImage
    topics (None = whichever the bag has); format: output storage (default: the input's).
    """
    from tqdm import tqdm

    if Path(out).exists():
        raise BagError(f"{out} exists already; bags are never overwritten: remove it or choose another --out")
    params = dict(params or {})
    rig = rig or params.pop("rig", None)
    if params.get("backend", "auto") not in ONNX_BACKENDS:
        raise ConfigError(f"fsmde process runs exported models: backend must be one of {', '.join(ONNX_BACKENDS)}")
    reader = open_bag(bag)
    try:
        custom = bag_custom_data(reader)
        rig_name = rig or custom.get(RIG_KEY)
        if not rig_name:
            raise BagError(f"bag {bag} does not say which rig recorded it (no '{RIG_KEY}' in its metadata); pass --rig")
        rig_obj = load_rig(rig_name)
        allow_partial = bool(params.get("allow_partial", False))
        images = _camera_topics(reader, rig_obj, compressed, allow_partial, bag)
        infos = {c.info_topic: i for i, c in enumerate(rig_obj.cameras)}
        copied = {"/tf_static", "/tf"} | (set(images) | set(infos) if copy_inputs else set())
        wanted = [c for c in reader.connections if c.topic in images or c.topic in infos or c.topic in copied]
        warn = (lambda text: tqdm.write(f"[process] {text}")) if progress else (lambda text: log(f"[process] {text}"))
        service = SurroundDepthService.from_params(params, codec, rig=rig_obj, model_option="--model ",
                                                   warn=warn, info=warn)
        counts = [info.msgcount for t, info in reader.topics.items() if t in images]
        total = min(counts) if not allow_partial else max(counts)
        total = total if limit is None else min(total, int(limit))
        summary = ProcessSummary(out=Path(out), backend=service.backend.name)
        t0, first_ns, last_ns, now = time.perf_counter(), None, None, 0.0

        def diagnostics() -> None:
            wall = time.perf_counter() - t0
            span = (last_ns - first_ns) * 1e-9 if first_ns is not None else 0.0
            extra = {"mode": "offline (fsmde process)",
                     "processing rate [sets/s]": f"{summary.sets / max(wall, 1e-9):.2f}",
                     "bag rate [sets/s]": f"{(summary.sets - 1) / span:.2f}" if span > 0 else "n/a"}
            ns = last_ns if last_ns is not None else codec.stamp_ns(now)
            writer.write("/diagnostics", BAG_MESSAGES.diagnostic_array(ns, service.report(now, extra), "fsmde process"), ns)

        # the outputs keep the input's stamps, so a re-based input's offset carries over (bag.stamp_offset_s)
        keep = {k: custom[k] for k in (STAMP_OFFSET_KEY,) if k in custom}
        with BagWriter(out, format or bag_format(bag), {RIG_KEY: rig_obj.name, **keep}) as writer, closing(service):
            with tqdm(total=total, desc=f"process {Path(bag).name}", unit="set", disable=not progress) as bar:
                for conn, ns, raw in reader.messages(connections=wanted):
                    if conn.topic in copied:
                        writer.copy(conn, ns, raw)
                    if conn.topic in infos:
                        service.on_camera_info(infos[conn.topic], codec.from_cdr(raw, conn.msgtype))
                        continue
                    if conn.topic not in images:
                        continue
                    msg, now = codec.from_cdr(raw, conn.msgtype), ns * 1e-9
                    summary.images += 1
                    for synced in service.on_image(images[conn.topic], codec.header_ns(msg.header), msg, now,
                                                   compressed=conn.msgtype == codec.COMPRESSED):
                        if limit is not None and summary.sets >= limit:
                            break
                        start = time.perf_counter()
                        result = service.run(synced)
                        if result is None:
                            continue
                        last_ns = write_outputs(writer, service, result)
                        first_ns = last_ns if first_ns is None else first_ns
                        summary.sets += 1
                        summary.partial_sets += bool(synced.partial)
                        service.published(result, now, (time.perf_counter() - start) * 1e3, 0.0)
                        bar.update(1)
                        if diagnostics_every and summary.sets % diagnostics_every == 0:
                            diagnostics()
                    if limit is not None and summary.sets >= limit:
                        break
            diagnostics()
        summary.failed_sets = service.health.counters["failed_sets"]
        summary.bad_inputs = service.health.counters["bad_inputs"]
        summary.unmatched = summary.images - sum(st.used for st in service.sync.states(now))
        summary.seconds = time.perf_counter() - t0
        summary.bag_seconds = ((last_ns - first_ns) * 1e-9) if first_ns is not None else 0.0
        return summary
    finally:
        reader.close()
