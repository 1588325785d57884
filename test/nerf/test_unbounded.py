"""Unbounded scenes: the contraction, the disparity-spaced samples, the box from SfM points, the presets."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inerf_ros.datasets.transforms import PosedImages
from inerf_ros.nerf import bounds, presets
from inerf_ros.nerf.field import FieldConfig, OccupancyGrid, contract, uncontract
from inerf_ros.nerf.render import lindisp_coordinate, lindisp_distance, sample_lindisp
from nerf_test_utils import look_at

TINY_FIELD = FieldConfig(n_levels=2, base_resolution=8, max_resolution=16, channels=2, hidden=16, geo_features=3,
                         sh_degree=1)


def test_contraction_is_the_identity_inside_and_bounded_outside():
    inside = torch.rand(500, 3, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(contract(inside), inside, rtol=0, atol=0)
    far = torch.randn(500, 3, dtype=torch.float64) * torch.logspace(0, 8, 500, dtype=torch.float64)[:, None]
    far = far[far.abs().amax(-1) > 1]
    out = contract(far).abs().amax(-1)
    assert bool((out > 1).all()) and bool((out < 2).all())
    # L-inf: a point's contracted norm is 2 - 1/|x|_inf, so the box maps to a cube, not a ball.
    x = torch.tensor([[4.0, 1.0, -2.0]], dtype=torch.float64)
    torch.testing.assert_close(contract(x), torch.tensor([[1.75, 0.4375, -0.875]], dtype=torch.float64))


def test_contraction_is_monotone_along_rays_and_inverted_by_uncontract():
    directions = torch.nn.functional.normalize(torch.randn(20, 3, dtype=torch.float64), dim=-1)
    t = torch.logspace(-2, 4, 200, dtype=torch.float64)
    norms = contract(directions[:, None, :] * t[None, :, None]).abs().amax(-1)
    assert bool((norms[:, 1:] > norms[:, :-1]).all())
    points = torch.randn(300, 3, dtype=torch.float64) * 5
    torch.testing.assert_close(uncontract(contract(points)), points)
    with pytest.raises(ValueError, match="< 2"):
        uncontract(torch.tensor([[2.0, 0.0, 0.0]]))


def test_contraction_gradcheck_outside_the_box():
    x = torch.tensor([[2.5, -0.7, 1.3], [0.3, 0.2, -0.5]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(contract, (x,))


def test_lindisp_samples_are_linear_then_disparity_and_fixed_to_the_camera():
    scale = 2.0
    s = torch.linspace(0.0, 0.999, 101)
    torch.testing.assert_close(lindisp_coordinate(lindisp_distance(s, scale), scale), s, atol=1e-5, rtol=1e-5)
    t_mid, deltas = sample_lindisp(3, 64, 0.05, 1000.0, scale, jitter=False)
    assert t_mid.shape == deltas.shape == (3, 64)
    assert bool((t_mid[:, 1:] > t_mid[:, :-1]).all()) and bool((deltas > 0).all())
    assert float(t_mid[0, 0]) > 0.05 and float(t_mid[0, -1]) < 1000.0
    inner = deltas[0][t_mid[0] < scale][:-1]  # the last one straddles the scale
    torch.testing.assert_close(inner, inner[:1].expand_as(inner))  # even spacing up to the scale
    assert float(deltas[0, -2]) > 10 * float(deltas[0, 0])  # then ever longer bins out to infinity
    jittered, _ = sample_lindisp(3, 64, 0.05, 1000.0, scale, jitter=True, generator=torch.Generator().manual_seed(0))
    edges = lindisp_distance(torch.linspace(float(lindisp_coordinate(torch.tensor(0.05), scale)),
                                            float(lindisp_coordinate(torch.tensor(1000.0), scale)), 65), scale)
    assert bool(((jittered >= edges[:-1]) & (jittered <= edges[1:])).all())


def test_contracted_occupancy_grid_covers_far_space():
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    grid = OccupancyGrid(aabb, 8, contraction="linf")
    far_point = torch.tensor([[50.0, 0.0, 0.0]])
    assert bool(grid.query(far_point).all())  # the bounded grid says False outside the box
    assert not bool(OccupancyGrid(aabb, 8).query(far_point).any())
    centres = grid.cell_centres()
    assert float(centres.abs().max()) == pytest.approx(4.0)  # the outer cells: 4 box half-sizes out
    torch.testing.assert_close(grid.cell_index(centres), torch.arange(8 ** 3))
    grid.occupied.zero_()
    grid.occupied.view(-1)[int(grid.cell_index(far_point))] = True
    assert bool(grid.query(far_point).all()) and not bool(grid.query(torch.zeros(1, 3)).any())


def test_box_from_points_ignores_outliers():
    rng = np.random.default_rng(0)
    points = rng.uniform([-1.0, -0.5, 0.0], [1.0, 0.5, 0.3], size=(2000, 3))
    outliers = rng.normal(0, 50.0, size=(20, 3))  # 1 %: SfM's stray far points
    box = bounds.box_from_points(np.concatenate([points, outliers]))
    assert np.all(box[0] > [-1.3, -0.7, -0.2]) and np.all(box[1] < [1.3, 0.7, 0.5])
    assert np.all(box[0] < [-0.9, -0.4, 0.02]) and np.all(box[1] > [0.9, 0.4, 0.28])
    with pytest.raises(ValueError, match="at least 8"):
        bounds.box_from_points(points[:5])


def test_box_from_frusta_finds_the_aimed_point_and_refuses_parallel_axes():
    target = np.array([0.5, -0.2, 0.1])
    ring = np.stack([look_at(target + 3 * np.array([math.cos(a), math.sin(a), 0.5]), target)
                     for a in np.linspace(0, 2 * math.pi, 12, endpoint=False)])
    box = bounds.box_from_frusta(ring)
    np.testing.assert_allclose(box.mean(0), target, atol=1e-6)
    parallel = np.stack([look_at((x, -3.0, 0.0), (x, 0.0, 0.0)) for x in np.linspace(-1, 1, 8)])
    assert bounds.box_from_frusta(parallel) is None


def _posed(images, poses, sparse_points=None, aabb=((-1, -1, -1), (1, 1, 1))) -> PosedImages:
    n = len(poses)
    return PosedImages(images=torch.as_tensor(images, dtype=torch.float32), nerf_T_cam=torch.tensor(
        np.stack(poses), dtype=torch.float32), intrinsics=[None] * n, file_names=[f"{i}" for i in range(n)],
        valid=torch.ones(images.shape[:3], dtype=torch.bool), aabb=torch.tensor(aabb, dtype=torch.float32),
        sparse_points=sparse_points)


def test_preset_choice_from_the_data():
    rng = np.random.default_rng(0)
    angles = np.linspace(0, 2 * math.pi, 8, endpoint=False)
    ring = [look_at(3 * np.array([math.cos(a), math.sin(a), 0.6])) for a in angles]
    arc = [look_at(3 * np.array([math.cos(a), math.sin(a), 0.6])) for a in np.linspace(-2.0, -1.2, 8)]
    white = np.ones((8, 16, 16, 3))
    white[:, 5:11, 5:11] = rng.uniform(size=(8, 6, 6, 3))  # an object in the middle of each photo
    textured = rng.uniform(size=(8, 16, 16, 3))
    assert presets.choose_preset(_posed(white, ring), set())[0] == "object"
    assert presets.choose_preset(_posed(textured, ring), {"world_frame"})[0] == "tabletop"
    name, reason = presets.choose_preset(_posed(textured, arc), {"world_frame"})
    assert name == "capture" and "forward-facing" in reason
    points = [rng.normal(size=(30, 3)).astype(np.float32) for _ in range(8)]
    # SfM points, cameras 3 units out and the box +-1: every camera looks in from outside it
    name, reason = presets.choose_preset(_posed(white, ring, sparse_points=points), set())
    assert name == "inward" and "SfM points" in reason and "all 8 cameras stand outside" in reason
    # the same cameras inside a box that holds the room they stand in: unbounded around them
    name, reason = presets.choose_preset(_posed(white, ring, sparse_points=points, aabb=((-4,) * 3, (4,) * 3)), set())
    assert name == "capture" and "8 of 8 cameras stand inside" in reason
    # one camera within the grown box (1.5x: +-1.5) is enough to need the contraction
    near = ring[:7] + [look_at(np.array([1.4, 0.0, 0.3]))]
    assert presets.choose_preset(_posed(white, near, sparse_points=points), set())[0] == "capture"


def test_explicit_flags_override_the_preset():
    from inerf_ros.nerf.train import TrainConfig, apply_preset

    train_cfg, field_cfg = apply_preset("capture", TrainConfig(batch_rays=64), FieldConfig(), {"batch_rays"},
                                        has_points=False)
    assert train_cfg.batch_rays == 64 and train_cfg.contraction == "linf" and train_cfg.appearance == "affine"
    assert train_cfg.depth_weight == 0.0  # no SfM points: nothing to supervise depth with
    assert field_cfg.max_resolution == presets.PRESETS["capture"]["max_resolution"]
    train_cfg, _ = apply_preset("capture", TrainConfig(), FieldConfig(), set(), has_points=True)
    assert train_cfg.depth_weight == presets.PRESETS["capture"]["depth_weight"] and train_cfg.preset == "capture"


def test_unbounded_training_saves_loads_and_renders_identically(sphere_scene, tmp_path):
    from inerf_ros.nerf.checkpoint import load_model
    from inerf_ros.nerf.train import TrainConfig, evaluate, train
    from inerf_ros.datasets.transforms import load_transforms

    given = dict(steps=6, batch_rays=256, n_samples=32, occupancy_resolution=16, occupancy_warmup=2,
                 occupancy_every=2, holdout_every=6, half_planes=False, seed=0, preset="capture")
    train_cfg = TrainConfig(**given)
    field_cfg = TINY_FIELD
    metrics = train(sphere_scene, tmp_path / "model", train_cfg, field_cfg, progress=False,
                    explicit=set(given) | {f for f in vars(field_cfg)})
    assert metrics["preset"] == "capture" and metrics["contraction"] == "linf" and metrics["steps"] == 6
    assert metrics["scene_box_source"] == "the data's aabb"
    model = load_model(tmp_path / "model")
    assert model.metadata.contraction == "linf" and model.metadata.lindisp_scale > 2.5
    assert model.field.contraction == model.occupancy.contraction == "linf"
    data = load_transforms(sphere_scene)
    _, held_out = data.split_holdout(6)
    again = evaluate(model, held_out, torch.device("cpu"))
    assert again["psnr"] == pytest.approx(metrics["heldout_psnr"], abs=1e-4)
    # Far along a ray the model still samples (the contracted shell), unlike a bounded one.
    out = model.render_rays(torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]]))
    assert float(out["t"].max()) > 100.0


def test_auto_downscale_aims_at_the_longest_side(tmp_path):
    path = tmp_path / "transforms.json"
    path.write_text('{"w": 1440, "h": 1080, "frames": [{"file_path": "a", "transform_matrix": []}]}')
    assert presets.auto_downscale(path) == 4.0
    path.write_text('{"w": 320, "h": 240, "frames": [{"file_path": "a", "transform_matrix": []}]}')
    assert presets.auto_downscale(path) == 1.0
