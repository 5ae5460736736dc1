"""The node's per-set pipeline without ROS: resizing with intrinsics, partial sets, REP-118 output."""
import numpy as np
import pytest

from fsmde_ros.geometry.rig import load_rig
from fsmde_ros.runtime import create_backend
from fsmde_ros.service.pipeline import SurroundDepthPipeline
from tests.helpers.oracle_model import decode_depth, encode_depth, write_oracle_model

H, W = 48, 80


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    model = write_oracle_model(tmp_path_factory.mktemp("m") / "oracle.onnx", 6, H, W)
    return SurroundDepthPipeline(create_backend("onnxruntime", model), load_rig("ddad"), min_depth=0.5,
                                 max_depth=80.0, cloud_stride=2)


def test_images_at_another_resolution_are_resized_and_intrinsics_follow(pipeline):
    rig = load_rig("ddad")
    depth = np.full((6, 2 * H, 2 * W), 10.0)
    images = list(encode_depth(depth))  # arrive at twice the model resolution
    batch = pipeline.preprocess(images, [None] * 6)
    assert batch.images.shape == (6, H, W, 3) and batch.resized_from == {i: (2 * W, 2 * H) for i in range(6)}
    np.testing.assert_allclose(batch.K, rig.resized(W, H).K)
    # a CameraInfo K given at the arriving size is scaled the same way
    K_big = rig.resized(2 * W, 2 * H).K
    batch2 = pipeline.preprocess(images, list(K_big))
    np.testing.assert_allclose(batch2.K, batch.K)


def test_a_partial_set_publishes_nan_for_the_missing_camera_and_no_points_from_it(pipeline):
    """REP-117 (issue 23): beyond max_depth is +Inf, nearer than min_depth -Inf, invalid (an absent camera) NaN."""
    depth = np.full((6, H, W), 12.0)
    depth[:, :5] = 200.0  # beyond max_depth
    depth[:, -3:] = 0.1  # nearer than min_depth
    images = list(encode_depth(depth))
    images[2] = None
    result = pipeline.run(images, [None] * 6)
    assert not result.present[2] and result.present.sum() == 5
    assert np.isnan(result.depth[2]).all()
    assert np.isposinf(result.depth[0, :5]).all(), "beyond max_depth is +Inf (REP-117)"
    assert np.isneginf(result.depth[0, -3:]).all(), "nearer than min_depth is -Inf (REP-117)"
    np.testing.assert_allclose(result.depth[0, 5:-3], 12.0, atol=1e-3)
    assert np.isfinite(result.cloud.xyz).all()  # none of them in the cloud
    assert 2 not in set(result.cloud.camera.tolist())
    assert set(result.timings_ms) == {"preprocess_ms", "infer_ms", "postprocess_ms"}


def test_uncertainty_filter_drops_uncertain_points(tmp_path):
    model = write_oracle_model(tmp_path / "o.onnx", 6, H, W)  # depth_std = 5 % of depth
    rig = load_rig("ddad")
    images = list(encode_depth(np.full((6, H, W), 10.0)))
    keep_all = SurroundDepthPipeline(create_backend("onnxruntime", model), rig, max_depth_std_ratio=0.1)
    drop_all = SurroundDepthPipeline(create_backend("onnxruntime", model), rig, max_depth_std_ratio=0.01)
    assert len(keep_all.run(images, [None] * 6).cloud) > 0
    assert len(drop_all.run(images, [None] * 6).cloud) == 0


def test_a_rig_that_does_not_match_the_model_is_refused(tmp_path):
    model = write_oracle_model(tmp_path / "five.onnx", 5, H, W)
    with pytest.raises(ValueError, match="6 cameras but the model takes 5 views"):
        SurroundDepthPipeline(create_backend("onnxruntime", model), load_rig("ddad"))


def test_oracle_encoding_round_trips():
    d = np.array([[0.5, 123.456, np.inf]])
    np.testing.assert_allclose(decode_depth(encode_depth(d)), [[0.5, 123.456, 0.0]])


def test_a_resolution_change_mid_stream_composes_one_graph_and_says_so_once(tmp_path):
    """Through the deployment graph (deployment_graph:=always): cameras switching from 250x150 to 160x96 and back
    compose one graph per size, logged once each; every set's depth is the oracle's, at the model size."""
    model = write_oracle_model(tmp_path / "o.onnx", 6, H, W)
    said = []
    pipeline = SurroundDepthPipeline(create_backend("onnxruntime", model), load_rig("ddad"), cloud_stride=2,
                                     composed=True, graph_cache_dir=str(tmp_path / "cache"), info=said.append)
    for w, h in [(250, 150), (250, 150), (160, 96), (160, 96), (250, 150)]:
        result = pipeline.run(list(encode_depth(np.full((6, h, w), 10.0))), [None] * 6)
        assert result.depth.shape == (6, H, W) and result.resized_from == {i: (w, h) for i in range(6)}
        np.testing.assert_allclose(result.depth, 10.0, atol=1e-3)
        assert len(result.cloud) > 0 and result.timings_ms["infer_ms"] > 0
    assert len(said) == 2 and "250x150: composed" in said[0] and "160x96: composed" in said[1], said
    again = []  # a restart finds both graphs in the cache
    SurroundDepthPipeline(create_backend("onnxruntime", model), load_rig("ddad"), cloud_stride=2, composed=True,
                          graph_cache_dir=str(tmp_path / "cache"), info=again.append).run(
        list(encode_depth(np.full((6, 150, 250), 10.0))), [None] * 6)
    assert "250x150: loaded" in again[0]
