"""The training cache: every set of a dataset once, at the training resolution, read without decoding.

One folder per (dataset, resolution, teacher source): one memory-mapped .npy file per key, all items in
one array, so a loader worker reads a set as a few slices of mapped memory (no decompression, no
per-item files, no Python objects). Keys and how they are kept:
  images uint8 [N,V,H,W,3]; K float32 [N,V,3,3]; T_base_cam float32 [N,V,4,4]; stamp float64 [N];
  lidar_depth sparse: lidar_index uint32 (flat v*H*W + y*W + x) and lidar_value float32 with
  lidar_offsets int64 [N+1] (a lidar hits ~2 % of the pixels: 1/25 of the dense size);
  depth float32 [N,V,H,W] (dense GT, synthetic only);
  teacher float16 [N,V,H,W] and teacher_features float16 [N,V,C,h,w] (the teacher's relative outputs: float16
  keeps ~3 significant digits, well within what a teacher knows; every other key round-trips bit-exactly).
meta.json says which keys, the size and how long the build took; it is written last, so a build that
was interrupted is redone.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

TRAIN_CACHE_VERSION = 1
DENSE_KEYS = {"images": np.uint8, "K": np.float32, "T_base_cam": np.float32, "depth": np.float32,
              "teacher": np.float16, "teacher_features": np.float16}
LIDAR_KEYS = ("lidar_index", "lidar_value", "lidar_offsets")


def train_cache_dir(cache_dir: str | Path, dataset_key: str, teacher: str) -> Path:
    """Where one dataset's training cache lives: `<cache_dir>/train/<dataset key>-<teacher tag>/`, the key
    fsmde_ros.data.surround.dataset_key (spec and size), the tag `synthetic` (each item's own teacher) or, for a
    `fsmde teach` root, the first 8 hex digits of the SHA-256 of its resolved path."""
    tag = "synthetic" if teacher == "synthetic" else hashlib.sha256(
        str(Path(teacher).expanduser().resolve()).encode()).hexdigest()[:8]
    return Path(cache_dir).expanduser() / "train" / f"{dataset_key}-{tag}"


class TrainCache:
    """A built cache (see the module doc): `len`, `item(i)` -> dict of numpy arrays, `meta`."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.meta = json.loads((self.dir / "meta.json").read_text())
        self.keys: list[str] = self.meta["keys"]
        self._arrays: dict[str, np.ndarray] | None = None  # opened on first use (in each loader worker)

    def __len__(self) -> int:
        return int(self.meta["length"])

    @property
    def has_gt(self) -> bool:
        """False for a teacher-only dataset: no lidar return in any set and no dense depth."""
        return "depth" in self.keys or ("lidar_depth" in self.keys and int(self.arrays["lidar_offsets"][-1]) > 0)

    def __getstate__(self) -> dict:  # to a loader worker: the path, not the mapped arrays (each maps its own)
        return {**self.__dict__, "_arrays": None}

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            names = [k for k in self.keys if k != "lidar_depth"] + ["stamp"]
            names += list(LIDAR_KEYS) if "lidar_depth" in self.keys else []
            self._arrays = {k: np.load(self.dir / f"{k}.npy", mmap_mode="r") for k in names}
        return self._arrays

    def item(self, i: int, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """Set i (only `keys`, default all): the dense keys as arrays (copies out of the mapped files, in their stored
        dtype), lidar_depth re-densified, stamp, index."""
        a = self.arrays
        keys = self.keys if keys is None else [k for k in keys if k in self.keys]
        out = {k: np.array(a[k][i]) for k in keys if k != "lidar_depth"}
        out["stamp"] = float(a["stamp"][i])
        if "lidar_depth" in keys:
            v, h, w = self.meta["views"], self.meta["height"], self.meta["width"]
            lo, hi = int(a["lidar_offsets"][i]), int(a["lidar_offsets"][i + 1])
            lidar = np.zeros(v * h * w, np.float32)
            lidar[a["lidar_index"][lo:hi]] = a["lidar_value"][lo:hi]
            out["lidar_depth"] = lidar.reshape(v, h, w)
        out["index"] = i
        return out


def build_train_cache(directory: str | Path, length: int, get_item: Callable[[int], dict[str, Any]],
                      describe: dict[str, Any], progress: bool = True, force: bool = False) -> TrainCache:
    """The cache in `directory`, built from get_item(0..length-1) unless a complete one with the same description
    is there. describe: what identifies the source (spec, resolution, teacher, ...), kept in meta.json."""
    from tqdm import tqdm

    directory = Path(directory)
    meta_path = directory / "meta.json"
    if meta_path.exists() and not force:
        meta = json.loads(meta_path.read_text())
        if meta.get("describe") == describe and meta.get("version") == TRAIN_CACHE_VERSION:
            return TrainCache(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    start = time.perf_counter()
    first = get_item(0)
    keys = [k for k in DENSE_KEYS if first.get(k) is not None] + ["lidar_depth"] * ("lidar_depth" in first)
    arrays = {k: np.lib.format.open_memmap(directory / f"{k}.npy", "w+", DENSE_KEYS[k], (length, *np.shape(first[k])))
              for k in keys if k != "lidar_depth"}
    stamps = np.zeros(length, np.float64)
    offsets = np.zeros(length + 1, np.int64)
    lidar_parts: list[tuple[np.ndarray, np.ndarray]] = []
    bar = tqdm(total=length, desc=f"training cache {directory.name}", unit="set", disable=not progress)
    for i in range(length):
        item = first if i == 0 else get_item(i)
        for k, arr in arrays.items():
            arr[i] = np.asarray(item[k]).astype(DENSE_KEYS[k], copy=False)
        stamps[i] = float(item["stamp"])
        if "lidar_depth" in keys:
            flat = np.asarray(item["lidar_depth"], np.float32).reshape(-1)
            idx = np.flatnonzero(flat > 0).astype(np.uint32)
            lidar_parts.append((idx, flat[idx]))
            offsets[i + 1] = offsets[i] + len(idx)
        bar.update(1)
    bar.close()
    for arr in arrays.values():
        arr.flush()
    np.save(directory / "stamp.npy", stamps)
    if "lidar_depth" in keys:
        np.save(directory / "lidar_index.npy", np.concatenate([p[0] for p in lidar_parts]))
        np.save(directory / "lidar_value.npy", np.concatenate([p[1] for p in lidar_parts]))
        np.save(directory / "lidar_offsets.npy", offsets)
    images = first["images"]
    meta = {"version": TRAIN_CACHE_VERSION, "describe": describe, "length": length, "keys": keys,
            "views": int(images.shape[0]), "height": int(images.shape[1]), "width": int(images.shape[2]),
            "build_seconds": round(time.perf_counter() - start, 2),
            "bytes": sum(f.stat().st_size for f in directory.glob("*.npy"))}
    tmp = meta_path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(meta_path)
    return TrainCache(directory)


def describe_size(caches: Sequence[TrainCache]) -> str:
    """'N sets, X GB, built in Y s' over several caches (what `fsmde distill` reports)."""
    sets = sum(len(c) for c in caches)
    size = sum(c.meta["bytes"] for c in caches) / 1e9
    return f"{sets} sets, {size:.2f} GB, built in {sum(c.meta['build_seconds'] for c in caches):.0f} s"
