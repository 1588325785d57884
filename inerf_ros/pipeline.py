"""The localization pipeline behind inerf_node, ROS-free (also driven directly by offline replay).

One object owns the NeRF, the optimizer and the tracking policy, so the live node and the
offline evaluation run exactly the same code on the same inputs.
"""
from __future__ import annotations

import dataclasses
import math
import threading

import cv2
import numpy as np
import torch

from inerf_ros import frames
from inerf_ros.camera import Intrinsics
from inerf_ros.config import option
from inerf_ros.nerf.checkpoint import load_model
from inerf_ros.nerf.render import render_image
from inerf_ros.optim.inerf import OptimizerConfig, PoseEstimate, PoseOptimizer
from inerf_ros.optim.localizer import LocalizationResult, Localizer, LocalizerConfig, Prior
from inerf_ros.optim.sampling import SamplingConfig


@dataclasses.dataclass
class FrameInput:
    """One image to localize, with everything matched to it by stamp (camera, prior, mask, kinematic chain)."""

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
    prior_covariance: np.ndarray | None = None
    """(6, 6) the prior's covariance over [x y z rx ry rz], NeRF units (gates how far the estimate may move)."""


@dataclasses.dataclass
class PlausibilityConfig:
    """Gates on every estimate, besides the photometric loss: a low loss does not make a pose right
    (a prior 50 m off gave a pose 50 m off with a loss under the trust threshold).
    """

    scene_margin: float = option(2.0, "an estimate whose camera lies farther outside the NeRF's scene box than "
                                      "this many box sizes (its largest side) is refused", range=(0.0, 1e6))
    prior_gate_sigma: float = option(8.0, "an estimate that moved farther from its prior than this many standard "
                                          "deviations of the prior's covariance (its largest, in translation or "
                                          "in rotation) is refused; 0: off", range=(0.0, 1e6))


def implausibility(nerf_T_optical: np.ndarray, aabb, config: PlausibilityConfig,
                   prior_T: np.ndarray | None = None, prior_covariance: np.ndarray | None = None) -> str:
    """Why an estimate (NeRF units) cannot be right, or "": outside the scene box plus its margin, or
    farther from its prior (pose and 6x6 covariance over [x y z rx ry rz], NeRF units) than
    ``prior_gate_sigma`` of it allows.
    """
    if not np.isfinite(nerf_T_optical).all():
        return "the estimate is not finite"
    low, high = np.asarray(aabb, dtype=np.float64)
    size = float((high - low).max())
    centre = nerf_T_optical[:3, 3]
    outside = float(np.linalg.norm(np.maximum(low - centre, 0.0) + np.maximum(centre - high, 0.0)))
    if outside > config.scene_margin * size:
        return (f"the camera is {outside:.3g} units outside the scene box (allowed: scene_margin "
                f"{config.scene_margin:g} x {size:.3g})")
    if config.prior_gate_sigma > 0 and prior_T is not None and prior_covariance is not None:
        covariance = np.asarray(prior_covariance, dtype=np.float64)
        if covariance.shape == (6, 6) and np.isfinite(covariance).all():
            sigma_t = math.sqrt(max(float(np.linalg.eigvalsh(covariance[:3, :3]).max()), 0.0))
            sigma_r = math.sqrt(max(float(np.linalg.eigvalsh(covariance[3:, 3:]).max()), 0.0))
            moved = float(np.linalg.norm(centre - prior_T[:3, 3]))
            relative = prior_T[:3, :3].T @ nerf_T_optical[:3, :3]
            turned = math.acos(float(np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0)))
            k = config.prior_gate_sigma
            if moved > k * sigma_t:
                return (f"the estimate moved {moved:.3g} units from its prior, more than prior_gate_sigma {k:g} x "
                        f"its sigma {sigma_t:.3g}")
            if turned > k * sigma_r:
                return (f"the estimate turned {math.degrees(turned):.1f} deg from its prior, more than "
                        f"prior_gate_sigma {k:g} x its sigma {math.degrees(sigma_r):.2f} deg")
    return ""


