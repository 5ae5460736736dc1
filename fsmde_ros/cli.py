"""The `fsmde` command: one entry point for every offline job (synth, rig, demo, ...).

Each subcommand is a small function registered on the parser; heavy imports happen inside it
so that `fsmde --help` is instant.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__


def _cmd_rig_show(args: argparse.Namespace) -> int:
    from .rig import load_rig

    rig = load_rig(args.name)
    if args.width or args.height:
        if not (args.width and args.height):
            raise SystemExit("fsmde rig show: give both --width and --height")
        rig = rig.resized(args.width, args.height)
    print(rig.describe())
    return 0


def _cmd_rig_list(args: argparse.Namespace) -> int:
    from .rig import available_rigs, rig_preset_dir

    for name in available_rigs():
        print(f"{name:<12} {rig_preset_dir() / (name + '.yaml')}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from .data.synthetic import write_synthetic_sequence

    out = write_synthetic_sequence(args.rig, frames=args.frames, out_dir=args.out, height=args.height,
                                   width=args.width, seed=args.seed)
    print(f"wrote {args.frames} frame(s) of the {args.rig} rig to {out} (preview: {Path(out) / 'preview.png'})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoError, run_demo

    try:
        run_demo(args.out, rig=args.rig, frames=args.frames, seed=args.seed, model=args.model, backend=args.backend,
                 rate=args.rate)
    except DemoError as exc:
        print(f"[demo] FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .data.synthetic import SyntheticSurround
    from .export.onnx import export_onnx
    from .model.checkpoint import load_student
    from .model.student import create_student
    from .rig import load_rig

    if args.checkpoint:
        student = load_student(args.checkpoint)
        source = str(args.checkpoint)
    else:
        print(f"[export] no --checkpoint: exporting an untrained {args.student} (random weights; for benchmarks only)")
        student = create_student(args.student)
        source = f"untrained:{args.student}"
    rig = load_rig(args.rig)
    frame = SyntheticSurround(rig, seed=args.seed, height=args.height, width=args.width, frames=1)[0]
    focal = frame["K"][:, 0, 0].astype("float32")
    print(f"[export] {source} -> {args.out} at {args.height}x{args.width}, verifying on a synthetic {rig.name} frame")
    errors = export_onnx(student, args.out, args.height, args.width, frame["images"], focal, rig=rig.name,
                         opset=args.opset, extra_metadata={"source": source})
    print(f"[export] wrote {args.out}; ONNX Runtime vs PyTorch relative error: "
          + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    if args.tensorrt:
        from .export.tensorrt import ensure_engine

        engine = ensure_engine(args.out, args.precision, args.engine_cache_dir)
        print(f"[export] TensorRT {args.precision} engine: {engine}")
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from .distill.trainer import TrainConfig, run_distillation

    cfg = TrainConfig.load(args.config)
    if args.out_dir:
        cfg.out_dir = str(args.out_dir)
    if args.steps:
        cfg.steps = args.steps
    ckpt = run_distillation(cfg, resume=not args.no_resume)
    print(f"[distill] checkpoint: {ckpt}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .data.surround import CachedDataset
    from .distill.evaluate import evaluate, format_table, write_results
    from .runtime import create_backend

    if args.onnx:
        backend = create_backend(args.backend, args.onnx)
    else:
        backend = create_backend("torch", args.checkpoint, height=args.height, width=args.width)
    dataset = CachedDataset(args.dataset, backend.height, backend.width, args.cache_dir)
    results = evaluate(backend, dataset, max_depth=args.max_depth, dense_gt=args.dense_gt, limit=args.limit)
    print(format_table(results))
    if args.json:
        print(f"[eval] wrote {write_results(results, args.json)}")
    if args.plot:
        import cv2

        from .figures import sparsification_figure

        args.plot.parent.mkdir(parents=True, exist_ok=True)
        picture = sparsification_figure([(f"{results['rig']} ({results['gt']} GT)", results["uncertainty"])])
        cv2.imwrite(str(args.plot), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        print(f"[eval] wrote {args.plot}")
    return 0


def _cmd_teach(args: argparse.Namespace) -> int:
    from .data.surround import CachedDataset
    from .distill.teach import precompute_teacher
    from .model.teachers import create_teacher

    teacher = create_teacher(args.teacher, device=args.device)
    for spec in args.dataset:
        dataset = CachedDataset(spec, args.height, args.width, args.cache_dir)
        # one cache per dataset, named like the dataset's render cache: `fsmde distill` finds it by that key
        out = precompute_teacher(dataset, teacher, Path(args.out) / dataset.key, with_features=args.features)
        print(f"[teach] {spec}: teacher outputs for {len(dataset)} sets in {out}")
    print(f"[teach] train with `teacher: {args.out}` in the distill config")
    return 0


def _add_size(p: argparse.ArgumentParser, height: int = 192, width: int = 320) -> None:
    g = p.add_argument_group("image size")
    g.add_argument("--height", type=int, default=height, help="image height [px] (default %(default)s)")
    g.add_argument("--width", type=int, default=width, help="image width [px] (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsmde",
        description="Full-surround monocular metric depth: synthetic data, rigs, distillation, evaluation, "
                    "ONNX/TensorRT export, rosbag2 conversion, replay and offline processing, and the demo.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fsmde_ros {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    rig = sub.add_parser("rig", help="inspect camera rig presets")
    rig_sub = rig.add_subparsers(dest="rig_command", metavar="ACTION", required=True)
    show = rig_sub.add_parser("show", help="print a rig's cameras, intrinsics, mounts and neighbours")
    show.add_argument("name", help="preset name (ddad, nuscenes) or path to a rig YAML")
    show.add_argument("--width", type=int, help="show intrinsics scaled to this width [px]")
    show.add_argument("--height", type=int, help="show intrinsics scaled to this height [px]")
    show.set_defaults(func=_cmd_rig_show)
    rig_sub.add_parser("list", help="list the bundled presets").set_defaults(func=_cmd_rig_list)

    synth = sub.add_parser("synth", help="render a synthetic surround sequence (RGB, depth, lidar, teacher) to disk",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    synth.add_argument("--rig", default="ddad", help="rig preset or YAML path")
    synth.add_argument("--frames", type=int, default=4, help="number of consecutive frames")
    synth.add_argument("--out", required=True, type=Path, help="output directory")
    synth.add_argument("--seed", type=int, default=0, help="world seed (same seed, same world)")
    _add_size(synth)
    synth.set_defaults(func=_cmd_synth)

    export = sub.add_parser("export", help="export a student to ONNX (verified against PyTorch) and optionally TensorRT",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = export.add_argument_group("model").add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, help="student checkpoint (.pt) to export")
    src.add_argument("--student", default="fsmde_mnv3l", help="untrained named student (benchmarks only)")
    export.add_argument("--out", type=Path, required=True, help="output .onnx path")
    export.add_argument("--rig", default="ddad", help="rig whose synthetic frame verifies the export; recorded in metadata")
    export.add_argument("--seed", type=int, default=0, help="seed of the verification frame")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    trt = export.add_argument_group("TensorRT (needs an NVIDIA GPU and the `gpu` extra)")
    trt.add_argument("--tensorrt", action="store_true", help="also build the TensorRT engine into the cache")
    trt.add_argument("--precision", default="fp16", choices=["fp16", "fp32"], help="engine precision")
    trt.add_argument("--engine-cache-dir", type=Path, default=None, help="engine cache (default ~/.cache/fsmde_ros/engines)")
    _add_size(export)
    export.set_defaults(func=_cmd_export)

    distill = sub.add_parser("distill", help="distil a student from a teacher (torchrun for several GPUs/nodes)",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    distill.add_argument("--config", required=True, type=Path, help="training config YAML (config/distill/*.yaml)")
    distill.add_argument("--out-dir", type=Path, help="override the config's out_dir")
    distill.add_argument("--steps", type=int, help="override the config's steps")
    distill.add_argument("--no-resume", action="store_true", help="start afresh even if out_dir has a checkpoint")
    distill.set_defaults(func=_cmd_distill)

    ev = sub.add_parser("eval", help="depth metrics (metric and median-scaled) and cross-view consistency",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    model = ev.add_argument_group("model").add_mutually_exclusive_group(required=True)
    model.add_argument("--onnx", type=Path, help="exported student (.onnx); evaluated at its resolution")
    model.add_argument("--checkpoint", type=Path, help="student checkpoint (.pt); evaluated at --height x --width")
    ev.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "tensorrt"], help="for --onnx")
    ev.add_argument("--dataset", default="synthetic:ddad?seed=100&frames=20",
                    help="dataset spec: synthetic[:rig][?seed=&frames=&stride=], ddad:/path[?split=val], nuscenes:/path[?version=v1.0-mini&split=val]")
    ev.add_argument("--max-depth", type=float, help="evaluation cap [m] (default: DDAD 200, nuScenes 80)")
    ev.add_argument("--dense-gt", action="store_true", help="score against dense depth (synthetic only) instead of lidar")
    ev.add_argument("--limit", type=int, help="evaluate the first N sets only")
    ev.add_argument("--json", type=Path, help="write the results as JSON")
    ev.add_argument("--plot", type=Path, help="write the sparsification curves (uncertainty vs error) as a PNG")
    ev.add_argument("--cache-dir", default="~/.cache/fsmde_ros/datasets", help="rendered-dataset cache")
    _add_size(ev)
    ev.set_defaults(func=_cmd_eval)

    teach = sub.add_parser("teach", help="run a teacher once over a dataset and store its outputs for training",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    teach.add_argument("--dataset", required=True, nargs="+", help="dataset spec(s), as in the distill config's train list")
    teach.add_argument("--teacher", required=True,
                       help="depth_anything:<local path or hub id>, onnx:<path>, or synthetic")
    teach.add_argument("--out", required=True, type=Path, help="output directory (resumable)")
    teach.add_argument("--features", action="store_true", help="also store the teacher's features (view-relational KD)")
    teach.add_argument("--device", default="cpu", help="torch device for the teacher")
    teach.add_argument("--cache-dir", default="~/.cache/fsmde_ros/datasets", help="rendered-dataset cache")
    _add_size(teach)
    teach.set_defaults(func=_cmd_teach)

    from .data import bag as bag_commands
    from . import replay as replay_commands

    bag_commands.register(sub)  # fsmde bag
    replay_commands.register(sub)  # fsmde play, fsmde process

    demo = sub.add_parser("demo", help="run the end-to-end demo on the embedded synthetic default",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory")
    demo.add_argument("--rig", default="ddad", choices=["ddad", "nuscenes"], help="rig geometry of the synthetic world")
    demo.add_argument("--frames", type=int, default=30, help="surround sets to replay (10 per second)")
    demo.add_argument("--seed", type=int, default=100, help="world seed (the bundled student never saw seeds >= 100)")
    demo.add_argument("--model", type=Path, help="exported student (default: the bundled one)")
    demo.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime"], help="node backend")
    demo.add_argument("--rate", type=float, default=1.0, help="replay speed factor")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .rig import RigError

    try:
        return args.func(args)
    except (RigError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"fsmde {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C in any command: one line and the shell's convention, not a traceback
        print(f"fsmde {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
