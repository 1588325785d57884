"""Hand-eye and robot-base calibration from camera pose estimates: ``nerf_T_cam_i = Z @ base_T_tool0_i @ X``.

Given, for N images, the camera pose estimated by iNeRF (``nerf_T_cam_i``, metres) and the flange pose
the robot's kinematics report at the same stamp (``base_T_tool0_i``), solve for the hand-eye transform
``X = tool0_T_cam`` and the robot's base placement ``Z = nerf_T_base`` (the robot-world/hand-eye
problem, "AX = ZB"). ROS-free numpy + scipy.

Why not OpenCV: ``cv2.calibrateRobotWorldHandEye`` / ``cv2.calibrateHandEye`` exist in OpenCV 4.x,
but the 5.0 wheel this project installs does not expose them (checked: ``hasattr`` is False), and
neither rejects outliers, which iNeRF estimates from a wrong PoseCNN prior are. So, in three steps:

1. **Closed form** (Park & Martin 1994, from relative motions). For every pair of frames i < j the
   flange motion ``A = inv(B_i) @ B_j`` and the camera motion ``C = inv(N_i) @ N_j`` obey
   ``A @ X = X @ C``; their rotation vectors obey ``a = R_X @ c``, so ``R_X`` is the Kabsch fit of the
   c's onto the a's, and ``(R_A - I) t_X = R_X t_C - t_A`` is linear in ``t_X``. ``Z`` is then the
   chordal mean of ``N_i @ inv(B_i @ X)``. While the worst frame's residual is far above the median,
   it is dropped and the closed form redone (one gross outlier spoils a 1/N share of all pairs).
2. **Nonlinear refinement** of X and Z together over all frames (Levenberg-Marquardt on the pose
   residual ``inv(N_i) @ Z @ B_i @ X``, rotation weighted by ``rotation_weight_m`` metres per radian),
   alternating with outlier rejection (a frame whose residual exceeds ``outlier_factor`` times the
   median, and ``min_outlier_residual_m``, is left out; a rejected frame that fits again comes back)
   and Cauchy reweighting of the frames kept (iteratively reweighted least squares). Why Cauchy: iNeRF's
   errors are not Gaussian but a core of good estimates plus runs of views biased by 1-1.5 cm, below
   any hard rejection limit; on two demo runs (60 and 100 frames) down-weighting them cut the hand-eye
   error from 1.55 to 1.09 cm and from 0.69 to 0.50 cm; with Huber's weights it was 1.22 and 0.67 cm.
3. **Spread**: the 1-sigma of X and Z from the Gauss-Newton covariance ``s^2 (J^T J)^-1`` and the
   block-jackknife 1-sigma of X from re-solving with each of ``jackknife_blocks`` runs of consecutive
   frames left out in turn. iNeRF's errors are correlated in time (neighbouring views share a bias: on
   the demo bag the approach frames are off by up to 1.5 cm together), which the covariance, assuming
   independent residuals, does not see; leaving out whole runs does.

Degenerate motion is detected before solving: if the flange rotations between frames are all about
one axis (or there is no rotation at all), the rotation of X about that axis and its translation along
it are unobservable; :class:`DegenerateMotionError` says so instead of returning an arbitrary answer.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from inerf_ros.config import option

# A relative rotation this close to 180 degrees has an ill-defined axis sign: such pairs are skipped
# by the closed form (the refinement, which works on whole poses, still uses both frames).
_MAX_PAIR_ANGLE_RAD = math.radians(150.0)
# Reweighting rounds: IRLS settles in 5-15 on the demo bag; the cap only bounds a pathological oscillation.
_MAX_ROUNDS = 50
_WEIGHT_TOLERANCE = 1e-4


class CalibrationError(ValueError):
    """The data cannot give a calibration (too few frames, non-finite input)."""


class DegenerateMotionError(CalibrationError):
    """The flange rotations do not span two axes: part of the hand-eye transform is unobservable."""


@dataclasses.dataclass
class CalibrationConfig:
    """How the hand-eye / base calibration weighs, rejects and checks."""

    rotation_weight_m: float = option(0.5, "metres one radian of rotation residual counts as (0.5: 1 deg ~ 8.7 mm)",
                                      range=(1e-6, 1e3))
    outlier_factor: float = option(4.0, "reject a frame whose residual exceeds this many times the median residual",
                                   range=(1.0, 1e6))
    min_outlier_residual_m: float = option(0.01, "never reject a frame whose (weighted) residual is below this (m)",
                                           range=(0.0, 1e3))
    cauchy_scale: float = option(1.0, "robust weighting: each kept frame counts 1 / (1 + (r / c)^2) with c this "
                                      "many times the median residual r (0: plain least squares)",
                                 range=(0.0, 1e6))
    min_frames: int = option(4, "fewest frames (after outlier rejection) a calibration accepts", range=(3, 10 ** 6))
    min_second_axis_deg: float = option(2.0, "degenerate-motion check: RMS flange rotation about the second "
                                             "principal axis over all frame pairs must reach this (deg)",
                                        range=(0.0, 180.0))
    jackknife_blocks: int = option(10, "block jackknife: re-solve with each of this many runs of consecutive "
                                       "frames left out (0: skip; more blocks than frames: leave-one-out)",
                                   range=(0, 10 ** 6))


@dataclasses.dataclass
class HandEyeResult:
    """The calibration, its residuals and its spread."""

    tool0_T_cam: np.ndarray
    """(4, 4) X: the camera (the frame the estimates are of) in the flange frame, metres."""
    nerf_T_base: np.ndarray
    """(4, 4) Z: the robot's base in the NeRF frame (metric), metres."""
    inliers: np.ndarray
    """(N,) bool: frames used by the final solution (False: rejected as outliers)."""
    residual_translation_m: np.ndarray
    """(N,) distance between the estimated camera and ``Z @ B_i @ X``, every frame (rejected ones too)."""
    residual_rotation_deg: np.ndarray
    """(N,) angle between them."""
    sigma_tool0_T_cam: tuple[float, float]
    """1-sigma (translation m, rotation deg) of X from the Gauss-Newton covariance (norm over the 3 axes)."""
    sigma_nerf_T_base: tuple[float, float]
    """Same for Z."""
    jackknife_tool0_T_cam: tuple[float, float] | None
    """Block-jackknife 1-sigma (translation m, rotation deg) of X; None if not run."""
    second_axis_deg: float
    """RMS flange rotation about the second principal axis over all frame pairs (the degeneracy measure)."""
    weakest_direction_tool0: np.ndarray = dataclasses.field(default_factory=lambda: np.full(3, np.nan))
    """(3,) unit direction, in the tool0 frame, along which X's translation is least determined (the axis
    the flange mostly turned about, when one dominates)."""
    sigma_along_weakest_m: float = float("nan")
    """1-sigma of X's translation along that direction (from the covariance)."""
    closed_form_rejected: list[int] = dataclasses.field(default_factory=list)
    """Frames dropped by the closed form's outlier loop (indices into the input)."""

    def to_dict(self) -> dict:
        """The result as JSON-ready values (poses as nested lists, metres and degrees)."""
        return {
            "tool0_T_cam": self.tool0_T_cam.tolist(), "nerf_T_base": self.nerf_T_base.tolist(),
            "inliers": [bool(v) for v in self.inliers],
            "residual_translation_m": [float(v) for v in self.residual_translation_m],
            "residual_rotation_deg": [float(v) for v in self.residual_rotation_deg],
            "sigma_tool0_T_cam": {"translation_m": self.sigma_tool0_T_cam[0],
                                  "rotation_deg": self.sigma_tool0_T_cam[1]},
            "sigma_nerf_T_base": {"translation_m": self.sigma_nerf_T_base[0],
                                  "rotation_deg": self.sigma_nerf_T_base[1]},
            "jackknife_tool0_T_cam": None if self.jackknife_tool0_T_cam is None else {
                "translation_m": self.jackknife_tool0_T_cam[0],
                "rotation_deg": self.jackknife_tool0_T_cam[1]},
            "second_axis_deg": self.second_axis_deg,
            "weakest_direction_tool0": [float(v) for v in self.weakest_direction_tool0],
            "sigma_along_weakest_m": self.sigma_along_weakest_m,
        }


