"""Group N camera streams into surround sets by header stamp (approximate time sync), ROS-free.

A surround set holds one message per camera whose stamps all lie within `slop` seconds. DDAD
cameras are hardware-triggered (stamps within a few ms); nuScenes cameras fire as the lidar sweeps
past, so one set spreads up to ~50 ms. Unlike ROS `message_filters`, whose Python approximate
synchroniser effectively searches combinations of queue entries, each message here costs one
sweep over the stamps within +-slop of it, a dead camera is reported (and optionally left out),
and a bag that loops restarts the epoch instead of wedging the queues.

Clocks: `stamp` is the header stamp [s] (sensor time) and decides grouping; `now` is the arrival
time [s] on a monotonic clock and decides liveness only (`camera_timeout`).
"""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Any, Sequence

NS = 1_000_000_000  # stamps are kept as integer nanoseconds (sec, nanosec): exact at any epoch, no tolerance
# One input's jump back is taken for the rig's after this many frames in a row (a lone straggler is not).
JUMP_PERSISTENCE = 3


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
    last_stamp: float | None      # header stamp of the last message received [s]
    last_arrival: float | None    # arrival time of the last message [s]
    age: float | None             # now - last_arrival [s]
    silent: bool                  # nothing for > camera_timeout (or never, once others flow)
    received: int                 # messages offered through add()
    dropped: int                  # overflow + stale + duplicate + cleared by a reset
    queued: int                   # messages waiting in its queue
    used: int = 0                 # messages emitted in sets (received == used + dropped + queued)


@dataclass
class SyncStats:
    """Counters since construction (reset() keeps them)."""
    sets_emitted: int = 0
    partial_sets: int = 0
    dropped_overflow: int = 0     # oldest message pushed out of a full queue
    dropped_stale: int = 0        # too old for any future set (on arrival or when a set leaves)
    dropped_duplicate: int = 0    # same input, same stamp as a queued or already consumed message
    dropped_reset: int = 0        # queued messages discarded by a time jump or reset()
    resets: int = 0               # backwards time jumps (bag loops) that restarted the epoch

    @property
    def dropped_messages(self) -> int:
        return (self.dropped_overflow + self.dropped_stale + self.dropped_duplicate
                + self.dropped_reset)


def earliest_set_end(queues: Sequence[Sequence[int]], required: Sequence[int], slop: int) -> int | None:
    """Smallest p such that every required queue holds a stamp in [p - slop, p] (stamps and slop in ns), or None.

    A sliding window over the merged, sorted stamps: O(K log K) for K stamps in the required queues."""
    required = list(required)
    if not required or any(not queues[c] for c in required):
        return None
    items = sorted((s, k) for k, c in enumerate(required) for s in queues[c])
    counts = [0] * len(required)
    covered, left = 0, 0
    for s, k in items:                              # window [s - slop, s]: right end = candidate p
        if counts[k] == 0:
            covered += 1
        counts[k] += 1
        while s - items[left][0] > slop:
            lk = items[left][1]
            counts[lk] -= 1
            if counts[lk] == 0:
                covered -= 1
            left += 1
        if covered == len(required):
            return s
    return None


