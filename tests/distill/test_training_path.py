"""The distillation trainer: learning happens, resume is exact, DDP keeps ranks in step, configs fail fast."""
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from fsmde_ros.distill.config import DistillConfig
from fsmde_ros.distill.trainer import TrainConfig, Trainer, run_distillation
from fsmde_ros.model.checkpoint import read_checkpoint
from tests.helpers.ros_env import REPO

TINY = dict(train=["synthetic:nuscenes?seed=5&frames=3", "synthetic:ddad?seed=6&frames=3"], height=64, width=96,
            student_overrides={"num_bins": 8}, steps=6, warmup_steps=1, log_every=1, ckpt_every=1000,
            image_every=1000, lr=1e-3)


@pytest.fixture()
def cfg(tmp_path):
    return TrainConfig.from_dict({**TINY, "out_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")})


def _weights(path):
    return read_checkpoint(path)["state_dict"]


def test_a_few_steps_lower_the_loss_on_a_tiny_synthetic_set(cfg):
    torch.manual_seed(0)
    trainer = Trainer(cfg)
    batch = next(trainer.batches(1))
    from fsmde_ros.distill.losses import distillation_loss

    def loss():
        trainer.model.train()  # batch statistics, as in training (running stats lag far behind)
        with torch.no_grad():
            out = trainer.model(batch["images"], batch["focal_px"])
            h, w = out["probs"].shape[-2:]
            return float(distillation_loss(out, batch, trainer.loss_cfg, trainer._overlap(batch["rig"], h, w))[0])

    before = loss()
    for _ in range(15):  # overfit one set
        trainer.train_step(batch)
    assert loss() < 0.9 * before


def test_resume_continues_to_identical_weights(tmp_path):
    base = {**TINY, "cache_dir": str(tmp_path / "cache")}
    straight = run_distillation(TrainConfig.from_dict({**base, "out_dir": str(tmp_path / "a")}), progress=False)
    interrupted = Trainer(TrainConfig.from_dict({**base, "out_dir": str(tmp_path / "b")}))
    interrupted.train(steps=3, progress=False)  # stops (and checkpoints) half-way through the 6-step schedule
    resumed = run_distillation(TrainConfig.from_dict({**base, "out_dir": str(tmp_path / "b")}), progress=False)
    a, b = _weights(straight), _weights(resumed)
    assert read_checkpoint(resumed)["extra"]["step"] == 6
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs after resume")
    saved = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    assert saved["steps"] == 6 and saved["height"] == 64


def _torchrun(tmp_path, cfg, name, *extra):
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(29500 + (os.getpid() + len(name)) % 1000), "-m", "fsmde_ros", "distill", "--config",
                           str(tmp_path / f"{name}.yaml"), *extra], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_two_process_ddp_keeps_weights_identical_and_resumes_exactly(tmp_path):
    """Two ranks, two loader workers each: the ranks stay identical, and a run stopped at step 2 and resumed ends
    with the weights of the run that went straight through."""
    base = {**TINY, "steps": 4, "workers": 2, "cache_dir": str(tmp_path / "cache")}
    _torchrun(tmp_path, {**base, "out_dir": str(tmp_path / "ddp")}, "straight")
    digests = [(tmp_path / "ddp" / f"params_rank{r}.sha256").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    assert read_checkpoint(tmp_path / "ddp" / "student.pt")["extra"]["step"] == 4
    cut = {**base, "out_dir": str(tmp_path / "cut")}
    _torchrun(tmp_path, cut, "first_half", "--until", "2")   # stopped at step 2, as a time-sliced job is
    assert read_checkpoint(tmp_path / "cut" / "student.pt")["extra"]["step"] == 2
    _torchrun(tmp_path, cut, "resumed")
    a, b = _weights(tmp_path / "ddp" / "student.pt"), _weights(tmp_path / "cut" / "student.pt")
    assert read_checkpoint(tmp_path / "cut" / "student.pt")["extra"]["step"] == 4
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs after resume")


def test_config_with_an_unknown_key_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TINY, "learning_rate": 0.1}))
    with pytest.raises(ValueError, match=r"bad.yaml: unknown training config keys \['learning_rate'\]"):
        TrainConfig.load(path)
    with pytest.raises(ValueError, match="w_nonsense"):
        TrainConfig.from_dict({**TINY, "distill": {"w_nonsense": 1.0}})


