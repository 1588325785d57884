"""``NerfModel``: a radiance field, its occupancy grid and the metadata needed to use it."""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from inerf_ros.nerf.field import FieldConfig, OccupancyGrid, RadianceField
from inerf_ros.nerf.render import render_rays

FORMAT_VERSION = 1
BACKGROUND_FREQS = 6  # positional-encoding frequencies of the learned background's direction input
ORIGIN_FREQS = 2  # ... and of the ray origin's (background "lightfield"): parallax is smooth in the viewpoint
BACKGROUND_MODELS = ("constant", "learned", "lightfield")


@dataclasses.dataclass
class NerfMetadata:
    """Everything besides the weights that a user of the model needs.

    Attributes:
        aabb: scene box [[xmin, ymin, zmin], [xmax, ymax, zmax]] in NeRF units.
        near, far: sample range along a unit ray, NeRF units (also clipped to the box).
        metres_per_unit: metres per NeRF unit (1.0 when the data did not say).
        background: RGB in [0, 1] behind the scene (what transparent training pixels were composited over).
        background_model: "constant" (``background``), "learned" (a small MLP of the ray direction: the
            distant surroundings of a real or rendered scene that the box does not hold) or "lightfield"
            (the same MLP also given the ray origin: surroundings at a finite distance, such as a
            floor's far edge, move with the camera; a direction alone puts them at infinity).
        convention: camera axes of poses, always "opengl" (x right, y up, z back).
        format_version: version of the checkpoint layout.
        field: :class:`FieldConfig` as a dict.
        n_samples: samples per ray used when a caller does not say.
        sample_step: bin length along rays (NeRF units) for bins at fixed distances from the camera;
            0 (checkpoints from before this field): ``n_samples`` bins across each ray's chord through the box.
        occupancy_resolution: cells per axis of the occupancy grid.
        extra: free-form information (data set, training steps, scores).
    """

    aabb: list
    near: float = 0.05
    far: float = 1e3
    metres_per_unit: float = 1.0
    background: tuple = (1.0, 1.0, 1.0)
    background_model: str = "constant"
    convention: str = "opengl"
    format_version: int = FORMAT_VERSION
    field: dict = dataclasses.field(default_factory=lambda: dataclasses.asdict(FieldConfig()))
    n_samples: int = 128
    sample_step: float = 0.0
    occupancy_resolution: int = 64
    extra: dict = dataclasses.field(default_factory=dict)

    def field_config(self) -> FieldConfig:
        return FieldConfig(**self.field)


class NerfModel(nn.Module):
    """A trained (or training) NeRF: ``field`` + ``occupancy`` + ``metadata``."""

    def __init__(self, metadata: NerfMetadata):
        super().__init__()
        self.metadata = metadata
        aabb = torch.tensor(metadata.aabb, dtype=torch.float32)
        self.field = RadianceField(metadata.field_config(), aabb)
        self.occupancy = OccupancyGrid(aabb, metadata.occupancy_resolution)
        self.register_buffer("background", torch.tensor(metadata.background, dtype=torch.float32))
        if metadata.background_model not in BACKGROUND_MODELS:
            raise ValueError(f"background_model must be one of {BACKGROUND_MODELS}, got {metadata.background_model!r}")
        n_in = 3 + 6 * BACKGROUND_FREQS + (3 + 6 * ORIGIN_FREQS if metadata.background_model == "lightfield" else 0)
        self.background_net = nn.Sequential(nn.Linear(n_in, 64), nn.ReLU(), nn.Linear(64, 64),
                                            nn.ReLU(), nn.Linear(64, 3)) \
            if metadata.background_model != "constant" else None

    def background_color(self, directions: Tensor, origins: Tensor | None = None) -> Tensor:
        """Colour (R, 3) seen along unit directions (R, 3) from ``origins`` (R, 3) (used by "lightfield" only)
        behind the box (learned), or the constant (3,)."""
        if self.background_net is None:
            return self.background
        enc = [directions]
        for k in range(BACKGROUND_FREQS):
            enc += [torch.sin(2.0 ** k * directions), torch.cos(2.0 ** k * directions)]
        if self.metadata.background_model == "lightfield":
            if origins is None:
                raise ValueError("a 'lightfield' background needs the ray origins")
            # Box-normalised origin: [-1, 1] inside the scene box, the cameras usually just outside.
            u = self.field.normalize(origins)
            enc.append(u)
            for k in range(ORIGIN_FREQS):
                enc += [torch.sin(2.0 ** k * u), torch.cos(2.0 ** k * u)]
        return torch.sigmoid(self.background_net(torch.cat(enc, -1)))

    @property
    def aabb(self) -> Tensor:
        return self.field.aabb

    def render_rays(self, origins: Tensor, directions: Tensor, max_level: float | None = None, *,
                    n_samples: int | None = None, skip_empty: bool = True, jitter: bool = False,
                    background: Tensor | None = None, generator: torch.Generator | None = None,
                    check: bool = True, early_stop_eps: float = 1e-4,
                    alpha_threshold: float = 0.0) -> dict[str, Tensor]:
        """Render rays; differentiable with respect to ``origins`` and ``directions``.

        Args:
            origins: (R, 3) ray origins, NeRF units.
            directions: (R, 3) ray directions (any length; normalised here).
            max_level: highest field level used (None: all; fractional values fade the next level in).
            n_samples: samples per ray (default ``metadata.n_samples``).
            skip_empty: skip samples in unoccupied cells of the occupancy grid (faster; shapes then
                depend on the data, so pass False to capture the call in a CUDA graph).
            jitter: stratified random sample positions (training).
            background: (3,) or (R, 3) colour behind the scene (default: the model's constant or learned one).
            early_stop_eps, alpha_threshold: with ``skip_empty`` and autograd on, only samples seen
                with transmittance > ``early_stop_eps`` and opacity > ``alpha_threshold`` are
                differentiated (see :func:`inerf_ros.nerf.render.render_rays`).
        Returns:
            dict: ``rgb`` (R, 3), ``depth`` (R,) (expected distance along the unit ray), ``opacity``
            (R,), ``weights`` (R, S), ``t`` (R, S) sample distances, ``deltas`` (R, S) sample spacings.
        """
        field = self.field

        def sigma_fn(x):
            return field.density(x, max_level)

        if background is None:
            background = self.background_color(directions / directions.norm(dim=-1, keepdim=True), origins)
        return render_rays(
            sigma_fn, field.color, origins, directions, self.field.aabb,
            n_samples=n_samples or self.metadata.n_samples, near=self.metadata.near, far=self.metadata.far,
            # Fewer samples than trained with keep the same reach along the ray (longer bins).
            step=self.metadata.sample_step * self.metadata.n_samples / (n_samples or self.metadata.n_samples),
            background=background,
            occupancy_fn=self.occupancy.query if skip_empty else None, jitter=jitter, generator=generator,
            check=check, early_stop_eps=early_stop_eps, alpha_threshold=alpha_threshold)

    def density_fn(self, x: Tensor) -> Tensor:
        """Density (N,) of points (N, 3) with all levels (used to refresh the occupancy grid)."""
        return self.field.density(x)[0]