class SurroundSynchronizer:
    """Approximate-time synchroniser for N inputs with bounded queues and dead-camera handling.

    Algorithm: each input keeps a queue sorted by stamp. A set with reference stamp p exists when
    every required input has a message in [p - slop, p]; the earliest such p is found by a sliding
    window over the merged, sorted stamps, and each input contributes its latest message <= p (the
    one closest to the others). Emitting consumes those messages and everything older in every
    queue, so all queued stamps stay > p and set stamps increase. Invariant: after every call no
    complete set is left queued, hence a new message can only complete a set that contains it, and
    add() only sweeps the stamps within +-slop of it: O(N log Q + K log K) with K the stamps in that
    range (about N in steady state, at most N * queue_size), independent of how many combinations
    of queue entries exist. When the set of required inputs changes (a camera goes silent or comes
    back, allow_partial only) the whole queues are swept, once per backlog set emitted plus once:
    O(N * Q log(N * Q)) each.
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
        self._jump = int(round(self.jump_threshold * NS))  # [ns]
        self.stats = SyncStats()
        n = len(self.names)
        self._received, self._dropped, self._used = [0] * n, [0] * n, [0] * n
        self._last_stamp: list[int | None] = [None] * n      # [ns]
        self._last_arrival: list[float | None] = [None] * n
        self._flow_start: float | None = None      # arrival of the first message ever [s]
        self._stamps: list[list[int]] = [[] for _ in range(n)]  # queued stamps per input [ns], sorted
        self._msgs: list[list[Any]] = [[] for _ in range(n)]
        # Frames that stepped back, held until told a straggler or the rig's jump: (stamp [ns], msg, arrival [s],
        # reason it would be dropped for, far: behind by more than jump_threshold)
        self._held: list[list[tuple[int, Any, float, str, bool]]] = [[] for _ in range(n)]
        self._clear()

    # -- public API -------------------------------------------------------------------------
    def add(self, index: int, stamp: float, msg: Any, now: float) -> list[SyncedSet]:
        """Offer one message (stamp = header stamp [s]; now = arrival time [s], monotonic).

        Returns the sets completed by it, oldest first (usually 0 or 1; more when a camera has
        just gone silent with allow_partial and the others' backlog forms partial sets). A header's
        (sec, nanosec) is best given exactly with `add_ns`: float seconds resolve only ~0.2 us at
        Unix-epoch magnitudes.
        """
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp}")
        return self.add_ns(index, int(round(stamp * NS)), msg, now)

    def add_ns(self, index: int, stamp: int, msg: Any, now: float) -> list[SyncedSet]:
        """As `add`, with the header stamp as integer nanoseconds (sec * 10^9 + nanosec)."""
        if not 0 <= index < len(self.names):
            raise IndexError(f"input index {index} out of range for {len(self.names)} inputs")
        stamp = int(stamp)
        self._received[index] += 1
        self._last_stamp[index], self._last_arrival[index] = stamp, now
        if self._flow_start is None:
            self._flow_start = now

        # Backwards time jump, measured against this input's newest stamp in the epoch (or the last emitted set's
        # when the input has none yet). A frame far behind (> jump_threshold) is held and becomes the rig's jump
        # when another input jumps back alike or this one keeps to the new epoch; a shorter step back that would be
        # dropped is held too and becomes a loop once the held frames replay a whole set and frames of the next. A held frame whose
        # input goes on in the old epoch was a straggler (a frame buffered during a stall, or stamped 0): dropped
        # for its reason. Held frames rejoin a confirmed jump.
        if self._jumped_back(index, stamp):
            if len(self.names) > 1 and not self._confirms_jump(index, stamp):
                self._hold(index, stamp, msg, now, "stale", far=True)
                return []
            return self._restart(index, stamp, msg, now)
        reason = self._reject_reason(index, stamp, now)
        if reason in ("stale", "duplicate") and self._steps_back(index, stamp):
            self._hold(index, stamp, msg, now, reason, far=False)
            if not self._replays_sets(now):
                return []
            return self._restart(None, 0, None, now)
        self._release(index)
        return self._accept(index, stamp, msg, now)

    def _hold(self, index: int, stamp: int, msg: Any, now: float, reason: str, far: bool) -> None:
        """Drop a frame that stepped back (counted at once, for its reason) but keep it for a replay should the jump
        be confirmed; frames held longer than camera_timeout (arrival) or beyond queue_size are forgotten."""
        self._drop(index, reason, 1)
        self._held = [[h for h in hs if now - h[2] <= self.camera_timeout] for hs in self._held]
        hs = self._held[index]
        hs.append((stamp, msg, now, reason, far))
        del hs[:-self.queue_size]

    def _release(self, index: int) -> None:
        """This input goes on in the old epoch: what it held were stragglers (already counted as dropped)."""
        self._held[index] = []

    def _restart(self, index: int | None, stamp: int, msg: Any, now: float) -> list[SyncedSet]:
        """Begin a new epoch at a confirmed jump back: flush the queues, replay the held frames of that kind of jump
        (far ones for a far jump with this frame; short ones for a short loop); the others stay dropped."""
        far = index is not None
        replay = [(h[2], c, h[0], h[1], h[3]) for c, hs in enumerate(self._held) for h in hs if h[4] == far]
        held = sorted(replay, key=lambda h: h[:3])
        for _, c, _, _, reason in held:                         # replayed: no longer dropped
            self._drop(c, reason, -1)
        self._held = [[] for _ in self.names]
        old_end = max(s for s in [*self._newest, self._last_set_stamp] if s is not None)
        new_start = min([stamp] * far + [h[2] for h in held])
        self._clear()
        self.stats.resets += 1
        # Messages of the old epoch still in flight on inputs that have not yet sent a frame of the new one are
        # stragglers: for camera_timeout [s] of arrival time, such an input's frames nearer the old epoch's end
        # than the new one's start are dropped; its first nearer the start begins its new epoch.
        self._guard = (now + self.camera_timeout, (old_end + new_start) // 2)
        out = []
        for t, c, st, m, _ in held:
            out += self._accept(c, st, m, t)
        return out if index is None else out + self._accept(index, stamp, msg, now)

    def _jumped_back(self, index: int, stamp: int) -> bool:
        """Is this stamp [ns] far behind this input's newest (or the last set's) by more than jump_threshold: a
        bag loop or a clock reset, or a straggler (see add)? A shorter step back cannot be told from a late
        frame by its stamp alone: see _steps_back and _replays_sets."""
        ref = self._reference(index)
        return ref is not None and stamp < ref - self._jump

    def _reference(self, index: int) -> int | None:
        """What a step back is measured against [ns]: this input's newest stamp in the epoch, else the last set's."""
        newest = self._newest[index]
        return newest if newest is not None else self._last_set_stamp

    def _confirms_jump(self, index: int, stamp: int) -> bool:
        """A held jump back is the rig's when another input holds one into the same epoch (within the jump
        threshold of this stamp), or this input has jumped back JUMP_PERSISTENCE times in a row."""
        others = any(far and abs(st - stamp) <= self._jump for c, hs in enumerate(self._held) if c != index
                     for st, _, _, _, far in hs)
        return others or sum(h[4] for h in self._held[index]) + 1 >= JUMP_PERSISTENCE

    def _steps_back(self, index: int, stamp: int) -> bool:
        """Is this (droppable) stamp [ns] at or behind this input's newest (or the last set's): a candidate
        for a bag loop shorter than jump_threshold, as opposed to a frame late within its own epoch?"""
        ref = self._reference(index)
        return ref is not None and stamp <= ref

    def _replays_sets(self, now: float) -> bool:
        """Do the held short steps back replay the rig's stream: one whole set of the inputs that are not silent,
        then, on two of them (one of two inputs), a frame of a later set that arrived after its member of the set?
        A late frame, or a whole set arriving after the next one, does not; neither do copies of older frames."""
        required = [c for c in range(len(self.names)) if not self.allow_partial or not self._silent(c, now)]
        held = [[h[0] for h in self._held[c] if not h[4]] for c in range(len(self.names))]  # stamps, arrival order
        p = earliest_set_end([sorted(q) for q in held], required, self._slop)
        if p is None:
            return False
        after = sum(bool(q) and q[-1] > p + self._slop and any(p - self._slop <= st <= p for st in q[:-1])
                    for q in held)
        return after >= max(1, min(2, len(required) - 1))

    def _accept(self, index: int, stamp: float, msg: Any, now: float) -> list[SyncedSet]:
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
        new: float | None = stamp
        if len(q) > self.queue_size:               # overflow: the oldest stamp goes
            if i == 0:
                new = None                         # ... which is the new message itself
            del q[0], m[0]
            self._drop(index, "overflow", 1)
        return self._emit(now, new)

    def poll(self, now: float) -> list[SyncedSet]:
        """Call periodically (e.g. 10 Hz timer): with allow_partial, emits the sets that become
        complete once a camera is declared silent, without waiting for the next message."""
        return self._emit(now, None)

    def states(self, now: float) -> list[CameraState]:
        """Per-input diagnostics at arrival time `now` [s]."""
        return [CameraState(
            name=name, last_stamp=None if self._last_stamp[c] is None else self._last_stamp[c] / NS,
            last_arrival=self._last_arrival[c],
            age=None if self._last_arrival[c] is None else now - self._last_arrival[c],
            silent=self._silent(c, now), received=self._received[c], dropped=self._dropped[c],
            queued=len(self._stamps[c]), used=self._used[c]) for c, name in enumerate(self.names)]

    def silent(self, now: float) -> list[str]:
        """Names of the inputs that are silent at `now` [s]."""
        return [name for c, name in enumerate(self.names) if self._silent(c, now)]

    def reset(self) -> None:
        """Forget queued messages and the stamp epoch (e.g. on /clock reset). Queued messages
        count as dropped; counters and arrival history are kept; `stats.resets` is not bumped."""
        self._held = [[] for _ in self.names]
        self._clear()

    # -- internals --------------------------------------------------------------------------
    def _clear(self) -> None:
        for c, q in enumerate(self._stamps):
            self._drop(c, "reset", len(q))
            q.clear()
            self._msgs[c].clear()
        n = len(self.names)
        self._newest: list[int | None] = [None] * n     # newest accepted stamp per input [ns]
        self._watermark: list[int | None] = [None] * n  # newest stamp consumed per input [ns]
        self._last_set_stamp: float | None = None
        self._required: tuple[int, ...] | None = None     # inputs required at the last search
        self._guard: tuple[float, int] | None = None      # (until arrival [s], min straggler stamp [ns])

    def _drop(self, index: int, reason: str, count: int) -> None:
        if count:                                           # (negative: a held frame replayed after all)
            self._dropped[index] += count
            key = "dropped_" + reason
            setattr(self.stats, key, getattr(self.stats, key) + count)

    def _reject_reason(self, index: int, stamp: float, now: float) -> str | None:
        if self._guard is not None:
            if now > self._guard[0]:
                self._guard = None
            elif self._newest[index] is None and stamp >= self._guard[1]:  # no frame of the new epoch yet
                return "stale"
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

    def _emit(self, now: float, new: float | None) -> list[SyncedSet]:
        n = len(self.names)
        required = (tuple(c for c in range(n) if not self._silent(c, now))
                    if self.allow_partial else tuple(range(n)))
        out: list[SyncedSet] = []
        if required != self._required:              # invariant may not hold: sweep everything
            self._required = required
            while (s := self._search(required, -math.inf, math.inf)) is not None:
                out.append(s)
        elif new is not None:                       # only sets containing the new stamp
            s = self._search(required, new - self._slop, new + self._slop)
            if s is not None:
                out.append(s)
        return out

    def _search(self, required: tuple[int, ...], lo: float, hi: float) -> SyncedSet | None:
        """Earliest set among the stamps in [lo, hi] [s]; consumes and returns it, or None."""
        if not required:
            return None
        windows = []
        for c in required:
            q = self._stamps[c]
            i, j = bisect_left(q, lo), bisect_right(q, hi)
            if i == j:
                return None                         # this input has nothing in range
            windows.append(q[i:j])
        p = earliest_set_end(windows, range(len(required)), self._slop)
        return None if p is None else self._consume(required, p)

    def _consume(self, required: tuple[int, ...], p: float) -> SyncedSet:
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
