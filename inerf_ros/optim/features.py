"""Feature matching against NeRF renderings, and PnP on the rendered depth.

Photometric descent (iNeRF) only converges inside a basin of a few degrees: beyond it the pixels it
compares show different surfaces and the gradient points anywhere. Features reach much further: the
NeRF rendered at the start pose is an image with known depth, so keypoints matched between that
rendering and the observation are 2-D/3-D correspondences, and PnP with RANSAC solves the pose from
them in one step, however far the start was, as long as the two views still overlap. The
photometric steps then refine that pose (sub-pixel, using every sampled pixel rather than corners).

Used by the optimizer (``OptimizerConfig.feature_align``) and by ``inerf-ros register`` (PnP starts
from matches to posed photos); OpenCV does detection, matching and PnP.

Frames: 3-D points are in the NeRF frame; PnP returns ``optical_T_nerf`` (OpenCV's camera is the ROS
optical frame: x right, y down, z forward).
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import torch

from inerf_ros import frames
from inerf_ros.camera import Intrinsics
from inerf_ros.nerf.rays import pixel_rays
from inerf_ros.nerf.render import render_image


_STEPPING_STONE_INLIERS = 6  # EPnP + RANSAC's working minimum; enough to move closer for the next round


@dataclasses.dataclass
class PnpResult:
    """The outcome of one PnP of matched features against rendered depth."""

    nerf_T_optical: np.ndarray | None
    """(4, 4) the camera as a ROS optical frame in the NeRF frame, or None when PnP failed."""
    inliers: int
    matches: int
    note: str


class FeatureMatcher:
    """Keypoints and ratio-test matches of uint8 RGB images (SIFT by default, ORB for speed, ASIFT for
    photos taken from far apart).

    ``asift`` is OpenCV's ASIFT (Morel and Yu 2009, ``cv2.AffineFeature``): SIFT on the image seen under
    a range of simulated tilts, so a surface photographed at 60 degrees still matches its frontal view.
    It costs ~1.5 s per 540 x 405 image on one core (``max_features // 2`` per simulated view), so it is
    for registration, not for the pose loop. On the watch photos SfM left out, SIFT found at most 11
    RANSAC inliers to any registered view, ASIFT 64-634.
    """

    def __init__(self, detector: str = "sift", max_features: int = 4000, ratio: float = 0.8, exact: bool = True,
                 seed: int = 0):
        if detector in ("sift", "asift"):
            self._detector = cv2.SIFT_create(nfeatures=max_features) if detector == "sift" else \
                cv2.AffineFeature_create(cv2.SIFT_create(nfeatures=max(1, max_features // 2)))
            # Brute force is exact, and cheap against a small rendering's few hundred keypoints. FLANN's
            # randomised k-d trees (approximate; seeded per call, see match) pay off only for thousands
            # against thousands (registration).
            self._matcher = cv2.BFMatcher(cv2.NORM_L2) if exact else \
                cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 48})
        elif detector == "orb":
            self._detector = cv2.ORB_create(nfeatures=max_features)
            self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        else:
            raise ValueError(f"unknown feature detector {detector!r} (sift, asift or orb)")
        self.detector = detector
        self.ratio = ratio
        self.seed = seed

    def detect(self, image: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
        """Keypoints (K, 2) [u, v] and descriptors of an (H, W, 3) image (uint8, or float in 0..1).

        ``scale`` maps the image's pixels to the caller's (pixel centres kept: ``(u + 0.5) * s - 0.5``),
        so a larger copy of an image can be matched in the coordinates of the working one.
        """
        if image.dtype != np.uint8:
            image = (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        keypoints, descriptors = self._detector.detectAndCompute(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), None)
        uv = np.array([kp.pt for kp in keypoints], dtype=np.float64).reshape(-1, 2)
        return (uv + 0.5) * scale - 0.5, descriptors

    def match(self, descriptors_a, descriptors_b) -> list[tuple[int, int]]:
        """Index pairs (a, b) that pass Lowe's ratio test."""
        if descriptors_a is None or descriptors_b is None or len(descriptors_a) < 2 or len(descriptors_b) < 2:
            return []
        if isinstance(self._matcher, cv2.FlannBasedMatcher):
            # Its randomised k-d trees draw from OpenCV's global RNG: reseeded, the same descriptors give
            # the same matches whatever ran before (a registration run repeats its verdicts).
            cv2.setRNGSeed(self.seed)
        pairs = self._matcher.knnMatch(descriptors_a, descriptors_b, k=2)
        return [(m[0].queryIdx, m[0].trainIdx) for m in pairs
                if len(m) == 2 and m[0].distance < self.ratio * m[1].distance]


def solve_pnp(points_nerf: np.ndarray, uv: np.ndarray, intrinsics: Intrinsics, tolerance_px: float,
              min_inliers: int = 12) -> PnpResult:
    """Camera pose from 3-D points (NeRF frame) seen at pixels ``uv`` of a camera with ``intrinsics``.

    RANSAC (EPnP) rejects wrong matches, then Levenberg-Marquardt refines on the inliers.
    """
    n = len(points_nerf)
    if n < max(min_inliers, 6):
        return PnpResult(None, 0, n, f"{n} matches with depth")
    distortion = np.asarray(intrinsics.distortion, dtype=np.float64) if intrinsics.is_distorted else None
    points = np.ascontiguousarray(points_nerf, dtype=np.float64)
    pixels = np.ascontiguousarray(uv, dtype=np.float64)
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(points, pixels, intrinsics.K, distortion,
                                                 reprojectionError=tolerance_px, iterationsCount=500,
                                                 confidence=0.999, flags=cv2.SOLVEPNP_EPNP)
    count = 0 if inliers is None else len(inliers)
    if not ok or count < min_inliers:
        return PnpResult(None, count, n, f"PnP failed ({count} inliers of {n})")
    inliers = inliers[:, 0]
    ok, rvec, tvec = cv2.solvePnP(points[inliers], pixels[inliers], intrinsics.K, distortion, rvec, tvec,
                                  useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    optical_T_nerf = np.eye(4)
    optical_T_nerf[:3, :3] = cv2.Rodrigues(rvec)[0]
    optical_T_nerf[:3, 3] = tvec[:, 0]
    nerf_T_optical = np.linalg.inv(optical_T_nerf)
    if not ok or not np.isfinite(nerf_T_optical).all():
        return PnpResult(None, count, n, "PnP gave a non-finite pose")
    return PnpResult(nerf_T_optical, count, n, f"{count} inliers of {n}")


def pixel_tolerance(intrinsics: Intrinsics) -> float:
    """RANSAC reprojection tolerance: 2 px at 270 px wide, scaled with the image (at least 1 px)."""
    return max(1.0, intrinsics.width / 135)


def project(optical_T_nerf: np.ndarray, points_nerf: np.ndarray,
            intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Ideal pinhole pixels (N, 2) of NeRF-frame points (N, 3) seen by a camera at ``optical_T_nerf``, and
    the mask (N,) of points in front of it (the others' pixels are meaningless).
    """
    cam = points_nerf @ optical_T_nerf[:3, :3].T + optical_T_nerf[:3, 3]
    in_front = cam[:, 2] > 1e-6
    uv = cam[:, :2] / np.where(in_front, cam[:, 2], 1.0)[:, None] * [intrinsics.fx, intrinsics.fy] \
        + [intrinsics.cx, intrinsics.cy]
    return uv, in_front


def triangulate(intrinsics: Intrinsics, optical_T_nerf_a: np.ndarray, optical_T_nerf_b: np.ndarray,
                uv_a: np.ndarray, uv_b: np.ndarray, tolerance_px: float,
                min_parallax_deg: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3-D points (N, 3) in the NeRF frame from pixels ``uv_a`` / ``uv_b`` (N, 2) matched between two
    posed cameras, the mask (N,) of trustworthy ones and their parallax in degrees (N,).

    A point is kept when it lies in front of both cameras, reprojects within ``tolerance_px`` in both
    (a wrong match violates the epipolar constraint) and its two rays meet at ``min_parallax_deg`` or
    more (nearly parallel rays put it anywhere along them). Unlike :func:`lift` this needs no NeRF
    depth, which is poor where the NeRF saw a surface from few directions.
    """
    uv_a = np.asarray(uv_a, dtype=np.float64).reshape(-1, 2)
    uv_b = np.asarray(uv_b, dtype=np.float64).reshape(-1, 2)
    if len(uv_a) == 0:
        return np.zeros((0, 3)), np.zeros(0, dtype=bool), np.zeros(0)
    K = intrinsics.K
    if intrinsics.is_distorted:  # triangulate the ideal pinhole pixels
        distortion = np.asarray(intrinsics.distortion, dtype=np.float64)
        uv_a = cv2.undistortPoints(uv_a[:, None], K, distortion, P=K)[:, 0]
        uv_b = cv2.undistortPoints(uv_b[:, None], K, distortion, P=K)[:, 0]
    homogeneous = cv2.triangulatePoints(K @ optical_T_nerf_a[:3], K @ optical_T_nerf_b[:3], uv_a.T, uv_b.T)
    with np.errstate(divide="ignore", invalid="ignore"):
        points = (homogeneous[:3] / homogeneous[3]).T
    keep = np.isfinite(points).all(1)
    points = np.where(keep[:, None], points, 0.0)
    rays = []
    for optical_T_nerf, uv in ((optical_T_nerf_a, uv_a), (optical_T_nerf_b, uv_b)):
        projected, in_front = project(optical_T_nerf, points, intrinsics)
        keep &= in_front & (np.linalg.norm(projected - uv, axis=1) <= tolerance_px)
        centre = -optical_T_nerf[:3, :3].T @ optical_T_nerf[:3, 3]
        rays.append(points - centre)
    cosine = np.sum(rays[0] * rays[1], 1) / np.maximum(
        np.linalg.norm(rays[0], axis=1) * np.linalg.norm(rays[1], axis=1), 1e-12)
    parallax = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
    keep &= parallax >= min_parallax_deg
    return points, keep, parallax


@torch.no_grad()
def lift(model, intrinsics: Intrinsics, nerf_T_gl: torch.Tensor, uv: np.ndarray, min_opacity: float = 0.5,
         n_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """3-D points (M, 3) in the NeRF frame where rays through pixels ``uv`` (N, 2) of a camera at
    ``nerf_T_gl`` (OpenGL, NeRF frame) hit the NeRF's surface, and the mask (N,) of pixels kept.

    Each keypoint gets its own ray (not a lookup in a coarse depth map): keypoints sit on edges,
    where a depth map's neighbouring pixel is often the background.
    """
    device = nerf_T_gl.device
    if len(uv) == 0:
        return np.zeros((0, 3)), np.zeros(0, dtype=bool)
    pixels = torch.as_tensor(uv, dtype=torch.float32, device=device)
    origins, directions = pixel_rays(intrinsics, nerf_T_gl.float(), pixels)
    out = model.render_rays(origins, directions, n_samples=n_samples)
    keep = (out["opacity"] > min_opacity).cpu().numpy()
    points = (origins + out["depth"][:, None] * directions).double().cpu().numpy()
    return points[keep], keep


@dataclasses.dataclass(eq=False)  # compared by identity (the cache removes one by one)
class Keyframe:
    """A NeRF rendering kept for feature alignment: its keypoints, their descriptors and 3-D points.

    Rendering is most of a tracking estimate's cost; a camera that moves a little (an arm between
    two processed frames) can be matched against a rendering made for an earlier frame nearby: the
    keypoints' 3-D points are in the NeRF frame, valid from wherever the image was taken.
    """

    nerf_T_optical: np.ndarray
    """(4, 4) the pose it was rendered at."""
    scale: float
    """Rendering size relative to the image (keyframes of one scale are reused at that scale only)."""
    uv: np.ndarray
    """(N, 2) keypoints in the rendering's pixels."""
    descriptors: np.ndarray | None
    points: np.ndarray
    """(N, 3) the keypoints' surface points in the NeRF frame; NaN where the ray hit no surface."""
    median_depth: float
    """Median distance from the camera to those points (NeRF units): sets how far a reuse may move."""


@torch.no_grad()
def render_keyframe(model, intrinsics: Intrinsics, nerf_T_optical: np.ndarray, matcher: FeatureMatcher,
                    scale: float, n_samples: int | None = None, device: str | torch.device = "cpu") -> Keyframe:
    """Render the NeRF at ``nerf_T_optical`` (``scale`` x the image's size), detect and lift its keypoints."""
    render_intrinsics = intrinsics.scaled(scale) if scale != 1.0 else intrinsics
    nerf_T_gl = torch.from_numpy(frames.optical_to_opengl(np.asarray(nerf_T_optical, dtype=np.float64)))
    nerf_T_gl = nerf_T_gl.to(torch.device(device)).float()
    rendering = render_image(model, render_intrinsics, nerf_T_gl, n_samples=n_samples)
    uv, descriptors = matcher.detect(rendering["rgb"].clamp(0, 1).cpu().numpy())
    lifted, keep = lift(model, render_intrinsics, nerf_T_gl, uv, n_samples=n_samples)
    points = np.full((len(uv), 3), np.nan)
    points[keep] = lifted
    centre = np.asarray(nerf_T_optical, dtype=np.float64)[:3, 3]
    depth = float(np.median(np.linalg.norm(lifted - centre, axis=1))) if len(lifted) else math.inf
    return Keyframe(np.asarray(nerf_T_optical, dtype=np.float64).copy(), float(scale), uv, descriptors, points,
                    depth)


def align_to_keyframe(keyframe: Keyframe, observed: tuple[np.ndarray, np.ndarray | None], intrinsics: Intrinsics,
                      matcher: FeatureMatcher, min_inliers: int) -> tuple[PnpResult, np.ndarray, np.ndarray]:
    """PnP of the image's keypoints ``observed`` matched to a keyframe's; returns (result, points, uv) used."""
    observed_uv, observed_descriptors = observed
    pairs = matcher.match(observed_descriptors, keyframe.descriptors)
    if not pairs:
        return PnpResult(None, 0, 0, "no feature matches"), np.zeros((0, 3)), np.zeros((0, 2))
    observed_index, keyframe_index = np.array(pairs).T
    points = keyframe.points[keyframe_index]
    keep = np.isfinite(points).all(axis=1)
    points, uv = points[keep], observed_uv[observed_index][keep]
    result = solve_pnp(points, uv, intrinsics, pixel_tolerance(intrinsics), min_inliers)
    result.matches = len(pairs)
    return result, points, uv


class KeyframeCache:
    """Recent keyframes, reused for a start pose whose view is close to one of theirs.

    A keyframe serves a start whose optical axis is within ``max_angle_deg`` of its own and whose
    centre is within ``max_shift`` x its median scene depth (SIFT matches survive such changes of
    viewpoint; the pose itself comes from PnP, so reuse costs no accuracy, only matches).
    The least recently used one goes when ``capacity`` is reached.
    """

    def __init__(self, capacity: int = 16, max_angle_deg: float = 8.0, max_shift: float = 0.15):
        self.capacity = int(capacity)
        self.max_angle_deg = float(max_angle_deg)
        self.max_shift = float(max_shift)
        self._keyframes: list[Keyframe] = []
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._keyframes)

    def clear(self) -> None:
        """Forget every keyframe (the hit and miss counts stay)."""
        self._keyframes.clear()

    def nearest(self, nerf_T_optical: np.ndarray, scale: float) -> Keyframe | None:
        """The keyframe (of this ``scale``) whose view is closest to ``nerf_T_optical``, if close enough."""
        pose = np.asarray(nerf_T_optical, dtype=np.float64)
        best, best_angle = None, math.inf
        for keyframe in self._keyframes:
            if keyframe.scale != scale:
                continue
            cosine = float(np.dot(pose[:3, 2], keyframe.nerf_T_optical[:3, 2]))
            angle = math.degrees(math.acos(min(1.0, max(-1.0, cosine))))
            shift = float(np.linalg.norm(pose[:3, 3] - keyframe.nerf_T_optical[:3, 3]))
            if angle <= self.max_angle_deg and shift <= self.max_shift * keyframe.median_depth and angle < best_angle:
                best, best_angle = keyframe, angle
        if best is None:
            self.misses += 1
            return None
        self.hits += 1
        self._keyframes.remove(best)  # most recently used last
        self._keyframes.append(best)
        return best

    def add(self, keyframe: Keyframe) -> None:
        """Keep ``keyframe``, dropping the least recently used beyond ``capacity`` (none kept at capacity 0)."""
        if self.capacity <= 0:
            return
        self._keyframes.append(keyframe)
        del self._keyframes[:-self.capacity]


@torch.no_grad()
def align_to_rendering(model, image_rgb: np.ndarray, intrinsics: Intrinsics, start_nerf_T_optical: np.ndarray,
                       matcher: FeatureMatcher, render_scale: float = 1.0, rounds: int = 1, min_inliers: int = 10,
                       n_samples: int | None = None, device: str | torch.device = "cpu",
                       observed: tuple[np.ndarray, np.ndarray | None] | None = None,
                       pool: bool = False, keyframes: KeyframeCache | None = None,
                       kept_only: bool = False) -> PnpResult:
    """Pose of the camera that took ``image_rgb`` by matching it to the NeRF rendered at the start pose.

    Each round renders at the current pose (``render_scale`` x the image's size), matches, lifts the
    rendering's keypoints with their rendered depth and solves PnP; a later round starts from the
    previous round's pose, whose rendering looks more like the image (more, better matches).

    A round that another follows needs only ``min(6, min_inliers)`` inliers: it only has to bring the
    rendering closer, and the next round's matches judge it. The result is the last successful round's,
    and it needs ``min_inliers`` (``nerf_T_optical`` None otherwise). ``observed``: the image's
    keypoints and descriptors from ``matcher.detect``, when the caller tries several starts.

    ``pool``: the result is instead one PnP on the matches of every successful round together. A
    round's few dozen matches leave the pose noisy along the direction a mostly flat object hardly
    constrains (a shift with a compensating turn): on the watch scene, successive rounds' poses
    jumped between 1 and 13 "cm" from the truth, the pooled one stayed within 2-4. All rounds'
    points are in the NeRF frame, so their matches stack; RANSAC drops the far first rendering's
    wrong ones.

    ``keyframes``: the first round reuses a cached rendering near the start instead of rendering
    (see :class:`KeyframeCache`); every fresh rendering is cached. ``kept_only``: never render; without a
    kept rendering near the start the result is a failure saying so.
    """
    observed = observed if observed is not None else matcher.detect(np.asarray(image_rgb))
    pose_optical = np.asarray(start_nerf_T_optical, dtype=np.float64)
    best = PnpResult(None, 0, 0, "no round ran")
    pooled_points, pooled_uv = [], []
    reused = False
    for round_index in range(rounds):
        keyframe = keyframes.nearest(pose_optical, render_scale) if keyframes is not None and round_index == 0 \
            else None
        reused = keyframe is not None
        if keyframe is None and kept_only:
            return PnpResult(None, 0, 0, f"no kept {render_scale:g}x rendering near the start")
        if keyframe is None:
            keyframe = render_keyframe(model, intrinsics, pose_optical, matcher, render_scale, n_samples, device)
            if keyframes is not None:
                keyframes.add(keyframe)
        needed = min_inliers if round_index == rounds - 1 and not pool else min(_STEPPING_STONE_INLIERS, min_inliers)
        result, points, uv = align_to_keyframe(keyframe, observed, intrinsics, matcher, needed)
        if reused and result.nerf_T_optical is not None:
            result.note = f"{result.note} (cached rendering)"
        if result.nerf_T_optical is None:
            break
        best = result
        pose_optical = result.nerf_T_optical
        pooled_points.append(points)
        pooled_uv.append(uv)
    if pool and len(pooled_points) > 1:
        together = solve_pnp(np.concatenate(pooled_points), np.concatenate(pooled_uv), intrinsics,
                             pixel_tolerance(intrinsics), min_inliers)
        if together.nerf_T_optical is not None:
            together.note = f"{together.note} over {len(pooled_points)} rounds"
            return together
    if best.nerf_T_optical is None or best.inliers < min_inliers:
        last_failed = result.nerf_T_optical is None
        return PnpResult(None, best.inliers, best.matches,
                         result.note if last_failed else f"{best.inliers} inliers < {min_inliers}")
    return best
