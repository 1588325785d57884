"""sensor_msgs/CameraInfo -> :class:`inerf_ros.camera.Intrinsics`, with the checks a user needs."""
from __future__ import annotations

import math

from inerf_ros.camera import Intrinsics


class CameraInfoError(ValueError):
    """CameraInfo is unusable (zero focal length, zero size, NaN, unknown distortion model)."""


def camera_info_to_intrinsics(msg) -> Intrinsics:
    """Read K, size and distortion. Binning / ROI are applied when set (as image_proc does)."""
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
    model = msg.distortion_model or "none"
    coefficients = tuple(float(v) for v in msg.d)
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
    from sensor_msgs.msg import CameraInfo

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
