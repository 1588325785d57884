"""Hough voting, RoI align, ray rotations, losses: exact checks on synthetic inputs."""
import math

import numpy as np
import pytest
import torch

from inerf_ros.posecnn.hough import hough_vote
from inerf_ros.posecnn.losses import point_matching_loss
from inerf_ros.posecnn.model import scaled_K
from inerf_ros.posecnn.network import quat_to_matrix, ray_rotation
from inerf_ros.posecnn.roi import roi_align


def _field(centre, width=80, height=60, radius=15.0):
    vs, us = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    pixels = torch.stack([us.flatten(), vs.flatten()], 1)
    pixels = pixels[(pixels - torch.tensor(centre)).norm(dim=1) < radius]
    directions = torch.tensor(centre) - pixels
    return pixels, directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-9)


@pytest.mark.parametrize("centre", [(40.0, 28.0), (37.3, 21.7), (3.25, 55.5)])
def test_hough_finds_the_centre_of_a_perfect_field(centre):
    pixels, directions = _field(centre)
    vote = hough_vote(pixels, directions, 80, 60, stride=4, margin=8)
    assert vote is not None
    np.testing.assert_allclose(vote.centre.numpy(), centre, atol=1e-4)
    assert vote.inlier_ratio == 1.0


def test_hough_centre_outside_the_image_and_with_outliers():
    centre = (86.5, 30.25)  # right of an 80-pixel-wide image: a partly visible object
    pixels, directions = _field(centre, radius=20.0)
    generator = torch.Generator().manual_seed(0)
    noisy = directions.clone()
    bad = torch.rand(len(noisy), generator=generator) < 0.3
    angles = torch.rand(int(bad.sum()), generator=generator) * 2 * math.pi
    noisy[bad] = torch.stack([angles.cos(), angles.sin()], 1)
    vote = hough_vote(pixels, noisy, 80, 60, stride=4, margin=20, generator=generator)
    np.testing.assert_allclose(vote.centre.numpy(), centre, atol=0.05)
    assert 0.65 < vote.inlier_ratio < 0.8
    assert hough_vote(pixels[:2], directions[:2], 80, 60) is None


def test_roi_align_of_a_linear_field_is_exact():
    stride = 8.0
    height, width = 12, 16  # feature cells; the input image is 128 x 96
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                                indexing="ij")
    x_pix, y_pix = (cols + 0.5) * stride - 0.5, (rows + 0.5) * stride - 0.5  # input pixel of each cell centre
    features = torch.stack([x_pix, y_pix, 2 * x_pix - y_pix + 3])[None].repeat(2, 1, 1, 1)
    boxes = torch.tensor([[20.0, 30.0, 62.0, 58.0], [40.5, 10.0, 90.0, 70.0]], dtype=torch.float64)
    out = roi_align(features, boxes, torch.tensor([0, 1]), output_size=7, stride=stride, sampling=2)
    assert out.shape == (2, 3, 7, 7)
    for r, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        centres_x = x0 + (x1 - x0) * (torch.arange(7, dtype=torch.float64) + 0.5) / 7
        centres_y = y0 + (y1 - y0) * (torch.arange(7, dtype=torch.float64) + 0.5) / 7
        np.testing.assert_allclose(out[r, 0].numpy(), centres_x[None].expand(7, 7).numpy(), atol=1e-9)
        np.testing.assert_allclose(out[r, 1].numpy(), centres_y[:, None].expand(7, 7).numpy(), atol=1e-9)
    # Gradients reach the features.
    features.requires_grad_(True)
    roi_align(features, boxes, torch.tensor([0, 1]), 7, stride).sum().backward()
    assert features.grad.abs().sum() > 0


def test_ray_rotation_maps_the_optical_axis_onto_the_pixel_ray():
    K = torch.tensor([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]], dtype=torch.float64)
    centres = torch.tensor([[320.0, 240.0], [10.0, 400.0], [600.0, 20.0]], dtype=torch.float64)
    rotations = ray_rotation(centres, K)
    for rotation, (u, v) in zip(rotations, centres.tolist()):
        ray = np.linalg.solve(K.numpy(), [u, v, 1.0])
        np.testing.assert_allclose(rotation[:, 2].numpy(), ray / np.linalg.norm(ray), atol=1e-12)
        np.testing.assert_allclose((rotation.T @ rotation).numpy(), np.eye(3), atol=1e-12)
    np.testing.assert_allclose(rotations[0].numpy(), np.eye(3), atol=1e-12)


def test_scaled_K_keeps_pixel_centres():
    K = np.array([[902.19, 0, 342.35], [0, 902.39, 252.23], [0, 0, 1]])
    half = scaled_K(K, 640, 480, 320, 240)
    # A 3D point projects to pixel p at full size and to (p + 0.5) / 2 - 0.5 at half size.
    point = np.array([0.1, -0.05, 0.8])
    full_uv = (K @ point)[:2] / point[2]
    half_uv = (half @ point)[:2] / point[2]
    np.testing.assert_allclose(half_uv, (full_uv + 0.5) / 2 - 0.5, atol=1e-12)


def test_point_matching_losses():
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(2, 200, 3, generator=generator)
    identity = torch.eye(3).expand(2, 3, 3)
    about_z = quat_to_matrix(torch.tensor([[0.0, 0.0, math.sin(0.6), math.cos(0.6)]] * 2))
    assert point_matching_loss(identity, identity, points, torch.tensor([False, False])) == 0
    plain = point_matching_loss(about_z, identity, points, torch.tensor([False, False]))
    assert plain > 0.1
    # A cylinder-like point set symmetric about z: rotating about z costs nothing under SLoss.
    angles = torch.linspace(0, 2 * math.pi, 721)[:-1]
    ring = torch.stack([angles.cos(), angles.sin(), torch.zeros_like(angles)], 1)
    ring = torch.cat([ring, ring + torch.tensor([0, 0, 1.0])])[None].expand(2, -1, -1)
    sym = point_matching_loss(about_z, identity, ring, torch.tensor([True, True]))
    assert float(sym) < 1e-4
    assert float(point_matching_loss(about_z, identity, ring, torch.tensor([False, False]))) > 0.1
    # Upside down (pi about x) fits the cylinder's points too, but not its axis: SLoss + axis term > 0.
    flipped = quat_to_matrix(torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2))
    ring = ring - torch.tensor([0, 0, 0.5])
    assert float(torch.cdist(ring[0] @ flipped[0].T, ring[0]).min(-1).values.max()) < 1e-3
    assert float(point_matching_loss(flipped, identity, ring, torch.tensor([True, True]))) > 0.2
