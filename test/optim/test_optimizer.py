"""The iNeRF optimizer on a field built in the test: recovery, hypotheses, tracking, bad input."""
import re

import numpy as np
import pytest
import torch

from optim_test_utils import perturbed
from inerf_ros import lie
from inerf_ros.nerf.appearance import fit_affine_colour
from inerf_ros.optim.inerf import OptimizerConfig, PoseOptimizer
from inerf_ros.optim.localizer import Localizer, LocalizerConfig, Prior, _Tracked
from inerf_ros.optim.sampling import SamplingConfig


def errors(estimate_pose, gt_pose):
    rot, trans = lie.pose_error(torch.from_numpy(estimate_pose), torch.from_numpy(gt_pose))
    return float(rot), float(trans)


def test_recovers_a_perturbed_pose(box_nerf, box_view):
    image, intrinsics, gt = box_view
    start = perturbed(gt, 10.0, [0.3, -0.5, 0.8], [0.08, -0.05, 0.06])
    assert errors(start, gt)[0] > 9.9
    optimizer = PoseOptimizer(box_nerf, OptimizerConfig(max_iterations=100, learning_rate=0.02),
                              SamplingConfig(num_rays=256))
    estimate = optimizer.estimate(image, intrinsics, start, keep_history=True)
    rot, trans = errors(estimate.nerf_T_optical, gt)
    assert rot < 2.0 and trans < 0.06, (rot, trans, estimate.iterations)  # from 10 deg and 0.11 units
    assert len(estimate.history) == estimate.iterations and estimate.losses[-1] < estimate.losses[0]
    assert estimate.covariance.shape == (6, 6) and np.all(np.linalg.eigvalsh(estimate.covariance) > -1e-12)


def test_hypotheses_find_the_right_basin(box_nerf, box_view):
    image, intrinsics, gt = box_view
    # 35 degrees about the camera's own down axis: the box leaves most of the view.
    down = gt[:3, 1]
    start = perturbed(gt, 35.0, down, [0.0, 0.0, 0.0])
    config = OptimizerConfig(solver="lm", max_iterations=30, hypothesis_rotation_deg=35.0,
                             hypothesis_translation=0.05, resample_every=10)
    sampling = SamplingConfig(num_rays=128)
    single = PoseOptimizer(box_nerf, config, sampling).estimate(image, intrinsics, start)
    many = PoseOptimizer(box_nerf, config, sampling).estimate(image, intrinsics, start, num_hypotheses=8)
    rot_single, _ = errors(single.nerf_T_optical, gt)
    rot_many, trans_many = errors(many.nerf_T_optical, gt)
    assert rot_single > 5.0, rot_single  # one hypothesis stays in the wrong basin
    assert rot_many < 1.0 and trans_many < 0.02, (rot_many, trans_many)
    assert many.num_hypotheses == 8


def test_huber_and_coarse_to_fine_also_recover(box_nerf, box_view):
    image, intrinsics, gt = box_view
    start = perturbed(gt, 8.0, [1.0, 0.2, 0.0], [0.0, 0.06, -0.04])
    config = OptimizerConfig(solver="lm", max_iterations=40, loss="huber", coarse_to_fine=True)
    estimate = PoseOptimizer(box_nerf, config, SamplingConfig(num_rays=256)).estimate(image, intrinsics, start)
    rot, trans = errors(estimate.nerf_T_optical, gt)
    assert rot < 1.0 and trans < 0.03, (rot, trans)


def test_mask_region_sampling_is_used_and_empty_mask_falls_back(box_nerf, box_view):
    image, intrinsics, gt = box_view
    start = perturbed(gt, 5.0, [0.0, 0.0, 1.0], [0.02, 0.0, 0.0])
    optimizer = PoseOptimizer(box_nerf, OptimizerConfig(solver="lm", max_iterations=20),
                              SamplingConfig(strategy="mask_region", num_rays=256))
    mask = (image.astype(int).sum(-1) < 700).astype(np.uint8)  # the box (the background is white)
    estimate = optimizer.estimate(image, intrinsics, start, label_mask=mask)
    assert estimate.sampling_strategy == "mask_region" and errors(estimate.nerf_T_optical, gt)[0] < 0.5
    empty = optimizer.estimate(image, intrinsics, start, label_mask=np.zeros_like(mask), max_iterations=5)
    assert empty.sampling_strategy == "random" and "empty" in empty.note


