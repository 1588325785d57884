"""Camera prior from object detections: ``nerf_T_cam = nerf_T_obj @ inv(cam_T_obj)`` (ROS-free core).

Each detection of an object class whose pose in the NeRF frame is known gives one hypothesis of
the camera pose; gated hypotheses are fused into one prior with a covariance. "No prior" is a
normal outcome (``Prior.status == "no_prior"`` with a reason), never an exception.

Frames and units
----------------
* ``cam_T_obj`` (from the detector): the object's model frame in the ROS optical camera frame
  (x right, y down, z forward), translation in **metres**.
* ``nerf_T_obj`` (from the config): the object's model frame in the NeRF frame, in **NeRF units**.
* ``Prior.nerf_T_cam``: the ROS optical camera frame in the NeRF frame, in NeRF units
  (metres / ``metres_per_unit``). Convert to the NeRF's OpenGL camera with
  :func:`inerf_ros.frames.optical_to_opengl`.
* ``Prior.covariance``: 6x6 over ``[x y z rx ry rz]`` as in ``geometry_msgs/PoseWithCovariance``:
  translation in NeRF units, rotation as a small rotation about the fixed NeRF axes, radians
  (``nerf_R_cam = exp([rx ry rz]) @ mean``).

Modes
-----
* ``full`` (seed 003, assumption 1): the full 6-DoF pose of the object in the NeRF frame is known.
  Each detection gives ``nerf_T_cam = nerf_T_obj @ inv(cam_T_obj)`` exactly.
* ``distance_only`` (seed 003, assumption 2): only the object's *position* ``p`` in the NeRF frame
  is known. The detector's translation gives the distance ``|r|`` and the bearing ``r / |r|`` of the
  object in the camera. The missing information comes from a camera hint ``nerf_T_cam_hint`` (the
  previous estimate, odometry, or the static ``camera_hint`` of the config): the camera is placed on
  the sphere of radius ``|r|`` around ``p``, in the direction of the hint's camera centre, and the
  hint's orientation is rotated by the smallest rotation that makes the object appear at the
  detected bearing. With an exact hint direction, the result is exact whatever the hint's distance;
  the object's own orientation estimate is not used at all.

Fusion
------
1. Gating: non-finite or non-rigid poses, objects behind the camera, unknown classes, scores below
   ``min_score`` and visible fractions below ``min_visible_fraction`` are rejected (with reasons).
2. Consensus: every hypothesis is scored by the total detection score of the hypotheses that agree
   with it (rotation within ``inlier_rotation_deg`` and camera centre within ``inlier_translation_m``);
   the best-supported one seeds the inlier set and the others are rejected as outliers.
3. ``average``: robust averaging of the inliers, weighted by score: rotation by the geodesic L1
   mean on SO(3) (Weiszfeld iterations on the tangent space), camera centre by the geometric
   median. Covariance: the weighted spread of the inliers about the mean, plus a floor
   (``min_sigma_*``); a single hypothesis gets ``single_sigma_*``.
4. ``alignment`` (``auto`` tries it first and falls back to ``average``): the camera pose that
   maps the *detected positions* of the objects onto their known positions (weighted Kabsch inside
   a RANSAC over triplets of detections, inliers within ``alignment_inlier_m``; 3 inliers spread
   in two directions needed). It does not use the detected rotations (the weakest part of
   PoseCNN) and works in both modes; symmetric objects take part. Covariance from the fit
   residuals (plus the floor).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from inerf_ros import config as config_tools

MODES = ("full", "distance_only")
FUSIONS = ("auto", "average", "alignment", "bearings")


@dataclasses.dataclass
class InitializerConfig:
    """Camera prior from object poses (see :mod:`inerf_ros.initializer` for frames and units)."""

    mode: str = config_tools.option("full", "full: object 6-DoF poses in the NeRF frame are known; distance_only: "
                                    "only their positions (needs a camera hint)", choices=MODES)
    metres_per_unit: float = config_tools.option(1.0, "metres per NeRF unit (detections are in metres)",
                                                 range=(1e-9, 1e9))
    object_poses: list = config_tools.option(
        [], "known objects in the NeRF frame, NeRF units: 'class_name x y z [qx qy qz qw]' per entry "
        "(a YAML mapping class_name: [x, y, z, qx, qy, qz, qw], or make-scene's objects.yaml entries, work too)")
    symmetric_classes: list = config_tools.option(
        [], "classes symmetric about their z axis (continuous_z): in full mode their detected rotation is not "
        "used; their positions join the alignment fusion when they agree with the consensus")
    camera_hint: list = config_tools.option(
        [], "distance_only: static camera hint nerf_T_cam as [x, y, z, qx, qy, qz, qw] (NeRF units, ROS optical "
        "camera); a hint passed to estimate() takes precedence")
    min_score: float = config_tools.option(0.3, "detections with a lower score are ignored", range=(0.0, 1.0))
    min_visible_fraction: float = config_tools.option(
        0.1, "detections whose visible fraction is known and lower are ignored", range=(0.0, 1.0))
    max_object_distance_m: float = config_tools.option(
        100.0, "detections farther than this from the camera are ignored (metres): a detector fed an absurd "
        "camera_info reports objects at 1e297 m, which no solver survives", range=(1e-6, 1e9))
    max_detections: int = config_tools.option(
        32, "only the best-scored this many detections that pass the gates are fused: the consensus compares "
        "every pair and the solvers draw subsets, so a flood of detections must not grow without bound",
        range=(1, 10000))
    inlier_rotation_deg: float = config_tools.option(
        20.0, "hypotheses whose camera rotations differ by more than this disagree (degrees)", range=(0.0, 180.0))
    inlier_translation_m: float = config_tools.option(
        0.15, "hypotheses whose camera centres differ by more than this disagree (metres)", range=(0.0, 1e6))
    fusion: str = config_tools.option(
        "auto", "average: robust mean of the per-detection camera poses; alignment: camera pose that best maps "
        "the detected object positions onto the known ones (Kabsch; ignores detected rotations; needs 3 spread "
        "objects); bearings: PnP on the directions of the detected object centres (ignores detected depths and "
        "rotations: a detector's depth fails first with distance; needs 4 objects); auto: bearings, else "
        "alignment, else average, whichever is possible first", choices=FUSIONS)
    bearing_inlier_deg: float = config_tools.option(
        2.0, "bearings: an object is an inlier when the fitted camera sees its centre within this angle of "
        "where it was detected (degrees)", range=(0.01, 90.0))
    joint_range_sigma: float = config_tools.option(
        0.05, "bearings: the camera found from the directions is then refined on the detected distances too, "
        "with this relative standard deviation (0.05: 5 % of the distance; 0: directions only), up to a common "
        "scale fitted with it (a detector's distances are often all biased alike). The directions of nearly "
        "coplanar objects seen from afar leave rotation and translation trading off against each other; "
        "relative distances and rotations settle that", range=(0.0, 1e6))
    joint_rotation_sigma_deg: float = config_tools.option(
        10.0, "bearings: standard deviation of the detected rotations of asymmetric objects in that refinement "
        "(degrees; 0: not used)", range=(0.0, 180.0))
    joint_bearing_sigma_deg: float = config_tools.option(
        0.5, "bearings: standard deviation of the detected directions in that refinement (degrees)",
        range=(1e-6, 90.0))
    alignment_min_spread_m: float = config_tools.option(
        0.05, "alignment needs the objects to spread at least this much in two directions (metres)",
        range=(0.0, 1e6))
    alignment_inlier_m: float = config_tools.option(
        0.05, "alignment: an object is an inlier when its detected position is within this of where the "
        "aligned camera sees it (metres)", range=(0.0, 1e6))
    robust_iterations: int = config_tools.option(20, "Weiszfeld iterations of the robust means", range=(0, 1000))
    min_sigma_translation_m: float = config_tools.option(
        0.01, "floor of the translation standard deviation (metres)", range=(0.0, 1e6))
    min_sigma_rotation_deg: float = config_tools.option(
        1.0, "floor of the rotation standard deviation (degrees)", range=(0.0, 180.0))
    single_sigma_translation_m: float = config_tools.option(
        0.05, "translation standard deviation of a prior from one detection (metres)", range=(0.0, 1e6))
    single_sigma_rotation_deg: float = config_tools.option(
        5.0, "rotation standard deviation of a prior from one detection (degrees)", range=(0.0, 180.0))

    def __post_init__(self) -> None:
        if isinstance(self.object_poses, dict):  # YAML mapping -> the flat, ROS-parameter-friendly form
            self.object_poses = [
                f"{name} " + " ".join(repr(float(v)) for v in _as_list(values, f"object_poses[{name!r}]"))
                for name, values in self.object_poses.items()]
        self.object_poses = list(self.object_poses)
        self.camera_hint = [float(v) for v in self.camera_hint]

    def check(self) -> None:
        """Called by :func:`inerf_ros.config.validate`: parse the object table and the hint."""
        self.nerf_T_objects()
        if self.camera_hint:
            pose_from_list(self.camera_hint, "camera_hint")

    def nerf_T_objects(self) -> dict[str, np.ndarray]:
        """{class_name: nerf_T_obj 4x4}; position-only entries get an identity rotation (flagged in
        :meth:`positions_only`)."""
        table = {}
        for entry in self.object_poses:
            parts = str(entry).split()
            if len(parts) not in (4, 8):
                raise ValueError(f"object_poses entry {entry!r}: expected 'class_name x y z [qx qy qz qw]'")
            name = parts[0]
            try:
                values = [float(v) for v in parts[1:]]
            except ValueError:
                raise ValueError(f"object_poses entry {entry!r}: the numbers do not parse") from None
            if name in table:
                raise ValueError(f"object_poses: class {name!r} is listed twice")
            table[name] = pose_from_list(values, f"object_poses[{name!r}]")
        return table

    def positions_only(self) -> set[str]:
        return {str(e).split()[0] for e in self.object_poses if len(str(e).split()) == 4}


def _as_list(values: Any, name: str) -> list:
    if isinstance(values, dict):  # make-scene's objects.yaml entry, or {position, quaternion_xyzw}
        if "nerf_T_obj" in values:
            matrix = np.asarray(values["nerf_T_obj"], dtype=np.float64)
            if matrix.shape != (4, 4):
                raise ValueError(f"{name}: nerf_T_obj must be 4x4, got shape {matrix.shape}")
            return list(matrix[:3, 3]) + list(Rotation.from_matrix(matrix[:3, :3]).as_quat())
        quaternion = values.get("quaternion_xyzw", values.get("orientation_xyzw", []))
        values = list(values.get("position", [])) + list(quaternion)
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{name}: expected a list [x, y, z, (qx, qy, qz, qw)], got {values!r}")
    return list(values)


def pose_from_list(values: Sequence[float], name: str) -> np.ndarray:
    """4x4 pose from [x, y, z] or [x, y, z, qx, qy, qz, qw] (quaternion normalised, ROS order)."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape not in ((3,), (7,)) or not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: expected 3 or 7 finite numbers [x y z (qx qy qz qw)], got {values.tolist()}")
    pose = np.eye(4)
    pose[:3, 3] = values[:3]
    if values.shape == (7,):
        quat = values[3:]
        if np.linalg.norm(quat) < 1e-9:
            raise ValueError(f"{name}: the quaternion has zero length")
        pose[:3, :3] = Rotation.from_quat(quat / np.linalg.norm(quat)).as_matrix()
    return pose


