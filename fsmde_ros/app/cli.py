"""The `fsmde` command line: every subcommand's options, with one help formatter and shared groups.

What each subcommand does is in fsmde_ros.app.commands (imported lazily, so `fsmde --help` is
instant). Errors: an FsmdeError (anything the user can fix) is printed as one line with exit
2; Ctrl-C exits 130; any other exception is a bug and keeps its traceback (exit 1).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from fsmde_ros import __version__
from fsmde_ros.errors import FsmdeError
from fsmde_ros.export.quantize import CALIBRATION_METHODS, DEFAULT_KEEP_FLOAT_STRIDE
from fsmde_ros.model.contract import DEFAULT_OPSET
from fsmde_ros.paths import DATASET_CACHE_DIR, ENGINE_CACHE_DIR
from fsmde_ros.ros.bag import FORMATS as BAG_FORMATS
from fsmde_ros.runtime import ONNX_BACKENDS
from fsmde_ros.runtime.engine_cache import PRECISIONS
from fsmde_ros.service.params import OUTPUT_NAMESPACE as OUTPUT_NS
from fsmde_ros.service.params import PARAMS_BY_NAME, PROCESS_PARAMS, RELIABILITY_CHOICES

DATASET_SPECS = ("synthetic[:ddad|nuscenes][?seed=&frames=&stride=], ddad:/path[?split=val], "
                 "nuscenes:/path[?version=v1.0-mini&split=val]")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except empty ones (None, False, "") and where the help already names the default."""

    def _get_help_string(self, action):
        empty = action.default is None or action.default is False or action.default == ""
        if empty or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


# -- shared option groups --------------------------------------------------------------------------
def add_size(p: argparse.ArgumentParser, height: int = 192, width: int = 320) -> None:
    g = p.add_argument_group("image size")
    g.add_argument("--height", type=int, default=height, help="image height [px]")
    g.add_argument("--width", type=int, default=width, help="image width [px]")


def add_calibration(p, required: bool) -> None:
    """The INT8 calibration options of `fsmde quantize` and `fsmde export --precision int8`."""
    p.add_argument("--calibration", nargs="+", required=required, metavar="SPEC",
                   help="dataset specs whose sets calibrate the activations (e.g. synthetic:ddad?seed=3&frames=8)")
    p.add_argument("--sets", type=int, default=16, help="calibration sets at most, spread over the specs")
    p.add_argument("--method", default=CALIBRATION_METHODS[0], choices=CALIBRATION_METHODS,
                   help="activation range calibration (docs/benchmarks.md: percentile and entropy within 1 %%)")
    p.add_argument("--keep-float-stride", type=int, default=DEFAULT_KEEP_FLOAT_STRIDE, metavar="S",
                   help="convolutions at 1/S of the input resolution or finer stay float (0: quantise all); "
                        f"{DEFAULT_KEEP_FLOAT_STRIDE} measured best on the bundled student (docs/benchmarks.md)")


def add_dataset_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", default=DATASET_CACHE_DIR, help="rendered-dataset cache")


def add_node_param(parser: argparse.ArgumentParser, name: str, choices: Sequence[str] | None = None) -> None:
    """An option for a node parameter, typed and documented from the node's parameter table."""
    spec = PARAMS_BY_NAME[name]
    flag = "--" + name.replace("_", "-")
    if isinstance(spec.default, bool):
        parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=spec.default,
                            help=spec.description)
    else:
        parser.add_argument(flag, dest=name, type=type(spec.default), default=spec.default,
                            choices=choices or spec.choices, help=spec.description)


