"""Metric scale and the robot's frame: a robust similarity between SfM camera centres and the arm's.

SfM poses the capture in an arbitrary frame and unit (the NeRF frame); the arm's believed chain puts
the same cameras in its base frame, in metres. The similarity ``p_base = s R p_nerf + t`` between the
two sets of camera centres gives at once ``metres_per_unit = s`` and ``world_T_nerf = [R | t]`` (the
base frame <- the *metric* NeRF frame: NeRF axes, metres, as ``inerf_node``'s ``world_T_nerf`` and
TF's ``nerf`` frame are defined).

:func:`umeyama` is the closed-form weighted fit (Umeyama 1991). :func:`robust_similarity` draws
minimal triples (RANSAC), keeps the largest consensus, then refits with Cauchy weights (IRLS) so that
a few badly registered frames or a stale TF sample do not tilt the frame. Centres on a line leave the
rotation about the line free: refused (:class:`DegenerateCaptureError`) with what to record instead.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from inerf_ros.config import option


class DegenerateCaptureError(ValueError):
    """The capture cannot determine what is asked of it; the message says what to record again."""


@dataclasses.dataclass
class AlignmentConfig:
    """How the SfM camera centres are fitted to the arm's (gates, iterations, the hand-eye offset)."""

    inlier_m: float = option(0.03, "a camera centre further than this from the fitted similarity's prediction of "
                                   "it is an outlier (metres; the arm's believed chain is good to ~1 cm)",
                             range=(1e-5, 10.0))
    ransac_iterations: int = option(500, "minimal triples drawn for the consensus", range=(1, 1_000_000))
    irls_iterations: int = option(10, "Cauchy-weighted refits of the consensus", range=(0, 1000))
    min_frames: int = option(6, "camera centres needed in the fit (after outliers)", range=(3, 100000))
    min_spread_ratio: float = option(0.05, "the centres' second principal spread must be at least this fraction "
                                           "of the first (else they lie on a line)", range=(0.0, 1.0))
    min_spread_m: float = option(0.05, "... and at least this in metres", range=(0.0, 100.0))
    seed: int = option(0, "random seed of the triples", range=(0, 2 ** 31 - 1))
    fit_hand_eye: bool = option(True, "also fit the camera's offset on the tool flange: a believed hand-eye "
                                      "translation 1 cm off moves every believed camera centre by 1 cm in a "
                                      "direction that turns with the wrist, which biases the scale by ~1 percent on an "
                                      "arc around the table; fitted jointly it is removed (needs the tool frame "
                                      "on TF)")
    hand_eye_prior_m: float = option(0.01, "standard deviation of the believed hand-eye translation (metres): "
                                           "keeps the directions the motion does not determine (rotations "
                                           "about one axis only) at the believed value", range=(1e-4, 10.0))
    hand_eye_iterations: int = option(20, "Gauss-Newton steps of the joint fit (reweighted each step)",
                                      range=(1, 10000))


@dataclasses.dataclass
class Similarity:
    """``dst = scale * rotation @ src + translation`` and how well the centres fit it."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    inliers: np.ndarray
    """(N,) bool: the centres kept in the fit."""
    residuals: np.ndarray
    """(N,) distance of every centre from its fitted position, in dst units (metres)."""

    @property
    def matrix(self) -> np.ndarray:
        """dst_T_src as a 4x4 similarity (scale in the rotation block)."""
        out = np.eye(4)
        out[:3, :3] = self.scale * self.rotation
        out[:3, 3] = self.translation
        return out

    @property
    def rigid(self) -> np.ndarray:
        """dst_T_src_metric: the rotation and translation only (src scaled to dst units first)."""
        out = np.eye(4)
        out[:3, :3] = self.rotation
        out[:3, 3] = self.translation
        return out

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) src points mapped into dst."""
        return self.scale * np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation

    @property
    def rms(self) -> float:
        """Root mean square of the kept centres' residuals (dst units)."""
        return float(np.sqrt(np.mean(self.residuals[self.inliers] ** 2)))


