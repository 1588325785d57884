"""Frame-by-frame localization policy, ROS-free: prior -> full estimate, otherwise tracking.

Used by ``inerf_node`` and by offline replay so both behave identically:

* a fresh prior (within ``max_prior_age_s`` of the image) starts a full estimate with hypotheses;
* without one, the previous estimate (optionally moved on by a constant-velocity prediction)
  warm-starts a short tracking estimate, as long as it is recent and was trusted;
* otherwise there is no estimate, and the result says why ("no prior" is an outcome, not an error).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from inerf_ros import lie
from inerf_ros.camera import Intrinsics
from inerf_ros.config import option
from inerf_ros.optim.inerf import PoseEstimate, PoseOptimizer


@dataclasses.dataclass
class LocalizerConfig:
    tracking: bool = option(True, "warm-start from the previous estimate when no fresh prior is available")
    tracking_iterations: int = option(30, "iteration cap of a tracking estimate", range=(1, 10000))
    tracking_learning_rate: float = option(0.0, "Adam step size of tracking estimates (0: learning_rate); their "
                                                "start is already close, and Adam's first steps move every twist "
                                                "coordinate by about the step size", range=(0.0, 1.0))
    tracking_feature_align: bool = option(True, "tracking estimates also align features first (when the "
                                                "optimizer's feature_align is on): an arm can turn the camera "
                                                "by more than the photometric basin between processed frames")
    tracking_feature_align_scale: float = option(0.2, "rendering size of a tracking estimate's feature "
                                                      "alignment, relative to the image (one render-match-PnP "
                                                      "round from the predicted pose; the rendering is most of "
                                                      "its cost)", range=(0.1, 2.0))
    constant_velocity: bool = option(True, "predict the tracking start with the last motion (constant velocity)")
    max_prior_age_s: float = option(0.5, "a prior further than this from the image's stamp is stale (seconds)",
                                    range=(0.0, 3600.0))
    max_tracking_gap_s: float = option(1.0, "track only if the previous estimate is at most this old (seconds)",
                                       range=(0.0, 3600.0))
    reanchor_every_s: float = option(2.0, "while tracking, start from a fresh prior again after this long (s)",
                                     range=(0.0, 3600.0))
    max_tracking_loss: float = option(0.02, "a result whose photometric loss (MSE, colours 0-1) exceeds this is "
                                            "not tracked from; scene-dependent (demo world: a held track ~0.002, "
                                            "a lost one ~0.02)",
                                      range=(0.0, 10.0))


@dataclasses.dataclass
class Prior:
    nerf_T_optical: np.ndarray
    stamp_s: float
    source: str = "posecnn"


@dataclasses.dataclass
class LocalizationResult:
    estimate: PoseEstimate | None
    prior_source: str
    """"posecnn"/"external" (a prior started it), "tracking", or "none"."""
    message: str = ""


class Localizer:
    def __init__(self, optimizer: PoseOptimizer, config: LocalizerConfig | None = None):
        self.optimizer = optimizer
        self.config = config or LocalizerConfig()
        self._last: tuple[float, np.ndarray] | None = None
        self._last_anchor_s: float | None = None
        self._velocity: np.ndarray | None = None  # prev_T_last, per second, as a twist

    def reset(self) -> None:
        self._last, self._velocity, self._last_anchor_s = None, None, None

    def wants_prior(self, stamp_s: float) -> bool:
        """Whether a prior would be used for an image at ``stamp_s`` (else tracking suffices)."""
        if self._tracking_start(stamp_s) is None:
            return True
        return self._last_anchor_s is None or stamp_s - self._last_anchor_s >= self.config.reanchor_every_s

    def localize(self, image_rgb: np.ndarray, intrinsics: Intrinsics, stamp_s: float, prior: Prior | None = None,
                 label_mask: np.ndarray | None = None) -> LocalizationResult:
        config = self.config
        message = ""
        if prior is not None:
            if not np.isfinite(prior.nerf_T_optical).all():
                message = "prior contains NaN or infinite values: ignored"
                prior = None
            elif abs(prior.stamp_s - stamp_s) > config.max_prior_age_s:
                message = (f"prior is {abs(prior.stamp_s - stamp_s):.2f} s away from the image "
                           f"(max_prior_age_s={config.max_prior_age_s}): ignored")
                prior = None
        if prior is not None and self.wants_prior(stamp_s):
            estimate = self.optimizer.estimate(image_rgb, intrinsics, prior.nerf_T_optical, label_mask)
            self._remember(stamp_s, estimate)
            self._last_anchor_s = stamp_s
            return LocalizationResult(estimate, prior.source, message)

        start = self._tracking_start(stamp_s)
        if start is None:
            why = "no prior" if self._last is None else "no fresh prior and the last estimate is too old or untrusted"
            return LocalizationResult(None, "none", "; ".join(filter(None, [message, why])))
        estimate = self.optimizer.estimate(image_rgb, intrinsics, start, label_mask, **self._tracking_overrides())
        self._remember(stamp_s, estimate)
        return LocalizationResult(estimate, "tracking", message)

    def _tracking_overrides(self) -> dict:
        """Optimizer settings of a tracking estimate: short, one hypothesis, one small alignment round
        (a frame that takes longer than ``max_tracking_gap_s`` ends tracking: the full alignment of a
        prior's estimate would). When that round fails, pan/tilt offsets are tried as for a prior."""
        config = self.config
        overrides = dict(max_iterations=config.tracking_iterations, num_hypotheses=1, feature_align_rounds=1,
                         feature_align_scale=config.tracking_feature_align_scale)
        if config.tracking_learning_rate:
            overrides["learning_rate"] = config.tracking_learning_rate
        if not config.tracking_feature_align:
            overrides["feature_align"] = "none"
        return overrides

    def _tracking_start(self, stamp_s: float) -> np.ndarray | None:
        config = self.config
        if not config.tracking or self._last is None:
            return None
        last_stamp, last_pose = self._last
        dt = stamp_s - last_stamp
        if dt < 0 or dt > config.max_tracking_gap_s:
            return None
        if config.constant_velocity and self._velocity is not None:
            step = lie.se3_exp(torch.from_numpy(self._velocity * dt)).numpy()
            return last_pose @ step
        return last_pose

    def _remember(self, stamp_s: float, estimate: PoseEstimate) -> None:
        if estimate.final_loss > self.config.max_tracking_loss or not np.isfinite(estimate.nerf_T_optical).all():
            self._last, self._velocity = None, None  # do not track from a result we do not trust
            return
        if self._last is not None and stamp_s > self._last[0]:
            last_stamp, last_pose = self._last
            relative = np.linalg.inv(last_pose) @ estimate.nerf_T_optical
            self._velocity = lie.se3_log(torch.from_numpy(relative)).numpy() / (stamp_s - last_stamp)
        self._last = (stamp_s, estimate.nerf_T_optical)