@dataclasses.dataclass
class Prior:
    """The fused camera prior, or the reason there is none.

    ``nerf_T_cam`` and ``covariance`` are None when ``status == "no_prior"``. ``used`` holds the
    indices (into the detections passed to :meth:`CameraPriorEstimator.estimate`) of the inliers
    that were fused; ``rejected`` maps the other indices to a reason.
    """

    status: str
    reason: str
    nerf_T_cam: Optional[np.ndarray] = None
    covariance: Optional[np.ndarray] = None
    used: list[int] = dataclasses.field(default_factory=list)
    rejected: dict[int, str] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _attr(detection: Any, name: str, default: Any = None) -> Any:
    if isinstance(detection, dict):
        return detection.get(name, default)
    return getattr(detection, name, default)


def _score_key(score: Any) -> float:
    try:
        value = float(score)
    except (TypeError, ValueError):
        return -math.inf
    return value if math.isfinite(value) else -math.inf


def _rigid_problem(pose: np.ndarray) -> Optional[str]:
    """Why ``pose`` is not a finite rigid 4x4 transform, or None."""
    if pose.shape != (4, 4):
        return f"cam_T_obj has shape {pose.shape}, expected (4, 4)"
    if not np.all(np.isfinite(pose)):
        return "cam_T_obj contains NaN or infinite values"
    rotation = pose[:3, :3]
    if not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-3) or np.linalg.det(rotation) < 0:
        return "cam_T_obj rotation is not a proper rotation matrix"
    if not np.allclose(pose[3], [0, 0, 0, 1], atol=1e-6):
        return "cam_T_obj last row is not [0 0 0 1]"
    return None


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


