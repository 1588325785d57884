"""A small NeRF *built* in the test: its field is fitted (3-D supervision) to an analytic textured
box, so the optimizer has a real, differentiable field to invert in seconds, with known truth.
"""
import pytest
import torch

from inerf_ros import frames
from inerf_ros.camera import Intrinsics


@pytest.fixture(scope="session")
def box_nerf():
    from inerf_ros.testing import fit_nerf

    return fit_nerf(steps=150, n_samples=48)


@pytest.fixture(scope="session")
def box_view(box_nerf):
    """(observed uint8 image, intrinsics, ground-truth nerf_T_optical) of the box from 2.6 units."""
    from inerf_ros.nerf.render import render_image

    intrinsics = Intrinsics(80, 60, 70.0, 70.0, 39.5, 29.5)
    nerf_T_optical = frames.look_at([1.8, -1.5, 1.1], (0.0, 0.0, 0.0))
    with torch.no_grad():
        rgb = render_image(box_nerf, intrinsics, torch.from_numpy(frames.optical_to_opengl(nerf_T_optical)).float())
    image = (rgb["rgb"].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return image, intrinsics, nerf_T_optical
