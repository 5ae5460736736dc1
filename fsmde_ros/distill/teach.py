"""Precompute a teacher's predictions over a dataset once (`fsmde teach`), and read them back.

Layout of a cache directory:
- `teacher_{i:06d}.npz` per dataset position i: `relative` float16 [V,H,W] (disparity-like, larger =
  nearer, unknown scale/shift, at the dataset's resolution), `features` float16 [V,C,h,w] when
  computed with features, `index` (the item's own `index`, else i);
- `teacher.json`: teacher name and spec, dataset length, resolution (views, height, width),
  feature shape, and whether every item is written (`complete`).
Files are written atomically (temp file + rename), so an interrupted run resumes by skipping
the items already written. `fsmde teach` writes one cache per dataset under its --out root, named by
the dataset's key (`teacher_cache_dir`); the trainer reads it with `TeacherCache` and `attach` puts
each set's predictions into the item as `teacher` (and `teacher_features`), where the losses look for
them (`fsmde_ros.model.teachers.teacher_output`).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsmde_ros.errors import ConfigError, MissingFileError
from fsmde_ros.model.teachers import (
    RelativeDepthTeacher,
    TeacherOutput,
    as_float_images,
    teacher_output,
)

logger = logging.getLogger(__name__)

META_FILE = "teacher.json"
CACHE_FORMAT = "fsmde_teacher_cache"
CACHE_VERSION = 1
FLOAT16_MAX = float(np.finfo(np.float16).max)  # values beyond this would be stored as inf


def item_path(out_dir: str | Path, i: int) -> Path:
    """Path of dataset position i's predictions in a cache directory."""
    return Path(out_dir) / f"teacher_{i:06d}.npz"


def teacher_cache_dir(root: str | Path, dataset_key: str) -> Path:
    """The teacher cache of one dataset under a `fsmde teach --out` root: `<root>/<dataset key>`
    (fsmde_ros.data.surround.dataset_key of its spec and size), where `fsmde distill` looks for it."""
    return Path(root).expanduser() / dataset_key


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def _write_meta(out: Path, meta: dict) -> None:
    _write_atomic(out / META_FILE, lambda f: f.write((json.dumps(meta, indent=2) + "\n").encode()))


def read_meta(out_dir: str | Path) -> dict:
    """The cache's teacher.json (FileNotFoundError naming what to run when absent)."""
    path = Path(out_dir) / META_FILE
    if not path.is_file():
        raise MissingFileError(f"{path} not found: not a teacher cache; run precompute_teacher (fsmde teach) first")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); delete the directory and recompute") from e
    if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
        raise ConfigError(f"{path}: not a version-{CACHE_VERSION} {CACHE_FORMAT} (format={meta.get('format')!r}, "
                         f"version={meta.get('version')!r})")
    return meta


def _resolution(meta: dict) -> tuple[int, int, int]:
    return int(meta["views"]), int(meta["height"]), int(meta["width"])


def _float16(name: str, x: torch.Tensor, what: str) -> np.ndarray:
    a = x.detach().float().cpu().numpy()
    if not np.isfinite(a).all() or np.abs(a).max(initial=0.0) > FLOAT16_MAX:
        raise ConfigError(f"teacher {name}: {what} has non-finite values or values beyond float16 range "
                         f"(max |x| = {np.abs(a).max(initial=0.0):g})")
    return a.astype(np.float16)


