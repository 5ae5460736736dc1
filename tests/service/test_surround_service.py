"""The per-set service without ROS: the node's and `fsmde process`'s shared work, with a stand-in codec."""
import types

import numpy as np
import pytest

from fsmde_ros.errors import ConfigError, MessageError
from fsmde_ros.geometry.rig import load_rig
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
    def camera_info_calibration(msg, rectified=False):
        from fsmde_ros.service.calibration import Calibration

        return Calibration(np.asarray(msg.k, float).reshape(3, 3), int(msg.width), int(msg.height),
                           np.asarray(getattr(msg, "d", np.zeros(5)), float), getattr(msg, "distortion_model", "plumb_bob"),
                           np.asarray(getattr(msg, "p", np.zeros(12)), float).reshape(3, 4), rectified)


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
        sets += service.on_image(i, round(stamp * 1e9), msg, now=stamp, compressed=msg.image is None)
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
    np.testing.assert_allclose(service.calibration(0, W, H).intrinsics(), [[100.0, 0, 39.5], [0, 100.0, 23.5], [0, 0, 1]])
    assert service.calibration(1, W, H) is None, "no CameraInfo yet: the rig's"
    (synced,) = _offer_set(service, [_image(12.0) for _ in range(6)])
    out = service.run(synced)
    assert out.result.K[0, 0, 0] == pytest.approx(100.0)
    np.testing.assert_allclose(out.result.depth, 12.0, atol=1e-3)
    assert service.health.counters["bad_inputs"] == 1


def _info(K, w, h, D=(), model="plumb_bob", P=None):
    return types.SimpleNamespace(k=np.asarray(K, float).ravel(), width=w, height=h, d=np.asarray(D, float),
                                 distortion_model=model, p=np.zeros(12) if P is None else np.asarray(P, float).ravel())


@pytest.mark.parametrize("info, reason", [
    (dict(D=[0.1, 0.01, 0, 0, 0, 0.3, 0], model="plumb_bob"), "D has 7 coefficients, plumb_bob takes 5"),
    (dict(D=[0.1, 0.01, 0.001, 0.0], model="kannala_brandt_9"), "distortion model 'kannala_brandt_9' is not supported"),
    (dict(D=[0.1, 0.01, np.nan, 0, 0], model="plumb_bob"), "D has non-finite entries"),
])
def test_a_camera_info_that_cannot_be_undistorted_is_dropped_for_that_camera_only(model, info, reason):
    """Regression (issue 22): the distortion model and D were ignored; a distorted image was taken as pinhole."""
    warnings = []
    service = _service(model, warnings)
    K = [[100.0, 0, 47.5], [0, 100.0, 31.5], [0, 0, 1]]
    service.on_camera_info(2, _info(K, W, H, **info))
    service.on_camera_info(3, _info(K, W, H, D=[-0.2, 0.05, 0, 0, 0]))  # a good distorted one beside it
    assert service.calibration(2, W, H) is None and service.calibration(3, W, H).distorted
    assert sum(reason in w for w in warnings) == 1 and service.health.counters["bad_inputs"] == 1
    (synced,) = _offer_set(service, [_image(12.0) for _ in range(6)])
    assert service.run(synced) is not None  # the others go on


def test_rectified_images_take_their_intrinsics_from_p(model):
    """image_geometry's reading: for a rectified image (D all zero, or rectified:=true) the intrinsics are P."""
    K = [[100.0, 0, 47.5], [0, 100.0, 31.5], [0, 0, 1]]
    P = [[90.0, 0, 40.0, 0], [0, 90.0, 30.0, 0], [0, 0, 1, 0]]
    service = _service(model, [])
    service.on_camera_info(0, _info(K, W, H, D=[0] * 5, P=P))
    np.testing.assert_allclose(service.calibration(0, W, H).intrinsics(), np.asarray(P)[:, :3])
    service.on_camera_info(1, _info(K, W, H, D=[-0.2, 0.05, 0, 0, 0], P=P))  # distorted: undistorted to K
    np.testing.assert_allclose(service.calibration(1, W, H).intrinsics(), K)
    rect = _service(model, [], rectified=True)
    rect.on_camera_info(1, _info(K, W, H, D=[-0.2, 0.05, 0, 0, 0], P=P))  # a rectified topic: D is ignored
    np.testing.assert_allclose(rect.calibration(1, W, H).intrinsics(), np.asarray(P)[:, :3])
    (synced,) = _offer_set(service, [_image(12.0) for _ in range(6)])
    out = service.run(synced)
    assert out.result.K[0, 0, 0] == pytest.approx(90.0) and out.result.K[1, 0, 0] == pytest.approx(100.0)


def test_a_model_for_another_number_of_views_is_a_configuration_error(tmp_path):
    four = write_oracle_model(tmp_path / "four.onnx", 4, H, W)
    with pytest.raises(ConfigError, match="the model takes 4 views but rig 'ddad' has 6 cameras"):
        _service(four, [])


GOOD_K = np.array([[100.0, 0, 39.5], [0, 100.0, 23.5], [0, 0, 1]])


@pytest.mark.parametrize("field, K, width, height", [
    ("width x height", GOOD_K, W, 0),  # issue 14: height 0 failed every set of all six cameras (ZeroDivisionError)
    ("width x height", GOOD_K, -W, H),
    ("non-finite", np.where(np.eye(3, dtype=bool), np.nan, GOOD_K), W, H),
    ("fx", np.array([[1e-12, 0, 39.5], [0, 100.0, 23.5], [0, 0, 1]]), W, H),  # was accepted: that camera all NaN
    ("fy", np.array([[100.0, 0, 39.5], [0, 1e5, 23.5], [0, 0, 1]]), W, H),
    ("last row", np.array([[100.0, 0, 39.5], [0, 100.0, 23.5], [0, 0, 0]]), W, H),
    ("cx", np.array([[100.0, 0, 900.0], [0, 100.0, 23.5], [0, 0, 1]]), W, H),
    ("cy", np.array([[100.0, 0, 39.5], [0, 100.0, -500.0], [0, 0, 1]]), W, H),
])
def test_an_unusable_camera_info_is_dropped_for_its_camera_only(model, field, K, width, height):
    """Regression (issue 14, item 1): any CameraInfo that cannot be used is rejected for that camera,
    logged once naming the field, counted, and the last good intrinsics stay; the other cameras run."""
    warnings = []
    service = _service(model, warnings)
    service.on_camera_info(2, types.SimpleNamespace(k=GOOD_K.ravel(), width=W, height=H))  # the last good one
    service.on_camera_info(2, types.SimpleNamespace(k=K.ravel(), width=width, height=height))
    service.on_camera_info(2, types.SimpleNamespace(k=K.ravel(), width=width, height=height))
    assert len(warnings) == 1 and "CAMERA_08" in warnings[0] and field in warnings[0], warnings
    assert service.health.camera_errors["CAMERA_08"]["bad_camera_info"] == 2
    np.testing.assert_array_equal(service.calibration(2, W, H).intrinsics(), GOOD_K)
    (synced,) = _offer_set(service, [_image(12.0) for _ in range(6)])
    out = service.run(synced)
    np.testing.assert_allclose(out.result.depth, 12.0, atol=1e-3)  # every camera, this one with the good K


def test_a_camera_info_of_another_aspect_ratio_falls_back_to_the_rigs_intrinsics(model):
    warnings = []
    service = _service(model, warnings)
    service.on_camera_info(0, types.SimpleNamespace(k=GOOD_K.ravel(), width=W, height=2 * H))
    assert service.calibration(0, W, H) is None and "does not scale" in warnings[0]


def test_each_reason_is_logged_once_per_camera_not_once_per_kind(model):
    """Regression (issue 14, item 7): a second, different bad-image reason on the same camera was never logged."""
    warnings = []
    service = _service(model, warnings)
    service.drop(1, "bad_image", "truncated buffer: 100 bytes for 80x48 rgb8 with step 240")
    service.drop(1, "bad_image", "truncated buffer: 120 bytes for 80x48 rgb8 with step 240")  # same reason
    service.drop(1, "bad_image", "unsupported encoding 'yuv422'")  # another reason: logged
    service.drop(3, "bad_image", "unsupported encoding 'yuv422'")  # another camera: logged
    assert len(warnings) == 3 and service.health.counters["bad_inputs"] == 4


