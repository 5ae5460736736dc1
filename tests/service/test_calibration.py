"""Calibration from CameraInfo (issue 22 item 1): distorted cameras undistorted in the one remap that crops and
resizes, checked on the bundled student against the same sets seen through a pinhole."""
import numpy as np
import pytest

from fsmde_ros.data.synthetic import SyntheticSurround
from fsmde_ros.paths import DEFAULT_MODEL
from fsmde_ros.runtime import create_backend
from fsmde_ros.geometry.resize import plan_resize, resize_on_host
from fsmde_ros.service.calibration import Calibration, remap_on_host, undistort_maps
from fsmde_ros.service.pipeline import SurroundDepthPipeline
from tests.helpers.lens import EQUIDISTANT_D, PLUMB_BOB_D, distort, outer_half_relative_difference
from tests.helpers.ros_env import REPO

W_RAW, H_RAW = 640, 400  # the cameras' size: 8:5, so the 5:3 model crops too


@pytest.fixture(scope="module")
def scene():
    item = SyntheticSurround("ddad", seed=101, height=H_RAW, width=W_RAW, frames=1)[0]
    backend = create_backend("onnxruntime", REPO / DEFAULT_MODEL)
    rig = SyntheticSurround("ddad", height=H_RAW, width=W_RAW, frames=1).rig
    return item, SurroundDepthPipeline(backend, rig, make_cloud=False, composed=False, max_depth=250.0)


def test_without_distortion_the_remap_is_the_plain_resize():
    import cv2

    img = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (1216, 1936, 3), dtype=np.uint8), (0, 0), 4)
    K = np.array([[1000.0, 0, 967.5], [0, 1000.0, 607.5], [0, 0, 1]])
    plan = plan_resize(1936, 1216, 640, 384)
    out = remap_on_host(img, plan, undistort_maps(Calibration(K, 1936, 1216, D=np.full(5, 1e-12)), plan))
    ref, _ = resize_on_host(img, 640, 384)
    # the remap averages 2 x 2 boxes and samples at twice the size, the resize 3 x 3 boxes: the same image, the same
    # rays (the outermost pixels aside, where the remap's samples reach past the image: black there)
    diff = np.abs(out.astype(int) - ref)[1:-1, 1:-1]
    assert diff.mean() < 0.5 and diff.max() <= 4


@pytest.mark.parametrize("model, D", [("plumb_bob", PLUMB_BOB_D), ("equidistant", EQUIDISTANT_D)])
def test_a_distorted_camera_gives_the_pinhole_cameras_depth_on_the_same_rays(scene, model, D):
    """Goal (issue 22): within 4 % mean relative difference in the outer half of each image, where the lens
    bends most (the lens ignored: ~20 %)."""
    item, pipe = scene
    K = list(item["K"])
    pinhole = pipe.run(list(item["images"]), K)
    raws = [distort(img, k, D, model) for img, k in zip(item["images"], K)]
    undistorted = pipe.run(raws, K, [Calibration(k, W_RAW, H_RAW, D=D, model=model) for k in K])
    ignored = pipe.run(raws, K)
    np.testing.assert_allclose(undistorted.K, pinhole.K)  # what the node publishes: the same rays
    seen = undistorted.images.sum(-1) > 0  # the lens's field of view ends inside the pinhole's corners
    ours = outer_half_relative_difference(undistorted.depth, pinhole.depth, pinhole.K, seen)
    lens_ignored = outer_half_relative_difference(ignored.depth, pinhole.depth, pinhole.K, seen)
    assert ours < 0.04 and lens_ignored > 0.10, (ours, lens_ignored)


