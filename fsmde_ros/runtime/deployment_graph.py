"""The deployment graph: the student's ONNX composed with the node's per-set work, for one input size.

One graph takes the six camera images at the size they arrive (uint8 [H_in,W_in,3] each) and returns
what the node publishes: it resizes them (a centre crop to the model's aspect ratio, then antialiased:
an integer box average, then bilinear for the rest), runs the student, marks depth outside [min, max]
with REP-117's -Inf / +Inf and computes the fused cloud (rays from the intrinsics, stride, bounds, the depth_std ratio filter and the `nearest_axis`
handover) as fixed-size tensors with a validity mask. TensorRT runs it all on the GPU, ONNX Runtime
in its kernels; the host only stacks the images, compacts the cloud (one mask) and publishes. The run-time
side (feeds, outputs by name, the compaction) is runtime/deployment.py's DeploymentGraph. Every node the graph
adds is named FP32_LAYER_PREFIX*: FP16 engines keep those layers FP32 (runtime/engine_build.py).

What may change while the node runs is an input, never a constant (so never an engine rebuild):
K at the model's resolution, the camera poses, the depth bounds, the std ratio, which cameras are
present, and the handover masks (they follow from K). The input size, the stride and the overlap
mode shape the graph: they are in the cache key, with the student's hash and GRAPH_VERSION.

Inputs:  camera_images_0 .. camera_images_{V-1} uint8 [H_in,W_in,3] RGB, one per camera (so the host
         passes each decoded message buffer as it is, no stacking copy); K float32 [V,3,3] at h x w (the model's);
         T_base_cam, T_cam_base float32 [V,4,4]; depth_range float32 [2] (min, max) [m];
         max_std_ratio float32 [1] (<= 0: off); present bool [V]; claim bool [V,V,h',w'] (camera j
         may take camera i's strided pixel; nearest_axis only), h' = ceil(h / stride).
Outputs: depth, depth_std float32 [V,h,w] [m]; images uint8 [V,h,w,3] (the student's input);
         cloud_xyz float32 [V,h',w',3] in base_link [m]; cloud_rgb uint8 [V,h',w',3];
         cloud_valid bool [V,h',w']. Compacted in C order (camera, row, column), the points and
         their order are CloudFuser's.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fsmde_ros.geometry.cloud import OVERLAP_CHOICES
from fsmde_ros.geometry.resize import ResizePlan, plan_resize, remap_box, supersampling
from fsmde_ros.paths import ENGINE_CACHE_DIR

log = logging.getLogger(__name__)
GRAPH_VERSION = 7  # bump when the composed graph changes: cached graphs (and their engines) are then rebuilt
CAMERA_INPUT = "camera_images_{}"  # one input per camera, numbered in rig order
GRAPH_INPUTS = ("K", "T_base_cam", "T_cam_base", "depth_range", "max_std_ratio", "present", "claim")  # after those
GRAPH_OUTPUTS = ("depth", "depth_std", "images", "cloud_xyz", "cloud_rgb", "cloud_valid")
UNDISTORT_GRID = "undistort_grid"  # the undistorting variant's one more input (after GRAPH_INPUTS)
STUDENT = "student/"  # prefix of the student's tensor names inside the composed graph
FP32_LAYER_PREFIX = "deploy/"  # prefix of every node the graph adds: an FP16 engine keeps them FP32 (engine_build.py)


def graph_path(student: str | Path, in_w: int, in_h: int, stride: int, overlap: str,
               cache_dir: str | Path | None = None, undistort: bool = False) -> Path:
    """Where the composed graph for these constants lives in the cache (the key is in the name)."""
    digest = hashlib.sha256(Path(student).read_bytes()).hexdigest()[:16]
    directory = Path(cache_dir or ENGINE_CACHE_DIR).expanduser()
    variant = "-undistort" if undistort else ""
    return directory / f"{Path(student).stem}-{digest}-deploy{in_w}x{in_h}-s{stride}-{overlap}{variant}-v{GRAPH_VERSION}.onnx"


def deployment_graph(student: str | Path, in_w: int, in_h: int, stride: int = 4, overlap: str = "nearest_axis",
                     cache_dir: str | Path | None = None, undistort: bool = False) -> tuple[Path, bool]:
    """The composed graph's file for this input size (and variant), composed and cached on first use: (path, composed now)."""
    path = graph_path(student, in_w, in_h, stride, overlap, cache_dir, undistort)
    if path.is_file():
        try:
            onnx.load(str(path), load_external_data=False)
            return path, False
        except Exception:  # noqa: BLE001 - a half-written or corrupt cache entry is composed again
            log.warning("cached deployment graph %s is unreadable; composing it again", path)
    model = compose_deployment_graph(onnx.load(str(student)), in_w, in_h, stride, overlap, undistort)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return path, True


