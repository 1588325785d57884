"""Feature alignment: PnP on rendered depth, against an analytic textured box with exact geometry."""
import dataclasses

import numpy as np
import pytest
import torch

from inerf_ros import frames, lie
from inerf_ros.camera import Intrinsics
from inerf_ros.optim import features
from inerf_ros.optim.inerf import OptimizerConfig, PoseOptimizer

INTRINSICS = Intrinsics(160, 120, 140.0, 140.0, 79.5, 59.5)
TRUTH = frames.look_at([1.8, -1.5, 1.1], (0.0, 0.0, 0.0))
FAR_START = frames.look_at([1.6, -1.2, 1.4], (0.2, 0.15, -0.1))  # 13 deg / 0.47 units off


@pytest.fixture(scope="module")
def box_scene():
    from inerf_ros.nerf.render import render_image
    from inerf_ros.testing import TexturedBoxScene

    scene = TexturedBoxScene()
    rgb = render_image(scene, INTRINSICS, torch.from_numpy(frames.optical_to_opengl(TRUTH)).float())["rgb"]
    return scene, (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _errors(pose, truth=TRUTH):
    rotation, translation = lie.pose_error(torch.from_numpy(pose), torch.from_numpy(truth))
    return float(rotation), float(translation)


def test_solve_pnp_is_exact_on_clean_points_and_rejects_outliers():
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.5, 0.5, size=(60, 3))
    optical_T_nerf = np.linalg.inv(TRUTH)
    cam = points @ optical_T_nerf[:3, :3].T + optical_T_nerf[:3, 3]
    uv = cam[:, :2] / cam[:, 2:] * [INTRINSICS.fx, INTRINSICS.fy] + [INTRINSICS.cx, INTRINSICS.cy]
    uv[:15] = rng.uniform(0, 120, size=(15, 2))  # a quarter are wrong matches
    result = features.solve_pnp(points, uv, INTRINSICS, tolerance_px=1.0)
    assert result.inliers == 45
    np.testing.assert_allclose(result.nerf_T_optical, TRUTH, atol=1e-6)


def test_solve_pnp_reports_too_few_points():
    result = features.solve_pnp(np.zeros((5, 3)), np.zeros((5, 2)), INTRINSICS, 1.0)
    assert result.nerf_T_optical is None and "5 matches" in result.note


def test_approximate_matching_repeats_itself_whatever_ran_before():
    """FLANN's randomised trees draw from OpenCV's global RNG; the matcher reseeds it per call, so a
    registration gives the same verdicts run after run.
    """
    import cv2

    rng = np.random.default_rng(0)
    a = rng.random((3000, 128)).astype(np.float32)
    b = (a + 0.5 * rng.random((3000, 128))).astype(np.float32)  # near neighbours the trees can miss
    matcher = features.FeatureMatcher("sift", exact=False, seed=7)
    first = matcher.match(a, b)
    cv2.setRNGSeed(12345)  # someone else used the RNG in between
    assert matcher.match(a, b) == first
    assert features.FeatureMatcher("sift", exact=False, seed=8).match(a, b) != first  # the seed is what decides
    assert len(first) > 1000


def _project(optical_T_nerf, points, intrinsics=INTRINSICS):
    cam = points @ optical_T_nerf[:3, :3].T + optical_T_nerf[:3, 3]
    return cam[:, :2] / cam[:, 2:] * [intrinsics.fx, intrinsics.fy] + [intrinsics.cx, intrinsics.cy]


