"""The region of interest of a capture: the inner box of an unbounded (contracted) field.

A hand-held or arm capture has no box that holds what the cameras see: the table has a room behind
it, and a box large enough for the room holds the cameras too (they then look at its inside walls).
An unbounded field needs only the region the photos are *about*, at full resolution; everything
beyond is contracted (:func:`inerf_ros.nerf.field.contract`). That region comes, in order of trust:

1. from the SfM points the photos observed (robust percentiles: a few stray points far away must
   not blow the box up; the cameras may lie outside it);
2. from the box the data names explicitly (``aabb`` in transforms.json);
3. from the camera frusta: the point nearest to every optical axis (where the photographer aimed),
   with a half-size of half the median distance to it.
"""
from __future__ import annotations

import numpy as np

# Percentiles of the SfM points that bound the box: 2 % of the points on each side may be outliers.
POINT_PERCENTILES = (2.0, 98.0)
# Growth of the box about its centre beyond the points' percentiles (surfaces extend past their points).
POINT_MARGIN = 1.15
# The optical axes must meet well enough to define a focus: smallest eigenvalue of the mean of
# (I - d d^T) over the cameras (0 when all axes are parallel, 2/3 for axes in every direction).
MIN_AXIS_SPREAD = 0.02


def box_from_points(points: np.ndarray, percentiles: tuple[float, float] = POINT_PERCENTILES,
                    margin: float = POINT_MARGIN) -> np.ndarray:
    """Box (2, 3) [min, max] holding the bulk of ``points`` (P, 3): per-axis percentiles, grown by ``margin``.

    Raises:
        ValueError: fewer than 8 finite points (no robust bounds).
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) < 8:
        raise ValueError(f"need at least 8 finite points for a box, got {len(points)}")
    lo, hi = np.percentile(points, percentiles[0], axis=0), np.percentile(points, percentiles[1], axis=0)
    centre, half = 0.5 * (lo + hi), 0.5 * (hi - lo) * margin
    # A flat point set (a wall seen face on) still needs some depth.
    half = np.maximum(half, 0.05 * float(half.max()) + 1e-9)
    return np.stack([centre - half, centre + half])


def box_from_frusta(nerf_T_cams: np.ndarray) -> np.ndarray | None:
    """Cube (2, 3) about the point nearest to all optical axes of OpenGL camera poses (N, 4, 4), or None
    when the axes are nearly parallel (a forward-facing capture: no single point is aimed at).
    """
    poses = np.asarray(nerf_T_cams, dtype=np.float64)
    centres = poses[:, :3, 3]
    axes = -poses[:, :3, 2]  # OpenGL cameras look along -z
    axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    projectors = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]
    a = projectors.sum(0)
    if np.linalg.eigvalsh(a / len(poses))[0] < MIN_AXIS_SPREAD:
        return None
    focus = np.linalg.solve(a, np.einsum("nij,nj->i", projectors, centres))
    ahead = np.einsum("ni,ni->n", focus - centres, axes)
    if np.median(ahead) <= 0:  # the axes meet behind the cameras: no focus in view
        return None
    half = 0.5 * float(np.median(np.linalg.norm(centres - focus, axis=1)))
    return np.stack([focus - half, focus + half])


def lindisp_scale(box: np.ndarray, nerf_T_cams: np.ndarray) -> float:
    """Distance up to which an unbounded field's samples are spaced linearly: the median camera distance
    to the box centre plus half the box's largest side, so a ray is sampled evenly through the box.
    """
    box = np.asarray(box, dtype=np.float64)
    centres = np.asarray(nerf_T_cams, dtype=np.float64)[:, :3, 3]
    distance = float(np.median(np.linalg.norm(centres - box.mean(0), axis=1)))
    return distance + 0.5 * float((box[1] - box[0]).max())


def region_of_interest(sparse_points, explicit_aabb, nerf_T_cams) -> tuple[np.ndarray | None, str]:
    """The inner box (2, 3) of an unbounded field and where it came from (a phrase for the report).

    Args:
        sparse_points: per frame, the (M, 3) SfM points it observed, or None.
        explicit_aabb: (2, 3) box that the data names itself, or None.
        nerf_T_cams: (N, 4, 4) OpenGL camera poses.
    Returns:
        ``(box, source)``; ``box`` is None when none of the three sources gives one.
    """
    if sparse_points is not None:
        seen = [np.asarray(p).reshape(-1, 3) for p in sparse_points if len(p)]
        if seen:
            points = np.unique(np.concatenate(seen), axis=0)
            if len(points) >= 8:
                return box_from_points(points), f"the {len(points)} SfM points the photos observe"
    if explicit_aabb is not None:
        return np.asarray(explicit_aabb, dtype=np.float64), "the data's aabb"
    box = box_from_frusta(nerf_T_cams)
    if box is not None:
        return box, "the camera frusta (the point the optical axes meet)"
    return None, "nothing: no SfM points, no aabb, and the optical axes do not meet"
