"""Student vs a Depth-Anything-V2-Small-sized teacher: params, FLOPs and surround sets/s, side by side.

Both networks take the same six uint8 views at the same resolution through the same backend
(ONNX Runtime; CPU here, CUDA/TensorRT providers where present) in one run. The teacher is
built from its config through `transformers` with random weights: same architecture, same cost.
The default student also runs as its INT8 twin (`fsmde quantize`: QDQ, convolutions int8, calibrated
on synthetic sets at this size), beside its FP32 graph in the same run.

    .venv/bin/python benchmarks/student_vs_teacher.py [--height 196 --width 322 --threads 2] [--no-int8]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fsmde_ros.data.synthetic import SyntheticSurround  # noqa: E402
from fsmde_ros.export.onnx import export_onnx  # noqa: E402
from fsmde_ros.export.quantize import quantize_student  # noqa: E402
from fsmde_ros.model.student import create_student  # noqa: E402
from fsmde_ros.model.student_io import StudentForExport  # noqa: E402

VIEWS = 6
# Candidate students: (registry name, config overrides). The first one is the shipped default.
CANDIDATES = [
    ("fsmde_mnv3l", {}),
    ("fsmde_mnv3l", {"num_bins": 32}),
    ("fsmde_mnv4s", {}),
    ("fsmde_lcnet", {}),
    ("fsmde_effb0", {}),
    ("fsmde_r18", {}),
]


def depth_anything_v2_small():
    """Depth Anything V2 Small (DINOv2 ViT-S/14 + DPT head, 24.8 M parameters), random weights."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(image_size=518, patch_size=14, hidden_size=384, num_hidden_layers=12,
                            num_attention_heads=6, mlp_ratio=4, apply_layernorm=True, reshape_hidden_states=False,
                            out_features=["stage3", "stage6", "stage9", "stage12"])
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384,
                                 neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64, head_hidden_size=32,
                                 depth_estimation_type="relative")
    return DepthAnythingForDepthEstimation(config).eval()


class TeacherForExport(torch.nn.Module):
    """Same I/O as the student graph: uint8 [V,H,W,3] in, relative depth [V,H,W] out."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher = teacher
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1))

    def forward(self, images, focal_px):
        x = (images.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
        return self.teacher(pixel_values=x).predicted_depth + 0 * focal_px[:, None, None]


def flops(module, inputs) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*inputs)
    return counter.get_total_flops()


def export(module, inputs, path: Path) -> None:
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), input_names=["images", "focal_px"], opset_version=17, dynamo=False)


def time_onnx(path: Path, feed: dict, threads: int, repeats: int) -> tuple[float, str]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    session = ort.InferenceSession(str(path), opts, providers=providers)
    for _ in range(2):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times), session.get_providers()[0]


def int8_row(student, tmp: Path, args, feed: dict, fp32_row: tuple) -> tuple:
    """The default student's INT8 twin: exported with the ONNX contract, quantised as `fsmde quantize` does."""
    frames = SyntheticSurround("ddad", height=args.height, width=args.width, frames=args.calibration_sets)
    sets = [(frames[i]["images"], frames[i]["K"][:, 0, 0].astype(np.float32)) for i in range(len(frames))]
    fp32 = tmp / "default_fp32.onnx"
    export_onnx(student, fp32, args.height, args.width, sets[0][0], sets[0][1], rig="ddad")
    int8 = quantize_student(fp32, sets, tmp / "default_int8.onnx")
    t_fp32, _ = time_onnx(fp32, feed, args.threads, args.repeats)  # the graph it was quantised from, timed again
    t, _ = time_onnx(int8, feed, args.threads, args.repeats)
    print(f"INT8 / FP32 sets/s (default student, the same contract export, one after the other) = {t_fp32 / t:.2f}",
          flush=True)
    return f"{fp32_row[0]} INT8 (QDQ, convolutions int8)", fp32_row[1], fp32_row[2], t  # same parameters and FLOPs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=196, help="image height (a multiple of 14 for the ViT teacher)")
    parser.add_argument("--width", type=int, default=322, help="image width (a multiple of 14 for the ViT teacher)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per student (teacher: a third)")
    parser.add_argument("--quick", action="store_true", help="the default student only")
    parser.add_argument("--no-int8", action="store_true", help="skip the default student's INT8 twin")
    parser.add_argument("--calibration-sets", type=int, default=8, help="synthetic sets calibrating the INT8 twin")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(VIEWS, args.height, args.width, 3), dtype=np.uint8)
    focal = np.full(VIEWS, 250.0, np.float32)
    feed = {"images": images, "focal_px": focal}
    inputs = (torch.from_numpy(images), torch.from_numpy(focal))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        teacher = TeacherForExport(depth_anything_v2_small()).eval()
        export(teacher, inputs, Path(tmp) / "teacher.onnx")
        t_teacher, provider = time_onnx(Path(tmp) / "teacher.onnx", feed, args.threads, max(3, args.repeats // 3))
        rows.append(("teacher: Depth Anything V2 Small (ViT-S/14 + DPT)", sum(p.numel() for p in teacher.parameters()),
                     flops(teacher, inputs), t_teacher))
        for name, overrides in CANDIDATES[:1] if args.quick else CANDIDATES:
            student = StudentForExport(create_student(name, **overrides).eval()).eval()
            path = Path(tmp) / f"{name}.onnx"
            export(student, inputs, path)
            t, _ = time_onnx(path, feed, args.threads, args.repeats)
            label = f"student: {name}" + (f" {overrides}" if overrides else "")
            rows.append((label, sum(p.numel() for p in student.parameters()), flops(student, inputs), t))
            if name == CANDIDATES[0][0] and not overrides and not args.no_int8:
                rows.append(int8_row(student.student, Path(tmp), args, feed, rows[-1]))
    print(f"# {VIEWS} views x {args.height}x{args.width}, ONNX Runtime {ort.__version__} {provider}, "
          f"{args.threads} threads, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"| model | params [M] | GFLOPs / set | latency [ms] | sets/s | speed-up vs teacher |")
    print(f"|---|---:|---:|---:|---:|---:|")
    for label, params, fl, t in rows:
        print(f"| {label} | {params / 1e6:.2f} | {fl / 1e9:.1f} | {t * 1e3:.1f} | {1 / t:.2f} | {t_teacher / t:.1f}x |")


if __name__ == "__main__":
    main()
