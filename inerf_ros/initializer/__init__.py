"""Camera prior from object detections: ``nerf_T_cam = nerf_T_obj @ inv(cam_T_obj)`` (ROS-free core).

Each detection of an object class whose pose in the NeRF frame is known gives one hypothesis of
the camera pose; gated hypotheses are fused into one prior with a covariance. "No prior" is a
normal outcome (``CameraPrior.status == "no_prior"`` with a reason), never an exception.

Frames and units
----------------
* ``cam_T_obj`` (from the detector): the object's model frame in the ROS optical camera frame
  (x right, y down, z forward), translation in **metres**.
* ``nerf_T_obj`` (from the config): the object's model frame in the NeRF frame, in **NeRF units**.
* ``CameraPrior.nerf_T_cam``: the ROS optical camera frame in the NeRF frame, in NeRF units
  (metres / ``metres_per_unit``). Convert to the NeRF's OpenGL camera with
  :func:`inerf_ros.frames.optical_to_opengl`.
* ``CameraPrior.covariance``: 6x6 over ``[x y z rx ry rz]`` as in ``geometry_msgs/PoseWithCovariance``:
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
4. ``alignment`` (``auto`` tries it after ``bearings``, then falls back to ``average``): the camera pose that
   maps the *detected positions* of the objects onto their known positions (weighted Kabsch inside
   a RANSAC over triplets of detections, inliers within ``alignment_inlier_m``; 3 inliers spread
   in two directions needed). It does not use the detected rotations (the weakest part of
   PoseCNN) and works in both modes; symmetric objects take part. Covariance from the fit
   residuals (plus the floor).
5. ``bearings`` (``auto`` tries it first): PnP on the directions of the detected object centres
   (MSAC over subsets of four, inliers within ``bearing_inlier_deg``; 4 objects needed), then refined
   on the detected distances up to a common scale and on the rotations of asymmetric objects
   (``joint_*``). Covariance: the alignment's on the same inliers (plus the floor).

Modules
-------
* :mod:`~inerf_ros.initializer.config`: :class:`InitializerConfig` (the object table, gates, fusion)
  and :func:`load_config`.
* :mod:`~inerf_ros.initializer.estimator`: :class:`CameraPriorEstimator` (gates, hypotheses, fusion)
  and its output :class:`CameraPrior`.
* :mod:`~inerf_ros.initializer.solvers`: the geometry (robust means, Kabsch, PnP on bearings, the
  distance_only placement), pure functions.
"""
from inerf_ros.initializer.config import FUSIONS, MODES, InitializerConfig, load_config, pose_from_list
from inerf_ros.initializer.estimator import CameraPrior, CameraPriorEstimator
from inerf_ros.initializer.solvers import (MAX_SUBSETS, align_points, robust_point_mean, robust_rotation_mean,
                                           rotation_angle_deg, rotation_between)

__all__ = ["FUSIONS", "MODES", "MAX_SUBSETS", "CameraPrior", "CameraPriorEstimator", "InitializerConfig",
           "align_points", "load_config", "pose_from_list", "robust_point_mean", "robust_rotation_mean",
           "rotation_angle_deg", "rotation_between"]
