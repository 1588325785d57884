"""RoI align in plain torch (``grid_sample``): no torchvision needed."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def roi_align(features: Tensor, boxes: Tensor, batch_index: Tensor, output_size: int, stride: float,
              sampling: int = 2) -> Tensor:
    """Bilinear RoI align (as in Mask R-CNN, ``aligned=True``) of (B, C, h, w) ``features``.

    Args:
        features: (B, C, h, w) map whose cell (i, j) covers input pixels centred at
            ``(j + 0.5) * stride - 0.5, (i + 0.5) * stride - 0.5``.
        boxes: (R, 4) ``x0, y0, x1, y1`` in input-image pixels (continuous coordinates, pixel
            centres at integers).
        batch_index: (R,) long, which image each box belongs to.
        output_size: S, the output is (R, C, S, S).
        stride: input pixels per feature cell.
        sampling: bilinear samples per output cell and axis, averaged.

    Differentiable with respect to ``features`` (and ``boxes``).
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4 or batch_index.shape != (boxes.shape[0],):
        raise ValueError(f"boxes must be (R, 4) with batch_index (R,), got {tuple(boxes.shape)} and "
                         f"{tuple(batch_index.shape)}")
    n_rois = boxes.shape[0]
    _, channels, height, width = features.shape
    if n_rois == 0:
        return features.new_zeros(0, channels, output_size, output_size)
    # Sample positions in input pixels: a regular grid of S*sampling points per axis inside each box.
    steps = (torch.arange(output_size * sampling, device=features.device, dtype=features.dtype) + 0.5) / (
        output_size * sampling)
    x0, y0, x1, y1 = boxes.to(features.dtype).unbind(1)
    xs = x0[:, None] + (x1 - x0)[:, None] * steps[None]   # (R, S*s)
    ys = y0[:, None] + (y1 - y0)[:, None] * steps[None]
    # Input pixel -> feature coordinate -> grid_sample's [-1, 1] with align_corners=False.
    gx = ((xs + 0.5) / stride) / width * 2 - 1
    gy = ((ys + 0.5) / stride) / height * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (R, S*s, S*s, 2)
    sampled = F.grid_sample(features[batch_index], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(sampled, sampling) if sampling > 1 else sampled
