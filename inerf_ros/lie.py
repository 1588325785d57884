"""SO(3) / SE(3) in torch: exp/log maps, quaternions (ROS order x, y, z, w), pose errors.

Conventions (shared by the whole package):

* A pose is a 4x4 homogeneous matrix ``a_T_b`` that maps points in frame ``b`` into frame ``a``:
  ``p_a = a_T_b @ p_b``. Chains read left to right: ``a_T_c = a_T_b @ b_T_c``.
* A twist ``xi`` has shape ``(..., 6)``: ``xi[..., :3]`` is the translational part ``v`` and
  ``xi[..., 3:]`` the rotational part ``omega`` (axis * angle, radians), as in kornia.
* Quaternions are ``(x, y, z, w)`` as in ``geometry_msgs/Quaternion``.

Every function takes arbitrary leading batch dimensions. The exp maps are smooth at the identity
(Taylor series below a small angle, selected with ``torch.where`` on *safe* inputs so that neither
branch produces a NaN gradient) because iNeRF starts every optimisation at a zero twist.
Non-finite inputs raise ``ValueError``: a NaN pose is a bug upstream, not a number to propagate.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# Below this angle (radians) the closed forms lose precision and the Taylor series is used.
_SMALL_ANGLE = 1e-3


def _check_shape(x: Tensor, tail: tuple[int, ...], name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape[x.ndim - len(tail):]) != tail or x.ndim < len(tail):
        raise ValueError(f"{name} must have shape (..., {', '.join(map(str, tail))}), got {tuple(x.shape)}")


def check_finite(x: Tensor, name: str) -> Tensor:
    """Raise ``ValueError`` naming ``name`` if ``x`` holds a NaN or an infinity; return ``x``."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values: {x.detach().cpu().tolist()}")
    return x


def hat(omega: Tensor) -> Tensor:
    """Skew-symmetric matrix ``[omega]_x``, (..., 3, 3): the cross product as a matrix, ``[a]_x @ b = a x b``."""
    _check_shape(omega, (3,), "omega")
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*omega.shape[:-1], 3, 3)


def vee(omega_hat: Tensor) -> Tensor:
    """Inverse of :func:`hat`: (..., 3, 3) skew-symmetric -> (..., 3)."""
    _check_shape(omega_hat, (3, 3), "omega_hat")
    return torch.stack([omega_hat[..., 2, 1], omega_hat[..., 0, 2], omega_hat[..., 1, 0]], dim=-1)


