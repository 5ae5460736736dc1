"""The per-set service: what the node and `fsmde process` both do with a rig's camera streams.

One object from the node's parameters (rig, model, backend, pipeline, synchroniser, health),
fed the same events by both callers: CameraInfo intrinsics, images as they arrive, time. It
checks and groups the images, runs each complete set once through the backend and says what to
publish; bad inputs are counted in `NodeHealth` and logged once per camera and reason. The ros
layer decodes and publishes, through a `decoder` it passes in (the codec), so this module never
sees a ROS type. See docs/architecture.md for where it sits.
"""
from __future__ import annotations

import dataclasses
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from fsmde_ros.errors import ConfigError, FsmdeError, MessageError
from fsmde_ros.eval.metrics import cross_view_consistency
from fsmde_ros.geometry.rig import CameraRig, load_rig
from fsmde_ros.model.contract import recorded_rig
from fsmde_ros.paths import resolve_model
from fsmde_ros.runtime import create_backend
from fsmde_ros.runtime.base import DepthBackend
from fsmde_ros.service.calibration import Calibration
from fsmde_ros.service.diagnostics import NodeHealth
from fsmde_ros.service.frames import FramePreparer, PreparedImage, prep_workers
from fsmde_ros.service.mounts import CameraMounts, MountLookup
from fsmde_ros.service.params import validate_params
from fsmde_ros.service.pipeline import SetResult, SurroundDepthPipeline
from fsmde_ros.service.sync import SurroundSynchronizer, SyncedSet

CONSISTENCY_PERIOD_S = 2.0  # the cross-view consistency of the last set is refreshed this often
CONSISTENCY_SUBSAMPLE = 2  # ...on every 2nd pixel: a quarter of the cost, the same statistic
FOCAL_RANGE = (0.05, 20.0)  # a usable fx, fy lies within this many image widths (about 175 to 3 degrees of view)
PRINCIPAL_POINT_MARGIN = 0.5  # cx, cy may lie up to half the image size outside it (strongly off-centre crops)
DROP_BURST = 10  # this many drops between two reports start an overload (fewer are only counted)
OVERLOAD_SUMMARY_S = 10.0  # while an overload lasts, a summary at most this often [s]
ASPECT_TOLERANCE = 0.02  # a CameraInfo at another size is scaled to the image if both axes scale alike


class MessageDecoder(Protocol):
    """What the service needs from the codec (fsmde_ros.ros.codec); each raises MessageError."""

    def check_image(self, msg: Any) -> None: ...  # cheap check at arrival (encoding, size, buffer)

    def image_to_rgb(self, msg: Any) -> np.ndarray: ...  # uint8 [H,W,3] RGB

    def camera_info_calibration(self, msg: Any, rectified: bool = False) -> Calibration: ...  # K, D, model, P, size


@dataclasses.dataclass
class SetOutput:
    """A processed set: the pipeline's result and, per camera, the message it came from (None: not published)."""

    result: SetResult
    messages: list[Any | None]
    stamp: float  # the set's reference stamp [s] (the latest member stamp)


def camera_info_problem(K: np.ndarray, width: int, height: int) -> str | None:
    """Why a CameraInfo's intrinsics K [3,3] at width x height [px] cannot be used (naming the field), or None."""
    if width <= 0 or height <= 0:
        return f"width x height = {width} x {height} must be positive"
    if not np.all(np.isfinite(K)):
        return "K has non-finite entries"
    lo, hi = FOCAL_RANGE
    for name, f in (("fx", K[0, 0]), ("fy", K[1, 1])):
        if not lo * width <= f <= hi * width:
            return f"{name} = {f:g} px is outside [{lo:g}, {hi:g}] x the width {width} px"
    if K[2, 2] != 1.0 or K[2, 0] != 0.0 or K[2, 1] != 0.0:
        return f"the last row of K is {K[2].tolist()}, not [0, 0, 1]"
    m = PRINCIPAL_POINT_MARGIN
    for name, c, size in (("cx", K[0, 2], width), ("cy", K[1, 2], height)):
        if not -m * size <= c <= (1 + m) * size:
            return f"{name} = {c:g} px is far outside the image (0..{size} px)"
    return None


