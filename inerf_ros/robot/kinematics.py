"""Kinematics of a Universal Robots e-Series arm from its published standard Denavit-Hartenberg table.

Frames: ``base`` is the DH base frame (z along joint 1, x such that all-zero joints stretch the arm
along -x); link frame ``i`` (1..6) is DH frame i, attached to link i and moving with joint i; frame 6 is
the tool flange, ``tool0``. With standard DH,
``link(i-1)_T_link(i) = Rz(q_i) . Tz(d_i) . Tx(a_i) . Rx(alpha_i)``.

Everything is numpy float64, metres and radians; ``forward`` and ``jacobian`` take joint vectors of
shape (..., 6) and broadcast over the leading axes. ``inverse`` is a damped least-squares Newton
solve seeded with the previous solution, so a trajectory solved frame by frame stays on one branch.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

N_JOINTS = 6


@dataclasses.dataclass(frozen=True)
class DHTable:
    """Standard DH parameters of a 6-joint arm: per joint a [m], d [m], alpha [rad]; theta = joint angle."""

    name: str
    a: tuple
    d: tuple
    alpha: tuple

    @property
    def reach(self) -> float:
        """Upper-arm + forearm length, metres: a bound on the distance from the shoulder to the wrist."""
        return abs(self.a[1]) + abs(self.a[2])


# Universal Robots, "Parameters for calculations of kinematics and dynamics" (UR5e and UR10e rows).
_HALF_PI = math.pi / 2
UR_DH = {
    "ur5e": DHTable("ur5e", a=(0.0, -0.425, -0.3922, 0.0, 0.0, 0.0),
                    d=(0.1625, 0.0, 0.0, 0.1333, 0.0997, 0.0996),
                    alpha=(_HALF_PI, 0.0, 0.0, _HALF_PI, -_HALF_PI, 0.0)),
    "ur10e": DHTable("ur10e", a=(0.0, -0.6127, -0.57155, 0.0, 0.0, 0.0),
                     d=(0.1807, 0.0, 0.0, 0.17415, 0.11985, 0.11655),
                     alpha=(_HALF_PI, 0.0, 0.0, _HALF_PI, -_HALF_PI, 0.0)),
}


def dh_table(name: str) -> DHTable:
    """The DH table of the arm ``name`` (a key of ``UR_DH``); ValueError naming the known ones."""
    try:
        return UR_DH[name]
    except KeyError:
        raise ValueError(f"unknown arm {name!r}; known: {sorted(UR_DH)}") from None


def _check_joints(q) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1:] != (N_JOINTS,):
        raise ValueError(f"joint angles must have shape (..., {N_JOINTS}), got {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError("joint angles contain NaN or inf")
    return q


def link_transforms(table: DHTable, q) -> np.ndarray:
    """``link(i-1)_T_link(i)`` for i = 1..6, shape (..., 6, 4, 4), from joint angles (..., 6)."""
    q = _check_joints(q)
    a, d, alpha = (np.asarray(v, dtype=np.float64) for v in (table.a, table.d, table.alpha))
    ct, st = np.cos(q), np.sin(q)
    ca, sa = np.cos(alpha), np.sin(alpha)
    out = np.zeros(q.shape + (4, 4))
    # Rz(theta) Tz(d) Tx(a) Rx(alpha), multiplied out.
    out[..., 0, 0], out[..., 0, 1], out[..., 0, 2], out[..., 0, 3] = ct, -st * ca, st * sa, a * ct
    out[..., 1, 0], out[..., 1, 1], out[..., 1, 2], out[..., 1, 3] = st, ct * ca, -ct * sa, a * st
    out[..., 2, 1], out[..., 2, 2], out[..., 2, 3] = sa, ca, d
    out[..., 3, 3] = 1.0
    return out


def forward(table: DHTable, q) -> np.ndarray:
    """``base_T_link(i)`` for i = 1..6 (the last is ``base_T_tool0``), shape (..., 6, 4, 4)."""
    steps = link_transforms(table, q)
    out = np.empty_like(steps)
    out[..., 0, :, :] = steps[..., 0, :, :]
    for i in range(1, N_JOINTS):
        out[..., i, :, :] = out[..., i - 1, :, :] @ steps[..., i, :, :]
    return out


def tool0(table: DHTable, q) -> np.ndarray:
    """``base_T_tool0``, shape (..., 4, 4)."""
    return forward(table, q)[..., -1, :, :]


def jacobian(table: DHTable, q, tool0_T_point: np.ndarray | None = None) -> np.ndarray:
    """Geometric Jacobian (..., 6, 6) of a point fixed to the flange, in the base frame.

    Rows 0-2: velocity of the point (``tool0_T_point``'s origin; default tool0), rows 3-5: angular
    velocity of the flange, both per unit joint speed. Joint i turns about the z axis of DH frame i-1.
    """
    links = forward(table, q)
    base_T_point = links[..., -1, :, :] if tool0_T_point is None else links[..., -1, :, :] @ tool0_T_point
    p = base_T_point[..., :3, 3]
    frames = np.concatenate([np.broadcast_to(np.eye(4), links.shape[:-3] + (1, 4, 4)), links[..., :-1, :, :]],
                            axis=-3)
    z = frames[..., :3, 2]                          # (..., 6, 3) joint axes
    origins = frames[..., :3, 3]                    # (..., 6, 3) points on the axes
    linear = np.cross(z, p[..., None, :] - origins)  # (..., 6, 3)
    return np.concatenate([np.swapaxes(linear, -1, -2), np.swapaxes(z, -1, -2)], axis=-2)


def rotation_log(rotation: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) of a rotation matrix (3, 3): axis times angle in [0, pi]."""
    cos_angle = np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)
    angle = math.acos(cos_angle)
    skew = np.array([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0], rotation[1, 0] - rotation[0, 1]])
    if angle < 1e-6:  # sin(angle) / angle -> 1: first order is exact to 1e-13 here
        return 0.5 * skew
    if math.pi - angle > 1e-4:
        return angle / (2.0 * math.sin(angle)) * skew
    # Near pi the skew part vanishes: the axis comes from the symmetric part, (1 - cos) a a^T.
    outer = (rotation + rotation.T) / 2.0 - cos_angle * np.eye(3)
    k = int(np.argmax(np.diag(outer)))
    axis = outer[:, k] / math.sqrt(outer[k, k])
    if np.dot(axis, skew) < 0:
        axis = -axis
    return angle * axis / np.linalg.norm(axis)


