"""Student network: bin-head semantics, focal scaling, shapes, checkpoints."""
import pickle

import pytest
import torch

from fsmde_ros.model.bins import DepthBinHead, relative_grid
from fsmde_ros.model.checkpoint import CheckpointError, load_student, save_student
from fsmde_ros.model.config import StudentConfig
from fsmde_ros.model.student import STUDENTS, create_student

H, W = 64, 96  # small but divisible by 32, as the exported resolutions are
V = 6


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return create_student("fsmde_mnv3l", num_bins=16).eval()


def _inputs(b=1, focal=250.0):
    torch.manual_seed(1)
    return torch.rand(b, V, 3, H, W), torch.full((b, V), focal)


def test_bin_head_depth_is_expectation_over_centres_and_depth_std_is_depth_times_sigma():
    torch.manual_seed(0)
    head = DepthBinHead(8, 5, num_bins=10, min_depth_m=0.5, max_depth_m=100.0, canonical_focal_px=200.0)
    out = head(torch.randn(3, 8, 4, 6) * 5, torch.randn(3, 5) * 5, torch.full((3,), 200.0))
    c = out["centres"]
    assert torch.all(c[:, 1:] > c[:, :-1]), "centres increase"
    probs = out["probs"].permute(0, 3, 1, 2)  # the head keeps probabilities channels-last
    expect = (probs * c[:, :, None, None]).sum(1, keepdim=True)
    torch.testing.assert_close(out["depth"], expect, rtol=1e-5, atol=1e-5)
    var = (probs * (c[:, :, None, None] - expect) ** 2).sum(1, keepdim=True)
    torch.testing.assert_close(out["bin_std"], var.sqrt(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["depth_std"], out["depth"] * out["sigma_rel"])
    assert torch.all(out["sigma_rel"] > 0)
    torch.testing.assert_close(probs.sum(1), torch.ones(3, 4, 6))


def test_a_bin_index_is_the_same_relative_depth_in_every_view():
    """Regression (issue 21): the per-view adaptive widths made bin k a different depth in every view; now the
    views differ only by a scale, so c_k / c_0 is the relative grid's exp(g_k - g_0) for every view."""
    torch.manual_seed(0)
    head = DepthBinHead(8, 5, num_bins=16, min_depth_m=0.5, max_depth_m=250.0, canonical_focal_px=200.0,
                        relative_log_range=(-2.0, 2.0))
    torch.nn.init.normal_(head.scale.weight)  # views of different scale
    centres, log_s = head.bin_centres(torch.randn(4, 5) * 3)
    assert log_s.std() > 0.1
    grid = relative_grid(16, (-2.0, 2.0))
    torch.testing.assert_close(torch.log(centres / centres[:, :1]), (grid - grid[0]).expand(4, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.log(centres[:, 8:9]) - grid[8], log_s, atol=1e-5, rtol=0)


def test_upsampled_std_is_the_std_of_the_neighbours_mixture():
    """Between a near and a far neighbour (a depth edge) the upsampled pixel is uncertain."""
    model = create_student("fsmde_mnv3l", num_bins=8).eval()
    images, focal = _inputs()
    with torch.no_grad():
        feats = model.forward_features(images)
        low = model.head(feats["features"], feats["pooled"], focal.flatten())
        out = model.forward_head(feats, focal, (H, W))
    mean = torch.nn.functional.interpolate(low["depth"], size=(H, W), mode="bilinear", align_corners=False)
    m2 = torch.nn.functional.interpolate(low["depth"] ** 2 + low["depth_std"] ** 2, size=(H, W), mode="bilinear",
                                         align_corners=False)  # the neighbours' own std: depth * sigma_rel
    torch.testing.assert_close(out["depth"], mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["depth_std"], (m2 - mean ** 2).clamp_min(0).sqrt(), rtol=1e-3, atol=1e-4)
    plain = torch.nn.functional.interpolate(low["depth_std"], size=(H, W), mode="bilinear", align_corners=False)
    assert torch.all(out["depth_std"] >= plain - 1e-4)  # never less certain than the plain average says


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_every_registered_student_produces_the_documented_shapes(name):
    model = create_student(name, num_bins=8).eval()
    images, focal = _inputs(b=2)
    with torch.no_grad():
        out = model(images, focal)
    assert out["depth"].shape == out["depth_std"].shape == (2, V, H, W)
    assert out["probs"].shape == (2, V, 8, H // 4, W // 4)
    assert out["centres"].shape == (2, V, 8)
    assert out["features"].shape[:2] == (2, V) and out["features"].shape[-2:] == (H // 4, W // 4)
    assert torch.isfinite(out["depth"]).all() and (out["depth_std"] >= 0).all()


def test_focal_scaling_is_exact(student):
    images, focal = _inputs()
    with torch.no_grad():
        a = student(images, focal)
        b = student(images, focal * 2)
    torch.testing.assert_close(b["depth"], 2 * a["depth"])
    torch.testing.assert_close(b["depth_std"], 2 * a["depth_std"])
    torch.testing.assert_close(b["probs"], a["probs"])


def test_views_exchange_information_only_with_ring_neighbours(student):
    """Changing view 0 changes views 1 and 5 (its neighbours) but the opposite view 3 only via context."""
    images, focal = _inputs()
    with torch.no_grad():
        a = student(images, focal)["bottleneck"]  # (the depth moves little at init: the scale layer starts at 0)
        images2 = images.clone()
        images2[0, 0] = torch.rand(3, H, W)
        b = student(images2, focal)["bottleneck"]
    diff = (a - b).abs().amax(dim=(-1, -2, -3))[0]
    assert diff[1] > 1e-4 and diff[5] > 1e-4
    # view 3 does not border view 0: with batch statistics frozen (eval), it must be untouched
    assert diff[3] == 0


def test_checkpoint_round_trips(student, tmp_path):
    path = save_student(student, tmp_path / "ckpt" / "student.pt", extra={"step": 7})
    again = load_student(path).eval()
    assert again.config == student.config
    images, focal = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(again(images, focal)["depth"], student(images, focal)["depth"])


def test_checkpoint_of_another_architecture_is_a_clear_error(student, tmp_path):
    path = save_student(student, tmp_path / "a.pt")
    data = torch.load(path, weights_only=True)
    data["config"]["encoder"] = "resnet18"
    torch.save(data, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="b.pt.*resnet18"):
        load_student(tmp_path / "b.pt")


class NotAWeight:
    pass


def test_pickled_object_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "fsmde_student/1", "payload": NotAWeight()}, path)
    with pytest.raises(CheckpointError, match="evil.pt.*weights-only"):
        load_student(path)


def test_missing_or_garbage_checkpoint_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt not found"):
        load_student(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_student(tmp_path / "junk.pt")
    with open(tmp_path / "plain.pt", "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(CheckpointError, match="plain.pt"):
        load_student(tmp_path / "plain.pt")


def test_bad_config_and_inputs_are_rejected(student):
    with pytest.raises(ValueError, match="min_depth_m"):
        StudentConfig(min_depth_m=10, max_depth_m=5)
    with pytest.raises(ValueError, match=r"\[B,V,3,H,W\]"):
        student(torch.rand(V, 3, H, W), torch.full((1, V), 250.0))
    with pytest.raises(ValueError, match="focal_px"):
        student(torch.rand(1, V, 3, H, W), torch.full((V,), 250.0))


def test_imagenet_weights_load_only_from_a_local_file(tmp_path):
    import timm

    torch.manual_seed(3)
    reference = timm.create_model("mobilenetv3_large_100")
    path = tmp_path / "mnv3l_imagenet.pth"
    torch.save(reference.state_dict(), path)
    student = create_student("fsmde_mnv3l", encoder_weights=path, num_bins=8)
    torch.testing.assert_close(student.encoder.state_dict()["conv_stem.weight"], reference.state_dict()["conv_stem.weight"])
    with pytest.raises(FileNotFoundError, match="local file"):
        create_student("fsmde_mnv3l", encoder_weights=tmp_path / "absent.pth")
