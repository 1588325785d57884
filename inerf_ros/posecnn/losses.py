"""PoseCNN losses: cross entropy, smooth L1 on centre directions/depth, point matching (PLoss / SLoss)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def label_loss(logits: Tensor, label: Tensor) -> Tensor:
    """Cross entropy of (B, N+1, H, W) logits against (B, H, W) long labels."""
    return F.cross_entropy(logits, label)


def vertex_loss(vertex: Tensor, target: Tensor, label: Tensor, num_classes: int) -> Tensor:
    """Smooth L1 on (dx, dy, depth) of each object pixel, in its class's channels.

    ``vertex`` (B, 3N, H, W); ``target`` (B, 3, H, W) the true direction and normalised depth
    (arbitrary where ``label`` (B, H, W) is 0). Averaged over object pixels.
    """
    b, _, h, w = vertex.shape
    fg = label > 0
    if not bool(fg.any()):
        return vertex.sum() * 0.0
    per_class = vertex.view(b, num_classes, 3, h, w)
    index = (label.clamp_min(1) - 1)[:, None, None].expand(b, 1, 3, h, w)
    chosen = per_class.gather(1, index)[:, 0]               # (B, 3, H, W)
    mask = fg[:, None].expand_as(chosen)
    return F.smooth_l1_loss(chosen[mask], target[mask], beta=0.1)


def point_matching_loss(pred_R: Tensor, true_R: Tensor, points: Tensor, symmetric: Tensor) -> Tensor:
    """PLoss / SLoss of the paper, averaged over RoIs.

    ``pred_R``, ``true_R`` (R, 3, 3); ``points`` (R, m, 3) model points of each RoI's class
    (metres); ``symmetric`` (R,) bool: symmetric about the object's z axis (``continuous_z``).
    PLoss = mean_x |R x - R* x|^2 / 2; for symmetric classes SLoss = mean_x1 min_x2
    |R x1 - R* x2|^2 / 2 (closest point) plus PLoss of the points projected on the z axis. The
    paper's SLoss alone is also minimal for a cylinder turned upside down, which flips the camera
    prior; the axis term keeps the z axis and leaves only the rotation about it free.
    """
    if pred_R.shape[0] == 0:
        return pred_R.sum() * 0.0
    pred = points @ pred_R.transpose(1, 2)
    true = points @ true_R.transpose(1, 2)
    plain = 0.5 * ((pred - true) ** 2).sum(-1).mean(-1)
    if bool(symmetric.any()):
        closest = torch.cdist(pred[symmetric], true[symmetric]).pow(2).min(-1).values
        axis_points = points[symmetric] * torch.tensor([0.0, 0.0, 1.0], dtype=points.dtype, device=points.device)
        axis = 0.5 * ((axis_points @ (pred_R[symmetric] - true_R[symmetric]).transpose(1, 2)) ** 2).sum(-1).mean(-1)
        plain = plain.clone()
        plain[symmetric] = 0.5 * closest.mean(-1) + axis
    return plain.mean()
