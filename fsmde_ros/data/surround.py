"""The `SurroundDataset` interface, dataset specs, and a render-once disk cache.

A SurroundDataset is any object with `__len__`, `rig` (a CameraRig at the item resolution) and
`__getitem__(i) -> dict` with at least:
  images uint8 [V,H,W,3] RGB, lidar_depth float32 [V,H,W] metres (0 = no return),
  K [V,3,3] (at H x W), T_base_cam [V,4,4], stamp float [s], index int;
optionally teacher float32 [V,H,W] (relative, disparity-like), teacher_features float32
[V,C,h,w] and depth float32 [V,H,W]
(dense ground truth, synthetic only). The synthetic world, DDAD and nuScenes readers all give
these keys, so training, evaluation and bag conversion take any of them.

Specs (`open_dataset`): `synthetic`, `synthetic:nuscenes?seed=3&frames=40&stride=2` (options: gt=none for a
teacher-only world, beams=8 for a sparser lidar, domain=shifted for a street of another look),
`ddad:/path?split=val` (fsmde_ros.data.ddad) and
`nuscenes:/path?version=v1.0-mini&split=mini_val` (fsmde_ros.data.nuscenes) and
`bag:/path?rig=my_rig.yaml&lidar=/lidar/points` (your own recordings: fsmde_ros.ros.bag_dataset).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl

import numpy as np

from fsmde_ros.data.lidar_projection import PIXEL_CONVENTIONS
from fsmde_ros.errors import ConfigError

# Keys a training item must have, and the optional ones the cache keeps when present.
REQUIRED_KEYS = ("images", "lidar_depth", "K", "T_base_cam", "stamp")
CACHED_KEYS = REQUIRED_KEYS + ("teacher", "teacher_features", "depth", "T_world_base")
# Bumped when the items a dataset gives change, so that caches of older items are never read (v2: teacher_features;
# v3: the simulated teacher's errors depend on content).
CACHE_VERSION = 3


def dataset_key(spec: str, height: int, width: int) -> str:
    """The key every cache of a dataset is found by (16 hex digits): its spec, item size [px] and CACHE_VERSION.

    Names the render cache (`<cache_dir>/<key>/`), the teacher cache (`<teach out>/<key>/`) and the training cache
    (`<cache_dir>/train/<key>-<teacher>/`), so each finds the others' for the same dataset at the same size."""
    return hashlib.sha256(f"{spec}|{height}x{width}|v{CACHE_VERSION}".encode()).hexdigest()[:16]


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """'kind:target?k=v&...' -> (kind, target, options)."""
    head, _, query = spec.partition("?")
    kind, _, target = head.partition(":")
    return kind.strip(), target.strip(), dict(parse_qsl(query))


class FrameSubset:
    """Every `stride`-th frame of a dataset (consecutive synthetic frames are near duplicates)."""

    def __init__(self, base, stride: int):
        self.base, self.stride = base, max(1, int(stride))
        self.rig = base.rig

    def __len__(self) -> int:
        return (len(self.base) + self.stride - 1) // self.stride

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.base[i * self.stride]


# Dataset kinds that higher layers provide: kind -> opener(spec, target, options, height, width). The `bag` kind
# (your own recordings) lives with the ROS messages it reads (fsmde_ros/ros/bag_dataset.py registers it on import).
DATASET_KINDS: dict[str, Callable[[str, str, dict[str, str], int, int], Any]] = {}


def register_dataset_kind(kind: str, opener: Callable[[str, str, dict[str, str], int, int], Any]) -> None:
    """Make `kind:target?options` specs open through `opener` (see DATASET_KINDS)."""
    DATASET_KINDS[kind] = opener


def open_dataset(spec: str, height: int = 192, width: int = 320):
    """A SurroundDataset from a spec string (see the module doc)."""
    kind, target, opts = parse_spec(spec)
    if kind in DATASET_KINDS:
        return DATASET_KINDS[kind](spec, target, opts, height, width)
    if kind == "synthetic":
        from fsmde_ros.data.synthetic import SyntheticSurround

        known = {"seed", "frames", "stride", "speed", "gt", "beams", "domain"}
        unknown = set(opts) - known
        if unknown:
            raise ConfigError(f"{spec}: unknown options {sorted(unknown)}; synthetic takes {sorted(known)}")
        try:
            ds = SyntheticSurround(target or "ddad", seed=int(opts.get("seed", 0)), height=height, width=width,
                                   frames=int(opts.get("frames", 20)), speed_mps=float(opts.get("speed", 8.0)),
                                   gt=opts.get("gt", "lidar"), beams=int(opts.get("beams", 32)),
                                   domain=opts.get("domain", "street"))
        except ConfigError as exc:
            raise ConfigError(f"{spec}: {exc}") from None
        return FrameSubset(ds, int(opts.get("stride", 1)))
    if kind in ("ddad", "nuscenes"):
        return _open_real_dataset(spec, kind, target, opts, height, width)
    hint = " (bag: specs open where fsmde_ros.ros.bag_dataset is imported: `fsmde teach/distill/eval` do)" \
        if kind == "bag" else ""
    raise ConfigError(f"unknown dataset spec {spec!r}; use synthetic[:ddad|nuscenes][?seed=&frames=&stride=], "
                     f"ddad:/path, nuscenes:/path?version=... or bag:/path?rig=...{hint}")