def test_triangulate_is_exact_and_drops_wrong_matches_points_behind_and_parallel_rays():
    rng = np.random.default_rng(1)
    points = rng.uniform(-0.5, 0.5, size=(40, 3))
    a_T_nerf, b_T_nerf = np.linalg.inv(TRUTH), np.linalg.inv(FAR_START)
    uv_a, uv_b = _project(a_T_nerf, points), _project(b_T_nerf, points)
    # Wrong matches: 9 px off their epipolar lines (the line of the pixel in a, seen from b).
    b_T_a = b_T_nerf @ np.linalg.inv(a_T_nerf)
    t = b_T_a[:3, 3]
    skew = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    K_inv = np.linalg.inv(INTRINSICS.K)
    lines = (K_inv.T @ skew @ b_T_a[:3, :3] @ K_inv @ np.c_[uv_a[:5], np.ones(5)].T).T
    uv_b[:5] += 9.0 * lines[:, :2] / np.linalg.norm(lines[:, :2], axis=1, keepdims=True)
    triangulated, keep, parallax = features.triangulate(INTRINSICS, a_T_nerf, b_T_nerf, uv_a, uv_b, 1.0)
    assert keep.tolist() == [False] * 5 + [True] * 35
    np.testing.assert_allclose(triangulated[keep], points[5:], atol=1e-8)
    assert parallax[keep].min() > 5.0
    # The same camera twice: every pair of rays is parallel, no point can be placed.
    assert not features.triangulate(INTRINSICS, a_T_nerf, a_T_nerf, uv_a, uv_a, 1.0)[1].any()
    # A point behind a camera reprojects onto its pixel too; it is still dropped.
    behind = np.array([TRUTH[:3, 3] - 0.5 * TRUTH[:3, 2]])  # half a unit behind camera a
    mirrored = 2 * TRUTH[:3, 3] - behind  # in front of a, on the same ray through the pixel
    _, keep_behind, _ = features.triangulate(INTRINSICS, a_T_nerf, b_T_nerf, _project(a_T_nerf, mirrored),
                                             _project(b_T_nerf, behind), 1.0)
    assert not keep_behind.any()
    assert features.triangulate(INTRINSICS, a_T_nerf, b_T_nerf, np.zeros((0, 2)), np.zeros((0, 2)), 1.0)[0].shape \
        == (0, 3)


def test_triangulate_undistorts_the_pixels_of_a_distorted_camera():
    import cv2

    distorted = dataclasses.replace(INTRINSICS, distortion_model="plumb_bob", distortion=(-0.2, 0.05, 0.001, 0.0, 0.0))
    rng = np.random.default_rng(2)
    points = rng.uniform(-0.4, 0.4, size=(20, 3))
    uvs = []
    for nerf_T_optical in (TRUTH, FAR_START):
        optical_T_nerf = np.linalg.inv(nerf_T_optical)
        uv, _ = cv2.projectPoints(points, cv2.Rodrigues(optical_T_nerf[:3, :3])[0], optical_T_nerf[:3, 3],
                                  distorted.K, np.asarray(distorted.distortion))
        uvs.append(uv[:, 0])
    triangulated, keep, _ = features.triangulate(distorted, np.linalg.inv(TRUTH), np.linalg.inv(FAR_START),
                                                 uvs[0], uvs[1], 0.5)
    assert keep.all()
    np.testing.assert_allclose(triangulated, points, atol=1e-5)


def test_align_to_rendering_recovers_a_far_start(box_scene):
    scene, image = box_scene
    assert _errors(FAR_START)[0] > 10
    result = features.align_to_rendering(scene, image, INTRINSICS, FAR_START, features.FeatureMatcher("sift"),
                                         render_scale=1.0, rounds=2)
    assert result.nerf_T_optical is not None, result.note
    rotation, translation = _errors(result.nerf_T_optical)
    assert rotation < 0.5 and translation < 0.02, (rotation, translation)
    assert result.inliers >= 15 and result.inliers <= result.matches


def test_pooled_alignment_solves_one_pnp_on_every_rounds_matches(box_scene):
    scene, image = box_scene
    matcher = features.FeatureMatcher("sift", max_features=150)
    last = features.align_to_rendering(scene, image, INTRINSICS, FAR_START, matcher, render_scale=1.0, rounds=3)
    pooled = features.align_to_rendering(scene, image, INTRINSICS, FAR_START, matcher, render_scale=1.0, rounds=3,
                                         pool=True)
    assert pooled.nerf_T_optical is not None and "over 3 rounds" in pooled.note, pooled.note
    assert pooled.matches > 2 * last.matches and pooled.inliers > 2 * last.inliers, (pooled, last)
    rotation, translation = _errors(pooled.nerf_T_optical)
    assert rotation < 0.5 and translation < 0.02, (rotation, translation)


