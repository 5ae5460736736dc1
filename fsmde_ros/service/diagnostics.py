"""Health statistics of the node, ROS-free: rates, latency percentiles, counters, status levels.

The node feeds events in and, once a second, turns `NodeHealth.report()` into
diagnostic_msgs/DiagnosticArray; tests read the same report directly.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Any

import numpy as np

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels
RATE_WINDOW_S = 5.0  # rates are averaged over the last few seconds
LATENCY_WINDOW = 200  # latency statistics over the last sets


class RateMeter:
    """Events per second over a sliding window of arrival times [s]."""

    def __init__(self, window_s: float = RATE_WINDOW_S):
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / span if span > 0 else 0.0


@dataclasses.dataclass
class NodeHealth:
    """Everything /diagnostics reports; thread-safe (callbacks and the worker both write)."""

    camera_names: list[str]
    backend: str = "unset"
    precision: str = "fp32"
    camera_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.input_rates = {n: RateMeter() for n in self.camera_names}
        self.output_rate = RateMeter()
        self.latency_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.stage_ms: dict[str, collections.deque[float]] = {}
        self.counters = collections.Counter()
        self.camera_errors = {n: collections.Counter() for n in self.camera_names}
        self.silent: list[str] = []
        self.consistency: dict[str, float] = {}
        # the synchroniser's sets and drops (stale, overflow, ...) and the dropped frames whose work was cancelled/wasted
        self.sync_counters: dict[str, int] = {}
        self.started: float | None = None  # time of the first event [s]: cameras never heard from count from it
        self.heard = {n: False for n in self.camera_names}
        self._last_failure = -np.inf

    def start(self, now: float) -> None:
        """Mark the start (the node's construction): a camera silent for camera_timeout from here is reported."""
        with self._lock:
            self.started = now if self.started is None else self.started

    def set_failed(self, now: float) -> None:
        """Count a set that could not be processed; while such sets keep coming the status is ERROR."""
        with self._lock:
            self.counters["failed_sets"] += 1
            self._last_failure = now

    def never_heard(self, now: float) -> list[str]:
        """Cameras that sent nothing since the start, camera_timeout ago or longer (a wrong topic, a QoS mismatch)."""
        if self.started is None or now - self.started < self.camera_timeout_s:
            return []
        return [n for n in self.camera_names if not self.heard[n]]

    def clear_latency(self) -> None:
        """Forget the latency window (after a time jump the old stamps' latency means nothing)."""
        with self._lock:
            self.latency_ms.clear()

    def image_received(self, camera: str, now: float) -> None:
        """Count an image of `camera` at `now` [s] (the first one starts the clock if start() was not called)."""
        with self._lock:
            self.started = now if self.started is None else self.started
            self.input_rates[camera].tick(now)
            self.heard[camera] = True

    def camera_error(self, camera: str, kind: str) -> None:
        """Count a dropped input (bad encoding, truncated buffer, bad intrinsics, ...)."""
        with self._lock:
            self.camera_errors[camera][kind] += 1
            self.counters["bad_inputs"] += 1

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def set_published(self, now: float, latency_ms: float, timings_ms: dict[str, float]) -> None:
        with self._lock:
            self.output_rate.tick(now)
            self.latency_ms.append(latency_ms)
            for k, v in timings_ms.items():
                self.stage_ms.setdefault(k, collections.deque(maxlen=LATENCY_WINDOW)).append(v)
            self.counters["sets_published"] += 1

    def report(self, now: float, extra: dict[str, str] | None = None) -> list[tuple[str, int, str, dict[str, str]]]:
        """[(status name, level, message, key-values)]: one status for the pipeline, one per camera.

        extra: key-values put first in the pipeline's status (e.g. the mode of `fsmde process`)."""
        with self._lock:
            lat = np.array(self.latency_ms) if self.latency_ms else None
            values: dict[str, Any] = {
                **(extra or {}),
                "backend": self.backend, "precision": self.precision,
                "output rate [Hz]": f"{self.output_rate.rate(now):.2f}",
                "latency mean [ms]": f"{lat.mean():.1f}" if lat is not None else "n/a",
                "latency p99 [ms]": f"{np.percentile(lat, 99):.1f}" if lat is not None else "n/a",
                **{f"{k} mean [ms]": f"{np.mean(v):.1f}" for k, v in self.stage_ms.items()},
                **{k: str(v) for k, v in sorted(self.counters.items())},
                **{k: str(v) for k, v in self.sync_counters.items()},
                "silent cameras": ", ".join(self.silent) or "none",
                **{f"cross-view consistency {k}": f"{v:.3f}" for k, v in self.consistency.items()},
            }
            level, message = OK, "running"
            failing = now - self._last_failure <= RATE_WINDOW_S
            if failing:
                level, message = ERROR, (f"sets failing: {self.counters['failed_sets']} failed so far, the last "
                                         f"{now - self._last_failure:.1f} s ago (see the log)")
            elif self.silent:
                level, message = WARN, f"silent: {', '.join(self.silent)}"
            elif not self.counters["sets_published"]:
                # say why when inputs are being dropped (an encoding the node cannot read, a bad CameraInfo)
                dropping = [f"{name} ({', '.join(f'{k} x{v}' for k, v in errors.items())})"
                            for name, errors in self.camera_errors.items() if errors]
                level, message = WARN, ("no complete surround set yet; inputs dropped on " + ", ".join(dropping)
                                        + " (the reason is in the log)" if dropping
                                        else "waiting for a complete surround set")
            statuses = [("surround_depth: pipeline", level, message, {k: str(v) for k, v in values.items()})]
            for name in self.camera_names:
                errors = self.camera_errors[name]
                silent = name in self.silent
                cam_level = WARN if silent or errors else OK
                msg = "silent" if silent else ("dropped inputs: " + ", ".join(f"{k} x{v}" for k, v in errors.items())
                                               if errors else "ok")
                statuses.append((f"surround_depth: camera {name}", cam_level, msg,
                                 {"input rate [Hz]": f"{self.input_rates[name].rate(now):.2f}",
                                  **{f"dropped {k}": str(v) for k, v in errors.items()}}))
            return statuses
