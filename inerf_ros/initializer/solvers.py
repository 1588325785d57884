"""The geometry of the camera prior (ROS-free, numpy): robust means on SO(3) and R^3, point alignment
(weighted Kabsch), PnP on bearings (MSAC), their joint refinement and the distance_only placement.

Frames and units as in :mod:`inerf_ros.initializer`; every function here is pure.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation R with ``R @ a_hat = b_hat`` (3x3)."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    sin_angle, cos_angle = np.linalg.norm(axis), float(np.dot(a, b))
    if sin_angle < 1e-12:
        if cos_angle > 0:
            return np.eye(3)
        # Opposite vectors: any axis perpendicular to a.
        perpendicular = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(perpendicular) < 1e-6:
            perpendicular = np.cross(a, [0.0, 1.0, 0.0])
        return Rotation.from_rotvec(math.pi * perpendicular / np.linalg.norm(perpendicular)).as_matrix()
    return Rotation.from_rotvec(axis / sin_angle * math.atan2(sin_angle, cos_angle)).as_matrix()


def rotation_angle_deg(r_a: np.ndarray, r_b: np.ndarray) -> np.ndarray:
    """Geodesic angle(s) in degrees between rotations (..., 3, 3)."""
    relative = np.swapaxes(r_a, -1, -2) @ r_b
    return np.degrees(np.linalg.norm(Rotation.from_matrix(relative.reshape(-1, 3, 3)).as_rotvec(), axis=-1)).reshape(
        relative.shape[:-2])


def robust_rotation_mean(rotations: np.ndarray, weights: np.ndarray, start: np.ndarray, iterations: int) -> np.ndarray:
    """Weighted geodesic L1 mean of (n, 3, 3) rotations (Weiszfeld on SO(3)), started at ``start``."""
    mean = start.copy()
    for _ in range(iterations):
        deltas = Rotation.from_matrix(rotations @ mean.T).as_rotvec()  # left perturbations about the mean
        norms = np.linalg.norm(deltas, axis=1)
        inverse = weights / np.maximum(norms, 1e-9)
        step = (inverse[:, None] * deltas).sum(0) / inverse.sum()
        mean = Rotation.from_rotvec(step).as_matrix() @ mean
        if np.linalg.norm(step) < 1e-12:
            break
    return mean


def robust_point_mean(points: np.ndarray, weights: np.ndarray, iterations: int) -> np.ndarray:
    """Weighted geometric median of (n, 3) points (Weiszfeld), started at the weighted mean."""
    median = (weights[:, None] * points).sum(0) / weights.sum()
    for _ in range(iterations):
        distances = np.linalg.norm(points - median, axis=1)
        inverse = weights / np.maximum(distances, 1e-12)
        updated = (inverse[:, None] * points).sum(0) / inverse.sum()
        if np.linalg.norm(updated - median) < 1e-14:
            median = updated
            break
        median = updated
    return median


def align_points(r_cam: np.ndarray, p_nerf: np.ndarray, weights: np.ndarray, min_spread: float):
    """Camera pose (nerf_R_cam, centre, 6x6 covariance) with ``p_nerf ~ R @ r_cam + centre`` (weighted
    Kabsch), or None when the points do not spread at least ``min_spread`` in two directions.

    The covariance is a first-order estimate from the fit residuals: translation sigma^2 / n per axis,
    rotation sigma^2 / (n * spread^2) per axis (spread: RMS distance of the points to their centroid).
    """
    w = weights / weights.sum()
    r_mean, p_mean = w @ r_cam, w @ p_nerf
    r_c, p_c = r_cam - r_mean, p_nerf - p_mean
    scatter = (w[:, None] * r_c).T @ r_c
    if np.sqrt(max(np.linalg.eigvalsh(scatter)[1], 0.0)) < min_spread:
        return None
    u, _, vt = np.linalg.svd((w[:, None] * r_c).T @ p_c)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    centre = p_mean - rotation @ r_mean
    n = len(weights)
    residual = p_nerf - (r_cam @ rotation.T + centre)
    sigma_sq = float(w @ (residual ** 2).sum(1)) * n / max(n - 2, 1) / 3
    spread_sq = float(np.trace(scatter))
    covariance = np.diag([sigma_sq / n] * 3 + [sigma_sq / (n * max(spread_sq, 1e-12))] * 3)
    return rotation, centre, covariance


def _bearing_residuals(cam_T_nerf: np.ndarray, p_nerf: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Angles (radians) between the unit ``directions`` (N, 3) and where ``cam_T_nerf`` sees ``p_nerf``;
    a point behind the camera gets pi.
    """
    seen = p_nerf @ cam_T_nerf[:3, :3].T + cam_T_nerf[:3, 3]
    cos = (seen * directions).sum(1) / np.maximum(np.linalg.norm(seen, axis=1), 1e-12)
    return np.where(seen[:, 2] > 0, np.arccos(np.clip(cos, -1.0, 1.0)), np.pi)