def test_align_to_rendering_fails_cleanly_on_an_unrelated_image(box_scene):
    scene, _ = box_scene
    flat = np.full((INTRINSICS.height, INTRINSICS.width, 3), 90, np.uint8)
    result = features.align_to_rendering(scene, flat, INTRINSICS, TRUTH, features.FeatureMatcher("orb"))
    assert result.nerf_T_optical is None and result.note


def test_optimizer_with_feature_alignment_reaches_what_photometric_descent_alone_cannot(box_scene):
    scene, image = box_scene
    config = OptimizerConfig(max_iterations=60, feature_align_scale=1.0)
    plain = PoseOptimizer(scene, config).estimate(image, INTRINSICS, FAR_START)
    assert _errors(plain.nerf_T_optical)[0] > 5  # outside the photometric basin
    aligned = PoseOptimizer(scene, dataclasses.replace(config, feature_align="sift")).estimate(
        image, INTRINSICS, FAR_START)
    rotation, translation = _errors(aligned.nerf_T_optical)
    assert rotation < 0.3 and translation < 0.01, (rotation, translation)
    assert "feature alignment:" in aligned.note
    assert aligned.iterations <= config.refine_iterations


def test_optimizer_falls_back_to_photometric_steps_and_says_why(box_scene):
    scene, image = box_scene
    config = OptimizerConfig(max_iterations=5, feature_align="sift", feature_align_min_inliers=10000)
    estimate = PoseOptimizer(scene, config).estimate(image, INTRINSICS, FAR_START)
    assert "feature alignment failed" in estimate.note and "photometric only" in estimate.note
    assert estimate.iterations == 5


def test_per_call_overrides_turn_feature_alignment_off_and_refuse_other_settings(box_scene):
    scene, image = box_scene
    optimizer = PoseOptimizer(scene, OptimizerConfig(max_iterations=3, feature_align="sift"))
    estimate = optimizer.estimate(image, INTRINSICS, FAR_START, feature_align="none")
    assert "feature alignment" not in estimate.note
    with pytest.raises(ValueError, match="per-call"):
        optimizer.estimate(image, INTRINSICS, FAR_START, loss="huber")


def test_tracking_aligns_features_across_a_large_motion_between_frames(box_scene):
    """An arm can turn the camera by 10+ degrees between processed frames: with feature alignment the
    tracking estimate follows it, with photometric steps alone from the last pose it cannot.
    """
    from inerf_ros.nerf.render import render_image
    from inerf_ros.optim.localizer import Localizer, LocalizerConfig, Prior

    scene, image = box_scene
    moved = FAR_START  # the second frame's true pose: 13 deg / 0.47 units from the first
    rgb = render_image(scene, INTRINSICS, torch.from_numpy(frames.optical_to_opengl(moved)).float())["rgb"]
    moved_image = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    config = OptimizerConfig(max_iterations=20, feature_align="sift", feature_align_scale=1.0)
    for tracking_feature_align, expect_tracked in ((True, True), (False, False)):
        localizer = Localizer(PoseOptimizer(scene, config),
                              LocalizerConfig(tracking_iterations=5, max_tracking_loss=1.0, constant_velocity=False,
                                              tracking_feature_align=tracking_feature_align,
                                              tracking_feature_align_scale=1.0))
        first = localizer.localize(image, INTRINSICS, 0.0, Prior(TRUTH, 0.0))
        assert _errors(first.estimate.nerf_T_optical)[0] < 1.0
        tracked = localizer.localize(moved_image, INTRINSICS, 0.1)
        assert tracked.prior_source == "tracking"
        rotation, translation = _errors(tracked.estimate.nerf_T_optical, moved)
        assert (rotation < 1.0 and translation < 0.03) == expect_tracked, (rotation, translation)


