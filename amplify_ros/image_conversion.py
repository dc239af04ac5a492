"""sensor_msgs/Image <-> numpy without cv_bridge (ROS 2 cv_bridge is not installable here), and resizing.

Works on any object with the fields of sensor_msgs/Image (height, width, encoding, is_bigendian, step,
data), so it is tested without rclpy. Supported encodings: rgb8, bgr8, mono8 (8-bit, so is_bigendian does
not matter). Rows may be padded: ``step`` >= width * channels bytes, the padding is dropped.
Models take RGB uint8 (H, W, 3); everything is converted to that.
"""

from __future__ import annotations

import cv2
import numpy as np

CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


class ImageConversionError(ValueError):
    """An Image message cannot be turned into an array (unsupported encoding, wrong sizes or data length)."""


def image_to_rgb(msg, source: str = "image") -> np.ndarray:
    """sensor_msgs/Image-like -> uint8 RGB (H, W, 3), a copy independent of the message buffer.

    ``source`` names the topic in error messages.
    """
    enc = str(msg.encoding).lower()
    if enc not in CHANNELS:
        raise ImageConversionError(f"{source}: unsupported encoding {msg.encoding!r}; supported: {sorted(CHANNELS)}")
    h, w, ch = int(msg.height), int(msg.width), CHANNELS[enc]
    if h <= 0 or w <= 0:
        raise ImageConversionError(f"{source}: empty image {w}x{h}")
    step = int(msg.step)
    if step < w * ch:
        raise ImageConversionError(f"{source}: step {step} < width*channels = {w * ch} bytes for {enc}")
    try:  # rclpy gives array.array('B'), tests give bytes: both expose the buffer protocol, no copy
        buf = np.frombuffer(msg.data, dtype=np.uint8)
    except TypeError:  # a plain list of ints
        buf = np.asarray(msg.data, dtype=np.uint8).ravel()
    if buf.size != step * h:
        raise ImageConversionError(f"{source}: data has {buf.size} bytes, expected step*height = {step}*{h} = "
                                   f"{step * h}")
    rows = buf.reshape(h, step)[:, : w * ch].reshape(h, w, ch)  # drop the row padding
    if enc == "rgb8":
        return rows.copy()
    if enc == "bgr8":
        return np.ascontiguousarray(rows[..., ::-1])
    return np.repeat(rows, 3, axis=2)


def rgb_to_image_fields(image: np.ndarray, encoding: str = "rgb8", pad: int = 0) -> dict:
    """uint8 RGB (H, W, 3) -> the fields of a sensor_msgs/Image (height, width, encoding, is_bigendian, step,
    data as bytes) in ``encoding``; ``pad`` extra bytes per row (as some drivers send)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageConversionError(f"expected a uint8 (H, W, 3) RGB array, got {image.dtype} {image.shape}")
    if encoding not in CHANNELS:
        raise ImageConversionError(f"unsupported encoding {encoding!r}; supported: {sorted(CHANNELS)}")
    if encoding == "bgr8":
        pixels = image[..., ::-1]
    elif encoding == "mono8":
        pixels = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)[..., None]
    else:
        pixels = image
    h, w, ch = pixels.shape
    rows = np.ascontiguousarray(pixels).reshape(h, w * ch)
    if pad:
        rows = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1)
    return {"height": h, "width": w, "encoding": encoding, "is_bigendian": 0, "step": w * ch + pad,
            "data": rows.tobytes()}


def fill_image(msg, image: np.ndarray, encoding: str = "rgb8"):
    """Write ``image`` into a sensor_msgs/Image message (header untouched); returns the message."""
    for key, value in rgb_to_image_fields(image, encoding).items():
        setattr(msg, key, value)
    return msg


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to the model's input size; INTER_AREA averages pixels when shrinking (no aliasing)."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    return cv2.resize(image, (int(width), int(height)), interpolation=cv2.INTER_AREA)


def image_for_model(msg, height: int, width: int, source: str = "image") -> np.ndarray:
    """Message -> uint8 RGB (height, width, 3) as the models take it."""
    return resize_to(image_to_rgb(msg, source), height, width)
