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


def _add_size(p: argparse.ArgumentParser, height: int = 192, width: int = 320) -> None:
    g = p.add_argument_group("image size")
    g.add_argument("--height", type=int, default=height, help="image height [px] (default %(default)s)")
    g.add_argument("--width", type=int, default=width, help="image width [px] (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsmde",
        description="Full-surround monocular metric depth: synthetic data, rigs, and the demo "
                    "(distill, eval, export, bag and play arrive with their issues).",
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
    except (RigError, ValueError, FileNotFoundError) as exc:
        print(f"fsmde {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