# ---------------------------------------------------------------------------------------------
# Small SE(3) helpers (numpy float64)


def _inv(a_T_b: np.ndarray) -> np.ndarray:
    """Inverse of rigid 4x4 poses (..., 4, 4)."""
    out = np.zeros_like(a_T_b)
    rotation_t = np.swapaxes(a_T_b[..., :3, :3], -1, -2)
    out[..., :3, :3] = rotation_t
    out[..., :3, 3] = -(rotation_t @ a_T_b[..., :3, 3:])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def _project_rotation(matrix: np.ndarray) -> np.ndarray:
    """Nearest rotation (Frobenius) to a 3x3 matrix."""
    u, _, vt = np.linalg.svd(matrix)
    return u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt


def pose_difference(a_T_x: np.ndarray, a_T_y: np.ndarray) -> tuple[float, float]:
    """(translation m, rotation deg) between two poses of the same frame."""
    translation = float(np.linalg.norm(a_T_x[:3, 3] - a_T_y[:3, 3]))
    return translation, float(np.degrees(np.linalg.norm(Rotation.from_matrix(a_T_x[:3, :3].T @ a_T_y[:3, :3])
                                                        .as_rotvec())))


def _check_poses(poses, name: str) -> np.ndarray:
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise CalibrationError(f"{name} must be (N, 4, 4) poses, got shape {poses.shape}")
    if not np.isfinite(poses).all():
        raise CalibrationError(f"{name} contains NaN or infinite values")
    gram = np.swapaxes(poses[:, :3, :3], 1, 2) @ poses[:, :3, :3]
    if np.abs(gram - np.eye(3)).max() > 1e-5:
        raise CalibrationError(f"{name}: a rotation block is not orthonormal")
    return poses