class CameraPriorEstimator:
    """Fuses object detections into a camera prior in the NeRF frame.

    >>> estimator = CameraPriorEstimator(InitializerConfig(object_poses=["mug 0 0 0 0 0 0 1"]))
    >>> prior = estimator.estimate([])
    >>> prior.status, prior.reason
    ('no_prior', 'no detections')
    """

    def __init__(self, config: InitializerConfig) -> None:
        config_tools.validate(config)
        self.config = config
        self._nerf_T_obj = config.nerf_T_objects()
        self._positions_only = config.positions_only()
        self._symmetric = set(config.symmetric_classes)
        self._static_hint = pose_from_list(config.camera_hint, "camera_hint") if config.camera_hint else None

    def hypotheses(self, detections: Sequence[Any], nerf_T_cam_hint: Optional[np.ndarray] = None
                   ) -> tuple[dict[int, np.ndarray], dict[int, str], dict[int, np.ndarray]]:
        """Per-detection camera hypotheses ({index: nerf_T_cam}), rejections ({index: reason}) and, in
        full mode, the detected positions (NeRF units, camera frame) of symmetric objects ({index: r_cam})."""
        cfg = self.config
        hint = self._static_hint if nerf_T_cam_hint is None else np.asarray(nerf_T_cam_hint, dtype=np.float64)
        out, rejected, positions = {}, {}, {}
        # Best scores first, so that max_detections keeps the best ones.
        for index in sorted(range(len(detections)), key=lambda i: -_score_key(_attr(detections[i], "score"))):
            detection = detections[index]
            name = _attr(detection, "class_name")
            score = _attr(detection, "score")
            visible = _attr(detection, "visible_fraction")
            cam_T_obj = np.asarray(_attr(detection, "cam_T_obj"), dtype=np.float64)
            problem = _rigid_problem(cam_T_obj)
            if problem is None and (score is None or not math.isfinite(float(score))):
                problem = f"score is {score!r}"
            if problem is None and cam_T_obj[2, 3] <= 0:
                problem = f"object is behind the camera (z = {cam_T_obj[2, 3]:.3f} m)"
            if problem is None and np.linalg.norm(cam_T_obj[:3, 3]) > cfg.max_object_distance_m:
                problem = (f"object is {np.linalg.norm(cam_T_obj[:3, 3]):.3g} m away "
                           f"(max_object_distance_m {cfg.max_object_distance_m:g})")
            if problem is None and name not in self._nerf_T_obj:
                problem = f"class {name!r} has no known pose in the NeRF frame"
            if problem is None and cfg.mode == "full" and name in self._positions_only:
                problem = f"class {name!r} has only a position in the NeRF frame (full mode needs its orientation)"
            if problem is None and float(score) < cfg.min_score:
                problem = f"score {float(score):.3f} < min_score {cfg.min_score}"
            if problem is None and visible is not None and float(visible) < cfg.min_visible_fraction:
                problem = f"visible fraction {float(visible):.3f} < min_visible_fraction {cfg.min_visible_fraction}"
            if problem is None and cfg.mode == "distance_only" and hint is None:
                problem = "distance_only mode needs a camera hint (estimate(..., nerf_T_cam_hint=) or camera_hint)"
            if problem is None and len(out) + len(positions) >= cfg.max_detections:
                problem = f"more than max_detections = {cfg.max_detections} detections passed the gates"
            if problem is not None:
                rejected[index] = problem
                continue
            cam_T_obj_nerf = cam_T_obj.copy()
            cam_T_obj_nerf[:3, 3] /= cfg.metres_per_unit
            nerf_T_obj = self._nerf_T_obj[name]
            if cfg.mode == "full" and name in self._symmetric:
                positions[index] = cam_T_obj_nerf[:3, 3]
            elif cfg.mode == "full":
                out[index] = nerf_T_obj @ _invert(cam_T_obj_nerf)
            else:
                out[index] = _distance_only(nerf_T_obj[:3, 3], cam_T_obj_nerf[:3, 3], hint)
        return out, rejected, positions

    def estimate(self, detections: Sequence[Any], nerf_T_cam_hint: Optional[np.ndarray] = None) -> Prior:
        """Fuse ``detections`` (objects with class_name, score, cam_T_obj, optional visible_fraction,
        or dicts with those keys) into a :class:`Prior`. ``nerf_T_cam_hint`` (4x4, NeRF units, ROS
        optical camera) is used by the distance_only mode only."""
        cfg = self.config
        if len(detections) == 0:
            return Prior("no_prior", "no detections")
        hypotheses, rejected, positions = self.hypotheses(detections, nerf_T_cam_hint)
        rejected = dict(sorted(rejected.items()))
        if not hypotheses:
            for i in positions:
                rejected[i] = "symmetric object: its rotation cannot give the camera's (needs an asymmetric one)"
            reasons = "; ".join(f"#{i}: {r}" for i, r in sorted(rejected.items()))
            return Prior("no_prior", f"no detection passed the gates ({reasons})", rejected=rejected)
        candidates = sorted(list(hypotheses) + list(positions))
        if cfg.fusion in ("auto", "bearings"):
            fitted = self._bearing_pnp(detections, candidates, hypotheses)
            if fitted is not None:
                nerf_T_cam, covariance, used = fitted
                for i in candidates:
                    if i not in used:
                        rejected[i] = "outlier: its direction disagrees with the camera fitted to the others"
                reason = f"fused {len(used)} of {len(detections)} detections ({cfg.mode}, bearings)"
                return Prior("ok", reason, nerf_T_cam, covariance, used, rejected)
            if cfg.fusion == "bearings":
                return Prior("no_prior", "bearings need 4 or more objects whose directions agree", rejected=rejected)
        if cfg.fusion != "average":
            aligned = self._ransac_alignment(detections, candidates)
            if aligned is not None:
                nerf_T_cam, covariance, used = aligned
                for i in sorted(set(hypotheses) | set(positions)):
                    if i not in used:
                        rejected[i] = "outlier: its position disagrees with the alignment of the others"
                reason = f"fused {len(used)} of {len(detections)} detections ({cfg.mode}, alignment)"
                return Prior("ok", reason, nerf_T_cam, covariance, used, rejected)
            if cfg.fusion == "alignment":
                return Prior("no_prior", "alignment needs 3 or more spread objects whose positions agree",
                             rejected=rejected)
        indices = sorted(hypotheses)
        poses = np.stack([hypotheses[i] for i in indices])
        weights = np.array([max(float(_attr(detections[i], "score")), 1e-6) for i in indices])
        rotations, centres = poses[:, :3, :3], poses[:, :3, 3]
        threshold = cfg.inlier_translation_m / cfg.metres_per_unit

        # Consensus: agreement[i, j] when hypotheses i and j agree in rotation and camera centre.
        angles = rotation_angle_deg(rotations[:, None], rotations[None, :])
        distances = np.linalg.norm(centres[:, None] - centres[None, :], axis=-1)
        agreement = (angles <= cfg.inlier_rotation_deg) & (distances <= threshold)
        support = agreement.astype(np.float64) @ weights
        seed = int(np.lexsort((-weights, -support))[0])  # most support, then highest score
        inlier = agreement[seed]
        for k, i in enumerate(indices):
            if not inlier[k]:
                rejected[i] = (f"outlier: disagrees with the consensus (rotation {angles[seed, k]:.1f} deg, "
                               f"centre {distances[seed, k] * cfg.metres_per_unit:.3f} m from the seed)")
        rotations, centres, weights = rotations[inlier], centres[inlier], weights[inlier]
        used = [i for k, i in enumerate(indices) if inlier[k]]

        mean_rotation = robust_rotation_mean(rotations, weights, poses[seed, :3, :3], cfg.robust_iterations)
        centre = robust_point_mean(centres, weights, cfg.robust_iterations)
        covariance = self._covariance(rotations, centres, weights, mean_rotation, centre)
        # Symmetric objects give positions only: not used by the average.
        cam_T_nerf = _invert(_pose(mean_rotation, centre))
        for i, r_cam in sorted(positions.items()):
            p_nerf = self._nerf_T_obj[_attr(detections[i], "class_name")][:3, 3]
            offset = np.linalg.norm(cam_T_nerf[:3, :3] @ p_nerf + cam_T_nerf[:3, 3] - r_cam)
            rejected[i] = (f"symmetric object: its rotation is ambiguous (average fusion; its position is "
                           f"{offset * cfg.metres_per_unit:.3f} m from the consensus)")
        nerf_T_cam = np.eye(4)
        nerf_T_cam[:3, :3] = mean_rotation
        nerf_T_cam[:3, 3] = centre
        reason = f"fused {len(used)} of {len(detections)} detections ({cfg.mode}, average)"
        return Prior("ok", reason, nerf_T_cam, covariance, used, rejected)

    def _ransac_alignment(self, detections, indices: list[int]):
        """(nerf_T_cam, covariance, inlier indices) from the detected object positions, or None.

        Every triplet of detections gives a camera pose (Kabsch); the one whose inliers (position
        residual below ``alignment_inlier_m``) have the largest total score wins, and the pose is
        refitted on its inliers. Needs 3 inliers spread by ``alignment_min_spread_m``.
        """
        cfg = self.config
        if len(indices) < 3:
            return None
        unit = cfg.metres_per_unit
        p_nerf, r_cam, weights = self._positions(detections, indices)
        spread, threshold = cfg.alignment_min_spread_m / unit, cfg.alignment_inlier_m / unit
        best, best_key = None, None
        for triplet in _subsets(len(indices), 3, MAX_SUBSETS, seed=0):
            fit = align_points(r_cam[list(triplet)], p_nerf[list(triplet)], weights[list(triplet)], spread)
            if fit is None:
                continue
            residual = np.linalg.norm(p_nerf - (r_cam @ fit[0].T + fit[1]), axis=1)
            inliers = residual <= threshold
            key = (float(weights[inliers].sum()), -float(residual[inliers].sum()))
            if inliers.sum() >= 3 and (best_key is None or key > best_key):
                best, best_key = inliers, key
        if best is None:
            return None
        fit = align_points(r_cam[best], p_nerf[best], weights[best], spread)
        if fit is None:
            return None
        return _pose(fit[0], fit[1]), self._floored(fit[2]), [i for i, keep in zip(indices, best) if keep]

    def _positions(self, detections, indices: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Known object positions (N, 3) in the NeRF frame, detected ones (N, 3) in the camera frame
        (NeRF units) and the detection scores (N,) of ``detections[indices]``."""
        p_nerf = np.stack([self._nerf_T_obj[_attr(detections[i], "class_name")][:3, 3] for i in indices])
        r_cam = np.stack([np.asarray(_attr(detections[i], "cam_T_obj"), dtype=np.float64)[:3, 3]
                          for i in indices]) / self.config.metres_per_unit
        weights = np.array([max(float(_attr(detections[i], "score")), 1e-6) for i in indices])
        return p_nerf, r_cam, weights

    def _bearing_pnp(self, detections, indices: list[int], hypotheses: dict[int, np.ndarray]):
        """(nerf_T_cam, covariance, inlier indices) from the directions of the object centres, or None.

        A detector's direction to an object (where its centre projects) stays right at distances
        where its depth does not (PoseCNN trained on near views reads 1.4 m as 1.0 m), so the camera
        is solved as a PnP problem on the known object positions and the detected directions only
        (MSAC over subsets of four, then refinement on the inliers). The covariance is the position
        alignment's on the same inliers: it carries the depth disagreement, so it stays conservative.
        """
        cfg = self.config
        if len(indices) < 4:
            return None
        p_nerf, r_cam, weights = self._positions(detections, indices)
        if np.any(r_cam[:, 2] <= 1e-6):
            return None
        cam_T_nerf, keep = _msac_bearings(p_nerf, r_cam / np.linalg.norm(r_cam, axis=1, keepdims=True),
                                          math.radians(cfg.bearing_inlier_deg))
        if cam_T_nerf is None or len(keep) < 4:
            return None
        cam_T_nerf = self._joint_refine(cam_T_nerf, p_nerf[keep], r_cam[keep], detections,
                                        [indices[k] for k in keep], hypotheses)
        nerf_T_cam = _invert(cam_T_nerf)
        fit = align_points(r_cam[keep], p_nerf[keep], weights[keep], cfg.alignment_min_spread_m / cfg.metres_per_unit)
        if fit is not None:
            covariance = self._floored(fit[2])
        else:
            sigmas = [cfg.single_sigma_translation_m / cfg.metres_per_unit] * 3 + \
                [math.radians(cfg.single_sigma_rotation_deg)] * 3
            covariance = np.diag(np.square(sigmas))
        return nerf_T_cam, covariance, [indices[k] for k in keep]

    def _joint_refine(self, cam_T_nerf: np.ndarray, p_nerf: np.ndarray, r_cam: np.ndarray, detections,
                      used: list[int], hypotheses: dict[int, np.ndarray]) -> np.ndarray:
        """Refine the bearings camera on the inliers' directions, distances and (asymmetric objects, full
        mode) rotations, each in units of its standard deviation, with a robust (soft L1) loss.
        ``p_nerf`` / ``r_cam``: the known and detected positions of ``detections[used]``."""
        from scipy.optimize import least_squares

        cfg = self.config
        if cfg.joint_range_sigma <= 0 and cfg.joint_rotation_sigma_deg <= 0:
            return cam_T_nerf
        ranges = np.linalg.norm(r_cam, axis=1)
        directions = r_cam / ranges[:, None]
        rotated = [k for k, i in enumerate(used) if i in hypotheses] if cfg.joint_rotation_sigma_deg > 0 else []
        nerf_R_obj = np.stack([self._nerf_T_obj[_attr(detections[used[k]], "class_name")][:3, :3] for k in rotated]) \
            if rotated else np.zeros((0, 3, 3))
        cam_R_obj = np.stack([np.asarray(_attr(detections[used[k]], "cam_T_obj"), dtype=np.float64)[:3, :3]
                              for k in rotated]) if rotated else np.zeros((0, 3, 3))
        sigma_bearing = math.radians(cfg.joint_bearing_sigma_deg)

        def residuals(x):
            R = Rotation.from_rotvec(x[:3]).as_matrix()
            seen = p_nerf @ R.T + x[3:6]
            distance = np.linalg.norm(seen, axis=1)
            parts = [((seen / distance[:, None]) - directions).ravel() / sigma_bearing]
            if cfg.joint_range_sigma > 0:   # x[6]: the detector's common depth scale, a free unknown
                parts.append((distance - np.exp(x[6]) * ranges) / (cfg.joint_range_sigma * ranges))
            if rotated:
                error = Rotation.from_matrix(np.transpose(cam_R_obj, (0, 2, 1)) @ (R @ nerf_R_obj)).as_rotvec()
                parts.append(error.ravel() / math.radians(cfg.joint_rotation_sigma_deg))
            return np.concatenate(parts)

        start = np.concatenate([Rotation.from_matrix(cam_T_nerf[:3, :3]).as_rotvec(), cam_T_nerf[:3, 3], [0.0]])
        fit = least_squares(residuals, start, loss="soft_l1", f_scale=1.0, max_nfev=200)
        if not fit.success or not np.isfinite(fit.x).all():
            return cam_T_nerf
        refined = _pose(Rotation.from_rotvec(fit.x[:3]).as_matrix(), fit.x[3:6])
        in_front = (p_nerf @ refined[:3, :3].T + refined[:3, 3])[:, 2] > 0
        return refined if in_front.all() else cam_T_nerf

    def _floored(self, covariance: np.ndarray) -> np.ndarray:
        cfg = self.config
        floor = [cfg.min_sigma_translation_m / cfg.metres_per_unit] * 3 + [math.radians(cfg.min_sigma_rotation_deg)] * 3
        return covariance + np.diag(np.square(floor))

    def _covariance(self, rotations, centres, weights, mean_rotation, centre) -> np.ndarray:
        cfg = self.config
        unit = cfg.metres_per_unit
        if len(weights) == 1:
            sigmas = [cfg.single_sigma_translation_m / unit] * 3 + [math.radians(cfg.single_sigma_rotation_deg)] * 3
            return np.diag(np.square(sigmas))
        residuals = np.concatenate(
            [centres - centre, Rotation.from_matrix(rotations @ mean_rotation.T).as_rotvec()], axis=1)
        w = weights / weights.sum()
        # Reliability weights: unbiased for the weighted spread (reduces to n / (n - 1) for equal weights).
        correction = 1.0 / max(1.0 - float((w * w).sum()), 1e-9)
        return self._floored(correction * (w[:, None] * residuals).T @ residuals)


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
    a point behind the camera gets pi."""
    seen = p_nerf @ cam_T_nerf[:3, :3].T + cam_T_nerf[:3, 3]
    cos = (seen * directions).sum(1) / np.maximum(np.linalg.norm(seen, axis=1), 1e-12)
    return np.where(seen[:, 2] > 0, np.arccos(np.clip(cos, -1.0, 1.0)), np.pi)


