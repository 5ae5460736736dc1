"""Teacher adapters (fsmde_ros.model.teachers) and the teacher cache (fsmde_ros.distill.teach).

No weights are downloaded: Depth Anything teachers are built from configs with random weights,
saved with save_pretrained and loaded back by path with sockets blocked.
"""
import socket
import warnings

import numpy as np
import pytest
import torch

from fsmde_ros.data.synthetic import SyntheticSurround
from fsmde_ros.distill.teach import (
    TeacherCache,
    item_path,
    precompute_teacher,
    read_meta,
)
from fsmde_ros.model.teachers import (
    FEATURE_LAYERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DepthAnythingTeacher,
    OnnxRelativeTeacher,
    RelativeDepthTeacher,
    SyntheticTeacher,
    create_teacher,
    depth_anything_v2_small_config,
    network_size,
    resize_images,
    resize_maps,
    teacher_output,
    tiny_depth_anything_config,
)

B, V, H, W = 2, 6, 48, 80  # H, W deliberately not multiples of 14
NET_H, NET_W = 42, 84  # the nearest multiples of 14
TINY_FUSION_CHANNELS = 16
TINY_HIDDEN = 32
DA_V2_SMALL_PARAMS = 24.8e6


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def images():
    return torch.rand(B, V, 3, H, W, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random Depth Anything saved with save_pretrained."""
    torch.manual_seed(0)
    teacher = DepthAnythingTeacher.from_config(tiny_depth_anything_config())
    path = tmp_path_factory.mktemp("tiny_da")
    teacher.model.save_pretrained(path)
    return path


class ListDataset:
    """Pre-rendered synthetic items; counts __getitem__ calls."""

    def __init__(self, items):
        self.items, self.loads = items, 0

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        self.loads += 1
        return self.items[i]


@pytest.fixture(scope="module")
def synthetic_items():
    ds = SyntheticSurround("nuscenes", height=H, width=W, frames=2)
    return [ds[i] for i in range(len(ds))]


def test_depth_anything_output_at_input_resolution(images, caplog):
    teacher = DepthAnythingTeacher.from_config()
    assert isinstance(teacher, RelativeDepthTeacher)
    with caplog.at_level("INFO", logger="fsmde_ros.model.teachers"):
        out = teacher(images)
        teacher(images)
    assert out.relative.shape == (B, V, H, W) and out.relative.dtype == torch.float32
    assert torch.isfinite(out.relative).all() and (out.relative >= 0).all()
    # fusion_4x: 4x the 3x6 patch grid of the 42x84 network input
    assert out.features.shape == (B, V, TINY_FUSION_CHANNELS, 4 * NET_H // 14, 4 * NET_W // 14)
    assert sum("resizing input 48x80 -> 42x84" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("layer", list(FEATURE_LAYERS) + [None])
def test_depth_anything_feature_layers(layer, images):
    out = DepthAnythingTeacher.from_config(feature_layer=layer)(images[:1])
    if layer is None:
        assert out.features is None
        return
    grid = {"fusion_1x": 1, "fusion_2x": 2, "fusion_4x": 4, "fusion_8x": 8, "backbone": 1}[layer]
    channels = TINY_HIDDEN if layer == "backbone" else TINY_FUSION_CHANNELS
    assert out.features.shape == (1, V, channels, grid * NET_H // 14, grid * NET_W // 14)


def test_depth_anything_rejects_bad_options():
    with pytest.raises(ValueError, match="feature_layer must be one of"):
        DepthAnythingTeacher.from_config(feature_layer="stage7")
    with pytest.raises(ValueError, match="images must be"):
        DepthAnythingTeacher.from_config()(torch.rand(6, 3, H, W))


def test_network_size():
    assert network_size(48, 80, None, 14) == (42, 84)
    assert network_size(900, 1600, 518, 14) == (518, 924)  # DA-V2's own 518 short side, aspect kept
    assert network_size(5, 5, None, 14) == (14, 14)


def test_depth_anything_local_path_loads_offline(tiny_dir, images, no_network, monkeypatch):
    from transformers import DepthAnythingForDepthEstimation

    calls = []
    original = DepthAnythingForDepthEstimation.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        calls.append(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(DepthAnythingForDepthEstimation, "from_pretrained", classmethod(spy))
    teacher = DepthAnythingTeacher(tiny_dir, input_size=28)
    assert calls and all(c.get("local_files_only") for c in calls)
    out = teacher(images[:1])
    assert out.relative.shape == (1, V, H, W)
    assert out.features.shape[-2:] == (4 * 28 // 14, 4 * 42 // 14)  # short side 28, aspect kept: 28x42
    assert teacher.spec == f"depth_anything:{tiny_dir.resolve()}"


def test_depth_anything_missing_path_and_hub_id(tmp_path, tiny_dir, no_network, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nope"):
        DepthAnythingTeacher(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="config.json"):
        DepthAnythingTeacher(tmp_path)
    from transformers import DepthAnythingForDepthEstimation

    calls = []
    tiny = DepthAnythingForDepthEstimation(tiny_depth_anything_config())

    def fake_hub(cls, *args, **kwargs):
        calls.append((args, kwargs))
        return tiny

    monkeypatch.setattr(DepthAnythingForDepthEstimation, "from_pretrained", classmethod(fake_hub))
    teacher = DepthAnythingTeacher("depth-anything/Depth-Anything-V2-Small-hf")
    assert calls == [(("depth-anything/Depth-Anything-V2-Small-hf",), {})]  # a hub id is the user's choice
    assert teacher.model is tiny


def test_depth_anything_v2_small_config_is_the_real_size():
    from transformers import DepthAnythingForDepthEstimation

    with torch.device("meta"):
        model = DepthAnythingForDepthEstimation(depth_anything_v2_small_config())
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(DA_V2_SMALL_PARAMS, rel=0.01)


class TinyRelativeNet(torch.nn.Module):
    """Conv stride 2 + softplus: a positive half-resolution 'disparity' [N,1,h/2,w/2] (or [N,h/2,w/2])."""

    def __init__(self, squeeze=False, channels_last=False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 1, 3, stride=2, padding=1)
        self.squeeze, self.channels_last = squeeze, channels_last

    def forward(self, x):
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        y = torch.nn.functional.softplus(self.conv(x))
        return y[:, 0] if self.squeeze else y


def export_onnx(module, shape, path, dynamic=False):
    kwargs = {"dynamic_axes": {"image": {0: "n", 2: "h", 3: "w"}}} if dynamic else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter (dynamo=False)
        torch.onnx.export(module, (torch.rand(*shape),), str(path), input_names=["image"],
                          output_names=["disparity"], opset_version=17, dynamo=False, **kwargs)
    return path


def test_onnx_teacher_static_input_resizes(tmp_path, images):
    net = TinyRelativeNet().eval()
    path = export_onnx(net, (1, 3, 32, 48), tmp_path / "static.onnx")
    teacher = OnnxRelativeTeacher(path)
    assert teacher.static_size == (32, 48) and teacher.static_batch == 1
    out = teacher(images)
    assert out.relative.shape == (B, V, H, W) and out.features is None
    mean, std = torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
    with torch.no_grad():
        ref = net((resize_images(images.flatten(0, 1), (32, 48)) - mean) / std)[:, 0]
    np.testing.assert_allclose(out.relative.flatten(0, 1), resize_maps(ref, (H, W)), rtol=1e-4, atol=1e-5)


def test_onnx_teacher_dynamic_input(tmp_path, images):
    path = export_onnx(TinyRelativeNet(squeeze=True).eval(), (1, 3, 28, 42), tmp_path / "dynamic.onnx", dynamic=True)
    teacher = OnnxRelativeTeacher(path, input_size=28)
    assert teacher.static_size is None and teacher.static_batch is None
    out = teacher(images)
    assert out.relative.shape == (B, V, H, W) and torch.isfinite(out.relative).all()


def test_onnx_teacher_errors_name_the_file(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match="corrupt.onnx"):
        OnnxRelativeTeacher(bad)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxRelativeTeacher(tmp_path / "missing.onnx")
    nhwc = export_onnx(TinyRelativeNet(channels_last=True).eval(), (1, 32, 48, 3), tmp_path / "nhwc.onnx")
    with pytest.raises(ValueError, match=r"nhwc.onnx.*\[N,3,H,W\]"):
        OnnxRelativeTeacher(nhwc)
    with pytest.raises(ValueError, match="no output 'depth'"):
        OnnxRelativeTeacher(export_onnx(TinyRelativeNet().eval(), (1, 3, 32, 48), tmp_path / "ok.onnx"),
                            output="depth")


def test_create_teacher_parses_the_three_forms(tmp_path, tiny_dir, no_network):
    assert isinstance(create_teacher("synthetic"), SyntheticTeacher)
    assert isinstance(create_teacher(f"depth_anything:{tiny_dir}"), DepthAnythingTeacher)
    path = export_onnx(TinyRelativeNet().eval(), (1, 3, 32, 48), tmp_path / "t.onnx")
    onnx_teacher = create_teacher(f"onnx:{path}")
    assert isinstance(onnx_teacher, OnnxRelativeTeacher) and onnx_teacher.spec == f"onnx:{path.resolve()}"
    for bad in ("", "midas", "depth_anything:", "onnx", "onnx:", "synthetic:x", "Synthetic"):
        with pytest.raises(ValueError, match="valid forms"):
            create_teacher(bad)


def test_teacher_output_prefers_an_online_teacher(images):
    batch = {"images": images, "teacher": torch.rand(B, V, H, W)}
    assert torch.equal(teacher_output(batch).relative, batch["teacher"])
    assert torch.equal(teacher_output(batch, SyntheticTeacher()).relative, batch["teacher"])
    online = teacher_output(batch, DepthAnythingTeacher.from_config())
    assert online.relative.shape == (B, V, H, W) and online.features is not None
    with pytest.raises(KeyError, match="no teacher"):
        teacher_output({"images": images})
    with pytest.raises(TypeError, match="does not see images"):
        SyntheticTeacher()(images)


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return np.corrcoef(ra, rb)[0, 1]


def test_synthetic_teacher_ranks_like_the_true_depth(synthetic_items):
    item = synthetic_items[0]
    rel = teacher_output({"teacher": torch.from_numpy(item["teacher"])[None]}).relative[0].numpy()
    for v in range(V):
        valid = np.isfinite(item["depth"][v]) & (item["depth"][v] > 0)
        assert spearman(rel[v][valid], 1.0 / item["depth"][v][valid]) > 0.9, f"view {v}"


def test_precompute_and_cache_round_trip(tmp_path, synthetic_items):
    ds = ListDataset(synthetic_items)
    out = precompute_teacher(ds, SyntheticTeacher(), tmp_path / "cache", batch_size=2)
    meta = read_meta(out)
    assert meta["complete"] and (meta["length"], meta["views"], meta["height"], meta["width"]) == (2, V, H, W)
    assert meta["teacher"] == meta["spec"] == "synthetic"
    cache = TeacherCache(out, ds)
    assert len(cache) == 2
    for i, item in enumerate(synthetic_items):
        got = cache[i]
        assert got["relative"].dtype == np.float32 and got["features"] is None and got["index"] == item["index"]
        np.testing.assert_allclose(got["relative"], item["teacher"], rtol=2e-3, atol=1e-4)  # float16 storage
    attached = cache.attach(ds[1], 1)  # as the trainer packs it into its training cache
    np.testing.assert_array_equal(attached["teacher"], cache[1]["relative"])

    # resumable: nothing is loaded when everything is written; a missing item is recomputed alone
    loads = ds.loads
    precompute_teacher(ds, SyntheticTeacher(), out)
    assert ds.loads == loads
    item_path(out, 1).unlink()
    precompute_teacher(ds, SyntheticTeacher(), out)
    assert ds.loads == loads + 1 and item_path(out, 1).is_file()


def test_precompute_with_features(tmp_path, synthetic_items):
    ds = ListDataset(synthetic_items)
    teacher = DepthAnythingTeacher.from_config()
    out = precompute_teacher(ds, teacher, tmp_path / "da", with_features=True)
    meta = read_meta(out)
    feature_shape = (TINY_FUSION_CHANNELS, 4 * NET_H // 14, 4 * NET_W // 14)
    assert tuple(meta["feature_shape"]) == feature_shape and meta["spec"] == "depth_anything:random"
    item = TeacherCache(out, ds).attach(ds[0], 0)
    assert item["teacher"].shape == (V, H, W) and item["teacher_features"].shape == (V, *feature_shape)
    batch = {"teacher": torch.from_numpy(item["teacher"])[None],
             "teacher_features": torch.from_numpy(item["teacher_features"])[None]}
    assert teacher_output(batch).features.shape == (1, V, *feature_shape)
    # the synthetic world's teacher has features too (view-relational KD on the benchmark) ...
    syn = TeacherCache(precompute_teacher(ds, SyntheticTeacher(), tmp_path / "syn", with_features=True), ds).attach(
        ds[1], 1)
    np.testing.assert_allclose(syn["teacher_features"], synthetic_items[1]["teacher_features"], rtol=2e-3, atol=2e-3)
    # ... but items without them cannot give any
    bare = ListDataset([{k: v for k, v in it.items() if k != "teacher_features"} for it in synthetic_items])
    with pytest.raises(ValueError, match="no features"):
        precompute_teacher(bare, SyntheticTeacher(), tmp_path / "bare", with_features=True)


def test_mismatched_cache_raises(tmp_path, synthetic_items):
    out = precompute_teacher(ListDataset(synthetic_items[:1]), SyntheticTeacher(), tmp_path / "cache")
    with pytest.raises(ValueError, match="length 1 != dataset's 2"):
        TeacherCache(out, ListDataset(synthetic_items))
    with pytest.raises(ValueError, match="resolution"):
        TeacherCache(out, SyntheticSurround("nuscenes", height=32, width=64, frames=1))
    with pytest.raises(ValueError, match="does not match this run"):  # another teacher: refuse to mix
        precompute_teacher(ListDataset(synthetic_items[:1]), DepthAnythingTeacher.from_config(), out)
    with pytest.raises(FileNotFoundError, match="precompute_teacher"):
        TeacherCache(tmp_path / "empty")
