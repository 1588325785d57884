"""The localization pipeline behind inerf_node, ROS-free (also driven directly by offline replay).

One object owns the NeRF, the optimizer and the tracking policy, so the live node and the
offline evaluation run exactly the same code on the same inputs.
"""
from __future__ import annotations

import dataclasses
import threading

import cv2
import numpy as np
import torch

from inerf_ros import frames
from inerf_ros.camera import Intrinsics
from inerf_ros.optim.inerf import OptimizerConfig, PoseEstimate, PoseOptimizer
from inerf_ros.optim.localizer import LocalizationResult, Localizer, LocalizerConfig, Prior
from inerf_ros.optim.sampling import SamplingConfig


@dataclasses.dataclass
class FrameInput:
    rgb: np.ndarray
    """(H, W, 3) uint8."""
    intrinsics: Intrinsics
    stamp_s: float
    prior: Prior | None = None
    """Start pose in NeRF units (ROS optical camera frame), when one matched the frame."""
    label_mask: np.ndarray | None = None
    note: str = ""
    base_T_optical: np.ndarray | None = None
    """(4, 4) the camera in the robot's base frame at ``stamp_s``, NeRF units (kinematic chain from TF)."""


class InerfPipeline:
    def __init__(self, model, device: str, optimizer: OptimizerConfig, sampling: SamplingConfig,
                 localizer: LocalizerConfig):
        self.model = model
        self.device = device
        self._lock = threading.Lock()  # a config change waits for the frame being optimised
        self._optimizer = PoseOptimizer(model, optimizer, sampling, device=device)
        self._localizer = Localizer(self._optimizer, localizer, float(model.metadata.metres_per_unit))

    @classmethod
    def from_model_dir(cls, model_dir: str, device: str, optimizer: OptimizerConfig, sampling: SamplingConfig,
                       localizer: LocalizerConfig) -> "InerfPipeline":
        from inerf_ros.nerf.checkpoint import load_model

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        return cls(load_model(model_dir, device=device), device, optimizer, sampling, localizer)

    @property
    def metres_per_unit(self) -> float:
        return float(self.model.metadata.metres_per_unit)

    def config_of(self, cls):
        return {OptimizerConfig: self._optimizer.config, SamplingConfig: self._optimizer.sampling,
                LocalizerConfig: self._localizer.config}[cls]

    def update_config(self, config) -> None:
        with self._lock:
            if isinstance(config, OptimizerConfig):
                self._optimizer.config = config
            elif isinstance(config, SamplingConfig):
                self._optimizer.sampling = config
            elif isinstance(config, LocalizerConfig):
                self._localizer.config = config
            else:
                raise TypeError(f"not a pipeline config: {type(config).__name__}")

    def wants_prior(self, stamp_s: float, base_T_optical: np.ndarray | None = None) -> bool:
        return self._localizer.wants_prior(stamp_s, base_T_optical)

    def reset(self) -> None:
        self._localizer.reset()

    def localize(self, frame: FrameInput) -> LocalizationResult:
        with self._lock:
            result = self._localizer.localize(frame.rgb, frame.intrinsics, frame.stamp_s, frame.prior,
                                              frame.label_mask, frame.base_T_optical)
        if frame.note:
            result.message = "; ".join(filter(None, [frame.note, result.message]))
        return result

    def overlay(self, frame: FrameInput, estimate: PoseEstimate, scale: float) -> np.ndarray:
        """The observed image blended 50/50 with the NeRF rendered at the estimate (seed 003, Fig. 3)."""
        from inerf_ros.nerf.render import render_image

        intrinsics = frame.intrinsics.scaled(scale)
        nerf_T_gl = torch.from_numpy(frames.optical_to_opengl(estimate.nerf_T_optical)).float().to(self.device)
        with torch.no_grad():
            rendered = render_image(self.model, intrinsics, nerf_T_gl)["rgb"]
        rendered = (rendered.clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
        observed = cv2.resize(frame.rgb, (intrinsics.width, intrinsics.height), interpolation=cv2.INTER_AREA)
        return cv2.addWeighted(observed, 0.5, rendered, 0.5, 0.0)
