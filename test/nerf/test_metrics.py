"""PSNR: one formula for every caller (images, verdict pixels, training progress)."""
import math

import pytest
import torch

from inerf_ros.nerf.metrics import psnr, psnr_from_mse


def test_psnr_from_mse():
    assert psnr_from_mse(0.01) == pytest.approx(20.0)
    assert psnr_from_mse(1.0) == 0.0
    assert psnr_from_mse(0.0) == math.inf
    assert psnr_from_mse(math.inf) == -math.inf
    for bad in (math.nan, -1e-3):
        with pytest.raises(ValueError):
            psnr_from_mse(bad)


def test_psnr_of_images_is_psnr_of_their_mse():
    a = torch.zeros(4, 5, 3)
    b = torch.full((4, 5, 3), 0.1)
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-5)
    assert psnr(a, a) == math.inf
