"""The camera prior from object detections: gates, one hypothesis per detection, and the fusion
(bearings, alignment or average; see :mod:`inerf_ros.initializer`) into a :class:`CameraPrior`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from inerf_ros import config as config_tools
from inerf_ros.initializer.config import InitializerConfig, pose_from_list
from inerf_ros.initializer.solvers import (MAX_SUBSETS, align_points, distance_only_camera, draw_subsets, invert_pose,
                                           joint_refine, make_pose, msac_bearings, robust_point_mean,
                                           robust_rotation_mean, rotation_angle_deg)


@dataclasses.dataclass
class CameraPrior:
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
        """Whether a prior was fused (``status == "ok"``)."""
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
        """Per-detection camera hypotheses as {index: nerf_T_cam}, rejections as {index: reason} and, in full
        mode, the detected positions (NeRF units, camera frame) of symmetric objects as {index: r_cam}.
        """
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
                out[index] = nerf_T_obj @ invert_pose(cam_T_obj_nerf)
            else:
                out[index] = distance_only_camera(nerf_T_obj[:3, 3], cam_T_obj_nerf[:3, 3], hint)
        return out, rejected, positions

    def estimate(self, detections: Sequence[Any], nerf_T_cam_hint: Optional[np.ndarray] = None) -> CameraPrior:
        """Fuse ``detections`` (objects with class_name, score, cam_T_obj, optional visible_fraction,
        or dicts with those keys) into a :class:`CameraPrior`. ``nerf_T_cam_hint`` (4x4, NeRF units, ROS
        optical camera) is used by the distance_only mode only.
        """
        cfg = self.config
        if len(detections) == 0:
            return CameraPrior("no_prior", "no detections")
        hypotheses, rejected, positions = self.hypotheses(detections, nerf_T_cam_hint)
        rejected = dict(sorted(rejected.items()))
        if not hypotheses:
            for i in positions:
                rejected[i] = "symmetric object: its rotation cannot give the camera's (needs an asymmetric one)"
            reasons = "; ".join(f"#{i}: {r}" for i, r in sorted(rejected.items()))
            return CameraPrior("no_prior", f"no detection passed the gates ({reasons})", rejected=rejected)
        candidates = sorted(list(hypotheses) + list(positions))
        if cfg.fusion in ("auto", "bearings"):
            fitted = self._bearing_pnp(detections, candidates, hypotheses)
            if fitted is not None:
                nerf_T_cam, covariance, used = fitted
                for i in candidates:
                    if i not in used:
                        rejected[i] = "outlier: its direction disagrees with the camera fitted to the others"
                reason = f"fused {len(used)} of {len(detections)} detections ({cfg.mode}, bearings)"
                return CameraPrior("ok", reason, nerf_T_cam, covariance, used, rejected)
            if cfg.fusion == "bearings":
                return CameraPrior("no_prior", "bearings need 4 or more objects whose directions agree",
                                   rejected=rejected)
        if cfg.fusion != "average":
            aligned = self._ransac_alignment(detections, candidates)
            if aligned is not None:
                nerf_T_cam, covariance, used = aligned
                for i in sorted(set(hypotheses) | set(positions)):
                    if i not in used:
                        rejected[i] = "outlier: its position disagrees with the alignment of the others"
                reason = f"fused {len(used)} of {len(detections)} detections ({cfg.mode}, alignment)"
                return CameraPrior("ok", reason, nerf_T_cam, covariance, used, rejected)
            if cfg.fusion == "alignment":
                return CameraPrior("no_prior", "alignment needs 3 or more spread objects whose positions agree",
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
        cam_T_nerf = invert_pose(make_pose(mean_rotation, centre))
        for i, r_cam in sorted(positions.items()):
            p_nerf = self._nerf_T_obj[_attr(detections[i], "class_name")][:3, 3]
            offset = np.linalg.norm(cam_T_nerf[:3, :3] @ p_nerf + cam_T_nerf[:3, 3] - r_cam)
            rejected[i] = (f"symmetric object: its rotation is ambiguous (average fusion; its position is "
                           f"{offset * cfg.metres_per_unit:.3f} m from the consensus)")
        nerf_T_cam = np.eye(4)
        nerf_T_cam[:3, :3] = mean_rotation
        nerf_T_cam[:3, 3] = centre
        reason = f"fused {len(used)} of {len(detections)} detections ({cfg.mode}, average)"
        return CameraPrior("ok", reason, nerf_T_cam, covariance, used, rejected)

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
        for triplet in draw_subsets(len(indices), 3, MAX_SUBSETS, seed=0):
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
        return make_pose(fit[0], fit[1]), self._floored(fit[2]), [i for i, keep in zip(indices, best) if keep]

    def _positions(self, detections, indices: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Known object positions (N, 3) in the NeRF frame, detected ones (N, 3) in the camera frame
        (NeRF units) and the detection scores (N,) of ``detections[indices]``.
        """
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
        cam_T_nerf, keep = msac_bearings(p_nerf, r_cam / np.linalg.norm(r_cam, axis=1, keepdims=True),
                                         math.radians(cfg.bearing_inlier_deg))
        if cam_T_nerf is None or len(keep) < 4:
            return None
        cam_T_nerf = self._joint_refine(cam_T_nerf, p_nerf[keep], r_cam[keep], detections,
                                        [indices[k] for k in keep], hypotheses)
        nerf_T_cam = invert_pose(cam_T_nerf)
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
        """Refine the bearings camera (:func:`~inerf_ros.initializer.solvers.joint_refine`) on the inliers'
        directions, distances and (asymmetric objects, full mode) rotations.
        ``p_nerf`` / ``r_cam``: the known and detected positions of ``detections[used]``.
        """
        cfg = self.config
        if cfg.joint_range_sigma <= 0 and cfg.joint_rotation_sigma_deg <= 0:
            return cam_T_nerf
        rotated = [k for k, i in enumerate(used) if i in hypotheses] if cfg.joint_rotation_sigma_deg > 0 else []
        nerf_R_obj = np.stack([self._nerf_T_obj[_attr(detections[used[k]], "class_name")][:3, :3] for k in rotated]) \
            if rotated else np.zeros((0, 3, 3))
        cam_R_obj = np.stack([np.asarray(_attr(detections[used[k]], "cam_T_obj"), dtype=np.float64)[:3, :3]
                              for k in rotated]) if rotated else np.zeros((0, 3, 3))
        return joint_refine(cam_T_nerf, p_nerf, r_cam, nerf_R_obj, cam_R_obj, cfg.joint_range_sigma,
                            cfg.joint_rotation_sigma_deg, cfg.joint_bearing_sigma_deg)

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
