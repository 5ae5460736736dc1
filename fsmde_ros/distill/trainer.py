"""`fsmde distill`: train the surround student by distillation, on one CPU/GPU or many (torchrun).

Determinism and exact resume: the data order is a permutation drawn from (seed, epoch), the
checkpoint holds the model, optimizer, scheduler, step and RNG states, so `--resume` continues
to bit-identical weights. Under torchrun each rank takes every world_size-th item of the same
permutation and DDP all-reduces gradients (gloo on CPU, nccl on GPU).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml

from fsmde_ros.data.surround import CachedDataset
from fsmde_ros.distill.config import DistillConfig
from fsmde_ros.distill.losses import distillation_loss
from fsmde_ros.distill.relational import overlap_indices
from fsmde_ros.errors import ConfigError, MissingFileError, dataclass_from_dict
from fsmde_ros.model.checkpoint import save_student
from fsmde_ros.model.student import create_student
from fsmde_ros.paths import DATASET_CACHE_DIR

log = logging.getLogger(__name__)
TRAIN_STATE = "train_state.pt"


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
    distill: dict = dataclasses.field(default_factory=dict)  # DistillConfig fields
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
        positive = ("steps", "batch_size", "height", "width", "lr", "log_every", "ckpt_every", "image_every")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "weight_decay", "grad_clip", "brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.train:
            raise ConfigError("train must list at least one dataset spec")
        DistillConfig.from_dict(self.distill)  # fail fast on bad loss keys too
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


def _world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def _photometric(images: torch.Tensor, gen: torch.Generator, cfg: TrainConfig) -> torch.Tensor:
    """The same brightness/contrast/saturation change for all views of a set: [V,3,H,W] in [0,1]."""
    def factor(r):
        return 1.0 + (torch.rand((), generator=gen).item() * 2 - 1) * r

    b, c, s = factor(cfg.brightness), factor(cfg.contrast), factor(cfg.saturation)
    x = images * b
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean
    gray = x.mean(dim=1, keepdim=True)
    return ((x - gray) * s + gray).clamp(0, 1)


class Trainer:
    """One training run (one process of it under torchrun)."""

    def __init__(self, cfg: TrainConfig, device: str | None = None):
        self.cfg = cfg
        self.rank, self.world = _world()
        self.device = torch.device(device or (f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
                                              if torch.cuda.is_available() else "cpu"))
        self.out = Path(cfg.out_dir)
        self.loss_cfg = DistillConfig.from_dict(cfg.distill)
        torch.manual_seed(cfg.seed)
        self.datasets = [CachedDataset(spec, cfg.height, cfg.width, cfg.cache_dir) for spec in cfg.train]
        self.index = [(d, i) for d in range(len(self.datasets)) for i in range(len(self.datasets[d]))]
        self.teacher_caches = None
        if cfg.teacher != "synthetic":
            from fsmde_ros.distill.teach import TeacherCache

            root = Path(cfg.teacher).expanduser()
            self.teacher_caches = [TeacherCache(root / ds.key, ds) for ds in self.datasets]
        self.overlaps: dict[str, Any] = {}
        self.model = create_student(cfg.student, encoder_weights=cfg.encoder_weights, **cfg.student_overrides).to(self.device)
        if cfg.init_checkpoint:
            from fsmde_ros.model.checkpoint import load_student

            self.model.load_state_dict(load_student(cfg.init_checkpoint).state_dict())
        self.ddp = None
        if self.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and self.device.type == "cuda")
        self.step = 0
        self.writer = None

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 5 % of the peak."""
        if step < self.cfg.warmup_steps:
            return (step + 1) / self.cfg.warmup_steps
        t = (step - self.cfg.warmup_steps) / max(1, self.cfg.steps - self.cfg.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    # -- data --------------------------------------------------------------------------------------
    def _order(self, epoch: int) -> list[int]:
        return np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.index)).tolist()

    def _sample_ids(self, step: int) -> list[int]:
        """The global item ids of this rank for `step` (deterministic: resume needs no iterator state)."""
        per_step = self.cfg.batch_size * self.world
        first = step * per_step + self.rank * self.cfg.batch_size
        ids = []
        for k in range(first, first + self.cfg.batch_size):
            epoch, pos = divmod(k, len(self.index))
            ids.append(self._order(epoch)[pos])
        return ids

    def _batch(self, step: int) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step * 101 + self.rank)
        items = []
        for gid in self._sample_ids(step):
            d, i = self.index[gid]
            item = self.datasets[d][i]
            if self.teacher_caches is not None:
                cached = self.teacher_caches[d][i]
                item["teacher"] = cached["relative"]
                if cached.get("features") is not None:
                    item["teacher_features"] = cached["features"]
            items.append((self.datasets[d], item))
        rigs = {ds.rig.name for ds, _ in items}
        if len(rigs) > 1:  # one rig per batch: overlaps and focal lengths are per rig
            items = [it for it in items if it[0].rig.name == items[0][0].rig.name]
        ds = items[0][0]
        images = torch.stack([_photometric(torch.from_numpy(it["images"]).permute(0, 3, 1, 2).float() / 255, gen, self.cfg)
                              for _, it in items])
        batch = {
            "images": images,
            "focal_px": torch.stack([torch.from_numpy(it["K"][:, 0, 0]).float() for _, it in items]),
            "gt": torch.stack([torch.from_numpy(np.nan_to_num(it[self.cfg.gt_source], nan=0.0, posinf=0.0)).float()
                               for _, it in items]),
            "rig": ds.rig,
        }
        for key in ("teacher", "teacher_features"):
            if all(key in it for _, it in items):
                batch[key] = torch.stack([torch.from_numpy(np.asarray(it[key], dtype=np.float32)) for _, it in items])
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _overlap(self, rig, h: int, w: int):
        key = f"{rig.name}:{h}x{w}"
        if key not in self.overlaps:
            self.overlaps[key] = overlap_indices(rig, h, w, self.loss_cfg.vr_samples)
        return self.overlaps[key]

    # -- checkpoints -------------------------------------------------------------------------------
    def save(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(self.cfg), sort_keys=False))
        state = {"step": self.step, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                 "scaler": self.scaler.state_dict(), "torch_rng": torch.get_rng_state()}
        tmp = self.out / (TRAIN_STATE + ".tmp")
        torch.save(state, tmp)
        path = save_student(self.model, self.out / "student.pt",
                            extra={"step": self.step, "height": self.cfg.height, "width": self.cfg.width})
        tmp.replace(self.out / TRAIN_STATE)
        return path

    def resume(self) -> bool:
        """Continue from out_dir if it holds a checkpoint; True when it did."""
        state_path, model_path = self.out / TRAIN_STATE, self.out / "student.pt"
        if not (state_path.exists() and model_path.exists()):
            return False
        from fsmde_ros.model.checkpoint import read_checkpoint

        self.model.load_state_dict(read_checkpoint(model_path)["state_dict"])
        state = torch.load(state_path, map_location=self.device, weights_only=True)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.step = int(state["step"])
        log.info("resumed %s at step %d", self.out, self.step)
        return True

    # -- loop --------------------------------------------------------------------------------------
    def train(self, steps: int | None = None, progress: bool = True) -> dict[str, float]:
        """Train until `steps` (default cfg.steps); returns the last logged loss terms."""
        from tqdm import tqdm

        end = steps if steps is not None else self.cfg.steps
        if self.rank == 0 and self.writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:
                log.warning("tensorboard is not installed: no TensorBoard logs")
        bar = tqdm(total=end, initial=self.step, desc="distill", unit="step", disable=not progress or self.rank != 0)
        try:
            self._loop(end, bar)
        except KeyboardInterrupt:  # Ctrl-C: keep what was learnt, resumable (`fsmde distill` then exits 130)
            bar.close()
            if self.rank == 0:
                self.save()
                log.warning("interrupted at step %d: saved a resumable checkpoint in %s", self.step, self.out)
            raise
        bar.close()
        if self.rank == 0:
            self.save()
        return self._terms

    def _loop(self, end: int, bar) -> None:
        self._terms: dict[str, float] = {}
        while self.step < end:
            batch = self._batch(self.step)
            total, terms, out = self.train_step(batch)
            self._terms = terms
            bar.update(1)
            if self.rank == 0 and self.step % self.cfg.log_every == 0:
                bar.set_postfix(loss=f"{total.item():.3f}")
                if self.writer:
                    for k, v in terms.items():
                        self.writer.add_scalar(f"loss/{k}", v, self.step)
                    self.writer.add_scalar("lr", self.sched.get_last_lr()[0], self.step)
            if self.rank == 0 and self.writer and self.step % self.cfg.image_every == 0:
                self._log_images(batch, out)
            if self.rank == 0 and self.step % self.cfg.ckpt_every == 0:
                self.save()

    def train_step(self, batch: dict[str, Any]):
        """One optimisation step on `batch`: (total loss, loss terms, model outputs)."""
        model = self.ddp or self.model
        model.train()
        with torch.autocast(self.device.type, enabled=self.scaler.is_enabled()):
            out = model(batch["images"], batch["focal_px"])
            h, w = out["probs"].shape[-2:]
            total, terms = distillation_loss(out, batch, self.loss_cfg, self._overlap(batch["rig"], h, w))
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        self.step += 1
        return total, terms, out

    def _log_images(self, batch, out) -> None:
        """RGB | depth | teacher | error panel of the first set's front camera."""
        from fsmde_ros.geometry.viz import colorize_depth

        rgb = (batch["images"][0, 0].permute(1, 2, 0).detach().cpu().numpy() * 255).astype(np.uint8)
        depth = out["depth"][0, 0].detach().float().cpu().numpy()
        panels = [rgb, colorize_depth(depth, 1.0, 100.0)]
        if "teacher" in batch:
            t = batch["teacher"][0, 0].detach().cpu().numpy()
            t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
            panels.append(colorize_depth(1.0 / np.maximum(t, 1e-3), 1.0, 1000.0))
        gt = batch["gt"][0, 0].detach().cpu().numpy()
        err = np.where(gt > 0, np.abs(depth - gt) / np.maximum(gt, 1e-3), 0.0)
        err_img = (np.clip(err / 0.3, 0, 1)[..., None] * np.array([255, 64, 0])).astype(np.uint8)
        self.writer.add_image("rgb|depth|teacher|abs_rel error", np.concatenate(panels + [err_img], axis=1),
                              self.step, dataformats="HWC")


def run_distillation(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> Path:
    """Train with cfg (under torchrun when WORLD_SIZE > 1) and return the checkpoint path."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    trainer = Trainer(cfg)
    if trainer.rank == 0:
        for ds in trainer.datasets:
            ds.warm(progress)
    if dist.is_initialized():
        dist.barrier()
    if resume:
        trainer.resume()
    start = time.monotonic()
    terms = trainer.train(progress=progress)
    if trainer.rank == 0:
        summary = {"steps": trainer.step, "seconds": time.monotonic() - start, "last_terms": terms}
        (trainer.out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    if dist.is_initialized():
        digest = hashlib.sha256()
        for p in trainer.model.parameters():
            digest.update(p.detach().cpu().numpy().tobytes())
        (trainer.out / f"params_rank{trainer.rank}.sha256").write_text(digest.hexdigest())
        dist.barrier()
        dist.destroy_process_group()
    return trainer.out / "student.pt"
