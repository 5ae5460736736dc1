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
from fsmde_ros.ros.outputs import DIAGNOSTICS_TOPIC, OutputTopics, OutputWriter, set_stamp_ns
from fsmde_ros.runtime import ONNX_BACKENDS
from fsmde_ros.service.surround_service import SurroundDepthService

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


def _inputs(reader, bag, custom: dict, rig: str | None, allow_partial: bool, compressed: bool | None,
            copy_inputs: bool):
    """The rig and what is read of the bag: (rig, image topic -> camera, info topic -> camera, topics copied
    as they are, the connections read). custom: the bag's metadata (bag_custom_data)."""
    rig_name = rig or custom.get(RIG_KEY)
    if not rig_name:
        raise BagError(f"bag {bag} does not say which rig recorded it (no '{RIG_KEY}' in its metadata); pass --rig")
    rig_obj = load_rig(rig_name)
    images = _camera_topics(reader, rig_obj, compressed, allow_partial, bag)
    infos = {c.info_topic: i for i, c in enumerate(rig_obj.cameras)}
    copied = {"/tf_static", "/tf"} | (set(images) | set(infos) if copy_inputs else set())
    wanted = [c for c in reader.connections if c.topic in images or c.topic in infos or c.topic in copied]
    return rig_obj, images, infos, copied, wanted


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
        allow_partial = bool(params.get("allow_partial", False))
        rig_obj, images, infos, copied, wanted = _inputs(reader, bag, custom, rig, allow_partial, compressed,
                                                         copy_inputs)
        warn = (lambda text: tqdm.write(f"[process] {text}")) if progress else (lambda text: log(f"[process] {text}"))
        service = SurroundDepthService.from_params(params, codec, rig=rig_obj, model_option="--model ",
                                                   warn=warn, info=warn)
        counts = [info.msgcount for t, info in reader.topics.items() if t in images]
        total = max(counts) if allow_partial else min(counts)
        total = total if limit is None else min(total, int(limit))
        t0 = time.perf_counter()
        # the outputs keep the input's stamps, so a re-based input's offset carries over (bag.stamp_offset_s)
        keep = {k: custom[k] for k in (STAMP_OFFSET_KEY,) if k in custom}
        with BagWriter(out, format or bag_format(bag), {RIG_KEY: rig_obj.name, **keep}) as writer, closing(service):
            with tqdm(total=total, desc=f"process {Path(bag).name}", unit="set", disable=not progress) as bar:
                run = _Run(writer, service, ProcessSummary(out=Path(out), backend=service.backend.name),
                           diagnostics_every, limit, bar.update, t0)
                for conn, ns, raw in reader.messages(connections=wanted):
                    if conn.topic in copied:
                        writer.copy(conn, ns, raw)
                    if conn.topic in infos:
                        service.on_camera_info(infos[conn.topic], codec.from_cdr(raw, conn.msgtype))
                    elif conn.topic in images:
                        run.image(images[conn.topic], conn.msgtype, ns, raw)
                        if run.done:
                            break
            run.diagnostics()
        return run.finish()
    finally:
        reader.close()


class _Run:
    """One `fsmde process` run: images into the service, each set's outputs and /diagnostics into the bag."""

    def __init__(self, writer: BagWriter, service: SurroundDepthService, summary: ProcessSummary,
                 diagnostics_every: int, limit: int | None, advance, t0: float):
        self.writer, self.service, self.summary = writer, service, summary
        self.diagnostics_every, self.limit, self.advance = diagnostics_every, limit, advance
        self.outputs = OutputWriter(BAG_MESSAGES, OutputTopics.of(service.rig), service.rig.base_frame,
                                    service.backend.width, service.backend.height)
        self.t0, self.first_ns, self.last_ns, self.now = t0, None, None, 0.0  # wall [s], set stamps [ns], bag [s]

    @property
    def done(self) -> bool:
        return self.limit is not None and self.summary.sets >= self.limit

    def image(self, camera: int, msgtype: str, ns: int, raw: bytes) -> None:
        """One image message at log time ns: the sets it completes run, and their outputs are written."""
        msg, self.now = codec.from_cdr(raw, msgtype), ns * 1e-9
        self.summary.images += 1
        for synced in self.service.on_image(camera, codec.header_ns(msg.header), msg, self.now,
                                            compressed=msgtype == codec.COMPRESSED):
            if self.done:
                break
            start = time.perf_counter()
            result = self.service.run(synced)
            if result is None:
                continue
            for outgoing in self.outputs.messages(result, self.service.p):
                self.writer.write(outgoing.topic, outgoing.build(), outgoing.ns)
            self.last_ns = set_stamp_ns(result)
            self.first_ns = self.last_ns if self.first_ns is None else self.first_ns
            self.summary.sets += 1
            self.summary.partial_sets += bool(synced.partial)
            self.service.published(result, self.now, (time.perf_counter() - start) * 1e3, 0.0)
            self.advance(1)
            if self.diagnostics_every and self.summary.sets % self.diagnostics_every == 0:
                self.diagnostics()

    def diagnostics(self) -> None:
        """/diagnostics from the service's health, with the offline rates, at the last set's stamp."""
        wall = time.perf_counter() - self.t0
        span = (self.last_ns - self.first_ns) * 1e-9 if self.first_ns is not None else 0.0
        extra = {"mode": "offline (fsmde process)",
                 "processing rate [sets/s]": f"{self.summary.sets / max(wall, 1e-9):.2f}",
                 "bag rate [sets/s]": f"{(self.summary.sets - 1) / span:.2f}" if span > 0 else "n/a"}
        ns = self.last_ns if self.last_ns is not None else codec.stamp_ns(self.now)
        self.writer.write(DIAGNOSTICS_TOPIC, BAG_MESSAGES.diagnostic_array(ns, self.service.report(self.now, extra),
                                                                           "fsmde process"), ns)

    def finish(self) -> ProcessSummary:
        """The summary, with the service's counters and the sets' stamp span."""
        summary, counters = self.summary, self.service.health.counters
        summary.failed_sets, summary.bad_inputs = counters["failed_sets"], counters["bad_inputs"]
        summary.unmatched = summary.images - sum(st.used for st in self.service.sync.states(self.now))
        summary.seconds = time.perf_counter() - self.t0
        summary.bag_seconds = ((self.last_ns - self.first_ns) * 1e-9) if self.first_ns is not None else 0.0
        return summary
