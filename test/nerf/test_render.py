"""Rays, compositing and the pose gradient through a small field."""
from __future__ import annotations

import math

import pytest
import torch

from inerf_ros.camera import Intrinsics
from inerf_ros.lie import se3_exp
from inerf_ros.nerf.field import FieldConfig, level_weights
from inerf_ros.nerf.model import NerfMetadata, NerfModel
from inerf_ros.nerf.rays import pixel_rays, ray_aabb
from inerf_ros.nerf.render import composite, render_image, weights_from_density

from nerf_test_utils import look_at

SMALL = FieldConfig(n_levels=3, base_resolution=4, max_resolution=16, channels=2, hidden=8, geo_features=3,
                    sh_degree=1)


def small_model(seed=0) -> NerfModel:
    torch.manual_seed(seed)
    import dataclasses
    return NerfModel(NerfMetadata(aabb=[[-1.0] * 3, [1.0] * 3], field=dataclasses.asdict(SMALL), n_samples=16,
                                  occupancy_resolution=8))


def test_composite_worked_example():
    sigma = torch.tensor([[math.log(2.0)]])
    weights = weights_from_density(sigma, torch.ones(1, 1))
    assert torch.allclose(weights, torch.tensor([[0.5]]))
    out = composite(weights, torch.tensor([[[0.2, 0.4, 0.6]]]), torch.tensor([[3.0]]), torch.ones(3))
    assert torch.allclose(out["rgb"], torch.tensor([[0.6, 0.7, 0.8]]))
    assert torch.allclose(out["opacity"], torch.tensor([0.5])) and torch.allclose(out["depth"], torch.tensor([3.0]))
    # Two samples: the second is seen through the first (T = 0.5).
    w2 = weights_from_density(torch.tensor([[math.log(2.0), math.log(2.0)]]), torch.ones(1, 2))
    assert torch.allclose(w2, torch.tensor([[0.5, 0.25]]))


def test_pixel_rays_conventions_and_batching():
    intr = Intrinsics(5, 3, 10.0, 10.0, 2.0, 1.0)
    nerf_T_cam = torch.tensor(look_at((0.0, -4.0, 0.0)), dtype=torch.float32)
    uv = torch.tensor([[2.0, 1.0], [4.0, 1.0], [2.0, 0.0]])
    o, d = pixel_rays(intr, nerf_T_cam, uv)
    assert o.shape == (3, 3) and torch.allclose(o, nerf_T_cam[:3, 3].expand(3, 3))
    assert torch.allclose(d[0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)  # the principal point looks at the target
    assert d[1, 0] > 0 and d[2, 2] > 0  # column to the right = +x, row up = +z (up)
    batch = torch.stack([nerf_T_cam, nerf_T_cam])[:, None].expand(2, 4, 4, 4)
    ob, db = pixel_rays(intr, batch, uv)
    assert ob.shape == (2, 4, 3, 3) and torch.allclose(db[1, 3], d)


def test_pixel_rays_inverts_distortion():
    import cv2
    import numpy as np

    intr = Intrinsics(40, 30, 30.0, 31.0, 19.5, 14.5, "plumb_bob", (0.1, -0.05, 0.001, 0.002, 0.0))
    points = np.array([[0.3, -0.2, 1.0], [-0.4, 0.25, 1.0], [0.0, 0.0, 1.0]])
    uv, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), intr.K, np.array(intr.distortion))
    _, d = pixel_rays(intr, torch.eye(4, dtype=torch.float64), torch.tensor(uv[:, 0]))
    expected = torch.tensor(points * [1, -1, -1])  # OpenCV camera -> OpenGL camera
    assert torch.allclose(d, expected / expected.norm(dim=-1, keepdim=True), atol=1e-6)


def test_ray_aabb_slab():
    t0, t1 = ray_aabb(torch.tensor([[0.0, 0.0, 5.0], [3.0, 3.0, 5.0]]), torch.tensor([[0.0, 0.0, -1.0]] * 2),
                      torch.tensor([[-1.0] * 3, [1.0] * 3]))
    assert torch.allclose(t0[:1], torch.tensor([4.0])) and torch.allclose(t1[:1], torch.tensor([6.0]))
    assert t1[1] <= t0[1]  # a miss


def test_level_weights():
    assert level_weights(4, None) == [1, 1, 1, 1]
    assert level_weights(4, 1) == [1, 1, 0, 0]
    assert level_weights(4, 1.25) == [1, 1, 0.25, 0]