def _check_points(points, name: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite coordinates")
    return array


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
            ) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991), optionally weighted.

    Args:
        src, dst: (N, 3) corresponding points, N >= 3 not all on a line.
        weights: (N,) non-negative weights (default: all 1).
    Returns:
        ``(s, R (3, 3), t (3,))``.
    """
    src, dst = _check_points(src, "src"), _check_points(dst, "dst")
    if len(src) != len(dst) or len(src) < 3:
        raise ValueError(f"umeyama needs >= 3 pairs of points, got {len(src)} and {len(dst)}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(src),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be (N,) finite, non-negative and not all zero")
    w = w / w.sum()
    mu_src, mu_dst = w @ src, w @ dst
    a, b = src - mu_src, dst - mu_dst
    covariance = (b * w[:, None]).T @ a
    u, d, vt = np.linalg.svd(covariance)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection fits best: take the nearest rotation
        sign[2, 2] = -1.0
    rotation = u @ sign @ vt
    variance = float(w @ np.sum(a * a, axis=1))
    if variance <= 1e-300:
        raise DegenerateCaptureError("all source points coincide: no similarity")
    scale = float(np.trace(np.diag(d) @ sign)) / variance
    return scale, rotation, mu_dst - scale * rotation @ mu_src


def check_spread(points: np.ndarray, config: AlignmentConfig, what: str = "camera centres") -> None:
    """Refuse centres on a line (or a point): the similarity's rotation about the line would be free."""
    centred = points - points.mean(0)
    spread = np.linalg.svd(centred, compute_uv=False) / np.sqrt(max(len(points), 1))
    if spread[0] < config.min_spread_m:
        raise DegenerateCaptureError(
            f"the {what} span only {spread[0]:.3f} m: the scale cannot be measured; record the arm moving the "
            f"camera over at least {config.min_spread_m * 4:.1f} m (e.g. an arc around the workspace)")
    if spread[1] < max(config.min_spread_ratio * spread[0], config.min_spread_m):
        raise DegenerateCaptureError(
            f"the {what} lie on a line ({spread[0]:.3f} m along it, {spread[1]:.3f} m across): the rotation "
            "about that line is undetermined; record the arm moving the camera along a curve (e.g. an arc "
            "around the workspace), not a straight line")


def _residuals(src: np.ndarray, dst: np.ndarray, s: float, rotation: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.linalg.norm(s * src @ rotation.T + t - dst, axis=1)


def _triangle_ok(points: np.ndarray, min_area: float) -> bool:
    return 0.5 * np.linalg.norm(np.cross(points[1] - points[0], points[2] - points[0])) > min_area


def _consensus(src: np.ndarray, dst: np.ndarray, config: AlignmentConfig) -> np.ndarray:
    """The inlier mask of the best minimal-triple hypothesis (ties: the smaller residual sum)."""
    rng = np.random.default_rng(config.seed)
    extent = float(np.max(np.ptp(dst, axis=0)))
    min_area = 1e-3 * extent ** 2  # nearly collinear triples give wild rotations
    best, best_cost = np.ones(len(src), bool), np.inf
    for _ in range(config.ransac_iterations):
        pick = rng.choice(len(src), 3, replace=False)
        if not (_triangle_ok(dst[pick], min_area) and _triangle_ok(src[pick], 1e-12)):
            continue
        s, rotation, t = umeyama(src[pick], dst[pick])
        if not (np.isfinite(s) and s > 0):
            continue
        r = _residuals(src, dst, s, rotation, t)
        inliers = r < config.inlier_m
        cost = -inliers.sum() + np.minimum(r, config.inlier_m).sum() / (config.inlier_m * len(src))
        if cost < best_cost:
            best, best_cost = inliers, cost
    return best


def robust_similarity(src, dst, config: AlignmentConfig | None = None) -> Similarity:
    """``dst ~ s R src + t`` robust to outlier pairs: RANSAC over triples, then a Cauchy-weighted refit.

    Args:
        src: (N, 3) SfM camera centres (NeRF units).
        dst: (N, 3) the same cameras' centres in the robot's base frame (metres).
    Raises:
        DegenerateCaptureError: too few centres, centres on a line, or too few consistent ones.
    """
    config = config or AlignmentConfig()
    src, dst = _check_points(src, "SfM camera centres"), _check_points(dst, "arm camera centres")
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} SfM centres but {len(dst)} arm centres")
    if len(src) < config.min_frames:
        raise DegenerateCaptureError(
            f"only {len(src)} images have both an SfM pose and an arm pose; need {config.min_frames}: record "
            "a longer capture (more images with /tf of the arm), with the camera moving over textured surfaces")
    check_spread(dst, config, "arm's camera centres")
    inliers = _consensus(src, dst, config)
    if inliers.sum() < config.min_frames:
        raise DegenerateCaptureError(
            f"only {int(inliers.sum())} of {len(src)} camera centres agree within {config.inlier_m} m on one "
            "similarity: SfM and the arm's TF disagree (a wrong camera frame on TF, images and /tf out of sync?)")
    weights = inliers.astype(np.float64)
    for _ in range(config.irls_iterations):
        s, rotation, t = umeyama(src, dst, weights)
        r = _residuals(src, dst, s, rotation, t)
        inliers = r < config.inlier_m
        if inliers.sum() < 3:
            break
        width = max(float(np.median(r[inliers])) * 2.0, 1e-6)  # Cauchy: a residual of `width` halves the weight
        weights = inliers / (1.0 + (r / width) ** 2)
    s, rotation, t = umeyama(src, dst, weights)
    r = _residuals(src, dst, s, rotation, t)
    inliers = r < config.inlier_m
    check_spread(dst[inliers], config, "arm's camera centres kept in the fit")
    return Similarity(float(s), rotation, t, inliers, r)


@dataclasses.dataclass
class HandEyeFit:
    """The similarity refitted with the camera's translation on the flange, and that translation."""

    similarity: Similarity
    tool_t_cam: np.ndarray
    """(3,) the fitted camera position in the tool frame (metres)."""
    believed_tool_t_cam: np.ndarray

    @property
    def change_m(self) -> float:
        """How far the fitted camera offset is from the believed one (metres)."""
        return float(np.linalg.norm(self.tool_t_cam - self.believed_tool_t_cam))


