"""``NerfModel``: a radiance field, its occupancy grid and the metadata needed to use it."""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from inerf_ros import config as config_tools
from inerf_ros.nerf.field import CONTRACTIONS, FieldConfig, OccupancyGrid, RadianceField
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
        contraction: "none" (a bounded scene: samples only inside ``aabb``) or "linf" (an unbounded real
            capture: ``aabb`` is the region of interest and space beyond it is contracted into the
            field, mip-NeRF 360 / nerfacto; see :func:`inerf_ros.nerf.field.contract`).
        lindisp_scale: with a contraction, samples run from ``near`` to ``far`` linearly in distance up
            to this many NeRF units and in disparity beyond (:func:`inerf_ros.nerf.render.sample_lindisp`).
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
    contraction: str = "none"
    lindisp_scale: float = 0.0
    extra: dict = dataclasses.field(default_factory=dict)

    def field_config(self) -> FieldConfig:
        """The field's :class:`FieldConfig`."""
        return FieldConfig(**self.field)

    def check(self) -> None:
        """Raise ValueError naming the field unless every value is of its type and in a range a real
        model has. Called once, when a model file is read: a bad value that got past it would start
        a node that then fails every frame (``n_samples: "abc"``) or publishes poses off by a wrong
        scale (``metres_per_unit: -1``).
        """
        def number(name, value, low, high, integer=False):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and value != int(value)):
                raise ValueError(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
            if not low <= value <= high:   # also refuses NaN
                raise ValueError(f"{name} = {value!r} is out of range [{low:g}, {high:g}]")

        box = self.aabb
        if not (isinstance(box, (list, tuple)) and len(box) == 2 and all(
                isinstance(c, (list, tuple)) and len(c) == 3 for c in box)):
            raise ValueError(f"aabb must be [[xmin, ymin, zmin], [xmax, ymax, zmax]], got {box!r}")
        for k, value in enumerate(list(box[0]) + list(box[1])):
            number(f"aabb[{k // 3}][{k % 3}]", value, -1e6, 1e6)
        if not all(low < high for low, high in zip(box[0], box[1])):
            raise ValueError(f"aabb must have min < max on every axis, got {box!r}")
        number("near", self.near, 0.0, 1e6)
        number("far", self.far, 0.0, math.inf)
        if not self.near < self.far:
            raise ValueError(f"near ({self.near}) must be less than far ({self.far})")
        number("metres_per_unit", self.metres_per_unit, 1e-9, 1e9)
        if not (isinstance(self.background, (list, tuple)) and len(self.background) == 3):
            raise ValueError(f"background must be 3 numbers in [0, 1], got {self.background!r}")
        for k, value in enumerate(self.background):
            number(f"background[{k}]", value, 0.0, 1.0)
        if self.background_model not in BACKGROUND_MODELS:
            raise ValueError(f"background_model must be one of {BACKGROUND_MODELS}, got {self.background_model!r}")
        number("n_samples", self.n_samples, 1, 4096, integer=True)
        number("sample_step", self.sample_step, 0.0, 1e6)
        number("occupancy_resolution", self.occupancy_resolution, 1, 512, integer=True)
        if self.contraction not in CONTRACTIONS:
            raise ValueError(f"contraction must be one of {CONTRACTIONS}, got {self.contraction!r}")
        number("lindisp_scale", self.lindisp_scale, 0.0, 1e6)
        if self.contraction != "none" and self.lindisp_scale <= 0:
            raise ValueError(f"contraction {self.contraction!r} needs lindisp_scale > 0, got {self.lindisp_scale!r}")
        if not isinstance(self.field, dict):
            raise ValueError(f"field must be a mapping, got {self.field!r}")
        try:
            field = self.field_config()
        except TypeError as error:
            raise ValueError(f"field: {error}") from None
        for f in dataclasses.fields(field):   # ranges from FieldConfig's options; wrong types first
            value = getattr(field, f.name)
            default = f.default
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                number(f"field.{f.name}", value, -math.inf, math.inf, integer=isinstance(default, int))
        try:
            config_tools.validate(field)
        except (TypeError, ValueError) as error:
            raise ValueError(f"field: {error}") from None


class NerfModel(nn.Module):
    """A trained (or training) NeRF: ``field`` + ``occupancy`` + ``metadata``."""

    def __init__(self, metadata: NerfMetadata):
        super().__init__()
        self.metadata = metadata
        aabb = torch.tensor(metadata.aabb, dtype=torch.float32)
        self.field = RadianceField(metadata.field_config(), aabb, metadata.contraction)
        self.occupancy = OccupancyGrid(aabb, metadata.occupancy_resolution, metadata.contraction)
        self.register_buffer("background", torch.tensor(metadata.background, dtype=torch.float32))
        if metadata.background_model not in BACKGROUND_MODELS:
            raise ValueError(f"background_model must be one of {BACKGROUND_MODELS}, got {metadata.background_model!r}")
        n_in = 3 + 6 * BACKGROUND_FREQS + (3 + 6 * ORIGIN_FREQS if metadata.background_model == "lightfield" else 0)
        self.background_net = nn.Sequential(nn.Linear(n_in, 64), nn.ReLU(), nn.Linear(64, 64),
                                            nn.ReLU(), nn.Linear(64, 3)) \
            if metadata.background_model != "constant" else None

    def background_color(self, directions: Tensor, origins: Tensor | None = None) -> Tensor:
        """Colour (R, 3) seen along unit directions (R, 3) from ``origins`` (R, 3) (used by "lightfield" only)
        behind the box (learned), or the constant (3,).
        """
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
        """The scene box (2, 3), NeRF units (the inner box when contracted)."""
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
            check=check, early_stop_eps=early_stop_eps, alpha_threshold=alpha_threshold,
            lindisp_scale=self.metadata.lindisp_scale if self.metadata.contraction != "none" else 0.0)

    def density_fn(self, x: Tensor) -> Tensor:
        """Density (N,) of points (N, 3) with all levels (used to refresh the occupancy grid)."""
        return self.field.density(x)[0]