# ---------------------------------------------------------------------------------------------
# Step 0 and 1: degeneracy check and closed form


def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, k=1)
    return i, j


def second_axis_deg(base_T_tool0: np.ndarray) -> float:
    """RMS flange rotation (deg) about the second principal axis of all pairwise rotation vectors.

    Zero when every relative rotation is about one axis of the flange frame (or there is none):
    then X's rotation about that axis and translation along it cannot be recovered.
    """
    i, j = _pairs(len(base_T_tool0))
    if len(i) == 0:
        return 0.0
    relative = np.swapaxes(base_T_tool0[i, :3, :3], 1, 2) @ base_T_tool0[j, :3, :3]
    vectors = Rotation.from_matrix(relative).as_rotvec()
    eigenvalues = np.linalg.eigvalsh(vectors.T @ vectors / len(vectors))  # ascending
    return float(np.degrees(math.sqrt(max(eigenvalues[1], 0.0))))


def closed_form(nerf_T_cam: np.ndarray, base_T_tool0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X = tool0_T_cam, Z = nerf_T_base) from all frame pairs (Park & Martin); exact on noise-free data."""
    i, j = _pairs(len(nerf_T_cam))
    flange = _inv(base_T_tool0[i]) @ base_T_tool0[j]   # tool0_i_T_tool0_j
    camera = _inv(nerf_T_cam[i]) @ nerf_T_cam[j]       # cam_i_T_cam_j
    a = Rotation.from_matrix(flange[:, :3, :3]).as_rotvec()
    c = Rotation.from_matrix(camera[:, :3, :3]).as_rotvec()
    keep = (np.linalg.norm(a, axis=1) < _MAX_PAIR_ANGLE_RAD) & (np.linalg.norm(c, axis=1) < _MAX_PAIR_ANGLE_RAD)
    if keep.sum() < 2:
        raise DegenerateMotionError("fewer than two frame pairs with a usable rotation (all under 150 deg)")
    # Kabsch: R_X maximises sum a_k . (R_X c_k).
    rotation = _project_rotation(a[keep].T @ c[keep])
    lhs = (flange[keep, :3, :3] - np.eye(3)).reshape(-1, 3)
    rhs = ((rotation @ camera[keep, :3, 3:])[..., 0] - flange[keep, :3, 3]).reshape(-1)
    translation = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    tool0_T_cam = np.eye(4)
    tool0_T_cam[:3, :3], tool0_T_cam[:3, 3] = rotation, translation
    per_frame = nerf_T_cam @ _inv(base_T_tool0 @ tool0_T_cam)   # each frame's nerf_T_base
    nerf_T_base = np.eye(4)
    nerf_T_base[:3, :3] = _project_rotation(per_frame[:, :3, :3].sum(axis=0))
    nerf_T_base[:3, 3] = per_frame[:, :3, 3].mean(axis=0)
    return tool0_T_cam, nerf_T_base


def residuals(nerf_T_cam: np.ndarray, base_T_tool0: np.ndarray, tool0_T_cam: np.ndarray,
              nerf_T_base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame (translation m, rotation deg) between ``nerf_T_cam_i`` and ``Z @ B_i @ X``."""
    error = _inv(nerf_T_cam) @ nerf_T_base @ base_T_tool0 @ tool0_T_cam
    translation = np.linalg.norm(error[:, :3, 3], axis=1)
    rotation = np.degrees(np.linalg.norm(Rotation.from_matrix(error[:, :3, :3]).as_rotvec(), axis=1))
    return translation, rotation


