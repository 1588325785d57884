"""Plausibility gates: a pose outside the scene or beyond its prior's covariance is refused, whatever its loss."""
import numpy as np
import pytest

from fault_utils import camera_prior, tiny_pipeline
from inerf_ros.pipeline import PlausibilityConfig, implausibility

AABB = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]


@pytest.mark.parametrize("centre, refused", [([0.0, 0.0, -3.0], False), ([0.0, 0.0, -4.9], False),
                                             ([0.0, 0.0, -5.1], True), ([50.0, 0.0, 0.0], True)])
def test_scene_box_plus_margin(centre, refused):
    pose = np.eye(4)
    pose[:3, 3] = centre
    why = implausibility(pose, AABB, PlausibilityConfig(scene_margin=2.0))   # box side 2: 4 units outside
    assert bool(why) == refused and (not refused or "outside the scene box" in why)


def test_distance_from_the_prior_against_its_covariance():
    prior = camera_prior()
    covariance = np.diag([0.01 ** 2] * 3 + [np.radians(1.0) ** 2] * 3)
    config = PlausibilityConfig(prior_gate_sigma=8.0)
    moved = prior.copy()
    moved[0, 3] += 0.07   # 7 sigma: allowed
    assert implausibility(moved, AABB, config, prior, covariance) == ""
    moved[0, 3] += 0.02   # 9 sigma
    assert "moved 0.09 units from its prior" in implausibility(moved, AABB, config, prior, covariance)
    turned = prior.copy()
    turned[:3, :3] = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])   # 90 deg
    assert "turned 90.0 deg" in implausibility(turned, AABB, config, prior, covariance)
    assert implausibility(turned, AABB, PlausibilityConfig(prior_gate_sigma=0.0), prior, covariance) == ""
    assert "not finite" in implausibility(np.full((4, 4), np.nan), AABB, config)


def test_a_refused_estimate_is_untrusted_and_not_tracked_from():
    from inerf_ros.optim.inerf import OptimizerConfig
    from inerf_ros.optim.localizer import LocalizerConfig, Prior
    from inerf_ros.optim.sampling import SamplingConfig
    from inerf_ros.pipeline import FrameInput

    from inerf_ros.camera import Intrinsics

    pipeline = tiny_pipeline()
    pipeline.update_config(OptimizerConfig(max_iterations=2, covariance_rays=64, feature_align="none"))
    pipeline.update_config(SamplingConfig(num_rays=64))
    pipeline.update_config(LocalizerConfig(max_tracking_loss=10.0))   # the loss alone would trust anything
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    intrinsics = Intrinsics(64, 48, 60.0, 60.0, 31.5, 23.5)
    far = Prior(camera_prior(-50.0), 10.0, "posecnn")   # a prior 50 units off: the estimate stays near it
    result = pipeline.localize(FrameInput(rgb, intrinsics, 10.0, far))
    assert result.estimate is None and not result.trusted and "outside the scene box" in result.message
    follow = pipeline.localize(FrameInput(rgb, intrinsics, 10.1))
    assert follow.estimate is None and follow.prior_source == "none"   # no tracking from the refused pose