def pose_error(base_T_target: np.ndarray, base_T_current: np.ndarray) -> np.ndarray:
    """Twist (6,) that moves the current pose onto the target: translation, then rotation vector (base frame)."""
    dp = base_T_target[:3, 3] - base_T_current[:3, 3]
    dr = rotation_log(base_T_target[:3, :3] @ base_T_current[:3, :3].T)
    return np.concatenate([dp, dr])


class IKError(RuntimeError):
    """The pose was not reached from the seed (out of reach, or through a singularity)."""


def inverse(table: DHTable, base_T_tool0: np.ndarray, q_seed, *, damping: float = 1e-4, max_step: float = 0.2,
            tolerance: float = 1e-12, max_iterations: int = 200) -> np.ndarray:
    """Joint angles (6,) that put tool0 at ``base_T_tool0``, found from ``q_seed`` by damped least squares.

    The solution is the one the seed's branch leads to (no jump between the up to 8 analytic
    solutions), which is what a trajectory needs. ``damping`` keeps steps finite near singularities;
    once converged the fixed point is exact (the damping only scales the step). Raises
    :class:`IKError` when the residual does not fall below ``tolerance`` (metres / radians).
    """
    base_T_tool0 = np.asarray(base_T_tool0, dtype=np.float64)
    if base_T_tool0.shape != (4, 4) or not np.all(np.isfinite(base_T_tool0)):
        raise ValueError(f"base_T_tool0 must be a finite (4, 4) pose, got shape {base_T_tool0.shape}")
    q = _check_joints(q_seed).copy()
    identity = np.eye(6)
    for _ in range(max_iterations):
        error = pose_error(base_T_tool0, tool0(table, q))
        if np.max(np.abs(error)) < tolerance:
            return q
        jac = jacobian(table, q)
        step = jac.T @ np.linalg.solve(jac @ jac.T + damping ** 2 * identity, error)
        largest = np.max(np.abs(step))
        if largest > max_step:  # a linearisation is only trusted this far
            step *= max_step / largest
        q = q + step
    residual = np.max(np.abs(pose_error(base_T_tool0, tool0(table, q))))
    raise IKError(f"IK did not converge from the seed: residual {residual:.3g} after {max_iterations} steps "
                  "(pose out of reach or at a singularity)")


def manipulability(table: DHTable, q) -> np.ndarray:
    """Yoshikawa's measure sqrt(det(J J^T)) (...,): 0 at a singularity."""
    jac = jacobian(table, q)
    return np.sqrt(np.abs(np.linalg.det(jac @ np.swapaxes(jac, -1, -2))))