def msac_bearings(p_nerf: np.ndarray, directions: np.ndarray, threshold_rad: float,
                  max_subsets: int = 400, seed: int = 0):
    """(cam_T_nerf, inlier indices) seeing the points ``p_nerf`` along the unit ``directions``, or (None, []).

    MSAC, not inlier counting: every subset of four (all of them for up to 12 objects) gives a camera
    by SQPnP, scored by the sum of its residuals truncated at the threshold. Objects on a table are
    nearly coplanar, and then two cameras can explain the same number of directions within a loose
    threshold; counting cannot tell them apart, the residuals can.
    """
    import cv2   # lazy: about a second to import, and only this solver needs it

    n = len(p_nerf)
    normalized = np.ascontiguousarray(directions[:, :2] / directions[:, 2:])
    subsets = draw_subsets(n, 4, max_subsets, seed)

    def solve(indices, guess=None):
        idx = list(indices)
        if _degenerate(p_nerf[idx]) or _degenerate(normalized[idx]):
            return None   # coincident points (one class detected twice): SQPnP asserts on them
        args = dict(useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE) if guess is not None else \
            dict(flags=cv2.SOLVEPNP_SQPNP)
        rvec, tvec = (cv2.Rodrigues(guess[:3, :3])[0], guess[:3, 3:].copy()) if guess is not None else (None, None)
        try:
            ok, rvec, tvec = cv2.solvePnP(np.ascontiguousarray(p_nerf[idx]), normalized[idx], np.eye(3), None,
                                          rvec, tvec, **args)
        except cv2.error:   # a degenerate configuration the checks above did not catch: no camera from it
            return None
        if not ok:
            return None
        pose = make_pose(cv2.Rodrigues(rvec)[0], np.asarray(tvec, dtype=np.float64).ravel())
        return pose if np.isfinite(pose).all() else None

    best, best_cost = None, np.inf
    for subset in subsets:   # the caller ensures every direction points forward (z > 0)
        pose = solve(subset)
        if pose is None:
            continue
        cost = float((np.minimum(_bearing_residuals(pose, p_nerf, directions), threshold_rad) ** 2).sum())
        if cost < best_cost:
            best, best_cost = pose, cost
    if best is None:
        return None, []
    for _ in range(2):   # refit on the inliers, which may change them once
        keep = np.nonzero(_bearing_residuals(best, p_nerf, directions) < threshold_rad)[0]
        if len(keep) < 4:
            return None, []
        refit = solve(keep, guess=best)
        if refit is None:
            break
        best = refit
    keep = np.nonzero(_bearing_residuals(best, p_nerf, directions) < threshold_rad)[0]
    return best, [int(k) for k in keep]


# Subsets drawn by the RANSAC/MSAC solvers: all of them while there are at most this many, else this
# many drawn at random (never materialised: 160 detections have 27 million 4-subsets).
MAX_SUBSETS = 400


def draw_subsets(n: int, k: int, max_subsets: int, seed: int) -> list[tuple[int, ...]]:
    """Every k-subset of range(n) when there are at most ``max_subsets``, else ``max_subsets`` random
    distinct ones (sorted tuples), drawn without listing them all.
    """
    if math.comb(n, k) <= max_subsets:
        return list(itertools.combinations(range(n), k))
    rng = np.random.default_rng(seed)
    chosen: set[tuple[int, ...]] = set()
    while len(chosen) < max_subsets:
        chosen.add(tuple(sorted(int(i) for i in rng.choice(n, k, replace=False))))
    return sorted(chosen)


