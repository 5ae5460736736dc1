"""DistillConfig: the weight and temperature of every loss term in one dataclass (docs/method.md).

Weight 0 switches a term off (it is not computed). The ablation's rows are presets of it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from fsmde_ros.errors import ConfigError, dataclass_from_dict

# How the teacher's scale-invariant disparity is turned into a bin position (`teacher_bin_position`):
# 'log': uniform in log of the normalised disparity (relative log depth); 'disparity': uniform in the
# normalised disparity; 'rank': the pixel's rank in its image (equal-mass bins).
CI_BINNINGS = ("log", "disparity", "rank")
CHAMFER_SPACES = ("log", "metric")
CHAMFER_DIRECTIONS = ("both", "gt_to_centres")
WEIGHTS = ("w_silog", "w_bins", "w_bin_nll", "w_std_nll", "w_ci_kl", "w_ci_depth", "w_vr_feat")


@dataclasses.dataclass
class DistillConfig:
    """Weights and temperatures of the distillation losses (`distillation_loss`).

    The paper's values are not public. SILog lambda 0.85 and its factor 10 (BTS/AdaBins), Chamfer
    weight 0.1 (AdaBins), both directions; 'gt_to_centres' drops the half that pulls every centre
    near some return (which pulls a view's far, unlabelled bins down onto its farthest returns;
    measured no better, docs/benchmarks.md). w_bin_nll: the GT's likelihood under the bin distribution (what makes
    depth_std mean something), in nats per lidar cell. CI KD: KL in nats per informative pixel;
    ci_depth a SILog like the supervised term, at 0.2: the centres it fits to q are the ones the
    student's own p uses, and where p does not (yet) follow q at full weight it pulled them off
    what p needs (1500-step probe: lidar abs_rel 0.246 at 0.2, 0.257 at 1.0). tau_bins: temperature of the teacher's bin
    distribution in squared bins, q_k ∝ exp(-(z - k - 1/2)^2 / tau): 2.0 is a std of one bin.
    teacher_far_floor: pixels whose normalised disparity (0 = the image's 1st percentile, 1 = its
    99th) lies below it are the teacher's far floor (sky, or beyond what it resolves) and are left
    out of the KL. vr_temperature 0.1: the usual temperature of cosine relations.
    """

    w_silog: float = 1.0
    w_bins: float = 0.1
    w_bin_nll: float = 0.5
    w_std_nll: float = 0.0  # Laplace likelihood of the GT with depth_std as the scale (`std_laplace_nll`; off)
    w_ci_kl: float = 1.0
    w_ci_depth: float = 0.2
    w_vr_feat: float = 1.0
    silog_variance_focus: float = 0.85
    silog_per_image: bool = True
    chamfer_space: str = "log"
    chamfer_directions: str = "both"
    chamfer_max_points: int = 4096  # GT depths per view in the chamfer (random subset beyond)
    ci_binning: str = "log"
    ci_register: bool = False  # register q to the student's bin axis by a per-view shift (`register_to_student`)
    tau_bins: float = 2.0
    teacher_far_floor: float = 0.02
    vr_temperature: float = 0.1
    vr_samples: int = 256  # positions per overlap strip (a 256 x 256 relation per pair)
    gt_max_depth_m: float | None = None  # ignore GT beyond this (None: keep all)

    def __post_init__(self) -> None:
        bad = [k for k in WEIGHTS if not getattr(self, k) >= 0]
        bad += [k for k in ("tau_bins", "vr_temperature") if not getattr(self, k) > 0]
        if not 0 <= self.silog_variance_focus <= 1:
            bad.append("silog_variance_focus")
        if self.ci_binning not in CI_BINNINGS:
            bad.append(f"ci_binning (one of {', '.join(CI_BINNINGS)})")
        if self.chamfer_directions not in CHAMFER_DIRECTIONS:
            bad.append(f"chamfer_directions (one of {', '.join(CHAMFER_DIRECTIONS)})")
        if self.chamfer_space not in CHAMFER_SPACES:
            bad.append(f"chamfer_space (one of {', '.join(CHAMFER_SPACES)})")
        if not 0 <= self.teacher_far_floor < 1:
            bad.append("teacher_far_floor (in [0, 1))")
        if self.vr_samples < 2 or self.chamfer_max_points < 1:
            bad.append("vr_samples/chamfer_max_points")
        if bad:
            raise ConfigError(f"bad DistillConfig values for {bad}: {self}")

    @property
    def uses_teacher(self) -> bool:
        return self.w_ci_kl > 0 or self.w_ci_depth > 0 or self.w_vr_feat > 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DistillConfig":
        return dataclass_from_dict(cls, d, "DistillConfig")


# The ablation's rows (docs/method.md): which KD terms each switches off.
ABLATION_ROWS = {"supervised": ("w_ci_kl", "w_ci_depth", "w_vr_feat"), "ci_kd": ("w_vr_feat",),
                 "vr_kd": ("w_ci_kl", "w_ci_depth"), "full": ()}


def ablation_presets(base: DistillConfig | None = None) -> dict[str, DistillConfig]:
    """The ablation table's rows from `base` (default: the defaults): supervised only, + cross-interaction
    KD, + view-relational KD, full. Every row keeps the GT terms (SILog, Chamfer, bin likelihood)."""
    base = base or DistillConfig()
    return {row: dataclasses.replace(base, **dict.fromkeys(off, 0.0)) for row, off in ABLATION_ROWS.items()}