def _weighted(translation_m: np.ndarray, rotation_deg: np.ndarray, config: CalibrationConfig) -> np.ndarray:
    return np.hypot(translation_m, np.radians(rotation_deg) * config.rotation_weight_m)


def _outlier_limit(weighted: np.ndarray, config: CalibrationConfig) -> float:
    return max(config.outlier_factor * float(np.median(weighted)), config.min_outlier_residual_m)


# ---------------------------------------------------------------------------------------------
# Step 2: nonlinear refinement


def _unpack(params: np.ndarray, tool0_T_cam0: np.ndarray, nerf_T_base0: np.ndarray):
    """X and Z moved by the 12 parameters (rotation vectors right-multiplied, translations added)."""
    tool0_T_cam, nerf_T_base = tool0_T_cam0.copy(), nerf_T_base0.copy()
    tool0_T_cam[:3, :3] = tool0_T_cam0[:3, :3] @ Rotation.from_rotvec(params[0:3]).as_matrix()
    tool0_T_cam[:3, 3] += params[3:6]
    nerf_T_base[:3, :3] = nerf_T_base0[:3, :3] @ Rotation.from_rotvec(params[6:9]).as_matrix()
    nerf_T_base[:3, 3] += params[9:12]
    return tool0_T_cam, nerf_T_base


def refine(nerf_T_cam: np.ndarray, base_T_tool0: np.ndarray, tool0_T_cam: np.ndarray, nerf_T_base: np.ndarray,
           config: CalibrationConfig, weights: np.ndarray | None = None):
    """Least-squares X, Z over the given frames (each frame's residual times sqrt(weight), (N,));
    returns (X, Z, least_squares result).
    """
    inv_cam = _inv(nerf_T_cam)
    root_weights = np.ones((len(nerf_T_cam), 1)) if weights is None else np.sqrt(weights)[:, None]

    def fun(params):
        x, z = _unpack(params, tool0_T_cam, nerf_T_base)
        error = inv_cam @ z @ base_T_tool0 @ x
        rotation = Rotation.from_matrix(error[:, :3, :3]).as_rotvec() * config.rotation_weight_m
        return (np.concatenate([rotation, error[:, :3, 3]], axis=1) * root_weights).reshape(-1)

    result = least_squares(fun, np.zeros(12), method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=2000)
    x, z = _unpack(result.x, tool0_T_cam, nerf_T_base)
    return x, z, result


def _covariance(result, n_residuals: int) -> np.ndarray:
    """(12, 12) covariance s^2 (J^T J)^-1 of the parameters (X rotation, X translation, Z rotation, Z translation)."""
    dof = n_residuals - 12
    s2 = float(result.fun @ result.fun) / dof if dof > 0 else float("nan")
    return s2 * np.linalg.pinv(result.jac.T @ result.jac)


def _sigma(covariance: np.ndarray, offset: int) -> tuple[float, float]:
    """1-sigma (translation m, rotation deg) of X (offset 0) or Z (offset 6): root of the summed variances."""
    variances = np.diag(covariance)
    rotation = math.degrees(math.sqrt(max(variances[offset:offset + 3].sum(), 0.0)))
    translation = math.sqrt(max(variances[offset + 3:offset + 6].sum(), 0.0))
    return translation, rotation


def _cauchy_weights(weighted: np.ndarray, inliers: np.ndarray, config: CalibrationConfig) -> np.ndarray:
    """Per-frame IRLS weights 1 / (1 + (r / c)^2), c = cauchy_scale * median inlier residual."""
    if config.cauchy_scale == 0:
        return np.ones_like(weighted)
    # The floor keeps noise-free data (every residual ~1e-16 m) at weight 1 instead of dividing by zero.
    scale = max(config.cauchy_scale * float(np.median(weighted[inliers])), 1e-9)
    return 1.0 / (1.0 + (weighted / scale) ** 2)


# ---------------------------------------------------------------------------------------------
# All steps


