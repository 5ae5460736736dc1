"""DeploymentGraph: the feeds it builds are exactly the composed graph's inputs (names, dtypes, shapes), its outputs
are read by the graph's names, and its cloud is CloudFuser's compaction of the fixed-size tensors."""
import dataclasses

import numpy as np
import onnx
import pytest
from onnx import helper

from fsmde_ros.geometry.cloud import CloudFuser
from fsmde_ros.geometry.rig import load_rig
from fsmde_ros.runtime import create_backend
from fsmde_ros.runtime.deployment import DeploymentGraph, GraphOutputs, pose_inputs
from fsmde_ros.runtime.deployment_graph import GRAPH_OUTPUTS
from fsmde_ros.service.calibration import Calibration
from tests.helpers.lens import PLUMB_BOB_D
from tests.helpers.oracle_model import write_oracle_model

H, W = 48, 80
W_IN, H_IN = 250, 150


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return create_backend("onnxruntime", write_oracle_model(tmp_path_factory.mktemp("m") / "oracle.onnx", 6, H, W))


@pytest.mark.parametrize("undistort", [False, True])
def test_the_feeds_are_the_graphs_inputs_by_name_dtype_and_shape(backend, undistort, tmp_path):
    rig = load_rig("ddad")
    graph, path, composed = DeploymentGraph.open(backend, W_IN, H_IN, 4, "nearest_axis", tmp_path, undistort)
    assert composed and graph is not None
    images = list(np.random.default_rng(0).integers(0, 256, (6, H_IN, W_IN, 3), dtype=np.uint8))
    images[3] = None                                       # an absent camera: the blank input, masked in the graph
    K = list(rig.resized(W_IN, H_IN).K)
    distorted = [Calibration(k, W_IN, H_IN, D=PLUMB_BOB_D) for k in K] if undistort else None
    fuser = CloudFuser(rig.T_base_cam, 4, "nearest_axis")
    feeds, K_model, present = graph.feeds(images, K, distorted, rig=rig, fuser=fuser, poses=pose_inputs(rig.T_base_cam),
                                          depth_range=(0.5, 80.0), max_std_ratio=0.1)
    declared = {i.name: (helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type),
                         tuple(d.dim_value for d in i.type.tensor_type.shape.dim))
                for i in onnx.load(str(path)).graph.input}
    assert {name: (a.dtype, a.shape) for name, a in feeds.items()} == declared
    assert feeds["camera_images_0"] is images[0], "a contiguous image goes in as it is, no copy"
    assert not feeds["camera_images_3"].any() and present.tolist() == [True] * 3 + [False] + [True] * 2
    assert K_model.shape == (6, 3, 3) and K_model[0, 0, 0] < K[0][0, 0]  # K at the model's (smaller) size
    out = graph.run(feeds)
    assert out.depth.shape == (6, H, W) and np.isnan(out.depth[3]).all() and 3 not in out.cloud().camera


def test_the_outputs_are_read_by_the_graphs_names_and_the_cloud_compacts_in_c_order():
    assert tuple(f.name for f in dataclasses.fields(GraphOutputs)) == GRAPH_OUTPUTS
    valid = np.zeros((2, 2, 3), bool)
    valid[0, 1, 2] = valid[1, 0, 0] = valid[1, 1, 1] = True
    xyz = np.arange(2 * 2 * 3 * 3, dtype=np.float32).reshape(2, 2, 3, 3)
    out = GraphOutputs(np.zeros((2, 4, 6)), np.zeros((2, 4, 6)), np.zeros((2, 4, 6, 3), np.uint8), xyz,
                       (xyz % 256).astype(np.uint8), valid)
    cloud = out.cloud()
    assert cloud.camera.tolist() == [0, 1, 1] and cloud.camera.dtype == np.uint8
    np.testing.assert_array_equal(cloud.xyz, [xyz[0, 1, 2], xyz[1, 0, 0], xyz[1, 1, 1]])
    np.testing.assert_array_equal(cloud.rgb, (cloud.xyz % 256).astype(np.uint8))


def test_a_backend_that_runs_no_graph_gives_none_and_the_host_path(backend, tmp_path, monkeypatch):
    monkeypatch.setattr(backend, "graph_runner", lambda path: None)
    graph, path, _ = DeploymentGraph.open(backend, W_IN, H_IN, 4, "all", tmp_path)
    assert graph is None and path.is_file()
