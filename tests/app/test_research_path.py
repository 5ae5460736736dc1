"""The research path on real-format data at the datasets' own resolutions (issue 16, item 3).

A DDAD scene in the DGP layout at 1936x1216 and a nuScenes v1.0-mini database at 1600x900 (the test
fixtures, enlarged), then: fsmde teach (a tiny random Depth Anything V2 through transformers, with
features) -> fsmde distill on both rigs -> fsmde eval with each dataset's protocol (DDAD at 384x640
capped at 200 m, nuScenes at 352x640 capped at 80 m) -> fsmde export -> fsmde bag (DDAD at its own
size, its 2464 clock re-based) -> fsmde process. Each step's output is checked, not only its exit code.
"""
import json

import numpy as np
import pytest
import yaml

pytest.importorskip("transformers", reason="needs transformers (the `train` extra)")
pytest.importorskip("rosbags", reason="needs rosbags (the `ros` extra)")
pytest.importorskip("nuscenes", reason="needs nuscenes-devkit (the `nuscenes` extra)")

from rosbags.rosbag2 import Reader  # noqa: E402

from fsmde_ros.app.cli import main  # noqa: E402
from fsmde_ros.model.checkpoint import read_checkpoint  # noqa: E402
from fsmde_ros.model.contract import read_model_info  # noqa: E402
from fsmde_ros.ros import codec  # noqa: E402
from tests.helpers.ddad_fixture import write_ddad_fixture  # noqa: E402
from tests.helpers.nuscenes_fixture import write_nuscenes_fixture  # noqa: E402

H, W = 96, 160  # training resolution (small: 2 cores)


def _bag(path):
    out = {}
    with Reader(path) as reader:
        for conn, _, raw in reader.messages():
            out.setdefault(conn.topic, []).append(codec.from_cdr(raw, conn.msgtype))
    return out


def test_teach_distill_eval_export_bag_process_on_native_ddad_and_nuscenes(tmp_path, capsys):
    ddad = write_ddad_fixture(tmp_path / "ddad", val_frames=2, train_frames=1, size=(1936, 1216))
    write_nuscenes_fixture(tmp_path / "nusc", size=(1600, 900))
    ddad_val = f"ddad:{ddad.root / 'ddad.json'}?split=val"
    nusc_val = f"nuscenes:{tmp_path / 'nusc'}?version=v1.0-mini&split=mini_val"
    cache = str(tmp_path / "cache")

    from fsmde_ros.model.teachers import DepthAnythingTeacher

    DepthAnythingTeacher.from_config().model.save_pretrained(tmp_path / "da_tiny")
    assert main(["teach", "--dataset", ddad_val, nusc_val, "--teacher", f"depth_anything:{tmp_path / 'da_tiny'}",
                 "--out", str(tmp_path / "teacher"), "--height", str(H), "--width", str(W), "--cache-dir", cache,
                 "--features"]) == 0
    teacher_dirs = [p for p in (tmp_path / "teacher").iterdir() if p.is_dir()]
    assert len(teacher_dirs) == 2, "one teacher cache per dataset"

    cfg = {"train": [ddad_val, nusc_val], "teacher": str(tmp_path / "teacher"), "height": H, "width": W,
           "student_overrides": {"num_bins": 8}, "steps": 3, "warmup_steps": 1, "log_every": 1, "ckpt_every": 1000,
           "image_every": 1000, "batch_size": 1, "workers": 1, "eval": [nusc_val], "eval_every": 3, "eval_sets": 3,
           "out_dir": str(tmp_path / "run"), "cache_dir": cache}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["distill", "--config", str(tmp_path / "cfg.yaml")]) == 0
    said = capsys.readouterr().out
    assert "[distill] training cache: 5 sets" in said, said     # 2 DDAD val + 3 nuScenes mini_val sets
    ckpt = tmp_path / "run" / "student.pt"
    assert read_checkpoint(ckpt)["extra"]["step"] == 3 and (tmp_path / "run" / "student_best.pt").exists()
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["steps"] == 3 and np.isfinite(summary["last_terms"]["silog"])
    assert {"ci_kl", "vr_feat"} <= set(summary["last_terms"]), "the teacher's outputs and features were used"

    for spec, (h, w), cap in ((ddad_val, (384, 640), 200.0), (nusc_val, (352, 640), 80.0)):
        out = tmp_path / f"eval_{h}.json"
        assert main(["eval", "--checkpoint", str(ckpt), "--dataset", spec, "--height", str(h), "--width", str(w),
                     "--json", str(out), "--cache-dir", cache]) == 0
        r = json.loads(out.read_text())
        assert r["max_depth"] == cap and r["sets"] == (2 if cap == 200.0 else 3) and r["gt"] == "lidar"
        assert np.isfinite(r["metric"]["abs_rel"]) and r["metric"]["abs_rel"] > 0, r["metric"]

    onnx_path = tmp_path / "student.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(onnx_path), "--rig", "ddad",
                 "--height", str(H), "--width", str(W)]) == 0
    info = read_model_info(onnx_path)
    assert (info["views"], info["height"], info["width"]) == (6, H, W)

    bag = tmp_path / "ddad_bag"
    assert main(["bag", "--dataset", ddad_val, "--out", str(bag), "--height", "1216", "--width", "1936"]) == 0
    inputs = _bag(bag)
    from fsmde_ros.geometry.rig import load_rig

    front = inputs[load_rig("ddad").cameras[0].image_topic]
    assert len(front) == 2 and (front[0].width, front[0].height) == (1936, 1216)
    capsys.readouterr()
    assert main(["process", str(bag), "--out", str(tmp_path / "depth_bag"), "--model", str(onnx_path),
                 "--backend", "onnxruntime", "--slop", "0.1", "--no-progress"]) == 0  # the fixture's cameras
    # fire up to 83 ms after the lidar (real DDAD's are hardware-triggered, within a few ms)
    assert "2 sets (0 partial, 0 failed" in capsys.readouterr().out
    outputs = _bag(tmp_path / "depth_bag")
    depth_topics = [t for t in outputs if t.endswith("/depth")]
    assert len(depth_topics) == 6
    for t in depth_topics:
        msgs = outputs[t]
        assert len(msgs) == 2 and msgs[0].encoding == "32FC1" and (msgs[0].height, msgs[0].width) == (H, W)
        d = codec.image_to_depth(msgs[0])
        assert np.isfinite(d).mean() > 0.5 and np.nanmax(d) <= 200.0
    in_stamps = sorted(codec.header_ns(m.header) for m in front)
    out_stamps = sorted(codec.header_ns(m.header) for m in outputs[depth_topics[0]])
    assert len(set(out_stamps)) == 2 and abs(out_stamps[0] - in_stamps[0]) < 0.2e9  # the bag's re-based clock
