"""The earliest surround set among sorted stamp queues: a sliding window over the merged stamps [ns].

Its own module because two judges ask the same question: the synchroniser (is a set complete?) and
the time-jump policy (do the held frames replay a whole set?).
"""
from __future__ import annotations

from typing import Sequence


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