def _angle_coefficients(theta_sq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Coefficients A = sin t / t, B = (1 - cos t) / t^2, C = (t - sin t) / t^3, smooth at t = 0."""
    small = theta_sq < _SMALL_ANGLE**2
    # Substituting a safe value keeps the unused branch finite, so autograd sees no NaN (the
    # kornia issue #4404 trap: where() after a division still back-propagates the NaN).
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    theta = torch.sqrt(safe_sq)
    a = torch.where(small, 1 - theta_sq / 6 + theta_sq**2 / 120, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta_sq / 24 + theta_sq**2 / 720, (1 - torch.cos(theta)) / safe_sq)
    c = torch.where(small, 1.0 / 6 - theta_sq / 120 + theta_sq**2 / 5040,
                    (theta - torch.sin(theta)) / (safe_sq * theta))
    return a, b, c


def so3_exp(omega: Tensor) -> Tensor:
    """Rotation matrix (..., 3, 3) of the axis-angle vector ``omega`` (..., 3) (Rodrigues).

    Differentiable everywhere, including at ``omega = 0``.
    """
    _check_shape(omega, (3,), "omega")
    theta_sq = (omega * omega).sum(-1)
    a, b, _ = _angle_coefficients(theta_sq)
    k = hat(omega)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand_as(k)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def so3_log(rotation: Tensor) -> Tensor:
    """Axis-angle vector (..., 3) of a rotation matrix (..., 3, 3), angle in [0, pi].

    Stable near 0 (first-order series) and near pi (axis from the symmetric part of R).
    """
    _check_shape(rotation, (3, 3), "rotation")
    check_finite(rotation, "rotation")
    trace = rotation[..., 0, 0] + rotation[..., 1, 1] + rotation[..., 2, 2]
    cos_theta = ((trace - 1) / 2).clamp(-1.0, 1.0)
    skew = torch.stack(
        [rotation[..., 2, 1] - rotation[..., 1, 2],
         rotation[..., 0, 2] - rotation[..., 2, 0],
         rotation[..., 1, 0] - rotation[..., 0, 1]], dim=-1)  # = 2 sin(theta) * axis
    sin_theta = 0.5 * skew.norm(dim=-1)
    theta = torch.atan2(sin_theta, cos_theta)

    small = theta < _SMALL_ANGLE
    near_pi = cos_theta < -0.99
    regular = ~(small | near_pi)
    safe_sin = torch.where(regular, sin_theta, torch.ones_like(sin_theta))
    omega_regular = skew * (theta / (2 * safe_sin))[..., None]
    omega_small = 0.5 * skew * (1 + theta**2 / 6)[..., None]

    # Near pi: R + I = 2 a a^T (1 - cos t) / ... ; take the axis from the largest diagonal entry
    # of the symmetric part, and the sign from the skew part.
    sym = (rotation + rotation.transpose(-1, -2)) / 2 - cos_theta[..., None, None] * torch.eye(
        3, dtype=rotation.dtype, device=rotation.device)
    diag = torch.diagonal(sym, dim1=-2, dim2=-1)
    idx = diag.argmax(-1)
    col = torch.gather(sym, -1, idx[..., None, None].expand(*sym.shape[:-1], 1)).squeeze(-1)
    axis = col / col.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    sign = torch.where((axis * skew).sum(-1) < 0, -torch.ones_like(theta), torch.ones_like(theta))
    omega_pi = axis * (sign * theta)[..., None]

    return torch.where(small[..., None], omega_small,
                       torch.where(near_pi[..., None], omega_pi, omega_regular))


def se3_exp(xi: Tensor) -> Tensor:
    """4x4 pose (..., 4, 4) of the twist ``xi = (v, omega)`` (..., 6). Smooth at ``xi = 0``."""
    _check_shape(xi, (6,), "xi")
    v, omega = xi[..., :3], xi[..., 3:]
    theta_sq = (omega * omega).sum(-1)
    a, b, c = _angle_coefficients(theta_sq)
    k = hat(omega)
    kk = k @ k
    eye = torch.eye(3, dtype=xi.dtype, device=xi.device).expand_as(k)
    rotation = eye + a[..., None, None] * k + b[..., None, None] * kk
    left_jacobian = eye + b[..., None, None] * k + c[..., None, None] * kk
    translation = (left_jacobian @ v[..., None])[..., 0]
    return make_pose(rotation, translation)


def se3_log(pose: Tensor) -> Tensor:
    """Twist (..., 6) of a 4x4 pose (..., 4, 4); inverse of :func:`se3_exp`."""
    _check_shape(pose, (4, 4), "pose")
    omega = so3_log(pose[..., :3, :3])
    theta_sq = (omega * omega).sum(-1)
    a, b, _ = _angle_coefficients(theta_sq)
    small = theta_sq < _SMALL_ANGLE**2
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    # V^-1 = I - K/2 + (1 - A / (2B)) / theta^2 K^2
    d = torch.where(small, 1.0 / 12 + theta_sq / 720, (1 - a / (2 * b)) / safe_sq)
    k = hat(omega)
    eye = torch.eye(3, dtype=pose.dtype, device=pose.device).expand_as(k)
    left_jacobian_inv = eye - 0.5 * k + d[..., None, None] * (k @ k)
    v = (left_jacobian_inv @ pose[..., :3, 3:4])[..., 0]
    return torch.cat([v, omega], dim=-1)


def make_pose(rotation: Tensor, translation: Tensor) -> Tensor:
    """Assemble (..., 4, 4) from a rotation (..., 3, 3) and a translation (..., 3)."""
    _check_shape(rotation, (3, 3), "rotation")
    _check_shape(translation, (3,), "translation")
    top = torch.cat([rotation, translation[..., None]], dim=-1)
    bottom = torch.zeros(*top.shape[:-2], 1, 4, dtype=top.dtype, device=top.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], dim=-2)


def invert_pose(a_T_b: Tensor) -> Tensor:
    """``b_T_a`` from ``a_T_b`` using the rigid-body structure (R^T, -R^T t), not a general inverse."""
    _check_shape(a_T_b, (4, 4), "pose")
    rotation_t = a_T_b[..., :3, :3].transpose(-1, -2)
    return make_pose(rotation_t, -(rotation_t @ a_T_b[..., :3, 3:4])[..., 0])


def quat_to_matrix(quat_xyzw: Tensor) -> Tensor:
    """Rotation matrix (..., 3, 3) of a quaternion (..., 4) in ROS order (x, y, z, w).

    The quaternion is normalised first; a zero-length or non-finite quaternion raises.
    """
    _check_shape(quat_xyzw, (4,), "quaternion")
    check_finite(quat_xyzw, "quaternion")
    norm = quat_xyzw.norm(dim=-1, keepdim=True)
    if bool((norm < 1e-8).any()):
        raise ValueError("quaternion has zero length")
    x, y, z, w = (quat_xyzw / norm).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*quat_xyzw.shape[:-1], 3, 3)


def matrix_to_quat(rotation: Tensor) -> Tensor:
    """Quaternion (..., 4) in ROS order (x, y, z, w), with ``w >= 0``, of a rotation matrix.

    Shepperd's method: pick the largest of (w, x, y, z) to divide by, which is stable everywhere.
    """
    _check_shape(rotation, (3, 3), "rotation")
    check_finite(rotation, "rotation")
    r = rotation
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    candidates = torch.stack([  # 4 * q_i^2 for i in (w, x, y, z)
        1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    best = candidates.argmax(-1)
    s = torch.sqrt(torch.gather(candidates, -1, best[..., None]).squeeze(-1).clamp_min(1e-12))  # = 2|q_i|
    wx = r[..., 2, 1] - r[..., 1, 2]
    wy = r[..., 0, 2] - r[..., 2, 0]
    wz = r[..., 1, 0] - r[..., 0, 1]
    xy = r[..., 0, 1] + r[..., 1, 0]
    xz = r[..., 0, 2] + r[..., 2, 0]
    yz = r[..., 1, 2] + r[..., 2, 1]
    t = 2 * s  # the others are (sum or difference of two off-diagonal entries) / (4 |q_i|)
    options = torch.stack([
        torch.stack([wx / t, wy / t, wz / t, s / 2], -1),
        torch.stack([s / 2, xy / t, xz / t, wx / t], -1),
        torch.stack([xy / t, s / 2, yz / t, wy / t], -1),
        torch.stack([xz / t, yz / t, s / 2, wz / t], -1),
    ], dim=-2)
    quat = torch.gather(options, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    quat = torch.where(quat[..., 3:4] < 0, -quat, quat)
    return quat / quat.norm(dim=-1, keepdim=True)


def rotation_angle_deg(a_R_b: Tensor, a_R_c: Tensor) -> Tensor:
    """Geodesic angle in degrees between two rotations: ``|log(a_R_b^T a_R_c)|``."""
    relative = a_R_b.transpose(-1, -2) @ a_R_c
    trace = relative[..., 0, 0] + relative[..., 1, 1] + relative[..., 2, 2]
    cos_theta = ((trace - 1) / 2).clamp(-1.0, 1.0)
    # atan2 of (sin, cos) instead of acos: acos is ill-conditioned at the small angles we score.
    sin_theta = 0.5 * vee(relative - relative.transpose(-1, -2)).norm(dim=-1)
    return torch.rad2deg(torch.atan2(sin_theta, cos_theta))


def pose_error(world_T_est: Tensor, world_T_gt: Tensor) -> tuple[Tensor, Tensor]:
    """(rotation error in degrees, translation error) between two poses of the same frame.

    Rotation: geodesic angle of ``R_est^T R_gt``. Translation: Euclidean distance between the two
    frame origins, in the unit of the poses (convert NeRF units with :mod:`inerf_ros.frames`).
    """
    _check_shape(world_T_est, (4, 4), "world_T_est")
    _check_shape(world_T_gt, (4, 4), "world_T_gt")
    rot = rotation_angle_deg(world_T_est[..., :3, :3], world_T_gt[..., :3, :3])
    trans = (world_T_est[..., :3, 3] - world_T_gt[..., :3, 3]).norm(dim=-1)
    return rot, trans


def axis_angle_rotation(axis: Tensor, angle_rad: Tensor) -> Tensor:
    """Rotation (..., 3, 3) by ``angle_rad`` (...) about ``axis`` (..., 3), axis normalised here."""
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return so3_exp(axis * angle_rad[..., None])


def random_rotation_about_random_axis(max_angle_deg: float, n: int, generator: torch.Generator | None = None,
                                      dtype: torch.dtype = torch.float64) -> Tensor:
    """(n, 3, 3) rotations about uniformly random axes by angles uniform in [-max, max] degrees.

    This is the iNeRF paper's start-pose perturbation.
    """
    axis = torch.randn(n, 3, generator=generator, dtype=dtype)
    angle = (torch.rand(n, generator=generator, dtype=dtype) * 2 - 1) * math.radians(max_angle_deg)
    return axis_angle_rotation(axis, angle)
