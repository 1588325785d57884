"""A small NeRF *built* in the test: its field is fitted (3-D supervision) to an analytic textured
box, so the optimizer has a real, differentiable field to invert in seconds, with known truth."""

import pytest
import torch

from inerf_ros import frames
from inerf_ros.camera import Intrinsics

BOX_HALF = 0.5


def box_density_and_colour(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Density 60 inside a box with half-size 0.5, 0 outside; a smooth colour pattern over space."""
    inside = (x.abs() <= BOX_HALF).all(-1)
    sigma = inside.float() * 60.0
    colour = torch.stack([0.5 + 0.4 * torch.sin(5 * x[:, 0] + 1), 0.5 + 0.4 * torch.sin(4 * x[:, 1] - 2 * x[:, 2]),
                          0.5 + 0.4 * torch.cos(6 * x[:, 2] + x[:, 0])], -1)
    return sigma, colour


@pytest.fixture(scope="session")
def box_nerf():
    from inerf_ros.nerf.field import FieldConfig
    from inerf_ros.nerf.model import NerfMetadata, NerfModel

    torch.manual_seed(0)
    field = FieldConfig(n_levels=3, base_resolution=16, max_resolution=64, channels=8, hidden=32)
    import dataclasses
    model = NerfModel(NerfMetadata(aabb=[[-1.0] * 3, [1.0] * 3], n_samples=48, near=0.1,
                                   field=dataclasses.asdict(field), occupancy_resolution=32))
    optimizer = torch.optim.Adam(model.field.parameters(), lr=2e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        x = torch.rand(4096, 3, generator=generator) * 2 - 1
        dirs = torch.nn.functional.normalize(torch.randn(4096, 3, generator=generator), dim=-1)
        sigma_true, colour_true = box_density_and_colour(x)
        sigma, features = model.field.density(x)
        colour = model.field.color(features, dirs)
        loss = torch.nn.functional.smooth_l1_loss(sigma, sigma_true) / 60 + ((colour - colour_true) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.occupancy.update(model.density_fn, threshold=1.0, decay=0.0)
    model.occupancy.dilate()
    model.eval()
    return model


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
