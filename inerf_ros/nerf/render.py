"""Differentiable volume rendering of ray batches, and chunked full images for previews.

Compositing (NeRF quadrature), for samples ``i`` along a ray with densities ``sigma_i`` and spacing
``delta_i``::

    alpha_i = 1 - exp(-sigma_i * delta_i)
    T_i     = exp(-sum_{j < i} sigma_j * delta_j)
    w_i     = T_i * alpha_i
    rgb     = sum_i w_i * c_i + (1 - sum_i w_i) * background

Example: one sample with ``sigma * delta = log 2`` gives ``alpha = 0.5``, ``w = 0.5`` and over a
white background ``rgb = 0.5 * c + 0.5``.

The renderer never imports the field class: :func:`render_rays` gets a ``sigma_fn`` and a
``color_fn`` (usually a field's bound ``density`` and ``color``). Sample distances follow the
ray's entry and exit of the scene box (differentiable, piecewise), and sample points ``o + t * d``
are differentiable in the ray origins and directions, so gradients reach a camera pose through
:func:`inerf_ros.nerf.rays.pixel_rays`. The occupancy mask and the stratified jitter are constants.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from inerf_ros.nerf.rays import image_pixels, pixel_rays, ray_aabb


def _capturing() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def check_finite(x: Tensor, name: str) -> Tensor:
    """Raise ``FloatingPointError`` if ``x`` holds NaN/inf (skipped while a CUDA graph is being captured)."""
    if not _capturing() and not bool(torch.isfinite(x).all()):
        raise FloatingPointError(f"{name} contains NaN or infinite values (shape {tuple(x.shape)})")
    return x


def weights_from_density(sigma: Tensor, deltas: Tensor) -> Tensor:
    """Compositing weights (R, S) from densities (R, S) and sample spacings (R, S); differentiable in ``sigma``."""
    tau = sigma * deltas
    # Exclusive cumulative sum: transmittance before each sample.
    accumulated = torch.cumsum(tau, dim=-1) - tau
    return torch.exp(-accumulated) * (1.0 - torch.exp(-tau))


def composite(weights: Tensor, rgb: Tensor, t_mid: Tensor, background: Tensor) -> dict[str, Tensor]:
    """Colour (R, 3), depth (R,) and opacity (R,) from weights (R, S), sample colours (R, S, 3), distances (R, S).

    ``depth`` is the expected distance along the unit ray over the opaque part,
    ``sum(w t) / max(sum(w), 1e-6)``; ``background`` is (3,) or (R, 3).
    """
    opacity = weights.sum(-1)
    color = (weights[..., None] * rgb).sum(-2) + (1.0 - opacity)[..., None] * background
    depth = (weights * t_mid).sum(-1) / opacity.clamp(min=1e-6)
    return {"rgb": color, "depth": depth, "opacity": opacity, "weights": weights}


def distortion_loss(weights: Tensor, t_mid: Tensor, deltas: Tensor) -> Tensor:
    """Mean over rays of mip-NeRF 360's distortion loss (Barron et al. 2022, eq. 15), in O(S) per ray.

    ``sum_ij w_i w_j |t_i - t_j| + 1/3 sum_i w_i^2 delta_i``: small when a ray's weight sits in one
    short interval (a surface), large when it is spread along the ray (haze). Distances are NeRF units.
    """
    wt = weights * t_mid
    w_before = torch.cumsum(weights, -1) - weights
    wt_before = torch.cumsum(wt, -1) - wt
    pairs = 2.0 * (wt * w_before - weights * wt_before).sum(-1)
    return (pairs + (weights.square() * deltas).sum(-1) / 3.0).mean()


def sample_distances(t_near: Tensor, t_far: Tensor, n_samples: int, jitter: bool,
                     generator: torch.Generator | None = None, step: float = 0.0) -> tuple[Tensor, Tensor]:
    """Sample midpoints (R, S) and spacings (R, S) between ``t_near`` and ``t_far`` (R,).

    ``step == 0``: ``n_samples`` evenly between the two (box-relative bins). ``step > 0``: bins of that
    length at fixed distances from the ray origin, the first one holding ``t_near``; bins past
    ``t_far`` get zero length (no weight). Fixed bins move rigidly with the camera, so the quadrature
    of a sharp surface changes smoothly with the pose; box-relative bins change their length and
    phase with each ray's chord through the box, which makes the rendered colour jitter with the
    pose (the pose optimiser then sees noise) when the camera is outside a tight box.
    With ``jitter`` each sample is moved uniformly within its bin (stratified sampling).
    """
    offsets = torch.arange(n_samples, device=t_near.device, dtype=t_near.dtype)
    if jitter:
        u = torch.rand((t_near.shape[0], n_samples), generator=generator, device="cpu" if generator else t_near.device)
        offsets = offsets + u.to(t_near.device, t_near.dtype)
    else:
        offsets = offsets + 0.5
    if step > 0:
        first = torch.floor(t_near.detach() / step)  # the bin grid does not move with the box entry
        t_mid = (first[:, None] + offsets) * step
        inside = (t_mid >= t_near[:, None]) & (t_mid <= t_far[:, None])
        return t_mid, torch.where(inside, torch.full_like(t_mid, step), torch.zeros_like(t_mid))
    steps = (t_far - t_near).clamp(min=0.0) / n_samples
    t_mid = t_near[:, None] + offsets * steps[:, None]
    return t_mid, steps[:, None].expand_as(t_mid)


def lindisp_distance(s: Tensor, scale: float) -> Tensor:
    """Distance along a ray at spacing coordinate ``s`` in [0, 1): nerfacto's piecewise "uniform then
    disparity" spacing, ``t = 2 s L`` for ``s < 1/2`` and ``t = L / (2 - 2 s)`` beyond (``L = scale``).

    Half of the samples lie within ``L`` of the camera, evenly; the other half are spaced evenly in
    disparity ``1/t`` out to infinity, as the contracted field's resolution falls off there.
    """
    return torch.where(s < 0.5, 2.0 * scale * s, scale / (2.0 - 2.0 * s.clamp(max=1.0 - 1e-6)))


def lindisp_coordinate(t: Tensor, scale: float) -> Tensor:
    """Inverse of :func:`lindisp_distance`: ``s = t / 2L`` up to ``L``, ``1 - L / 2t`` beyond."""
    return torch.where(t < scale, t / (2.0 * scale), 1.0 - scale / (2.0 * t.clamp(min=scale)))


def sample_lindisp(n_rays: int, n_samples: int, near: float, far: float, scale: float, jitter: bool,
                   generator: torch.Generator | None = None, device=None) -> tuple[Tensor, Tensor]:
    """Sample distances (R, S) and spacings (R, S) from ``near`` to ``far`` for unbounded scenes.

    ``n_samples`` bins evenly spaced in the coordinate of :func:`lindisp_coordinate` (linear up to
    ``scale``, in disparity beyond). The bins are fixed distances from the ray origin, so they move
    rigidly with the camera (a pose gradient sees a smooth render). With ``jitter`` each sample is
    moved uniformly within its bin; the spacing is the bin's length.
    """
    s0 = float(lindisp_coordinate(torch.tensor(near), scale))
    s1 = float(lindisp_coordinate(torch.tensor(far), scale))
    edges = torch.linspace(s0, s1, n_samples + 1, device=device)
    t_edges = lindisp_distance(edges, scale)
    if jitter:
        u = torch.rand((n_rays, n_samples), generator=generator, device="cpu" if generator else device).to(device)
    else:
        u = torch.full((n_rays, n_samples), 0.5, device=device)
    s_mid = edges[:-1] + u * (edges[1:] - edges[:-1])
    t_mid = lindisp_distance(s_mid, scale)
    return t_mid, (t_edges[1:] - t_edges[:-1]).expand(n_rays, n_samples)


def _march(sigma_fn: Callable, color_fn: Callable, points: Tensor, dirs: Tensor, occupancy_fn: Callable,
           deltas: Tensor, early_stop_eps: float, chunks: int = 4) -> tuple[Tensor, Tensor]:
    """Weights (R, S) and colours (R, S, 3) without gradient, marching front to back in ``chunks``.

    A ray whose transmittance fell below ``early_stop_eps`` stops being evaluated (early ray
    termination): behind a surface neither the occupancy grid nor the field is queried any more.
    Colour is evaluated only for the samples that end up visible (their density is evaluated
    again: a few per ray, cheaper than keeping every sample's features).
    """
    n_rays, n_samples = deltas.shape
    sigma = points.new_zeros(n_rays, n_samples)
    occupied = torch.zeros(n_rays, n_samples, dtype=torch.bool, device=points.device)
    optical_depth = points.new_zeros(n_rays)
    alive = torch.arange(n_rays, device=points.device)
    edges = torch.linspace(0, n_samples, chunks + 1).round().long().tolist()
    for start, stop in zip(edges[:-1], edges[1:]):
        chunk_points = points[alive, start:stop]
        part = occupancy_fn(chunk_points) & (deltas[alive, start:stop] > 0)
        occupied[alive, start:stop] = part
        if bool(part.any()):
            chunk_sigma = points.new_zeros(part.shape)
            chunk_sigma[part] = sigma_fn(chunk_points[part])[0].to(sigma.dtype)
            sigma[alive, start:stop] = chunk_sigma
            optical_depth[alive] += (chunk_sigma * deltas[alive, start:stop]).sum(-1)
        alive = alive[torch.exp(-optical_depth[alive]) > early_stop_eps]
        if alive.numel() == 0:
            break
    weights = weights_from_density(sigma, deltas)
    rgb = points.new_zeros(n_rays, n_samples, 3)
    visible = occupied & (weights > 1e-4)
    if bool(visible.any()):
        _, feats = sigma_fn(points[visible])
        rgb[visible] = color_fn(feats, dirs[:, None, :].expand_as(points)[visible]).to(rgb.dtype)
    return weights, rgb


def render_rays(sigma_fn: Callable, color_fn: Callable, origins: Tensor, directions: Tensor, aabb: Tensor, *,
                n_samples: int, near: float, far: float, background: Tensor,
                occupancy_fn: Callable | None = None, jitter: bool = False,
                generator: torch.Generator | None = None, check: bool = True,
                early_stop_eps: float = 1e-4, alpha_threshold: float = 0.0, step: float = 0.0,
                lindisp_scale: float = 0.0) -> dict[str, Tensor]:
    """Volume-render a batch of rays.

    Args:
        sigma_fn: points (M, 3) -> (sigma (M,), features (M, F)).
        color_fn: (features (M, F), unit directions (M, 3)) -> rgb (M, 3).
        origins: (R, 3) ray origins in NeRF units; differentiable.
        directions: (R, 3) ray directions (normalised here); differentiable.
        aabb: (2, 3) scene box; samples lie on the part of each ray inside it and within [near, far].
        n_samples: samples per ray (fixed: the shapes do not depend on the scene unless
            ``occupancy_fn`` is given).
        background: (3,) colour behind the scene.
        occupancy_fn: optional points (R, S, 3) -> bool (R, S); samples where it is False get density
            0 without evaluating the field (faster, data-dependent shapes).
        jitter: stratified random sample positions (training) instead of bin centres.
        step: bin length for bins at fixed distances from the ray origin (0: ``n_samples`` bins
            across each ray's chord through the box); see :func:`sample_distances`.
        lindisp_scale: > 0 for an unbounded (contracted) field: samples run from ``near`` to ``far``
            whatever the box, linear in distance up to this and in disparity beyond (see
            :func:`sample_lindisp`); ``aabb`` and ``step`` are then not used.
        check: raise ``FloatingPointError`` on NaN/inf in the outputs.
        early_stop_eps, alpha_threshold: with ``occupancy_fn`` and autograd on, a first pass without
            gradient finds the samples that matter: those seen with transmittance above
            ``early_stop_eps`` (early ray termination) and opacity above ``alpha_threshold``; only they
            are evaluated again with gradient (nerfacc's scheme). The backward pass through the field
            costs about twice its forward pass, so this pays as soon as most samples are dropped.
            Without autograd, rays are marched front to back in chunks and stop below
            ``early_stop_eps`` (see :func:`_march`; 0 evaluates every occupied sample).
    Returns:
        dict with ``rgb`` (R, 3), ``depth`` (R,), ``opacity`` (R,), ``weights`` (R, S), ``t`` (R, S),
        ``deltas`` (R, S) sample spacings, all differentiable with respect to ``origins`` and ``directions``.
    """
    if origins.ndim != 2 or origins.shape[-1] != 3 or directions.shape != origins.shape:
        raise ValueError(f"origins and directions must both be (R, 3), got {tuple(origins.shape)} "
                         f"and {tuple(directions.shape)}")
    dirs = directions / directions.norm(dim=-1, keepdim=True)
    if lindisp_scale > 0:
        t_mid, deltas = sample_lindisp(origins.shape[0], n_samples, near, far, lindisp_scale, jitter, generator,
                                       device=origins.device)
        t_mid, deltas = t_mid.to(origins.dtype), deltas.to(origins.dtype)
    else:
        t_near, t_far = ray_aabb(origins, dirs, aabb)
        t_near = t_near.clamp(min=near)
        t_far = torch.minimum(t_far, torch.full_like(t_far, far))
        t_far = torch.maximum(t_far, t_near)  # rays that miss: zero length, zero weight
        t_mid, deltas = sample_distances(t_near, t_far, n_samples, jitter, generator, step)
    points = origins[:, None, :] + t_mid[..., None] * dirs[:, None, :]  # (R, S, 3)
    n_rays = origins.shape[0]
    if occupancy_fn is None:
        sigma, feats = sigma_fn(points.reshape(-1, 3))
        sigma = sigma.reshape(n_rays, n_samples)
        weights = weights_from_density(sigma, deltas)
        rgb = color_fn(feats, dirs[:, None, :].expand_as(points).reshape(-1, 3)).reshape(n_rays, n_samples, 3)
    elif not torch.is_grad_enabled() and early_stop_eps > 0:
        weights, rgb = _march(sigma_fn, color_fn, points, dirs, occupancy_fn, deltas, early_stop_eps)
    else:
        mask = occupancy_fn(points) & (deltas > 0)
        sigma = points.new_zeros(n_rays, n_samples)
        rgb = points.new_zeros(n_rays, n_samples, 3)
        if bool(mask.any()) and torch.is_grad_enabled():
            with torch.no_grad():
                s0, _ = sigma_fn(points[mask].detach())
                tau = sigma.masked_scatter(mask, s0) * deltas
                transmittance = torch.exp(-(torch.cumsum(tau, -1) - tau))
                mask = mask & (transmittance > early_stop_eps)
                if alpha_threshold > 0:
                    mask = mask & (1.0 - torch.exp(-tau) > alpha_threshold)
        if bool(mask.any()):
            s, feats = sigma_fn(points[mask])
            sigma = sigma.masked_scatter(mask, s)
            weights = weights_from_density(sigma, deltas)
            # Colour only where a sample is visible at all (early ray termination, in effect).
            visible = mask & (weights.detach() > 1e-4)
            keep = visible[mask]
            if bool(keep.any()):
                ray_dirs = dirs[:, None, :].expand_as(points)[visible]
                rgb = rgb.masked_scatter(visible[..., None], color_fn(feats[keep], ray_dirs))
        else:
            weights = weights_from_density(sigma, deltas)
    out = composite(weights, rgb, t_mid, background)
    out["t"] = t_mid
    out["deltas"] = deltas
    if check:
        check_finite(out["rgb"], "rendered rgb")
    return out


@torch.no_grad()
def render_image(model, intrinsics, nerf_T_cam: Tensor, chunk: int = 16384, max_level: float | None = None,
                 **kwargs) -> dict[str, Tensor]:
    """Render a whole image in chunks of rays (not differentiable: previews and evaluation).

    Args:
        model: a :class:`inerf_ros.nerf.model.NerfModel` (anything with ``render_rays``).
        intrinsics: the camera; nerf_T_cam: (4, 4) OpenGL camera-to-NeRF pose.
        chunk: rays per call.
    Returns:
        dict of ``rgb`` (H, W, 3), ``depth`` (H, W), ``opacity`` (H, W) on the pose's device.
    """
    device = nerf_T_cam.device
    pixels = image_pixels(intrinsics, device=device)
    origins, directions = pixel_rays(intrinsics, nerf_T_cam.float(), pixels)
    parts: dict[str, list[Tensor]] = {"rgb": [], "depth": [], "opacity": []}
    for i in range(0, pixels.shape[0], chunk):
        out = model.render_rays(origins[i:i + chunk], directions[i:i + chunk], max_level=max_level, **kwargs)
        for key in parts:
            parts[key].append(out[key])
    h, w = intrinsics.height, intrinsics.width
    return {"rgb": torch.cat(parts["rgb"]).reshape(h, w, 3), "depth": torch.cat(parts["depth"]).reshape(h, w),
            "opacity": torch.cat(parts["opacity"]).reshape(h, w)}
