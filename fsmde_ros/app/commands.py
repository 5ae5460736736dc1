"""What each `fsmde` subcommand does (the parser is in fsmde_ros.app.cli).

Heavy imports happen inside each handler so that `fsmde --help` is instant. A handler raises
FsmdeError for anything the user can fix; `cli.main` turns it into one line and exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fsmde_ros.errors import ConfigError


def cmd_rig_show(args: argparse.Namespace) -> int:
    from fsmde_ros.geometry.rig import load_rig

    rig = load_rig(args.name)
    if args.width or args.height:
        if not (args.width and args.height):
            raise ConfigError("give both --width and --height")
        rig = rig.resized(args.width, args.height)
    print(rig.describe())
    return 0


def cmd_rig_list(args: argparse.Namespace) -> int:
    from fsmde_ros.geometry.rig import available_rigs, rig_preset_dir

    for name in available_rigs():
        print(f"{name:<12} {rig_preset_dir() / (name + '.yaml')}")
    return 0


def cmd_rig_from_bag(args: argparse.Namespace) -> int:
    from fsmde_ros.ros.rig_tools import rig_from_bag, write_rig_yaml

    out = Path(args.out)
    if out.exists():
        raise ConfigError(f"{out} exists; choose another --out or remove it")
    rig, notes = rig_from_bag(args.bag, base_frame=args.base_frame, name=args.name)
    write_rig_yaml(rig, out, notes)
    print(rig.describe())
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {out}: run the node with rig:={out.resolve()}")
    return 0


def cmd_rig_check(args: argparse.Namespace) -> int:
    from fsmde_ros.geometry.rig import load_rig
    from fsmde_ros.ros.rig_tools import check_rig

    lines, fits = check_rig(load_rig(args.name), args.model)
    print("\n".join(lines))
    return 0 if fits else 2


def _quantize(model: Path, args: argparse.Namespace, out: Path) -> Path:
    """The INT8 twin of `model` at `out`, calibrated on up to args.sets sets spread over args.calibration's specs."""
    import numpy as np

    from fsmde_ros.data.surround import CachedDataset
    from fsmde_ros.export.quantize import quantize_student
    from fsmde_ros.model.contract import read_model_info

    _register_bag_datasets()
    info = read_model_info(model)
    datasets = [CachedDataset(spec, info["height"], info["width"], args.cache_dir)
                for spec in args.calibration]
    per = max(1, args.sets // len(datasets))
    sets = [(ds[i]["images"], ds[i]["K"][:, 0, 0]) for ds in datasets
            for i in np.linspace(0, len(ds) - 1, min(per, len(ds))).round().astype(int)]
    quantize_student(model, sets, out, args.method, args.keep_float_stride)
    print(f"[quantize] {out}: INT8 (QDQ) twin of {model}, {args.method} calibration on {len(sets)} sets; run it "
          "with precision:=int8")
    return out


def cmd_quantize(args: argparse.Namespace) -> int:
    _quantize(args.model, args, args.out)
    return 0


def cmd_engine_build(args: argparse.Namespace) -> int:
    from fsmde_ros.model.contract import read_model_info

    read_model_info(args.model)  # the contract first: a wrong file is said before any GPU question
    cache = Path(args.engine_cache_dir).expanduser()
    size = None
    if args.input_size:
        try:
            size = tuple(int(v) for v in args.input_size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--input-size must be WxH, e.g. 1936x1216, got {args.input_size!r}") from None
    if args.backend == "tensorrt":
        from fsmde_ros.runtime.engine_build import engine_key, ensure_engine

        engine_key(args.model, args.precision)  # TensorRT and a GPU, or one line saying which is missing (exit 2)
    else:
        import onnxruntime as ort

        from fsmde_ros.runtime.engine_build import TensorRTUnavailable

        if "TensorrtExecutionProvider" not in ort.get_available_providers():
            raise TensorRTUnavailable("this onnxruntime has no TensorRT provider (install the `gpu` extra on a machine "
                                      f"with an NVIDIA GPU); it has {', '.join(ort.get_available_providers())}")
    targets = [Path(args.model)]
    if size:
        from fsmde_ros.runtime.deployment_graph import deployment_graph

        targets.append(deployment_graph(args.model, *size, args.cloud_stride, args.cloud_overlap, cache)[0])
    if args.backend == "tensorrt":
        for onnx in targets:
            print(f"[engine] {onnx.name} ({args.precision}): {ensure_engine(onnx, args.precision, cache)}")
    else:
        from fsmde_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend, tensorrt_provider_options

        backend = OnnxRuntimeBackend(args.model, ["TensorrtExecutionProvider", "CPUExecutionProvider"],
                                     precision=args.precision, engine_cache_dir=cache)
        for onnx in targets[1:]:
            backend.graph_runner(onnx)  # the provider builds and caches the graph's engine
        for onnx in targets:
            where = tensorrt_provider_options(onnx, args.precision, cache)["trt_engine_cache_path"]
            print(f"[engine] {onnx.name} ({args.precision}, ONNX Runtime's TensorRT provider): {where}")
    print(f"[engine] cache: {cache} (the node loads these with engine_cache_dir:={cache})")
    return 0


def cmd_engine_list(args: argparse.Namespace) -> int:
    from fsmde_ros.runtime.engine_cache import cached_engines

    found = cached_engines(args.engine_cache_dir)
    for e in found:
        key = e.get("key", {})
        what = (f"{key.get('gpu_name', '?')} sm{key.get('compute_capability', '?')}, TensorRT {key.get('tensorrt_version', '?')}, "
                f"{key.get('precision', '?')}, from {e.get('onnx', '?')}") if e["kind"] == "tensorrt" else f"{e['files']} files"
        print(f"{e['kind']:<22} {e['bytes'] / 1e6:8.1f} MB  {e['path']}  ({what})")
    print(f"{len(found)} cached engine(s) in {Path(args.engine_cache_dir).expanduser()}")
    return 0


def cmd_engine_clear(args: argparse.Namespace) -> int:
    import shutil

    from fsmde_ros.runtime.engine_cache import cached_engines

    found = cached_engines(args.engine_cache_dir)
    for e in found:
        if e["path"].is_dir():
            shutil.rmtree(e["path"])
        else:
            e["path"].unlink()
            e["path"].with_suffix(".json").unlink(missing_ok=True)
    print(f"removed {len(found)} cached engine(s) from {Path(args.engine_cache_dir).expanduser()}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from fsmde_ros.data.synthetic import write_synthetic_sequence

    out = write_synthetic_sequence(args.rig, frames=args.frames, out_dir=args.out, height=args.height,
                                   width=args.width, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {args.frames} frame(s) of the {args.rig} rig to {out} (preview: {Path(out) / 'preview.png'})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fsmde_ros.app.demo import DemoError, run_demo

    try:
        run_demo(args.out, rig=args.rig, frames=args.frames, seed=args.seed, model=args.model, backend=args.backend,
                 rate=args.rate)
    except DemoError as exc:
        print(f"[demo] FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from fsmde_ros.data.synthetic import SyntheticSurround
    from fsmde_ros.export.onnx import export_onnx
    from fsmde_ros.geometry.rig import load_rig
    from fsmde_ros.model.checkpoint import load_student
    from fsmde_ros.model.student import create_student

    if args.precision == "int8" and not args.calibration:
        raise ConfigError("--precision int8 writes an INT8 (QDQ) student calibrated on dataset sets: pass --calibration "
                          "SPEC... (e.g. the training data's spec)")
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
    float_out = args.out.with_name(args.out.stem + "_fp32.onnx") if args.precision == "int8" else args.out
    errors = export_onnx(student, float_out, args.height, args.width, frame["images"], focal, rig=rig.name,
                         opset=args.opset, extra_metadata={"source": source})
    print(f"[export] wrote {float_out}; ONNX Runtime vs PyTorch relative error: "
          + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    if args.precision == "int8":
        _quantize(float_out, args, args.out)
    if args.tensorrt:
        from fsmde_ros.runtime.engine_build import ensure_engine

        engine = ensure_engine(args.out, args.precision, args.engine_cache_dir)
        print(f"[export] TensorRT {args.precision} engine: {engine}")
    return 0


def _register_bag_datasets() -> None:
    """`bag:` dataset specs (your own recordings) open once their reader is imported (it reads ROS messages)."""
    import fsmde_ros.ros.bag_dataset  # noqa: F401 - registers the `bag` kind with open_dataset


def cmd_distill(args: argparse.Namespace) -> int:
    from fsmde_ros.distill.trainer import TrainConfig, run_distillation

    _register_bag_datasets()
    cfg = TrainConfig.load(args.config)
    if args.out_dir:
        cfg.out_dir = str(args.out_dir)
    if args.steps is not None:
        cfg.steps = args.steps
    cfg.check()
    if args.until is not None and not 0 < args.until <= cfg.steps:
        raise ConfigError(f"--until must be in 1..steps ({cfg.steps}), got {args.until}")
    ckpt = run_distillation(cfg, resume=not args.no_resume, until=args.until)
    print(f"[distill] checkpoint: {ckpt}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from fsmde_ros.data.surround import CachedDataset
    from fsmde_ros.distill.evaluate import evaluate, format_table, write_results
    from fsmde_ros.runtime import create_backend

    _register_bag_datasets()
    if args.onnx:
        backend = create_backend(args.backend, args.onnx)
    else:
        backend = create_backend("torch", args.checkpoint, height=args.height, width=args.width)
    dataset = CachedDataset(args.dataset, backend.height, backend.width, args.cache_dir)
    results = evaluate(backend, dataset, max_depth=args.max_depth, dense_gt=args.dense_gt, limit=args.limit)
    print(format_table(results))
    if args.json:
        print(f"[eval] wrote {write_results(results, args.json)}")
    if args.plot and results["uncertainty"] is None:
        print(f"[eval] no sparsification plot: no image has two pixels with valid ground truth ({args.plot} not "
              "written)")
    elif args.plot:
        import cv2

        from fsmde_ros.viz.figures import sparsification_figure

        args.plot.parent.mkdir(parents=True, exist_ok=True)
        picture = sparsification_figure([(f"{results['rig']} ({results['gt']} GT)", results["uncertainty"])])
        cv2.imwrite(str(args.plot), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        print(f"[eval] wrote {args.plot}")
    return 0


def cmd_teach(args: argparse.Namespace) -> int:
    from fsmde_ros.data.surround import CachedDataset
    from fsmde_ros.distill.teach import precompute_teacher, teacher_cache_dir
    from fsmde_ros.model.teachers import create_teacher

    _register_bag_datasets()
    teacher = create_teacher(args.teacher, device=args.device)
    for spec in args.dataset:
        dataset = CachedDataset(spec, args.height, args.width, args.cache_dir)
        # one cache per dataset, named by the dataset's key: `fsmde distill` finds it there
        out = precompute_teacher(dataset, teacher, teacher_cache_dir(args.out, dataset.key), with_features=args.features)
        print(f"[teach] {spec}: teacher outputs for {len(dataset)} sets in {out}")
    print(f"[teach] train with `teacher: {args.out}` in the distill config")
    return 0


def cmd_bag(args: argparse.Namespace) -> int:
    from fsmde_ros.data.surround import open_dataset
    from fsmde_ros.ros.bag import WriteReport, describe_bag, write_bag

    dataset = open_dataset(args.dataset, args.height, args.width)
    report = WriteReport()
    try:
        out = write_bag(dataset, args.out, format=args.format, compressed=args.compressed,
                        jpeg_quality=args.jpeg_quality, with_lidar=args.lidar, limit=args.limit,
                        progress=not args.no_progress, skip_bad=not args.strict, report=report)
    except KeyboardInterrupt:
        return 130  # the bag is closed with what was written (write_bag said so)
    print(describe_bag(out))
    if report.skipped:
        print(f"[bag] skipped {len(report.skipped)} sets with missing or corrupt files: "
              + "; ".join(f"set {i}: {why}" for i, why in report.skipped))
    print(f"[bag] replay with `fsmde play {out}` or `ros2 bag play {out}`")
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    from fsmde_ros.ros.play import play_bag

    play_bag(args.bag, rate=args.rate, loop=args.loop, start_offset=args.start_offset, topics=args.topics,
             clock=args.clock, wait_for_subscribers=args.wait_for_subscribers, wait_timeout=args.wait_timeout,
             reliability=args.qos_reliability)
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    from fsmde_ros.ros.bag import describe_bag
    from fsmde_ros.ros.process import process_bag
    from fsmde_ros.service.params import PROCESS_PARAMS

    params = {name: getattr(args, name) for name in PROCESS_PARAMS}
    s = process_bag(args.bag, args.out, rig=args.rig, params=params, compressed=args.compressed, format=args.format,
                    copy_inputs=args.copy_inputs, diagnostics_every=args.diagnostics_every, limit=args.limit,
                    progress=not args.no_progress)
    print(f"[process] {s.sets} sets ({s.partial_sets} partial, {s.failed_sets} failed, {s.unmatched} images in no set) "
          f"in {s.seconds:.1f} s with {s.backend}: {s.sets / max(s.seconds, 1e-9):.1f} sets/s")
    print(describe_bag(s.out))
    if not s.sets:
        print("[process] warning: no complete surround set; check --slop and that all cameras are in the bag",
              file=sys.stderr)
    return 0