def test_masked_levels_change_the_render_and_skip_fine_planes():
    model = small_model()
    o = torch.tensor([[0.0, -3.0, 0.1]]).expand(8, 3)
    d = torch.nn.functional.normalize(torch.randn(8, 3) * 0.1 + torch.tensor([0.0, 1.0, 0.0]), dim=-1)
    full = model.render_rays(o, d, skip_empty=False)["rgb"]
    coarse = model.render_rays(o, d, max_level=0, skip_empty=False)
    assert not torch.allclose(full, coarse["rgb"])
    coarse["rgb"].sum().backward()
    assert model.field.planes[0].grad.abs().sum() > 0
    assert model.field.planes[2].grad is None  # fine planes untouched when masked
    model.field.set_level_mask(0)
    assert torch.allclose(model.render_rays(o, d, skip_empty=False)["rgb"], coarse["rgb"])


def test_rendered_colour_gradcheck_wrt_pose():
    """d rgb / d twist through pixel_rays -> samples -> field -> compositing, against finite differences."""
    model = small_model(1).double()
    intr = Intrinsics(6, 5, 5.0, 5.0, 2.5, 2.0)
    nerf_T_cam0 = torch.tensor(look_at((0.3, -2.5, 0.4)), dtype=torch.float64)
    uv = torch.tensor([[1.0, 1.0], [3.0, 2.0], [4.5, 3.5]], dtype=torch.float64)

    def rgb_of(twist):
        o, d = pixel_rays(intr, nerf_T_cam0 @ se3_exp(twist), uv)
        return model.render_rays(o, d, skip_empty=False, n_samples=12)["rgb"]

    twist = (torch.randn(6, dtype=torch.float64) * 1e-3).requires_grad_(True)
    assert torch.autograd.gradcheck(rgb_of, (twist,), eps=1e-6, atol=1e-6, rtol=1e-4)
    zero = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rgb_of, (zero,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_nan_raises():
    model = small_model()
    o = torch.tensor([[0.0, -3.0, float("nan")]])
    with pytest.raises(FloatingPointError, match="NaN"):
        model.render_rays(o, torch.tensor([[0.0, 1.0, 0.0]]), skip_empty=False)


def test_skip_empty_matches_dense_render_when_all_occupied():
    model = small_model()
    intr = Intrinsics(7, 5, 6.0, 6.0, 3.0, 2.0)
    pose = torch.tensor(look_at((0.0, -2.5, 0.5)), dtype=torch.float32)
    dense = render_image(model, intr, pose, skip_empty=False)
    sparse = render_image(model, intr, pose, chunk=9)
    assert dense["rgb"].shape == (5, 7, 3) and dense["depth"].shape == (5, 7)
    assert torch.allclose(dense["rgb"], sparse["rgb"], atol=2e-4)
    model.occupancy.occupied.zero_()
    empty = render_image(model, intr, pose)
    assert torch.equal(empty["rgb"], torch.ones(5, 7, 3)) and torch.equal(empty["opacity"], torch.zeros(5, 7))


def test_occupancy_keeps_only_cells_a_camera_sees():
    from inerf_ros.nerf.field import OccupancyGrid

    grid = OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=8)
    # A camera at y = -3 looking along +y with a narrow view: it sees a column of cells around the y axis.
    pose = torch.tensor(look_at((0.0, -3.0, 0.0)), dtype=torch.float32)
    fraction = grid.mark_visible(pose[None], [Intrinsics(4, 4, 20.0, 20.0, 1.5, 1.5)])
    assert 0 < fraction < 0.5
    centres = grid.cell_centres()
    seen = grid.occupied.reshape(-1)
    assert bool(seen[(centres[:, 0].abs() < 0.2) & (centres[:, 2].abs() < 0.2)].all())
    assert not bool(seen[(centres[:, 0].abs() > 0.7)].any())
    assert grid.update(lambda x: torch.full((x.shape[0],), 10.0), threshold=1.0) == fraction


def test_distortion_loss_prefers_concentrated_weights():
    from inerf_ros.nerf.render import distortion_loss

    t = torch.linspace(0.05, 0.95, 10)[None]
    deltas = torch.full_like(t, 0.1)
    spike = torch.zeros(1, 10)
    spike[0, 4] = 1.0
    spread = torch.full((1, 10), 0.1)
    # One sample: only the self term w^2 delta / 3; a uniform spread over [0, 1]: ~1/3 (mean |s - s'|).
    assert torch.allclose(distortion_loss(spike, t, deltas), torch.tensor(0.1 / 3))
    brute = (spread[0, :, None] * spread[0, None, :] * (t[0, :, None] - t[0, None, :]).abs()).sum() + \
        (spread.square() * deltas).sum() / 3
    assert torch.allclose(distortion_loss(spread, t, deltas), brute)
    assert distortion_loss(spread, t, deltas) > 5 * distortion_loss(spike, t, deltas)