def _handler(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from fsmde_ros.app import commands

        return getattr(commands, name)(args)
    return run


# -- subcommands ------------------------------------------------------------------------------------
def _rig(sub) -> None:
    rig = sub.add_parser("rig", help="camera rigs: presets, a rig from a recording, checks", formatter_class=HelpFormatter)
    rig_sub = rig.add_subparsers(dest="rig_command", metavar="ACTION", required=True)
    show = rig_sub.add_parser("show", help="print a rig's cameras, intrinsics, mounts and neighbours",
                              formatter_class=HelpFormatter)
    show.add_argument("name", help="preset name (ddad, nuscenes) or path to a rig YAML")
    show.add_argument("--width", type=int, help="show intrinsics scaled to this width [px]")
    show.add_argument("--height", type=int, help="show intrinsics scaled to this height [px]")
    show.set_defaults(func=_handler("cmd_rig_show"))
    rig_sub.add_parser("list", help="list the bundled presets").set_defaults(func=_handler("cmd_rig_list"))
    from_bag = rig_sub.add_parser("from-bag", help="write a rig YAML from a recording's CameraInfo and /tf_static",
                                  formatter_class=HelpFormatter)
    from_bag.add_argument("bag", help="rosbag2 directory (sqlite3 or MCAP)")
    from_bag.add_argument("--base-frame", default="base_link", help="the vehicle frame the mounts are given in")
    from_bag.add_argument("--name", help="the rig's name (default: the bag's folder name)")
    from_bag.add_argument("--out", required=True, help="rig YAML to write (refused if it exists)")
    from_bag.set_defaults(func=_handler("cmd_rig_from_bag"))
    check = rig_sub.add_parser("check", help="print a rig's ring and overlaps, and whether a model's recorded rig "
                               "matches", formatter_class=HelpFormatter)
    check.add_argument("name", help="preset name (ddad, nuscenes) or path to a rig YAML")
    check.add_argument("--model", help="an exported student (.onnx) to check against the rig")
    check.set_defaults(func=_handler("cmd_rig_check"))


def _synth(sub) -> None:
    synth = sub.add_parser("synth", help="render a synthetic surround sequence (RGB, depth, lidar, teacher) to disk",
                           formatter_class=HelpFormatter)
    synth.add_argument("--rig", default="ddad", help="rig preset or YAML path")
    synth.add_argument("--frames", type=int, default=4, help="number of consecutive frames")
    synth.add_argument("--out", required=True, type=Path, help="output directory")
    synth.add_argument("--seed", type=int, default=0, help="world seed (same seed, same world)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --out")
    add_size(synth)
    synth.set_defaults(func=_handler("cmd_synth"))


def _export(sub) -> None:
    export = sub.add_parser("export", help="export a student to ONNX (verified against PyTorch) and optionally TensorRT",
                            formatter_class=HelpFormatter)
    src = export.add_argument_group("model").add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, help="student checkpoint (.pt) to export")
    src.add_argument("--student", default="fsmde_mnv3l", help="untrained named student (benchmarks only)")
    export.add_argument("--out", type=Path, required=True, help="output .onnx path")
    export.add_argument("--rig", default="ddad", help="rig whose synthetic frame verifies the export; recorded in metadata")
    export.add_argument("--seed", type=int, default=0, help="seed of the verification frame")
    export.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= {DEFAULT_OPSET})")
    trt = export.add_argument_group("TensorRT (needs an NVIDIA GPU and the `gpu` extra)")
    trt.add_argument("--tensorrt", action="store_true", help="also build the TensorRT engine into the cache")
    trt.add_argument("--precision", default="fp16", choices=PRECISIONS,
                     help="engine precision; int8 writes --out as the INT8 (QDQ) student (needs --calibration)")
    trt.add_argument("--engine-cache-dir", type=Path, default=None, help=f"engine cache (default {ENGINE_CACHE_DIR})")
    int8 = export.add_argument_group("INT8 (--precision int8: --out is the INT8 student, X_fp32.onnx beside it)")
    add_calibration(int8, required=False)
    add_dataset_cache(int8)
    add_size(export)
    export.set_defaults(func=_handler("cmd_export"))


def _distill(sub) -> None:
    distill = sub.add_parser("distill", help="distil a student from a teacher (torchrun for several GPUs/nodes)",
                             formatter_class=HelpFormatter)
    distill.add_argument("--config", required=True, type=Path, help="training config YAML (config/distill/*.yaml)")
    distill.add_argument("--out-dir", type=Path, help="override the config's out_dir")
    distill.add_argument("--steps", type=int, help="override the config's steps")
    distill.add_argument("--until", type=int, metavar="STEP",
                         help="stop at this step with a resumable checkpoint, the schedule still the config's steps "
                              "(time-sliced jobs: run again to continue)")
    distill.add_argument("--no-resume", action="store_true", help="start afresh even if out_dir has a checkpoint")
    distill.set_defaults(func=_handler("cmd_distill"))