def precompute_teacher(dataset, teacher: RelativeDepthTeacher, out_dir: str | Path, batch_size: int = 1,
                       with_features: bool = False, num_workers: int = 0) -> Path:
    """Run `teacher` once over `dataset` (items: images uint8 [V,H,W,3], ...) into out_dir; returns out_dir.

    Resumable: positions whose npz exists are skipped (the items are not even loaded). A cache
    made by another teacher spec, for another dataset length or resolution, or with/without
    features, is refused rather than mixed. num_workers > 0 loads items in a torch DataLoader.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n, spec = len(dataset), getattr(teacher, "spec", teacher.name)
    if n == 0:
        raise ConfigError("precompute_teacher: the dataset is empty")
    meta = _existing_meta(out, {"spec": spec, "length": n, "with_features": bool(with_features)})
    pending = [i for i in range(n) if not item_path(out, i).is_file()]
    if len(pending) < n:
        logger.info("teacher cache %s: %d of %d items already written, skipping them", out, n - len(pending), n)
    done = 0
    with tqdm(total=n, initial=n - len(pending), desc=f"teacher {spec}", unit="set") as bar:
        for items in _batches(dataset, pending, batch_size, num_workers):
            positions = pending[done:done + len(items)]
            images = torch.stack([torch.as_tensor(np.asarray(it["images"])) for it in items])  # [B,V,H,W,3] uint8
            res = tuple(int(s) for s in images.shape[1:4])
            if meta is None:
                meta = _new_meta(teacher, spec, n, res, with_features, type(dataset).__name__)
                _write_meta(out, meta)
            elif res != _resolution(meta):
                raise ConfigError(f"teacher cache {out} is for {_resolution(meta)} (views, height, width) but dataset "
                                 f"positions {positions} are {res}; delete it or choose another out_dir")
            pred = _predict(teacher, spec, images, items, with_features)
            if with_features and meta["feature_shape"] is None:
                meta["feature_shape"] = [int(s) for s in pred.features.shape[2:]]
                _write_meta(out, meta)
            _write_items(out, spec, positions, items, pred, with_features)
            done += len(items)
            bar.update(len(items))
    meta["complete"] = True
    _write_meta(out, meta)
    return out


def _existing_meta(out: Path, want: dict[str, Any]) -> dict | None:
    """The teacher.json already in `out` (None for a new cache), refused when it differs from `want` (spec,
    length, with_features) or when items lie there without one: a cache is never mixed from two runs."""
    meta = read_meta(out) if (out / META_FILE).exists() else None
    if meta is None and any(out.glob("teacher_*.npz")):
        raise ConfigError(f"{out} holds teacher_*.npz but no {META_FILE}: delete them or choose another out_dir")
    if meta is not None:
        diff = {k: (meta.get(k), v) for k, v in want.items() if meta.get(k) != v}
        if diff:
            raise ConfigError(f"teacher cache {out} does not match this run (field: (cache, now)): {diff}; "
                             f"delete it or choose another out_dir")
    return meta


def _batches(dataset, positions: list[int], batch_size: int, num_workers: int):
    """The items at `positions`, batch_size at a time (lists of item dicts), read by workers when num_workers > 0."""
    if num_workers > 0:
        return torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, positions), batch_size=batch_size,
                                           num_workers=num_workers, collate_fn=list)
    return ([dataset[i] for i in positions[s:s + batch_size]] for s in range(0, len(positions), batch_size))


def _new_meta(teacher: RelativeDepthTeacher, spec: str, n: int, res: tuple[int, int, int], with_features: bool,
              dataset_name: str) -> dict[str, Any]:
    """teacher.json of a new cache (feature_shape filled by the first batch with features; complete at the end)."""
    return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "teacher": teacher.name, "spec": spec,
            "length": n, "views": res[0], "height": res[1], "width": res[2],
            "with_features": bool(with_features), "feature_shape": None, "dtype": "float16",
            "relative": "disparity-like relative depth [V,H,W], larger = nearer, unknown scale/shift",
            "dataset": dataset_name, "complete": False}


def _predict(teacher: RelativeDepthTeacher, spec: str, images: torch.Tensor, items: list[dict],
             with_features: bool) -> TeacherOutput:
    """The teacher on one batch (images uint8 [B,V,H,W,3]), checked: relative [B,V,H,W], features when asked for."""
    batch = {"images": as_float_images(images)}
    for key in ("teacher", "teacher_features"):  # the synthetic world's simulated teacher
        if all(key in it for it in items):
            batch[key] = torch.stack([torch.as_tensor(np.asarray(it[key])) for it in items])
    pred = teacher_output(batch, teacher)
    want = (len(items), *images.shape[1:4])
    if tuple(pred.relative.shape) != want:
        raise ConfigError(f"teacher {spec} returned relative {tuple(pred.relative.shape)}, expected {want}")
    if with_features and pred.features is None:
        raise ConfigError(f"teacher {spec} has no features; run without with_features")
    return pred


def _write_items(out: Path, spec: str, positions: list[int], items: list[dict], pred: TeacherOutput,
                 with_features: bool) -> None:
    """One npz per dataset position (float16 relative [V,H,W], features [V,C,h,w], the item's index), atomically."""
    for j, i in enumerate(positions):
        arrays = {"relative": _float16(spec, pred.relative[j], "relative"),
                  "index": np.int64(items[j].get("index", i))}
        if with_features:
            arrays["features"] = _float16(spec, pred.features[j], "features")
        _write_atomic(item_path(out, i), lambda f: np.savez(f, **arrays))


def dataset_resolution(dataset) -> tuple[int, int, int]:
    """(views, height, width) of a dataset's images: from rig/height/width attributes, else from item 0."""
    if all(hasattr(dataset, a) for a in ("rig", "height", "width")):
        return len(dataset.rig), int(dataset.height), int(dataset.width)
    return tuple(int(s) for s in np.asarray(dataset[0]["images"]).shape[:3])


class TeacherCache:
    """Reads a precomputed teacher cache: cache[i] -> dict(relative float32 [V,H,W], features float32 [V,C,h,w] | None).

    Given a dataset (or length / resolution (views, height, width)), checks the cache was made for
    it and raises a ValueError saying what differs otherwise.
    """

    def __init__(self, out_dir: str | Path, dataset=None, *, length: int | None = None,
                 resolution: tuple[int, int, int] | None = None):
        self.out_dir = Path(out_dir)
        self.meta = read_meta(self.out_dir)
        if dataset is not None:
            length, resolution = len(dataset), dataset_resolution(dataset)
        problems = []
        if length is not None and int(length) != int(self.meta["length"]):
            problems.append(f"length {self.meta['length']} != dataset's {length}")
        if resolution is not None and tuple(resolution) != _resolution(self.meta):
            problems.append(f"resolution (views, height, width) {_resolution(self.meta)} != dataset's {tuple(resolution)}")
        if problems:
            raise ConfigError(f"teacher cache {self.out_dir} (teacher {self.meta['spec']}) does not match the dataset: "
                             f"{'; '.join(problems)}; recompute it with precompute_teacher into a new directory")
        if not self.meta.get("complete"):
            logger.warning("teacher cache %s is incomplete; rerun precompute_teacher to finish it", self.out_dir)

    @property
    def spec(self) -> str:
        return self.meta["spec"]

    def __len__(self) -> int:
        return int(self.meta["length"])

    def __getitem__(self, i: int) -> dict:
        """Position i -> dict(relative [V,H,W] float32, features [V,C,h,w] float32 or None, index int)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"teacher cache {self.out_dir}: item {i} out of range for {n} items")
        path = item_path(self.out_dir, int(i) % n)
        if not path.is_file():
            raise MissingFileError(f"{path} missing: the cache is incomplete; rerun precompute_teacher (it resumes)")
        with np.load(path) as z:
            rel = z["relative"].astype(np.float32)
            feats = z["features"].astype(np.float32) if "features" in z.files else None
            index = int(z["index"]) if "index" in z.files else int(i) % n
        if rel.shape != _resolution(self.meta):
            raise ConfigError(f"{path}: relative has shape {rel.shape}, cache says {_resolution(self.meta)}")
        return {"relative": rel, "features": feats, "index": index}

    def attach(self, item: dict, i: int) -> dict:
        """Set i of the dataset with the cached teacher, as the trainer keeps it in its training cache: a copy of
        `item` with teacher float32 [V,H,W] (relative) and teacher_features float32 [V,C,h,w], or None when this
        cache has no features (then the dataset's own features, e.g. the synthetic teacher's, are not used)."""
        cached = self[i]
        return {**item, "teacher": cached["relative"], "teacher_features": cached["features"]}