class _Builder:
    """Appends nodes with unique output names to one graph; every node, constant and tensor it names starts with
    FP32_LAYER_PREFIX (the student's keep STUDENT)."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, value, dtype=np.float32) -> str:
        self._n += 1
        name = f"{FP32_LAYER_PREFIX}c{self._n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        self._n += 1
        name = out or f"{FP32_LAYER_PREFIX}t{self._n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=f"{FP32_LAYER_PREFIX}n{self._n}", **attrs))
        return name

    def slice(self, x: str, starts, ends, axes, steps=None) -> str:
        args = [x, self.const(starts, np.int64), self.const(ends, np.int64), self.const(axes, np.int64)]
        if steps is not None:
            args.append(self.const(steps, np.int64))
        return self.op("Slice", *args)

    def pick(self, x: str, axis: int, index: int) -> str:
        """x[..., index, ...] along axis, keeping the axis (size 1)."""
        return self.slice(x, [index], [index + 1], [axis])


def compose_deployment_graph(student: onnx.ModelProto, in_w: int, in_h: int, stride: int = 4,
                             overlap: str = "nearest_axis", undistort: bool = False) -> onnx.ModelProto:
    """The student (I/O as model/contract.py) composed with resize, masking and cloud (see the module doc).
    undistort: the variant for distorted cameras: the whole image box-averaged with the remap's box, then sampled at
    `undistort_grid` [V,h,w,2] (an input: GridSample's normalised coordinates, `undistort_grid` below; supersampled
    where the host's remap is) instead of the crop and bilinear resize, as service/calibration.py does on the host."""
    V, h, w = _student_size(student, stride, overlap)
    plan = plan_resize(in_w, in_h, w, h)
    student = onnx.compose.add_prefix(student, STUDENT)
    b = _Builder()
    x = _resize(b, plan, V, undistort)          # float [V,h,w,3], rounded to 0..255
    _student_inputs(b, x, V)
    pre = len(b.nodes)  # the nodes before the student's; the rest come after it
    depth, bounds = _masked_depth(b, V)
    hs, ws = _cloud(b, depth, bounds, x, V, h, w, stride, overlap)
    graph = helper.make_graph(b.nodes[:pre] + list(student.graph.node) + b.nodes[pre:], "fsmde_deployment",
                              *_graph_io(V, in_w, in_h, h, w, hs, ws, undistort),
                              initializer=b.inits + list(student.graph.initializer))
    return _model(graph, student, in_w, in_h, stride, overlap, undistort)


def _student_size(student: onnx.ModelProto, stride: int, overlap: str) -> tuple[int, int, int]:
    """(V, h, w) of the student's `images` input; ValueError for a stride or overlap mode the graph cannot take."""
    if overlap not in OVERLAP_CHOICES:
        raise ValueError(f"overlap must be one of {OVERLAP_CHOICES}, got {overlap!r}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    dims = [d.dim_value for d in student.graph.input[[i.name for i in student.graph.input].index("images")]
            .type.tensor_type.shape.dim]
    return dims[0], dims[1], dims[2]


def _resize(b: _Builder, plan: ResizePlan, V: int, undistort: bool) -> str:
    """V x uint8 [H_in,W_in,3] -> float [V,h,w,3] (rounded, 0..255): the centre crop, box average and bilinear of
    geometry/resize.py, or (undistort) the remap's box over the whole image, then `undistort_grid`.
    The box average runs on the HWC layout (a 3-D pool over [V,1,H,W,3], the channel window 1), so the
    full-resolution pixels are never transposed; the rest works on the pooled images. (One pool over the
    stacked cameras: ONNX Runtime splits a pool over its N x C planes, so one camera at a time uses one core.)"""
    in_w, in_h, w, h = plan.in_w, plan.in_h, plan.out_w, plan.out_h
    pw, ph = plan.pooled
    # uint8 only where it enters and leaves (TensorRT takes uint8 at the network I/O and in casts only)
    cams = [b.op("Reshape", b.op("Cast", CAMERA_INPUT.format(i), to=TensorProto.FLOAT),
                 b.const([1, 1, in_h, in_w, 3], np.int64)) for i in range(V)]
    x = b.op("Concat", *cams, axis=0) if V > 1 else cams[0]
    kx, ky = remap_box(plan) if undistort else (plan.kx, plan.ky)
    if undistort:  # the whole image on the crop's grid of the remap's box (distortion reaches outside the crop)
        left, top = plan.x0 % kx, plan.y0 % ky
        pw, ph = (in_w - left) // kx, (in_h - top) // ky
        if (left, top, pw * kx, ph * ky) != (0, 0, in_w, in_h):
            x = b.slice(x, [top, left], [top + ph * ky, left + pw * kx], [2, 3])
    elif (plan.x0, plan.y0, pw * kx, ph * ky) != (0, 0, in_w, in_h):  # the centre crop, to whole boxes
        x = b.slice(x, [plan.y0, plan.x0], [plan.y0 + ph * ky, plan.x0 + pw * kx], [2, 3])
    if (kx, ky) != (1, 1):
        x = b.op("AveragePool", x, kernel_shape=[ky, kx, 1], strides=[ky, kx, 1])
    x = b.op("Transpose", b.op("Reshape", x, b.const([V, ph, pw, 3], np.int64)), perm=[0, 3, 1, 2])
    if undistort:
        x = _undistort(b, x, supersampling(plan), V, h, w)
    elif (pw, ph) != (w, h):
        x = b.op("Resize", x, "", "", b.const([V, 3, h, w], np.int64), mode="linear",
                 coordinate_transformation_mode="half_pixel")
    return b.op("Transpose", b.op("Clip", b.op("Round", x), b.const(0.0), b.const(255.0)), perm=[0, 2, 3, 1])


def _student_inputs(b: _Builder, x: str, V: int) -> None:
    """The student's inputs from the resized images x [V,h,w,3] (also the graph's `images` output) and fx of K."""
    images = b.op("Cast", x, to=TensorProto.UINT8, out="images")
    b.op("Identity", images, out=STUDENT + "images")
    fx = b.op("Reshape", b.slice("K", [0, 0], [1, 1], [1, 2]), b.const([V], np.int64))
    b.op("Identity", fx, out=STUDENT + "focal_px")


def _masked_depth(b: _Builder, V: int) -> tuple[str, tuple[str, str]]:
    """The graph's depth [V,h,w] [m]: -Inf / +Inf outside [min, max], NaN for absent cameras; and (min, max) [1]."""
    dmin, dmax = b.pick("depth_range", 0, 0), b.pick("depth_range", 0, 1)
    d = STUDENT + "depth"
    present = b.op("Reshape", "present", b.const([V, 1, 1], np.int64))
    nan = b.const(np.nan)
    # REP-117: -Inf nearer than min, +Inf farther than max, NaN invalid (a NaN stays NaN: both tests are false)
    bounded = b.op("Where", b.op("Less", d, dmin), b.const(-np.inf),
                   b.op("Where", b.op("Greater", d, dmax), b.const(np.inf), d))
    depth = b.op("Where", present, bounded, nan, out="depth")
    b.op("Identity", STUDENT + "depth_std", out="depth_std")
    return depth, (dmin, dmax)


def _cloud(b: _Builder, depth: str, bounds: tuple[str, str], x: str, V: int, h: int, w: int, s: int,
           overlap: str) -> tuple[int, int]:
    """cloud_xyz [V,h',w',3] in base_link [m], cloud_rgb [V,h',w',3] and cloud_valid [V,h',w'] on the stride-s grid
    (CloudFuser's points, fixed-size with a mask); returns (h', w')."""
    dmin, dmax = bounds
    ds = b.slice(depth, [0, 0], [h, w], [1, 2], [s, s])                 # [V,h',w']
    std_s = b.slice(STUDENT + "depth_std", [0, 0], [h, w], [1, 2], [s, s])
    hs, ws = len(range(0, h, s)), len(range(0, w, s))
    ratio = "max_std_ratio"
    keep = b.op("And", b.op("GreaterOrEqual", ds, dmin), b.op("LessOrEqual", ds, dmax))
    std_ok = b.op("Or", b.op("LessOrEqual", ratio, b.const([0.0])),
                  b.op("LessOrEqual", std_s, b.op("Mul", ds, ratio)))
    keep = b.op("And", keep, std_ok)
    xyz, cos_axis = _points(b, ds, V, hs, ws, s)
    b.op("Reshape", xyz, b.const([V, hs, ws, 3], np.int64), out="cloud_xyz")
    b.op("Cast", b.slice(x, [0, 0], [h, w], [1, 2], [s, s]), to=TensorProto.UINT8, out="cloud_rgb")
    if overlap == "nearest_axis":
        keep = b.op("And", keep, b.op("Not", _claimed(b, xyz, keep, cos_axis, V, hs, ws, h, w)))
    b.op("Identity", keep, out="cloud_valid")
    return hs, ws


def _points(b: _Builder, ds: str, V: int, hs: int, ws: int, s: int) -> tuple[str, str]:
    """The strided depth ds [V,h',w'] (h', w' = hs, ws: every s-th row and column) as points xyz [V,P,3] in base_link
    [m] (P = h' w'; rays from K, mounts from T_base_cam) and each ray's cosine to its optical axis [V,h',w']."""
    u = np.broadcast_to(np.arange(0, ws * s, s, dtype=np.float32)[None, :], (hs, ws))
    v = np.broadcast_to(np.arange(0, hs * s, s, dtype=np.float32)[:, None], (hs, ws))
    Kf = lambda r, c: b.slice("K", [r, c], [r + 1, c + 1], [1, 2])    # noqa: E731 - [V,1,1]
    rx = b.op("Div", b.op("Sub", b.const(u), Kf(0, 2)), Kf(0, 0))      # [V,h',w']
    ry = b.op("Div", b.op("Sub", b.const(v), Kf(1, 2)), Kf(1, 1))
    rays_cam = b.op("Concat", *[b.op("Unsqueeze", r, b.const([3], np.int64)) for r in (rx, ry)],
                    b.const(np.ones((V, hs, ws, 1))), axis=3)                 # [V,h',w',3], z = 1
    cos_axis = b.op("Reciprocal", b.op("Sqrt", b.op("ReduceSum", b.op("Mul", rays_cam, rays_cam),
                                                         b.const([3], np.int64), keepdims=0)))  # [V,h',w']
    R = b.slice("T_base_cam", [0, 0], [3, 3], [1, 2])                    # [V,3,3]
    t = b.slice("T_base_cam", [0, 3], [3, 4], [1, 2])                    # [V,3,1]
    P = hs * ws
    rays = b.op("MatMul", b.op("Reshape", rays_cam, b.const([V, P, 3], np.int64)),
                b.op("Transpose", R, perm=[0, 2, 1]))                    # [V,P,3] in base_link
    xyz = b.op("Add", b.op("Mul", rays, b.op("Reshape", ds, b.const([V, P, 1], np.int64))),
               b.op("Transpose", t, perm=[0, 2, 1]))                     # [V,P,3]
    return xyz, cos_axis


def _graph_io(V: int, in_w: int, in_h: int, h: int, w: int, hs: int, ws: int, undistort: bool
              ) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    """The graph's inputs and outputs, named by CAMERA_INPUT, GRAPH_INPUTS, UNDISTORT_GRID and GRAPH_OUTPUTS."""
    F, B, U8 = TensorProto.FLOAT, TensorProto.BOOL, TensorProto.UINT8
    inputs = {"K": (F, [V, 3, 3]), "T_base_cam": (F, [V, 4, 4]), "T_cam_base": (F, [V, 4, 4]), "depth_range": (F, [2]),
              "max_std_ratio": (F, [1]), "present": (B, [V]), "claim": (B, [V, V, hs, ws])}
    outputs = {"depth": (F, [V, h, w]), "depth_std": (F, [V, h, w]), "images": (U8, [V, h, w, 3]),
               "cloud_xyz": (F, [V, hs, ws, 3]), "cloud_rgb": (U8, [V, hs, ws, 3]), "cloud_valid": (B, [V, hs, ws])}
    value = helper.make_tensor_value_info
    return ([*[value(CAMERA_INPUT.format(i), U8, [in_h, in_w, 3]) for i in range(V)],
             *[value(name, *inputs[name]) for name in GRAPH_INPUTS],
             *([value(UNDISTORT_GRID, F, [V, h, w, 2])] if undistort else [])],
            [value(name, *outputs[name]) for name in GRAPH_OUTPUTS])


def _model(graph: onnx.GraphProto, student: onnx.ModelProto, in_w: int, in_h: int, stride: int, overlap: str,
           undistort: bool) -> onnx.ModelProto:
    """The composed graph as a checked model with the student's opsets and metadata, plus the deploy_* keys."""
    opsets = list(student.opset_import)
    if undistort:  # GridSample needs opset 16 ('bilinear' until 20)
        for o in opsets:
            if o.domain in ("", "ai.onnx") and o.version < 16:
                raise ValueError(f"the undistorting graph needs an opset >= 16 student (GridSample), this one has {o.version}")
    model = helper.make_model(graph, opset_imports=opsets, producer_name="fsmde_ros")
    model.ir_version = student.ir_version
    meta = {p.key: p.value for p in student.metadata_props}
    meta.update({"deploy_input": f"{in_w}x{in_h}", "deploy_stride": str(stride), "deploy_overlap": overlap,
                 "deploy_undistort": str(bool(undistort)).lower(), "deploy_version": str(GRAPH_VERSION)})
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    return model


def _claimed(b: _Builder, xyz: str, keep: str, cos_axis: str, V: int, hs: int, ws: int, h: int, w: int) -> str:
    """[V,h',w'] bool: camera i's points that a camera j with points of its own (claim[i, j] allowing) sees inside
    its image nearer its optical axis (CloudFuser's nearest_axis handover, every pair at once)."""
    P = hs * ws
    Rcb = b.slice("T_cam_base", [0, 0], [3, 3], [1, 2])                           # [V,3,3]
    tcb = b.op("Reshape", b.slice("T_cam_base", [0, 3], [3, 4], [1, 2]), b.const([1, V, 1, 3], np.int64))
    p = b.op("Add", b.op("MatMul", b.op("Reshape", xyz, b.const([V, 1, P, 3], np.int64)),
                         b.op("Reshape", b.op("Transpose", Rcb, perm=[0, 2, 1]), b.const([1, V, 3, 3], np.int64))),
             tcb)                                                                 # [V(i),V(j),P,3] in camera j
    px, py, z = (b.op("Squeeze", b.pick(p, 3, k), b.const([3], np.int64)) for k in range(3))  # [V,V,P]
    Kj = lambda r, c: b.op("Reshape", b.slice("K", [r, c], [r + 1, c + 1], [1, 2]),  # noqa: E731
                           b.const([1, V, 1], np.int64))
    zs = b.op("Where", b.op("Greater", z, b.const(0.0)), z, b.const(np.nan))
    uj = b.op("Add", b.op("Div", b.op("Mul", Kj(0, 0), px), zs), Kj(0, 2))
    vj = b.op("Add", b.op("Div", b.op("Mul", Kj(1, 1), py), zs), Kj(1, 2))
    inside = [b.op("GreaterOrEqual", uj, b.const(-0.5)), b.op("Less", uj, b.const(w - 0.5)),
              b.op("GreaterOrEqual", vj, b.const(-0.5)), b.op("Less", vj, b.const(h - 0.5))]
    seen = b.op("And", b.op("And", inside[0], inside[1]), b.op("And", inside[2], inside[3]))
    cos = b.op("Div", z, b.op("Sqrt", b.op("ReduceSum", b.op("Mul", p, p), b.const([3], np.int64), keepdims=0)))
    nearer = b.op("Greater", cos, b.op("Reshape", cos_axis, b.const([V, 1, P], np.int64)))
    any_axis = lambda t, axis, keep: b.op("Greater", b.op("ReduceSum", b.op("Cast", t, to=TensorProto.FLOAT),  # noqa: E731
                                                           b.const([axis], np.int64), keepdims=keep), b.const(0.0))
    has_points = any_axis(b.op("Reshape", keep, b.const([V, P], np.int64)), 1, 1)  # [V,1]: camera j has points
    has_points = b.op("Reshape", has_points, b.const([1, V, 1], np.int64))
    claim = b.op("Reshape", "claim", b.const([V, V, P], np.int64))
    by_j = b.op("And", b.op("And", claim, has_points), b.op("And", seen, nearer))  # [V,V,P]
    any_j = any_axis(by_j, 1, 0)                                                  # [V,P]
    return b.op("Reshape", any_j, b.const([V, hs, ws], np.int64))


def _undistort(b: _Builder, x: str, m: int, V: int, h: int, w: int) -> str:
    """Sample the box-averaged images x [V,3,ph,pw] at `undistort_grid` [V,h,w,2]; with m = 2 (the remap would shrink
    by 1.5x or more), at the four quarter-pixel offsets of each output pixel, averaged: the host's supersampled remap
    (service/calibration.py) from a grid of the output's size (offsets from the grid's own finite differences)."""
    def sample(grid: str) -> str:
        return b.op("GridSample", x, grid, mode="bilinear", padding_mode="zeros", align_corners=0)

    if m == 1:
        return sample(UNDISTORT_GRID)
    g = UNDISTORT_GRID
    # d/du and d/dv of the grid, one-sided at the last column / row (the map is smooth)
    du = b.op("Sub", b.slice(g, [1], [w], [2]), b.slice(g, [0], [w - 1], [2]))
    du = b.op("Concat", du, b.slice(du, [w - 2], [w - 1], [2]), axis=2)
    dv = b.op("Sub", b.slice(g, [1], [h], [1]), b.slice(g, [0], [h - 1], [1]))
    dv = b.op("Concat", dv, b.slice(dv, [h - 2], [h - 1], [1]), axis=1)
    taps = []
    for su in (-0.25, 0.25):
        for sv in (-0.25, 0.25):
            taps.append(sample(b.op("Add", g, b.op("Add", b.op("Mul", du, b.const(su)), b.op("Mul", dv, b.const(sv))))))
    return b.op("Mul", b.op("Sum", *taps), b.const(0.25))


def undistort_grid(K: np.ndarray, D: np.ndarray, model: str, in_w: int, in_h: int, out_w: int, out_h: int) -> np.ndarray:
    """GridSample's `undistort_grid` [out_h,out_w,2] float32 for one camera of the undistorting graph: where each output
    pixel of the undistorted model-size pinhole (K_out = plan.intrinsics(K)) samples the plan's box-averaged whole
    image, in normalised coordinates (align_corners=0: -1 and 1 are the outer pixel edges). D all zero gives the
    pinhole camera's plain crop and resize (a pinhole beside distorted cameras in one set)."""
    import cv2

    plan = plan_resize(in_w, in_h, out_w, out_h)
    K_out = plan.intrinsics(K)
    D = np.asarray(D, dtype=np.float64)
    if model == "equidistant":
        mx, my = cv2.fisheye.initUndistortRectifyMap(K, D, np.eye(3), K_out, (out_w, out_h), cv2.CV_32FC1)
    else:
        mx, my = cv2.initUndistortRectifyMap(K, D, None, K_out, (out_w, out_h), cv2.CV_32FC1)
    kx, ky = remap_box(plan)
    left, top = plan.x0 % kx, plan.y0 % ky
    pw, ph = (in_w - left) // kx, (in_h - top) // ky
    px = (mx + 0.5 - left) / kx  # pooled pixel-edge coordinates
    py = (my + 0.5 - top) / ky
    return np.stack([2 * px / pw - 1, 2 * py / ph - 1], axis=-1).astype(np.float32)
