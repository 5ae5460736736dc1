"""Time jumps of the rig's stamps (a bag that loops, a clock set back) told from late frames, ROS-free.

A frame whose header stamp [ns] steps back behind its input's newest may be a straggler (buffered
during a stall, stamped 0) or the first frame of a new epoch; its stamp alone cannot tell. So the
synchroniser drops it (counted) but the policy here holds it, and the frames after it decide:
- far back (behind by more than `threshold_ns`): the rig's jump once another input holds one into
  the same epoch, or this input has jumped back JUMP_PERSISTENCE times in a row;
- a shorter step back that would be dropped (stale or duplicate): a loop once the held frames replay
  one whole set of the required inputs and then frames of a later set (`replays_sets`);
- a held frame whose input goes on in the old epoch was a straggler: it stays dropped.
At a confirmed jump the held frames of that kind rejoin the new epoch, and for camera_timeout [s] of
arrival time the old epoch's frames still in flight are dropped as stragglers (`straggler`).
Arrival times [s] are on the synchroniser's monotonic clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from fsmde_ros.service.set_window import earliest_set_end

# One input's jump back is taken for the rig's after this many frames in a row (a lone straggler is not).
JUMP_PERSISTENCE = 3


@dataclass(frozen=True)
class HeldFrame:
    """A frame that stepped back: counted as dropped for `reason` unless a confirmed jump replays it."""
    index: int        # input
    stamp: int        # header stamp [ns]
    msg: Any
    arrival: float    # [s]
    reason: str       # "stale" or "duplicate"
    far: bool         # behind its reference by more than the jump threshold


class TimeJumps:
    """The held frames of each input and the judgement of when they are the rig's jump back.

    A step back is measured against a reference stamp [ns] the synchroniser gives: the input's newest in
    the epoch, else the last set's. Frames are held at most camera_timeout [s] and queue_size per input."""

    def __init__(self, inputs: int, slop_ns: int, threshold_ns: int, queue_size: int, camera_timeout: float):
        self.slop_ns, self.threshold_ns = slop_ns, threshold_ns
        self.queue_size, self.camera_timeout = queue_size, camera_timeout
        self._held: list[list[HeldFrame]] = [[] for _ in range(inputs)]  # per input, in arrival order
        self._guard: tuple[float, int] | None = None  # (until arrival [s], min straggler stamp [ns])

    def far_back(self, ref: int | None, stamp: int) -> bool:
        """Is `stamp` behind `ref` by more than the threshold: a bag loop, a clock reset, or a straggler?
        A shorter step back cannot be told from a late frame by its stamp alone: see steps_back."""
        return ref is not None and stamp < ref - self.threshold_ns

    def steps_back(self, ref: int | None, stamp: int) -> bool:
        """Is this (droppable) stamp at or behind `ref`: a candidate for a loop shorter than the threshold,
        as opposed to a frame late within its own epoch?"""
        return ref is not None and stamp <= ref

    def confirms(self, index: int, stamp: int) -> bool:
        """Is a far jump back to `stamp` the rig's: another input holds one into the same epoch (within the
        threshold of this stamp), or this input has jumped back JUMP_PERSISTENCE times in a row?"""
        others = any(h.far and abs(h.stamp - stamp) <= self.threshold_ns
                     for c, hs in enumerate(self._held) if c != index for h in hs)
        return others or sum(h.far for h in self._held[index]) + 1 >= JUMP_PERSISTENCE

    def replays_sets(self, required: Sequence[int]) -> bool:
        """Do the held short steps back replay the rig's stream: one whole set of the required inputs, then,
        on two of them (one of two inputs), a frame of a later set that arrived after its member of the set?
        A late frame, or a whole set arriving after the next one, does not; neither do copies of older frames."""
        slop = self.slop_ns
        held = [[h.stamp for h in hs if not h.far] for hs in self._held]  # arrival order
        p = earliest_set_end([sorted(q) for q in held], required, slop)
        if p is None:
            return False
        after = sum(bool(q) and q[-1] > p + slop and any(p - slop <= st <= p for st in q[:-1]) for q in held)
        return after >= max(1, min(2, len(required) - 1))

    def hold(self, frame: HeldFrame) -> None:
        """Keep a dropped frame for a replay; frames held longer than camera_timeout or beyond queue_size go."""
        self._held = [[h for h in hs if frame.arrival - h.arrival <= self.camera_timeout] for hs in self._held]
        hs = self._held[frame.index]
        hs.append(frame)
        del hs[:-self.queue_size]

    def release(self, index: int) -> None:
        """This input goes on in the old epoch: what it held were stragglers (they stay dropped)."""
        self._held[index] = []

    def take(self, far: bool) -> list[HeldFrame]:
        """At a confirmed jump: the held frames of its kind to replay, by arrival; the others stay dropped."""
        frames = sorted((h for hs in self._held for h in hs if h.far == far),
                        key=lambda h: (h.arrival, h.index, h.stamp))
        self._held = [[] for _ in self._held]
        return frames

    def guard(self, until: float, old_end: int, new_start: int) -> None:
        """After a jump from an epoch ending at `old_end` [ns] to one starting at `new_start` [ns]: until arrival
        `until` [s], an input's frames nearer the old end than the new start are stragglers (see straggler)."""
        self._guard = (until, (old_end + new_start) // 2)

    def straggler(self, fresh: bool, stamp: int, now: float) -> bool:
        """Is this frame the old epoch's, still in flight after a jump? Only while the guard lasts and only for an
        input with no frame of the new epoch yet (`fresh`); its first frame nearer the new start begins its epoch."""
        if self._guard is None:
            return False
        if now > self._guard[0]:
            self._guard = None
            return False
        return fresh and stamp >= self._guard[1]
