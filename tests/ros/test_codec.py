"""Message conversions: every supported encoding, padded rows, malformed input, depth and clouds."""
import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs", reason="needs the ROS 2 message packages (make setup installs the wheels)")
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from fsmde_ros.errors import MessageError  # noqa: E402
from fsmde_ros.geometry.cloud import SurroundCloud  # noqa: E402
from fsmde_ros.ros import codec as ros_msgs  # noqa: E402
from fsmde_ros.service.surround_service import camera_info_problem  # noqa: E402

BUILD = ros_msgs.MessageBuilder.rclpy()
RGB = np.random.default_rng(0).integers(0, 255, size=(5, 7, 3), dtype=np.uint8)


def _msg(encoding, pixels, step=None):
    h, w = pixels.shape[:2]
    c = 1 if pixels.ndim == 2 else pixels.shape[2]
    step = step or w * c
    rows = np.zeros((h, step), np.uint8)
    rows[:, : w * c] = pixels.reshape(h, w * c)
    return Image(height=h, width=w, encoding=encoding, step=step, data=rows.tobytes())


@pytest.mark.parametrize("encoding, pixels", [
    ("rgb8", RGB), ("bgr8", RGB[..., ::-1]), ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)])),
    ("bgra8", np.dstack([RGB[..., ::-1], np.zeros(RGB.shape[:2], np.uint8)])),
])
@pytest.mark.parametrize("padding", [0, 5])
def test_colour_encodings_give_rgb_even_with_padded_rows(encoding, pixels, padding):
    c = pixels.shape[2]
    msg = _msg(encoding, np.ascontiguousarray(pixels), step=7 * c + padding)
    np.testing.assert_array_equal(ros_msgs.image_to_rgb(msg), RGB)


def test_mono8_is_replicated_to_three_channels():
    gray = RGB[..., 0]
    out = ros_msgs.image_to_rgb(_msg("mono8", gray))
    assert out.shape == (5, 7, 3) and np.all(out == gray[..., None])


@pytest.mark.parametrize("msg, reason", [
    (Image(height=5, width=7, encoding="yuv422", step=14, data=bytes(70)), "unsupported encoding 'yuv422'"),
    (Image(height=5, width=7, encoding="rgb8", step=21, data=bytes(50)), "truncated buffer"),
    (Image(height=5, width=7, encoding="rgb8", step=10, data=bytes(105)), "step 10 is smaller"),
    (Image(height=0, width=7, encoding="rgb8", step=21, data=b""), "empty image"),
])
def test_malformed_images_raise_a_clear_conversion_error(msg, reason):
    with pytest.raises(MessageError, match=reason):
        ros_msgs.image_to_rgb(msg)


def test_compressed_png_round_trips_and_garbage_is_an_error():
    ok, png = cv2.imencode(".png", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format="png", data=png.tobytes())
    np.testing.assert_array_equal(ros_msgs.image_to_rgb(msg), RGB)
    with pytest.raises(MessageError, match="cannot decode"):
        ros_msgs.image_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg"))


def test_depth_image_is_32fc1_metres_and_keeps_nan():
    depth = np.array([[1.5, np.nan], [80.25, 3.0]], np.float32)
    msg = BUILD.depth_image(depth, Header(frame_id="cam"))
    assert msg.encoding == "32FC1" and msg.step == 8 and msg.header.frame_id == "cam"
    back = ros_msgs.image_to_depth(msg)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(depth))
    np.testing.assert_array_equal(back[~np.isnan(back)], depth[~np.isnan(depth)])


def test_camera_info_round_trip_and_unusable_intrinsics_are_named():
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 191.5], [0, 0, 1]])
    info = BUILD.camera_info(K, 640, 384, Header(frame_id="cam"))
    np.testing.assert_array_equal(ros_msgs.camera_info_K(info), K)
    assert list(info.p)[:3] == [500.0, 0.0, 319.5]
    # decoding takes any 9 numbers; the service rejects what cannot be used, naming the field
    assert camera_info_problem(ros_msgs.camera_info_K(CameraInfo(k=[float("nan")] * 9)), 640, 384) == \
        "K has non-finite entries"
    uncalibrated = CameraInfo()  # all zeros: a driver that never calibrated
    assert "fx = 0 px is outside" in camera_info_problem(ros_msgs.camera_info_K(uncalibrated), 640, 384)


def test_point_cloud_fields_and_packed_colour():
    cloud = SurroundCloud(xyz=np.array([[1, 2, 3], [4, 5, 6]], np.float32), camera=np.array([0, 5], np.uint8),
                          rgb=np.array([[255, 0, 0], [1, 2, 3]], np.uint8))
    msg = BUILD.surround_cloud(cloud, Header(frame_id="base_link"))
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "camera"]
    assert msg.width == 2 and msg.point_step == 20 and msg.row_step == 40 and msg.is_dense
    pts = ros_msgs.cloud_array(msg)
    np.testing.assert_array_equal(pts["camera"], [0, 5])
    np.testing.assert_array_equal(pts["z"], [3, 6])
    packed = pts["rgb"].view(np.uint32)
    assert packed[0] == 0xFF0000 and packed[1] == 0x010203
