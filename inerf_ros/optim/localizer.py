"""Frame-by-frame localization policy, ROS-free: prior -> full estimate, otherwise tracking.

Used by ``inerf_node`` and by offline replay so both behave identically:

* a fresh prior (within ``max_prior_age_s`` of the image) starts a full estimate with hypotheses;
* without one, the previous estimate warm-starts a short tracking estimate, as long as it is recent
  and was trusted. On a robot the start is the previous estimate moved by the arm's own motion
  between the two images, ``nerf_T_cam2 = nerf_T_cam1 @ inv(base_T_cam1) @ base_T_cam2`` (the
  kinematic chain from TF: within the calibration error, however fast the arm turns); without a
  chain, by a constant-velocity prediction;
* while a kinematic track is held, a prior is not taken: one that disagrees is reported (the track
  has the arm's encoders behind it, a prior is one detector's opinion of one image), one that agrees
  would only cost a full estimate (each tracking estimate is anchored by its own alignment);
* otherwise there is no estimate, and the result says why ("no prior" is an outcome, not an error).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from inerf_ros import lie
from inerf_ros.camera import Intrinsics
from inerf_ros.config import option
from inerf_ros.optim.inerf import PoseEstimate, PoseOptimizer


@dataclasses.dataclass
class LocalizerConfig:
    """The localization policy's settings: tracking, prior ages and the trust tests."""

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
    max_kinematic_gap_s: float = option(30.0, "with the arm's kinematic chain, track if the previous estimate is at "
                                              "most this old (seconds): the chain carries the camera between "
                                              "estimates, so the gap may be longer than max_tracking_gap_s",
                                        range=(0.0, 3600.0))
    held_track_estimates: int = option(3, "consecutive trusted kinematic tracking estimates after which the track "
                                          "is held: a re-anchoring prior is then not taken (reported when it "
                                          "disagrees)", range=(1, 1000))
    prior_track_disagreement_m: float = option(0.05, "a prior further than this from a held track's prediction "
                                                     "disagrees with it (metres)", range=(0.0, 1000.0))
    prior_track_disagreement_deg: float = option(5.0, "a prior rotated further than this from a held track's "
                                                      "prediction disagrees with it (degrees)", range=(0.0, 180.0))
    max_tracking_loss: float = option(0.02, "a result whose photometric loss (MSE, colours 0-1) exceeds this is "
                                            "not tracked from; scene-dependent (demo world: a held track ~0.002, "
                                            "a lost one ~0.02)",
                                      range=(0.0, 10.0))


@dataclasses.dataclass
class Prior:
    """A start pose from outside the optimizer: ``nerf_T_optical`` (4x4, NeRF units) at ``stamp_s``, and who gave it."""

    nerf_T_optical: np.ndarray
    stamp_s: float
    source: str = "posecnn"


@dataclasses.dataclass
class LocalizationResult:
    """The outcome of one frame: the estimate (None when there is none) and how it was started."""

    estimate: PoseEstimate | None
    prior_source: str
    """"posecnn"/"external"/"kinematics" (a prior started it), "tracking", or "none"."""
    message: str = ""
    trusted: bool = False
    """Whether the estimate passed the trust tests (tracked from, fed to the base correction)."""


@dataclasses.dataclass
class _Tracked:
    """The last trusted estimate, with the kinematic chain's camera pose at its stamp (if any)."""

    stamp_s: float
    nerf_T_optical: np.ndarray
    base_T_optical: np.ndarray | None


