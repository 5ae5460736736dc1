"""`fsmde distill`: train the surround student by distillation, on one CPU/GPU or many (torchrun).

Data: each training dataset is packed once into a training cache (train_cache.py: memory-mapped, at the
training resolution, with the teacher's outputs) and read by DataLoader workers with prefetch and pinned
memory; a batch holds one rig (loader.RigBatchSampler), and the float conversion and photometric
augmentation run on the training device. Every eval_every steps the student is scored on held-out sets
(lidar and, where present, dense GT; metric and median-scaled; cross-view consistency), logged to
TensorBoard, and the best checkpoint is kept beside the last (student_best.pt).

Determinism and exact resume: the batches are drawn from (seed, epoch) and the augmentation from
(seed, step, rank); the checkpoint holds the model, optimizer, scheduler, step and RNG states, so
`--resume` continues to bit-identical weights, with any number of workers. Under torchrun each rank
takes every world_size-th batch of the same order and DDP all-reduces gradients (gloo / nccl).
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

from fsmde_ros.data.surround import CachedDataset, dataset_key, open_dataset
from fsmde_ros.distill.config import GT_TERMS, TrainConfig
from fsmde_ros.distill.loader import RigBatchSampler, augment_on_device, make_loader
from fsmde_ros.distill.train_cache import TrainCache, build_train_cache, describe_size, train_cache_dir
from fsmde_ros.distill.losses import distillation_loss
from fsmde_ros.distill.relational import overlap_indices
from fsmde_ros.errors import ConfigError
from fsmde_ros.model.checkpoint import save_student
from fsmde_ros.model.student import create_student

log = logging.getLogger(__name__)
TRAIN_STATE = "train_state.pt"


def _world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


class Trainer:
    """One training run (one process of it under torchrun)."""

    def __init__(self, cfg: TrainConfig, device: str | None = None):
        self.cfg = cfg
        self.rank, self.world = _world()
        self.device = torch.device(device or (f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
                                              if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # each rank's own GPU (pinned-memory threads included)
        self.out = Path(cfg.out_dir)
        self.loss_cfg = cfg.distill
        torch.manual_seed(cfg.seed)
        # the training sets are read once, into the training caches (prepare_data): no render cache in between
        self.datasets = [open_dataset(spec, cfg.height, cfg.width) for spec in cfg.train]
        self.keys = [dataset_key(spec, cfg.height, cfg.width) for spec in cfg.train]
        self.teacher_caches = None
        if cfg.teacher != "synthetic":
            from fsmde_ros.distill.teach import TeacherCache, teacher_cache_dir

            self.teacher_caches = [TeacherCache(teacher_cache_dir(cfg.teacher, key), length=len(ds),
                                                resolution=(len(ds.rig), cfg.height, cfg.width))
                                   for ds, key in zip(self.datasets, self.keys)]
        self.overlaps: dict[str, Any] = {}
        self.model = create_student(cfg.student, encoder_weights=cfg.encoder_weights, **cfg.student_overrides).to(self.device)
        if cfg.init_checkpoint:
            from fsmde_ros.model.checkpoint import load_student

            self.model.load_state_dict(load_student(cfg.init_checkpoint).state_dict())
        self.ddp = None
        if self.world > 1:
            # find_unused_parameters: on a teacher-only step the uncertainty branch (trained by the GT alone) is unused
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and self.device.type == "cuda")
        self.step = 0
        self.writer = None
        self.caches: list[TrainCache] | None = None
        # time the loop waited for batches / spent in all, after the first batch of a run (loader_start_s [s])
        self.data_wait_s = self.step_s = self.loader_start_s = 0.0
        self.best: dict[str, Any] | None = None
        # steps on sets without GT, and per enabled GT term how often it was skipped there (this process's steps)
        self.teacher_only_steps = 0
        self.skipped_terms: dict[str, int] = {}
        self.eval_datasets = [CachedDataset(spec, cfg.height, cfg.width, cfg.cache_dir) for spec in cfg.eval]

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 5 % of the peak."""
        if step < self.cfg.warmup_steps:
            return (step + 1) / self.cfg.warmup_steps
        t = (step - self.cfg.warmup_steps) / max(1, self.cfg.steps - self.cfg.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    # -- data --------------------------------------------------------------------------------------
    def _source_item(self, d: int, i: int) -> dict[str, Any]:
        """Set i of dataset d with the teacher's outputs, as the training cache stores it."""
        item = self.datasets[d][i]
        return item if self.teacher_caches is None else self.teacher_caches[d].attach(item, i)

    def prepare_data(self, progress: bool = True) -> list[TrainCache]:
        """Build (or reuse) one training cache per dataset; says how many sets, how large, how long it took."""
        if self.caches is None:
            self.caches = []
            for d, (spec, key, ds) in enumerate(zip(self.cfg.train, self.keys, self.datasets)):
                describe = {"spec": spec, "height": self.cfg.height, "width": self.cfg.width,
                            "dataset_key": key, "teacher": self.cfg.teacher}
                self.caches.append(build_train_cache(train_cache_dir(self.cfg.cache_dir, key, self.cfg.teacher),
                                                     len(ds), lambda i, d=d: self._source_item(d, i), describe,
                                                     progress))
            for c, spec in zip(self.caches, self.cfg.train):
                if self.cfg.gt_source not in c.keys and c.has_gt:
                    raise ConfigError(f"gt_source {self.cfg.gt_source!r}: {spec} has no such key "
                                      f"(it has {', '.join(c.keys)}); dense 'depth' exists for synthetic data only")
            log.info("training cache: %s (%s)", describe_size(self.caches),
                     ", ".join(str(c.dir) for c in self.caches))
        return self.caches

    def batches(self, end: int):
        """This rank's batches from self.step to end: (dataset index, batch dict on the device, augmented)."""
        caches = self.prepare_data(progress=False)
        sampler = RigBatchSampler([len(c) for c in caches], self.cfg.batch_size, self.cfg.seed, self.rank, self.world,
                                  start_step=self.step, end_step=end, teacher_only=[not c.has_gt for c in caches],
                                  teacher_only_ratio=self.cfg.teacher_only_ratio)
        loader = make_loader(caches, sampler, self.cfg.workers, pin_memory=self.device.type == "cuda",
                             gt_source=self.cfg.gt_source, prefetch=self.cfg.prefetch)
        for raw in loader:
            step, d = int(raw.pop("step")), int(raw.pop("dataset"))
            gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step * 101 + self.rank)
            batch = {k: v.to(self.device, non_blocking=True) for k, v in raw.items()}
            for k in ("teacher", "teacher_features"):
                if k in batch:
                    batch[k] = batch[k].float()
            images = batch.pop("images")
            batch["images"] = augment_on_device(images, gen, self.cfg.brightness, self.cfg.contrast, self.cfg.saturation)
            batch["focal_px"] = batch["K"][:, :, 0, 0]
            batch["rig"] = self.datasets[d].rig
            # the losses' random draws (the chamfer's GT subset) come from (seed, step, rank) too, never from the
            # global RNG: what rank 0 alone does (building the cache, logging) would otherwise shift it on resume
            batch["generator"] = torch.Generator(self.device).manual_seed(self.cfg.seed * 7_000_003 + step * 131 + self.rank)
            yield batch

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
        if (self.out / "best.json").exists():  # a later evaluation must beat the best so far, not replace it
            self.best = json.loads((self.out / "best.json").read_text())
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
        batches = self.batches(end)
        first = True
        while self.step < end:
            t0 = time.perf_counter()
            batch = next(batches)
            t1 = time.perf_counter()
            total, terms, out = self.train_step(batch)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # so that the wait below is the loader's, not the GPU's queue
            if first:  # the first batch waits for the workers to start: counted apart
                self.loader_start_s, first = t1 - t0, False
            else:
                self.data_wait_s += t1 - t0
                self.step_s += time.perf_counter() - t0
            self._terms = terms
            self._count_skipped(terms)
            bar.update(1)
            if self.rank == 0 and self.step % self.cfg.log_every == 0:
                bar.set_postfix(loss=f"{total.item():.3f}")
                if self.writer:
                    for k, v in terms.items():
                        self.writer.add_scalar(f"loss/{k}", v, self.step)
                    self.writer.add_scalar("lr", self.sched.get_last_lr()[0], self.step)
                    self.writer.add_scalar("data/wait_fraction", self.data_wait_s / max(self.step_s, 1e-9), self.step)
            if self.rank == 0 and self.writer and self.step % self.cfg.image_every == 0:
                self._log_images(batch, out)
            if self.rank == 0 and self.step % self.cfg.ckpt_every == 0:
                self.save()
            if self.rank == 0 and self.cfg.eval_every and self.eval_datasets and self.step % self.cfg.eval_every == 0:
                self.evaluate_now()

    def _count_skipped(self, terms: dict[str, float]) -> None:
        skipped = [k for k in GT_TERMS if getattr(self.loss_cfg, "w_" + k) > 0 and k not in terms]
        if skipped:
            self.teacher_only_steps += 1
            for k in skipped:
                self.skipped_terms[k] = self.skipped_terms.get(k, 0) + 1

    def evaluate_now(self) -> dict[str, float]:
        """Score the student on the held-out sets, log to TensorBoard, keep student_best.pt on a new best."""
        from fsmde_ros.distill.evaluate import LiveStudent, evaluate

        predictor = LiveStudent(self.model, self.device, self.cfg.height, self.cfg.width)
        scores = {}
        for ds in self.eval_datasets:
            dense = "depth" in ds[0]
            for gt in ("lidar", "dense") if dense else ("lidar",):
                tag = f"{ds.rig.name}_{ds.key[:6]}"
                try:
                    r = evaluate(predictor, ds, dense_gt=gt == "dense", limit=self.cfg.eval_sets, progress=False)
                except ValueError as exc:  # e.g. no GT in the first eval_sets sets: say so, keep training
                    log.warning("held-out %s (%s GT) not scored: %s", ds.spec, gt, exc)
                    continue
                scores[f"eval/{tag}/{gt}_abs_rel"] = r["metric"]["abs_rel"]
                scores[f"eval/{tag}/{gt}_abs_rel_median_scaled"] = r["median_scaled"]["abs_rel"]
                if gt == "lidar":
                    scores[f"eval/{tag}/cross_view_rel"] = r["consistency"]["rel"]
        lidar = [v for k, v in scores.items() if k.endswith("/lidar_abs_rel")]
        if lidar:
            scores["eval/mean_lidar_abs_rel"] = float(np.mean(lidar))
        if self.writer:
            for k, v in scores.items():
                self.writer.add_scalar(k, v, self.step)
        mean = scores.get("eval/mean_lidar_abs_rel", float("nan"))
        if not np.isfinite(mean):
            return scores
        if self.best is None or mean < self.best["eval/mean_lidar_abs_rel"]:
            self.best = {"step": self.step, **scores}
            self.out.mkdir(parents=True, exist_ok=True)
            save_student(self.model, self.out / "student_best.pt",
                         extra={"step": self.step, "height": self.cfg.height, "width": self.cfg.width, "eval": scores})
            (self.out / "best.json").write_text(json.dumps(self.best, indent=2))
        log.info("step %d: held-out mean lidar abs_rel %.4f (best %.4f at step %d)", self.step,
                 scores["eval/mean_lidar_abs_rel"], self.best["eval/mean_lidar_abs_rel"], self.best["step"])
        return scores

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
        from fsmde_ros.viz.depth_pictures import colorize_depth

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


