"""The INT8 student (issue 25 item 2): the bundled student quantised to QDQ keeps the contract and agrees with FP32;
precision:=int8 refuses a model without QDQ nodes in one line."""
import numpy as np
import onnxruntime as ort
import pytest

from fsmde_ros.app.cli import main
from fsmde_ros.data.surround import CachedDataset
from fsmde_ros.model.contract import CONTRACT, is_quantized, read_model_info
from fsmde_ros.runtime import create_backend
from tests.helpers.oracle_model import write_oracle_model
from tests.helpers.ros_env import REPO

MODEL = REPO / "models" / "fsmde_default.onnx"


@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("int8")
    out = tmp / "student_int8.onnx"
    assert main(["quantize", str(MODEL), "--calibration", "synthetic:ddad?seed=3&frames=2",
                 "synthetic:nuscenes?seed=4&frames=2", "--sets", "4", "--out", str(out),
                 "--cache-dir", str(tmp / "cache")]) == 0
    return out, tmp / "cache"


def test_the_int8_student_keeps_the_contract_and_agrees_with_fp32(int8):
    out, cache = int8
    assert is_quantized(out) and not is_quantized(MODEL)
    info, ref = read_model_info(out), read_model_info(MODEL)
    assert (info["views"], info["height"], info["width"]) == (ref["views"], ref["height"], ref["width"])
    assert info["metadata"]["precision"] == "int8" and info["metadata"]["rig"] == ref["metadata"]["rig"]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert {i.name: i.type for i in session.get_inputs()} == {"images": "tensor(uint8)", "focal_px": "tensor(float)"}
    assert {o.name for o in session.get_outputs()} == {k for k, (t, _) in CONTRACT.items() if t == "FLOAT"} - {"focal_px"}
    item = CachedDataset("synthetic:ddad?seed=100&frames=2", info["height"], info["width"], cache)[1]  # held out
    feed = {"images": item["images"], "focal_px": item["K"][:, 0, 0].astype(np.float32)}
    fp32 = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"]).run(["depth", "depth_std"], feed)
    q = session.run(["depth", "depth_std"], feed)
    rel = np.abs(q[0] - fp32[0]) / fp32[0]
    assert np.median(rel) < 0.05 and np.isfinite(q[1]).all() and (q[1] >= 0).all(), float(np.median(rel))
    gt = item["depth"]
    ok = np.isfinite(gt) & (gt < 80)
    err = [float(np.mean(np.abs(d[ok] - gt[ok]) / gt[ok])) for d in (fp32[0], q[0])]
    assert err[1] < 1.06 * err[0], err  # the measured tolerance on one set (goal: 3 % over held-out worlds)
    backend = create_backend("onnxruntime", out, precision="int8")
    assert backend.precision == "int8"


def test_the_high_resolution_convolutions_stay_float(int8):
    """The convolutions at 1/2, 1/4 and 1/8 of the input resolution cost most of INT8's accuracy (measured): kept float
    by default, every other convolution int8."""
    import onnx

    from fsmde_ros.export.quantize import DEFAULT_KEEP_FLOAT_STRIDE, high_resolution_convs

    graph = onnx.load(str(int8[0])).graph
    produced_by = {o: n.op_type for n in graph.node for o in n.output}
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    kept = high_resolution_convs(onnx.load(str(MODEL)), DEFAULT_KEEP_FLOAT_STRIDE)
    assert len(kept) > len(high_resolution_convs(onnx.load(str(MODEL)), 4))
    assert "/encoder/conv_stem/Conv" in kept and 0 < len(kept) < len(convs) / 2
    for name, node in convs.items():
        dequantized = produced_by.get(node.input[0]) == "DequantizeLinear"
        assert dequantized == (name not in kept), name


def test_precision_int8_with_a_model_without_qdq_nodes_is_refused_in_one_line(tmp_path):
    oracle = write_oracle_model(tmp_path / "oracle.onnx", 6, 16, 24)
    with pytest.raises(ValueError, match="precision int8 needs an INT8 .QDQ. student; oracle.onnx has no QDQ nodes"):
        create_backend("onnxruntime", oracle, precision="int8")


TWIN = REPO / "models" / "fsmde_default_int8.onnx"


def test_the_shipped_int8_twin_is_the_bundled_students_and_precision_int8s_default(tmp_path):
    """models/fsmde_default_int8.onnx must stay the INT8 twin of the shipped fsmde_default.onnx (retrain one, quantise
    the other again: `fsmde quantize models/fsmde_default.onnx --calibration ... --out models/fsmde_default_int8.onnx`)
    and is what precision:=int8 runs when no model is given."""
    from fsmde_ros.paths import resolve_model

    assert is_quantized(TWIN)
    info, ref = read_model_info(TWIN), read_model_info(MODEL)
    assert (info["views"], info["height"], info["width"], info["metadata"]["rig"]) == \
        (ref["views"], ref["height"], ref["width"], ref["metadata"]["rig"])
    item = CachedDataset("synthetic:nuscenes?seed=101&frames=2", info["height"], info["width"], tmp_path)[0]  # held out
    feed = {"images": item["images"], "focal_px": item["K"][:, 0, 0].astype(np.float32)}
    fp32, q = (ort.InferenceSession(str(m), providers=["CPUExecutionProvider"]).run(["depth"], feed)[0] for m in (MODEL, TWIN))
    assert np.median(np.abs(q - fp32) / fp32) < 0.05, "the twin is not the bundled student's: quantise it again"
    assert resolve_model("", int8=True).resolve() == TWIN.resolve()
    assert resolve_model("").resolve() == MODEL.resolve()


def test_export_precision_int8_writes_the_int8_student_from_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "student_int8.onnx"
    assert main(["export", "--student", "fsmde_mnv3l", "--out", str(out), "--height", "64", "--width", "96",
                 "--precision", "int8"]) == 2  # no calibration: refused, nothing written
    assert "--calibration" in capsys.readouterr().err and not out.exists()
    assert main(["export", "--student", "fsmde_mnv3l", "--out", str(out), "--height", "64", "--width", "96",
                 "--precision", "int8", "--calibration", "synthetic:ddad?seed=5&frames=2", "--sets", "2",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert is_quantized(out) and not is_quantized(tmp_path / "student_int8_fp32.onnx")
    info = read_model_info(out)
    assert (info["height"], info["width"], info["metadata"]["precision"]) == (64, 96, "int8")