def _skew(v: np.ndarray) -> np.ndarray:
    """(N, 3) vectors -> (N, 3, 3) cross-product matrices."""
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2], out[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    return out - np.swapaxes(out, -1, -2)


def _gauss_newton_step(src: np.ndarray, scale: float, rotation: np.ndarray, base_T_tool: np.ndarray,
                       weights: np.ndarray, sigma_m: float, prior: np.ndarray, prior_sigma_m: float):
    """One Gauss-Newton step of ``s R c_i + t - R_tool_i t_X = p_tool_i`` in (s, w, t, t_X), with
    ``R = R0 exp([w])`` (``s R0 exp([w]) c ~ s R0 c - s0 R0 [c] w``) and the prior ``t_X ~ prior`` for
    the directions the motion leaves free. Returns ``(s, R, t, t_X)``.
    """
    from scipy.spatial.transform import Rotation  # scipy loads only when a fit runs

    n = len(src)
    root_w = np.sqrt(weights)[:, None, None] / sigma_m
    blocks = np.concatenate([(src @ rotation.T)[:, :, None], -scale * rotation @ _skew(src),
                             np.broadcast_to(np.eye(3), (n, 3, 3)), -base_T_tool[:, :3, :3]], axis=2) * root_w
    rows = np.zeros((3 * n + 3, 10))
    rhs = np.zeros(3 * n + 3)
    rows[:3 * n] = blocks.reshape(3 * n, 10)
    rhs[:3 * n] = (base_T_tool[:, :3, 3] * root_w[:, :, 0]).reshape(-1)
    rows[3 * n:, 7:] = np.eye(3) / prior_sigma_m
    rhs[3 * n:] = prior / prior_sigma_m
    x = np.linalg.lstsq(rows, rhs, rcond=None)[0]
    return float(x[0]), rotation @ Rotation.from_rotvec(x[1:4]).as_matrix(), x[4:7], x[7:10]


def fit_with_hand_eye(src, base_T_tool, tool_T_cam, start: Similarity, config: AlignmentConfig | None = None
                      ) -> HandEyeFit:
    """Refit ``start`` with the camera's translation on the flange free: ``s R c_i + t = base_T_tool_i @ t_X``.

    Args:
        src: (N, 3) SfM camera centres (NeRF units).
        base_T_tool: (N, 4, 4) the believed flange poses at the images' stamps (metres).
        tool_T_cam: (4, 4) the believed hand-eye transform (its translation is the prior of t_X).
        start: the similarity fitted to the believed camera centres (its inliers are kept).
    """
    config = config or AlignmentConfig()
    src = _check_points(src, "SfM camera centres")
    base_T_tool = np.asarray(base_T_tool, dtype=np.float64)
    believed = np.asarray(tool_T_cam, dtype=np.float64)[:3, 3].copy()
    keep = start.inliers
    weights = keep.astype(np.float64)
    sigma = max(float(np.median(start.residuals[keep])), 1e-4)
    s, rotation, t, t_x = start.scale, start.rotation, start.translation, believed.copy()
    for _ in range(config.hand_eye_iterations):
        s, rotation, t, t_x = _gauss_newton_step(src, s, rotation, base_T_tool, weights, sigma, believed,
                                                 config.hand_eye_prior_m)
        dst = base_T_tool[:, :3, 3] + np.einsum("nij,j->ni", base_T_tool[:, :3, :3], t_x)
        r = _residuals(src, dst, s, rotation, t)
        # The centres' own noise (not the believed hand-eye's bias) weighs them against the prior.
        sigma = max(float(np.median(r[keep])), 1e-4)
        weights = keep / (1.0 + (r / (2.0 * sigma)) ** 2)
    if not (np.isfinite(s) and s > 0):
        raise DegenerateCaptureError("the joint fit of scale and hand-eye failed: record wrist rotations about "
                                     "more than one axis, or pass --no-fit-hand-eye")
    dst = base_T_tool[:, :3, 3] + np.einsum("nij,j->ni", base_T_tool[:, :3, :3], t_x)
    r = _residuals(src, dst, s, rotation, t)
    return HandEyeFit(Similarity(s, rotation, t, keep & (r < config.inlier_m), r), t_x, believed)


def rotation_residuals_deg(similarity: Similarity, nerf_T_cams: np.ndarray, base_T_cams: np.ndarray) -> np.ndarray:
    """Per camera, the angle between the SfM orientation carried into the base frame and the arm's (degrees).

    Both poses are optical cameras; a constant offset here is the believed hand-eye rotation's error.
    """
    carried = np.einsum("ij,njk->nik", similarity.rotation, np.asarray(nerf_T_cams)[:, :3, :3])
    relative = np.einsum("nji,njk->nik", carried, np.asarray(base_T_cams)[:, :3, :3])
    cos = np.clip((np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos))
