"""Student checkpoints: a plain state dict plus its config, loadable with weights_only=True.

No pickled classes: a checkpoint from an untrusted source cannot run code, and one written by
another version names what does not fit instead of failing deep inside torch.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from fsmde_ros.errors import FsmdeError
from fsmde_ros.model.config import StudentConfig
from fsmde_ros.model.student import SurroundDepthStudent

CHECKPOINT_FORMAT = "fsmde_student/1"


class CheckpointError(FsmdeError, ValueError):
    """A checkpoint is missing, not weights-only, or of another architecture; names the file."""


def save_student(model: SurroundDepthStudent, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write {format, config, state_dict, extra} to path (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "config": model.config.to_dict(),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "extra": extra or {}}, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict with weights_only=True; clear errors for missing or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: not a weights-only checkpoint (it pickles Python objects; refusing to "
                              f"run code from it): {str(exc).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        fmt = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: not an fsmde student checkpoint (format {fmt!r}, expected {CHECKPOINT_FORMAT!r})")
    return data


def load_student(path: str | Path, map_location: str | torch.device = "cpu",
                 data: dict[str, Any] | None = None) -> SurroundDepthStudent:
    """Rebuild the student from a checkpoint written by save_student (`data`: its read_checkpoint, if read already)."""
    data = read_checkpoint(path) if data is None else data
    try:
        config = StudentConfig.from_dict(data["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad student config: {exc}") from None
    model = SurroundDepthStudent(config)
    missing, unexpected = [], []
    own = model.state_dict()
    for key, value in data["state_dict"].items():
        if key not in own:
            unexpected.append(key)
        elif own[key].shape != value.shape:
            raise CheckpointError(f"{path}: tensor {key} has shape {tuple(value.shape)}, the architecture "
                                  f"({config.encoder}) expects {tuple(own[key].shape)}")
    missing = [k for k in own if k not in data["state_dict"]]
    if missing or unexpected:
        raise CheckpointError(f"{path}: checkpoint does not fit the {config.encoder} student: "
                              f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    model.load_state_dict(data["state_dict"])
    return model.to(map_location)