def test_early_termination_pass_matches_full_render_and_keeps_the_pose_gradient():
    """With autograd on, skip_empty renders differentiate only visible samples; values stay the same."""
    model = small_model(2)
    with torch.no_grad():
        model.field.density_mlp[-1].bias[0] = 6.0  # an opaque field: rays terminate early
    o = torch.tensor([[0.0, -3.0, 0.1]]).expand(6, 3).clone().requires_grad_(True)
    d = torch.nn.functional.normalize(torch.randn(6, 3) * 0.1 + torch.tensor([0.0, 1.0, 0.0]), dim=-1)
    with torch.no_grad():
        reference = model.render_rays(o, d, n_samples=64, early_stop_eps=0.0)  # every occupied sample
        marched = model.render_rays(o, d, n_samples=64)  # no gradient: front-to-back marching
    for key in ("rgb", "depth", "opacity"):
        assert torch.allclose(marched[key], reference[key], atol=2e-4), key
    assert int((marched["weights"] > 0).sum()) < int((reference["weights"] > 0).sum())
    out = model.render_rays(o, d, n_samples=64)
    assert torch.allclose(out["rgb"], reference["rgb"], atol=2e-4)
    assert int((out["weights"] > 0).sum()) < int((reference["weights"] > 0).sum())  # samples were dropped
    out["rgb"].sum().backward()
    assert o.grad is not None and bool(torch.isfinite(o.grad).all()) and o.grad.abs().sum() > 0


def test_lightfield_background_depends_on_the_viewpoint_and_round_trips(tmp_path):
    import dataclasses

    from inerf_ros.nerf.checkpoint import load_model, save_model

    torch.manual_seed(0)
    model = NerfModel(NerfMetadata(aabb=[[-1.0] * 3, [1.0] * 3], field=dataclasses.asdict(SMALL), n_samples=8,
                                   occupancy_resolution=8, background_model="lightfield"))
    d = torch.tensor([[0.0, 0.0, 1.0]]).expand(2, 3)
    o = torch.tensor([[0.0, 0.0, 3.0], [0.5, 0.0, 3.0]], requires_grad=True)  # rays that miss the box
    out = model.render_rays(o, d)
    assert not torch.allclose(out["rgb"][0], out["rgb"][1])
    out["rgb"].sum().backward()
    assert o.grad.abs().sum() > 0  # the pose gradient also sees the background
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.metadata.background_model == "lightfield"
    assert torch.allclose(again.render_rays(o.detach(), d)["rgb"], out["rgb"].detach())


def test_camera_anchored_bins_sit_at_fixed_distances_and_move_with_the_camera():
    from inerf_ros.nerf.render import sample_distances

    t_near, t_far = torch.tensor([0.37, 1.0]), torch.tensor([1.21, 1.05])
    t_mid, deltas = sample_distances(t_near, t_far, 16, jitter=False, step=0.1)
    phase = t_mid / 0.1 - 0.5
    assert torch.allclose(phase, phase.round(), atol=1e-5)  # bin centres on a grid from the ray origin
    inside = deltas > 0
    assert torch.equal(inside, (t_mid >= t_near[:, None]) & (t_mid <= t_far[:, None]))
    assert int(inside[0].sum()) == 8 and torch.all(deltas[inside] == 0.1)  # 0.45 .. 1.15 in a 0.84 chord
    # Box-relative bins (step 0) depend on the chord: a ray entering 1 cm later gets other positions.
    shifted, _ = sample_distances(t_near + 0.01, t_far, 16, jitter=False, step=0.1)
    assert torch.equal(shifted, t_mid)
    box, _ = sample_distances(t_near, t_far, 16, jitter=False)
    box_shifted, _ = sample_distances(t_near + 0.01, t_far, 16, jitter=False)
    assert not torch.allclose(box, box_shifted)


def test_sample_step_round_trips_and_keeps_its_reach_with_fewer_samples(tmp_path):
    import dataclasses

    from inerf_ros.nerf.checkpoint import load_model, save_model

    torch.manual_seed(0)
    model = NerfModel(NerfMetadata(aabb=[[-1.0] * 3, [1.0] * 3], field=dataclasses.asdict(SMALL), n_samples=16,
                                   occupancy_resolution=8, sample_step=2 * math.sqrt(3) / 16))
    o, d = torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[0.0, 0.0, -1.0]])
    full = model.render_rays(o, d, skip_empty=False)
    assert float(full["deltas"].sum()) == pytest.approx(2.0, abs=model.metadata.sample_step)  # the 2-unit chord
    half = model.render_rays(o, d, n_samples=8, skip_empty=False)
    assert float(half["deltas"].sum()) == pytest.approx(2.0, abs=2 * model.metadata.sample_step)
    save_model(model, tmp_path / "m")
    assert load_model(tmp_path / "m").metadata.sample_step == model.metadata.sample_step
