"""nuScenes reader (through nuscenes-devkit) on a tiny v1.0-mini-shaped database with ego motion."""
from __future__ import annotations

import importlib.util
import re
import shutil
import sys

import numpy as np
import pytest

from fsmde_ros.data.nuscenes import NUSCENES_CAMERAS, condition_filter, devkit
from fsmde_ros.data.surround import REQUIRED_KEYS, open_dataset
from fsmde_ros.geometry.rig import load_rig
from tests.helpers import nuscenes_fixture as F

HAVE_DEVKIT = importlib.util.find_spec("nuscenes") is not None
needs_devkit = pytest.mark.skipif(not HAVE_DEVKIT, reason="nuscenes-devkit is not installed (the 'nuscenes' extra: "
                                                          "pip install -c constraints.txt nuscenes-devkit)")


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return F.write_nuscenes_fixture(tmp_path_factory.mktemp("nuscenes"))


@pytest.fixture(scope="module")
def ds(fx):
    from fsmde_ros.data.nuscenes import NuScenesDataset

    return NuScenesDataset(fx.root, version=F.VERSION, split="mini_val")


def _where(ds, i):
    """(scene name, sample index within the scene) of item i."""
    scene = ds[i]["scene"]
    k = [j for j in range(i + 1) if ds._scene_of[j] == scene].index(i)
    return scene, k


def _pixel(name, u, v, z, s=1.0):
    X = F.pixel_to_camera(name, u, v, z)
    fxx, fy, cx, cy = F.CAMERAS[name][:4]
    fxx, fy, cx, cy = s * fxx, s * fy, s * (cx + 0.5) - 0.5, s * (cy + 0.5) - 0.5
    return int(np.floor(fxx * X[0] / X[2] + cx + 0.5)), int(np.floor(fy * X[1] / X[2] + cy + 0.5))


def test_ring_order_is_the_preset_order():
    assert list(NUSCENES_CAMERAS) == load_rig("nuscenes").names == F.CHANNEL_ORDER


def test_condition_filter():
    assert condition_filter("all")("Night, rain")
    assert condition_filter("night")("Night, rain") and not condition_filter("day")("Night, rain")
    assert condition_filter("day-clear")("Day, peds") and not condition_filter("day-clear")("Day, rain")
    assert condition_filter("night-rain")("night, RAIN, big street")
    with pytest.raises(ValueError, match="unknown nuScenes condition"):
        condition_filter("dusk")


def test_missing_devkit_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nuscenes.nuscenes", None)
    with pytest.raises(ImportError, match=r"nuscenes-devkit.*'nuscenes' extra"):
        devkit()


def test_missing_root_is_named(tmp_path):
    from fsmde_ros.data.nuscenes import NuScenesDataset

    with pytest.raises(FileNotFoundError, match="no_such_nuscenes"):
        NuScenesDataset(tmp_path / "no_such_nuscenes")


@needs_devkit
def test_missing_version_and_files_are_named(fx, tmp_path):
    from fsmde_ros.data.nuscenes import NuScenesDataset

    with pytest.raises(FileNotFoundError, match=r"v1.0-trainval.*v1.0-mini"):
        NuScenesDataset(fx.root, version="v1.0-trainval")
    broken = tmp_path / "broken"
    shutil.copytree(fx.root, broken)
    ds = NuScenesDataset(broken, version=F.VERSION, split="mini_val")
    def file_of(i, channel):
        return broken / ds.nusc.get("sample_data", ds.nusc.get("sample", ds.sample_tokens[i])["data"][channel])["filename"]

    lidar = file_of(0, F.LIDAR)
    lidar.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(lidar.name)):
        ds[0]
    image = file_of(1, "CAM_BACK")
    image.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(image.name)):
        ds[1]
    (broken / F.VERSION / "ego_pose.json").unlink()
    with pytest.raises(FileNotFoundError, match="ego_pose.json"):
        NuScenesDataset(broken, version=F.VERSION)
    shutil.rmtree(broken / "maps")
    (broken / F.VERSION / "ego_pose.json").write_text((fx.root / F.VERSION / "ego_pose.json").read_text())
    with pytest.raises(FileNotFoundError, match="map mask"):
        NuScenesDataset(broken, version=F.VERSION)