def _eval(sub) -> None:
    ev = sub.add_parser("eval", help="depth metrics (metric and median-scaled) and cross-view consistency",
                        formatter_class=HelpFormatter)
    model = ev.add_argument_group("model").add_mutually_exclusive_group(required=True)
    model.add_argument("--onnx", type=Path, help="exported student (.onnx); evaluated at its resolution")
    model.add_argument("--checkpoint", type=Path, help="student checkpoint (.pt); evaluated at --height x --width")
    ev.add_argument("--backend", default="auto", choices=ONNX_BACKENDS, help="for --onnx")
    ev.add_argument("--dataset", default="synthetic:ddad?seed=100&frames=20", help=f"dataset spec: {DATASET_SPECS}")
    ev.add_argument("--max-depth", type=float, help="evaluation cap [m] (default: DDAD 200, nuScenes 80)")
    ev.add_argument("--dense-gt", action="store_true", help="score against dense depth (synthetic only) instead of lidar")
    ev.add_argument("--limit", type=int, help="evaluate the first N sets only")
    ev.add_argument("--json", type=Path, help="write the results as JSON")
    ev.add_argument("--plot", type=Path, help="write the sparsification curves (uncertainty vs error) as a PNG")
    add_dataset_cache(ev)
    add_size(ev)
    ev.set_defaults(func=_handler("cmd_eval"))


def _teach(sub) -> None:
    teach = sub.add_parser("teach", help="run a teacher once over a dataset and store its outputs for training",
                           formatter_class=HelpFormatter)
    teach.add_argument("--dataset", required=True, nargs="+", help="dataset spec(s), as in the distill config's train list")
    teach.add_argument("--teacher", required=True,
                       help="depth_anything:<local path or hub id>, onnx:<path>, or synthetic")
    teach.add_argument("--out", required=True, type=Path, help="output directory (resumable)")
    teach.add_argument("--features", action="store_true", help="also store the teacher's features (view-relational KD)")
    teach.add_argument("--device", default="cpu", help="torch device for the teacher")
    add_dataset_cache(teach)
    add_size(teach)
    teach.set_defaults(func=_handler("cmd_teach"))


def _bag(sub) -> None:
    p = sub.add_parser("bag", help="convert a surround dataset to a rosbag2 (MCAP or sqlite3)",
                       description="Write a dataset's images, CameraInfo, /tf_static (latched), /tf and optionally "
                                   "the lidar as a rosbag2 that `ros2 bag play` or `fsmde play` replays into the node.",
                       formatter_class=HelpFormatter)
    p.add_argument("--dataset", default="synthetic:ddad?frames=20", help=f"dataset spec: {DATASET_SPECS}")
    p.add_argument("--out", type=Path, required=True, help="output bag directory (must not exist)")
    p.add_argument("--format", choices=BAG_FORMATS, default=BAG_FORMATS[0], help="rosbag2 storage")
    p.add_argument("--compressed", action="store_true",
                   help="write sensor_msgs/CompressedImage (JPEG) on <image_topic>/compressed instead of raw rgb8")
    p.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality 1-100 with --compressed")
    p.add_argument("--lidar", action="store_true", help="also write the lidar as PointCloud2 on /lidar/points")
    p.add_argument("--limit", type=int, help="write the first N sets only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first set with a missing or corrupt file (default: skip it with a warning)")
    add_size(p)
    p.set_defaults(func=_handler("cmd_bag"))


def _play(sub) -> None:
    play = sub.add_parser("play", help="replay a rosbag2 through rclpy (where `ros2 bag play` is missing)",
                          description="Publish a bag's messages with their original timing through rclpy, "
                                      "using the project's Fast DDS profile.", formatter_class=HelpFormatter)
    play.add_argument("bag", type=Path, help="rosbag2 directory (MCAP or sqlite3)")
    play.add_argument("--rate", type=float, default=1.0, help="playback speed factor (2 = twice as fast)")
    play.add_argument("--loop", action="store_true", help="start again at the beginning when the bag ends")
    play.add_argument("--start-offset", type=float, default=0.0, help="skip the bag's first S seconds")
    play.add_argument("--topics", nargs="+", help="play only these topics (default: all)")
    play.add_argument("--clock", action="store_true", help="publish the bag time on /clock (use_sim_time)")
    play.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                      help="before starting, wait until each image topic has N subscribers")
    play.add_argument("--wait-timeout", type=float, default=30.0, help="[s] give up waiting and play anyway")
    play.add_argument("--qos-reliability", choices=RELIABILITY_CHOICES, default=RELIABILITY_CHOICES[0],
                      help="reliability of the sensor topics (images, infos, clouds); /tf_static is always latched")
    play.set_defaults(func=_handler("cmd_play"))