@pytest.mark.parametrize("bad", [np.full((4, 4), np.nan), np.eye(3)])
def test_bad_start_poses_are_rejected(box_nerf, box_view, bad):
    image, intrinsics, _ = box_view
    with pytest.raises(ValueError, match="NaN|4x4"):
        PoseOptimizer(box_nerf).estimate(image, intrinsics, bad)


def test_wrong_image_size_is_rejected(box_nerf, box_view):
    image, intrinsics, gt = box_view
    with pytest.raises(ValueError, match="does not match the intrinsics"):
        PoseOptimizer(box_nerf).estimate(image[:10], intrinsics, gt)


def test_localizer_tracks_between_priors_and_reports_no_prior(box_nerf, box_view):
    image, intrinsics, gt = box_view
    optimizer = PoseOptimizer(box_nerf, OptimizerConfig(solver="lm", max_iterations=20),
                              SamplingConfig(num_rays=256))
    localizer = Localizer(optimizer, LocalizerConfig(tracking_iterations=5, max_tracking_loss=1.0))
    none = localizer.localize(image, intrinsics, 0.0)
    assert none.estimate is None and none.prior_source == "none" and "no prior" in none.message
    first = localizer.localize(image, intrinsics, 1.0, Prior(perturbed(gt, 5.0, [0, 1, 0], [0.03, 0, 0]), 1.0))
    assert first.prior_source == "posecnn" and errors(first.estimate.nerf_T_optical, gt)[0] < 1.5
    tracked = localizer.localize(image, intrinsics, 1.1)
    assert tracked.prior_source == "tracking" and tracked.estimate.iterations <= 5
    assert errors(tracked.estimate.nerf_T_optical, gt)[0] < 1.5
    stale = localizer.localize(image, intrinsics, 5.0, Prior(gt, 3.0))
    assert "ignored" in stale.message and stale.estimate is None  # stale prior, last estimate too old
    nan_prior = localizer.localize(image, intrinsics, 5.1, Prior(np.full((4, 4), np.nan), 5.1))
    assert nan_prior.estimate is None and "NaN" in nan_prior.message