def test_a_directory_that_is_not_nuscenes_says_what_was_expected(tmp_path):
    from fsmde_ros.data.nuscenes import NuScenesDataset

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"tables for version 'v1.0-mini' not found: .*empty.v1.0-mini .*"
                                                r"none.*expected a nuScenes root .*sample\.json"):
        NuScenesDataset(tmp_path / "empty")
    tables = tmp_path / "fake" / "v1.0-mini"
    tables.mkdir(parents=True)
    (tables / "sample.json").write_text('{"not": "a table"}')
    with pytest.raises(FileNotFoundError, match=re.escape(str(tables)) + r" is not a nuScenes table directory: "
                                                r"it lacks scene\.json, sample_data\.json"):
        NuScenesDataset(tmp_path / "fake")


@needs_devkit
def test_a_sample_without_a_camera_is_named(fx):
    from fsmde_ros.data.nuscenes import NuScenesDataset

    ds = NuScenesDataset(fx.root, version=F.VERSION, split="mini_val")
    sample = ds.nusc.get("sample", ds.sample_tokens[1])
    del sample["data"]["CAM_BACK"]
    with pytest.raises(ValueError, match=rf"nuScenes sample {sample['token']} .*has no keyframe for CAM_BACK in "
                                         r".*sample_data\.json"):
        ds[1]
    first = ds.nusc.get("sample", ds.sample_tokens[0])
    del first["data"]["CAM_BACK"]
    with pytest.raises(ValueError, match=rf"sample {first['token']} .*no keyframe for CAM_BACK"):
        NuScenesDataset(fx.root, version=F.VERSION, split="mini_val", nusc=ds.nusc)


@needs_devkit
def test_corrupt_image_and_lidar_files_are_named(fx, tmp_path):
    from fsmde_ros.data.dataset_files import CorruptFileError
    from fsmde_ros.data.nuscenes import NuScenesDataset

    broken = tmp_path / "broken"
    shutil.copytree(fx.root, broken)
    ds = NuScenesDataset(broken, version=F.VERSION, split="mini_val")

    def file_of(i, channel):
        return broken / ds.nusc.get("sample_data", ds.nusc.get("sample", ds.sample_tokens[i])["data"][channel])["filename"]

    image = file_of(0, "CAM_BACK")
    image.write_bytes(b"\xff\xd8\xff garbage, not a JPEG")
    with pytest.raises(CorruptFileError, match=r"corrupt image file .*" + re.escape(image.name)):
        ds[0]
    lidar = file_of(1, F.LIDAR)
    lidar.write_bytes(b"\x00" * 7)
    with pytest.raises(CorruptFileError, match=r"corrupt lidar file .*" + re.escape(lidar.name)):
        ds[1]


@needs_devkit
def test_splits_and_conditions(fx, ds):
    from fsmde_ros.data.nuscenes import NuScenesDataset

    assert len(ds) == 3 and [s["name"] for s in ds.scenes] == ["scene-0103", "scene-0916"]
    nusc = ds.nusc  # share the loaded tables
    assert len(NuScenesDataset(fx.root, split="val", nusc=nusc)) == 3  # val on a mini version = mini_val
    assert len(NuScenesDataset(fx.root, split="mini_train", nusc=nusc)) == 1
    assert len(NuScenesDataset(fx.root, split="train", nusc=nusc)) == 1
    assert len(NuScenesDataset(fx.root, split="all", nusc=nusc)) == 4
    night = NuScenesDataset(fx.root, split="mini_val", condition="night", nusc=nusc)
    assert len(night) == 1 and night[0]["scene"] == "scene-0916"
    assert len(NuScenesDataset(fx.root, split="all", condition="day", nusc=nusc)) == 3
    with pytest.raises(ValueError, match="unknown nuScenes split"):
        NuScenesDataset(fx.root, split="nope", nusc=nusc)
    with pytest.raises(ValueError, match="no samples"):
        NuScenesDataset(fx.root, split="mini_train", condition="night", nusc=nusc)


@needs_devkit
def test_rig_is_the_fixture_calibration(fx, ds):
    preset = load_rig("nuscenes")
    assert ds.rig.name == "nuscenes" and ds.rig.names == list(NUSCENES_CAMERAS)
    assert (ds.height, ds.width) == (F.HEIGHT, F.WIDTH)
    for cam, ref in zip(ds.rig.cameras, preset.cameras):
        np.testing.assert_allclose(cam.K, F.K_of(cam.name), atol=1e-12)
        np.testing.assert_allclose(cam.T_base_cam, fx.T_ego_cam[cam.name], atol=1e-9)
        assert (cam.image_topic, cam.info_topic, cam.frame_id) == (ref.image_topic, ref.info_topic, ref.frame_id)
    assert abs(ds.rig.cameras[0].yaw_deg - F.CAMERAS["CAM_FRONT"][5]) < 1e-6


@needs_devkit
def test_items_keys_stamps_poses_images(fx, ds):
    V, H, W = 6, F.HEIGHT, F.WIDTH
    for i in range(len(ds)):
        item = ds[i]
        scene, k = _where(ds, i)
        for key in REQUIRED_KEYS + ("stamps", "T_world_base", "T_world_base_cams", "index", "lidar_points"):
            assert key in item, key
        assert item["images"].shape == (V, H, W, 3) and item["images"].dtype == np.uint8
        assert item["lidar_depth"].shape == (V, H, W) and item["lidar_depth"].dtype == np.float32
        assert item["K"].shape == (V, 3, 3) and item["T_base_cam"].shape == (V, 4, 4) and item["index"] == i
        assert item["stamp"] == pytest.approx(fx.lidar_stamps[(scene, k)], abs=1e-6)
        np.testing.assert_allclose(item["stamps"], [fx.cam_stamps[(scene, k, c)] for c in NUSCENES_CAMERAS], atol=1e-6)
        assert np.all(item["stamps"] > item["stamp"])  # every camera fires after the lidar here
        np.testing.assert_allclose(item["T_world_base"], fx.ego_at_lidar[(scene, k)], atol=1e-6)
        np.testing.assert_allclose(item["T_world_base_cams"], [fx.ego_at_cam[(scene, k, c)] for c in NUSCENES_CAMERAS],
                                   atol=1e-6)
        np.testing.assert_allclose(item["lidar_points"], fx.lidar_ego[(scene, k)], atol=1e-4)
        for c, name in enumerate(NUSCENES_CAMERAS):
            np.testing.assert_array_equal(item["images"][c], fx.images[(scene, k, name)])


@needs_devkit
def test_lidar_gt_accounts_for_ego_motion(ds):
    for i in range(len(ds)):
        item = ds[i]
        depth = item["lidar_depth"]
        t_lidar = item["stamp"] - F.T0_US * 1e-6
        for name, u, v, z in F.CHECKS:
            c = list(NUSCENES_CAMERAS).index(name)
            assert depth[c, v, u] == pytest.approx(z, abs=1e-3), (i, name)
            nu, nv = F.naive_pixel(name, u, v, z, round(t_lidar, 6))
            if name == "CAM_FRONT_RIGHT":  # 50 ms after the lidar at 15 m/s: ignoring ego motion is pixels off
                assert np.hypot(nu - u, nv - v) >= 2.0
        # the occluded pair: nearest return wins; every designed pixel and nothing else
        c = list(NUSCENES_CAMERAS).index(F.OCCLUDED[0])
        assert depth[c, F.OCCLUDED[2], F.OCCLUDED[1]] == pytest.approx(7.0, abs=1e-3)
        assert sum(np.count_nonzero(d) for d in depth) == len(F.CHECKS)


@needs_devkit
def test_resize_and_open_dataset(fx):
    H, W = F.HEIGHT // 2, F.WIDTH // 2
    small = open_dataset(f"nuscenes:{fx.root}?version={F.VERSION}&split=mini_val", height=H, width=W)
    assert len(small) == 3 and (small.height, small.width) == (H, W)
    item = small[0]
    assert item["images"].shape == (6, H, W, 3) and item["lidar_depth"].shape == (6, H, W)
    for c, name in enumerate(NUSCENES_CAMERAS):
        np.testing.assert_allclose(small.rig.cameras[c].K, item["K"][c], atol=1e-12)
        assert item["K"][c][0, 0] == pytest.approx(F.CAMERAS[name][0] / 2)
        assert item["K"][c][0, 2] == pytest.approx((F.CAMERAS[name][2] + 0.5) / 2 - 0.5)
    for name, u, v, z in F.CHECKS:
        c = list(NUSCENES_CAMERAS).index(name)
        us, vs = _pixel(name, u, v, z, 0.5)
        assert item["lidar_depth"][c, vs, us] == pytest.approx(z, abs=1e-3), name
    assert len(open_dataset(f"nuscenes:{fx.root}?version={F.VERSION}&split=mini_val&stride=2", H, W)) == 2
    with pytest.raises(ValueError, match="unknown options"):
        open_dataset(f"nuscenes:{fx.root}?versoin=v1.0-mini")
