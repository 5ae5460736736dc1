"""The `fsmde` command as a user types it."""
import pytest
import subprocess
import sys

from fsmde_ros.app.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fsmde_ros", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_subcommands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("rig", "synth", "demo"):
        assert cmd in proc.stdout


def test_rig_show_prints_the_cameras(capsys):
    assert main(["rig", "show", "ddad", "--width", "640", "--height", "384"]) == 0
    out = capsys.readouterr().out
    assert "CAMERA_01" in out and "640x384" in out and "CAMERA_05<->CAMERA_01" in out


def test_unknown_rig_is_a_clear_error_with_exit_code_2():
    proc = run_cli("rig", "show", "kitti")
    assert proc.returncode == 2
    assert "no rig preset 'kitti'" in proc.stderr and "ddad, nuscenes" in proc.stderr


def test_synth_writes_frames_and_the_preview_mosaic(tmp_path):
    import cv2

    assert main(["synth", "--rig", "nuscenes", "--frames", "2", "--out", str(tmp_path / "s"),
                 "--height", "96", "--width", "160"]) == 0
    assert (tmp_path / "s" / "frame_0001.npz").is_file()
    preview = cv2.imread(str(tmp_path / "s" / "preview.png"))
    assert preview is not None and preview.shape[0] > 2 * 96 and preview.std() > 20


def test_synth_into_a_folder_with_an_earlier_run_refuses_or_replaces_it_whole(tmp_path, capsys):
    """Regression (issue 14, item 15): a second `fsmde synth` into the same folder kept the earlier run's
    stale frames (here frame_0001 of a 2-frame run beside a 1-frame run)."""
    out = str(tmp_path / "s")
    args = ["synth", "--rig", "nuscenes", "--out", out, "--height", "48", "--width", "80"]
    assert main([*args, "--frames", "2"]) == 0
    assert main([*args, "--frames", "1"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main([*args, "--frames", "1", "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "s").glob("frame_*.npz")) == ["frame_0000.npz"]


def test_export_writes_a_verified_onnx_from_a_checkpoint(tmp_path):
    import torch

    from fsmde_ros.model.contract import read_model_info
    from fsmde_ros.model.checkpoint import save_student
    from fsmde_ros.model.student import create_student

    torch.manual_seed(0)
    ckpt = save_student(create_student("fsmde_mnv3l", num_bins=8), tmp_path / "s.pt")
    proc = run_cli("export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "s.onnx"), "--rig", "nuscenes",
                   "--height", "64", "--width", "96")
    assert proc.returncode == 0, proc.stderr
    assert "relative error: depth" in proc.stdout
    info = read_model_info(tmp_path / "s.onnx")
    assert (info["views"], info["height"], info["width"]) == (6, 64, 96)
    assert info["metadata"]["rig"] == "nuscenes" and info["metadata"]["source"] == str(ckpt)
    bad = run_cli("export", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.onnx"))
    assert bad.returncode == 2 and "missing.pt not found" in bad.stderr


def test_ctrl_c_in_a_command_exits_130_with_one_line_not_a_traceback(monkeypatch, capsys, tmp_path):
    from fsmde_ros.ros import process

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(process, "process_bag", interrupted)
    assert main(["process", str(tmp_path / "bag"), "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert "fsmde process: interrupted" in err and "Traceback" not in err


def test_a_user_error_is_one_line_and_exit_2_but_a_bug_keeps_its_traceback(monkeypatch, capsys, tmp_path):
    """Regression (issue 13): `fsmde` caught bare ValueError/RuntimeError, so an internal bug exited 2 as if it
    were the user's mistake. Now only FsmdeError is the user's; anything else propagates (exit 1, traceback)."""
    from fsmde_ros.errors import ConfigError
    from fsmde_ros.ros import process

    def bad_parameter(*args, **kwargs):
        raise ConfigError("parameter slop must be in [0, 1], got 2.0")

    def bug(*args, **kwargs):
        raise ValueError("an index went wrong inside fsmde_ros")

    monkeypatch.setattr(process, "process_bag", bad_parameter)
    assert main(["process", str(tmp_path / "bag"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == "fsmde process: error: parameter slop must be in [0, 1], got 2.0"
    monkeypatch.setattr(process, "process_bag", bug)
    with pytest.raises(ValueError, match="an index went wrong"):
        main(["process", str(tmp_path / "bag"), "--out", str(tmp_path / "out")])


def test_the_demo_respects_ros_domain_id_and_otherwise_stays_in_the_safe_range():
    """Regression (issue 14, item 17): the demo picked a random domain in 100-200 and ignored ROS_DOMAIN_ID."""
    from fsmde_ros.app.demo import DemoError, choose_domain

    assert choose_domain({"ROS_DOMAIN_ID": "42"}) == 42
    assert all(0 <= choose_domain({}) <= 101 for _ in range(200))
    with pytest.raises(DemoError, match="not a DDS domain id"):
        choose_domain({"ROS_DOMAIN_ID": "abc"})


def test_teach_with_a_hub_id_while_offline_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    """Regression (issue 14, item 16): `fsmde teach` with a hub id and no network ended in a traceback."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network here either way; this makes it quick
    rc = main(["teach", "--dataset", "synthetic:ddad?frames=1", "--teacher", "depth_anything:nobody/no-such-model",
               "--out", str(tmp_path / "t"), "--cache-dir", str(tmp_path / "c"), "--height", "28", "--width", "42"])
    err = capsys.readouterr().err
    assert rc == 2 and "could not load Depth Anything 'nobody/no-such-model' as a hub id" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
