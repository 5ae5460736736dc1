"""The composed deployment graph against the host path it replaces: resize-then-student for depth,
CloudFuser for the cloud (both rigs, two strides, both overlap modes), and its cache."""
import numpy as np
import onnxruntime as ort
import pytest

from fsmde_ros.geometry.cloud import CloudFuser
from fsmde_ros.geometry.projection import invert_transform
from fsmde_ros.geometry.resize import plan_resize
from fsmde_ros.geometry.rig import load_rig
from fsmde_ros.paths import DEFAULT_MODEL
from fsmde_ros.runtime import engine_build
from fsmde_ros.runtime.deployment_graph import (
    CAMERA_INPUT,
    FP32_LAYER_PREFIX,
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    STUDENT,
    compose_deployment_graph,
    deployment_graph,
)
from tests.helpers.oracle_model import write_oracle_model

import onnx


def reference_resize(images: np.ndarray, plan) -> np.ndarray:
    """The graph's resize in numpy: centre crop, box average, bilinear with half-pixel centres, round, uint8."""
    v = images.shape[0]
    pw, ph = plan.pooled
    x = images[:, plan.y0:plan.y0 + ph * plan.ky, plan.x0:plan.x0 + pw * plan.kx].astype(np.float32)
    x = x.reshape(v, ph, plan.ky, pw, plan.kx, 3).mean(axis=(2, 4), dtype=np.float32)

    def taps(n_in, n_out):
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(pos).astype(int)
        return i0, np.minimum(i0 + 1, n_in - 1), (pos - i0).astype(np.float32)

    if (pw, ph) != (plan.out_w, plan.out_h):
        r0, r1, fr = taps(ph, plan.out_h)
        x = x[:, r0] * (1 - fr)[None, :, None, None] + x[:, r1] * fr[None, :, None, None]
        c0, c1, fc = taps(pw, plan.out_w)
        x = x[:, :, c0] * (1 - fc)[None, None, :, None] + x[:, :, c1] * fc[None, None, :, None]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def smooth_images(v, h, w, seed):
    """Camera images whose oracle depth is smooth and mostly within 0.5..65 m (R = 0, G and B fields)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((v, h, w, 3), np.uint8)
    for c in range(v):
        a, b, p = rng.uniform(20, 200), rng.uniform(-60, 60), rng.uniform(0, 6)
        img[c, ..., 1] = np.clip(a + b * np.sin(6 * xx + p) * np.cos(4 * yy), 0, 255)
        img[c, ..., 2] = rng.integers(0, 256, (h, w))
    return img


def graph_inputs(rig, K_model, images, claim, present=None, depth_range=(0.5, 80.0), ratio=0.0):
    T = rig.T_base_cam
    return {**{CAMERA_INPUT.format(i): img for i, img in enumerate(images)}, "K": K_model.astype(np.float32), "T_base_cam": T.astype(np.float32),
            "T_cam_base": np.stack([invert_transform(t) for t in T]).astype(np.float32),
            "depth_range": np.asarray(depth_range, np.float32), "max_std_ratio": np.asarray([ratio], np.float32),
            "present": np.ones(len(rig), bool) if present is None else present, "claim": claim}


def test_resize_plan_crops_to_the_aspect_and_scales_the_pixel_edges_exactly():
    """Regression (issue 22): a 16:9 or DDAD image was stretched to the model's 5:3, so fx and fy scaled apart
    while the model's focal conditioning reads fx only. Now a centre crop, then one scale."""
    plan = plan_resize(1936, 1216, 640, 384)              # DDAD -> the 384x640 student
    assert (plan.x0, plan.y0, plan.crop) == (0, 27, (1936, 1162))  # 27 rows off the top, 27 off the bottom
    assert (plan.kx, plan.ky, plan.pooled) == (3, 3, (645, 387))
    assert plan.sx == pytest.approx(640 / 1935) and plan.sy == pytest.approx(384 / 1161)
    assert abs(plan.sx / plan.sy - 1) < 1e-3               # uniform to a pixel's rounding
    nusc = plan_resize(1600, 900, 640, 384)               # 16:9 -> 5:3: columns cut
    assert (nusc.x0, nusc.y0, nusc.crop) == (50, 0, (1500, 900)) and abs(nusc.sx / nusc.sy - 1) < 1e-3
    K = np.array([[1000.0, 0, 799.5], [0, 1000.0, 449.5], [0, 0, 1]])
    Ko = nusc.intrinsics(K)                                # the centre stays the centre, fx = fy
    np.testing.assert_allclose(Ko[:2, 2], [319.5, 191.5], atol=1e-9)
    assert Ko[0, 0] == pytest.approx(Ko[1, 1], rel=1e-3)
    assert (plan_resize(320, 192, 320, 192).kx, plan_resize(200, 100, 320, 192).ky) == (1, 1)
    assert plan_resize(320, 192, 320, 192).crop == (320, 192)


