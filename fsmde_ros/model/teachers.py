"""Teacher adapters (training only): relative depth from a foundation model behind one interface.

A teacher maps images [B,V,3,H,W] float RGB in [0,1] (the student's input) to a `TeacherOutput`:
`relative` [B,V,H,W] float32, disparity-like (larger = nearer, unknown scale and shift) at the
input resolution, and optionally intermediate `features` [B,V,C,h,w]. Teachers run under
`torch.no_grad()`; their outputs are targets, never trained.

- `DepthAnythingTeacher`: Depth Anything V2 through `transformers` (local dir or hub id).
- `OnnxRelativeTeacher`: any ONNX relative-depth model, run with ONNX Runtime.
- `SyntheticTeacher`: the synthetic world's simulated teacher (it reads `batch["teacher"]`).

How they are used (one call for all kinds): `teacher_output(batch, teacher)` runs an online
teacher on `batch["images"]` when one is given (`fsmde teach` does, to fill a teacher cache), and
otherwise returns `batch["teacher"]` (and `batch["teacher_features"]`): the synthetic world's, or
a precomputed cache's, which the trainer packs into its training cache
(`fsmde_ros.distill.teach.TeacherCache.attach`).
Nothing here downloads anything unless the user passes a Hugging Face hub id.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from fsmde_ros.errors import ConfigError, MissingFileError
from fsmde_ros.model.config import IMAGENET_MEAN, IMAGENET_STD  # what DINOv2 / Depth Anything were trained with

logger = logging.getLogger(__name__)

PATCH_SIZE = 14  # DINOv2 ViT/14: the network input must be a multiple of 14 px on both sides
MIN_DEPTH_FOR_DISPARITY_M = 1e-3  # metric DA checkpoints output depth; disparity = 1 / max(depth, this)
# Which intermediate features DepthAnythingTeacher returns (DPT neck, fused coarse-to-fine, or the ViT):
#   fusion_{1,2,4,8}x: output of DPT fusion stage at 1/2/4/8 x the patch grid (stride 14/7/3.5/1.75 px),
#                      fusion_hidden_size channels (64 for Small); fusion_8x is the depth head's input;
#   backbone:          the last ViT stage (layer-normed tokens) on the patch grid, hidden_size channels.
FEATURE_LAYERS = {"fusion_1x": 0, "fusion_2x": 1, "fusion_4x": 2, "fusion_8x": 3, "backbone": None}
DEFAULT_FEATURE_LAYER = "fusion_4x"  # stride 3.5 px ~ the student's stride-4 decoder features
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # "org/name" (or a bare legacy name)
SPEC_FORMS = "'synthetic', 'depth_anything:<local model dir or hub id>', 'onnx:<path to .onnx>'"


@dataclass
class TeacherOutput:
    """relative [B,V,H,W] float32 disparity-like (larger = nearer); features [B,V,C,h,w] or None."""
    relative: torch.Tensor
    features: torch.Tensor | None = None


@runtime_checkable
class RelativeDepthTeacher(Protocol):
    name: str

    def __call__(self, images: torch.Tensor) -> TeacherOutput: ...


def as_float_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """images float [B,V,3,H,W] in [0,1] (returned as is) or uint8 [B,V,H,W,3] RGB -> float [B,V,3,H,W]."""
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8 and x.ndim == 5 and x.shape[-1] == 3:
        return x.permute(0, 1, 4, 2, 3).float() / 255.0
    if x.ndim != 5 or x.shape[2] != 3 or not x.is_floating_point():
        raise ConfigError(f"images must be float [B,V,3,H,W] in [0,1] (or uint8 [B,V,H,W,3]), "
                         f"got {x.dtype} {tuple(x.shape)}")
    return x


def network_size(height: int, width: int, input_size: int | None, multiple: int) -> tuple[int, int]:
    """(h, w) the network sees: the input (short side scaled to input_size if given), each a multiple of `multiple`."""
    scale = 1.0 if input_size is None else input_size / min(height, width)
    return tuple(max(multiple, int(round(s * scale / multiple)) * multiple) for s in (height, width))


def resize_images(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """x [N,3,h,w] in [0,1] -> [N,3,*size]: bicubic, antialiased when shrinking (as DA-V2's own cubic resize)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=shrink).clamp(0.0, 1.0)


def resize_maps(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """x [N,h,w] -> [N,*size] float32, bilinear (teacher outputs back to the input resolution)."""
    x = x.float()
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


class _ResizeNotice:
    """Logs once per (input size, network size) pair that the teacher resizes in and out."""

    def _note_resize(self, src: tuple[int, int], dst: tuple[int, int]) -> None:
        seen = self.__dict__.setdefault("_resizes_logged", set())
        if src != dst and (src, dst) not in seen:
            seen.add((src, dst))
            logger.info("%s teacher: resizing input %dx%d -> %dx%d for the network; relative depth "
                        "(and only it) is resized back to %dx%d", self.name, *src, *dst, *src)


def tiny_depth_anything_config():
    """A very small Depth Anything (4-layer 32-d Dinov2 /14 + DPT head) for tests: random weights, ~0.1 M params."""
    from transformers import DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(image_size=98, patch_size=PATCH_SIZE, hidden_size=32, num_hidden_layers=4,
                            num_attention_heads=2, mlp_ratio=2, apply_layernorm=True, reshape_hidden_states=False,
                            out_features=["stage1", "stage2", "stage3", "stage4"])
    return DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                               fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type="relative")


def depth_anything_v2_small_config():
    """Depth Anything V2 Small (DINOv2 ViT-S/14 + DPT head, 24.8 M params): the real architecture's config."""
    from transformers import DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(image_size=518, patch_size=PATCH_SIZE, hidden_size=384, num_hidden_layers=12,
                            num_attention_heads=6, mlp_ratio=4, apply_layernorm=True, reshape_hidden_states=False,
                            out_features=["stage3", "stage6", "stage9", "stage12"])
    return DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384,
                               neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64, head_hidden_size=32,
                               depth_estimation_type="relative")


