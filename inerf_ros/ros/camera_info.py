"""sensor_msgs/CameraInfo -> :class:`inerf_ros.camera.Intrinsics`, with the checks a user needs."""
from __future__ import annotations

import math

from inerf_ros.camera import Intrinsics


# Plausible focal lengths, in units of the image's larger side: 0.05 is a ~170 degree field of view,
# 100 a ~0.6 degree one. Outside, a CameraInfo is a calibration error, and passing it on makes
# posecnn_node publish objects at 0 m or 1e298 m and the optimizer render nonsense.
FOCAL_PER_SIDE_RANGE = (0.05, 100.0)
# The principal point may sit off-centre (crops, shifted lenses), not half an image outside it.
PRINCIPAL_POINT_MARGIN = 0.5


class CameraInfoError(ValueError):
    """CameraInfo is unusable (zero or implausible focal length, zero size, NaN, unknown distortion model)."""


def camera_info_to_intrinsics(msg, max_pixels: int | None = None) -> Intrinsics:
    """Read K, size and distortion. Binning / ROI are applied when set (as image_proc does).

    Refuses (CameraInfoError, with the reason) what no real camera has: non-finite K or D, a focal
    length outside ``FOCAL_PER_SIDE_RANGE`` times the image's larger side, a principal point more than
    ``PRINCIPAL_POINT_MARGIN`` image sizes outside the image, or more than ``max_pixels`` pixels.
    """
    k = [float(v) for v in msg.k]
    if len(k) != 9 or not all(math.isfinite(v) for v in k):
        raise CameraInfoError(f"CameraInfo.k must hold 9 finite numbers, got {k}")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if fx <= 0 or fy <= 0:
        raise CameraInfoError(f"CameraInfo has a zero or negative focal length (fx={fx}, fy={fy}): not calibrated?")
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0:
        raise CameraInfoError(f"CameraInfo has zero image size ({width}x{height})")
    roi = msg.roi
    if roi.width and roi.height:
        cx, cy, width, height = cx - roi.x_offset, cy - roi.y_offset, int(roi.width), int(roi.height)
    bx, by = max(1, int(msg.binning_x)), max(1, int(msg.binning_y))
    if bx > 1 or by > 1:
        fx, cx, width = fx / bx, cx / bx, width // bx
        fy, cy, height = fy / by, cy / by, height // by
    if max_pixels is not None and width * height > max_pixels:
        raise CameraInfoError(f"CameraInfo says {width}x{height} = {width * height} pixels, more than "
                              f"max_image_pixels = {max_pixels}")
    side = max(width, height)
    low, high = FOCAL_PER_SIDE_RANGE
    if not (low * side <= fx <= high * side and low * side <= fy <= high * side):
        raise CameraInfoError(f"CameraInfo focal length fx={fx:g}, fy={fy:g} is implausible for a {width}x{height} "
                              f"image (expected {low:g} to {high:g} times {side} pixels)")
    margin = PRINCIPAL_POINT_MARGIN
    if not (-margin * width <= cx <= (1 + margin) * width and -margin * height <= cy <= (1 + margin) * height):
        raise CameraInfoError(f"CameraInfo principal point ({cx:g}, {cy:g}) lies far outside the {width}x{height} "
                              f"image")
    model = msg.distortion_model or "none"
    coefficients = tuple(float(v) for v in msg.d)
    if not all(math.isfinite(c) for c in coefficients):
        raise CameraInfoError(f"CameraInfo.d must hold finite numbers, got {list(coefficients)}")
    if not coefficients or not any(coefficients):
        model, coefficients = "none", ()
    try:
        return Intrinsics(width, height, fx, fy, cx, cy, model, coefficients)
    except ValueError as error:
        raise CameraInfoError(f"CameraInfo rejected: {error}") from error


def check_image_matches(intrinsics: Intrinsics, image_width: int, image_height: int) -> None:
    """Raise CameraInfoError when an image's size differs from its CameraInfo's."""
    if (image_width, image_height) != (intrinsics.width, intrinsics.height):
        raise CameraInfoError(
            f"image is {image_width}x{image_height} but camera_info says {intrinsics.width}x{intrinsics.height}")


def intrinsics_to_camera_info(intrinsics: Intrinsics, header=None):
    """The CameraInfo of an undistorted pinhole camera (used when writing bags and in tests)."""
    from sensor_msgs.msg import CameraInfo  # lazy: the checks above work without a sourced ROS

    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = intrinsics.width, intrinsics.height
    msg.distortion_model = "plumb_bob"
    msg.d = list(intrinsics.distortion) if intrinsics.distortion else [0.0] * 5
    msg.k = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, intrinsics.fy, intrinsics.cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [intrinsics.fx, 0.0, intrinsics.cx, 0.0, 0.0, intrinsics.fy, intrinsics.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg
