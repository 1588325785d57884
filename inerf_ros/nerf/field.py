"""The radiance field: multi-resolution factorised planes (K-planes-like) and two tiny MLPs.

A point ``x`` (NeRF units) is normalised to ``[-1, 1]^3`` by the scene box. At each level ``l`` the
three planes xy, xz, yz (resolution ``R_l``, ``C`` channels) are sampled bilinearly with
``torch.nn.functional.grid_sample`` and multiplied elementwise; the levels are concatenated. A
density MLP maps that to ``(sigma, features)``, a colour MLP maps ``(features, SH(direction))`` to RGB.

Everything is differentiable with respect to the input points and directions (bilinear
interpolation has a gradient in its coordinates), which is what lets a pose gradient flow through
the field. Fine levels can be blanked for coarse-to-fine pose search with ``max_level``: level
``l`` is weighted by ``clamp(max_level - l + 1, 0, 1)`` (a fractional ``max_level`` fades the next
level in, as in BARF), and levels of weight 0 are not computed at all.

Unbounded scenes (``contraction="linf"``): the box is the region of interest, and space beyond it is
squeezed into a shell around it by mip-NeRF 360's contraction with nerfacto's L-inf norm (see
:func:`contract`), so that a wall or a horizon behind the subject has a place in the field instead of
leaking into the background or into floaters at the box faces. The planes then cover the contracted
cube ``[-2, 2]^3`` (the box is its middle half), and the occupancy grid covers it the same way.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inerf_ros import config as cfg

# Raw density output is shifted by this before exp: a fresh field has density ~exp(-bias) everywhere.
DENSITY_BIAS = 1.0


@dataclasses.dataclass
class FieldConfig:
    """Sizes of the radiance field: plane levels and resolutions, feature channels, MLP widths."""

    n_levels: int = cfg.option(4, "number of plane resolutions", range=(1, 8))
    base_resolution: int = cfg.option(32, "plane resolution of the coarsest level", range=(4, 2048))
    max_resolution: int = cfg.option(256, "plane resolution of the finest level", range=(4, 4096))
    channels: int = cfg.option(8, "feature channels per plane and level", range=(1, 64))
    hidden: int = cfg.option(64, "width of the MLP hidden layers", range=(8, 512))
    geo_features: int = cfg.option(15, "features passed from the density MLP to the colour MLP", range=(1, 128))
    sh_degree: int = cfg.option(3, "spherical-harmonics degree of the view direction encoding", range=(0, 3))

    def resolutions(self) -> list[int]:
        """Plane resolution of each level, geometric from ``base_resolution`` to ``max_resolution``."""
        if self.n_levels == 1:
            return [self.max_resolution]
        growth = (self.max_resolution / self.base_resolution) ** (1.0 / (self.n_levels - 1))
        return [int(round(self.base_resolution * growth ** level)) for level in range(self.n_levels)]


class _TruncExp(torch.autograd.Function):
    """exp with its argument capped at 15 and a gradient that stays finite (instant-ngp's trunc_exp).

    The cap keeps a density spike from overflowing to inf (inf * 0 = NaN in the compositing);
    the gradient above the cap is still exp(15), so the optimiser can pull the value back down.
    """

    @staticmethod
    def forward(ctx, x):  # noqa: D102
        ctx.save_for_backward(x)
        return torch.exp(x.clamp(max=15.0))

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    """``exp`` capped at ``exp(15)`` with a finite gradient (see :class:`_TruncExp`)."""
    return _TruncExp.apply(x)


def spherical_harmonics(dirs: Tensor, degree: int) -> Tensor:
    """Real SH basis up to ``degree`` (0-3) of unit vectors ``dirs`` (N, 3) -> (N, (degree + 1)^2)."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree >= 1:
        out += [-0.4886025119029199 * y, 0.4886025119029199 * z, -0.4886025119029199 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [1.0925484305920792 * x * y, -1.0925484305920792 * y * z, 0.31539156525252005 * (3 * zz - 1),
                -1.0925484305920792 * x * z, 0.5462742152960396 * (xx - yy)]
    if degree >= 3:
        out += [-0.5900435899266435 * y * (3 * xx - yy), 2.890611442640554 * x * y * z,
                -0.4570457994644658 * y * (5 * zz - 1), 0.3731763325901154 * z * (5 * zz - 3),
                -0.4570457994644658 * x * (5 * zz - 1), 1.445305721320277 * z * (xx - yy),
                -0.5900435899266435 * x * (xx - 3 * yy)]
    return torch.stack(out, -1)


CONTRACTIONS = ("none", "linf")


def contract(u: Tensor) -> Tensor:
    """mip-NeRF 360's scene contraction with the L-inf norm (nerfacto): box coordinates -> ``[-2, 2]^3``.

    ``contract(u) = u`` for ``|u|_inf <= 1`` (inside the box), else ``(2 - 1/|u|_inf) u / |u|_inf``: a
    point at infinity lands on the cube of half-size 2. The L-inf norm (instead of mip-NeRF 360's
    L2) maps the box onto a cube, so the square planes hold no unused corners. Continuous, monotone
    along every ray from the centre and differentiable everywhere but on the box faces' edges.

    Args:
        u: (..., 3) box coordinates (the box is ``[-1, 1]^3``).
    Returns:
        (..., 3) contracted coordinates in ``[-2, 2]^3``.
    """
    norm = u.abs().amax(-1, keepdim=True)
    # where() evaluates both branches: clamping the norm keeps the outside branch finite inside.
    safe = norm.clamp(min=1.0)
    return torch.where(norm <= 1.0, u, (2.0 - 1.0 / safe) * (u / safe))


def uncontract(c: Tensor) -> Tensor:
    """Inverse of :func:`contract` for points (..., 3) with ``|c|_inf < 2`` (cell centres of a grid)."""
    m = c.abs().amax(-1, keepdim=True)
    if bool((m >= 2.0).any()):
        raise ValueError("uncontract needs |c|_inf < 2 (the contracted cube's surface is at infinity)")
    # |u|_inf = n with 2 - 1/n = m, so n = 1 / (2 - m) and u = c * n / m.
    n = 1.0 / (2.0 - m.clamp(min=1.0))
    return torch.where(m <= 1.0, c, c * n / m.clamp(min=1.0))


def level_weights(n_levels: int, max_level: float | None) -> list[float]:
    """Weight of each level for ``max_level`` (None: all 1). Level ``l`` gets ``clamp(max_level - l + 1, 0, 1)``."""
    if max_level is None:
        return [1.0] * n_levels
    return [min(1.0, max(0.0, float(max_level) - level + 1.0)) for level in range(n_levels)]


class RadianceField(nn.Module):
    """Density and view-dependent colour of points inside an axis-aligned scene box.

    Args:
        config: :class:`FieldConfig`.
        aabb: (2, 3) scene box [min, max] in NeRF units (a buffer: saved with the weights).
        contraction: "none" (points outside the box read the planes' border) or "linf" (space beyond
            the box is contracted into the planes' outer half, see :func:`contract`).
    """

    def __init__(self, config: FieldConfig, aabb: Tensor, contraction: str = "none"):
        super().__init__()
        if contraction not in CONTRACTIONS:
            raise ValueError(f"contraction must be one of {CONTRACTIONS}, got {contraction!r}")
        self.config = config
        self.contraction = contraction
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3).clone())
        self.planes = nn.ParameterList()
        for res in config.resolutions():
            # Multiplicative planes start near a constant so that the product is well conditioned (K-planes).
            self.planes.append(nn.Parameter(torch.empty(3, config.channels, res, res).uniform_(0.1, 0.5)))
        n_in = config.n_levels * config.channels
        h = config.hidden
        self.density_mlp = nn.Sequential(nn.Linear(n_in, h), nn.ReLU(), nn.Linear(h, 1 + config.geo_features))
        n_dir = (config.sh_degree + 1) ** 2
        self.color_mlp = nn.Sequential(nn.Linear(config.geo_features + n_dir, h), nn.ReLU(),
                                       nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 3))
        self._level_mask: float | None = None

    @property
    def n_levels(self) -> int:
        """Number of plane levels."""
        return self.config.n_levels

    def set_level_mask(self, max_level: float | None) -> None:
        """Default ``max_level`` used when a call passes none (None: all levels)."""
        self._level_mask = max_level

    def normalize(self, x_nerf: Tensor) -> Tensor:
        """Points (N, 3) in NeRF units -> box coordinates, [-1, 1] inside the box (differentiable)."""
        lo, hi = self.aabb[0], self.aabb[1]
        return (x_nerf - lo) * (2.0 / (hi - lo)) - 1.0

    def plane_coords(self, x_nerf: Tensor) -> Tensor:
        """Points (N, 3) -> plane coordinates in [-1, 1]: box coordinates, or contracted ones halved."""
        u = self.normalize(x_nerf)
        return u if self.contraction == "none" else 0.5 * contract(u)

    def encode(self, x_nerf: Tensor, max_level: float | None = None) -> Tensor:
        """Plane features (N, n_levels * channels) of points (N, 3); masked levels are zeros."""
        if x_nerf.ndim != 2 or x_nerf.shape[-1] != 3:
            raise ValueError(f"x_nerf must have shape (N, 3), got {tuple(x_nerf.shape)}")
        max_level = self._level_mask if max_level is None else max_level
        u = self.plane_coords(x_nerf)
        # The three coordinate pairs of the xy, xz and yz planes: (3, 1, N, 2).
        coords = torch.stack([u[:, [0, 1]], u[:, [0, 2]], u[:, [1, 2]]], 0).unsqueeze(1)
        feats = []
        for plane, weight in zip(self.planes, level_weights(self.n_levels, max_level)):
            if weight == 0.0:
                feats.append(x_nerf.new_zeros(x_nerf.shape[0], self.config.channels))
                continue
            sampled = F.grid_sample(plane, coords, mode="bilinear", padding_mode="border", align_corners=True)
            f = sampled[0, :, 0] * sampled[1, :, 0] * sampled[2, :, 0]  # (C, N)
            feats.append(f.t() * weight if weight != 1.0 else f.t())
        return torch.cat(feats, -1)

    def density(self, x_nerf: Tensor, max_level: float | None = None) -> tuple[Tensor, Tensor]:
        """Density and geometry features of points.

        Args:
            x_nerf: (N, 3) points in NeRF units; differentiable.
            max_level: highest level used (None: the mask set by :meth:`set_level_mask`, else all).
        Returns:
            ``sigma`` (N,) >= 0 per NeRF unit and ``features`` (N, geo_features).
        """
        h = self.density_mlp(self.encode(x_nerf, max_level))
        return trunc_exp(h[:, 0] - DENSITY_BIAS), h[:, 1:]

    def color(self, features: Tensor, dirs: Tensor) -> Tensor:
        """RGB in (0, 1), shape (N, 3), from geometry features (N, F) and unit view directions (N, 3)."""
        if dirs.shape != (features.shape[0], 3):
            raise ValueError(f"dirs must have shape ({features.shape[0]}, 3), got {tuple(dirs.shape)}")
        enc = spherical_harmonics(dirs, self.config.sh_degree)
        return torch.sigmoid(self.color_mlp(torch.cat([features, enc], -1)))

    def forward(self, x_nerf: Tensor, dirs: Tensor, max_level: float | None = None) -> tuple[Tensor, Tensor]:
        """``(sigma (N,), rgb (N, 3))`` of points (N, 3) seen along unit directions (N, 3)."""
        sigma, feats = self.density(x_nerf, max_level)
        return sigma, self.color(feats, dirs)

    def plane_tv(self) -> Tensor:
        """Total variation of all planes (a smoothness regulariser for sparse real captures)."""
        total = self.planes[0].new_zeros(())
        for plane in self.planes:
            total = total + (plane[..., 1:, :] - plane[..., :-1, :]).square().mean() + \
                (plane[..., :, 1:] - plane[..., :, :-1]).square().mean()
        return total / len(self.planes)


