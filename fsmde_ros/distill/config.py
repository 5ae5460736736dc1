"""The two configs of `fsmde distill`: DistillConfig, the weight and temperature of every loss term
(docs/method.md; weight 0 switches a term off, it is not computed; the ablation's rows are presets of
it), and TrainConfig, everything else a training run needs (data, schedule, loader, evaluation).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from fsmde_ros.errors import ConfigError, MissingFileError, dataclass_from_dict
from fsmde_ros.paths import DATASET_CACHE_DIR

CHAMFER_SPACES = ("log", "metric")
CHAMFER_DIRECTIONS = ("both", "gt_to_centres")
WEIGHTS = ("w_silog", "w_bins", "w_bin_nll", "w_sigma_nll", "w_ci_kl", "w_ci_depth", "w_vr_feat")
# The terms that need GT: skipped (not computed) on a batch without any, e.g. of a teacher-only dataset.
GT_TERMS = ("silog", "bins", "bin_nll", "sigma_nll", "ci_depth")


@dataclasses.dataclass
class DistillConfig:
    """Weights and temperatures of the distillation losses (`distillation_loss`).

    The paper's values are not public. SILog lambda 0.85 and its factor 10 (BTS/AdaBins). w_bins: the
    AdaBins Chamfer between each view's centres and its GT; 0 since the centres lie on a fixed relative
    grid (model/bins.py): it has no bin placement left to teach, and its centres-to-GT half pulls the
    view's scale towards the middle of its returns. w_bin_nll: the GT's likelihood under the bin
    distribution, in nats per lidar cell (a proper scoring rule for p). w_sigma_nll: the GT's Laplace
    likelihood under the uncertainty branch, the depth detached (the only term that trains depth_std).
    CI KD: KL in nats per informative cell without GT (cells with GT weighted by ci_kl_at_gt, 0: the
    lidar and the teacher never pull p at one cell); ci_depth a SILog like the supervised term, at 0.2
    (1500-step probe of the earlier head: lidar abs_rel 0.246 at 0.2, 0.257 at 1.0). tau_bins:
    temperature of the teacher's bin distribution in squared bins, q_k ∝ exp(-(z - k - 1/2)^2 / tau):
    2.0 is a std of one bin. ci_student_shift: views without lidar (teacher-only sets, or a failed lidar
    fit) take the teacher's shift from the student's current depth (detached); False: no CI KD there.
    vr_temperature 0.1: the usual temperature of cosine relations.
    """

    w_silog: float = 1.0
    w_bins: float = 0.0
    w_bin_nll: float = 0.5
    w_sigma_nll: float = 1.0
    w_ci_kl: float = 1.0
    w_ci_depth: float = 0.2
    w_vr_feat: float = 1.0
    silog_variance_focus: float = 0.85
    silog_per_image: bool = True
    chamfer_space: str = "log"
    chamfer_directions: str = "both"
    chamfer_max_points: int = 4096  # GT depths per view in the chamfer (random subset beyond)
    tau_bins: float = 2.0
    ci_kl_at_gt: float = 0.0
    ci_student_shift: bool = True
    vr_temperature: float = 0.1
    vr_samples: int = 256  # positions per overlap strip (a 256 x 256 relation per pair)
    gt_max_depth_m: float | None = None  # ignore GT beyond this (None: keep all)

    def __post_init__(self) -> None:
        bad = [k for k in WEIGHTS if not getattr(self, k) >= 0]
        bad += [k for k in ("tau_bins", "vr_temperature") if not getattr(self, k) > 0]
        if not 0 <= self.silog_variance_focus <= 1:
            bad.append("silog_variance_focus")
        if self.chamfer_directions not in CHAMFER_DIRECTIONS:
            bad.append(f"chamfer_directions (one of {', '.join(CHAMFER_DIRECTIONS)})")
        if self.chamfer_space not in CHAMFER_SPACES:
            bad.append(f"chamfer_space (one of {', '.join(CHAMFER_SPACES)})")
        if not self.ci_kl_at_gt >= 0:
            bad.append("ci_kl_at_gt (>= 0)")
        if self.vr_samples < 2 or self.chamfer_max_points < 1:
            bad.append("vr_samples/chamfer_max_points")
        if bad:
            raise ConfigError(f"bad DistillConfig values for {bad}: {self}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DistillConfig":
        return dataclass_from_dict(cls, d, "DistillConfig")


# The ablation's loss rows (docs/method.md): which KD terms each switches off.
ABLATION_ROWS = {"supervised": ("w_ci_kl", "w_ci_depth", "w_vr_feat"), "ci_kd": ("w_vr_feat",),
                 "vr_kd": ("w_ci_kl", "w_ci_depth"), "full": ()}


def ablation_presets(base: DistillConfig | None = None) -> dict[str, DistillConfig]:
    """The ablation table's rows from `base` (default: the defaults): supervised only, + cross-interaction
    KD, + view-relational KD, full. Every row keeps the GT terms (SILog, Chamfer, bin likelihood)."""
    base = base or DistillConfig()
    return {row: dataclasses.replace(base, **dict.fromkeys(off, 0.0)) for row, off in ABLATION_ROWS.items()}


@dataclasses.dataclass
class TrainConfig:
    """Everything `fsmde distill` needs; saved beside every checkpoint (config.yaml)."""

    out_dir: str = "runs/distill"
    train: list[str] = dataclasses.field(default_factory=lambda: ["synthetic:ddad?seed=0&frames=40&stride=2",
                                                                  "synthetic:nuscenes?seed=1&frames=40&stride=2"])
    height: int = 192
    width: int = 320
    cache_dir: str = DATASET_CACHE_DIR
    # "synthetic": each item's own `teacher` (the simulated world's); otherwise the directory given
    # to `fsmde teach --out`, which holds one cache per dataset (named by the dataset's cache key)
    teacher: str = "synthetic"
    student: str = "fsmde_mnv3l"
    student_overrides: dict = dataclasses.field(default_factory=dict)
    encoder_weights: str | None = None
    init_checkpoint: str | None = None  # start from these student weights (fine-tuning); optimizer starts afresh
    # the loss weights and temperatures: a mapping of DistillConfig fields in YAML (`distill: {}` = the defaults),
    # parsed once into a DistillConfig when the config is made
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    # share of the steps drawn from the teacher-only datasets (those without any GT: camera-only recordings)
    # when `train` lists both kinds; ignored when it lists one kind
    teacher_only_ratio: float = 0.5
    steps: int = 2000
    batch_size: int = 1  # surround sets per step and rank
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    brightness: float = 0.2  # photometric augmentation ranges, shared by the six views of a set
    contrast: float = 0.2
    saturation: float = 0.2
    seed: int = 0
    # supervision: "lidar_depth" (sparse returns, what real data has) or "depth" (the synthetic world's
    # dense depth, sky = inf -> no GT): the dense-GT row is an upper bound on what any teacher can add
    gt_source: str = "lidar_depth"
    log_every: int = 10
    ckpt_every: int = 200
    image_every: int = 200
    amp: bool = True  # on CUDA only
    workers: int = 2  # DataLoader worker processes (0: read in the training process)
    prefetch: int = 4  # batches each worker reads ahead
    # evaluation while training: held-out dataset specs, scored every eval_every steps (0: never) on at most
    # eval_sets sets each; the best mean metric abs_rel (lidar) keeps student_best.pt
    eval: list = dataclasses.field(default_factory=list)
    eval_every: int = 0
    eval_sets: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.distill, DistillConfig):  # a mapping (YAML, from_dict) or None: the defaults
            if self.distill is not None and not isinstance(self.distill, dict):
                raise ConfigError(f"distill must be a mapping of DistillConfig fields, got {self.distill!r}")
            self.distill = DistillConfig.from_dict(self.distill)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        cfg = dataclass_from_dict(cls, d, "training config")
        cfg.check()
        return cfg

    def check(self) -> None:
        """ConfigError naming the first field whose value has the wrong type or is out of range."""
        for f in dataclasses.fields(self):
            value, default = getattr(self, f.name), f.default
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            elif isinstance(default, str):
                ok = isinstance(value, str)
            else:
                ok = True
            if not ok:
                kind = type(default).__name__
                raise ConfigError(f"{f.name} must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}, got {value!r}")
        positive = ("steps", "batch_size", "height", "width", "lr", "log_every", "ckpt_every", "image_every",
                    "prefetch", "eval_sets")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "weight_decay", "grad_clip", "brightness", "contrast", "saturation", "workers",
                     "eval_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.train:
            raise ConfigError("train must list at least one dataset spec")
        if not 0 <= self.teacher_only_ratio < 1:
            raise ConfigError(f"teacher_only_ratio must be in [0, 1), got {self.teacher_only_ratio!r}")
        if self.gt_source not in ("lidar_depth", "depth"):
            raise ConfigError(f"gt_source must be 'lidar_depth' or 'depth' (synthetic dense GT), got {self.gt_source!r}")

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"training config {path} not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a training config is a mapping of keys (config/distill/*.yaml), got "
                              f"{type(data).__name__}")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
