"""Per-image work as each camera's frame arrives, so that completing a set leaves only the batch hand-off.

On a vehicle the six frames of a set arrive a few milliseconds apart. Each is decoded, its calibration looked
up and, where its set will be resized on the host, remapped to the model's size (3-5 ms for a 1936x1216 frame on
a 2-core CPU) in a small thread pool as soon as it arrives, while the other cameras' frames are still on their
way; the synchroniser queues the `Frame` in place of the message. When the set completes, the worker takes the
prepared images (waiting only for work still running) and stacks them.

A frame the synchroniser drops (stale, overflow, a set dropped under overload) is freed with it: work not yet
started is cancelled (counted as `frames_cancelled`), work already done is counted as `frames_wasted`; nothing
else is spent on it. The counts are in /diagnostics.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import cv2
import numpy as np

from fsmde_ros.service.calibration import Calibration

MAX_WORKERS = 4  # more threads than this only fight the backend for the cores


@dataclasses.dataclass
class PreparedImage:
    """One camera frame after its per-image work.

    rgb: uint8 [H,W,3] at the size it arrived (None: undecodable, `error` says why); calibration: the camera's at that
    size from its CameraInfo (None: the rig's intrinsics); model: (image uint8 [h,w,3], K [3,3], resized) at the
    model's size when the host path resizes it, else None (the deployment graph takes `rgb` as it is);
    prep_ms: the time the work took [ms], off the set's critical path unless the set waited for it."""

    rgb: np.ndarray | None
    calibration: Calibration | None = None
    model: tuple[np.ndarray, np.ndarray, bool] | None = None
    error: str | None = None
    prep_ms: float = 0.0


class _State:
    __slots__ = ("taken",)

    def __init__(self) -> None:
        self.taken = False


class Frame:
    """A camera message in the synchroniser's queue, with the future of its per-image work."""

    __slots__ = ("msg", "_future", "_state", "__weakref__")

    def __init__(self, msg: Any, future: Future, state: _State):
        self.msg, self._future, self._state = msg, future, state

    @property
    def ready(self) -> bool:
        """Is the per-image work done (the set will not wait for it)?"""
        return self._future.done()

    def take(self) -> PreparedImage:
        """The prepared image (waits for work still running); the frame is used, not wasted."""
        self._state.taken = True
        return self._future.result()


def prep_workers(threads: int, cameras: int) -> int:
    """Threads of the per-image pool: the `threads` parameter (0: the machine's cores), at most one per camera and
    MAX_WORKERS."""
    return max(1, min(int(threads) or os.cpu_count() or 1, cameras, MAX_WORKERS))


class FramePreparer:
    """Runs `prepare(camera index, message) -> PreparedImage` for each arriving frame on a pool of `workers`
    threads; `counts()` says how many dropped frames were cancelled or wasted."""

    def __init__(self, prepare: Callable[[int, Any], PreparedImage], workers: int):
        self._prepare = prepare
        # the pool already spreads the frames over the cores: OpenCV's own threads on top only fight the backend for
        # them (6 DDAD frames beside an ONNX Runtime inference on 2 cores: the same 26 ms to prepare, the inference
        # 46 instead of 49 ms meanwhile); each worker's cv2 call gets its share of the cores (process-wide setting)
        cv2.setNumThreads(max(1, (os.cpu_count() or 1) // workers))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fsmde_frames")
        # a freed frame's outcome, appended by its finalizer: a deque takes it without a lock, in whatever thread (and
        # at whatever point: a frame in a reference cycle is freed by the garbage collector) the frame was freed in
        self._freed: collections.deque[str] = collections.deque()
        self._totals: collections.Counter[str] = collections.Counter()

    def counts(self) -> dict[str, int]:
        """{"frames_cancelled": n, "frames_wasted": m}: dropped frames whose work was cancelled before it began, or
        done for nothing, since the start."""
        while self._freed:
            self._totals[self._freed.popleft()] += 1
        return {key: self._totals[key] for key in ("frames_cancelled", "frames_wasted")}

    def submit(self, i: int, msg: Any) -> Frame:
        """Start camera i's per-image work on `msg`; the returned Frame goes where the message went."""
        future = self._pool.submit(self._prepare, i, msg)
        state = _State()
        frame = Frame(msg, future, state)
        weakref.finalize(frame, _freed, future, state, self._freed)
        return frame

    def close(self) -> None:
        """Stop the pool (work not started is cancelled); frames still held are freed as usual."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _freed(future: Future, state: _State, outcomes: collections.deque) -> None:
    """A frame was freed: nothing to count when a set took it; else its work is cancelled or was wasted."""
    if not state.taken:
        outcomes.append("frames_cancelled" if future.cancel() else "frames_wasted")
