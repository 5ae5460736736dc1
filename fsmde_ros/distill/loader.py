"""Batches for the trainer: one rig a batch, sharded across ranks, deterministic, prefetched by workers.

`RigBatchSampler` decides which sets make step s's batch on rank r from (seed, epoch) alone, so a resumed
run needs no iterator state and continues exactly: an epoch shuffles each dataset, cuts it into batches
of batch_size (the last one filled from the start of the same shuffle, so every batch is full and of one
rig), shuffles the batches, and pads the list to a multiple of world_size; global batch k = s * world + r.
Teacher-only datasets (no GT: camera-only recordings) can form a pool of their own, drawn for a set share
of the steps.
`SurroundBatches` reads a batch from the training caches (train_cache.py) as uint8 and float arrays; the
float conversion and the photometric augmentation run on the training device (`augment_on_device`).
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from fsmde_ros.distill.train_cache import TrainCache


class RigBatchSampler(torch.utils.data.Sampler):
    """Yields (step, dataset index, [item indices]) for this rank from start_step to end_step (see the module doc).

    teacher_only [bool per dataset] with teacher_only_ratio r in (0, 1): the labelled and the teacher-only
    datasets form two pools, each with its own epochs; step s (on every rank alike, so that DDP's ranks run
    the same terms) draws from the teacher-only pool when floor((s + 1) r) > floor(s r): an exact share r,
    evenly spread, from s alone, so resume stays exact.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, rank: int = 0, world: int = 1,
                 start_step: int = 0, end_step: int | None = None, teacher_only: Sequence[bool] | None = None,
                 teacher_only_ratio: float = 0.0):
        if not lengths or min(lengths) < 1:
            raise ValueError(f"every dataset needs at least one set, got lengths {list(lengths)}")
        if batch_size < 1 or not 0 <= rank < world:
            raise ValueError(f"need batch_size >= 1 and 0 <= rank < world, got {batch_size}, {rank}, {world}")
        self.lengths, self.batch_size, self.seed = [int(n) for n in lengths], int(batch_size), int(seed)
        self.rank, self.world, self.start_step, self.end_step = rank, world, int(start_step), end_step
        flags = [bool(f) for f in teacher_only] if teacher_only is not None else [False] * len(self.lengths)
        if len(flags) != len(self.lengths):
            raise ValueError(f"teacher_only needs one flag per dataset, got {len(flags)} for {len(self.lengths)}")
        self.ratio = float(teacher_only_ratio) if any(flags) and not all(flags) else 0.0
        if not 0 <= self.ratio < 1:
            raise ValueError(f"teacher_only_ratio must be in [0, 1), got {teacher_only_ratio}")
        if self.ratio > 0:  # two pools: labelled, teacher-only
            self.pools = [_Pool([d for d, f in enumerate(flags) if f == want], self, tag) for tag, want in ((1, False), (2, True))]
        else:  # one pool of every dataset, drawn as it always was
            self.pools = [_Pool(list(range(len(self.lengths))), self, None)]
        self.batches_per_epoch = self.pools[0].batches_per_epoch

    def epoch_batches(self, epoch: int) -> list[tuple[int, list[int]]]:
        """All batches of one epoch of the (first) pool, every rank's: [(dataset, [item, ...])]."""
        return self.pools[0].epoch_batches(epoch)

    def batch(self, step: int, rank: int | None = None) -> tuple[int, list[int]]:
        """(dataset, items) of `step` on `rank` (default this sampler's)."""
        rank = self.rank if rank is None else rank
        if self.ratio == 0:
            return self.pools[0].batch(step * self.world + rank)
        before = int(np.floor(step * self.ratio))  # teacher-only steps before this one
        if int(np.floor((step + 1) * self.ratio)) > before:
            return self.pools[1].batch(before * self.world + rank)
        return self.pools[0].batch((step - before) * self.world + rank)

    def __iter__(self) -> Iterator[tuple[int, int, list[int]]]:
        step = self.start_step
        while self.end_step is None or step < self.end_step:
            yield (step, *self.batch(step))
            step += 1

    def __len__(self) -> int:
        return max(0, (self.end_step or 0) - self.start_step)


