"""Message conversions: every supported encoding, padded rows, malformed input, depth and clouds."""
import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs", reason="needs the ROS 2 message packages (make setup installs the wheels)")
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from fsmde_ros.errors import MessageError  # noqa: E402
from fsmde_ros.geometry.cloud import SurroundCloud  # noqa: E402
from fsmde_ros.ros import codec  # noqa: E402
from fsmde_ros.service.surround_service import camera_info_problem  # noqa: E402

BUILD = codec.MessageBuilder.rclpy()
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
    np.testing.assert_array_equal(codec.image_to_rgb(msg), RGB)


def test_mono8_is_replicated_to_three_channels():
    gray = RGB[..., 0]
    out = codec.image_to_rgb(_msg("mono8", gray))
    assert out.shape == (5, 7, 3) and np.all(out == gray[..., None])


@pytest.mark.parametrize("msg, reason", [
    (Image(height=5, width=7, encoding="nv12", step=7, data=bytes(70)), "unsupported encoding 'nv12'"),
    (Image(height=5, width=7, encoding="yuv422", step=14, data=bytes(70)), "width must be even"),
    (Image(height=5, width=8, encoding="bayer_rggb8", step=8, data=bytes(30)), "truncated buffer"),
    (Image(height=5, width=8, encoding="mono16", step=8, data=bytes(80)), "step 8 is smaller"),
    (Image(height=5, width=7, encoding="rgb8", step=21, data=bytes(50)), "truncated buffer"),
    (Image(height=5, width=7, encoding="rgb8", step=10, data=bytes(105)), "step 10 is smaller"),
    (Image(height=0, width=7, encoding="rgb8", step=21, data=b""), "empty image"),
])
def test_malformed_images_raise_a_clear_conversion_error(msg, reason):
    """Regression (issue 22): an odd-width yuv422 image, a short Bayer buffer, a 16-bit step of 8-bit size."""
    with pytest.raises(MessageError, match=reason):
        codec.image_to_rgb(msg)


# -- the encodings camera drivers publish (issue 22): each against a conversion written here -------------
SMOOTH = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 255, size=(40, 64, 3)).astype(np.uint8), (0, 0), 3)


def _mosaic(rgb, pattern):
    """A Bayer raw image of `pattern` (the ROS name's first row, e.g. 'rggb': R G / G B) from an RGB image."""
    raw = np.zeros(rgb.shape[:2], np.uint8)
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        raw[dy::2, dx::2] = rgb[dy::2, dx::2, "rgb".index(colour)]
    return raw


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_images_are_demosaiced_to_the_right_colours(pattern):
    out = codec.image_to_rgb(_msg(f"bayer_{pattern}8", _mosaic(SMOOTH, pattern)))
    err = np.abs(out.astype(int) - SMOOTH)[2:-2, 2:-2]  # borders aside
    assert out.shape == SMOOTH.shape and err.mean() < 3.0, (pattern, err.mean())  # a swapped R/B is ~10x that


def _bt601_yuv422(rgb, order):
    """Packed 4:2:2 in BT.601 video range (what cameras send), 'uyvy' or 'yuyv', chroma of each pixel pair averaged."""
    r, g, b = (rgb[..., k].astype(float) for k in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    u2, v2 = (0.5 * (c[:, 0::2] + c[:, 1::2]) for c in (u, v))
    out = np.zeros((*rgb.shape[:2], 2))
    out[..., 1 if order == "uyvy" else 0] = y
    chroma = out[..., 0 if order == "uyvy" else 1]
    chroma[:, 0::2], chroma[:, 1::2] = u2, v2
    return np.clip(out.round(), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("encoding, order", [("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"),
                                             ("yuyv", "yuyv")])
def test_yuv422_images_decode_to_rgb(encoding, order):
    out = codec.image_to_rgb(_msg(encoding, _bt601_yuv422(SMOOTH, order), step=64 * 2 + 6))
    assert np.abs(out.astype(int) - SMOOTH).mean() < 3.0


@pytest.mark.parametrize("encoding, channels", [("rgb16", "rgb"), ("bgr16", "bgr"), ("mono16", "m"), ("rgba16", "rgba")])
@pytest.mark.parametrize("bigendian", [0, 1])
def test_16_bit_images_keep_their_top_8_bits_in_either_byte_order(encoding, channels, bigendian):
    full = SMOOTH.astype(np.uint16) * 256 + 100  # 8-bit v on the 16-bit scale, with low bits
    src = {"rgb": full, "bgr": full[..., ::-1], "m": full[..., 0],
           "rgba": np.dstack([full, np.full(full.shape[:2], 65535, np.uint16)])}[channels]
    data = np.ascontiguousarray(src).astype(">u2" if bigendian else "<u2").tobytes()
    c = 1 if src.ndim == 2 else src.shape[2]
    msg = Image(height=40, width=64, encoding=encoding, is_bigendian=bigendian, step=64 * c * 2, data=data)
    want = SMOOTH if channels != "m" else np.repeat(SMOOTH[..., :1], 3, axis=2)
    np.testing.assert_array_equal(codec.image_to_rgb(msg), want)


def test_compressed_png_round_trips_and_garbage_is_an_error():
    ok, png = cv2.imencode(".png", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format="png", data=png.tobytes())
    np.testing.assert_array_equal(codec.image_to_rgb(msg), RGB)
    with pytest.raises(MessageError, match="cannot decode"):
        codec.image_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg"))


def test_depth_image_is_32fc1_metres_and_keeps_nan():
    depth = np.array([[1.5, np.nan], [80.25, 3.0]], np.float32)
    msg = BUILD.depth_image(depth, Header(frame_id="cam"))
    assert msg.encoding == "32FC1" and msg.step == 8 and msg.header.frame_id == "cam"
    back = codec.image_to_depth(msg)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(depth))
    np.testing.assert_array_equal(back[~np.isnan(back)], depth[~np.isnan(depth)])


def test_camera_info_round_trip_and_unusable_intrinsics_are_named():
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 191.5], [0, 0, 1]])
    info = BUILD.camera_info(K, 640, 384, Header(frame_id="cam"))
    np.testing.assert_array_equal(codec.camera_info_K(info), K)
    assert list(info.p)[:3] == [500.0, 0.0, 319.5]
    # decoding takes any 9 numbers; the service rejects what cannot be used, naming the field
    assert camera_info_problem(codec.camera_info_K(CameraInfo(k=[float("nan")] * 9)), 640, 384) == \
        "K has non-finite entries"
    uncalibrated = CameraInfo()  # all zeros: a driver that never calibrated
    assert "fx = 0 px is outside" in camera_info_problem(codec.camera_info_K(uncalibrated), 640, 384)


def test_point_cloud_fields_and_packed_colour():
    cloud = SurroundCloud(xyz=np.array([[1, 2, 3], [4, 5, 6]], np.float32), camera=np.array([0, 5], np.uint8),
                          rgb=np.array([[255, 0, 0], [1, 2, 3]], np.uint8))
    msg = BUILD.surround_cloud(cloud, Header(frame_id="base_link"))
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "camera"]
    assert msg.width == 2 and msg.point_step == 20 and msg.row_step == 40 and msg.is_dense
    pts = codec.cloud_array(msg)
    np.testing.assert_array_equal(pts["camera"], [0, 5])
    np.testing.assert_array_equal(pts["z"], [3, 6])
    packed = pts["rgb"].view(np.uint32)
    assert packed[0] == 0xFF0000 and packed[1] == 0x010203