def test_a_start_the_features_confirm_is_refined_gently(box_scene):
    scene, image = box_scene
    config = OptimizerConfig(max_iterations=100, feature_align="sift", feature_align_scale=1.0, refine_iterations=7)
    estimate = PoseOptimizer(scene, config).estimate(image, INTRINSICS, TRUTH)
    assert "feature alignment" in estimate.note and estimate.iterations <= 7
    assert _errors(estimate.nerf_T_optical)[0] < 0.3


def test_a_cached_rendering_serves_a_nearby_start_and_a_far_one_is_rendered(box_scene):
    """The keyframe cache: a start near a kept rendering reuses it (no render) and still aligns exactly;
    a start beyond the cache's angle renders afresh (and is kept).
    """
    scene, image = box_scene
    matcher = features.FeatureMatcher("sift")
    cache = features.KeyframeCache(capacity=4, max_angle_deg=8.0, max_shift=0.15)
    near_start = frames.look_at([1.75, -1.45, 1.15], (0.05, 0.0, 0.0))  # ~2 deg / 0.09 units off
    first = features.align_to_rendering(scene, image, INTRINSICS, near_start, matcher, keyframes=cache)
    assert (cache.hits, cache.misses, len(cache)) == (0, 1, 1)
    other_start = frames.look_at([1.8, -1.55, 1.05], (0.0, 0.05, 0.02))  # another start, close to the first
    second = features.align_to_rendering(scene, image, INTRINSICS, other_start, matcher, keyframes=cache)
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1) and "cached rendering" in second.note
    for result in (first, second):
        rotation, translation = _errors(result.nerf_T_optical)
        assert rotation < 0.5 and translation < 0.02, (rotation, translation)
    features.align_to_rendering(scene, image, INTRINSICS, FAR_START, matcher, keyframes=cache)  # 13 deg away
    assert (cache.hits, cache.misses, len(cache)) == (1, 2, 2)
    keyframe = cache.nearest(TRUTH, 1.0)
    assert keyframe is not None and 2.0 < keyframe.median_depth < 2.8  # the box from about 2.6 units
    assert cache.nearest(TRUTH, 0.5) is None  # another rendering scale is never served


def test_a_weak_small_alignment_is_retried_on_a_kept_larger_rendering_never_a_new_one(box_scene):
    """Tracking's small rendering of a far view gives few inliers; the retry uses a kept cold-size rendering only."""
    scene, image = box_scene
    matcher = features.FeatureMatcher("sift")
    cache = features.KeyframeCache(capacity=4, max_angle_deg=20.0, max_shift=0.4)
    start = frames.look_at([1.75, -1.45, 1.15], (0.05, 0.0, 0.0))
    missing = features.align_to_rendering(scene, image, INTRINSICS, start, matcher, 1.0, keyframes=cache,
                                          kept_only=True)
    assert missing.nerf_T_optical is None and "no kept 1x rendering" in missing.note and len(cache) == 0
    optimizer = PoseOptimizer(scene, config=OptimizerConfig(
        feature_align="sift", feature_align_scale=1.0, max_iterations=2, refine_iterations=2, covariance_rays=0,
        feature_align_tries=1, feature_align_retry_scale=1.0, feature_align_retry_inliers=10 ** 4))  # all "weak"
    optimizer.estimate(image, INTRINSICS, start)  # a "cold" estimate keeps its 1x rendering (no retry at 1x)
    kept = len(optimizer._keyframe_cache(optimizer.config))
    tracking = dict(feature_align_scale=0.3, feature_align_rounds=1)
    estimate = optimizer.estimate(image, INTRINSICS, start, **tracking)
    assert "at 1x after" in estimate.note, estimate.note
    assert len(optimizer._keyframe_cache(optimizer.config)) == kept + 1  # the 0.3x rendering; no new 1x one
    rotation, translation = _errors(estimate.nerf_T_optical)
    assert rotation < 0.5 and translation < 0.02, (rotation, translation)
    optimizer.config = dataclasses.replace(optimizer.config, feature_align_retry_scale=0.0)
    assert "after" not in optimizer.estimate(image, INTRINSICS, start, **tracking).note