def test_a_model_with_the_right_names_but_float_images_is_refused_at_start(tmp_path):
    """Regression (issue 14, item 4): such an ONNX started and then failed every set."""
    from onnx import TensorProto

    from fsmde_ros.model.contract import OnnxModelError

    floats = write_oracle_model(tmp_path / "float_images.onnx", 6, H, W, images_type=TensorProto.FLOAT)
    with pytest.raises(OnnxModelError, match="'images' must be uint8, found float"):
        _service(floats, [])


def _level(service, now, name="surround_depth: pipeline"):
    return {n: (level, msg) for n, level, msg, _ in service.report(now)}[name]


def test_the_status_is_error_while_sets_fail_and_recovers_after(model):
    """Regression (issue 14, item 6): a node failing every set reported level 0, "running"."""
    from fsmde_ros.service.diagnostics import ERROR, OK, RATE_WINDOW_S

    clock = [0.0]
    service = SurroundDepthService.from_params({"model": str(model), "backend": "onnxruntime", "rig": "ddad"},
                                               ArrayCodec, warn=lambda _: None, info=lambda _: None,
                                               clock=lambda: clock[0])
    undecodable = [types.SimpleNamespace(image=None, header=None) for _ in range(6)]
    for t in (1.0, 1.1, 1.2):
        clock[0] = t
        (synced,) = _offer_set(service, undecodable, stamp=t)
        assert service.run(synced) is None
    level, message = _level(service, 1.3)
    assert level == ERROR and "sets failing: 3 failed" in message
    t = 1.2 + RATE_WINDOW_S + 0.5
    clock[0] = t
    (synced,) = _offer_set(service, [_image() for _ in range(6)], stamp=t)
    service.published(service.run(synced), t, 50.0, 1.0)
    assert _level(service, t)[0] == OK


def test_a_camera_that_never_sent_anything_is_reported_silent_after_camera_timeout(model):
    """Regression (issue 14, item 6): a wrong topic or a QoS mismatch showed "silent cameras: none" forever."""
    from fsmde_ros.service.diagnostics import WARN

    warnings = []
    service = _service(model, warnings, camera_timeout=1.0)
    service.health.start(0.0)
    assert _level(service, 0.5)[1] == "waiting for a complete surround set"
    level, message = _level(service, 1.5)  # nothing at all arrived: all six
    assert level == WARN and message == "silent: " + ", ".join(service.rig.names)
    assert any("cameras silent" in w for w in warnings)
    n = len(warnings)
    service.report(2.0)
    assert len(warnings) == n, "logged when it changes, not every second"


def test_the_bundled_student_says_once_that_it_has_never_seen_a_real_image(model):
    """Issue 22 item 6: on a real camera the bundled synthetic student gives plausible-looking, wrong metric depth."""
    warnings = []
    SurroundDepthService.from_params({"model": "", "backend": "onnxruntime", "rig": "ddad"}, ArrayCodec,
                                     warn=warnings.append, info=lambda _: None)
    assert sum("synthetic streets only" in w and "never seen a real image" in w for w in warnings) == 1
    warnings.clear()
    _service(model, warnings)
    assert not any("synthetic streets" in w for w in warnings)  # a model of one's own: nothing to say


def test_a_model_exported_for_another_rig_is_warned_about_at_start(model, tmp_path):
    """Issue 22 item 4: the rig recorded in the ONNX metadata was never compared with the `rig` parameter."""
    import onnx

    m = onnx.load(str(model))
    entry = m.metadata_props.add()
    entry.key, entry.value = "rig", "nuscenes"
    onnx.save(m, str(tmp_path / "nusc.onnx"))
    warnings = []
    SurroundDepthService.from_params({"model": str(tmp_path / "nusc.onnx"), "backend": "onnxruntime", "rig": "ddad"},
                                     ArrayCodec, warn=warnings.append, info=lambda _: None)
    assert sum("exported for rig 'nuscenes', the node runs rig 'ddad'" in w for w in warnings) == 1
    warnings.clear()
    SurroundDepthService.from_params({"model": str(tmp_path / "nusc.onnx"), "backend": "onnxruntime",
                                      "rig": "nuscenes"}, ArrayCodec, warn=warnings.append, info=lambda _: None)
    assert not any("exported for rig" in w for w in warnings)