class _Pool:
    """The epochs of a group of datasets: each shuffled, cut into full batches, the batches shuffled, padded to
    a multiple of world_size (tag None: the order of a sampler with a single pool, as before pools existed)."""

    def __init__(self, datasets: list[int], sampler: RigBatchSampler, tag: int | None):
        self.datasets, self.s, self.tag = datasets, sampler, tag
        self._cache: tuple[int, list[tuple[int, list[int]]]] | None = None
        self.batches_per_epoch = len(self.epoch_batches(0))

    def epoch_batches(self, epoch: int) -> list[tuple[int, list[int]]]:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        s = self.s
        rng = np.random.default_rng([s.seed, epoch] if self.tag is None else [s.seed, epoch, self.tag])
        batches = []
        for d in self.datasets:
            n = s.lengths[d]
            perm = rng.permutation(n).tolist()
            padded = perm + (perm * s.batch_size)[: (-n) % s.batch_size]  # fill the last batch from the start
            batches += [(d, padded[k:k + s.batch_size]) for k in range(0, len(padded), s.batch_size)]
        batches = [batches[k] for k in rng.permutation(len(batches))]
        pad = (-len(batches)) % s.world  # every rank gets the same number of steps
        batches += [batches[k % len(batches)] for k in range(pad)]
        self._cache = (epoch, batches)
        return batches

    def batch(self, k: int) -> tuple[int, list[int]]:
        epoch, pos = divmod(k, self.batches_per_epoch)
        return self.epoch_batches(epoch)[pos]


class SurroundBatches(torch.utils.data.Dataset):
    """dataset[(step, d, items)] -> one batch of dataset d's training cache as tensors (CPU, pinned by the loader):
    images uint8 [B,V,H,W,3], K float32 [B,V,3,3], gt float32 [B,V,H,W] (0 = no GT), teacher and teacher_features
    float16 as stored (half the bytes to pin and copy; the trainer widens them on the device). Only those keys
    are read."""

    def __init__(self, caches: Sequence[TrainCache], gt_source: str = "lidar_depth"):
        self.caches, self.gt_source = list(caches), gt_source

    def __len__(self) -> int:
        return sum(len(c) for c in self.caches)

    def __getitem__(self, key: tuple[int, int, list[int]]) -> dict[str, Any]:
        step, d, items = key
        cache = self.caches[d]
        gt_key = self.gt_source if self.gt_source in cache.keys else "lidar_depth"  # a teacher-only set: all 0
        keys = ("images", "K", gt_key, "teacher", "teacher_features")
        sets = [cache.item(i, keys) for i in items]
        batch = {"step": step, "dataset": d,
                 "images": torch.from_numpy(np.stack([s["images"] for s in sets])),
                 "K": torch.from_numpy(np.stack([s["K"] for s in sets]).astype(np.float32)),
                 "gt": torch.from_numpy(np.stack([np.nan_to_num(s[gt_key], nan=0.0, posinf=0.0)
                                                  for s in sets]).astype(np.float32))}
        for key_name in ("teacher", "teacher_features"):
            if all(key_name in s for s in sets):
                batch[key_name] = torch.from_numpy(np.stack([s[key_name] for s in sets]))
        return batch


def make_loader(caches: Sequence[TrainCache], sampler: RigBatchSampler, workers: int, pin_memory: bool,
                gt_source: str = "lidar_depth", prefetch: int = 4) -> torch.utils.data.DataLoader:
    """Worker processes read (and pin) the next `prefetch` batches per worker while the step runs."""
    return torch.utils.data.DataLoader(
        SurroundBatches(caches, gt_source), sampler=sampler, batch_size=None, num_workers=workers,
        pin_memory=pin_memory, prefetch_factor=prefetch if workers > 0 else None,
        persistent_workers=False)


def augment_on_device(images_u8: torch.Tensor, gen: torch.Generator, brightness: float, contrast: float,
                      saturation: float) -> torch.Tensor:
    """uint8 [B,V,H,W,3] on the device -> float [B,V,3,H,W] in [0,1], each set with one brightness / contrast /
    saturation change for all its views (factors drawn on the CPU from `gen`: the same on any device)."""
    x = images_u8.permute(0, 1, 4, 2, 3).float() / 255
    b = len(x)

    def factors(r):
        return (1.0 + (torch.rand(b, generator=gen) * 2 - 1) * r).to(x.device).view(b, 1, 1, 1, 1)

    fb, fc, fs = factors(brightness), factors(contrast), factors(saturation)
    x = x * fb
    mean = x.mean(dim=(2, 3, 4), keepdim=True)
    x = (x - mean) * fc + mean
    gray = x.mean(dim=2, keepdim=True)
    return ((x - gray) * fs + gray).clamp(0, 1)