class OccupancyGrid(nn.Module):
    """A coarse boolean grid over the scene box marking where the density may be non-zero.

    Used to skip empty space: samples in unoccupied cells get density 0 without evaluating the
    field. The lookup is not differentiable (a mask), the field on the kept samples is. With
    ``contraction="linf"`` the cells tile the contracted cube ``[-2, 2]^3`` (the box is its middle
    half; farther cells hold ever larger regions of space, as the samples along a ray do).

    Args:
        aabb: (2, 3) scene box; resolution: cells per axis; contraction: as the field's.
    """

    def __init__(self, aabb: Tensor, resolution: int = 64, contraction: str = "none"):
        super().__init__()
        if contraction not in CONTRACTIONS:
            raise ValueError(f"contraction must be one of {CONTRACTIONS}, got {contraction!r}")
        self.resolution = resolution
        self.contraction = contraction
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3).clone())
        self.register_buffer("density_ema", torch.zeros((resolution,) * 3))
        self.register_buffer("occupied", torch.ones((resolution,) * 3, dtype=torch.bool))
        # Cells that some training camera sees (not saved: `occupied` already excludes the others).
        self.register_buffer("visible", torch.ones((resolution,) * 3, dtype=torch.bool), persistent=False)

    def grid_coords(self, x_nerf: Tensor) -> Tensor:
        """Points (..., 3) -> grid coordinates, [0, 1] over the grid: the box, or the contracted cube."""
        lo, hi = self.aabb[0], self.aabb[1]
        if self.contraction == "none":
            return (x_nerf - lo) / (hi - lo)
        return 0.25 * contract((x_nerf - lo) * (2.0 / (hi - lo)) - 1.0) + 0.5

    def points_at(self, grid: Tensor) -> Tensor:
        """Inverse of :meth:`grid_coords`: grid coordinates (..., 3) in (0, 1) -> points in NeRF units."""
        lo, hi = self.aabb[0], self.aabb[1]
        if self.contraction == "none":
            return lo + grid * (hi - lo)
        return lo + (uncontract(4.0 * grid - 2.0) + 1.0) * (0.5 * (hi - lo))

    def cell_index(self, x_nerf: Tensor) -> Tensor:
        """Flat cell index (...) of points (..., 3); points outside the grid are clamped to the border cells."""
        ijk = (self.grid_coords(x_nerf) * self.resolution).long().clamp_(0, self.resolution - 1)
        r = self.resolution
        return (ijk[..., 0] * r + ijk[..., 1]) * r + ijk[..., 2]

    def query(self, x_nerf: Tensor) -> Tensor:
        """Bool (...) mask of points (..., 3) in occupied cells (False outside the box when bounded)."""
        x_nerf = x_nerf.detach()
        occupied = self.occupied.reshape(-1)[self.cell_index(x_nerf)]
        if self.contraction != "none":
            return occupied
        lo, hi = self.aabb[0], self.aabb[1]
        return occupied & ((x_nerf >= lo) & (x_nerf <= hi)).all(-1)

    def cell_scale(self) -> Tensor:
        """Per cell (r^3,), how much longer the sample spacing along a ray is there than in the box:
        1 when bounded; the square of the contracted norm's inverse Jacobian, ``|u|_inf^2``, outside
        the box when contracted (a ray crossing the shell at distance ``|u|_inf`` spends one sample per
        ``|u|_inf^2`` times more space, so a density that counts there is that much lower).
        """
        if self.contraction == "none":
            return torch.ones(self.resolution ** 3, device=self.aabb.device)
        idx = torch.arange(self.resolution, device=self.aabb.device, dtype=torch.float32) + 0.5
        grid = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), -1).reshape(-1, 3) / self.resolution
        m = (4.0 * grid - 2.0).abs().amax(-1)
        return (1.0 / (2.0 - m.clamp(min=1.0))).square()

    @torch.no_grad()
    def update(self, density_fn, threshold: float, decay: float = 0.95, chunk: int = 65536,
               generator: torch.Generator | None = None) -> float:
        """Re-evaluate ``density_fn`` ((N, 3) -> (N,)) at a jittered point in every cell; returns the occupied fraction.

        A cell is occupied when its decayed running maximum density exceeds ``threshold`` or, when
        lower, the mean of that maximum over the visible cells (instant-ngp): a fresh field's density is
        below a threshold meant for a trained one, and would otherwise be culled everywhere at once.
        """
        r = self.resolution
        device = self.aabb.device
        idx = torch.arange(r, device=device, dtype=torch.float32)
        grid = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), -1).reshape(-1, 3)
        jitter = torch.rand(grid.shape, generator=generator, device="cpu").to(device)
        cells = (grid + jitter) / r
        if self.contraction != "none":  # the contracted cube's surface is at infinity
            cells = cells.clamp(1e-4, 1.0 - 1e-4)
        points = self.points_at(cells)
        density = torch.cat([density_fn(points[i:i + chunk]) for i in range(0, points.shape[0], chunk)])
        ema = self.density_ema.reshape(-1)
        ema.copy_(torch.maximum(ema * decay, density))
        visible = self.visible.reshape(-1)
        scale = self.cell_scale()
        if bool(visible.any()):
            threshold = min(threshold, float((ema * scale)[visible].mean()))
        self.occupied.copy_((ema * scale > threshold).reshape(r, r, r) & self.visible)
        return float(self.occupied.float().mean())

    def cell_centres(self) -> Tensor:
        """Centres (r^3, 3) of all cells in NeRF units, in the order of the flat cell index."""
        r = self.resolution
        idx = torch.arange(r, device=self.aabb.device, dtype=torch.float32) + 0.5
        grid = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), -1).reshape(-1, 3)
        return self.points_at(grid / r)

    def cell_sizes(self) -> Tensor:
        """Largest side (r^3,) of each cell in NeRF units (cells grow outwards when contracted)."""
        side = float((self.aabb[1] - self.aabb[0]).max()) / self.resolution
        return side * self.cell_scale()

    @torch.no_grad()
    def mark_visible(self, nerf_T_cams: Tensor, intrinsics: list, near: float = 0.0) -> float:
        """Keep only cells that at least one camera sees (instant-ngp's "untrained" cells are never trained
        and would otherwise stay occupied); returns the visible fraction.

        Args:
            nerf_T_cams: (N, 4, 4) OpenGL camera-to-NeRF poses; intrinsics: one per camera.
        """
        centres = self.cell_centres()
        seen = torch.zeros(centres.shape[0], dtype=torch.bool, device=centres.device)
        half_cell = self.cell_sizes()
        for pose, intr in zip(nerf_T_cams.to(centres.device), intrinsics):
            p = (centres - pose[:3, 3]) @ pose[:3, :3]  # camera frame (OpenGL: looking along -z)
            depth = -p[:, 2]
            ok = depth > max(near, 1e-6)
            z = depth.clamp(min=1e-6)
            # Grow the image by a cell's footprint so that cells straddling the border count as seen.
            margin_u = intr.fx * half_cell / z
            margin_v = intr.fy * half_cell / z
            u = intr.fx * p[:, 0] / z + intr.cx
            v = -intr.fy * p[:, 1] / z + intr.cy
            ok &= (u > -0.5 - margin_u) & (u < intr.width - 0.5 + margin_u)
            ok &= (v > -0.5 - margin_v) & (v < intr.height - 0.5 + margin_v)
            seen |= ok
        self.visible.copy_(seen.reshape(self.visible.shape))
        self.occupied &= self.visible
        return float(self.visible.float().mean())

    def dilate(self) -> None:
        """Grow the occupied set by one cell (a safety margin for thin structures)."""
        occ = self.occupied.float()[None, None]
        self.occupied.copy_(F.max_pool3d(occ, 3, stride=1, padding=1)[0, 0] > 0)


def density_threshold(step_size: float, alpha: float = 0.01) -> float:
    """Density whose opacity over ``step_size`` equals ``alpha``: ``-log(1 - alpha) / step_size``."""
    return -math.log(1.0 - alpha) / step_size
