"""ONNX Runtime and torch backends, `auto`, the engine cache, and TensorRT where a GPU is."""
from tests.conftest import H, V, W  # noqa: I001
import dataclasses
import logging

import numpy as np
import pytest
import torch

from fsmde_ros.runtime import create_backend
from fsmde_ros.runtime.engine_cache import EngineCache, EngineKey


def test_onnxruntime_matches_torch_backend(exported, frames):
    path, ckpt, _, _ = exported
    ort_backend = create_backend("onnxruntime", path, threads=2)
    torch_backend = create_backend("torch", ckpt, height=H, width=W)
    assert ort_backend.name == "onnxruntime:CPUExecutionProvider" and torch_backend.name == "torch:cpu"
    d1, s1 = ort_backend.infer(*frames)
    d2, s2 = torch_backend.infer(*frames)
    assert d1.shape == s1.shape == (V, H, W) and d1.dtype == np.float32
    np.testing.assert_allclose(d1, d2, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(s1, s2, rtol=1e-3, atol=1e-3)
    # the focal length reaches the graph: doubling it doubles the depth
    d3, _ = ort_backend.infer(frames[0], frames[1] * 2)
    np.testing.assert_allclose(d3, 2 * d1, rtol=1e-4)


def test_auto_picks_onnxruntime_cpu_here_and_says_why(exported, caplog):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: auto legitimately picks TensorRT or CUDA")
    with caplog.at_level(logging.INFO, logger="fsmde_ros.runtime"):
        backend = create_backend("auto", exported[0])
    assert backend.name == "onnxruntime:CPUExecutionProvider"
    assert any(s.startswith("tensorrt:") for s in backend.skipped)
    assert "backend auto -> onnxruntime:CPUExecutionProvider" in caplog.text
    assert "skipped tensorrt" in caplog.text


def test_wrong_inputs_are_clear_value_errors(exported, frames):
    backend = create_backend("onnxruntime", exported[0])
    images, focal = frames
    with pytest.raises(ValueError, match="uint8"):
        backend.infer(images.astype(np.float32), focal)
    with pytest.raises(ValueError, match="channel count 4"):
        backend.infer(np.zeros((V, H, W, 4), np.uint8), focal)
    with pytest.raises(ValueError, match="resize to the model resolution"):
        backend.infer(np.zeros((V, H * 2, W, 3), np.uint8), focal)
    with pytest.raises(ValueError, match="focal_px must have 6"):
        backend.infer(images, focal[:5])
    with pytest.raises(ValueError, match="finite and positive"):
        backend.infer(images, np.full(V, np.nan, np.float32))
    with pytest.raises(ValueError, match="backend must be one of"):
        create_backend("tflite", exported[0])


KEY = EngineKey("ab" * 32, "NVIDIA H100 80GB HBM3", "9.0", "10.13.0", "fp16")


def test_engine_cache_reuses_only_a_matching_entry(tmp_path):
    cache = EngineCache(tmp_path)
    assert cache.lookup("student", KEY)[0] is None
    path = cache.store("student", KEY, b"engine-bytes")
    assert cache.lookup("student", KEY) == (path, "")
    for change in (dict(tensorrt_version="10.14.0"), dict(gpu_name="Orin"), dict(precision="fp32"),
                   dict(onnx_sha256="cd" * 32)):
        other = dataclasses.replace(KEY, **change)
        found, why = cache.lookup("student", other)
        assert found is None and "stale engines present" in why
    path.write_bytes(b"engine")  # truncated
    assert "truncated" in cache.lookup("student", KEY)[1]


def test_engine_key_rejects_unknown_precision():
    with pytest.raises(ValueError, match="fp16, fp32"):
        dataclasses.replace(KEY, precision="int4")


@pytest.mark.gpu
def test_tensorrt_engine_matches_onnxruntime(exported, frames, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (GPU machines only: extra `gpu`)")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible")
    trt_backend = create_backend("tensorrt", exported[0], precision="fp32", engine_cache_dir=tmp_path)
    ort_backend = create_backend("onnxruntime", exported[0], providers=["CPUExecutionProvider"])
    d1, s1 = trt_backend.infer(*frames)
    d2, s2 = ort_backend.infer(*frames)
    np.testing.assert_allclose(d1, d2, rtol=1e-3, atol=1e-2)
    # a second backend reuses the cached engine instead of rebuilding
    before = {p: p.stat().st_mtime for p in tmp_path.glob("*.engine")}
    create_backend("tensorrt", exported[0], precision="fp32", engine_cache_dir=tmp_path)
    assert {p: p.stat().st_mtime for p in tmp_path.glob("*.engine")} == before


def test_the_torch_backend_takes_the_size_a_checkpoint_was_trained_at(tmp_path, frames):
    """Regression (issue 14, item 5): `backend:=torch` never started (`'height'`): the node has no size to give."""
    from fsmde_ros.model.checkpoint import save_student
    from fsmde_ros.model.student import create_student

    student = create_student("fsmde_mnv3l", num_bins=16).eval()
    ckpt = save_student(student, tmp_path / "trained.pt", extra={"step": 10, "height": H, "width": W})
    backend = create_backend("torch", ckpt)
    assert (backend.views, backend.height, backend.width) == (V, H, W)
    depth, std = backend.infer(*frames)
    assert depth.shape == (V, H, W) and np.isfinite(depth).all()


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # unpickling this would run code: write the marker file
        return (open, (self.marker, "w"))


def test_a_malicious_checkpoint_is_refused_without_running_its_code(tmp_path):
    from fsmde_ros.model.checkpoint import CheckpointError

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "fsmde_student/1", "config": {}, "state_dict": {}, "extra": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="refusing to run code from it"):
        create_backend("torch", evil)
    assert not marker.exists()
