"""The training data path: the rig sampler (one rig a batch, every set once an epoch across ranks, exact
resume), the training cache (every key round-trips), and evaluation while training (metrics, best checkpoint)."""
import json
from collections import Counter

import numpy as np
import pytest
import torch

from fsmde_ros.data.surround import open_dataset
from fsmde_ros.distill.loader import RigBatchSampler, SurroundBatches, make_loader
from fsmde_ros.distill.train_cache import build_train_cache
from fsmde_ros.distill.trainer import TrainConfig, Trainer


@pytest.mark.parametrize("lengths, batch_size, world", [([12, 8], 4, 2), ([10, 7], 3, 2), ([9], 2, 3), ([5, 6], 2, 1)])
def test_the_sampler_never_mixes_rigs_and_covers_every_set_each_epoch_across_ranks(lengths, batch_size, world):
    samplers = [RigBatchSampler(lengths, batch_size, seed=3, rank=r, world=world) for r in range(world)]
    steps = samplers[0].batches_per_epoch // world          # one epoch: the same number of steps on every rank
    seen = Counter()
    for s in samplers:
        for step in range(steps):
            d, items = s.batch(step)
            assert len(items) == batch_size and all(0 <= i < lengths[d] for i in items)  # full, one dataset (rig)
            seen.update((d, i) for i in items)
    assert set(seen) == {(d, i) for d, n in enumerate(lengths) for i in range(n)}, "every set of the epoch"
    divisible = all(n % batch_size == 0 for n in lengths) and (sum(n // batch_size for n in lengths) % world == 0)
    if divisible:
        assert set(seen.values()) == {1}, "exactly once when the batches divide evenly"
    else:  # the fill of a last batch and the padding to a multiple of ranks repeat a few sets (at most a fill and a pad)
        assert max(seen.values()) <= 3 and sum(v - 1 for v in seen.values()) < batch_size * (len(lengths) + world)
    # the next epoch is another order
    assert [samplers[0].batch(steps + k) for k in range(steps)] != [samplers[0].batch(k) for k in range(steps)]


def test_a_sampler_started_mid_epoch_continues_exactly():
    full = list(RigBatchSampler([7, 5], 2, seed=1, rank=1, world=2, start_step=0, end_step=20))
    resumed = list(RigBatchSampler([7, 5], 2, seed=1, rank=1, world=2, start_step=9, end_step=20))
    assert resumed == full[9:]


def test_the_training_cache_round_trips_every_key(tmp_path):
    """Bit-exact for every key but the teacher's outputs (float16: within 1e-3 relative, said so in the doc);
    lidar stored sparse; the size and the build time are reported; a second open reuses it."""
    ds = open_dataset("synthetic:ddad?seed=2&frames=3", height=48, width=80)
    items = [ds[i] for i in range(len(ds))]
    for it in items:
        it["teacher_features"] = np.random.default_rng(0).normal(size=(6, 4, 6, 10)).astype(np.float32)
    describe = {"spec": "x"}
    cache = build_train_cache(tmp_path / "c", len(items), items.__getitem__, describe, progress=False)
    assert cache.meta["bytes"] > 0 and cache.meta["build_seconds"] >= 0
    for i, it in enumerate(items):
        got = cache.item(i)
        for k in ("images", "K", "T_base_cam", "depth", "lidar_depth"):
            want = np.asarray(it[k]).astype(got[k].dtype)
            np.testing.assert_array_equal(got[k], want, err_msg=k)
            if k in ("K", "T_base_cam"):
                np.testing.assert_allclose(got[k], it[k], rtol=1e-6)   # float32 of the float64 originals
        assert got["lidar_depth"].dtype == np.float32 and np.array_equal(got["lidar_depth"], it["lidar_depth"])
        assert got["stamp"] == it["stamp"]
        for k in ("teacher", "teacher_features"):
            np.testing.assert_allclose(got[k], it[k], rtol=1e-3, atol=1e-4, err_msg=k)
    returns = sum(int((it["lidar_depth"] > 0).sum()) for it in items)
    stored = [np.load(tmp_path / "c" / f"{k}.npy", mmap_mode="r") for k in ("lidar_index", "lidar_value")]
    assert [a.nbytes for a in stored] == [4 * returns, 4 * returns], "sparse lidar: 8 bytes a return, none a miss"
    calls = []
    again = build_train_cache(tmp_path / "c", len(items), lambda i: calls.append(i), describe, progress=False)
    assert calls == [] and len(again) == 3
    (tmp_path / "c" / "meta.json").unlink()                       # an interrupted build (no meta) is redone
    build_train_cache(tmp_path / "c", len(items), items.__getitem__, describe, progress=False)


def test_the_loader_with_workers_gives_the_sampler_batches(tmp_path):
    ds = open_dataset("synthetic:nuscenes?seed=4&frames=4", height=32, width=48)
    cache = build_train_cache(tmp_path / "c", len(ds), ds.__getitem__, {"spec": "y"}, progress=False)
    sampler = RigBatchSampler([len(cache)], 2, seed=0, start_step=0, end_step=5)
    got = list(make_loader([cache], sampler, workers=2, pin_memory=False))
    direct = SurroundBatches([cache])
    assert [b["step"] for b in got] == list(range(5))
    for b, (step, d, items) in zip(got, sampler):
        ref = direct[(step, d, items)]
        assert b["images"].dtype == torch.uint8 and b["images"].shape == (2, 6, 32, 48, 3)
        assert torch.equal(b["images"], ref["images"]) and torch.equal(b["gt"], ref["gt"])


def test_evaluation_while_training_logs_held_out_metrics_and_keeps_the_best(tmp_path):
    cfg = TrainConfig.from_dict({
        "train": ["synthetic:ddad?seed=5&frames=3"], "eval": ["synthetic:ddad?seed=11&frames=2"], "eval_every": 2,
        "eval_sets": 2, "height": 48, "width": 80, "student_overrides": {"num_bins": 8}, "steps": 4, "warmup_steps": 1,
        "log_every": 1, "ckpt_every": 1000, "image_every": 1000, "lr": 1e-3, "workers": 1,
        "out_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")})
    trainer = Trainer(cfg)
    trainer.train(progress=False)
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["step"] in (2, 4) and (tmp_path / "run" / "student_best.pt").exists()
    keys = set(best)
    assert {"eval/mean_lidar_abs_rel"} <= keys and any(k.endswith("/dense_abs_rel") for k in keys)
    assert any(k.endswith("/lidar_abs_rel_median_scaled") for k in keys) and any("cross_view" in k for k in keys)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("eval/mean_lidar_abs_rel")]
    assert steps == [2, 4] and "data/wait_fraction" in events.Tags()["scalars"]


