"""Can the trainer's data path keep a GPU fed? The loader alone, then its share of real training steps.

Builds (or reuses) a training cache of synthetic sets at the given size, then prints the loader's
sets/s with N workers reading batches as the trainer does (`loader sets/s = X`) and, over 50 real
training steps (fsmde_mnv3l, batch --batch-size), the share of step time the loop waited for data
(`data wait = Y %`, after the first step, which waits for the workers to start), with the steps/s. On a machine with an NVIDIA GPU the steps run there (and the
GPU utilisation is sampled with nvidia-smi).

    .venv/bin/python benchmarks/train_throughput.py --height 384 --width 640 --workers 2
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from fsmde_ros.distill.loader import RigBatchSampler, make_loader  # noqa: E402
from fsmde_ros.distill.trainer import TrainConfig, Trainer  # noqa: E402
from fsmde_ros.paths import DATASET_CACHE_DIR  # noqa: E402


def gpu_utilisation(samples: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            samples.append(float(out.stdout.split()[0]))
        stop.wait(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sets", type=int, default=32, help="synthetic sets in the cache (rendered once)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 8 on a GPU, 1 on a CPU")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cache-dir", default=DATASET_CACHE_DIR)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    batch = args.batch_size or (8 if cuda else 1)
    out = Path(tempfile.mkdtemp(prefix="fsmde_train_throughput_"))
    cfg = TrainConfig.from_dict({
        "train": [f"synthetic:ddad?seed=0&frames={args.sets}"], "height": args.height, "width": args.width,
        "steps": args.steps, "batch_size": batch, "workers": args.workers, "warmup_steps": 1, "log_every": 10 ** 6,
        "ckpt_every": 10 ** 6, "image_every": 10 ** 6, "out_dir": str(out), "cache_dir": args.cache_dir})
    trainer = Trainer(cfg)
    t = time.perf_counter()
    caches = trainer.prepare_data(progress=True)
    c = caches[0]
    print(f"training cache: {len(c)} sets at {args.width}x{args.height}, {c.meta['bytes'] / 1e9:.2f} GB, built in "
          f"{c.meta['build_seconds']:.0f} s ({time.perf_counter() - t:.1f} s now), {c.dir}")

    # the loader alone: as many batches as 4 epochs, read by the workers as the trainer reads them
    n = max(8, 4 * len(c) // batch)
    sampler = RigBatchSampler([len(c)], batch, seed=0, start_step=0, end_step=n)
    loader = make_loader(caches, sampler, args.workers, pin_memory=cuda)
    it = iter(loader)
    next(it)  # workers started
    t = time.perf_counter()
    for _ in range(n - 1):
        next(it)
    loader_rate = (n - 1) * batch / (time.perf_counter() - t)
    del it

    # real training steps, the loop timing how long it waits for each batch
    samples: list[float] = []
    stop = threading.Event()
    sampler_thread = threading.Thread(target=gpu_utilisation, args=(samples, stop), daemon=True)
    if cuda and shutil.which("nvidia-smi"):
        sampler_thread.start()
    t = time.perf_counter()
    trainer.train(progress=False)
    seconds = time.perf_counter() - t
    stop.set()
    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    print(f"# {device}, fsmde_mnv3l at 6x{args.height}x{args.width}, batch {batch}, {args.workers} workers")
    print(f"loader sets/s = {loader_rate:.1f}")
    print(f"data wait = {100 * trainer.data_wait_s / max(trainer.step_s, 1e-9):.1f} %")
    print(f"(steps 2..{args.steps}; the first batch waited {trainer.loader_start_s:.2f} s for the workers to start)")
    print(f"training steps/s = {args.steps / seconds:.2f} ({args.steps} steps, {seconds:.1f} s)"
          + (f"; GPU utilisation mean {sum(samples) / len(samples):.0f} %" if samples else ""))
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
