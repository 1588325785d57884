"""Camera rays in the NeRF frame, differentiable with respect to the camera pose.

Pixel convention (OpenCV / ROS): the centre of the top-left pixel is (u, v) = (0, 0), ``u`` is the
column, ``v`` the row. Camera frame: OpenGL (x right, y up, z back), as in transforms.json.
"""
from __future__ import annotations

import torch
from torch import Tensor

from inerf_ros.camera import Intrinsics


def _undistort_normalized(x: Tensor, y: Tensor, distortion: tuple[float, ...], iterations: int = 8):
    """Invert OpenCV's plumb_bob model (k1, k2, p1, p2[, k3]) on normalised coordinates by fixed-point iteration."""
    k1, k2, p1, p2, k3 = (tuple(distortion) + (0.0,) * 5)[:5]
    xu, yu = x, y
    for _ in range(iterations):
        r2 = xu * xu + yu * yu
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        dx = 2 * p1 * xu * yu + p2 * (r2 + 2 * xu * xu)
        dy = p1 * (r2 + 2 * yu * yu) + 2 * p2 * xu * yu
        xu, yu = (x - dx) / radial, (y - dy) / radial
    return xu, yu


def camera_directions(intrinsics: Intrinsics, pixels_uv: Tensor) -> Tensor:
    """Unit ray directions (..., N, 3) in the OpenGL camera frame for pixels (..., N, 2)."""
    if pixels_uv.shape[-1] != 2:
        raise ValueError(f"pixels_uv must have shape (..., N, 2), got {tuple(pixels_uv.shape)}")
    x = (pixels_uv[..., 0] - intrinsics.cx) / intrinsics.fx
    y = (pixels_uv[..., 1] - intrinsics.cy) / intrinsics.fy
    if intrinsics.is_distorted:
        if intrinsics.distortion_model != "plumb_bob":
            raise ValueError(f"pixel_rays supports plumb_bob distortion only, got {intrinsics.distortion_model}")
        x, y = _undistort_normalized(x, y, intrinsics.distortion)
    # OpenCV camera (x right, y down, z forward) -> OpenGL (x right, y up, z back).
    d = torch.stack([x, -y, -torch.ones_like(x)], -1)
    return d / d.norm(dim=-1, keepdim=True)


def pixel_rays(intrinsics: Intrinsics, nerf_T_cam: Tensor, pixels_uv: Tensor) -> tuple[Tensor, Tensor]:
    """Rays through pixels of a camera at ``nerf_T_cam``.

    Args:
        intrinsics: pinhole intrinsics (plumb_bob distortion is inverted if present).
        nerf_T_cam: (..., 4, 4) OpenGL camera-to-NeRF poses in NeRF units; differentiable.
        pixels_uv: (N, 2) or (..., N, 2) float pixel coordinates [u = column, v = row], (0, 0) = centre
            of the top-left pixel. Not differentiated.
    Returns:
        ``origins`` (..., N, 3) and unit ``directions`` (..., N, 3) in the NeRF frame, both
        differentiable with respect to ``nerf_T_cam``.
    """
    if nerf_T_cam.shape[-2:] != (4, 4):
        raise ValueError(f"nerf_T_cam must have shape (..., 4, 4), got {tuple(nerf_T_cam.shape)}")
    pixels_uv = pixels_uv.to(device=nerf_T_cam.device, dtype=nerf_T_cam.dtype)
    d_cam = camera_directions(intrinsics, pixels_uv)  # (..., N, 3)
    rotation = nerf_T_cam[..., :3, :3]
    directions = torch.einsum("...ij,...nj->...ni", rotation, d_cam)
    origins = nerf_T_cam[..., None, :3, 3].expand_as(directions)
    return origins, directions


def image_pixels(intrinsics: Intrinsics, device=None) -> Tensor:
    """Pixel centres (H * W, 2) of the whole image in row-major order, [u, v] floats."""
    v, u = torch.meshgrid(torch.arange(intrinsics.height, device=device, dtype=torch.float32),
                          torch.arange(intrinsics.width, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], -1)


def ray_aabb(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances (R,) of rays (R, 3) through the box ``aabb`` (2, 3) (slab method).

    Rays that miss get ``t_far <= t_near``. Differentiable (piecewise) in origins and directions, so
    that sample points move with the ray exactly as a finite difference of the pose would see them.
    """
    o, d = origins, directions
    tiny = torch.full_like(d, 1e-12)
    d_safe = torch.where(d.abs() < 1e-12, torch.where(d < 0, -tiny, tiny), d)
    t0 = (aabb[0] - o) / d_safe
    t1 = (aabb[1] - o) / d_safe
    t_near = torch.minimum(t0, t1).amax(-1)
    t_far = torch.maximum(t0, t1).amin(-1)
    return t_near, t_far
