"""sensor_msgs/Image <-> numpy, without cv_bridge.

PyPI's ``cv-bridge`` is a ROS 1 port that fails with numpy 2 and ROS 2 ``Image.data`` buffers, and
ROS 2's own cv_bridge is not on PyPI. :func:`image_to_numpy` uses the real cv_bridge when it imports
and works (an apt ROS install), and this module otherwise. Decoding is zero-copy when the rows are
not padded and the byte order is native: the array is a view on the message's buffer.
"""
from __future__ import annotations

import sys

import numpy as np

# encoding -> (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}


class ImageEncodingError(ValueError):
    """The image cannot be decoded: unsupported encoding, or sizes that do not add up."""


def image_to_numpy(msg, max_pixels: int | None = None) -> np.ndarray:
    """Decode an Image into an (H, W) or (H, W, C) array in the message's own encoding.

    Raises ImageEncodingError for an unsupported encoding, a zero size, more than ``max_pixels``
    pixels (checked before anything is allocated: every later stage allocates per pixel), a ``step``
    smaller than a row or a ``data`` buffer shorter than ``height * step``.
    """
    if msg.encoding not in ENCODINGS:
        raise ImageEncodingError(
            f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(ENCODINGS)}")
    dtype, channels = ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageEncodingError(f"image has zero size ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageEncodingError(f"image is {width}x{height} = {width * height} pixels, more than "
                                 f"max_image_pixels = {max_pixels}")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageEncodingError(
            f"step {step} is smaller than one row of {width} {msg.encoding} pixels ({row_bytes} bytes)")
    if step % dtype.itemsize:
        raise ImageEncodingError(f"step {step} is not a multiple of the {msg.encoding} element size {dtype.itemsize}")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size < height * step:
        raise ImageEncodingError(
            f"image data has {buffer.size} bytes, expected height*step = {height}*{step} = {height * step}")
    rows = buffer[: height * step].reshape(height, step)[:, :row_bytes]
    big_endian_data = bool(msg.is_bigendian)
    order = ">" if big_endian_data else "<"
    typed_dtype = dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype
    if rows.flags.c_contiguous:
        array = rows.view(typed_dtype)
    else:  # padded rows: one copy to drop the padding
        array = np.ascontiguousarray(rows).view(typed_dtype)
    array = array.reshape(height, width, channels) if channels > 1 else array.reshape(height, width)
    if dtype.itemsize > 1 and big_endian_data != (sys.byteorder == "big"):
        array = array.astype(dtype.newbyteorder("="))
    return array


def image_to_rgb(msg, max_pixels: int | None = None) -> np.ndarray:
    """Decode a colour (or mono) Image into an (H, W, 3) uint8 RGB array, the optimizer's input."""
    array = image_to_numpy(msg, max_pixels)
    encoding = msg.encoding
    if encoding in ("rgb8", "rgba8"):
        return np.ascontiguousarray(array[..., :3])
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(array[..., 2::-1])
    if encoding in ("mono8", "8UC1"):
        return np.repeat(array[..., None], 3, axis=-1)
    raise ImageEncodingError(f"{encoding!r} is not a colour encoding (expected rgb8, bgr8, rgba8, bgra8 or mono8)")


def numpy_to_image(array: np.ndarray, encoding: str, header=None):
    """Encode an array as a sensor_msgs/Image (little-endian, unpadded rows)."""
    from sensor_msgs.msg import Image  # lazy: decoding works on any Image-like object, without a sourced ROS

    if encoding not in ENCODINGS:
        raise ImageEncodingError(f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    dtype, channels = ENCODINGS[encoding]
    array = np.asarray(array)
    expected_ndim = 3 if channels > 1 else 2
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise ImageEncodingError(
            f"{encoding} needs an array of shape (H, W{', %d' % channels if channels > 1 else ''}), got {array.shape}")
    if array.dtype != dtype:
        raise ImageEncodingError(f"{encoding} needs dtype {dtype}, got {array.dtype}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(array.shape[1] * channels * dtype.itemsize)
    msg.data = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()
    return msg


def label_mask_to_image(mask: np.ndarray, header=None):
    """A class-id mask as mono8 (ids < 256) or mono16."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ImageEncodingError(f"a label mask must be 2-D, got shape {mask.shape}")
    if mask.size and int(mask.max()) > 255:
        return numpy_to_image(mask.astype(np.uint16), "mono16", header)
    return numpy_to_image(mask.astype(np.uint8), "mono8", header)