def test_remap_tables_are_built_once_and_again_when_the_calibration_changes(scene):
    item, pipe = scene
    K = list(item["K"])
    cals = [Calibration(k, W_RAW, H_RAW, D=PLUMB_BOB_D) for k in K]
    pipe.run(list(item["images"]), K, cals)
    first = pipe.to_model._maps[0][1]
    pipe.run(list(item["images"]), K, cals)
    assert pipe.to_model._maps[0][1] is first
    cals[0] = Calibration(K[0], W_RAW, H_RAW, D=PLUMB_BOB_D * 0.5)
    pipe.run(list(item["images"]), K, cals)
    assert pipe.to_model._maps[0][1] is not first and pipe.to_model._maps[1][1] is not None


def test_a_4_3_and_a_16_9_camera_in_one_rig_are_each_cropped_to_the_models_aspect(scene):
    """Issue 22: a 16:9 camera was stretched to the model's 5:3 (fx and fy scaled apart) beside a 4:3 one."""
    item, pipe = scene
    rng = np.random.default_rng(3)
    sizes = [(640, 480), (1280, 720)] + [(W_RAW, H_RAW)] * 4  # 4:3, 16:9, and the rest 8:5
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in sizes]
    Ks = [np.array([[0.8 * w, 0, w / 2 - 0.5], [0, 0.8 * w, h / 2 - 0.5], [0, 0, 1]]) for w, h in sizes]
    out = pipe.run(images, Ks)
    for (w, h), K_in, K_out in zip(sizes, Ks, out.K):
        assert K_out[0, 0] == pytest.approx(K_out[1, 1], rel=2e-3), (w, h)  # square pixels: no stretch
        np.testing.assert_allclose(K_out[:2, 2], [pipe.width / 2 - 0.5, pipe.height / 2 - 0.5], atol=0.5)
        plan = plan_resize(w, h, pipe.width, pipe.height)
        assert K_out[0, 0] == pytest.approx(K_in[0, 0] * plan.sx)
    assert plan_resize(640, 480, 320, 192).crop == (640, 384) and plan_resize(1280, 720, 320, 192).crop == (1200, 720)


def test_the_deployment_graph_undistorts_with_an_input_grid_as_the_host_does(scene, tmp_path):
    """Issue 22: undistortion on the GPU path, as a graph input (a calibration change is a new grid, not a new
    engine): the undistorting graph on ONNX Runtime gives the host remap's depth on the same rays."""
    item, host = scene
    pipe = SurroundDepthPipeline(host.backend, host.rig, make_cloud=True, composed=True, max_depth=250.0,
                                 graph_cache_dir=str(tmp_path), info=lambda _: None)
    K = list(item["K"])
    raws = [distort(img, k, PLUMB_BOB_D, "plumb_bob") for img, k in zip(item["images"], K)]
    cals = [Calibration(k, W_RAW, H_RAW, D=PLUMB_BOB_D) for k in K]
    cals[5] = None  # a pinhole camera in the same set: the plain crop and resize through the same grid input
    raws[5] = item["images"][5]
    graph = pipe.run(raws, K, cals)
    assert pipe._deployments[(W_RAW, H_RAW, True)] is not None, "the undistorting graph ran"
    on_host = host.run(raws, K, cals)
    pinhole = host.run(list(item["images"]), K)
    np.testing.assert_allclose(graph.K, on_host.K, atol=1e-9)
    seen = (graph.images.sum(-1) > 0) & (on_host.images.sum(-1) > 0)
    # the graph box-averages with the resize's box and samples once, the host remap supersamples: both within the
    # goal of the pinhole set's depth on the same rays
    assert outer_half_relative_difference(graph.depth, pinhole.depth, pinhole.K, seen) < 0.04
    assert outer_half_relative_difference(graph.depth, on_host.depth, on_host.K, seen) < 0.04
    assert graph.cloud is not None and len(graph.cloud) > 0
    files = sorted(p.name for p in tmp_path.glob("*.onnx"))
    other = [Calibration(k, W_RAW, H_RAW, D=PLUMB_BOB_D * 0.5) for k in K]
    pipe.run(raws, K, other)  # another calibration: the same graph, a new grid
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == files and len(files) == 1
