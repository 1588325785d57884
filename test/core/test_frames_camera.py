"""Frame conventions (OpenGL/NeRF camera vs ROS optical), units, and intrinsics."""
import math

import numpy as np
import pytest
import torch

from inerf_ros import frames
from inerf_ros.camera import Intrinsics


def test_opengl_camera_looking_down_minus_z_is_optical_camera_looking_down_plus_z():
    world_T_opengl = np.eye(4)  # an OpenGL camera at the origin looks along world -z
    world_T_optical = frames.opengl_to_optical(world_T_opengl)
    forward_optical = world_T_optical[:3, :3] @ np.array([0.0, 0.0, 1.0])  # optical +z is forward
    np.testing.assert_allclose(forward_optical, [0.0, 0.0, -1.0])
    down_optical = world_T_optical[:3, :3] @ np.array([0.0, 1.0, 0.0])  # optical +y is down
    np.testing.assert_allclose(down_optical, [0.0, -1.0, 0.0])  # = OpenGL -y (OpenGL +y is up)


def test_conversion_round_trips_and_keeps_the_centre():
    rng = np.random.default_rng(0)
    world_T_cam = np.eye(4)
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    world_T_cam[:3, :3] = rotation * np.sign(np.linalg.det(rotation))
    world_T_cam[:3, 3] = [1.0, -2.0, 0.5]
    optical = frames.opengl_to_optical(world_T_cam)
    np.testing.assert_allclose(frames.optical_to_opengl(optical), world_T_cam)
    np.testing.assert_allclose(optical[:3, 3], world_T_cam[:3, 3])


def test_torch_and_numpy_agree():
    pose = np.diag([1.0, 1.0, 1.0, 1.0])
    pose[:3, 3] = [0.1, 0.2, 0.3]
    out_t = frames.opengl_to_optical(torch.tensor(pose))
    np.testing.assert_allclose(out_t.numpy(), frames.opengl_to_optical(pose))


def test_units():
    pose = np.eye(4)
    pose[:3, 3] = [2.0, 0.0, -4.0]
    metric = frames.nerf_to_metres(pose, metres_per_unit=0.25)
    np.testing.assert_allclose(metric[:3, 3], [0.5, 0.0, -1.0])
    np.testing.assert_allclose(metric[:3, :3], np.eye(3))
    np.testing.assert_allclose(frames.metres_to_nerf(metric, 0.25), pose)
    np.testing.assert_allclose(frames.nerf_to_metres(np.array([1.0, 2.0, 3.0]), 2.0), [2.0, 4.0, 6.0])
    with pytest.raises(ValueError, match="metres_per_unit"):
        frames.nerf_to_metres(pose, 0.0)


def test_covariance_units_scale_translation_rows_and_columns_only():
    """Cov(S x) = S Cov(x) S with S = diag(m, m, m, 1, 1, 1): metres^2, metre-radians, radians^2."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 6))
    covariance = a @ a.T
    metres_per_unit = 0.25
    scale = np.diag([metres_per_unit] * 3 + [1.0] * 3)
    metric = frames.covariance_nerf_to_metres(covariance, metres_per_unit)
    np.testing.assert_allclose(metric, scale @ covariance @ scale, rtol=1e-12)
    np.testing.assert_allclose(metric[3:, 3:], covariance[3:, 3:], rtol=0)   # radians stay radians
    np.testing.assert_allclose(frames.covariance_metres_to_nerf(metric, metres_per_unit), covariance, rtol=1e-12)
    assert metric is not covariance and covariance[0, 0] == (a @ a.T)[0, 0]   # a copy: the input is kept
    with pytest.raises(ValueError, match="metres_per_unit"):
        frames.covariance_nerf_to_metres(covariance, float("nan"))
    with pytest.raises(ValueError, match="6, 6"):
        frames.covariance_metres_to_nerf(np.eye(3), 1.0)


def test_intrinsics_from_fov_and_scaling():
    intr = Intrinsics.from_fov(800, 800, 2 * math.atan(0.5))
    assert intr.fx == pytest.approx(800.0)
    assert intr.cx == pytest.approx(399.5)
    half = intr.scaled(0.25)
    assert (half.width, half.height) == (200, 200)
    assert half.fx == pytest.approx(200.0)
    assert half.cx == pytest.approx(99.5)  # the image centre stays the image centre


def test_resized_to_another_size_keeps_pixel_centres_per_axis():
    intr = Intrinsics(640, 480, 500.0, 510.0, 319.5, 239.5, "plumb_bob", (0.1, 0.0, 0.0, 0.0, 0.0))
    small = intr.resized(160, 240)  # x / 4, y / 2
    assert (small.width, small.height, small.fx, small.fy) == (160, 240, 125.0, 255.0)
    # The left edge of pixel 0 stays the left edge: (c + 0.5) * s - 0.5.
    assert (small.cx, small.cy) == (79.5, 119.5)
    assert small.distortion == intr.distortion  # distortion is in normalised coordinates
    assert intr.scaled(0.5) == intr.resized(320, 240)


@pytest.mark.parametrize("kwargs, match", [
    (dict(width=0, height=10, fx=1, fy=1, cx=0, cy=0), "image size"),
    (dict(width=10, height=10, fx=0, fy=1, cx=0, cy=0), "focal"),
    (dict(width=10, height=10, fx=1, fy=1, cx=float("nan"), cy=0), "cx"),
    (dict(width=10, height=10, fx=1, fy=1, cx=0, cy=0, distortion_model="weird"), "distortion model"),
])
def test_bad_intrinsics_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Intrinsics(**kwargs)