def _process(sub) -> None:
    proc = sub.add_parser("process", help="run the node's pipeline over a bag offline into a new bag",
                          description="Group the rig's six cameras into sets, run the depth model on each as fast "
                                      f"as the backend allows, and write {OUTPUT_NS}/<camera>/depth, depth_std, "
                                      "camera_info, the fused cloud, /diagnostics and the input's /tf_static and /tf "
                                      "into a new bag.", formatter_class=HelpFormatter)
    proc.add_argument("bag", type=Path, help="input rosbag2 directory")
    proc.add_argument("--out", type=Path, required=True, help="output bag directory (must not exist)")
    proc.add_argument("--rig", help="rig preset or YAML (default: the rig named in the bag's metadata)")
    proc.add_argument("--compressed", action=argparse.BooleanOptionalAction, default=None,
                      help="read CompressedImage on <image_topic>/compressed (default: whichever the bag has)")
    proc.add_argument("--format", choices=BAG_FORMATS, help="output storage (default: the input's)")
    proc.add_argument("--copy-inputs", action="store_true", help="also copy the camera images and infos")
    proc.add_argument("--diagnostics-every", type=int, default=100, metavar="N",
                      help="write /diagnostics every N sets (and at the end; 0 = only at the end)")
    proc.add_argument("--limit", type=int, help="process the first N sets only")
    proc.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = proc.add_argument_group("node parameters (as the surround_depth node's)")
    for name in PROCESS_PARAMS:
        add_node_param(g, name, ONNX_BACKENDS if name == "backend" else None)
    proc.set_defaults(func=_handler("cmd_process"))


def _demo(sub) -> None:
    demo = sub.add_parser("demo", help="run the end-to-end demo on the embedded synthetic default",
                          formatter_class=HelpFormatter)
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory")
    demo.add_argument("--rig", default="ddad", choices=["ddad", "nuscenes"], help="rig geometry of the synthetic world")
    demo.add_argument("--frames", type=int, default=30, help="surround sets to replay (10 per second)")
    demo.add_argument("--seed", type=int, default=100, help="world seed (the bundled student never saw seeds >= 100)")
    demo.add_argument("--model", type=Path, help="exported student (default: the bundled one)")
    demo.add_argument("--backend", default="auto", choices=ONNX_BACKENDS, help="node backend")
    demo.add_argument("--rate", type=float, default=1.0, help="replay speed factor")
    demo.set_defaults(func=_handler("cmd_demo"))


def _quantize(sub) -> None:
    q = sub.add_parser("quantize", help="an INT8 (QDQ) twin of an exported student, calibrated on a dataset spec",
                       formatter_class=HelpFormatter)
    q.add_argument("model", type=Path, help="the exported student (.onnx), any that keeps the contract")
    add_calibration(q, required=True)
    q.add_argument("--out", type=Path, required=True, help="the INT8 student to write (.onnx)")
    add_dataset_cache(q)
    q.set_defaults(func=_handler("cmd_quantize"))


def _engine(sub) -> None:
    engine = sub.add_parser("engine", help="TensorRT engines: build them before the car drives, list, clear",
                            formatter_class=HelpFormatter)
    actions = engine.add_subparsers(dest="engine_command", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="build the engines the node will load for an ONNX student (and its "
                               "deployment graph at the cameras' size) into the cache, and say where",
                               formatter_class=HelpFormatter)
    build.add_argument("--model", type=Path, required=True, help="the exported student (.onnx), any that keeps the contract")
    build.add_argument("--input-size", metavar="WxH", help="the cameras' image size: also build the deployment graph "
                       "composed for it (what the node runs on a GPU)")
    build.add_argument("--backend", default="tensorrt", choices=("tensorrt", "onnxruntime"),
                       help="native TensorRT engines, or ONNX Runtime's TensorRT provider caches")
    add_node_param(build, "precision")
    add_node_param(build, "engine_cache_dir")
    add_node_param(build, "cloud_stride")
    add_node_param(build, "cloud_overlap")
    build.set_defaults(func=_handler("cmd_engine_build"))
    for name, text in (("list", "list the cached engines with their keys"), ("clear", "delete the cached engines")):
        action = actions.add_parser(name, help=text, formatter_class=HelpFormatter)
        add_node_param(action, "engine_cache_dir")
        action.set_defaults(func=_handler(f"cmd_engine_{name}"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsmde",
        description="Full-surround monocular metric depth: synthetic data, rigs, distillation, evaluation, "
                    "ONNX/TensorRT export, rosbag2 conversion, replay and offline processing, and the demo.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fsmde_ros {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_rig, _synth, _export, _quantize, _distill, _eval, _teach, _bag, _play, _process, _engine, _demo):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FsmdeError as exc:
        print(f"fsmde {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C in any command: one line and the shell's convention, not a traceback
        print(f"fsmde {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
