"""sensor_msgs/Image <-> numpy: encodings, row padding, bad data, resizing."""

from types import SimpleNamespace

import numpy as np
import pytest

from amplify_ros.image_conversion import (ImageConversionError, image_for_model, image_to_rgb, resize_to,
                                          rgb_to_image_fields)


def rgb(h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def msg(**fields):
    return SimpleNamespace(**fields)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_round_trip_with_and_without_padding(encoding, pad):
    image = rgb()
    fields = rgb_to_image_fields(image, encoding, pad=pad)
    assert fields["step"] == 5 * 3 + pad and len(fields["data"]) == fields["step"] * 6
    np.testing.assert_array_equal(image_to_rgb(msg(**fields)), image)


def test_bgr_bytes_are_swapped():
    image = np.zeros((1, 2, 3), np.uint8)
    image[0, 0] = (255, 0, 0)  # red in RGB
    data = rgb_to_image_fields(image, "bgr8")["data"]
    assert data[:3] == bytes([0, 0, 255])
    # a hand-made bgr8 message: blue pixel
    out = image_to_rgb(msg(height=1, width=1, encoding="bgr8", is_bigendian=0, step=3, data=bytes([255, 0, 0])))
    assert out.tolist() == [[[0, 0, 255]]]


def test_mono8_with_padding_becomes_grey_rgb():
    raw = np.arange(12, dtype=np.uint8).reshape(3, 4)
    padded = np.concatenate([raw, np.full((3, 2), 99, np.uint8)], axis=1)  # 2 bytes of row padding
    out = image_to_rgb(msg(height=3, width=4, encoding="mono8", is_bigendian=0, step=6, data=padded.tobytes()))
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[..., 0], raw)
    np.testing.assert_array_equal(out[..., 2], raw)


def test_array_array_data_like_rclpy():
    import array
    image = rgb()
    fields = rgb_to_image_fields(image)
    fields["data"] = array.array("B", fields["data"])
    np.testing.assert_array_equal(image_to_rgb(msg(**fields)), image)


def test_unsupported_encoding_is_named():
    with pytest.raises(ImageConversionError, match=r"/cameras/front/image_raw: unsupported encoding '16UC1'"):
        image_to_rgb(msg(height=2, width=2, encoding="16UC1", is_bigendian=0, step=4, data=bytes(8)),
                     "/cameras/front/image_raw")


def test_wrong_data_length_and_bad_step():
    fields = rgb_to_image_fields(rgb())
    with pytest.raises(ImageConversionError, match="data has 89 bytes, expected step\\*height"):
        image_to_rgb(msg(**{**fields, "data": fields["data"][:-1]}))
    with pytest.raises(ImageConversionError, match="step 10 < width\\*channels = 15"):
        image_to_rgb(msg(**{**fields, "step": 10}))
    with pytest.raises(ImageConversionError, match="empty image"):
        image_to_rgb(msg(**{**fields, "height": 0}))
    with pytest.raises(ImageConversionError, match="uint8"):
        rgb_to_image_fields(np.zeros((2, 2), np.float32))


def test_resize_to_model_size_averages_area():
    image = np.zeros((480, 640, 3), np.uint8)
    image[:, 320:] = 200
    small = resize_to(image, 128, 128)
    assert small.shape == (128, 128, 3) and small.dtype == np.uint8
    assert small[:, :63].max() == 0 and small[:, 65:].min() == 200
    assert resize_to(small, 128, 128) is small
    fields = rgb_to_image_fields(image, "bgr8", pad=4)
    assert image_for_model(msg(**fields), 64, 64).shape == (64, 64, 3)