@pytest.mark.parametrize("ratio, world", [(0.5, 1), (0.25, 2), (0.8, 1)])
def test_teacher_only_datasets_get_their_share_of_the_steps_and_resume_exactly(ratio, world):
    lengths, flags = [6, 4, 9, 5], [False, True, True, False]
    sampler = RigBatchSampler(lengths, 2, seed=2, rank=0, world=world, end_step=200, teacher_only=flags,
                              teacher_only_ratio=ratio)
    picks = [d for _, d, _ in sampler]
    share = np.mean([flags[d] for d in picks])
    assert share == pytest.approx(ratio, abs=1.5 / 200)  # an exact share of the steps, the same on every rank
    assert set(picks) == {0, 1, 2, 3}  # both pools are drawn from, every dataset of each
    resumed = list(RigBatchSampler(lengths, 2, seed=2, rank=0, world=world, start_step=77, end_step=200,
                                   teacher_only=flags, teacher_only_ratio=ratio))
    assert resumed == list(sampler)[77:]
    # with one kind only, the ratio is ignored and the order is the sampler's of before
    plain = RigBatchSampler(lengths, 2, seed=2, end_step=30)
    same = RigBatchSampler(lengths, 2, seed=2, end_step=30, teacher_only=[False] * 4, teacher_only_ratio=ratio)
    assert list(plain) == list(same)
