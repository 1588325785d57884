"""Object anchors: PoseCNN's detections on the posed capture images fused into ``nerf_T_obj`` per object.

A detection on an image posed by SfM is ``nerf_T_obj = nerf_T_cam @ cam_T_obj`` (optical camera;
PoseCNN's translation in metres, the NeRF's in its units). The fusion leans on what a detector gets
right: the *direction* of an object's centre is good to a fraction of a degree, its depth is the
first thing to fail with distance. So the position is the point closest to all the detected centre
rays (Cauchy-weighted, rays off by more than ``ray_inlier_deg`` rejected), which also needs no scale;
the rotation is a robust chordal mean (Weiszfeld on the rotation angle, detections off by more than
``rotation_inlier_deg`` rejected). Objects symmetric about their z axis keep their free axis free:
only the axis is fused and the pose is the minimal rotation of z onto it (yaw 0, which the
initializer does not use for these classes).

For a photo folder (no robot frame), the ratio of PoseCNN's metric distance to each detected object
to SfM's distance of the fused centre from that camera gives ``metres_per_unit`` (median over all
kept detections, with its spread).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from inerf_ros import frames
from inerf_ros.config import option


@dataclasses.dataclass
class AnchorConfig:
    """Which detections count and how each object's are fused."""

    min_score: float = option(0.5, "detections scoring lower are not used", range=(0.0, 1.0))
    min_visible_fraction: float = option(0.3, "detections whose known visible fraction is lower are not used",
                                         range=(0.0, 1.0))
    min_views: int = option(3, "an object needs this many agreeing detections to be anchored", range=(2, 100000))
    ray_inlier_deg: float = option(2.0, "a detection whose centre ray passes further than this angle from the "
                                        "fused centre is an outlier (degrees)", range=(0.01, 90.0))
    rotation_inlier_deg: float = option(15.0, "a detection rotated further than this from the fused rotation is "
                                              "an outlier (degrees)", range=(0.1, 180.0))
    min_ray_angle_deg: float = option(5.0, "the detected centre rays must spread over at least this angle to "
                                           "triangulate (else the detected depths are used)", range=(0.0, 90.0))
    iterations: int = option(20, "reweighting iterations of each robust mean", range=(1, 1000))


@dataclasses.dataclass
class Observation:
    """One detection of an object on a posed capture image."""

    image: str
    nerf_T_cam: np.ndarray
    """(4, 4) the optical camera in the NeRF frame (NeRF units)."""
    cam_T_obj: np.ndarray
    """(4, 4) PoseCNN's pose (metres)."""
    score: float = 1.0
    visible_fraction: float | None = None


@dataclasses.dataclass
class Anchor:
    """One object's fused pose in the NeRF frame, with how well its detections agreed."""

    name: str
    nerf_T_obj: np.ndarray
    """(4, 4) the fused pose in the NeRF frame (NeRF units)."""
    symmetric: bool
    n_views: int
    n_inliers: int
    spread_m: float
    """Median distance of the kept detections' centre rays from the fused centre (metres)."""
    spread_deg: float
    """Median angle of the kept detections' rotations (symmetric: z axes) from the fused one."""
    inliers: list[str]
    """Images whose detection was kept."""
    scale_ratios: np.ndarray
    """Per kept detection, PoseCNN's distance (m) / SfM's distance (NeRF units) to the fused centre."""

    def initializer_entry(self) -> str:
        """``'name x y z qx qy qz qw'`` in NeRF units, as the initializer's ``object_poses`` holds it."""
        from scipy.spatial.transform import Rotation  # scipy loads only when the entry is written

        quat = Rotation.from_matrix(self.nerf_T_obj[:3, :3]).as_quat()
        return " ".join([self.name] + [repr(round(float(v), 6)) for v in list(self.nerf_T_obj[:3, 3]) + list(quat)])


