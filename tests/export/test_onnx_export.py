"""ONNX export: the I/O contract of the exported graph, verification against PyTorch, clear errors."""
import onnx
import pytest

from fsmde_ros.export.onnx import MAX_RELATIVE_ERROR, export_onnx
from fsmde_ros.model.contract import OnnxModelError, read_model_info
from fsmde_ros.model.student import create_student
from fsmde_ros.runtime import create_backend
from tests.conftest import H, V, W


def test_exported_graph_has_exactly_the_documented_io(exported):
    path, _, student, errors = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17

    def io(values):
        return {v.name: (v.type.tensor_type.elem_type, [d.dim_value for d in v.type.tensor_type.shape.dim])
                for v in values}

    assert io(model.graph.input) == {"images": (onnx.TensorProto.UINT8, [V, H, W, 3]),
                                     "focal_px": (onnx.TensorProto.FLOAT, [V])}
    assert io(model.graph.output) == {"depth": (onnx.TensorProto.FLOAT, [V, H, W]),
                                      "depth_std": (onnx.TensorProto.FLOAT, [V, H, W])}
    meta = read_model_info(path)["metadata"]
    assert meta["rig"] == "nuscenes" and meta["height"] == str(H) and float(meta["max_depth_m"]) == student.config.max_depth_m
    assert max(errors.values()) < MAX_RELATIVE_ERROR


def test_missing_or_corrupt_onnx_names_the_file(tmp_path):
    with pytest.raises(OnnxModelError, match="missing.onnx not found"):
        create_backend("auto", tmp_path / "missing.onnx")
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(OnnxModelError, match="corrupt.onnx"):
        create_backend("onnxruntime", bad)


def test_export_refuses_a_model_that_onnx_runtime_cannot_reproduce(tmp_path, frames, monkeypatch):
    import fsmde_ros.export.onnx as onnx_export

    monkeypatch.setattr(onnx_export, "relative_error", lambda a, e: 0.05)
    student = create_student("fsmde_mnv3l", num_bins=8).eval()
    with pytest.raises(RuntimeError, match="relative error .* not written"):
        export_onnx(student, tmp_path / "bad.onnx", H, W, *frames)
    assert not (tmp_path / "bad.onnx").exists()