def load_depth_anything(path_or_hub_id: str | Path):
    """DepthAnythingForDepthEstimation from an existing local dir (never touches the network) or a hub id.

    A hub id ("depth-anything/Depth-Anything-V2-Small-hf") goes through the Hugging Face cache and
    downloads when not cached (set HF_HUB_OFFLINE=1 to forbid that); a path-like argument that does
    not exist is an error, not a hub lookup.
    """
    from transformers import DepthAnythingForDepthEstimation

    src = str(path_or_hub_id)
    path = Path(src).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise MissingFileError(f"Depth Anything model dir {path} has no config.json (expected a "
                                    f"transformers save_pretrained() directory)")
        return DepthAnythingForDepthEstimation.from_pretrained(str(path), local_files_only=True)
    if not HUB_ID.match(src) or src.endswith((".pt", ".pth", ".bin", ".safetensors", ".onnx")):
        raise MissingFileError(f"Depth Anything model {src} not found (neither an existing local dir nor a "
                                f"hub id like 'depth-anything/Depth-Anything-V2-Small-hf')")
    logger.info("loading Depth Anything %r from the Hugging Face hub/cache (downloads if not cached; "
                "HF_HUB_OFFLINE=1 forbids it)", src)
    try:
        return DepthAnythingForDepthEstimation.from_pretrained(src)
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MissingFileError(f"could not load Depth Anything {src!r} as a hub id (no network, or not in the "
                               f"Hugging Face cache?); pass a local save_pretrained() directory instead ({first})") from None