def _flag(value: str, spec: str, key: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{spec}: option {key}={value!r} must be 0/1 (or true/false)")


def _open_real_dataset(spec: str, kind: str, target: str, opts: dict[str, str], height: int, width: int):
    """`ddad:/root?split=val&masks=1&mask_dir=/m&scenes=000150,000151&stride=1` and
    `nuscenes:/root?version=v1.0-mini&split=mini_val&condition=night&stride=1` at height x width.
    Returns the reader itself (stride 1) or a FrameSubset of it."""
    if not target:
        raise ConfigError(f"{spec}: {kind} needs a dataset path, e.g. {kind}:/data/{kind}")
    known = ({"split", "masks", "mask_dir", "scenes", "ego_motion", "stride", "gt_pixels"} if kind == "ddad"
             else {"version", "split", "condition", "stride", "gt_pixels"})
    unknown = set(opts) - known
    if unknown:
        raise ConfigError(f"{spec}: unknown options {sorted(unknown)}; {kind} takes {sorted(known)}")
    gt_pixels = opts.get("gt_pixels", "round")
    if gt_pixels not in PIXEL_CONVENTIONS:
        raise ConfigError(f"{spec}: gt_pixels must be one of {', '.join(PIXEL_CONVENTIONS)}, got {gt_pixels!r}")
    stride = int(opts.get("stride", 1))
    if kind == "ddad":
        from fsmde_ros.data.ddad import DDADDataset

        scenes = [s for s in opts["scenes"].split(",") if s] if opts.get("scenes") else None
        ds = DDADDataset(target, split=opts.get("split", "val"), height=height, width=width,
                         masks=_flag(opts.get("masks", "1"), spec, "masks"), mask_dir=opts.get("mask_dir"),
                         scenes=scenes, ego_motion=_flag(opts.get("ego_motion", "1"), spec, "ego_motion"),
                         gt_pixels=gt_pixels)
    else:
        from fsmde_ros.data.nuscenes import NuScenesDataset

        ds = NuScenesDataset(target, version=opts.get("version", "v1.0-mini"), split=opts.get("split", "val"),
                             height=height, width=width, condition=opts.get("condition", "all"), gt_pixels=gt_pixels)
    return ds if stride == 1 else FrameSubset(ds, stride)


class CachedDataset:
    """Renders (or reads) each item once and keeps it as an .npz under `cache_dir/<key>/`.

    Synthetic items cost ~0.5 s to ray-cast; evaluation, calibration and `fsmde teach` revisit them. The key
    (`dataset_key`) hashes the spec and resolution, so a changed spec never reads stale items. The trainer does not
    read through it: its training cache (distill/train_cache.py) is the one copy it keeps.
    """

    def __init__(self, spec: str, height: int, width: int, cache_dir: str | Path):
        self.spec, self.height, self.width = spec, height, width
        self.base = open_dataset(spec, height, width)
        self.rig = self.base.rig
        self.key = dataset_key(spec, height, width)
        self.dir = Path(cache_dir).expanduser() / self.key
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "dataset.json"
        if not meta.exists():
            meta.write_text(json.dumps({"spec": spec, "height": height, "width": width, "rig": self.rig.name,
                                        "length": len(self.base)}, indent=2))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.dir / f"item_{i:06d}.npz"
        if path.exists():
            with np.load(path) as z:
                item = {k: z[k] for k in z.files}
            item["stamp"] = float(item["stamp"])
        else:
            src = self.base[i]
            item = {k: src[k] for k in CACHED_KEYS if k in src}
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **item)
            tmp.replace(path)
        item["index"] = i
        item["rig"] = self.rig.name
        return item

    def warm(self, progress: bool = True) -> None:
        """Render every missing item now (with a progress bar)."""
        from tqdm import tqdm

        missing = [i for i in range(len(self)) if not (self.dir / f"item_{i:06d}.npz").exists()]
        for i in tqdm(missing, desc=f"caching {self.spec}", unit="set", disable=not progress or not missing):
            self[i]
