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
    from .data.synthetic import write_synthetic_sequence

    out = Path(args.out)
    print(f"[demo] rendering a {args.frames}-frame synthetic surround sequence (rig {args.rig}) into {out}/synthetic")
    seq = write_synthetic_sequence(args.rig, frames=args.frames, out_dir=out / "synthetic", height=args.height,
                                   width=args.width, seed=args.seed)
    print(f"[demo] done: look at {Path(seq) / 'preview.png'}")
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


def _add_size(p: argparse.ArgumentParser, height: int = 192, width: int = 320) -> None:
    g = p.add_argument_group("image size")
    g.add_argument("--height", type=int, default=height, help="image height [px] (default %(default)s)")
    g.add_argument("--width", type=int, default=width, help="image width [px] (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsmde",
        description="Full-surround monocular metric depth: synthetic data, rigs, ONNX/TensorRT export "
                    "and the demo (distill, eval, bag and play arrive with their issues).",
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

    demo = sub.add_parser("demo", help="run the end-to-end demo on the embedded synthetic default",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory")
    demo.add_argument("--rig", default="ddad", help="rig preset or YAML path")
    demo.add_argument("--frames", type=int, default=3, help="number of frames")
    demo.add_argument("--seed", type=int, default=0, help="world seed")
    _add_size(demo)
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


if __name__ == "__main__":
    sys.exit(main())
