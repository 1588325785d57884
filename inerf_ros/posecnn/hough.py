"""Hough voting for object centres from per-pixel centre directions (PoseCNN, vectorised torch).

Every pixel of a class predicts the unit vector ``n = (c - x) / |c - x|`` from itself to the
object's 2D centre ``c``. A candidate centre gets one vote from each pixel whose direction to the
candidate agrees with its prediction (cosine above ``cos_threshold``); the best candidate on a
coarse grid is then refined to sub-pixel precision by the least-squares intersection of the lines
``x + t n`` of its inlier pixels (exact for a perfect field).
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor


@dataclasses.dataclass
class VoteResult:
    """The winning centre of a Hough vote and the voters that agree with it."""

    centre: Tensor        # (2,) (u, v) pixels, OpenCV convention
    inliers: Tensor       # (n_inliers,) indices into the voters given
    inlier_ratio: float   # inliers / voters


def hough_vote(pixels: Tensor, directions: Tensor, width: int, height: int, *, stride: int = 4,
               cos_threshold: float = 0.99, max_voters: int = 1500, margin: int = 0,
               generator: torch.Generator | None = None) -> VoteResult | None:
    """Centre of the object voted by ``pixels`` (n, 2) (u, v) with unit ``directions`` (n, 2).

    Candidates lie on a grid of step ``stride`` pixels covering the image extended by ``margin``
    pixels on each side (centres of partly visible objects can be outside the image), within the
    voters' bounding box grown by its size. At most
    ``max_voters`` random voters score the candidates; all voters are used for the refinement.
    Returns None when there are fewer than 3 voters or no candidate gets 3 votes.
    Not differentiable (used at inference only).
    """
    if pixels.ndim != 2 or pixels.shape[1] != 2 or directions.shape != pixels.shape:
        raise ValueError(f"pixels and directions must both be (n, 2), got {tuple(pixels.shape)} and "
                         f"{tuple(directions.shape)}")
    n = pixels.shape[0]
    if n < 3:
        return None
    pixels = pixels.float()
    directions = directions.float()
    directions = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-8)
    voters = torch.arange(n, device=pixels.device)
    if n > max_voters:
        voters = torch.randperm(n, generator=generator, device=pixels.device)[:max_voters]
    # Candidates: the grid inside the image extended by ``margin``, limited to the voters' box grown
    # by its size on each side (a centre lies near its own pixels), which keeps voting cheap.
    low, high = pixels.min(0).values, pixels.max(0).values
    grow = (high - low) + stride
    u0 = max(-margin, int(math.floor(float(low[0] - grow[0]) / stride)) * stride)
    v0 = max(-margin, int(math.floor(float(low[1] - grow[1]) / stride)) * stride)
    u1 = min(width + margin, float(high[0] + grow[0]))
    v1 = min(height + margin, float(high[1] + grow[1]))
    us = torch.arange(u0, u1 + 1e-6, stride, device=pixels.device, dtype=torch.float32)
    vs = torch.arange(v0, v1 + 1e-6, stride, device=pixels.device, dtype=torch.float32)
    if us.numel() == 0 or vs.numel() == 0:
        return None
    grid = torch.stack(torch.meshgrid(us, vs, indexing="xy"), dim=-1).reshape(-1, 2)  # (m, 2)
    votes = _count_votes(grid, pixels[voters], directions[voters], cos_threshold)
    best = int(votes.argmax())
    if int(votes[best]) < 3:
        return None
    centre = grid[best]
    # Two refinement rounds: intersect the inlier lines, re-select inliers around the refined centre.
    for _ in range(2):
        inliers = _inliers(centre, pixels, directions, cos_threshold)
        if inliers.numel() < 2:
            break
        refined = _intersect_lines(pixels[inliers], directions[inliers])
        if refined is None:
            break
        centre = refined
    inliers = _inliers(centre, pixels, directions, cos_threshold)
    return VoteResult(centre=centre, inliers=inliers, inlier_ratio=float(inliers.numel()) / n)


def _count_votes(candidates: Tensor, pixels: Tensor, directions: Tensor, cos_threshold: float,
                 chunk: int = 8192) -> Tensor:
    # cos >= t  <=>  dot >= 0 and dot^2 >= t^2 |c - p|^2 (no square roots or divisions).
    t_sq = cos_threshold * abs(cos_threshold)
    counts = []
    for start in range(0, candidates.shape[0], chunk):
        dx = candidates[start:start + chunk, 0:1] - pixels[None, :, 0]   # (m, n)
        dy = candidates[start:start + chunk, 1:2] - pixels[None, :, 1]
        dot = dx * directions[None, :, 0] + dy * directions[None, :, 1]
        dist_sq = dx * dx + dy * dy
        # A voter sitting on the candidate agrees with it (its direction is undefined there).
        agree = ((dot >= 0) & (dot * dot >= t_sq * dist_sq)) | (dist_sq < 0.25)
        counts.append(agree.sum(1))
    return torch.cat(counts)


def _inliers(centre: Tensor, pixels: Tensor, directions: Tensor, cos_threshold: float) -> Tensor:
    to_centre = centre[None] - pixels
    dist = to_centre.norm(dim=1)
    cos = (to_centre * directions).sum(1) / dist.clamp_min(1e-6)
    return torch.nonzero((cos >= cos_threshold) | (dist < 0.5)).squeeze(1)


def _intersect_lines(points: Tensor, directions: Tensor) -> Tensor | None:
    """Point minimising the summed squared distance to the lines ``p_i + t d_i`` (unit ``d_i``)."""
    points = points.double()
    directions = directions.double()
    eye = torch.eye(2, dtype=torch.float64, device=points.device)
    projectors = eye - directions[:, :, None] * directions[:, None, :]  # (n, 2, 2)
    a = projectors.sum(0)
    b = (projectors @ points[:, :, None]).sum(0)[:, 0]
    if torch.linalg.cond(a) > 1e8:  # all lines parallel
        return None
    return torch.linalg.solve(a, b).float()