def _render(nerf, intrinsics, nerf_T_optical):
    from inerf_ros import frames
    from inerf_ros.nerf.render import render_image

    with torch.no_grad():
        rgb = render_image(nerf, intrinsics, torch.from_numpy(frames.optical_to_opengl(nerf_T_optical)).float())
    return (rgb["rgb"].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _orbit(nerf_T_optical, degrees):
    """The camera carried about the NeRF's z axis through the origin (an arm circling the object)."""
    turn = np.eye(4)
    turn[:3, :3] = lie.so3_exp(torch.tensor([0.0, 0.0, np.radians(degrees)], dtype=torch.float64)).numpy()
    return turn @ nerf_T_optical


def test_kinematic_chain_carries_the_track_across_a_fast_turn(box_nerf, box_view):
    """Between two processed frames the arm turned the camera by 25 deg: constant velocity (no motion
    known) starts 25 deg off and is lost; the chain's relative motion starts on the truth.
    """
    image1, intrinsics, gt1 = box_view
    gt2 = _orbit(gt1, 25.0)
    image2 = _render(box_nerf, intrinsics, gt2)
    nerf_T_base = perturbed(np.eye(4), 30.0, [0.2, 0.4, 1.0], [0.5, -0.2, 0.1])  # where the robot stands
    base_T_cam1, base_T_cam2 = np.linalg.inv(nerf_T_base) @ gt1, np.linalg.inv(nerf_T_base) @ gt2
    optimizer = PoseOptimizer(box_nerf, OptimizerConfig(max_iterations=20, learning_rate=0.01, feature_align="none"),
                              SamplingConfig(num_rays=256))
    config = LocalizerConfig(tracking_iterations=5, max_tracking_loss=1.0, tracking_learning_rate=0.002,
                             max_tracking_gap_s=1.0)
    with_chain = Localizer(optimizer, config)
    with_chain.localize(image1, intrinsics, 1.0, Prior(gt1, 1.0), base_T_optical=base_T_cam1)
    start = with_chain.tracking_start(1.5, base_T_cam2)
    np.testing.assert_allclose(start, with_chain._last.nerf_T_optical @ np.linalg.inv(base_T_cam1) @ base_T_cam2)
    tracked = with_chain.localize(image2, intrinsics, 1.5, base_T_optical=base_T_cam2)
    assert tracked.prior_source == "tracking" and "kinematics" in tracked.message and tracked.trusted
    assert errors(tracked.estimate.nerf_T_optical, gt2)[0] < 1.0

    without = Localizer(optimizer, config)
    without.localize(image1, intrinsics, 1.0, Prior(gt1, 1.0))
    lost = without.localize(image2, intrinsics, 1.5)
    assert errors(lost.estimate.nerf_T_optical, gt2)[0] > 15.0
    # a chain older than max_kinematic_gap_s, or NaN, does not start a track
    assert with_chain.tracking_start(with_chain._last.stamp_s + config.max_kinematic_gap_s + 0.1, base_T_cam2) is None
    nan = with_chain.localize(image2, intrinsics, 1.6, base_T_optical=np.full((4, 4), np.nan))
    assert "NaN" in nan.message


def test_a_prior_that_disagrees_with_a_held_track_is_reported_not_taken(box_nerf, box_view):
    image, intrinsics, gt = box_view
    optimizer = PoseOptimizer(box_nerf, OptimizerConfig(max_iterations=10, learning_rate=0.01, feature_align="none"),
                              SamplingConfig(num_rays=128))
    config = LocalizerConfig(tracking_iterations=3, max_tracking_loss=1.0, tracking_learning_rate=0.002,
                             reanchor_every_s=0.25, held_track_estimates=2)
    localizer = Localizer(optimizer, config, metres_per_unit=1.0)
    base_T_cam = np.linalg.inv(np.eye(4)) @ gt  # a base at the NeRF origin; the arm holds still
    localizer.localize(image, intrinsics, 0.0, Prior(gt, 0.0), base_T_optical=base_T_cam)
    for stamp in (0.1, 0.2):  # two trusted kinematic tracking estimates: the track is held
        assert localizer.localize(image, intrinsics, stamp, base_T_optical=base_T_cam).prior_source == "tracking"
    wrong = perturbed(gt, 0.0, [0, 0, 1], [0.2, 0.0, 0.0])  # 20 cm off
    result = localizer.localize(image, intrinsics, 0.3, Prior(wrong, 0.3), base_T_optical=base_T_cam)
    assert result.prior_source == "tracking" and "not taken" in result.message
    assert 18.0 < float(re.search(r"prior ([0-9.]+) cm", result.message).group(1)) < 22.0
    assert errors(result.estimate.nerf_T_optical, gt)[1] < 0.02
    agreeing = perturbed(gt, 1.0, [0, 0, 1], [0.01, 0.0, 0.0])  # agrees: no full estimate needed
    result = localizer.localize(image, intrinsics, 0.6, Prior(agreeing, 0.6), base_T_optical=base_T_cam)
    assert result.prior_source == "tracking" and "agrees with the held kinematic track" in result.message
    lost = Localizer(optimizer, config, metres_per_unit=1.0)  # no track held: a prior is taken
    assert lost.localize(image, intrinsics, 0.6, Prior(agreeing, 0.6),
                         base_T_optical=base_T_cam).prior_source == "posecnn"


def test_tracking_learning_rate_keeps_an_accurate_start_accurate(box_nerf, box_view):
    """Adam's first steps move every twist coordinate by about the step size: from a start that is
    already right, a cold-start step size throws the tracking estimate off, a small one does not.
    """
    image, intrinsics, gt = box_view
    optimizer = PoseOptimizer(box_nerf, OptimizerConfig(solver="adam", learning_rate=0.05),
                              SamplingConfig(num_rays=256))

    def tracked_error(tracking_learning_rate):
        localizer = Localizer(optimizer, LocalizerConfig(tracking_iterations=3, max_tracking_loss=1.0,
                                                         tracking_learning_rate=tracking_learning_rate))
        localizer._last = _Tracked(1.0, gt.copy(), None)  # as if the previous frame had been estimated exactly
        result = localizer.localize(image, intrinsics, 1.05)
        assert result.prior_source == "tracking"
        return errors(result.estimate.nerf_T_optical, gt)[0]

    assert tracked_error(0.0) > 2.0  # the cold step size: 3 steps of ~3 degrees
    assert tracked_error(0.002) < 0.5


def test_exact_jacobian_matches_autograd_through_the_pose(box_nerf, box_view):
    """The per-ray chain rule (R^T g_o, R^T (d x g_d)) equals autograd of each residual w.r.t. the twist."""
    image, intrinsics, gt = box_view
    optimizer = PoseOptimizer(box_nerf, OptimizerConfig(), SamplingConfig(num_rays=64))
    pose = torch.from_numpy(frames_gl(perturbed(gt, 3.0, [0, 1, 0], [0.02, 0, 0])))[None]
    uv = torch.tensor([[40.0, 30.0], [35.0, 28.0], [45.0, 33.0], [38.0, 25.0]])
    target = torch.zeros(4, 3)
    _, jacobian = optimizer.residual_jacobian(pose.clone(), intrinsics, uv, target)
    xi = torch.zeros(1, 6, dtype=torch.float64, requires_grad=True)
    _, residual = optimizer._render_loss(pose, xi, intrinsics, uv, target, None)
    brute = torch.stack([torch.stack([torch.autograd.grad(residual[0, i, c], xi, retain_graph=True)[0][0]
                                      for c in range(3)]) for i in range(4)])
    assert brute.abs().max() > 0.05  # the rays hit the box: a real test
    torch.testing.assert_close(jacobian[0], brute, atol=1e-5, rtol=1e-4)


def frames_gl(nerf_T_optical):
    from inerf_ros import frames
    return frames.optical_to_opengl(nerf_T_optical)


@pytest.mark.parametrize("ray_refresh_every", [1, 8])
def test_levenberg_marquardt_converges_in_few_iterations(box_nerf, box_view, ray_refresh_every, monkeypatch):
    image, intrinsics, gt = box_view
    start = perturbed(gt, 10.0, [0.3, -0.5, 0.8], [0.08, -0.05, 0.06])
    config = OptimizerConfig(solver="lm", max_iterations=60, min_iterations=5, converge_steps=3,
                             ray_refresh_every=ray_refresh_every)
    renders = []
    render_rays = box_nerf.render_rays
    monkeypatch.setattr(box_nerf, "render_rays", lambda *a, **kw: renders.append(1) or render_rays(*a, **kw))
    estimate = PoseOptimizer(box_nerf, config, SamplingConfig(num_rays=512)).estimate(image, intrinsics, start)
    rot, trans = errors(estimate.nerf_T_optical, gt)
    assert rot < 0.3 and trans < 0.005, (rot, trans)
    assert estimate.converged and estimate.iterations < 40, estimate.iterations
    # Fixed pixels: the render that scores a step also linearises the next one (plus one extra render
    # per batch of pixels, where the next step cannot be scored on the same pixels).
    batches = -(-estimate.iterations // ray_refresh_every)
    assert len(renders) == estimate.iterations + batches, (len(renders), estimate.iterations)


def test_lm_covariance_reuses_its_jacobian_and_matches_a_fresh_one(box_nerf, box_view):
    """LM's covariance comes from its last step's J^T J / sigma^2; it must agree with a Gauss-Newton
    pass at the final pose on fresh rays (the block rotation to NeRF axes keeps the eigenvalues).
    """
    image, intrinsics, gt = box_view
    start = perturbed(gt, 5.0, [0.3, -0.5, 0.8], [0.03, -0.02, 0.02])
    config = OptimizerConfig(solver="lm", max_iterations=25, ray_refresh_every=5)
    optimizer = PoseOptimizer(box_nerf, config, SamplingConfig(num_rays=512))
    estimate = optimizer.estimate(image, intrinsics, start)
    reused = np.sort(np.linalg.eigvalsh(estimate.covariance))
    assert np.all(reused > 0)

    pose = torch.from_numpy(frames_gl(estimate.nerf_T_optical))[None]
    uv = torch.rand(1024, 2, generator=torch.Generator().manual_seed(1)) * torch.tensor(
        [intrinsics.width - 1, intrinsics.height - 1])
    target_image = torch.from_numpy(image).float() / 255
    target = target_image[uv[:, 1].round().long(), uv[:, 0].round().long()]
    residual, jacobian = optimizer.residual_jacobian(pose, intrinsics, uv.round(), target)
    jacobian = jacobian.reshape(-1, 6).numpy()
    fresh = np.sort(np.linalg.eigvalsh(np.linalg.inv(jacobian.T @ jacobian / float((residual**2).mean()))))
    ratio = np.sqrt(reused / fresh)  # standard deviations along the principal axes
    assert np.all((ratio > 0.3) & (ratio < 3.0)), ratio


def test_exposure_fit_recovers_a_gain_and_offset_per_channel():
    generator = torch.Generator().manual_seed(0)
    rendered = torch.rand(2, 2000, 3, generator=generator, dtype=torch.float64)
    gain_true, offset_true = torch.tensor([0.7, 0.9, 1.2]), torch.tensor([0.05, -0.02, 0.0])
    target = rendered[1] * gain_true + offset_true
    gain, offset = fit_affine_colour(rendered, target)
    assert gain.shape == offset.shape == (2, 1, 3)
    torch.testing.assert_close(gain[1, 0].float(), gain_true, atol=0.01, rtol=0)
    torch.testing.assert_close(offset[1, 0].float(), offset_true, atol=0.01, rtol=0)
    # A flat batch cannot tell gain from offset: the ridge picks the smallest correction that explains
    # it (a well-defined answer instead of a singular system).
    flat_gain, flat_offset = fit_affine_colour(torch.full((1, 100, 3), 0.5, dtype=torch.float64),
                                               torch.full((100, 3), 0.4))
    assert torch.isfinite(flat_gain).all() and (flat_gain - 1).abs().max() < 0.1
    torch.testing.assert_close(flat_gain * 0.5 + flat_offset, torch.full((1, 1, 3), 0.4, dtype=torch.float64),
                               atol=1e-3, rtol=0)


def test_affine_exposure_localizes_a_darker_photo(box_nerf, box_view):
    """A camera exposing darker than the NeRF's photos: fixed colours pull the pose off, the fitted
    gain and offset do not.
    """
    image, intrinsics, gt = box_view
    darker = (image.astype(np.float64) * 0.6 + 10).round().astype(np.uint8)
    start = perturbed(gt, 6.0, [0.3, -0.5, 0.8], [0.04, -0.03, 0.03])

    def final_errors(exposure):
        config = OptimizerConfig(solver="lm", max_iterations=40, exposure=exposure)
        estimate = PoseOptimizer(box_nerf, config, SamplingConfig(num_rays=512)).estimate(darker, intrinsics, start)
        return errors(estimate.nerf_T_optical, gt)

    rot_fixed, trans_fixed = final_errors("fixed")
    rot, trans = final_errors("affine")
    assert rot < 0.5 and trans < 0.01, (rot, trans)
    assert rot_fixed > 3 * rot or trans_fixed > 3 * trans, (rot_fixed, trans_fixed, rot, trans)


def test_foreground_sampling_ignores_a_backdrop_the_nerf_does_not_model(box_nerf, box_view):
    """The photo's backdrop differs from the NeRF's (a dark band beside the box, as a wall or a room
    the field holds only as a far-away backdrop): pixels drawn from the whole image pull the box's
    silhouette towards the band, pixels on the field's own surfaces do not.
    """
    image, intrinsics, gt = box_view
    photo = image.copy()
    backdrop = image.astype(int).sum(-1) >= 700  # the NeRF's white background
    band = backdrop.copy()
    band[:, 40:] = False
    photo[band] = image[~backdrop].mean(0).round().astype(np.uint8)  # the box's own mean colour
    start = perturbed(gt, 4.0, [0.3, -0.5, 0.8], [0.03, -0.02, 0.02])

    def final_errors(strategy):
        config = OptimizerConfig(solver="lm", max_iterations=40)
        optimizer = PoseOptimizer(box_nerf, config, SamplingConfig(strategy=strategy, num_rays=512))
        estimate = optimizer.estimate(photo, intrinsics, start)
        assert estimate.sampling_strategy == strategy, estimate.note
        return errors(estimate.nerf_T_optical, gt)

    rot_all, trans_all = final_errors("random")
    rot, trans = final_errors("foreground")
    assert rot < 0.5 and trans < 0.01, (rot, trans)
    assert rot_all > 3 * rot or trans_all > 3 * trans, (rot_all, trans_all, rot, trans)