def _degenerate(points: np.ndarray) -> bool:
    """Whether two of the (k, d) points coincide (relative to their extent), or any is not finite."""
    if not np.isfinite(points).all():
        return True
    gaps = np.linalg.norm(points[:, None] - points[None, :], axis=-1)[np.triu_indices(len(points), 1)]
    return bool(gaps.min() <= 1e-9 * max(float(np.abs(points).max()), 1.0))


def make_pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 pose from a 3x3 rotation and a translation (3,)."""
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = translation
    return pose


def invert_pose(a_T_b: np.ndarray) -> np.ndarray:
    """``b_T_a`` of a rigid 4x4 ``a_T_b``."""
    b_T_a = np.eye(4)
    b_T_a[:3, :3] = a_T_b[:3, :3].T
    b_T_a[:3, 3] = -a_T_b[:3, :3].T @ a_T_b[:3, 3]
    return b_T_a


def distance_only_camera(p_nerf: np.ndarray, r_cam: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Camera pose from the object's known position ``p_nerf``, its detected position ``r_cam`` in the
    camera (both NeRF units) and a camera hint (see :mod:`inerf_ros.initializer`).
    """
    distance = np.linalg.norm(r_cam)
    direction = hint[:3, 3] - p_nerf
    if np.linalg.norm(direction) < 1e-12:  # hint at the object: fall back to the hint's own viewing ray
        direction = -hint[:3, :3] @ r_cam
    centre = p_nerf + distance * direction / np.linalg.norm(direction)
    seen = hint[:3, :3] @ r_cam          # bearing of the object if the hint's orientation were right
    wanted = p_nerf - centre              # bearing of the object from the placed camera
    nerf_T_cam = np.eye(4)
    nerf_T_cam[:3, :3] = rotation_between(seen, wanted) @ hint[:3, :3]
    nerf_T_cam[:3, 3] = centre
    return nerf_T_cam


def joint_refine(cam_T_nerf: np.ndarray, p_nerf: np.ndarray, r_cam: np.ndarray, nerf_R_obj: np.ndarray,
                 cam_R_obj: np.ndarray, range_sigma: float, rotation_sigma_deg: float,
                 bearing_sigma_deg: float) -> np.ndarray:
    """Refine ``cam_T_nerf`` on the directions and distances of the objects (known positions ``p_nerf``,
    detected ones ``r_cam``, (N, 3)) and on the rotations of some of them (``nerf_R_obj`` known,
    ``cam_R_obj`` detected, (M, 3, 3)), each in units of its standard deviation, with a robust (soft L1)
    loss. The distances are compared up to a common depth scale fitted with the pose (a detector's
    distances are often all biased alike); ``range_sigma`` 0 leaves them out. Returns ``cam_T_nerf``
    unchanged when the fit fails or puts an object behind the camera.
    """
    ranges = np.linalg.norm(r_cam, axis=1)
    directions = r_cam / ranges[:, None]
    sigma_bearing = math.radians(bearing_sigma_deg)

    def residuals(x):
        R = Rotation.from_rotvec(x[:3]).as_matrix()
        seen = p_nerf @ R.T + x[3:6]
        distance = np.linalg.norm(seen, axis=1)
        parts = [((seen / distance[:, None]) - directions).ravel() / sigma_bearing]
        if range_sigma > 0:   # x[6]: the detector's common depth scale, a free unknown
            parts.append((distance - np.exp(x[6]) * ranges) / (range_sigma * ranges))
        if len(nerf_R_obj):
            error = Rotation.from_matrix(np.transpose(cam_R_obj, (0, 2, 1)) @ (R @ nerf_R_obj)).as_rotvec()
            parts.append(error.ravel() / math.radians(rotation_sigma_deg))
        return np.concatenate(parts)

    start = np.concatenate([Rotation.from_matrix(cam_T_nerf[:3, :3]).as_rotvec(), cam_T_nerf[:3, 3], [0.0]])
    fit = least_squares(residuals, start, loss="soft_l1", f_scale=1.0, max_nfev=200)
    if not fit.success or not np.isfinite(fit.x).all():
        return cam_T_nerf
    refined = make_pose(Rotation.from_rotvec(fit.x[:3]).as_matrix(), fit.x[3:6])
    in_front = (p_nerf @ refined[:3, :3].T + refined[:3, 3])[:, 2] > 0
    return refined if in_front.all() else cam_T_nerf