class InerfPipeline:
    """The NeRF, the pose optimizer and the localization policy, with the plausibility gate on the estimates."""

    def __init__(self, model, device: str, optimizer: OptimizerConfig, sampling: SamplingConfig,
                 localizer: LocalizerConfig, plausibility: PlausibilityConfig | None = None):
        self.model = model
        self.device = device
        self._plausibility = plausibility or PlausibilityConfig()
        self._lock = threading.Lock()  # a config change waits for the frame being optimised
        self._optimizer = PoseOptimizer(model, optimizer, sampling, device=device)
        self._localizer = Localizer(self._optimizer, localizer, float(model.metadata.metres_per_unit))

    @classmethod
    def from_model_dir(cls, model_dir: str, device: str, optimizer: OptimizerConfig, sampling: SamplingConfig,
                       localizer: LocalizerConfig, plausibility: PlausibilityConfig | None = None) -> "InerfPipeline":
        """A pipeline on the NeRF in ``model_dir``; ValueError when ``device`` is CUDA but none is available."""
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        return cls(load_model(model_dir, device=device), device, optimizer, sampling, localizer, plausibility)

    @property
    def metres_per_unit(self) -> float:
        """Metres per NeRF unit of the model (its metadata)."""
        return float(self.model.metadata.metres_per_unit)

    def config_of(self, cls):
        """The config of class ``cls`` now in use (OptimizerConfig, SamplingConfig, LocalizerConfig or
        PlausibilityConfig).
        """
        return {OptimizerConfig: self._optimizer.config, SamplingConfig: self._optimizer.sampling,
                LocalizerConfig: self._localizer.config, PlausibilityConfig: self._plausibility}[cls]

    def update_config(self, config) -> None:
        """Use ``config`` (one of the four config classes) from the next frame on (after the current one)."""
        with self._lock:
            if isinstance(config, OptimizerConfig):
                self._optimizer.config = config
            elif isinstance(config, SamplingConfig):
                self._optimizer.sampling = config
            elif isinstance(config, LocalizerConfig):
                self._localizer.config = config
            elif isinstance(config, PlausibilityConfig):
                self._plausibility = config
            else:
                raise TypeError(f"not a pipeline config: {type(config).__name__}")

    def wants_prior(self, stamp_s: float, base_T_optical: np.ndarray | None = None) -> bool:
        """Whether a prior would be used for an image at ``stamp_s`` (else tracking suffices)."""
        return self._localizer.wants_prior(stamp_s, base_T_optical)

    def can_track(self, stamp_s: float, base_T_optical: np.ndarray | None = None) -> bool:
        """Whether a tracking estimate could start for an image at ``stamp_s`` (without a prior)."""
        return self._localizer.tracking_start(stamp_s, base_T_optical) is not None

    def reset(self) -> None:
        """Forget the track: the next frame needs a prior."""
        self._localizer.reset()

    def localize(self, frame: FrameInput) -> LocalizationResult:
        """Localize one frame; an implausible estimate is refused (no estimate, the reason in the message)."""
        with self._lock:
            result = self._localizer.localize(frame.rgb, frame.intrinsics, frame.stamp_s, frame.prior,
                                              frame.label_mask, frame.base_T_optical)
            if result.estimate is not None:
                result = self._gate(result, frame)
        if frame.note:
            result.message = "; ".join(filter(None, [frame.note, result.message]))
        return result

    def _gate(self, result: LocalizationResult, frame: FrameInput) -> LocalizationResult:
        """An implausible estimate is refused (no pose, untrusted, the reason in the message) and the
        tracker forgets it: the next frame starts from a prior again.
        """
        from_prior = result.prior_source not in ("tracking", "none") and frame.prior is not None
        why = implausibility(result.estimate.nerf_T_optical, self.model.metadata.aabb, self._plausibility,
                             frame.prior.nerf_T_optical if from_prior else None,
                             frame.prior_covariance if from_prior else None)
        if not why:
            return result
        self._localizer.reset()
        message = "; ".join(filter(None, [result.message, f"estimate refused: {why}"]))
        return LocalizationResult(None, result.prior_source, message, False)

    def overlay(self, frame: FrameInput, estimate: PoseEstimate, scale: float) -> np.ndarray:
        """The observed image blended 50/50 with the NeRF rendered at the estimate (seed 003, Fig. 3)."""
        intrinsics = frame.intrinsics.scaled(scale)
        nerf_T_gl = torch.from_numpy(frames.optical_to_opengl(estimate.nerf_T_optical)).float().to(self.device)
        with torch.no_grad():
            rendered = render_image(self.model, intrinsics, nerf_T_gl)["rgb"]
        rendered = (rendered.clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
        observed = cv2.resize(frame.rgb, (intrinsics.width, intrinsics.height), interpolation=cv2.INTER_AREA)
        return cv2.addWeighted(observed, 0.5, rendered, 0.5, 0.0)
