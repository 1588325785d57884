"""Camera-frame conventions and units: the one place where they are converted.

* ROS optical frame (REP 103): x right, y down, z forward (also OpenCV's camera frame).
* NeRF / OpenGL / Blender camera frame: x right, y up, z backward (the camera looks along -z).
* ``transforms.json`` stores ``world_T_cam`` in the OpenGL convention.

The two camera frames share their origin and differ by a rotation of pi about x, so
``world_T_optical = world_T_opengl @ OPENGL_T_OPTICAL`` with ``OPENGL_T_OPTICAL = diag(1, -1, -1, 1)``
(its own inverse).

Units: a NeRF's world frame has an arbitrary scale. ``metres_per_unit`` says how many metres one
NeRF unit is; TF published to ROS is always in metres.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# Maps points in the ROS optical camera frame into the OpenGL camera frame (and vice versa).
OPENGL_T_OPTICAL = np.diag([1.0, -1.0, -1.0, 1.0])


def _flip(pose):
    if isinstance(pose, Tensor):
        flip = torch.as_tensor(OPENGL_T_OPTICAL, dtype=pose.dtype, device=pose.device)
        return pose @ flip
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape[-2:] != (4, 4):
        raise ValueError(f"a pose must have shape (..., 4, 4), got {pose.shape}")
    return pose @ OPENGL_T_OPTICAL


def opengl_to_optical(world_T_cam_opengl):
    """``world_T_cam`` with an OpenGL camera -> the same camera as a ROS optical frame.

    Works on numpy arrays and torch tensors of shape (..., 4, 4).
    """
    return _flip(world_T_cam_opengl)


def optical_to_opengl(world_T_cam_optical):
    """``world_T_cam`` with a ROS optical camera -> the same camera as an OpenGL (NeRF) frame."""
    return _flip(world_T_cam_optical)


def nerf_to_metres(pose_or_points, metres_per_unit: float):
    """Scale the translation of a pose (..., 4, 4) or a set of points (..., 3) from NeRF units to metres."""
    return _scale(pose_or_points, metres_per_unit)


def metres_to_nerf(pose_or_points, metres_per_unit: float):
    """Scale the translation of a pose (..., 4, 4) or points (..., 3) from metres to NeRF units."""
    return _scale(pose_or_points, 1.0 / metres_per_unit)


def covariance_nerf_to_metres(covariance, metres_per_unit: float) -> np.ndarray:
    """A pose covariance (..., 6, 6) over ``[x y z rx ry rz]`` (``geometry_msgs/PoseWithCovariance``'s
    order) from NeRF units to metres: the translation rows and columns scale by ``metres_per_unit``
    (so the translation block by its square); rotations are in radians in both. Returns a copy.
    """
    return _scale_covariance(covariance, metres_per_unit)


def covariance_metres_to_nerf(covariance, metres_per_unit: float) -> np.ndarray:
    """The inverse of :func:`covariance_nerf_to_metres`."""
    return _scale_covariance(covariance, 1.0 / _checked_factor(metres_per_unit))


def _checked_factor(factor: float) -> float:
    if not np.isfinite(factor) or factor <= 0:
        raise ValueError(f"metres_per_unit must be a positive finite number, got {factor}")
    return float(factor)


def _scale_covariance(covariance, factor: float) -> np.ndarray:
    factor = _checked_factor(factor)
    out = np.array(covariance, dtype=np.float64, copy=True)
    if out.shape[-2:] != (6, 6):
        raise ValueError(f"a pose covariance must have shape (..., 6, 6), got {out.shape}")
    out[..., :3, :] *= factor
    out[..., :, :3] *= factor
    return out


def _scale(x, factor: float):
    _checked_factor(factor)
    is_tensor = isinstance(x, Tensor)
    out = x.clone() if is_tensor else np.array(x, dtype=np.float64, copy=True)
    if out.shape[-2:] == (4, 4):
        out[..., :3, 3] = out[..., :3, 3] * factor
    elif out.shape[-1] == 3:
        out = out * factor
    else:
        raise ValueError(f"expected a pose (..., 4, 4) or points (..., 3), got shape {tuple(out.shape)}")
    return out


def look_at(eye, target, up=(0.0, 0.0, 1.0), roll_rad: float = 0.0) -> np.ndarray:
    """``world_T_cam_optical`` of a camera at ``eye`` looking at ``target`` (optical z forward, y down)."""
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking straight along up: pick any x
        x = np.cross(z, [1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rotation = np.stack([x, y, z], axis=1)
    if roll_rad:
        c, s = np.cos(roll_rad), np.sin(roll_rad)
        rotation = rotation @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = eye
    return pose