class Localizer:
    """Decides per frame between a full estimate from a prior and a tracking estimate (see the module docstring)."""

    def __init__(self, optimizer: PoseOptimizer, config: LocalizerConfig | None = None, metres_per_unit: float = 1.0):
        self.optimizer = optimizer
        self.config = config or LocalizerConfig()
        self.metres_per_unit = float(metres_per_unit)
        self._last: _Tracked | None = None
        self._last_anchor_s: float | None = None
        self._velocity: np.ndarray | None = None  # prev_T_last, per second, as a twist
        self._held = 0  # consecutive trusted kinematic tracking estimates

    def reset(self) -> None:
        """Forget the track (after a time jump back or a refused estimate): the next frame needs a prior."""
        self._last, self._velocity, self._last_anchor_s, self._held = None, None, None, 0

    def distrust_last(self) -> None:
        """Forget the last estimate (a later check found it implausible): no tracking from it."""
        self._last, self._velocity, self._held = None, None, 0

    def wants_prior(self, stamp_s: float, base_T_optical: np.ndarray | None = None) -> bool:
        """Whether a prior would be used for an image at ``stamp_s`` (else tracking suffices)."""
        if self.tracking_start(stamp_s, base_T_optical) is None:
            return True
        return self._last_anchor_s is None or stamp_s - self._last_anchor_s >= self.config.reanchor_every_s

    def localize(self, image_rgb: np.ndarray, intrinsics: Intrinsics, stamp_s: float, prior: Prior | None = None,
                 label_mask: np.ndarray | None = None,
                 base_T_optical: np.ndarray | None = None) -> LocalizationResult:
        """One image: a full estimate from ``prior``, a tracking estimate, or none (the result says why).

        Args:
            base_T_optical: (4, 4) the camera (ROS optical frame) in the robot's base frame at ``stamp_s``,
                NeRF units, from the kinematic chain; None without a robot (constant-velocity tracking).
        """
        config = self.config
        message = ""
        if base_T_optical is not None and not np.isfinite(base_T_optical).all():
            message, base_T_optical = "kinematic chain contains NaN or infinite values: ignored", None
        if prior is not None:
            if not np.isfinite(prior.nerf_T_optical).all():
                message = "prior contains NaN or infinite values: ignored"
                prior = None
            elif abs(prior.stamp_s - stamp_s) > config.max_prior_age_s:
                message = (f"prior is {abs(prior.stamp_s - stamp_s):.2f} s away from the image "
                           f"(max_prior_age_s={config.max_prior_age_s}): ignored")
                prior = None
        if prior is not None and self.wants_prior(stamp_s, base_T_optical):
            disagreement = self._disagreement_with_held_track(stamp_s, prior, base_T_optical)
            if disagreement:
                message = "; ".join(filter(None, [message, disagreement]))
                self._last_anchor_s = stamp_s  # asked again at the next re-anchoring time, not every frame
            else:
                # A start from the arm's kinematics is within the calibration error: one hypothesis and a
                # tracking estimate's few steps after the (full) alignment; no search around it.
                overrides = dict(max_iterations=self.config.tracking_iterations, num_hypotheses=1) \
                    if prior.source == "kinematics" else {}
                estimate = self.optimizer.estimate(image_rgb, intrinsics, prior.nerf_T_optical, label_mask,
                                                   **overrides)
                self._held = 0
                trusted = self._remember(stamp_s, estimate, base_T_optical)
                self._last_anchor_s = stamp_s
                return LocalizationResult(estimate, prior.source, message, trusted)

        start = self.tracking_start(stamp_s, base_T_optical)
        if start is None:
            why = "no prior" if self._last is None else "no fresh prior and the last estimate is too old or untrusted"
            return LocalizationResult(None, "none", "; ".join(filter(None, [message, why])))
        kinematic = self._kinematic(base_T_optical)
        estimate = self.optimizer.estimate(image_rgb, intrinsics, start, label_mask, **self._tracking_overrides())
        trusted = self._remember(stamp_s, estimate, base_T_optical)
        self._held = self._held + 1 if trusted and kinematic else 0
        note = "start predicted by the arm's kinematics" if kinematic else ""
        return LocalizationResult(estimate, "tracking", "; ".join(filter(None, [message, note])), trusted)

    def _kinematic(self, base_T_optical: np.ndarray | None) -> bool:
        """Whether a tracking start from the last estimate can use the kinematic chain."""
        return base_T_optical is not None and self._last is not None and self._last.base_T_optical is not None

    def _disagreement_with_held_track(self, stamp_s: float, prior: Prior, base_T_optical) -> str:
        """A reason not to take ``prior`` ("" to take it): a kinematic track is held."""
        config = self.config
        if self._held < config.held_track_estimates or not self._kinematic(base_T_optical):
            return ""
        predicted = self.tracking_start(stamp_s, base_T_optical)
        if predicted is None:
            return ""
        relative = np.linalg.inv(predicted) @ prior.nerf_T_optical
        distance_m = float(np.linalg.norm(relative[:3, 3])) * self.metres_per_unit
        angle_deg = math.degrees(math.acos(np.clip((np.trace(relative[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)))
        if distance_m <= config.prior_track_disagreement_m and angle_deg <= config.prior_track_disagreement_deg:
            # Each tracking estimate is anchored in the NeRF by its own alignment (no drift to reset), so
            # an agreeing prior would only cost a full estimate.
            return f"{prior.source} prior agrees with the held kinematic track: tracking"
        return (f"{prior.source} prior {100 * distance_m:.1f} cm / {angle_deg:.1f} deg from the held kinematic "
                f"track ({self._held} trusted estimates): not taken")

    def _tracking_overrides(self) -> dict:
        """Optimizer settings of a tracking estimate: short, one hypothesis, one small alignment round
        (a frame that takes longer than ``max_tracking_gap_s`` ends tracking: the full alignment of a
        prior's estimate would). When that round fails, pan/tilt offsets are tried as for a prior.
        """
        config = self.config
        overrides = dict(max_iterations=config.tracking_iterations, num_hypotheses=1, feature_align_rounds=1,
                         feature_align_scale=config.tracking_feature_align_scale)
        if config.tracking_learning_rate:
            overrides["learning_rate"] = config.tracking_learning_rate
        if not config.tracking_feature_align:
            overrides["feature_align"] = "none"
        return overrides

    def tracking_start(self, stamp_s: float, base_T_optical: np.ndarray | None = None) -> np.ndarray | None:
        """Where a tracking estimate for an image at ``stamp_s`` would start (None: no track to follow)."""
        config = self.config
        last = self._last
        if not config.tracking or last is None:
            return None
        dt = stamp_s - last.stamp_s
        if self._kinematic(base_T_optical):
            if dt < 0 or dt > config.max_kinematic_gap_s:
                return None
            cam1_T_cam2 = np.linalg.inv(last.base_T_optical) @ base_T_optical  # the arm's own motion
            return last.nerf_T_optical @ cam1_T_cam2
        if dt < 0 or dt > config.max_tracking_gap_s:
            return None
        if config.constant_velocity and self._velocity is not None:
            step = lie.se3_exp(torch.from_numpy(self._velocity * dt)).numpy()
            return last.nerf_T_optical @ step
        return last.nerf_T_optical

    def _remember(self, stamp_s: float, estimate: PoseEstimate, base_T_optical: np.ndarray | None) -> bool:
        """Keep a trusted estimate as the next tracking start; returns whether it was trusted."""
        if estimate.final_loss > self.config.max_tracking_loss or not np.isfinite(estimate.nerf_T_optical).all():
            self._last, self._velocity, self._held = None, None, 0  # do not track from a result we do not trust
            return False
        last = self._last
        if last is not None and stamp_s > last.stamp_s:
            relative = np.linalg.inv(last.nerf_T_optical) @ estimate.nerf_T_optical
            self._velocity = lie.se3_log(torch.from_numpy(relative)).numpy() / (stamp_s - last.stamp_s)
        self._last = _Tracked(stamp_s, estimate.nerf_T_optical, base_T_optical)
        return True
