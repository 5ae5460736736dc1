"""The surround_depth node's parameters: one typed table, the single source of truth.

The node declares each with a ParameterDescriptor built from this table, `config/surround_depth.yaml`
holds the same defaults, and the README's parameter table is generated from it (a test checks
all three agree). ROS-free: values are validated here so that a bad configuration fails fast
with the valid choices listed.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from fsmde_ros.errors import ConfigError
from fsmde_ros.geometry.cloud import DEFAULT_MAX_DEPTH_M, OVERLAP_CHOICES
from fsmde_ros.paths import ENGINE_CACHE_DIR
from fsmde_ros.runtime import BACKENDS
from fsmde_ros.runtime.engine_cache import PRECISIONS

NODE_NAME = "surround_depth"
OUTPUT_NAMESPACE = "/" + NODE_NAME  # the node's ~/ topics: ~/<camera>/depth, ~/points, ...

RELIABILITY_CHOICES = ("best_effort", "reliable")


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One node parameter: name, default (its type is the parameter's type), description, constraints."""

    name: str
    default: Any
    description: str
    choices: Sequence[str] | None = None
    min: float | None = None
    max: float | None = None
    read_only: bool = True  # structural ones (rig, model, backend, queues) are fixed at start; the output ones are not


    @property
    def type_name(self) -> str:
        return {bool: "bool", int: "int", float: "double", str: "string"}[type(self.default)]

    def constraint_text(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.min is not None and self.max is not None:
            return f"[{self.min:g}, {self.max:g}]"
        if self.min is not None:
            return f">= {self.min:g}"
        return ""

    def validate(self, value: Any) -> Any:
        """Return value as this parameter's type (an integer for a double is taken as that double), or raise
        ConfigError naming the parameter, the value and what is valid."""
        kind = type(self.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        valid = self.type_name + (f" in {self.constraint_text()}" if self.min is not None else "")
        if type(value) is not kind:
            article = "an" if valid[0] in "aeiou" else "a"
            raise ConfigError(f"parameter {self.name} must be {article} {valid}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ConfigError(f"parameter {self.name} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.min is not None and value < self.min or self.max is not None and value > self.max:
            raise ConfigError(f"parameter {self.name} must be in {self.constraint_text()}, got {value!r}")
        return value


NODE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("rig", "ddad", "camera rig preset (ddad, nuscenes) or path to a rig YAML; gives topics, frames, "
              "intrinsics (used when no CameraInfo arrives) and mounts"),
    ParamSpec("model", "", "exported student (.onnx; a .pt checkpoint with backend torch); empty = the bundled "
              "default in share/fsmde_ros/models (its INT8 twin with precision int8)"),
    ParamSpec("backend", "auto", "inference backend; auto tries tensorrt, then onnxruntime with TensorRT/CUDA, "
              "then the CPU, and logs why each was skipped", choices=BACKENDS),
    ParamSpec("precision", "fp16", "inference precision: fp16 / fp32 TensorRT engines; int8 runs an INT8 (QDQ) "
              "student from `fsmde quantize` (TensorRT INT8 engine, or ONNX Runtime's int8 kernels on a CPU)",
              choices=PRECISIONS),
    ParamSpec("engine_cache_dir", ENGINE_CACHE_DIR, "cache of TensorRT engines (keyed by ONNX hash, GPU, "
              "TensorRT version and precision; built only when missing or stale) and of the deployment graphs "
              "composed per input size"),
    ParamSpec("compressed", False, "subscribe to sensor_msgs/CompressedImage on <image_topic>/compressed"),
    ParamSpec("rectified", False, "the image topics carry rectified images (image_rect): intrinsics from CameraInfo "
              "P and D ignored; false: a CameraInfo with non-zero D (plumb_bob, rational_polynomial, equidistant) is "
              "undistorted in the resize, one with all-zero D read from P"),
    ParamSpec("slop", 0.06, "[s] largest stamp spread within one surround set (nuScenes cameras fire up to "
              "~50 ms apart; DDAD's are hardware-synchronised)", min=0.0, max=1.0),
    ParamSpec("queue_size", 5, "messages queued per camera while waiting for a set", min=1, max=100),
    ParamSpec("camera_timeout", 1.0, "[s] a camera silent for this long is reported in /diagnostics",
              min=0.05, max=60.0),
    ParamSpec("allow_partial", False, "after camera_timeout, run with the cameras that still publish "
              "(the silent camera's outputs are not published) instead of waiting"),
    ParamSpec("min_depth", 0.5, "[m] depth below this is published as -Inf (REP-117) and left out of the cloud",
              min=0.0, max=1000.0, read_only=False),
    ParamSpec("max_depth", DEFAULT_MAX_DEPTH_M, "[m] depth beyond this is published as +Inf (REP-117) and left out of the cloud",
              min=0.1, max=1000.0, read_only=False),
    ParamSpec("cloud_stride", 4, "[px] keep every n-th pixel in both axes in ~/points", min=1, max=64, read_only=False),
    ParamSpec("cloud_overlap", "nearest_axis", "where two cameras see the same point, nearest_axis keeps it only "
              "from the camera that sees it closer to its optical axis (no doubled surfaces at the seams); all keeps both",
              choices=OVERLAP_CHOICES, read_only=False),
    ParamSpec("deployment_graph", "auto", "run resize, student, depth masking and the cloud as one graph composed for "
              "the cameras' own size (cached in engine_cache_dir): auto = on a GPU backend, always, never = resize and "
              "fuse on the host (faster than the graph on a 2-core CPU at 1936x1216)", choices=("auto", "always", "never")),
    ParamSpec("max_depth_std_ratio", 0.0, "drop cloud points whose depth_std / depth exceeds this "
              "(0 = keep all)", min=0.0, max=10.0, read_only=False),
    ParamSpec("publish_cloud", True, "publish the fused ~/points cloud in base_link", read_only=False),
    ParamSpec("publish_depth", True, "publish ~/<camera>/depth (32FC1, metres) and ~/<camera>/camera_info", read_only=False),
    ParamSpec("publish_std", True, "publish ~/<camera>/depth_std (32FC1, metres): the model's own uncertainty", read_only=False),
    ParamSpec("publish_rig_tf", False, "publish the rig's camera mounts on /tf_static (where tf2_msgs is available): "
              "on only where nothing else does (a bag without /tf_static, a bench rig); a vehicle's own TF tree "
              "(robot_state_publisher) already has them, and two publishers of one transform fight"),
    ParamSpec("qos_reliability", RELIABILITY_CHOICES[0], "reliability of the image subscriptions (sensor data QoS: "
              "best_effort, keep last)", choices=RELIABILITY_CHOICES),
    ParamSpec("threads", 0, "ONNX Runtime CPU threads (0 = all cores)", min=0, max=256),
)
PARAMS_BY_NAME = {p.name: p for p in NODE_PARAMS}


# The node's parameters that shape `fsmde process` (the rest are about live topics, QoS and TF).
PROCESS_PARAMS = ("model", "backend", "precision", "engine_cache_dir", "threads", "slop", "queue_size",
                  "camera_timeout", "allow_partial", "min_depth", "max_depth", "cloud_stride", "cloud_overlap", "deployment_graph",
                  "max_depth_std_ratio", "publish_depth", "publish_std", "publish_cloud")


def closest_parameter(name: str) -> str | None:
    """The known parameter a misspelt `name` most likely meant (None when nothing is close)."""
    import difflib

    match = difflib.get_close_matches(name, PARAMS_BY_NAME, n=1, cutoff=0.6)
    return match[0] if match else None


def validate_params(values: dict[str, Any]) -> dict[str, Any]:
    """Every parameter validated, defaults filled in; unknown names and cross-field conflicts raise."""
    unknown = set(values) - set(PARAMS_BY_NAME)
    if unknown:
        raise ConfigError(f"unknown parameters {sorted(unknown)}; valid: {', '.join(PARAMS_BY_NAME)}")
    out = {p.name: p.validate(values.get(p.name, p.default)) for p in NODE_PARAMS}
    if out["min_depth"] >= out["max_depth"]:
        raise ConfigError(f"min_depth ({out['min_depth']}) must be below max_depth ({out['max_depth']})")
    return out


def markdown_table() -> str:
    """The README's parameter table, generated so that it cannot drift from the code."""
    rows = ["| parameter | type | default | range / choices | run time | description |", "|---|---|---|---|---|---|"]
    for p in NODE_PARAMS:
        default = f'"{p.default}"' if isinstance(p.default, str) else str(p.default).lower() \
            if isinstance(p.default, bool) else f"{p.default}"
        live = "read-only" if p.read_only else "`ros2 param set`"
        rows.append(f"| `{p.name}` | {p.type_name} | `{default}` | {p.constraint_text()} | {live} | {p.description} |")
    return "\n".join(rows)
