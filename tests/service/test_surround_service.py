"""The per-set service without ROS: the node's and `fsmde process`'s shared work, with a stand-in codec."""
import types

import numpy as np
import pytest

from fsmde_ros.errors import ConfigError, MessageError
from fsmde_ros.service.surround_service import SurroundDepthService
from tests.helpers.oracle_model import encode_depth, write_oracle_model

H, W = 48, 80


class ArrayCodec:
    """Messages are SimpleNamespaces holding a numpy image (or None: undecodable) and a K."""

    @staticmethod
    def check_image(msg):
        if msg.image is not None and msg.image.ndim != 3:
            raise MessageError("not an RGB image")

    @staticmethod
    def image_to_rgb(msg):
        if msg.image is None:
            raise MessageError("cannot decode compressed image")
        return msg.image

    @staticmethod
    def camera_info_K(msg):
        if not np.isfinite(msg.k).all():
            raise MessageError("CameraInfo has unusable intrinsics")
        return np.asarray(msg.k, float).reshape(3, 3)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_oracle_model(tmp_path_factory.mktemp("m") / "oracle.onnx", 6, H, W)


def _service(model, warnings, **params):
    return SurroundDepthService.from_params({"model": str(model), "backend": "onnxruntime", "rig": "ddad", **params},
                                            ArrayCodec, warn=warnings.append, info=lambda _: None)


def _image(depth_m=10.0, shape=(H, W)):
    return types.SimpleNamespace(image=encode_depth(np.full(shape, depth_m)), header=None)


def _offer_set(service, images, stamp=1.0):
    sets = []
    for i, msg in enumerate(images):
        sets += service.on_image(i, stamp, msg, now=stamp, compressed=msg.image is None)
    return sets


def test_a_set_with_no_decodable_image_is_counted_as_failed_not_skipped(model):
    """Regression (issue 13): the node skipped such a set silently while `fsmde process` counted it."""
    warnings = []
    service = _service(model, warnings)
    undecodable = [types.SimpleNamespace(image=None, header=None) for _ in range(6)]  # e.g. corrupt JPEGs
    (synced,) = _offer_set(service, undecodable)
    assert service.run(synced) is None
    assert service.health.counters["failed_sets"] == 1 and service.health.counters["bad_inputs"] == 6
    assert len(warnings) == 6 and all("cannot decode compressed image" in w for w in warnings)
    (synced,) = _offer_set(service, undecodable, stamp=2.0)
    service.run(synced)
    assert len(warnings) == 6, "logged once per camera and reason"


def test_a_bad_image_at_arrival_is_dropped_before_it_can_join_a_set(model):
    service = _service(model, [])
    images = [_image() for _ in range(6)]
    images[3] = types.SimpleNamespace(image=np.zeros((H, W), np.uint8), header=None)  # 2-D: not RGB
    assert _offer_set(service, images) == []
    status = {name: values for name, _, _, values in service.report(1.0)}
    assert status["surround_depth: camera CAMERA_09"]["dropped bad_image"] == "1"


def test_camera_info_intrinsics_are_used_scaled_and_a_bad_one_keeps_the_last_good(model):
    service = _service(model, [])
    K = np.array([[200.0, 0, 79.5], [0, 200.0, 47.5], [0, 0, 1]])
    service.on_camera_info(0, types.SimpleNamespace(k=K.ravel(), width=2 * W, height=2 * H))
    service.on_camera_info(0, types.SimpleNamespace(k=np.full(9, np.nan), width=W, height=H))  # rejected
    # halved with the pixel-centre convention: c' = (c + 0.5) s - 0.5
    np.testing.assert_allclose(service.intrinsics(0, W, H), [[100.0, 0, 39.5], [0, 100.0, 23.5], [0, 0, 1]])
    assert service.intrinsics(1, W, H) is None, "no CameraInfo yet: the rig's"
    (synced,) = _offer_set(service, [_image(12.0) for _ in range(6)])
    out = service.run(synced)
    assert out.result.K[0, 0, 0] == pytest.approx(100.0)
    np.testing.assert_allclose(out.result.depth, 12.0, atol=1e-3)
    assert service.health.counters["bad_inputs"] == 1


def test_a_model_for_another_number_of_views_is_a_configuration_error(tmp_path):
    four = write_oracle_model(tmp_path / "four.onnx", 4, H, W)
    with pytest.raises(ConfigError, match="the model takes 4 views but rig 'ddad' has 6 cameras"):
        _service(four, [])
