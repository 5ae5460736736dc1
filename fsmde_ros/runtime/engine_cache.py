"""TensorRT engine cache: one engine per (ONNX content, GPU, TensorRT version, precision).

Engines are only valid for the GPU and TensorRT version that built them, so the cache key holds
all four; a key that matches is reused at every start, anything else is (re)built. Each engine
has a JSON sidecar with its key, checked on load, so a renamed or half-written file is caught.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

from fsmde_ros.paths import ENGINE_CACHE_DIR

PRECISIONS = ("fp16", "fp32", "int8")  # int8: an INT8 (QDQ) student from `fsmde quantize`, explicitly quantised
DEFAULT_CACHE_DIR = Path(ENGINE_CACHE_DIR)


@dataclasses.dataclass(frozen=True)
class EngineKey:
    """What an engine depends on."""

    onnx_sha256: str
    gpu_name: str
    compute_capability: str  # e.g. "8.7" (Orin), "9.0" (H100)
    tensorrt_version: str
    precision: str

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def filename(self, stem: str) -> str:
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu_name).strip("-").lower()
        return (f"{stem}-{self.onnx_sha256[:16]}-{gpu}-sm{self.compute_capability.replace('.', '')}"
                f"-trt{self.tensorrt_version}-{self.precision}.engine")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class EngineCache:
    """A directory of engines and their sidecars."""

    def __init__(self, directory: str | Path = DEFAULT_CACHE_DIR):
        self.directory = Path(directory).expanduser()

    def paths(self, stem: str, key: EngineKey) -> tuple[Path, Path]:
        engine = self.directory / key.filename(stem)
        return engine, engine.with_suffix(".json")

    def lookup(self, stem: str, key: EngineKey) -> tuple[Path | None, str]:
        """(engine path, "") when a valid entry exists, else (None, why it must be built)."""
        engine, sidecar = self.paths(stem, key)
        if not engine.is_file():
            stale = sorted(p.name for p in self.directory.glob(f"{stem}-*.engine")) if self.directory.is_dir() else []
            why = "no cached engine for this ONNX, GPU, TensorRT version and precision"
            return None, why + (f" (stale engines present: {', '.join(stale)})" if stale else "")
        try:
            recorded = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            return None, f"{sidecar.name} is missing or unreadable"
        if recorded.get("key") != dataclasses.asdict(key):
            return None, f"{sidecar.name} records another key: {recorded.get('key')}"
        if engine.stat().st_size != recorded.get("size"):
            return None, f"{engine.name} is truncated or was replaced ({engine.stat().st_size} bytes, expected {recorded.get('size')})"
        return engine, ""

    def store(self, stem: str, key: EngineKey, engine_bytes: bytes, extra: dict | None = None) -> Path:
        """Write engine then sidecar atomically (a crash mid-write leaves no valid-looking entry)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        engine, sidecar = self.paths(stem, key)
        tmp = engine.with_suffix(".engine.tmp")
        tmp.write_bytes(engine_bytes)
        tmp.replace(engine)
        meta = {"key": dataclasses.asdict(key), "size": len(engine_bytes), **(extra or {})}
        tmp_json = sidecar.with_suffix(".json.tmp")
        tmp_json.write_text(json.dumps(meta, indent=2))
        tmp_json.replace(sidecar)
        return engine


ORT_TRT_DIR = "onnxruntime-trt"  # ONNX Runtime's TensorRT provider caches live under <cache>/<this>/<key>/


def ort_trt_cache_dir(onnx_path: str | Path, precision: str, cache_dir: str | Path | None = None,
                      gpu: tuple[str, str] | None = None, tensorrt_version: str | None = None) -> Path:
    """Where ONNX Runtime's TensorRT provider keeps its engine and timing caches for this model: one folder per
    (ONNX hash, GPU, compute capability, TensorRT version, precision), as the native engines are keyed, so a
    TensorRT or GPU change never loads a stale engine (ONNX Runtime names its files by graph and sm, not by
    TensorRT version). gpu / tensorrt_version: what the machine has, where known ('unknown' otherwise)."""
    name, cc = gpu or ("unknown-gpu", "0.0")
    key = EngineKey(file_sha256(onnx_path), name, cc, tensorrt_version or "unknown", precision)
    folder = key.filename(Path(onnx_path).stem)[: -len(".engine")]
    return Path(cache_dir or DEFAULT_CACHE_DIR).expanduser() / ORT_TRT_DIR / folder


def cached_engines(cache_dir: str | Path | None = None) -> list[dict]:
    """Every engine in the cache: native ones (with their sidecar's key and source ONNX) and ONNX Runtime's TensorRT
    provider folders; each {'path', 'kind', 'bytes', ...}."""
    root = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()
    found = []
    for engine in sorted(root.glob("*.engine")):
        meta = {}
        try:
            meta = json.loads(engine.with_suffix(".json").read_text())
        except (OSError, ValueError):
            pass
        found.append({"path": engine, "kind": "tensorrt", "bytes": engine.stat().st_size, **meta})
    for folder in sorted((root / ORT_TRT_DIR).glob("*")) if (root / ORT_TRT_DIR).is_dir() else []:
        files = [f for f in folder.rglob("*") if f.is_file()]
        found.append({"path": folder, "kind": "onnxruntime-tensorrt", "bytes": sum(f.stat().st_size for f in files),
                      "files": len(files)})
    return found