@pytest.mark.parametrize("text, message", [
    ("steps: -4\n", "steps must be > 0, got -4"),  # issue 14: exited 0 with an untrained checkpoint
    ("steps: abc\n", "steps must be an int, got 'abc'"),
    ("lr: 0\n", "lr must be > 0"),
    ("train: [synthetic:ddad\n", "is not valid YAML"),
    ("- a list\n", "a training config is a mapping"),
])
def test_a_bad_config_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    """Regression (issue 14, items 14 and 16): broken YAML, `steps: abc` and `steps: -4` ended in a traceback
    or in a silent untrained checkpoint."""
    from fsmde_ros.app.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["distill", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_steps_0_on_the_command_line_is_refused_not_the_full_schedule(tmp_path, capsys):
    """Regression (issue 14, item 14): `fsmde distill --steps 0` ran the config's whole schedule."""
    from fsmde_ros.app.cli import main

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "out_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "c")}))
    assert main(["distill", "--config", str(path), "--steps", "0"]) == 2
    assert "steps must be > 0, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_an_unknown_student_is_one_line_and_exit_2(tmp_path, capsys):
    from fsmde_ros.app.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**TINY, "student": "resnet999", "out_dir": str(tmp_path / "run"),
                                    "cache_dir": str(tmp_path / "c")}))
    assert main(["distill", "--config", str(path)]) == 2
    assert "resnet999" in capsys.readouterr().err
    assert main(["export", "--student", "resnet999", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "resnet999" in capsys.readouterr().err


def test_ctrl_c_saves_a_resumable_checkpoint_and_exits_130(cfg, monkeypatch, capsys):
    """Regression (issue 14, item 14): Ctrl-C saved nothing (up to ckpt_every steps lost)."""
    trainer = Trainer(cfg)
    real_step = trainer.train_step

    def step_then_interrupt(batch):
        if trainer.step == 3:
            raise KeyboardInterrupt
        return real_step(batch)

    monkeypatch.setattr(trainer, "train_step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(progress=False)
    assert read_checkpoint(trainer.out / "student.pt")["extra"]["step"] == 3
    resumed = Trainer(cfg)
    assert resumed.resume() and resumed.step == 3


def test_shipped_recipes_load_and_chain(tmp_path):
    """The configs in config/distill/ are what the model card cites: they must stay loadable, and each
    warm start must point at another recipe's output."""
    recipes = {p.name: TrainConfig.load(p) for p in sorted((REPO / "config" / "distill").glob("*.yaml"))}
    assert {"synthetic.yaml", "synthetic_supervised.yaml", "synthetic_distill.yaml"} <= set(recipes)
    outputs = {f"{c.out_dir}/student.pt" for c in recipes.values()}
    for name, c in recipes.items():
        assert c.init_checkpoint in (None, *outputs), f"{name}: warm start {c.init_checkpoint} is no recipe's output"
    bundled = recipes["synthetic_distill.yaml"]
    assert bundled.distill == DistillConfig()  # the bundled student: the full method ...
    assert bundled.teacher_only_ratio > 0 and any("gt=none" in spec for spec in bundled.train)  # ... + teacher-only worlds


def test_dense_gt_source_supervises_every_pixel_with_depth(tmp_path):
    base = {**TINY, "cache_dir": str(tmp_path / "cache"), "out_dir": str(tmp_path / "run")}
    lidar = next(Trainer(TrainConfig.from_dict(base)).batches(1))["gt"]
    dense = next(Trainer(TrainConfig.from_dict({**base, "gt_source": "depth"})).batches(1))["gt"]
    assert torch.isfinite(dense).all()  # sky (inf) becomes 0 = no GT
    assert (dense > 0).sum() > 2 * (lidar > 0).sum()  # (at 64x96 the 32 beams cover a third of the pixels)
    both = (lidar > 0) & (dense > 0)
    assert torch.allclose(lidar[both], dense[both], rtol=0.05)  # the lidar returns are samples of the same depth
    with pytest.raises(ValueError, match="gt_source"):
        TrainConfig.from_dict({**base, "gt_source": "radar"})


def test_teach_then_distill_from_the_cached_teacher_then_eval(tmp_path):
    """The researcher's path: fsmde teach (a Depth Anything V2 from a local folder), fsmde distill
    reading that cache, fsmde export, fsmde eval writing JSON."""
    import json

    from fsmde_ros.app.cli import main
    from fsmde_ros.model.teachers import DepthAnythingTeacher

    teacher_dir = tmp_path / "da_tiny"
    DepthAnythingTeacher.from_config().model.save_pretrained(teacher_dir)
    spec = "synthetic:nuscenes?seed=7&frames=2"
    cache = str(tmp_path / "cache")
    assert main(["teach", "--dataset", spec, "--teacher", f"depth_anything:{teacher_dir}", "--out",
                 str(tmp_path / "teacher"), "--height", "64", "--width", "96", "--cache-dir", cache, "--features"]) == 0
    cfg = {**TINY, "train": [spec], "teacher": str(tmp_path / "teacher"), "steps": 2,
           "out_dir": str(tmp_path / "run"), "cache_dir": cache}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["distill", "--config", str(tmp_path / "cfg.yaml")]) == 0
    ckpt = tmp_path / "run" / "student.pt"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "s.onnx"), "--rig", "nuscenes",
                 "--height", "64", "--width", "96"]) == 0
    assert main(["eval", "--onnx", str(tmp_path / "s.onnx"), "--dataset", "synthetic:nuscenes?seed=9&frames=2",
                 "--json", str(tmp_path / "eval.json"), "--cache-dir", cache, "--plot", str(tmp_path / "sp.png")]) == 0
    results = json.loads((tmp_path / "eval.json").read_text())
    u = results["uncertainty"]  # the sparsification protocol, and its picture
    assert 0 <= u["ause_random"] <= 1 and u["images"] > 0 and -1 <= u["spearman"] <= 1
    import cv2

    assert cv2.imread(str(tmp_path / "sp.png")).shape == (400, 640, 3)
    assert results["rig"] == "nuscenes" and results["sets"] == 2 and results["max_depth"] == 80.0
    assert set(results["metric"]["per_camera"]) == {"CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK",
                                                    "CAM_BACK_LEFT", "CAM_FRONT_LEFT"}
    assert 0 < results["metric"]["abs_rel"] and 0 <= results["median_scaled"]["a1"] <= 1


def test_distill_on_labelled_and_teacher_only_worlds_skips_the_gt_terms_there_and_says_so(tmp_path, capsys):
    """Issue 21 item 3: a camera-only recording (synthetic gt=none) trains by the teacher alone."""
    cfg = TrainConfig.from_dict({**TINY, "train": ["synthetic:nuscenes?seed=5&frames=3",
                                                   "synthetic:ddad?seed=6&frames=3&gt=none"],
                                 "teacher_only_ratio": 0.5, "steps": 4, "workers": 0,
                                 "out_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")})
    run_distillation(cfg, progress=False)
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["teacher_only_steps"] == 2
    assert summary["skipped_terms"] == {"silog": 2, "bin_nll": 2, "sigma_nll": 2, "ci_depth": 2}
    out = capsys.readouterr().out
    assert "1 teacher-only dataset(s) (no GT), 50% of the steps" in out and "silog" in out
