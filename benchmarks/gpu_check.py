"""Every GPU check of the project in one run, with one summary table (run by benchmarks/gpu_check.sh).

Steps: (1) install the `gpu` extra (tensorrt, onnxruntime-gpu) where it is missing; (2) the GPU-marked
tests; (3) the TensorRT engine of the bundled student: build time into an empty cache, then the cached
second start; (4) depth parity of TensorRT FP16 / FP32 and of the composed deployment graph on TensorRT
against ONNX Runtime on the CPU (max relative error); (5) the node end to end at 6x384x640 from native
1936x1216 input (benchmarks/node_overhead.py): sets/s, p99 latency, node / bare and host ms per set for
TensorRT FP16, FP32 and ONNX Runtime on its best GPU provider. Each step has a time limit; the whole
fits in 10 minutes. `--dry-run` runs, on any machine, every step that needs no GPU (the parity and the
node at CPU speed, shortened) and lists the ones it skipped.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
NATIVE = "1936x1216"
rows: list[tuple[str, str, str]] = []  # (check, result, detail)


def say(check: str, result: str, detail: str = "") -> None:
    rows.append((check, result, detail))
    print(f"[gpu_check] {check}: {result} {detail}".rstrip(), flush=True)


def has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


def run(cmd: list[str], timeout: float) -> tuple[int, str]:
    try:
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as exc:
        return 124, f"timed out after {timeout:g} s\n{exc.stdout or ''}"


def install_gpu_extra() -> None:
    try:
        import tensorrt  # noqa: F401
        import onnxruntime as ort
        if "CUDAExecutionProvider" in ort.get_available_providers():
            say("install gpu extra", "present", f"tensorrt {tensorrt.__version__}, onnxruntime {ort.__version__}")
            return
    except ImportError:
        pass
    # onnxruntime and onnxruntime-gpu provide the same module: the CPU wheel goes first
    run([sys.executable, "-m", "pip", "uninstall", "-y", "onnxruntime"], 120)
    rc, out = run([sys.executable, "-m", "pip", "install", "-c", "constraints.txt", "-e", ".[gpu]"], 240)
    say("install gpu extra", "ok" if rc == 0 else f"FAILED (exit {rc})", out.strip().splitlines()[-1] if out else "")
    if rc == 0:  # this process imported the CPU onnxruntime: start again with the GPU one
        os.execv(sys.executable, [sys.executable, *sys.argv])


def gpu_tests() -> None:
    rc, out = run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-rs"], 240)
    last = [ln for ln in out.splitlines() if ln.strip()][-1:] or [""]
    say("GPU-marked tests", "ok" if rc == 0 else f"FAILED (exit {rc})", last[0])


def engine_times(model: Path, cache: Path) -> None:
    from fsmde_ros.runtime import create_backend

    for precision in ("fp16", "fp32"):
        t = time.perf_counter()
        create_backend("tensorrt", model, precision=precision, engine_cache_dir=cache)
        build = time.perf_counter() - t
        t = time.perf_counter()
        create_backend("tensorrt", model, precision=precision, engine_cache_dir=cache)
        say(f"engine {precision}", "ok", f"build {build:.1f} s, cached start {time.perf_counter() - t:.2f} s")


def engine_commands(model: Path, cache: Path) -> None:
    """`fsmde engine build` for both GPU paths and the DDAD size, then a second run finds them cached (issue 23)."""
    for backend in ("tensorrt", "onnxruntime"):
        cmd = [sys.executable, "-m", "fsmde_ros", "engine", "build", "--model", str(model), "--input-size", "1936x1216",
               "--backend", backend, "--engine-cache-dir", str(cache)]
        t = time.perf_counter()
        rc, out = run(cmd, 240)
        first = time.perf_counter() - t
        t = time.perf_counter()
        rc2, _ = run(cmd, 120)
        say(f"fsmde engine build ({backend})", "ok" if rc == rc2 == 0 else f"FAILED (exit {rc}, {rc2})",
            f"first {first:.1f} s, again {time.perf_counter() - t:.1f} s" if rc == 0 else out[-200:])
    rc, out = run([sys.executable, "-m", "fsmde_ros", "engine", "list", "--engine-cache-dir", str(cache)], 60)
    say("fsmde engine list", "ok" if rc == 0 else f"FAILED (exit {rc})", out.strip().splitlines()[-1] if out.strip() else "")


def parity(model: Path, cache: Path, gpu: bool) -> None:
    """Depth of each GPU path against ONNX Runtime on the CPU on one synthetic DDAD set at native size."""
    from fsmde_ros.data.synthetic import SyntheticSurround
    from fsmde_ros.geometry.rig import load_rig
    from fsmde_ros.runtime import create_backend
    from fsmde_ros.service.pipeline import SurroundDepthPipeline

    w, h = (int(v) for v in NATIVE.split("x"))
    frame = SyntheticSurround("ddad", height=h // 4, width=w // 4, frames=1)[0]  # rendered small, then upsampled:
    images = [np.repeat(np.repeat(img, 4, 0), 4, 1) for img in frame["images"]]  # parity needs no native detail
    rig = load_rig("ddad")
    cpu = create_backend("onnxruntime", model, providers=["CPUExecutionProvider"])
    ref = SurroundDepthPipeline(cpu, rig, composed=False).run(images, [None] * 6)
    graph_cpu = SurroundDepthPipeline(cpu, rig, composed=True, graph_cache_dir=str(cache),
                                      info=lambda s: None).run(images, [None] * 6)
    say("graph (onnxruntime CPU) vs host path", "info",  # two resizes: cv2's uint8 box vs the graph's float one
        _rel(graph_cpu.depth, ref.depth)[1])
    if not gpu:
        for what in ("tensorrt fp16", "tensorrt fp32", "graph on tensorrt fp16"):
            say(f"parity {what} vs onnxruntime CPU", "skipped", "(no GPU)")
        return
    for precision in ("fp16", "fp32"):
        trt = create_backend("tensorrt", model, precision=precision, engine_cache_dir=cache)
        out = SurroundDepthPipeline(trt, rig, composed=False).run(images, [None] * 6)
        say(f"parity tensorrt {precision} vs onnxruntime CPU", *_rel(out.depth, ref.depth))
    trt = create_backend("tensorrt", model, precision="fp16", engine_cache_dir=cache)
    out = SurroundDepthPipeline(trt, rig, composed=True, graph_cache_dir=str(cache), info=lambda s: None).run(
        images, [None] * 6)
    say("parity graph on tensorrt fp16 vs onnxruntime CPU", *_rel(out.depth, graph_cpu.depth))


def _rel(a: np.ndarray, b: np.ndarray, tolerance: float = 1e-2) -> tuple[str, str]:
    """('ok' or 'FAILED', detail): the median relative depth error within `tolerance` and <= 1 % of the valid
    masks disagreeing (FP16 moves single pixels more; the median says whether the engine is right)."""
    both = np.isfinite(a) & np.isfinite(b)
    nan_mismatch = float(np.mean(np.isfinite(a) != np.isfinite(b)))
    if not both.any():
        return "FAILED", f"no pixel valid in both (valid-mask mismatch {nan_mismatch:.1e})"
    rel = np.abs(a[both] - b[both]) / np.maximum(np.abs(b[both]), 1e-6)
    ok = np.median(rel) <= tolerance and nan_mismatch <= 1e-2
    return ("ok" if ok else "FAILED"), (f"max rel {rel.max():.2e}, median {np.median(rel):.1e}, valid-mask mismatch "
                                        f"{nan_mismatch:.1e}")


def node_end_to_end(gpu: bool, dry: bool, deadline: float, cache: Path) -> None:
    runs = [("tensorrt fp16", ["--backend", "tensorrt", "--precision", "fp16"]),
            ("tensorrt fp32", ["--backend", "tensorrt", "--precision", "fp32"]),
            ("onnxruntime GPU", ["--backend", "onnxruntime"])]
    if not gpu:
        for name, _ in runs:
            say(f"node {name} 6x384x640 from {NATIVE}", "skipped", "(no GPU)")
        runs = [("onnxruntime CPU (dry run, 4 s)", ["--backend", "onnxruntime", "--seconds", "4", "--windows", "2"])]
    for name, extra in runs:
        seconds = [] if dry else ["--seconds", "10", "--windows", "2"]  # each run builds two engines: keep in 10 min
        left = deadline - time.monotonic()
        if left < 60:
            say(f"node {name} 6x384x640 from {NATIVE}", "skipped", f"(out of time: {left:.0f} s left)")
            continue
        rc, out = run([sys.executable, "benchmarks/node_overhead.py", "--input-size", NATIVE, "--height", "384",
                       "--width", "640", "--deployment-graph", "always", *seconds, *extra,
                       "--node-param", f"engine_cache_dir={cache}"], min(left - 20, 300))
        node = re.search(r"\| node over DDS[^|]*\| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", out)
        ratio = re.search(r"node / bare = ([\d.]+)", out)
        host = re.search(r"host ms per set = ([\d.]+)", out)
        if rc or not node:
            say(f"node {name} 6x384x640 from {NATIVE}", f"FAILED (exit {rc})", out.strip()[-300:])
            continue
        say(f"node {name} 6x384x640 from {NATIVE}", "ok",
            f"{node.group(1)} sets/s, p99 {node.group(3)} ms, node / bare {ratio.group(1) if ratio else '?'}, "
            f"host {host.group(1) if host else '?'} ms per set")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="run only what needs no GPU; list what was skipped")
    args = ap.parse_args()
    start = time.perf_counter()
    deadline = time.monotonic() + 570  # gpu_check.sh stops everything at 600 s
    gpu = has_gpu() and not args.dry_run
    say("GPU", "present" if gpu else "none", "(dry run)" if args.dry_run else "")
    from fsmde_ros.paths import DEFAULT_MODEL

    def step(name, fn, *a):
        try:
            fn(*a)
        except Exception as exc:  # noqa: BLE001 - one failing step must not lose the others or the table
            say(name, "FAILED", f"{type(exc).__name__}: {exc}"[:300])

    try:
        if gpu:
            step("install gpu extra", install_gpu_extra)
        else:
            say("install gpu extra", "skipped", "(no GPU)")
        step("GPU-marked tests", gpu_tests)  # without a GPU they skip, each with its reason
        with tempfile.TemporaryDirectory(prefix="fsmde_gpu_check_") as tmp:
            cache = Path(tmp)
            if gpu:
                step("engine build and cached start", engine_times, DEFAULT_MODEL, cache)
                step("fsmde engine build", engine_commands, DEFAULT_MODEL, cache)
            else:
                say("engine build and cached start", "skipped", "(no GPU)")
                say("fsmde engine build", "skipped", "(no GPU)")
            step("parity", parity, DEFAULT_MODEL, cache, gpu)
            step("node end to end", node_end_to_end, gpu, args.dry_run, deadline, cache)
    finally:
        summary(start, args.dry_run)
    return 1 if any(r.startswith("FAILED") for _, r, _ in rows) else 0


def summary(start: float, dry: bool) -> None:
    print(f"\n## gpu_check summary ({time.perf_counter() - start:.0f} s{', dry run' if dry else ''})\n")
    print("| check | result | detail |\n|---|---|---|")
    for check, result, detail in rows:
        print(f"| {check} | {result} | {detail} |")
    skipped = [c for c, r, _ in rows if r == "skipped"]
    if skipped:
        print(f"\nskipped ({len(skipped)}): " + "; ".join(skipped))


if __name__ == "__main__":
    sys.exit(main())
