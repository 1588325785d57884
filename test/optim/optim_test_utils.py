"""Helpers of the optimizer tests (a module of its own: `conftest` names are ambiguous)."""
import math

import numpy as np
import torch


def perturbed(nerf_T_optical: np.ndarray, angle_deg: float, axis, shift) -> np.ndarray:
    """Rotate about the camera centre by ``angle_deg`` about ``axis`` (NeRF axes) and shift."""
    from inerf_ros import lie

    rotation = lie.axis_angle_rotation(torch.tensor(axis, dtype=torch.float64),
                                       torch.tensor(math.radians(angle_deg), dtype=torch.float64)).numpy()
    out = nerf_T_optical.copy()
    out[:3, :3] = rotation @ nerf_T_optical[:3, :3]
    out[:3, 3] += np.asarray(shift, dtype=np.float64)
    return out
