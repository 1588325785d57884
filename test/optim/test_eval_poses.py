"""eval-poses start perturbations: the protocols' magnitudes and their scaling to the scene."""
import numpy as np
import pytest
import torch

from inerf_ros import evaluation, frames, lie
from inerf_ros.optim.evaluate import perturb, protocol_unit

TRUTH = frames.look_at([1.8, -1.5, 1.1], (0.0, 0.0, 0.0))


def _errors(start):
    rotation, translation = lie.pose_error(torch.from_numpy(start), torch.from_numpy(TRUTH))
    return float(rotation), float(translation)


def test_prior_protocol_is_exactly_10_degrees_and_5_cm():
    rng = np.random.default_rng(0)
    for _ in range(20):
        rotation, translation = _errors(perturb(TRUTH, "prior", 2.0, rng))
        assert rotation == pytest.approx(10.0, abs=1e-9)
        assert translation == pytest.approx(0.1, abs=1e-12)  # 0.05 x 2 units per metre


def test_inerf_protocol_stays_within_40_degrees_and_the_box():
    rng = np.random.default_rng(1)
    starts = [perturb(TRUTH, "inerf", 1.0, rng) for _ in range(200)]
    rotations = [_errors(s)[0] for s in starts]
    shifts = np.array([s[:3, 3] - TRUTH[:3, 3] for s in starts])
    assert max(rotations) <= 40.0 + 1e-9 and max(rotations) > 30.0
    assert np.abs(shifts).max() <= 0.2 and np.abs(shifts).max() > 0.15
    for start in starts[:5]:  # rotations turn the camera about its own centre
        np.testing.assert_allclose(start[:3, :3] @ start[:3, :3].T, np.eye(3), atol=1e-12)


def test_protocol_units_scale_inerf_starts_to_the_scene_and_keep_priors_metric():
    metric = evaluation.TranslationScale(metres_per_unit=0.5, metric=True, mean_camera_distance=2.0)
    relative = evaluation.TranslationScale(metres_per_unit=1.0, metric=False, mean_camera_distance=8.0)
    assert protocol_unit("inerf", metric) == pytest.approx(0.5)  # 2 units / 4: Blender's 4-unit distance
    assert protocol_unit("prior", metric) == pytest.approx(2.0)  # 5 cm is 0.1 units at 0.5 m per unit
    assert protocol_unit("prior", relative) == pytest.approx(2.0)


def test_learning_rate_schedules():
    from inerf_ros.optim.inerf import OptimizerConfig, _lr_factor

    step = OptimizerConfig(lr_decay=0.5, lr_decay_every=10)
    assert [_lr_factor(step, i, 30) for i in (1, 10, 11, 21)] == [1.0, 1.0, 0.5, 0.25]
    cosine = OptimizerConfig(lr_schedule="cosine", lr_min_fraction=0.1)
    assert _lr_factor(cosine, 1, 30) == pytest.approx(1.0)
    assert _lr_factor(cosine, 30, 30) == pytest.approx(0.1)
    assert _lr_factor(cosine, 1, 1) == pytest.approx(1.0)
    factors = [_lr_factor(cosine, i, 30) for i in range(1, 31)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))


def test_default_method_is_the_shipped_node_and_inerf_is_the_paper():
    import argparse

    from inerf_ros import params_yaml
    from inerf_ros.optim.evaluate import add_arguments, method_configs
    from inerf_ros.optim.inerf import OptimizerConfig
    from inerf_ros.optim.sampling import SamplingConfig

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    optimizer, sampling, strategies = method_configs(parser.parse_args(["model", "data"]))
    shipped = params_yaml.node_config(OptimizerConfig)
    assert optimizer == shipped and optimizer.feature_align != "none"
    assert sampling == params_yaml.node_config(SamplingConfig)
    assert strategies == [sampling.strategy]
    optimizer, sampling, strategies = method_configs(parser.parse_args(["model", "data", "--method", "inerf"]))
    assert optimizer == OptimizerConfig() and optimizer.feature_align == "none" and optimizer.max_iterations == 300
    assert sampling == SamplingConfig() and strategies == ["random", "interest_regions"]
    optimizer, sampling, _ = method_configs(parser.parse_args(["model", "data", "--num-rays", "99", "--seed", "3",
                                                               "--feature-align", "none"]))
    assert sampling.num_rays == 99 and optimizer.seed == 3 and optimizer.feature_align == "none"
    assert optimizer.max_iterations == shipped.max_iterations  # the rest stays the node's
