"""Image quality metrics: PSNR and SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error of colours in [0, 1] (infinite at 0); NaN raises."""
    if math.isnan(mse) or mse < 0:
        raise ValueError(f"PSNR of a mean squared error of {mse}")
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two images in [0, 1] of the same shape."""
    return psnr_from_mse(float(F.mse_loss(a.float(), b.float())))


def ssim(a: Tensor, b: Tensor) -> float:
    """Mean SSIM of two (H, W, 3) images in [0, 1]."""
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"ssim needs two (H, W, C) images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    x = a.permute(2, 0, 1)[None].float()
    y = b.permute(2, 0, 1)[None].float()
    coords = torch.arange(11, dtype=torch.float32, device=x.device) - 5
    g = torch.exp(-coords ** 2 / (2 * 1.5 ** 2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(x.shape[1], 1, 11, 11).contiguous()

    def blur(z):
        return F.conv2d(z, window, groups=x.shape[1])

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x ** 2
    syy = blur(y * y) - mu_y ** 2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return float(s.mean())