def run_distillation(cfg: TrainConfig, resume: bool = True, progress: bool = True, until: int | None = None) -> Path:
    """Train with cfg (under torchrun when WORLD_SIZE > 1) until `until` (default cfg.steps; the schedule is
    cfg.steps either way) and return the checkpoint path."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        import datetime

        # rank 0 alone builds the training caches and evaluates: the others wait at a barrier that long
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=datetime.timedelta(hours=4))
    trainer = Trainer(cfg)
    if trainer.rank == 0:
        trainer.prepare_data(progress)
        print(f"[distill] training cache: {describe_size(trainer.caches)} "
              f"({', '.join(str(c.dir) for c in trainer.caches)})", flush=True)
        teacher_only = [spec for c, spec in zip(trainer.caches, cfg.train) if not c.has_gt]
        if teacher_only:
            share = cfg.teacher_only_ratio if len(teacher_only) < len(trainer.datasets) else 1.0
            print(f"[distill] {len(teacher_only)} teacher-only dataset(s) (no GT), {share:.0%} of the steps: "
                  f"the GT terms skip them ({', '.join(teacher_only[:3])}{', ...' if len(teacher_only) > 3 else ''})",
                  flush=True)
    if dist.is_initialized():
        dist.barrier()
    if resume:
        trainer.resume()
    start = time.monotonic()
    terms = trainer.train(steps=until, progress=progress)
    if trainer.rank == 0:
        summary = {"steps": trainer.step, "seconds": time.monotonic() - start, "last_terms": terms,
                   "data_wait_fraction": trainer.data_wait_s / max(trainer.step_s, 1e-9),
                   "training_cache": describe_size(trainer.caches), "best": trainer.best,
                   "teacher_only_steps": trainer.teacher_only_steps, "skipped_terms": trainer.skipped_terms}
        (trainer.out / "train_summary.json").write_text(json.dumps(summary, indent=2))
        if trainer.teacher_only_steps:
            print(f"[distill] {trainer.teacher_only_steps} of these steps had no GT (teacher-only sets): "
                  f"{', '.join(sorted(trainer.skipped_terms))} skipped there", flush=True)
    if dist.is_initialized():
        digest = hashlib.sha256()
        for p in trainer.model.parameters():
            digest.update(p.detach().cpu().numpy().tobytes())
        (trainer.out / f"params_rank{trainer.rank}.sha256").write_text(digest.hexdigest())
        dist.barrier()
        dist.destroy_process_group()
    return trainer.out / "student.pt"
