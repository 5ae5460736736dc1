"""Per-image work as frames arrive (issue 25 item 1): a set's completion leaves only the hand-off."""
import gc
import threading
import time
import types
import weakref

import numpy as np
import pytest

from fsmde_ros.service.frames import FramePreparer, PreparedImage, prep_workers
from tests.helpers.oracle_model import encode_depth
from tests.service.test_surround_service import H, W, _info, _service, model  # noqa: F401  (model: a fixture)

SLOW_S = 0.1  # the host resize made this slow, so that waiting for it shows in the set's timings


def _native(depth_m=10.0, scale=2):
    """A frame at twice the model's size: the host path resizes it."""
    return types.SimpleNamespace(image=encode_depth(np.full((scale * H, scale * W), depth_m)), header=None)


def _slow_resize(service, calls):
    """Make the host path's per-image work slow and record (camera, time) of each call."""
    original = service.pipeline.model_image

    def slow(i, image, K, distorted=None):
        calls.append((i, time.perf_counter()))
        time.sleep(SLOW_S)
        return original(i, image, K, distorted)
    service.pipeline.model_image = slow


def _wait(frames, timeout=5.0):
    end = time.monotonic() + timeout
    while not all(f.ready for f in frames):
        assert time.monotonic() < end, "the frames were not prepared"
        time.sleep(0.005)


def _submitted(service):
    """Capture the Frames the service queues."""
    frames, submit = [], service.frames.submit

    def capture(i, msg):
        frames.append(submit(i, msg))
        return frames[-1]
    service.frames.submit = capture
    return frames


def test_an_image_arriving_alone_is_prepared_before_its_set_completes(model):
    service = _service(model, [])
    calls = []
    _slow_resize(service, calls)
    frames = _submitted(service)
    for i in range(5):  # five cameras arrive; the sixth is late
        assert service.on_image(i, 10**9, _native(), now=1.0) == []
    _wait(frames)
    assert sorted(i for i, _ in calls) == [0, 1, 2, 3, 4], "resized at arrival, before the set exists"
    completed = time.perf_counter()
    (synced,) = service.on_image(5, 10**9, _native(), now=1.01)
    out = service.run(synced)
    np.testing.assert_allclose(out.result.depth, 10.0, atol=1e-3)
    assert [i for i, t in calls if t >= completed] == [5], "only the last frame's work is left when the set completes"
    t = out.result.timings_ms
    assert t["arrival_prep_ms"] >= 6 * SLOW_S * 1e3  # all six frames' work was done ...
    assert t["wait_ms"] < 1.9 * SLOW_S * 1e3, "... but the set waited for the late frame's only"
    assert out.result.resized_from == {i: (2 * W, 2 * H) for i in range(6)}


def test_a_dropped_frames_work_is_counted_and_freed(model):
    service = _service(model, [], queue_size=1)  # a second frame of a camera pushes the first out
    frames = _submitted(service)
    kept = []
    original = service.pipeline.model_image
    service.pipeline.model_image = lambda *a: kept.append(original(*a)) or kept[-1]
    service.on_image(0, 10**9, _native(), now=1.0)
    _wait(frames)
    first = weakref.ref(kept[0][0])  # the prepared image [h,w,3] of the first frame
    del frames[:], kept[:]
    service.on_image(0, 2 * 10**9, _native(), now=2.0)  # overflow: the first frame is dropped
    gc.collect()
    assert service.sync.stats.dropped_overflow == 1
    assert service.frames.counts() == {"frames_cancelled": 0, "frames_wasted": 1}
    assert first() is None, "the dropped frame's prepared image was freed"
    for i in range(1, 6):  # the set of the second frame is used: nothing more counted as wasted
        sets = service.on_image(i, 2 * 10**9, _native(), now=2.0)
    assert service.run(sets[0]) is not None
    del sets
    gc.collect()
    assert service.frames.counts()["frames_wasted"] == 1
    status = {name: values for name, _, _, values in service.report(3.0)}
    assert status["surround_depth: pipeline"]["frames_wasted"] == "1"


def test_work_not_started_when_a_frame_is_dropped_is_cancelled():
    release, ran = threading.Event(), []

    def prepare(i, msg):
        ran.append(msg)
        release.wait(5.0)
        return PreparedImage(np.zeros((2, 2, 3), np.uint8))
    preparer = FramePreparer(prepare, workers=1)
    try:
        running = preparer.submit(0, "a")
        queued = [preparer.submit(0, "b"), preparer.submit(0, "c")]
        del queued  # dropped while waiting for the pool: never run
        assert preparer.counts() == {"frames_cancelled": 2, "frames_wasted": 0}
        release.set()
        assert running.take().rgb.shape == (2, 2, 3)
        del running
        preparer.close()
        assert ran == ["a"] and preparer.counts() == {"frames_cancelled": 2, "frames_wasted": 0}, \
            "a frame a set took is neither cancelled nor wasted"
    finally:
        release.set()
        preparer.close()


def test_camera_info_arriving_after_the_frame_is_still_used_for_its_set(model):
    """Regression: with the work done at arrival, a bag's first frames (written before their CameraInfo) were
    resized with the rig's intrinsics; the set takes the calibration of when it completes, as before."""
    service = _service(model, [])
    frames = _submitted(service)
    for i in range(5):
        service.on_image(i, 10**9, _native(), now=1.0)
    _wait(frames)
    K = np.array([[300.0, 0, 2 * W / 2 - 0.5], [0, 300.0, 2 * H / 2 - 0.5], [0, 0, 1]])
    service.on_camera_info(0, _info(K, 2 * W, 2 * H))
    (synced,) = service.on_image(5, 10**9, _native(), now=1.01)
    out = service.run(synced)
    assert out.result.K[0, 0, 0] == pytest.approx(150.0)  # the CameraInfo's fx, halved to the model's size
    assert out.result.K[1, 0, 0] != pytest.approx(150.0)


def test_an_undecodable_frame_is_dropped_when_its_set_is_taken(model):
    warnings = []
    service = _service(model, warnings)
    images = [_native() for _ in range(6)]
    images[2] = types.SimpleNamespace(image=None, header=None)  # a corrupt JPEG: decoding fails in the pool
    sets = []
    for i, msg in enumerate(images):
        sets += service.on_image(i, 10**9, msg, now=1.0, compressed=msg.image is None)
    out = service.run(sets[0])
    assert not out.result.present[2] and out.result.present.sum() == 5 and out.messages[2] is None
    assert sum(e["bad_image"] for e in service.health.camera_errors.values()) == 1
    assert len(warnings) == 1 and "cannot decode" in warnings[0]


def test_the_pool_is_sized_by_threads_and_cameras():
    assert prep_workers(1, 6) == 1
    assert prep_workers(3, 6) == 3
    assert prep_workers(64, 6) == 4  # more only fight the backend for the cores
    assert prep_workers(8, 2) == 2
    assert 1 <= prep_workers(0, 6) <= 4  # 0: the machine's cores