def triangulate(origins: np.ndarray, directions: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The point with the least weighted sum of squared distances to the rays ``origins + t directions``."""
    d = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    w = np.ones(len(d)) if weights is None else weights
    projectors = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
    a = np.einsum("n,nij->ij", w, projectors)
    b = np.einsum("n,nij,nj->i", w, projectors, origins)
    return np.linalg.solve(a, b)


def ray_angles_deg(point: np.ndarray, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Angle between each ray and the direction from its origin to ``point`` (degrees)."""
    to_point = point - origins
    cos = np.sum(to_point * directions, axis=1) / (np.linalg.norm(to_point, axis=1) *
                                                   np.linalg.norm(directions, axis=1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def geometric_median(points: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Weiszfeld's geometric median of (N, 3) points."""
    estimate = np.median(points, axis=0)
    for _ in range(iterations):
        distances = np.maximum(np.linalg.norm(points - estimate, axis=1), 1e-12)
        estimate = (points / distances[:, None]).sum(0) / (1.0 / distances).sum()
    return estimate


def ray_spread_deg(directions: np.ndarray) -> float:
    """The largest angle between any ray and the mean direction (degrees): how well rays triangulate."""
    d = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    mean = d.mean(0)
    mean /= np.linalg.norm(mean)
    return float(np.degrees(np.arccos(np.clip(d @ mean, -1.0, 1.0))).max())


def fuse_position(origins: np.ndarray, directions: np.ndarray, points: np.ndarray, config: AnchorConfig
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Robust centre from the detected rays (or the detected points when the rays are nearly parallel).

    Returns ``(centre (3,), inlier mask (N,))``: rays within ``ray_inlier_deg`` of the centre.
    """
    centre = geometric_median(points)
    if ray_spread_deg(directions) < config.min_ray_angle_deg:
        return centre, ray_angles_deg(centre, origins, directions) < config.ray_inlier_deg
    inliers = ray_angles_deg(centre, origins, directions) < max(config.ray_inlier_deg * 5, 10.0)
    for _ in range(config.iterations):
        if inliers.sum() < 2 or ray_spread_deg(directions[inliers]) < config.min_ray_angle_deg:
            break
        angles = ray_angles_deg(centre, origins, directions)
        width = max(float(np.median(angles[inliers])), 0.05)
        # Squared ray distance / squared range = squared angle: every ray counts by its angular error.
        ranges = np.maximum(np.linalg.norm(centre - origins, axis=1), 1e-9)
        weights = inliers / (1.0 + (angles / width) ** 2) / ranges ** 2
        centre = triangulate(origins, directions, weights)
        inliers = ray_angles_deg(centre, origins, directions) < config.ray_inlier_deg
    return centre, ray_angles_deg(centre, origins, directions) < config.ray_inlier_deg


def _project_rotation(matrix: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(matrix)
    return u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt


def rotation_angles_deg(rotation: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Angle (degrees) between ``rotation`` (3, 3) and each of ``rotations`` (N, 3, 3)."""
    relative = np.einsum("ji,njk->nik", rotation, rotations)
    cos = np.clip((np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def fuse_rotation(rotations: np.ndarray, config: AnchorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Robust mean rotation: chordal L1 by Weiszfeld from the chordal L2 mean, outliers dropped.

    Returns ``(rotation (3, 3), inlier mask (N,))``.
    """
    # Start from the detection with the smallest summed distance to the others: a chordal mean of a set
    # with a third of outliers can sit between the clusters.
    chordal = np.linalg.norm(rotations[:, None] - rotations[None], axis=(2, 3)).sum(1)
    rotation = rotations[int(np.argmin(chordal))]
    inliers = np.ones(len(rotations), bool)
    for _ in range(config.iterations):
        angles = rotation_angles_deg(rotation, rotations)
        inliers = angles < config.rotation_inlier_deg
        if not inliers.any():
            break
        weights = inliers / np.maximum(angles, 0.05)
        rotation = _project_rotation(np.einsum("n,nij->ij", weights, rotations))
    return rotation, rotation_angles_deg(rotation, rotations) < config.rotation_inlier_deg


def axis_to_rotation(axis: np.ndarray) -> np.ndarray:
    """The minimal rotation taking +z onto ``axis`` (a symmetric object's pose with its yaw set to 0)."""
    z = np.array([0.0, 0.0, 1.0])
    axis = axis / np.linalg.norm(axis)
    v, c = np.cross(z, axis), float(z @ axis)
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def fuse_axis(axes: np.ndarray, config: AnchorConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust mean of the z axes of a symmetric object's detections.

    Returns ``(axis (3,), inlier mask (N,), angles (N,) in degrees)``.
    """
    axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    axis = geometric_median(axes)
    axis /= np.linalg.norm(axis)
    for _ in range(config.iterations):
        angles = np.degrees(np.arccos(np.clip(axes @ axis, -1.0, 1.0)))
        inliers = angles < config.rotation_inlier_deg
        if not inliers.any():
            break
        weights = inliers / np.maximum(angles, 0.05)
        axis = (axes * weights[:, None]).sum(0)
        axis /= np.linalg.norm(axis)
    angles = np.degrees(np.arccos(np.clip(axes @ axis, -1.0, 1.0)))
    return axis, angles < config.rotation_inlier_deg, angles


def fuse_object(name: str, observations: list[Observation], symmetric: bool, metres_per_unit: float | None,
                config: AnchorConfig) -> Anchor | None:
    """One object's anchor from its detections, or None when fewer than ``min_views`` agree.

    ``metres_per_unit`` None (photo folder): the spread in metres uses the object's own scale ratio.
    """
    cams = np.stack([o.nerf_T_cam for o in observations])
    cam_T_objs = np.stack([o.cam_T_obj for o in observations])
    origins = cams[:, :3, 3]
    directions = np.einsum("nij,nj->ni", cams[:, :3, :3], cam_T_objs[:, :3, 3])
    distances_m = np.linalg.norm(cam_T_objs[:, :3, 3], axis=1)
    rotations = np.einsum("nij,njk->nik", cams[:, :3, :3], cam_T_objs[:, :3, :3])
    # The detected positions in NeRF units need a scale; without one (photo folder), a first one from the
    # rays' own triangulation is close enough to pick the start of the robust fit.
    mpu = metres_per_unit
    if mpu is None:
        rough = triangulate(origins, directions)
        mpu = float(np.median(distances_m / np.maximum(np.linalg.norm(rough - origins, axis=1), 1e-12)))
    points = origins + directions / np.linalg.norm(directions, axis=1, keepdims=True) * (distances_m / mpu)[:, None]
    centre, inliers = fuse_position(origins, directions, points, config)
    if symmetric:
        axis, rot_ok, angles = fuse_axis(rotations[:, :, 2], config)
        rotation = axis_to_rotation(axis)
    else:
        rotation, rot_ok = fuse_rotation(rotations[inliers] if inliers.sum() >= config.min_views else rotations,
                                         config)
        angles = rotation_angles_deg(rotation, rotations)
        rot_ok = angles < config.rotation_inlier_deg
    kept = inliers & rot_ok
    if kept.sum() < config.min_views:
        return None
    sfm_distances = np.linalg.norm(centre - origins[kept], axis=1)
    ratios = distances_m[kept] / sfm_distances
    scale = metres_per_unit if metres_per_unit is not None else float(np.median(ratios))
    ray_offsets = np.radians(ray_angles_deg(centre, origins[kept], directions[kept])) * sfm_distances * scale
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, centre
    return Anchor(name, pose, symmetric, len(observations), int(kept.sum()), float(np.median(ray_offsets)),
                  float(np.median(angles[kept])), [o.image for o, k in zip(observations, kept) if k], ratios)


def fuse_anchors(observations: dict[str, list[Observation]], symmetric_classes, metres_per_unit: float | None,
                 config: AnchorConfig) -> tuple[dict[str, Anchor], list[str]]:
    """Every object with enough agreeing detections, and a message per object that was skipped."""
    anchors, skipped = {}, []
    for name in sorted(observations):
        found = observations[name]
        if len(found) < config.min_views:
            skipped.append(f"{name}: seen in {len(found)} image(s), need {config.min_views}: record more views "
                           "of it (it was skipped)")
            continue
        anchor = fuse_object(name, found, name in symmetric_classes, metres_per_unit, config)
        if anchor is None:
            skipped.append(f"{name}: {len(found)} detections but fewer than {config.min_views} agree on one pose "
                           "(a look-alike, or poorly seen): record closer, unobstructed views of it (skipped)")
            continue
        anchors[name] = anchor
    return anchors, skipped


def observations_from_detections(image: str, nerf_T_cam_optical: np.ndarray, detections, config: AnchorConfig
                                 ) -> list[tuple[str, Observation]]:
    """PoseCNN's detections of one image as ``(class name, Observation)`` pairs, gated by score and visibility."""
    out = []
    for det in detections:
        if det.score < config.min_score:
            continue
        if det.visible_fraction is not None and det.visible_fraction < config.min_visible_fraction:
            continue
        if not np.all(np.isfinite(det.cam_T_obj)):
            raise ValueError(f"{image}: PoseCNN returned a non-finite pose for {det.class_name}")
        out.append((det.class_name, Observation(image, np.asarray(nerf_T_cam_optical, float),
                                                np.asarray(det.cam_T_obj, float), float(det.score),
                                                det.visible_fraction)))
    return out


def scale_from_objects(anchors: dict[str, Anchor]) -> dict:
    """``metres_per_unit`` from the objects: the median of every kept detection's distance ratio, with its spread."""
    ratios = np.concatenate([a.scale_ratios for a in anchors.values()]) if anchors else np.zeros(0)
    if len(ratios) < 3:
        raise ValueError("the scale from objects needs at least 3 kept detections; record more views of the "
                         "objects PoseCNN knows")
    median = float(np.median(ratios))
    q1, q3 = np.percentile(ratios, [25, 75])
    return {"metres_per_unit": median, "detections": int(len(ratios)),
            "mad_fraction": float(1.4826 * np.median(np.abs(ratios - median)) / median),
            "iqr_fraction": float((q3 - q1) / median),
            "standard_error_fraction": float(1.2533 * 1.4826 * np.median(np.abs(ratios - median)) / median /
                                             np.sqrt(len(ratios)))}


def nerf_T_obj_in_metres(anchor: Anchor, metres_per_unit: float) -> np.ndarray:
    """The anchor's pose in the metric NeRF frame (the TF frame ``nerf``)."""
    return frames.nerf_to_metres(anchor.nerf_T_obj, metres_per_unit)