def calibrate(nerf_T_cam, base_T_tool0, config: CalibrationConfig | None = None) -> HandEyeResult:
    """Solve ``nerf_T_cam_i = Z @ base_T_tool0_i @ X`` robustly; see the module docstring.

    Args:
        nerf_T_cam: (N, 4, 4) estimated camera poses in the (metric) NeRF frame, metres.
        base_T_tool0: (N, 4, 4) flange poses from the robot's kinematics at the same stamps, metres.

    Raises:
        CalibrationError: too few frames (before or after outlier rejection), NaNs, non-rigid input.
        DegenerateMotionError: the flange rotations do not span two axes.
    """
    config = config or CalibrationConfig()
    nerf_T_cam = _check_poses(nerf_T_cam, "nerf_T_cam")
    base_T_tool0 = _check_poses(base_T_tool0, "base_T_tool0")
    n = len(nerf_T_cam)
    if len(base_T_tool0) != n:
        raise CalibrationError(f"{n} camera poses but {len(base_T_tool0)} flange poses")
    if n < config.min_frames:
        raise CalibrationError(f"{n} frames; a calibration needs at least {config.min_frames}")
    spread = second_axis_deg(base_T_tool0)
    if spread < config.min_second_axis_deg:
        raise DegenerateMotionError(
            f"degenerate motion: the flange rotates about one axis only (RMS {spread:.3g} deg about a second axis, "
            f"need {config.min_second_axis_deg:g}); move the wrist about two different axes")

    # Step 1: closed form, dropping the worst frame while it is far off the others.
    inliers = np.ones(n, dtype=bool)
    dropped: list[int] = []
    while True:
        x, z = closed_form(nerf_T_cam[inliers], base_T_tool0[inliers])
        weighted = _weighted(*residuals(nerf_T_cam, base_T_tool0, x, z), config)
        candidates = np.where(inliers)[0]
        worst = candidates[np.argmax(weighted[candidates])]
        if weighted[worst] <= _outlier_limit(weighted[inliers], config) or inliers.sum() <= config.min_frames:
            break
        inliers[worst] = False
        dropped.append(int(worst))

    # Step 2: refine, re-select and reweight until neither the inlier set nor the weights change.
    weights = np.ones(n)
    for _ in range(_MAX_ROUNDS):
        x, z, result = refine(nerf_T_cam[inliers], base_T_tool0[inliers], x, z, config, weights[inliers])
        weighted = _weighted(*residuals(nerf_T_cam, base_T_tool0, x, z), config)
        updated = weighted <= _outlier_limit(weighted[inliers], config)
        if updated.sum() < config.min_frames:
            break
        new_weights = _cauchy_weights(weighted, updated, config)
        if np.array_equal(updated, inliers) and np.abs(new_weights - weights).max() < _WEIGHT_TOLERANCE:
            break
        inliers, weights = updated, new_weights
    if inliers.sum() < config.min_frames:
        raise CalibrationError(f"only {int(inliers.sum())} frames agree with each other; need {config.min_frames}")
    if second_axis_deg(base_T_tool0[inliers]) < config.min_second_axis_deg:
        raise DegenerateMotionError("degenerate motion: the frames left after outlier rejection rotate about one "
                                    "axis only")

    covariance = _covariance(result, 6 * int(inliers.sum()))
    # X's translation parameters are tool0-frame coordinates: the covariance block's largest eigenvector is the
    # direction the data pins down least (on an arm circling about one axis: that axis, see the module doc).
    eigenvalues, eigenvectors = np.linalg.eigh(covariance[3:6, 3:6])
    weakest = eigenvectors[:, -1] * (1.0 if eigenvectors[np.argmax(np.abs(eigenvectors[:, -1])), -1] > 0 else -1.0)
    jackknife = None
    blocks = min(config.jackknife_blocks, int(inliers.sum()))
    if blocks >= 2 and inliers.sum() - math.ceil(inliers.sum() / blocks) >= config.min_frames:
        changes = []  # per left-out block: (rotation vector, translation) of X's change, in the tool0 frame
        for block in np.array_split(np.where(inliers)[0], blocks):  # input order: runs of consecutive frames
            subset = inliers.copy()
            subset[block] = False
            x_k, _, _ = refine(nerf_T_cam[subset], base_T_tool0[subset], x, z, config, weights[subset])
            changes.append(np.concatenate([Rotation.from_matrix(x[:3, :3].T @ x_k[:3, :3]).as_rotvec(),
                                           x_k[:3, 3] - x[:3, 3]]))
        changes = np.array(changes)
        m = len(changes)
        variance = (m - 1) / m * ((changes - changes.mean(axis=0)) ** 2).sum(axis=0)  # jackknife, per component
        jackknife = (math.sqrt(variance[3:].sum()), math.degrees(math.sqrt(variance[:3].sum())))
    translation, rotation = residuals(nerf_T_cam, base_T_tool0, x, z)
    return HandEyeResult(x, z, inliers, translation, rotation, _sigma(covariance, 0), _sigma(covariance, 6),
                         jackknife, spread, closed_form_rejected=dropped, weakest_direction_tool0=weakest,
                         sigma_along_weakest_m=math.sqrt(max(eigenvalues[-1], 0.0)))