def test_a_camera_whose_inputs_are_all_dropped_is_named_not_waited_for(model):
    """Regression (issue 22): a driver's encoding the node could not read was dropped while /diagnostics said it
    was "waiting for a complete surround set"."""
    from fsmde_ros.service.diagnostics import WARN

    warnings = []
    service = _service(model, warnings)
    service.health.start(0.0)
    images = [_image() for _ in range(6)]
    images[2] = types.SimpleNamespace(image=np.zeros((H, W), np.uint8), header=None)  # not an RGB image
    for k in range(3):
        assert _offer_set(service, images, stamp=0.1 * (k + 1)) == []
    level, message = _level(service, 0.5)
    assert level == WARN and message == (f"no complete surround set yet; inputs dropped on {service.rig.names[2]} "
                                         "(bad_image x3) (the reason is in the log)")
    assert sum("not an RGB image" in w for w in warnings) == 1  # the reason, logged once


def test_a_time_jump_restarts_the_latency_statistics_and_is_logged(model):
    """Regression (issue 14, item 6): after a bag loop the latency read 30-60 s for the next 200 sets."""
    warnings = []
    service = _service(model, warnings)
    for k, stamp in enumerate((100.0, 100.1, 100.2, 50.0, 50.1)):  # the bag loops back by 50 s after three sets
        for synced in _offer_set(service, [_image() for _ in range(6)], stamp=stamp):
            latency_ms = 40.0 if stamp < 100 else 50_000.0  # the old epoch's stamps read as 50 s late
            service.published(service.run(synced), 10.0 + k, latency_ms, 1.0)
    assert list(service.health.latency_ms) == [40.0] * len(service.health.latency_ms)
    service.report(20.0)
    assert any("time jumped back" in w for w in warnings)


# -- camera mounts from TF (issue 22 item 3) ------------------------------------------------------------
def _moved(T, dx=0.0, yaw_deg=0.0):
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    R = np.eye(4)
    R[:2, :2] = [[c, -s], [s, c]]
    out = R @ T
    out[0, 3] += dx
    return out


def test_tf_that_disagrees_with_the_yaml_is_warned_once_per_camera_and_followed(model):
    warnings, yaml_rig = [], load_rig("ddad")
    tf = {c.frame_id: c.T_base_cam for c in yaml_rig.cameras}
    tf[yaml_rig.cameras[1].frame_id] = _moved(yaml_rig.cameras[1].T_base_cam, dx=0.3)
    tf[yaml_rig.cameras[4].frame_id] = _moved(yaml_rig.cameras[4].T_base_cam, yaw_deg=0.2)  # within tolerance
    calls = []

    def lookup(base, frame):
        calls.append((base, frame))
        return tf[frame]

    service = SurroundDepthService.from_params({"model": str(model), "backend": "onnxruntime", "rig": "ddad"},
                                               ArrayCodec, warn=warnings.append, info=lambda _: None, mount_lookup=lookup)
    for _ in range(3):
        service.refresh_mounts()
    said = [w for w in warnings if "TF's mount differs" in w]
    assert len(said) == 1 and yaml_rig.names[1] in said[0] and "0.300 m" in said[0]
    assert calls[0] == ("base_link", yaml_rig.cameras[0].frame_id)
    np.testing.assert_allclose(service.pipeline.T_base_cam[1], tf[yaml_rig.cameras[1].frame_id])  # the cloud follows TF
    np.testing.assert_allclose(service.pipeline.T_base_cam[4], tf[yaml_rig.cameras[4].frame_id])
    np.testing.assert_allclose(service.pipeline.fuser.T_base_cam[1], tf[yaml_rig.cameras[1].frame_id])


