"""`fsmde engine build / list / clear` and the ONNX Runtime TensorRT provider's caches (issue 23 item 1); what needs no
GPU is tested here, the builds themselves are on the GPU check (benchmarks/gpu_check.sh)."""
import importlib.util

import pytest

from fsmde_ros.app.cli import main
from fsmde_ros.runtime.engine_cache import EngineCache, EngineKey, ort_trt_cache_dir
from fsmde_ros.runtime.onnxruntime_backend import tensorrt_provider_options
from tests.helpers.ros_env import REPO

MODEL = REPO / "models" / "fsmde_default.onnx"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_engine_build_without_a_gpu_says_so_in_one_line_and_exits_2(tmp_path, capsys):
    assert main(["engine", "build", "--model", str(MODEL), "--input-size", "1936x1216",
                 "--engine-cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tensorrt" in err.lower(), err
    assert main(["engine", "build", "--model", str(MODEL), "--backend", "onnxruntime",
                 "--engine-cache-dir", str(tmp_path)]) == 2
    assert "no TensorRT provider" in capsys.readouterr().err
    assert main(["engine", "build", "--model", str(tmp_path / "none.onnx")]) == 2  # the file, said first


def test_the_onnxruntime_tensorrt_provider_caches_engines_under_the_key_of_the_native_ones(tmp_path):
    """Issue 23: ONNX Runtime's TensorRT path built its engine at every start (only trt_fp16_enable was set)."""
    opts = tensorrt_provider_options(MODEL, "fp16", tmp_path)
    assert opts["trt_engine_cache_enable"] and opts["trt_timing_cache_enable"] and opts["trt_fp16_enable"]
    folder = opts["trt_engine_cache_path"]
    assert folder == opts["trt_timing_cache_path"] and folder.startswith(str(tmp_path / "onnxruntime-trt"))
    # another GPU, TensorRT version or precision is another folder: a stale engine is never loaded
    a = ort_trt_cache_dir(MODEL, "fp16", tmp_path, ("NVIDIA H200", "9.0"), "10.9")
    assert a != ort_trt_cache_dir(MODEL, "fp16", tmp_path, ("Orin", "8.7"), "10.9")
    assert a != ort_trt_cache_dir(MODEL, "fp16", tmp_path, ("NVIDIA H200", "9.0"), "10.10")
    assert a != ort_trt_cache_dir(MODEL, "fp32", tmp_path, ("NVIDIA H200", "9.0"), "10.9")


def test_engine_list_and_clear(tmp_path, capsys):
    cache = EngineCache(tmp_path)
    key = EngineKey("ab" * 32, "NVIDIA H200", "9.0", "10.9", "fp16")
    cache.store("student", key, b"\0" * 1000, extra={"onnx": "student.onnx"})
    (ort_trt_cache_dir(MODEL, "fp16", tmp_path) / "x.engine").parent.mkdir(parents=True)
    (ort_trt_cache_dir(MODEL, "fp16", tmp_path) / "x.engine").write_bytes(b"\0" * 10)
    assert main(["engine", "list", "--engine-cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA H200 sm9.0, TensorRT 10.9, fp16, from student.onnx" in out and "onnxruntime-tensorrt" in out
    assert "2 cached engine(s)" in out
    assert main(["engine", "clear", "--engine-cache-dir", str(tmp_path)]) == 0
    assert "removed 2" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.engine")) and not list((tmp_path / "onnxruntime-trt").iterdir())


def _gpu_or_skip():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (GPU machines only: extra `gpu`)")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible")


@pytest.mark.gpu
def test_engine_build_fills_the_cache_the_node_loads_for_the_student_and_its_graph(tmp_path, capsys):
    _gpu_or_skip()
    assert main(["engine", "build", "--model", str(MODEL), "--input-size", "640x400",
                 "--engine-cache-dir", str(tmp_path)]) == 0
    engines = sorted(tmp_path.glob("*.engine"))
    assert len(engines) == 2, engines  # the student and its deployment graph for 640x400
    from fsmde_ros.runtime import create_backend

    before = {p: p.stat().st_mtime for p in engines}
    create_backend("tensorrt", MODEL, precision="fp16", engine_cache_dir=tmp_path)  # the node's start: no rebuild
    assert {p: p.stat().st_mtime for p in tmp_path.glob("*.engine")} == before


@pytest.mark.gpu
def test_the_onnxruntime_tensorrt_path_writes_its_engine_cache_once(tmp_path):
    _gpu_or_skip()
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no TensorRT provider")
    from fsmde_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

    OnnxRuntimeBackend(MODEL, ["TensorrtExecutionProvider", "CPUExecutionProvider"], precision="fp16",
                       engine_cache_dir=tmp_path)
    folder = ort_trt_cache_dir(MODEL, "fp16", tmp_path, *_key_parts())
    files = {p: p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}
    assert any(p.suffix == ".engine" for p in files), files
    OnnxRuntimeBackend(MODEL, ["TensorrtExecutionProvider", "CPUExecutionProvider"], precision="fp16",
                       engine_cache_dir=tmp_path)
    assert {p: p.stat().st_mtime for p in folder.rglob("*") if p.is_file()} == files, "loaded, not rebuilt"


def _key_parts():
    from fsmde_ros.runtime.engine_build import current_gpu, import_tensorrt

    return current_gpu(), import_tensorrt().__version__
