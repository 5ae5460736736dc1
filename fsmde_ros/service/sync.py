"""Group N camera streams into surround sets by header stamp (approximate time sync), ROS-free.

A surround set holds one message per camera whose stamps all lie within `slop` seconds. DDAD
cameras are hardware-triggered (stamps within a few ms); nuScenes cameras fire as the lidar sweeps
past, so one set spreads up to ~50 ms. Unlike ROS `message_filters`, whose Python approximate
synchroniser effectively searches combinations of queue entries, each message here costs one
sweep over the stamps within +-slop of it, a dead camera is reported (and optionally left out),
and a bag that loops restarts the epoch instead of wedging the queues.

Clocks: `stamp` is the header stamp [ns] (sensor time, integer: exact at any epoch, no tolerance)
and decides grouping; `now` is the arrival time [s] on a monotonic clock and decides liveness only
(`camera_timeout`). Telling a time jump from a late frame is `time_jumps.TimeJumps`'s job.
"""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any, Sequence

from fsmde_ros.service.set_window import earliest_set_end
from fsmde_ros.service.time_jumps import HeldFrame, TimeJumps

NS = 1_000_000_000  # [ns] per second


@dataclass
class SyncedSet:
    """One surround set: at most one message per input, member stamps within slop."""
    stamp_ns: int                 # reference stamp [ns]: the latest stamp among its members (exact)
    messages: list[Any | None]    # one per input, in input order; None for a camera left out
    stamps_ns: list[int | None]   # member stamps [ns], None where missing

    @property
    def stamp(self) -> float:
        """The reference stamp [s]."""
        return self.stamp_ns / NS

    @property
    def stamps(self) -> list[float | None]:
        """Member stamps [s], None where missing."""
        return [None if t is None else t / NS for t in self.stamps_ns]

    @property
    def partial(self) -> bool:
        return any(s is None for s in self.stamps_ns)

    @property
    def missing(self) -> list[int]:
        """Indices of the inputs left out (silent cameras with allow_partial)."""
        return [i for i, s in enumerate(self.stamps_ns) if s is None]

    @property
    def spread(self) -> float:
        """Max - min stamp of the members [s]."""
        present = [s for s in self.stamps if s is not None]
        return max(present) - min(present)


@dataclass
class CameraState:
    """Per-input diagnostics, e.g. for a diagnostic_msgs status naming the dead camera."""
    name: str
    last_stamp_ns: int | None     # header stamp of the last message received [ns]
    last_arrival: float | None    # arrival time of the last message [s]
    age: float | None             # now - last_arrival [s]
    silent: bool                  # nothing for > camera_timeout (or never, once others flow)
    received: int                 # messages offered through add_ns()
    dropped: int                  # overflow + stale + duplicate + cleared by a time jump
    queued: int                   # messages waiting in its queue
    used: int = 0                 # messages emitted in sets (received == used + dropped + queued)


@dataclass
class SyncStats:
    """Counters since construction."""
    sets_emitted: int = 0
    partial_sets: int = 0
    dropped_overflow: int = 0     # oldest message pushed out of a full queue
    dropped_stale: int = 0        # too old for any future set (on arrival or when a set leaves)
    dropped_duplicate: int = 0    # same input, same stamp as a queued or already consumed message
    dropped_reset: int = 0        # queued messages discarded by a time jump
    resets: int = 0               # backwards time jumps (bag loops) that restarted the epoch

    @property
    def dropped_messages(self) -> int:
        return (self.dropped_overflow + self.dropped_stale + self.dropped_duplicate
                + self.dropped_reset)