def _msac_bearings(p_nerf: np.ndarray, directions: np.ndarray, threshold_rad: float,
                   max_subsets: int = 400, seed: int = 0):
    """(cam_T_nerf, inlier indices) seeing the points ``p_nerf`` along the unit ``directions``, or (None, []).

    MSAC, not inlier counting: every subset of four (all of them for up to 12 objects) gives a camera
    by SQPnP, scored by the sum of its residuals truncated at the threshold. Objects on a table are
    nearly coplanar, and then two cameras can explain the same number of directions within a loose
    threshold; counting cannot tell them apart, the residuals can.
    """
    import cv2

    n = len(p_nerf)
    normalized = np.ascontiguousarray(directions[:, :2] / directions[:, 2:])
    subsets = _subsets(n, 4, max_subsets, seed)

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
        pose = _pose(cv2.Rodrigues(rvec)[0], np.asarray(tvec, dtype=np.float64).ravel())
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


def _subsets(n: int, k: int, max_subsets: int, seed: int) -> list[tuple[int, ...]]:
    """Every k-subset of range(n) when there are at most ``max_subsets``, else ``max_subsets`` random
    distinct ones (sorted tuples), drawn without listing them all."""
    import itertools

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


def _pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = translation
    return pose


def _invert(a_T_b: np.ndarray) -> np.ndarray:
    b_T_a = np.eye(4)
    b_T_a[:3, :3] = a_T_b[:3, :3].T
    b_T_a[:3, 3] = -a_T_b[:3, :3].T @ a_T_b[:3, 3]
    return b_T_a


def _distance_only(p_nerf: np.ndarray, r_cam: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Camera pose from the object's known position ``p_nerf``, its detected position ``r_cam`` in the
    camera (both NeRF units) and a camera hint (see the module docstring)."""
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


def load_config(path, section: Optional[str] = "initializer") -> InitializerConfig:
    """:class:`InitializerConfig` from a YAML file (its ``section`` mapping, or the whole file)."""
    import yaml

    with open(path) as handle:
        data = yaml.safe_load(handle) or {}
    if section and section in data:
        data = data[section]
    try:
        return config_tools.from_dict(InitializerConfig, data)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None
