"""Colour appearance: per-photo affine colour during training, and the closed-form affine fit that
pose estimation and evaluation use to compare colours across cameras with different exposure.
"""
from __future__ import annotations

import torch
from torch import Tensor

from inerf_ros.nerf.metrics import psnr_from_mse


class PhotoAppearance(torch.nn.Module):
    """Per-photo affine colour ``gain * rgb + offset`` (per channel), neutral at initialisation.

    Training-only: the saved model renders the neutral appearance. A per-photo affine map is the
    smallest appearance model that absorbs exposure and white-balance changes (NeRF-W learns a
    latent code for the same job; an affine map cannot learn scene content instead of the field).
    """

    def __init__(self, n_photos: int):
        super().__init__()
        self.log_gain = torch.nn.Parameter(torch.zeros(n_photos, 3))
        self.offset = torch.nn.Parameter(torch.zeros(n_photos, 3))

    def forward(self, rgb: torch.Tensor, photos: torch.Tensor) -> torch.Tensor:
        """Colours (R, 3) as photo ``photos`` (R,) saw them: ``rgb * gain + offset``."""
        return rgb * self.log_gain[photos].exp() + self.offset[photos]

    def penalty(self) -> torch.Tensor:
        """Mean square of the log gains and offsets: the pull towards the neutral appearance."""
        return (self.log_gain ** 2).mean() + (self.offset ** 2).mean()

    def summary(self) -> dict:
        """Smallest and largest gain and the largest offset, for the report."""
        gain = self.log_gain.detach().exp().mean(-1)
        return {"gain_min": float(gain.min()), "gain_max": float(gain.max()),
                "offset_abs_max": float(self.offset.detach().abs().max())}


# Default ridge of the affine fit towards gain 1 / offset 0, relative to the pixel count: it shrinks
# the fit by ~2 % on a real image (colour variance ~0.05), and keeps a batch of one flat colour from taking
# an arbitrary gain.
_RIDGE = 1e-3


def fit_affine_colour(rendered: Tensor, target: Tensor, ridge: float = _RIDGE) -> tuple[Tensor, Tensor]:
    """Per-hypothesis, per-channel gain and offset (K, 1, 3) with ``gain * rendered + offset ~ target``.

    Closed-form ridge least squares over the batch (rendered (K, N, 3), target (N, 3)); returned
    detached: at the fitted gain and offset, the loss's gradient with respect to the pose is the
    partial one with them held fixed (envelope theorem), so no gradient needs to flow through the fit.
    """
    with torch.no_grad():
        rendered = rendered.double()
        target = target.double()[None]
        n = rendered.shape[1]
        ridge = ridge * n
        s_cc = (rendered * rendered).sum(1, keepdim=True) + ridge
        s_c = rendered.sum(1, keepdim=True)
        s_ct = (rendered * target).sum(1, keepdim=True) + ridge
        s_t = target.sum(1, keepdim=True)
        s_1 = n + ridge
        det = (s_cc * s_1 - s_c * s_c).clamp_min(1e-12)
        gain = (s_ct * s_1 - s_c * s_t) / det
        offset = (s_cc * s_t - s_c * s_ct) / det
    return gain, offset


def psnr_affine(rendered: Tensor, target: Tensor) -> float:
    """PSNR (dB) of (H, W, 3) images after the best per-channel gain and offset maps ``rendered`` onto
    ``target``: the appearance-corrected score of models trained with per-photo appearance, whose
    neutral colours need not match any one held-out photo's exposure.
    """
    flat_rendered, flat_target = rendered.reshape(1, -1, 3).double(), target.reshape(-1, 3).double()
    gain, offset = fit_affine_colour(flat_rendered, flat_target, ridge=0.0)
    return psnr_from_mse(float(((flat_rendered * gain + offset - flat_target) ** 2).mean()))
