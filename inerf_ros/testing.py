"""Known-truth radiance fields for tests and benchmarks: a NeRF fitted (3-D supervision) to an
analytic function, so an inverse problem with exact ground truth can be built in seconds; and the
tiny untrained detector and pipeline that the node tests run real nodes on.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Callable

import torch

from inerf_ros.nerf.field import FieldConfig
from inerf_ros.nerf.model import NerfMetadata, NerfModel
from inerf_ros.optim.inerf import OptimizerConfig
from inerf_ros.optim.localizer import LocalizerConfig
from inerf_ros.optim.sampling import SamplingConfig
from inerf_ros.pipeline import InerfPipeline
from inerf_ros.posecnn.model import PoseCNNDetector
from inerf_ros.posecnn.network import PoseCNN


def box_density_and_colour(x: torch.Tensor, half: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Density 60 inside the axis-aligned box of half-size ``half``, 0 outside; smooth colours over space."""
    inside = (x.abs() <= half).all(-1)
    sigma = inside.float() * 60.0
    colour = torch.stack([0.5 + 0.4 * torch.sin(5 * x[:, 0] + 1), 0.5 + 0.4 * torch.sin(4 * x[:, 1] - 2 * x[:, 2]),
                          0.5 + 0.4 * torch.cos(6 * x[:, 2] + x[:, 0])], -1)
    return sigma, colour


def fit_nerf(density_and_colour: Callable = box_density_and_colour, steps: int = 150, n_samples: int = 48,
             points_per_step: int = 4096, seed: int = 0):
    """A small NerfModel over [-1, 1]^3 whose field is regressed onto ``density_and_colour``.

    Density is matched with a smooth L1 loss (scaled by the box density 60), colour with MSE; the
    occupancy grid is then refreshed and dilated. Deterministic for a given ``seed``.
    """
    torch.manual_seed(seed)
    field = FieldConfig(n_levels=3, base_resolution=16, max_resolution=64, channels=8, hidden=32)
    model = NerfModel(NerfMetadata(aabb=[[-1.0] * 3, [1.0] * 3], n_samples=n_samples, near=0.1,
                                   field=dataclasses.asdict(field), occupancy_resolution=32))
    optimizer = torch.optim.Adam(model.field.parameters(), lr=2e-2)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.rand(points_per_step, 3, generator=generator) * 2 - 1
        dirs = torch.nn.functional.normalize(torch.randn(points_per_step, 3, generator=generator), dim=-1)
        sigma_true, colour_true = density_and_colour(x)
        sigma, features = model.field.density(x)
        colour = model.field.color(features, dirs)
        loss = torch.nn.functional.smooth_l1_loss(sigma, sigma_true) / 60 + ((colour - colour_true) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.occupancy.update(model.density_fn, threshold=1.0, decay=0.0)
    model.occupancy.dilate()
    return model.eval()


class TexturedBoxScene:
    """An exact, analytic stand-in for a NeRF: an opaque box textured with random colours.

    Renders by ray-box intersection (no sampling, no learning), so depth and colour are exact and a
    pose recovered from its renderings can be checked to sub-pixel level. The colours are random at
    the vertices of a ``cell`` grid and trilinear in between: blobs that feature detectors find
    (a plain checkerboard would be ambiguous), and a colour that is differentiable with respect to
    the ray, so the photometric descent works on it too.
    """

    def __init__(self, half: float = 0.5, cell: float = 0.1, background: float = 0.5, seed: int = 0):
        self.half, self.cell, self.background = half, cell, background
        vertices = int(round(2 * half / cell)) + 1
        # grid_sample layout (1, C, D, H, W), indexed [z, y, x].
        self._palette = torch.rand(1, 3, vertices, vertices, vertices, generator=torch.Generator().manual_seed(seed))
        self.metadata = SimpleNamespace(aabb=[[-1.0] * 3, [1.0] * 3])
        self.field = SimpleNamespace(n_levels=1)

    def density_and_colour(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same box as a field (for :func:`fit_nerf`): density 60 inside, the texture's colour."""
        sigma, _ = box_density_and_colour(x, self.half)
        return sigma, self._colour(x)

    def _colour(self, points: torch.Tensor) -> torch.Tensor:
        grid = (points / self.half).clamp(-1, 1).reshape(1, -1, 1, 1, 3).to(self._palette.dtype)
        colour = torch.nn.functional.grid_sample(self._palette, grid, align_corners=True)
        return colour.reshape(3, -1).T.to(points.dtype)

    def render_rays(self, origins: torch.Tensor, directions: torch.Tensor, max_level=None, **_) -> dict:
        """Render rays (N, 3) against the textured box: rgb, depth and opacity as a NeRF model's render_rays does."""
        directions = torch.nn.functional.normalize(directions, dim=-1)
        safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
        t0, t1 = (-self.half - origins) / safe, (self.half - origins) / safe
        near = torch.minimum(t0, t1).amax(-1)
        far = torch.maximum(t0, t1).amin(-1)
        hit = (far >= near) & (far > 0)
        depth = torch.where(hit, near.clamp_min(0), torch.zeros_like(near))
        colour = self._colour(origins + depth[:, None] * directions)
        rgb = torch.where(hit[:, None], colour, torch.full_like(colour, self.background))
        return {"rgb": rgb, "depth": depth, "opacity": hit.to(origins.dtype)}


def tiny_detector():
    """An untrained two-class PoseCNN at 64x48 (its detections are noise; the plumbing is real)."""
    torch.manual_seed(0)
    meta = {"classes": [{"name": "mug"}, {"name": "box"}], "input_width": 64, "input_height": 48,
            "reference_focal": 60.0}
    return PoseCNNDetector(PoseCNN(2, backbone="light", width=8, decoder_width=16, fc_width=32), meta, {})


def tiny_pipeline():
    """An untrained NeRF in the box [-1, 1]^3 behind the real localization pipeline."""
    torch.manual_seed(0)
    model = NerfModel(NerfMetadata(aabb=[[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], n_samples=16))
    return InerfPipeline(model, "cpu", OptimizerConfig(), SamplingConfig(), LocalizerConfig())
