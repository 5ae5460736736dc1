"""`bag:` datasets (issue 22 item 5): a recording of your car read as the node reads it, for teach, distill, eval."""
import json

import numpy as np
import pytest
import yaml

from fsmde_ros.app.cli import main
from fsmde_ros.data.surround import open_dataset
from fsmde_ros.data.synthetic import SyntheticSurround
from fsmde_ros.ros.bag import write_bag
from fsmde_ros.ros.bag_dataset import BagSurround

H, W, FRAMES = 48, 80, 4


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A 4-set nuScenes-rig recording with CameraInfo, /tf_static and a lidar PointCloud2 in base_link."""
    root = tmp_path_factory.mktemp("bagds")
    world = SyntheticSurround("nuscenes", seed=3, height=H, width=W, frames=FRAMES)
    return world, write_bag(world, root / "drive", with_lidar=True, progress=False)


def test_a_bag_reads_back_as_the_surround_sets_it_recorded(recording):
    world, bag = recording
    ds = open_dataset(f"bag:{bag}?lidar=/lidar/points", H, W)
    assert isinstance(ds, BagSurround) and len(ds) == FRAMES and ds.rig.names == world.rig.names
    for i in (0, FRAMES - 1):
        item, truth = ds[i], world[i]
        np.testing.assert_array_equal(item["images"], truth["images"])
        np.testing.assert_allclose(item["K"], truth["K"], atol=1e-9)
        np.testing.assert_allclose(item["T_base_cam"], truth["T_base_cam"], atol=1e-6)  # from /tf_static
        assert item["stamp"] == pytest.approx(truth["stamp"], abs=1e-6)
        both = (item["lidar_depth"] > 0) & (truth["lidar_depth"] > 0)
        assert both.sum() > 0.9 * (truth["lidar_depth"] > 0).sum()  # the lidar, projected again with TF
        agree = np.isclose(item["lidar_depth"][both], truth["lidar_depth"][both], rtol=1e-4)
        assert agree.mean() > 0.9  # (where two cameras' returns land on one pixel the nearest wins: a few differ)
    no_lidar = open_dataset(f"bag:{bag}", H, W)
    assert not no_lidar[0]["lidar_depth"].any(), "without a lidar topic the sets have no GT (teacher-only)"
    with pytest.raises(ValueError, match="no lidar topic /velodyne"):
        open_dataset(f"bag:{bag}?lidar=/velodyne", H, W)
    with pytest.raises(ValueError, match="unknown options"):
        open_dataset(f"bag:{bag}?lidar_topic=/x", H, W)


def test_teach_then_distill_from_a_bag_with_and_without_lidar(recording, tmp_path, capsys):
    """Acceptance (issue 22): a few distillation steps from a bag: spec with a lidar topic and from one without."""
    _, bag = recording
    from fsmde_ros.model.teachers import DepthAnythingTeacher

    DepthAnythingTeacher.from_config().model.save_pretrained(tmp_path / "da_tiny")
    labelled, camera_only = f"bag:{bag}?lidar=/lidar/points", f"bag:{bag}"
    cache = str(tmp_path / "cache")
    assert main(["teach", "--dataset", labelled, camera_only, "--teacher", f"depth_anything:{tmp_path / 'da_tiny'}",
                 "--out", str(tmp_path / "teacher"), "--height", str(H), "--width", str(W), "--cache-dir", cache,
                 "--features"]) == 0
    cfg = {"train": [labelled, camera_only], "teacher": str(tmp_path / "teacher"), "height": H, "width": W,
           "student": "fsmde_lcnet", "student_overrides": {"num_bins": 8}, "steps": 4, "warmup_steps": 1,
           "log_every": 1, "ckpt_every": 1000, "image_every": 1000, "workers": 0, "out_dir": str(tmp_path / "run"),
           "cache_dir": cache, "teacher_only_ratio": 0.5}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["distill", "--config", str(tmp_path / "cfg.yaml")]) == 0
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["steps"] == 4 and summary["teacher_only_steps"] == 2
    assert "1 teacher-only dataset(s)" in capsys.readouterr().out
