"""Pinhole camera intrinsics, independent of ROS (built from CameraInfo by ``inerf_ros.ros.camera_info``)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

# Distortion models understood by the package (names as in sensor_msgs/CameraInfo).
DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant", "none")


@dataclasses.dataclass(frozen=True)
class Intrinsics:
    """Intrinsics of a pinhole camera in pixels; (0, 0) is the centre of the top-left pixel."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = "none"
    distortion: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if self.distortion_model not in DISTORTION_MODELS:
            raise ValueError(
                f"unsupported distortion model {self.distortion_model!r}; expected one of {DISTORTION_MODELS}")

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the standard name of the matrix
        """3x3 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def is_distorted(self) -> bool:
        """Whether the distortion model is set and has a non-zero coefficient (undistortion is needed)."""
        return self.distortion_model != "none" and any(abs(c) > 0 for c in self.distortion)

    def scaled(self, factor: float) -> "Intrinsics":
        """Intrinsics of the image resized by ``factor`` (e.g. 0.5 halves width and height)."""
        return self.resized(max(1, round(self.width * factor)), max(1, round(self.height * factor)))

    def resized(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics of the same camera's image resized to ``width`` x ``height`` (distortion unchanged)."""
        sx, sy = width / self.width, height / self.height
        # Pixel centres: x' + 0.5 = (x + 0.5) * s.
        return dataclasses.replace(
            self, width=width, height=height, fx=self.fx * sx, fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5, cy=(self.cy + 0.5) * sy - 0.5)

    @classmethod
    def from_fov(cls, width: int, height: int, fov_x_rad: float) -> "Intrinsics":
        """Square pixels and a centred principal point from the horizontal field of view (Blender)."""
        focal = 0.5 * width / math.tan(0.5 * fov_x_rad)
        return cls(width, height, focal, focal, (width - 1) / 2, (height - 1) / 2)
