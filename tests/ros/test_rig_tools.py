"""`fsmde rig from-bag` and `fsmde rig check` (issue 22 item 4): the presets read back from bags that `fsmde bag`
wrote, and the odd recordings a vehicle gives (five cameras, no /tf_static, a camera without TF)."""
import dataclasses

import numpy as np
import pytest

from fsmde_ros.data.ddad import DDADDataset
from fsmde_ros.data.synthetic import SyntheticSurround
from fsmde_ros.geometry.rig import CameraRig, load_rig
from fsmde_ros.ros.bag import BagWriter, open_bag, write_bag
from fsmde_ros.ros.rig_tools import RigToolError, check_rig, rig_from_bag, write_rig_yaml
from tests.helpers import ddad_fixture, nuscenes_fixture
from tests.helpers.oracle_model import write_oracle_model


def _same_rig(got: CameraRig, want: CameraRig):
    assert got.names == want.names, "ring order"
    for a, b in zip(got.cameras, want.cameras):
        assert (a.image_topic, a.info_topic, a.frame_id, a.width, a.height) == \
            (b.image_topic, b.info_topic, b.frame_id, b.width, b.height)
        np.testing.assert_array_equal(a.K, b.K)  # exact
        np.testing.assert_allclose(a.T_base_cam, b.T_base_cam, atol=1e-6)


def _round_trip(ds, tmp_path):
    bag = write_bag(ds, tmp_path / "bag", limit=1, progress=False)
    rig, notes = rig_from_bag(bag)
    assert notes == []
    _same_rig(rig, ds.rig)
    out = write_rig_yaml(rig, tmp_path / "rig.yaml", notes)
    _same_rig(load_rig(out), ds.rig)  # what the node and RViz take


def test_from_bag_reproduces_the_ddad_rig(tmp_path):
    fx = ddad_fixture.write_ddad_fixture(tmp_path / "ddad")
    _round_trip(DDADDataset(fx.root, split="val"), tmp_path)


def test_from_bag_reproduces_the_nuscenes_rig(tmp_path):
    pytest.importorskip("nuscenes", reason="needs nuscenes-devkit (make setup installs the `nuscenes` extra)")
    from fsmde_ros.data.nuscenes import NuScenesDataset

    fx = nuscenes_fixture.write_nuscenes_fixture(tmp_path / "nusc")
    _round_trip(NuScenesDataset(fx.root, version=nuscenes_fixture.VERSION, split="mini_val"), tmp_path)


def _synthetic_bag(path, rig, compressed=False):
    return write_bag(SyntheticSurround(rig, seed=1, height=24, width=40, frames=1), path, progress=False,
                     compressed=compressed)


def test_a_bag_with_five_cameras_gives_a_five_camera_rig_and_says_so(tmp_path):
    preset = load_rig("nuscenes")
    five = dataclasses.replace(preset, cameras=preset.cameras[:5])
    rig, notes = rig_from_bag(_synthetic_bag(tmp_path / "bag", five, compressed=True))
    assert rig.names == five.resized(40, 24).names
    assert [c.image_topic for c in rig.cameras] == [c.image_topic for c in five.cameras]  # not .../compressed
    assert any("5 cameras, not 6" in n for n in notes)


def _copy(src, dst, keep=lambda topic: True, edit=lambda topic, msg: msg):
    """A copy of bag src without the topics `keep` refuses, messages passed through `edit`."""
    from fsmde_ros.ros import codec

    reader = open_bag(src)
    with BagWriter(dst, "mcap", {}) as w:
        for conn, ns, raw in reader.messages():
            if keep(conn.topic):
                msg = edit(conn.topic, codec.from_cdr(raw, conn.msgtype))
                w.copy(conn, ns, codec.to_cdr(msg) if msg is not None else raw)
    reader.close()
    return dst


def test_a_bag_without_tf_static_is_a_clear_error(tmp_path):
    bag = _copy(_synthetic_bag(tmp_path / "src", "ddad"), tmp_path / "bag", keep=lambda t: t != "/tf_static")
    with pytest.raises(RigToolError, match="no /tf_static"):
        rig_from_bag(bag)


def test_a_camera_without_a_tf_path_is_left_out_and_named(tmp_path):
    preset = load_rig("ddad")
    lost = preset.cameras[2].frame_id

    def drop_one(topic, msg):
        if topic == "/tf_static":
            msg.transforms = [t for t in msg.transforms if t.child_frame_id != lost]
        return msg

    bag = _copy(_synthetic_bag(tmp_path / "src", "ddad"), tmp_path / "bag", edit=drop_one)
    rig, notes = rig_from_bag(bag)
    assert preset.cameras[2].name not in rig.names and len(rig) == 5
    assert any(lost in n and "left out" in n for n in notes)


def test_check_prints_ring_and_overlaps_and_whether_the_model_fits(tmp_path, capsys):
    lines, fits = check_rig(load_rig("ddad"), "models/fsmde_default.onnx")
    assert fits and "exported for this rig ('ddad', 6 views)" in lines[-1]
    assert sum(line.startswith("  ") and " -> " in line for line in lines) == 6 and "CAMERA_01 -> CAMERA_06" in "\n".join(lines)
    lines, fits = check_rig(load_rig("nuscenes"), "models/fsmde_default.onnx")
    assert fits and "exported for rig 'ddad', not 'nuscenes'" in lines[-1]
    five = dataclasses.replace(load_rig("ddad"), cameras=load_rig("ddad").cameras[:5])
    lines, fits = check_rig(five, write_oracle_model(tmp_path / "m.onnx", 6, 16, 24))
    assert not fits and "takes 6 views, the rig has 5 cameras" in lines[-1]
    from fsmde_ros.app.cli import main

    assert main(["rig", "check", "ddad", "--model", "models/fsmde_default.onnx"]) == 0
    assert "exported for this rig" in capsys.readouterr().out
    bag = _synthetic_bag(tmp_path / "bag", "nuscenes")
    assert main(["rig", "from-bag", str(bag), "--out", str(tmp_path / "my_rig.yaml")]) == 0
    assert load_rig(tmp_path / "my_rig.yaml").names == load_rig("nuscenes").names
    assert main(["rig", "from-bag", str(bag), "--out", str(tmp_path / "my_rig.yaml")]) == 2  # never overwritten