def use_deployment_graph(choice: str, backend: DepthBackend) -> bool:
    """The deployment_graph parameter for this backend: auto = on where the backend runs on a GPU (TensorRT, ONNX
    Runtime with TensorRT or CUDA); on a CPU the host's cv2 resize is faster than the graph's (issue 15 figures)."""
    if choice == "auto":
        return not backend.name.endswith("CPUExecutionProvider") and not backend.name.startswith("torch")
    return choice == "always"


def start_backend(p: dict[str, Any], model: Path, **options) -> DepthBackend:
    """The backend the parameters ask for, or ConfigError saying why it cannot start."""
    try:
        return create_backend(p["backend"], model, precision=p["precision"], threads=p["threads"],
                              engine_cache_dir=str(Path(p["engine_cache_dir"]).expanduser()), **options)
    except FsmdeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any backend failure at start is a configuration problem
        raise ConfigError(f"cannot start backend {p['backend']!r} with {model}: {type(exc).__name__}: {exc}") from None


class SurroundDepthService:
    """Parameters -> one surround set at a time -> depth, clouds and health (see the module doc)."""

    def __init__(self, p: dict[str, Any], rig: CameraRig, backend: DepthBackend, decoder: MessageDecoder,
                 warn: Callable[[str], None] = print, info: Callable[[str], None] = print,
                 clock: Callable[[], float] | None = None, mount_lookup: MountLookup | None = None):
        """clock: the arrival clock [s] of the caller (the node's monotonic time); None: set stamps (offline).
        mount_lookup: the camera mounts from TF (service/mounts.py; the node's tf2 buffer); None: the rig YAML's."""
        self.p, self.rig, self.backend, self.decoder = p, rig, backend, decoder
        self.model: Path | None = None  # the model file, when built from_params
        self._clock = clock
        self._latency_epoch = 0
        self.warn, self.info = warn, info
        self.pipeline = SurroundDepthPipeline(backend, rig, p["min_depth"], p["max_depth"], p["cloud_stride"],
                                              p["max_depth_std_ratio"], make_cloud=p["publish_cloud"],
                                              cloud_overlap=p["cloud_overlap"],
                                              composed=use_deployment_graph(p["deployment_graph"], backend),
                                              graph_cache_dir=str(Path(p["engine_cache_dir"]).expanduser()),
                                              info=info)
        self.mounts = CameraMounts(rig, mount_lookup, warn, info)
        self.sync = SurroundSynchronizer(rig.names, p["slop"], p["queue_size"], p["camera_timeout"], p["allow_partial"])
        self.health = NodeHealth(rig.names, backend.name, backend.precision, p["camera_timeout"])
        self.consistency_rig = rig.resized(backend.width, backend.height).strided(CONSISTENCY_SUBSAMPLE)
        # decode, calibration and the host path's resize of each frame as it arrives (service/frames.py)
        self.frames = FramePreparer(self._prepare, prep_workers(p["threads"], len(rig)))
        self._camera_info: list[Calibration | None] = [None] * len(rig)  # each camera's last good CameraInfo
        self._logged: set[tuple[str, ...]] = set()
        self._last_consistency = -np.inf
        # the cross-view consistency is measured off the sets' critical path, one at a time (see published)
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsmde_consistency")
        self._consistency_job: Future = Future()
        self._consistency_job.set_result(None)
        self._reported = {"silent": set(), "resets": 0, "dropped": 0}  # what report() has logged already
        self._overload: dict[str, float] | None = None  # while sets are being dropped: start, counts, last summary
        self._last_report: float | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any], decoder: MessageDecoder, rig: str | CameraRig | None = None,
                    model_option: str = "model:=", **kwargs) -> "SurroundDepthService":
        """Validate `params` (the node's), load the rig (`rig` overrides p['rig']), resolve and start the model."""
        p = validate_params(params)
        rig = rig if isinstance(rig, CameraRig) else load_rig(rig or p["rig"])
        model = resolve_model(p["model"], model_option, int8=p["precision"] == "int8")
        backend = start_backend(p, model)
        if backend.views != len(rig):
            raise ConfigError(f"the model takes {backend.views} views but rig {rig.name!r} has {len(rig)} cameras; "
                              "export the student for this rig or pass the rig it was exported for")
        service = cls(p, rig, backend, decoder, **kwargs)
        service.model = model
        recorded = recorded_rig(model).get("rig", "") if p["model"] else ""  # (the bundled one: said below)
        if recorded not in ("", "unknown") and rig.name not in recorded.split(","):
            service.warn(f"the model {model.name} was exported for rig {recorded!r}, the node runs rig {rig.name!r}: it "
                         "runs (same number of views), but was trained on other lenses and mounts; check with "
                         "`fsmde rig check RIG --model MODEL`")
        if not p["model"]:  # say it where it runs, not only in a model card nobody opens on a car
            service.warn(f"running the bundled student ({model.name}): it was trained on synthetic streets only and has "
                         "never seen a real image, so its metric depth on a real camera looks plausible and is wrong; "
                         "distil one on your own recordings (README 'Train your own') and pass it as model:=")
        return service

    # -- events ---------------------------------------------------------------------------------
    def drop(self, i: int, kind: str, detail: str) -> None:
        """Count a bad input of camera i and log it once per camera and reason (the detail, numbers aside)."""
        name = self.rig.names[i]
        self.health.camera_error(name, kind)
        key = (name, kind, re.sub(r"[-+]?\d[\d.e+-]*", "#", detail))
        if key not in self._logged:
            self._logged.add(key)
            self.warn(f"camera {name}: dropping input ({kind}): {detail} (logged once per reason; counted in "
                      "/diagnostics)")

    def on_camera_info(self, i: int, msg: Any) -> None:
        """Take camera i's calibration from a CameraInfo (service/calibration.py: P for rectified images, D undistorted
        in the resize); an unusable one (see `camera_info_problem`, `Calibration.problem`: an unsupported distortion
        model, a D of the wrong length) is dropped for that camera only, counted, and the last good calibration (or
        the rig's intrinsics) stays in use."""
        try:
            cal = self.decoder.camera_info_calibration(msg, self.p["rectified"])
            problem = camera_info_problem(cal.intrinsics(), cal.width, cal.height) or cal.problem()
        except MessageError as exc:
            problem = str(exc)
        if problem:
            self.drop(i, "bad_camera_info", f"{problem}; using the last good or the rig's intrinsics")
        else:
            self._camera_info[i] = cal

    def on_image(self, i: int, stamp_ns: int, msg: Any, now: float, compressed: bool = False) -> list[SyncedSet]:
        """Offer camera i's image (header stamp [ns], exact; arrival time `now` [s]); returns the sets it completes."""
        self.health.image_received(self.rig.names[i], now)
        self.mounts.on_frame_id(i, str(getattr(getattr(msg, "header", None), "frame_id", "") or ""))
        if not compressed:
            try:
                self.decoder.check_image(msg)
            except MessageError as exc:
                self.drop(i, "bad_image", str(exc))
                return []
        return self.sync.add_ns(i, stamp_ns, self.frames.submit(i, msg), now)

    def _prepare(self, i: int, msg: Any) -> PreparedImage:
        """Camera i's per-image work as its frame arrives (in the frame pool): decode, its calibration at that size and,
        where the set will be resized on the host, the image at the model's size. An undecodable frame is kept with
        its error (the set drops it, counted as today)."""
        start = time.perf_counter()
        try:
            rgb = self.decoder.image_to_rgb(msg)
        except MessageError as exc:
            return PreparedImage(None, error=str(exc))
        h, w = rgb.shape[:2]
        cal, _ = self._calibration_at(i, w, h)  # (counted, if unusable, when the set takes the frame)
        distorted = cal if cal is not None and cal.distorted else None
        model = None
        if self.pipeline.resizes_on_host(w, h, distorted is not None):
            model = self.pipeline.model_image(i, rgb, cal.intrinsics() if cal is not None else None, distorted)
        return PreparedImage(rgb, cal, model, prep_ms=(time.perf_counter() - start) * 1e3)

    def close(self) -> None:
        """Stop the frame pool and the background check (the node's and `fsmde process`'s end)."""
        self.frames.close()
        self._background.shutdown(wait=False, cancel_futures=True)

    def apply_runtime_params(self, changes: dict[str, Any]) -> None:
        """Take new values of the run-time parameters (validated each by the table) from the next set on; ConfigError
        (nothing changed) when they do not fit together, e.g. min_depth >= max_depth."""
        p = {**self.p, **changes}
        if not p["min_depth"] < p["max_depth"]:
            raise ConfigError(f"min_depth ({p['min_depth']}) must stay below max_depth ({p['max_depth']})")
        self.pipeline.set_outputs(p["min_depth"], p["max_depth"], p["max_depth_std_ratio"], p["cloud_stride"],
                                  p["cloud_overlap"])
        self.p = p

    def refresh_mounts(self) -> None:
        """Take the camera mounts from TF again (the node calls it once a second); a change reaches the next set."""
        if self.mounts.refresh():
            self.pipeline.set_poses(self.mounts.poses)

    def poll(self, now: float) -> list[SyncedSet]:
        """Sets that time alone completes (allow_partial after camera_timeout)."""
        return self.sync.poll(now)

    # -- one set --------------------------------------------------------------------------------
    def calibration(self, i: int, width: int, height: int) -> Calibration | None:
        """Camera i's calibration at width x height from its last CameraInfo (scaled when sizes differ); None: the rig's
        intrinsics (no usable CameraInfo, or one of another aspect ratio: dropped, counted and logged)."""
        cal, problem = self._calibration_at(i, width, height)
        if problem:
            self.drop(i, "bad_camera_info", problem)
        return cal

    def _calibration_at(self, i: int, width: int, height: int) -> tuple[Calibration | None, str | None]:
        """(`calibration`'s answer, why the CameraInfo was not usable at this size or None), counting nothing."""
        cal = self._camera_info[i]
        if cal is None or (cal.width, cal.height) == (width, height):
            return cal, None
        sx, sy = width / cal.width, height / cal.height
        if abs(sx / sy - 1.0) > ASPECT_TOLERANCE:
            return None, (f"CameraInfo size {cal.width}x{cal.height} does not scale to the image's {width}x{height} "
                          "(another aspect ratio); using the rig's intrinsics")
        return cal.scaled(width, height), None

    def run(self, synced: SyncedSet) -> SetOutput | None:
        """Take the set's prepared frames, infer once for all views, post-process; None (counted as failed) when
        nothing decodes. Stage timings [ms]: wait_ms (for frames still being prepared: on the critical path),
        arrival_prep_ms (the frames' own work as they arrived: off it unless waited for), then the pipeline's."""
        start = time.perf_counter()
        images, cals, messages, prepared, arrival_ms = [], [], [], [], 0.0
        for i, frame in enumerate(synced.messages):
            got = frame.take() if frame is not None else PreparedImage(None)  # (Frames: on_image queued them)
            if got.error is not None:
                self.drop(i, "bad_image", got.error)
            # the calibration as of now: a CameraInfo that came after the frame (a bag's first set) is still used
            cal = self.calibration(i, got.rgb.shape[1], got.rgb.shape[0]) if got.rgb is not None else None
            images.append(got.rgb)
            cals.append(cal)
            prepared.append(got.model if _same_calibration(cal, got.calibration) else None)
            messages.append(frame.msg if got.rgb is not None else None)
            arrival_ms += got.prep_ms
        waited_ms = (time.perf_counter() - start) * 1e3
        if all(img is None for img in images):
            self.health.set_failed(now=synced.stamp if self._clock is None else self._clock())
            return None
        result = self.pipeline.run(images, [c.intrinsics() if c is not None else None for c in cals],
                                   [c if c is not None and c.distorted else None for c in cals], prepared)
        result.timings_ms.update(wait_ms=waited_ms, arrival_prep_ms=arrival_ms)
        for i, (w, h) in result.resized_from.items():
            key = (self.rig.names[i], f"resize {w}x{h}")
            if key not in self._logged:
                self._logged.add(key)
                self.info(f"camera {key[0]}: images arrive at {w}x{h}, resized to the model's "
                          f"{self.backend.width}x{self.backend.height} (logged once per size)")
        return SetOutput(result, messages, synced.stamp)

    def published(self, output: SetOutput, now: float, latency_ms: float, publish_ms: float) -> None:
        """Record that `output` went out: rates, latency, stage timings, and now and then the cross-view consistency."""
        if self.sync.stats.resets != self._latency_epoch:  # a time jump (bag loop): old latencies mean nothing
            self._latency_epoch = self.sync.stats.resets
            self.health.clear_latency()
        self.health.set_published(now, latency_ms, {**output.result.timings_ms, "publish_ms": publish_ms})
        if (now - self._last_consistency > CONSISTENCY_PERIOD_S and output.result.present.all()
                and self._consistency_job.done()):
            self._last_consistency = now
            k = CONSISTENCY_SUBSAMPLE  # a copy: the next set must not change what is being measured
            self._consistency_job = self._background.submit(self._measure_consistency,
                                                            output.result.depth[:, ::k, ::k].copy(), self.p["max_depth"])

    def _measure_consistency(self, depth: np.ndarray, max_depth: float) -> None:
        """The cross-view consistency of one set's depth [V,h,w] m, in the background thread: ~50 ms at 384x640 on two
        cores, which on the worker would delay every set that follows a refresh (and drop one under load)."""
        c = cross_view_consistency(depth, self.consistency_rig, max_depth=max_depth)
        self.health.consistency = {"median abs [m]": c["abs_m"], "median rel": c["rel"]}

    def failed(self, now: float) -> None:
        """A set failed outside `run` (the caller caught the exception and logged it)."""
        self.health.set_failed(now)

    def report(self, now: float, extra: dict[str, str] | None = None) -> list[tuple[str, int, str, dict[str, str]]]:
        """The /diagnostics statuses now (NodeHealth.report with the synchroniser's view added); what changed
        for the worse since the last report is also logged: cameras going silent, time jumps, drops."""
        silent = [s.name for s in self.sync.states(now) if s.silent]
        silent += [n for n in self.health.never_heard(now) if n not in silent]
        self.health.silent = silent
        stats = self.sync.stats
        self.health.sync_counters = {**{f"sync {k}": v for k, v in dataclasses.asdict(stats).items()},
                                     **self.frames.counts()}
        seen = self._reported
        if set(silent) - seen["silent"]:
            self.warn(f"cameras silent (nothing for {self.p['camera_timeout']:g} s): {', '.join(silent)}; check the "
                      "topics and the QoS (images are subscribed with qos_reliability)")
        if stats.resets > seen["resets"]:
            self.warn(f"time jumped back {stats.resets - seen['resets']} time(s) (a bag loop or a clock reset): the "
                      "synchroniser restarted; latency statistics start afresh")
        dropped = stats.dropped_messages + self.health.counters["sets_dropped"]
        self._say_overload(now, dropped - seen["dropped"])
        self._reported = {"silent": set(silent), "resets": stats.resets, "dropped": dropped}
        return self.health.report(now, extra)

    def _say_overload(self, now: float, new_drops: int) -> None:
        """Overload said, not shouted: when it starts (with its rate), a summary at most every OVERLOAD_SUMMARY_S while
        it lasts, and when it ends; every drop is counted in /diagnostics whatever is logged."""
        o = self._overload
        if o is None:
            if new_drops >= DROP_BURST:
                rate = new_drops / max(now - self._last_report, 1e-3) if self._last_report is not None else new_drops
                self._overload = {"start": now, "drops": new_drops, "summary_at": now, "since_summary": 0}
                self.warn(f"overload: {new_drops} messages or sets dropped in the last report period (~{rate:.0f}/s: "
                          "inputs arrive faster than the worker publishes, or stale); every drop is counted in "
                          f"/diagnostics, a summary follows at most every {OVERLOAD_SUMMARY_S:g} s")
        elif new_drops == 0:
            self.info(f"overload ended after {now - o['start']:.0f} s: {o['drops']} messages or sets dropped in all")
            self._overload = None
        else:
            o["drops"] += new_drops
            o["since_summary"] += new_drops
            if now - o["summary_at"] >= OVERLOAD_SUMMARY_S:
                self.warn(f"overload goes on: {o['since_summary']} dropped in the last {now - o['summary_at']:.0f} s "
                          f"({o['since_summary'] / (now - o['summary_at']):.1f}/s), {o['drops']} since it began "
                          f"{now - o['start']:.0f} s ago")
                o["summary_at"], o["since_summary"] = now, 0
        self._last_report = now


def _same_calibration(a: Calibration | None, b: Calibration | None) -> bool:
    """Do two calibrations (None: the rig's intrinsics) map an image alike?"""
    if a is None or b is None:
        return a is b
    return a is b or (a.key() == b.key() and np.array_equal(a.intrinsics(), b.intrinsics()))