@pytest.mark.parametrize("in_size", [(1936, 1216), (1600, 900), (320, 192)])
def test_composed_depth_equals_resize_then_student(in_size, tmp_path):
    """The bundled student, fed DDAD-, nuScenes- and model-sized images: the graph's depth and std equal the
    student run on the reference resize of the same images (1e-3 relative), NaN outside the bounds."""
    student = onnx.load(str(DEFAULT_MODEL))
    v, h, w = (d.dim_value for d in student.graph.input[0].type.tensor_type.shape.dim[:3])
    w_in, h_in = in_size
    path = tmp_path / "deploy.onnx"
    onnx.save(compose_deployment_graph(student, w_in, h_in, stride=4, overlap="all"), str(path))
    rig = load_rig("ddad")
    plan = plan_resize(w_in, h_in, w, h)
    K = plan.intrinsics(rig.resized(w_in, h_in).K)
    images = np.random.default_rng(0).integers(0, 256, (v, h_in, w_in, 3), dtype=np.uint8)
    images[:, : h_in // 2] //= 2                          # some structure: a darker upper half
    composed = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    claim = np.zeros((v, v, len(range(0, h, 4)), len(range(0, w, 4))), bool)
    out = dict(zip(GRAPH_OUTPUTS, composed.run(list(GRAPH_OUTPUTS), graph_inputs(rig, K, images, claim,
                                                                                  depth_range=(0.5, 60.0)))))
    resized = reference_resize(images, plan)
    assert np.abs(out["images"].astype(int) - resized).max() <= 1 and (out["images"] != resized).mean() < 1e-3
    bare = ort.InferenceSession(str(DEFAULT_MODEL), providers=["CPUExecutionProvider"])
    depth, std = bare.run(["depth", "depth_std"], {"images": out["images"], "focal_px": K[:, 0, 0].astype(np.float32)})
    ok = (depth >= 0.5) & (depth <= 60.0)
    assert ok.mean() > 0.5 and np.isposinf(out["depth"][depth > 60.0]).all()  # REP-117: +Inf beyond max ...
    assert np.isneginf(out["depth"][depth < 0.5]).all()                           # ... -Inf nearer than min
    np.testing.assert_allclose(out["depth"][ok], depth[ok], rtol=1e-3)
    np.testing.assert_allclose(out["depth_std"], std, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("rig_name", ["ddad", "nuscenes"])
@pytest.mark.parametrize("stride", [1, 4])
@pytest.mark.parametrize("overlap", ["nearest_axis", "all"])
def test_composed_cloud_equals_cloud_fuser(rig_name, stride, overlap, tmp_path):
    """Same points in the same order (camera, row, column) as CloudFuser on the graph's depth, both rigs, two strides,
    both overlap modes; an absent camera has no points and claims none; the std filter and bounds are inputs."""
    rig = load_rig(rig_name)
    v, h, w = len(rig), 48, 80
    w_in, h_in = 250, 150                                 # box 3 x 3, then bilinear
    oracle = onnx.load(str(write_oracle_model(tmp_path / "oracle.onnx", v, h, w)))
    session = ort.InferenceSession(compose_deployment_graph(oracle, w_in, h_in, stride, overlap).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    plan = plan_resize(w_in, h_in, w, h)
    K = plan.intrinsics(rig.resized(w_in, h_in).K)
    fuser = CloudFuser(rig.T_base_cam, stride, overlap)
    fuser.prepare(K, h, w)
    claim = fuser.claim_masks()
    for present, depth_range, ratio in [(None, (0.5, 80.0), 0.0), (np.arange(v) != 2, (2.0, 40.0), 0.06),
                                        (None, (0.5, 80.0), 0.04)]:
        images = smooth_images(v, h_in, w_in, seed=stride)
        out = dict(zip(GRAPH_OUTPUTS, session.run(list(GRAPH_OUTPUTS), graph_inputs(
            rig, K, images, claim, present, depth_range, ratio))))
        ref = fuser(out["depth"], K, images=out["images"], min_depth=depth_range[0], max_depth=depth_range[1],
                    depth_std=out["depth_std"], max_std_ratio=ratio or None)
        valid = out["cloud_valid"]
        cam = np.nonzero(valid)[0]
        if ratio == 0.04:                                 # the oracle's std is 5 % of depth: nothing passes
            assert not valid.any() and len(ref) == 0
            continue
        assert len(ref) > 100 and valid.sum() == len(ref)
        np.testing.assert_array_equal(cam, ref.camera)
        np.testing.assert_allclose(out["cloud_xyz"][valid], ref.xyz, rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(out["cloud_rgb"][valid], ref.rgb)
        if present is not None:
            assert 2 not in cam
        if overlap == "nearest_axis" and present is None:
            assert len(ref) < (out["depth"][:, ::stride, ::stride] > 0).sum()  # the handover took some points


def test_graph_is_composed_once_per_input_size_and_cached(tmp_path):
    oracle = write_oracle_model(tmp_path / "oracle.onnx", 6, 48, 80)
    first, composed = deployment_graph(oracle, 250, 150, 4, "all", cache_dir=tmp_path / "cache")
    again, composed_again = deployment_graph(oracle, 250, 150, 4, "all", cache_dir=tmp_path / "cache")
    other, _ = deployment_graph(oracle, 160, 96, 4, "all", cache_dir=tmp_path / "cache")
    assert composed and not composed_again and first == again and other != first
    model = onnx.load(str(first))
    assert [i.name for i in model.graph.input] == [CAMERA_INPUT.format(i) for i in range(6)] + list(GRAPH_INPUTS)
    assert {p.key: p.value for p in model.metadata_props}["deploy_input"] == "250x150"
    first.write_bytes(b"half written")                    # a corrupt cache entry is composed again
    assert deployment_graph(oracle, 250, 150, 4, "all", cache_dir=tmp_path / "cache")[1]


def graph_and_student_nodes(model, student):
    """The composed graph's nodes split into those the graph adds and the student's own (prefixed STUDENT)."""
    own = {n.SerializeToString() for n in onnx.compose.add_prefix(student, STUDENT).graph.node}
    added = [n for n in model.graph.node if n.SerializeToString() not in own]
    return added, [n for n in model.graph.node if n.SerializeToString() in own]


@pytest.mark.parametrize("undistort", [False, True])
def test_every_layer_the_graph_adds_carries_the_prefix_an_fp16_engine_keeps_fp32(undistort, tmp_path):
    """The FP32 guard of FP16 engines (engine_build) selects layers by FP32_LAYER_PREFIX: every node, constant and
    inner tensor the graph adds carries it and none of the student's does, so a rename cannot silently drop the guard."""
    oracle = onnx.load(str(write_oracle_model(tmp_path / "oracle.onnx", 6, 48, 80)))
    model = compose_deployment_graph(oracle, 250, 150, 4, "nearest_axis", undistort)
    added, student = graph_and_student_nodes(model, oracle)
    assert len(added) > 100 and all(n.name.startswith(FP32_LAYER_PREFIX) for n in added)
    assert len(student) == len(oracle.graph.node) and not any(n.name.startswith(FP32_LAYER_PREFIX) for n in student)
    io = {i.name for i in [*model.graph.input, *model.graph.output]}
    inner = {t for n in added for t in n.output} - io - {STUDENT + i.name for i in oracle.graph.input}
    assert all(t.startswith(FP32_LAYER_PREFIX) for t in inner | {i.name for i in model.graph.initializer
                                                                  if not i.name.startswith(STUDENT)})


def test_the_fp16_engines_fp32_guard_takes_exactly_the_graphs_own_layers(tmp_path):
    """engine_build's guard, run on a stand-in TensorRT network whose layers are named as the parser names them (after
    the ONNX nodes): the graph's own float layers are pinned to FP32, the student's are left to FP16."""
    from types import SimpleNamespace

    oracle = onnx.load(str(write_oracle_model(tmp_path / "oracle.onnx", 6, 48, 80)))
    model = compose_deployment_graph(oracle, 250, 150, 4, "nearest_axis")
    trt = SimpleNamespace(float32="f32", float16="f16", BuilderFlag=SimpleNamespace(OBEY_PRECISION_CONSTRAINTS="obey"))

    class Layer:
        def __init__(self, name):
            self.name, self.num_outputs, self.precision, self.outputs = name, 1, "f16", ["f16"]

        def get_output(self, k):
            return SimpleNamespace(dtype=self.outputs[k])

        def set_output_type(self, k, dtype):
            self.outputs[k] = dtype

    added, student = graph_and_student_nodes(model, oracle)
    layers = [Layer(n.name or f"student_layer_{i}") for i, n in enumerate(model.graph.node)]
    network = SimpleNamespace(num_layers=len(layers), get_layer=layers.__getitem__)
    flags = []
    engine_build._keep_fp32(trt, network, SimpleNamespace(set_flag=flags.append))
    kept = {layer.name for layer in layers if layer.precision == "f32" and layer.outputs == ["f32"]}
    assert kept == {n.name for n in added} and len(kept) == len(added) > 100 and flags == ["obey"]
    assert engine_build.FP32_LAYER_PREFIX is FP32_LAYER_PREFIX


@pytest.mark.gpu
def test_the_composed_graph_on_tensorrt_matches_onnxruntime(tmp_path):
    """The same deployment graph as a TensorRT engine (FP32): depth within 1e-3 of ONNX Runtime on the CPU, the
    same cloud up to points at the bounds, one engine built and then reused from the cache."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (GPU machines only: extra `gpu`)")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible")
    from fsmde_ros.runtime import create_backend
    from fsmde_ros.service.pipeline import SurroundDepthPipeline

    rig = load_rig("ddad")
    images = list(smooth_images(6, 384, 640, seed=0))
    runs = {}
    for kind in ("onnxruntime", "tensorrt"):
        options = {"providers": ["CPUExecutionProvider"]} if kind == "onnxruntime" else {"precision": "fp32"}
        backend = create_backend(kind, DEFAULT_MODEL, engine_cache_dir=tmp_path, **options)
        runs[kind] = SurroundDepthPipeline(backend, rig, composed=True, graph_cache_dir=str(tmp_path),
                                           info=lambda s: None).run(images, [None] * 6)
    a, b = runs["tensorrt"].depth, runs["onnxruntime"].depth
    both = np.isfinite(a) & np.isfinite(b)
    assert both.mean() > 0.5 and np.mean(np.isfinite(a) != np.isfinite(b)) < 1e-3
    np.testing.assert_allclose(a[both], b[both], rtol=1e-3)
    assert abs(len(runs["tensorrt"].cloud) - len(runs["onnxruntime"].cloud)) <= 0.01 * len(runs["onnxruntime"].cloud)
    engines = sorted(tmp_path.glob("*deploy640x384*.engine"))
    assert len(engines) == 1