class DepthAnythingTeacher(_ResizeNotice):
    """Depth Anything V2 (relative) as a teacher: images [B,V,3,H,W] in [0,1] -> TeacherOutput.

    Inputs are resized to multiples of 14 (input_size: the short side; None: the input's own size,
    rounded), ImageNet-normalised, run in chunks of `chunk_size` images, and the relative output is
    resized back to H x W. Features (see FEATURE_LAYERS; None to skip) stay at the network's grid.
    """

    name = "depth_anything"

    def __init__(self, path_or_hub_id: str | Path, device: str | torch.device = "cpu", input_size: int | None = None,
                 feature_layer: str | None = DEFAULT_FEATURE_LAYER, chunk_size: int | None = None,
                 dtype: torch.dtype = torch.float32):
        local = Path(path_or_hub_id).expanduser()
        source = local.resolve() if local.exists() else path_or_hub_id  # spec: absolute path, or the hub id
        self._setup(load_depth_anything(path_or_hub_id), f"depth_anything:{source}", device, input_size,
                    feature_layer, chunk_size, dtype)

    @classmethod
    def from_config(cls, config=None, device: str | torch.device = "cpu", **kwargs) -> DepthAnythingTeacher:
        """A teacher with random weights from a DepthAnythingConfig (default: the tiny test config)."""
        from transformers import DepthAnythingForDepthEstimation

        self = cls.__new__(cls)
        model = DepthAnythingForDepthEstimation(config if config is not None else tiny_depth_anything_config())
        self._setup(model, "depth_anything:random", device, **kwargs)
        return self

    def _setup(self, model, spec: str, device, input_size: int | None = None,
               feature_layer: str | None = DEFAULT_FEATURE_LAYER, chunk_size: int | None = None,
               dtype: torch.dtype = torch.float32) -> None:
        if feature_layer is not None and feature_layer not in FEATURE_LAYERS:
            raise ConfigError(f"feature_layer must be one of {', '.join(FEATURE_LAYERS)} or None, got {feature_layer!r}")
        if input_size is not None and input_size < PATCH_SIZE:
            raise ConfigError(f"input_size must be >= {PATCH_SIZE} px (short side), got {input_size}")
        self.spec, self.device, self.dtype = spec, torch.device(device), dtype
        self.input_size, self.feature_layer, self.chunk_size = input_size, feature_layer, chunk_size
        self.model = model.eval().requires_grad_(False).to(self.device, dtype)
        self.patch_size = int(getattr(model.config, "patch_size", PATCH_SIZE))
        self.metric = getattr(model.config, "depth_estimation_type", "relative") == "metric"
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device, dtype=dtype).reshape(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device, dtype=dtype).reshape(1, 3, 1, 1)
        self._taps: dict[str, Any] = {}
        if feature_layer == "backbone":
            self.model.backbone.register_forward_hook(lambda m, i, o: self._taps.__setitem__("backbone", o.feature_maps))
        elif feature_layer is not None:
            self.model.neck.register_forward_hook(lambda m, i, o: self._taps.__setitem__("neck", o))

    def _features(self, patch_h: int, patch_w: int) -> torch.Tensor:
        """The tapped features of the last forward, [n,C,h,w]."""
        if self.feature_layer == "backbone":
            tokens = self._taps["backbone"][-1]
            if tokens.ndim == 4:  # reshape_hidden_states=True: already [n,C,h,w]
                return tokens
            tokens = tokens[:, -patch_h * patch_w:]  # drop the CLS (and any register) tokens
            return tokens.transpose(1, 2).reshape(len(tokens), -1, patch_h, patch_w)
        return self._taps["neck"][FEATURE_LAYERS[self.feature_layer]]

    def __call__(self, images: torch.Tensor) -> TeacherOutput:
        """images float [B,V,3,H,W] in [0,1] -> relative [B,V,H,W] float32, features [B,V,C,h,w] float32 or None."""
        x = as_float_images(images)
        b, v, _, h, w = x.shape
        size = network_size(h, w, self.input_size, self.patch_size)
        self._note_resize((h, w), size)
        x = x.flatten(0, 1)
        relative, features = [], []
        with torch.no_grad():
            for chunk in x.split(self.chunk_size or len(x)):
                chunk = resize_images(chunk.to(self.device).float(), size).to(self.dtype)  # resize in fp32
                self._taps.clear()
                pred = self.model(pixel_values=(chunk - self.mean) / self.std).predicted_depth  # [n,h',w']
                if self.metric:
                    pred = 1.0 / pred.float().clamp_min(MIN_DEPTH_FOR_DISPARITY_M)
                relative.append(resize_maps(pred, (h, w)).to(x.device))
                if self.feature_layer is not None:
                    feats = self._features(size[0] // self.patch_size, size[1] // self.patch_size)
                    features.append(feats.float().to(x.device))
        rel = torch.cat(relative).reshape(b, v, h, w)
        feats = torch.cat(features).reshape(b, v, *features[0].shape[1:]) if features else None
        return TeacherOutput(relative=rel, features=feats)


class OnnxRelativeTeacher(_ResizeNotice):
    """Any ONNX relative-depth model: one float input [N,3,H,W] (mean/std-normalised RGB), output [N,H',W'] or [N,1,H',W'].

    A static input size in the graph is used as is (input_size ignored); with dynamic H, W the
    input is resized like DepthAnythingTeacher (short side input_size, multiples of `multiple_of`).
    A static batch size is respected (chunks, zero-padded). Outputs are disparity-like. Features: None.
    """

    name = "onnx"

    def __init__(self, path: str | Path, input_size: int | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, output: str = "auto", multiple_of: int = PATCH_SIZE,
                 providers: Sequence[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path).expanduser()
        self.spec = f"onnx:{self.path.resolve()}"
        if not self.path.is_file():
            raise MissingFileError(f"ONNX teacher model {self.path} not found")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        providers = list(providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available])
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as e:  # InvalidProtobuf, Fail, ...: all mean "this file is not a usable model"
            raise ConfigError(f"cannot load ONNX teacher {self.path}: not a valid ONNX model ({e})") from e
        inputs = self.session.get_inputs()
        shapes = [(i.name, i.shape, i.type) for i in inputs]
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
            raise ConfigError(f"ONNX teacher {self.path}: expected one image input [N,3,H,W] (NCHW RGB), got {shapes}")
        if inputs[0].type not in ("tensor(float)", "tensor(float16)"):
            raise ConfigError(f"ONNX teacher {self.path}: image input must be float or float16 (normalised RGB), "
                             f"got {shapes}")
        self.input = inputs[0]
        self.input_dtype = np.float16 if self.input.type == "tensor(float16)" else np.float32
        n, _, gh, gw = self.input.shape
        self.static_batch = n if isinstance(n, int) and n > 0 else None
        self.static_size = (gh, gw) if isinstance(gh, int) and isinstance(gw, int) else None
        if self.static_size is not None and input_size is not None:
            logger.warning("ONNX teacher %s has a static input %dx%d: input_size=%d ignored", self.path, gh, gw,
                           input_size)
        self.input_size, self.multiple_of = input_size, multiple_of
        self.mean = torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1)
        self.output = self._pick_output(output)

    def _pick_output(self, output: str) -> str:
        outs = self.session.get_outputs()
        listing = [(o.name, o.shape) for o in outs]
        if output != "auto":
            if output not in [o.name for o in outs]:
                raise ConfigError(f"ONNX teacher {self.path} has no output {output!r}; outputs: {listing}")
            return output
        depth_like = [o for o in outs if len(o.shape) == 3 or (len(o.shape) == 4 and o.shape[1] == 1)]
        if not depth_like:
            raise ConfigError(f"ONNX teacher {self.path}: no output of shape [N,H,W] or [N,1,H,W]; outputs: {listing}")
        return depth_like[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        """x [n,3,h,w] normalised -> [n,h',w'] float32."""
        n = len(x)
        if self.static_batch is not None and n != self.static_batch:
            x = np.concatenate([x, np.zeros((self.static_batch - n, *x.shape[1:]), x.dtype)])
        (y,) = self.session.run([self.output], {self.input.name: x.astype(self.input_dtype)})
        y = np.asarray(y, dtype=np.float32)[:n]
        if y.ndim == 4 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 3:
            raise ConfigError(f"ONNX teacher {self.path}: output {self.output!r} has shape {y.shape}, "
                             f"expected [N,H,W] or [N,1,H,W]")
        return y

    def __call__(self, images: torch.Tensor) -> TeacherOutput:
        """images float [B,V,3,H,W] in [0,1] -> relative [B,V,H,W] float32 (features None)."""
        x = as_float_images(images)
        b, v, _, h, w = x.shape
        size = self.static_size or network_size(h, w, self.input_size, self.multiple_of)
        self._note_resize((h, w), size)
        x = (resize_images(x.flatten(0, 1).detach().float().cpu(), size) - self.mean) / self.std
        chunks = x.numpy().astype(np.float32)
        step = self.static_batch or len(chunks)
        out = [resize_maps(torch.from_numpy(self._run(chunks[i:i + step])), (h, w)) for i in range(0, len(chunks), step)]
        return TeacherOutput(relative=torch.cat(out).reshape(b, v, h, w).to(x.device), features=None)


class SyntheticTeacher:
    """The synthetic world's simulated teacher: it never sees images; its prediction is each item's `teacher`
    (and `teacher_features`).

    Design: the trainer calls `teacher_output(batch, teacher)`, which for this teacher (or no
    teacher) returns `from_batch(batch["teacher"])`; calling it on images is an error that says so.
    """

    name = "synthetic"
    spec = "synthetic"

    def from_batch(self, teacher: torch.Tensor | np.ndarray,
                   features: torch.Tensor | np.ndarray | None = None) -> TeacherOutput:
        """teacher [B,V,H,W] (relative inverse depth, unknown scale/shift), features [B,V,C,h,w] or None -> TeacherOutput."""
        rel = torch.as_tensor(teacher)
        if rel.ndim != 4:
            raise ValueError(f"batch['teacher'] must be [B,V,H,W], got {tuple(rel.shape)}")
        feats = None if features is None else torch.as_tensor(features).float()
        if feats is not None and (feats.ndim != 5 or feats.shape[:2] != rel.shape[:2]):
            raise ValueError(f"batch['teacher_features'] must be [B,V,C,h,w] with B,V = {tuple(rel.shape[:2])}, "
                             f"got {tuple(feats.shape)}")
        return TeacherOutput(relative=rel.float(), features=feats)

    def __call__(self, images: torch.Tensor) -> TeacherOutput:
        raise TypeError("the synthetic teacher does not see images: its predictions are the dataset's "
                        "item['teacher']; use teacher_output(batch, teacher) or SyntheticTeacher().from_batch(...)")


def teacher_output(batch: Mapping[str, Any], teacher: RelativeDepthTeacher | None = None) -> TeacherOutput:
    """The teacher's prediction for a batch: `teacher(batch["images"])` for an online teacher, else batch["teacher"].

    batch["teacher"] [B,V,H,W] comes from the synthetic world or a precomputed cache
    (`TeacherCache.attach`, which adds batch["teacher_features"] [B,V,C,h,w] when cached).
    """
    if teacher is not None and not isinstance(teacher, SyntheticTeacher):
        return teacher(batch["images"])
    if "teacher" not in batch:
        raise KeyError("no teacher: the batch has no 'teacher' (only the synthetic world and items given a cached "
                       "teacher by TeacherCache.attach have one) and no online teacher was given (create_teacher(spec))")
    return SyntheticTeacher().from_batch(batch["teacher"], batch.get("teacher_features"))


def create_teacher(spec: str, device: str | torch.device = "cpu", **kwargs) -> RelativeDepthTeacher:
    """Teacher from a spec: 'synthetic', 'depth_anything:<local dir or hub id>' or 'onnx:<path>'.

    device applies to Depth Anything (ONNX Runtime takes CUDA when its provider is installed);
    kwargs go to the teacher's constructor (input_size, feature_layer, ...).
    """
    kind, sep, arg = str(spec).strip().partition(":")
    arg = arg.strip()
    if kind == "synthetic" and not sep:
        return SyntheticTeacher()
    if kind == "depth_anything" and arg:
        return DepthAnythingTeacher(arg, device=device, **kwargs)
    if kind == "onnx" and arg:
        return OnnxRelativeTeacher(arg, **kwargs)
    raise ConfigError(f"unknown teacher spec {spec!r}; valid forms: {SPEC_FORMS}")