def test_no_tf_answer_falls_back_to_the_yaml_with_one_warning_and_no_lookup_is_said_once(model):
    warnings, infos = [], []
    service = SurroundDepthService.from_params({"model": str(model), "backend": "onnxruntime", "rig": "ddad"},
                                               ArrayCodec, warn=warnings.append, info=infos.append,
                                               mount_lookup=lambda base, frame: None)
    service.refresh_mounts()
    service.refresh_mounts()
    assert sum("TF has no transform base_link <- " in w for w in warnings) == 6  # once per camera
    np.testing.assert_array_equal(service.pipeline.T_base_cam, load_rig("ddad").T_base_cam)
    infos.clear()
    SurroundDepthService.from_params({"model": str(model), "backend": "onnxruntime", "rig": "ddad"}, ArrayCodec,
                                     warn=warnings.append, info=infos.append)  # no lookup: a wheels install
    assert sum("camera mounts from the rig YAML" in i for i in infos) == 1


def test_a_frame_id_that_is_not_the_rigs_is_warned_once_and_followed_for_tf(model):
    warnings, seen = [], []
    service = SurroundDepthService.from_params({"model": str(model), "backend": "onnxruntime", "rig": "ddad"},
                                               ArrayCodec, warn=warnings.append, info=lambda _: None,
                                               mount_lookup=lambda base, frame: seen.append(frame) or None)
    wrong = types.SimpleNamespace(image=encode_depth(np.full((H, W), 10.0)), header=types.SimpleNamespace(frame_id="cam_front"))
    for k in range(3):
        service.on_image(0, round((k + 1) * 1e8), wrong, now=0.1 * (k + 1))
    said = [w for w in warnings if "images arrive in frame 'cam_front'" in w]
    assert len(said) == 1 and service.rig.names[0] in said[0] and service.rig.cameras[0].frame_id in said[0]
    service.refresh_mounts()
    assert seen[0] == "cam_front"


def test_a_steady_overload_is_said_when_it_starts_summarised_every_10_s_and_when_it_ends(model):
    """Issue 25 item 3: under a steady 3x overload (42 sets/s offered, 12 published) the node logged a WARN every
    second, 30 lines in 30 s."""
    warnings, infos = [], []
    service = SurroundDepthService.from_params({"model": str(model), "backend": "onnxruntime", "rig": "ddad"},
                                               ArrayCodec, warn=warnings.append, info=infos.append)
    service.report(0.0)
    for second in range(1, 31):  # 30 sets dropped a second for 30 s
        service.health.count("sets_dropped", 30)
        service.report(float(second))
    for second in range(31, 34):  # then none
        service.report(float(second))
    said = [w for w in warnings if "overload" in w]
    assert 2 <= len(said) <= 5, said  # the start and a summary every 10 s, not 30 lines
    assert "~30/s" in said[0] and "overload goes on: 300 dropped in the last 10 s (30.0/s)" in said[1]
    assert sum("overload ended after" in i and "900 messages or sets dropped in all" in i for i in infos) == 1
    assert service.health.counters["sets_dropped"] == 900  # every drop counted exactly


def test_the_cross_view_check_runs_off_the_worker_so_the_next_set_does_not_wait_for_it(model, monkeypatch):
    """Regression (issue 25): every CONSISTENCY_PERIOD_S the worker measured the cross-view consistency itself (~50 ms
    at 384x640 on two cores) before taking the next set: a delay outside every stage timing that, under load, made the
    node drop the set waiting behind it."""
    import threading
    import time

    from fsmde_ros.service import surround_service

    started, release = threading.Event(), threading.Event()

    def slow_consistency(depth, rig, max_depth):
        started.set()
        release.wait(5.0)
        return {"abs_m": 0.25, "rel": 0.125}

    monkeypatch.setattr(surround_service, "cross_view_consistency", slow_consistency)
    service = _service(model, [])
    try:
        (synced,) = _offer_set(service, [_image() for _ in range(6)], stamp=1.0)
        output = service.run(synced)
        begin = time.perf_counter()
        service.published(output, 1.0, 50.0, 1.0)
        assert started.wait(5.0), "the check was not started"
        (synced,) = _offer_set(service, [_image() for _ in range(6)], stamp=5.0)
        service.published(service.run(synced), 5.0, 50.0, 1.0)  # a period later, the first check still running
        assert time.perf_counter() - begin < 2.0, "published() waited for the check"
        assert service.health.consistency == {}
        release.set()
        service._consistency_job.result(timeout=5.0)
        assert service.health.consistency == {"median abs [m]": 0.25, "median rel": 0.125}
    finally:
        release.set()
        service.close()