class SurroundSynchronizer:
    """Approximate-time synchroniser for N inputs with bounded queues and dead-camera handling.

    Algorithm: each input keeps a queue sorted by stamp [ns]. A set with reference stamp p exists when
    every required input has a message in [p - slop, p]; the earliest such p is found by a sliding
    window over the merged, sorted stamps, and each input contributes its latest message <= p (the
    one closest to the others). Emitting consumes those messages and everything older in every
    queue, so all queued stamps stay > p and set stamps increase. Invariant: after every call no
    complete set is left queued, hence a new message can only complete a set that contains it, and
    add_ns() only sweeps the stamps within +-slop of it: O(N log Q + K log K) with K the stamps in that
    range (about N in steady state, at most N * queue_size), independent of how many combinations
    of queue entries exist. When the set of required inputs changes (a camera goes silent or comes
    back, allow_partial only) the whole queues are swept, once per backlog set emitted plus once:
    O(N * Q log(N * Q)) each. A message the queues would drop (stale, duplicate, overflow) is counted.
    A stamp that steps back is first shown to the time-jump policy (TimeJumps); at a confirmed jump
    the queues are flushed and a new epoch begins with the frames it held.
    """

    def __init__(self, names: Sequence[str], slop: float, queue_size: int = 5,
                 camera_timeout: float = 1.0, allow_partial: bool = False):
        self.names = [str(n) for n in names]
        if not self.names:
            raise ValueError("need at least one input")
        if not (math.isfinite(slop) and slop >= 0):
            raise ValueError(f"slop must be a finite number of seconds >= 0, got {slop}")
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not camera_timeout > 0:
            raise ValueError(f"camera_timeout must be > 0 s, got {camera_timeout}")
        self.slop = float(slop)                    # [s]
        self._slop = int(round(self.slop * NS))    # [ns]: "within slop" is decided on integers, exactly
        self.queue_size = int(queue_size)
        self.camera_timeout = float(camera_timeout)  # [s] on the arrival clock
        self.allow_partial = bool(allow_partial)
        # A stamp this far [s] behind its reference is a restart (bag loop), not a late message.
        self.jump_threshold = max(1.0, 10.0 * self.slop)
        n = len(self.names)
        self._jumps = TimeJumps(n, self._slop, int(round(self.jump_threshold * NS)), self.queue_size,
                                self.camera_timeout)
        self.stats = SyncStats()
        self._received, self._dropped, self._used = [0] * n, [0] * n, [0] * n
        self._last_stamp: list[int | None] = [None] * n      # [ns]
        self._last_arrival: list[float | None] = [None] * n  # [s]
        self._flow_start: float | None = None      # arrival of the first message ever [s]
        self._stamps: list[list[int]] = [[] for _ in range(n)]  # queued stamps per input [ns], sorted
        self._msgs: list[list[Any]] = [[] for _ in range(n)]
        self._clear()

    # -- public API -------------------------------------------------------------------------
    def add_ns(self, index: int, stamp: int, msg: Any, now: float) -> list[SyncedSet]:
        """Offer one message: stamp = header stamp [ns] (sec * 10^9 + nanosec), now = arrival time [s], monotonic.

        Returns the sets completed by it, oldest first (usually 0 or 1; more when a camera has just gone silent
        with allow_partial and the others' backlog forms partial sets, or when a time jump replays held frames).
        """
        if not 0 <= index < len(self.names):
            raise IndexError(f"input index {index} out of range for {len(self.names)} inputs")
        stamp = int(stamp)
        self._received[index] += 1
        self._last_stamp[index], self._last_arrival[index] = stamp, now
        if self._flow_start is None:
            self._flow_start = now

        # A step back (against this input's newest stamp in the epoch, else the last set's) is held by the
        # time-jump policy until it is told a straggler (dropped) or the rig's jump (a new epoch).
        jumps, ref = self._jumps, self._reference(index)
        if jumps.far_back(ref, stamp):
            if len(self.names) > 1 and not jumps.confirms(index, stamp):
                self._hold(HeldFrame(index, stamp, msg, now, "stale", far=True))
                return []
            return self._restart(jumps.take(far=True), now, (index, stamp, msg))
        reason = self._reject_reason(index, stamp, now)
        if reason in ("stale", "duplicate") and jumps.steps_back(ref, stamp):
            self._hold(HeldFrame(index, stamp, msg, now, reason, far=False))
            if not jumps.replays_sets(self._required(now)):
                return []
            return self._restart(jumps.take(far=False), now, None)
        jumps.release(index)
        return self._accept(index, stamp, msg, now)

    def poll(self, now: float) -> list[SyncedSet]:
        """Call periodically (e.g. 10 Hz timer): with allow_partial, emits the sets that become
        complete once a camera is declared silent, without waiting for the next message."""
        return self._emit(now, None)

    def states(self, now: float) -> list[CameraState]:
        """Per-input diagnostics at arrival time `now` [s]."""
        return [CameraState(
            name=name, last_stamp_ns=self._last_stamp[c], last_arrival=self._last_arrival[c],
            age=None if self._last_arrival[c] is None else now - self._last_arrival[c],
            silent=self._silent(c, now), received=self._received[c], dropped=self._dropped[c],
            queued=len(self._stamps[c]), used=self._used[c]) for c, name in enumerate(self.names)]

    # -- time jumps -------------------------------------------------------------------------
    def _reference(self, index: int) -> int | None:
        """What a step back is measured against [ns]: this input's newest stamp in the epoch, else the last set's."""
        newest = self._newest[index]
        return newest if newest is not None else self._last_set_stamp

    def _hold(self, frame: HeldFrame) -> None:
        """Drop a frame that stepped back (counted at once, for its reason) but let the policy keep it for a replay."""
        self._drop(frame.index, frame.reason, 1)
        self._jumps.hold(frame)

    def _restart(self, held: list[HeldFrame], now: float, frame: tuple[int, int, Any] | None) -> list[SyncedSet]:
        """Begin a new epoch at a confirmed jump back: flush the queues, replay the held frames (no longer
        dropped), then `frame` (index, stamp [ns], msg), the one that confirmed a far jump (None for a short loop)."""
        for h in held:
            self._drop(h.index, h.reason, -1)
        old_end = max(s for s in [*self._newest, self._last_set_stamp] if s is not None)
        new_start = min([h.stamp for h in held] + ([] if frame is None else [frame[1]]))
        self._clear()
        self.stats.resets += 1
        self._jumps.guard(now + self.camera_timeout, old_end, new_start)
        out = []
        for h in held:
            out += self._accept(h.index, h.stamp, h.msg, h.arrival)
        return out if frame is None else out + self._accept(*frame, now)

    # -- grouping ---------------------------------------------------------------------------
    def _accept(self, index: int, stamp: int, msg: Any, now: float) -> list[SyncedSet]:
        """Queue one message of the current epoch (or drop it, counted) and emit what it completes."""
        reason = self._reject_reason(index, stamp, now)
        if reason is not None:
            self._drop(index, reason, 1)
            return self._emit(now, None)

        q, m = self._stamps[index], self._msgs[index]
        i = bisect_right(q, stamp)
        q.insert(i, stamp)
        m.insert(i, msg)
        if self._newest[index] is None or stamp > self._newest[index]:
            self._newest[index] = stamp
        new: int | None = stamp
        if len(q) > self.queue_size:               # overflow: the oldest stamp goes
            if i == 0:
                new = None                         # ... which is the new message itself
            del q[0], m[0]
            self._drop(index, "overflow", 1)
        return self._emit(now, new)

    def _clear(self) -> None:
        """Start an epoch: queued messages count as dropped ("reset"); counters and arrival history stay."""
        for c, q in enumerate(self._stamps):
            self._drop(c, "reset", len(q))
            q.clear()
            self._msgs[c].clear()
        n = len(self.names)
        self._newest: list[int | None] = [None] * n     # newest accepted stamp per input [ns]
        self._watermark: list[int | None] = [None] * n  # newest stamp consumed per input [ns]
        self._last_set_stamp: int | None = None         # [ns]
        self._swept_for: tuple[int, ...] | None = None  # inputs required at the last whole sweep

    def _drop(self, index: int, reason: str, count: int) -> None:
        if count:                                           # (negative: a held frame replayed after all)
            self._dropped[index] += count
            key = "dropped_" + reason
            setattr(self.stats, key, getattr(self.stats, key) + count)

    def _reject_reason(self, index: int, stamp: int, now: float) -> str | None:
        """Why the queues would drop this stamp [ns]: "stale", "duplicate", or None to queue it."""
        if self._jumps.straggler(self._newest[index] is None, stamp, now):
            return "stale"                          # the old epoch's, in flight after a time jump
        if self._last_set_stamp is not None and stamp <= self._last_set_stamp - self._slop:
            return "stale"                          # future sets have all stamps > last - slop
        wm = self._watermark[index]
        if wm is not None and stamp <= wm:          # not older than what this input already gave
            return "duplicate" if stamp == wm else "stale"
        q = self._stamps[index]
        i = bisect_left(q, stamp)
        if i < len(q) and q[i] == stamp:
            return "duplicate"
        return None

    def _silent(self, c: int, now: float) -> bool:
        last = self._last_arrival[c]
        if last is None:
            return self._flow_start is not None and now - self._flow_start > self.camera_timeout
        return now - last > self.camera_timeout

    def _required(self, now: float) -> tuple[int, ...]:
        """The inputs a set needs at arrival time `now` [s]: all, or (allow_partial) those not silent."""
        n = len(self.names)
        return tuple(c for c in range(n) if not self._silent(c, now)) if self.allow_partial else tuple(range(n))

    def _emit(self, now: float, new: int | None) -> list[SyncedSet]:
        """The sets now complete: those containing the `new` stamp [ns], or all when the required inputs changed."""
        required = self._required(now)
        out: list[SyncedSet] = []
        if required != self._swept_for:             # invariant may not hold: sweep everything
            self._swept_for = required
            while (s := self._search(required, None)) is not None:
                out.append(s)
        elif new is not None:                       # only sets containing the new stamp
            s = self._search(required, new)
            if s is not None:
                out.append(s)
        return out

    def _search(self, required: tuple[int, ...], near: int | None) -> SyncedSet | None:
        """Earliest set among the stamps within +-slop of `near` [ns] (all queued stamps if None);
        consumes and returns it, or None."""
        if not required:
            return None
        windows = []
        for c in required:
            q = self._stamps[c]
            if near is None:
                i, j = 0, len(q)
            else:
                i, j = bisect_left(q, near - self._slop), bisect_right(q, near + self._slop)
            if i == j:
                return None                         # this input has nothing in range
            windows.append(q[i:j])
        p = earliest_set_end(windows, range(len(required)), self._slop)
        return None if p is None else self._consume(required, p)

    def _consume(self, required: tuple[int, ...], p: int) -> SyncedSet:
        """Emit the set ending at `p` [ns]: each required input's latest message <= p; older ones are stale."""
        n = len(self.names)
        messages: list[Any | None] = [None] * n
        stamps: list[int | None] = [None] * n
        req = set(required)
        for c in range(n):
            q, m = self._stamps[c], self._msgs[c]
            k = bisect_right(q, p)                  # entries <= p: used or stale from now on
            if k == 0:
                continue
            if c in req:                            # latest <= p lies in [p - slop, p]
                messages[c], stamps[c] = m[k - 1], q[k - 1]
                self._used[c] += 1
                self._drop(c, "stale", k - 1)
            else:
                self._drop(c, "stale", k)
            self._watermark[c] = q[k - 1]
            del q[:k], m[:k]
        self._last_set_stamp = p
        synced = SyncedSet(stamp_ns=p, messages=messages, stamps_ns=stamps)
        self.stats.sets_emitted += 1
        self.stats.partial_sets += synced.partial
        return synced
