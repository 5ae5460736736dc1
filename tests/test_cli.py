"""The `fsmde` command as a user types it."""
import subprocess
import sys

from fsmde_ros.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fsmde_ros.cli", *args], capture_output=True, text=True, timeout=120)


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


def test_synth_and_demo_write_the_preview_mosaic(tmp_path):
    import cv2

    assert main(["synth", "--rig", "nuscenes", "--frames", "2", "--out", str(tmp_path / "s"),
                 "--height", "96", "--width", "160"]) == 0
    assert (tmp_path / "s" / "frame_0001.npz").is_file()
    proc = run_cli("demo", "--frames", "1", "--out", str(tmp_path / "demo"), "--height", "96", "--width", "160")
    assert proc.returncode == 0, proc.stderr
    preview = cv2.imread(str(tmp_path / "demo" / "synthetic" / "preview.png"))
    assert preview is not None and preview.shape[0] > 2 * 96 and preview.std() > 20
