"""iNeRF: camera pose by gradient descent through a NeRF, with the product's extensions.

The pose is a start pose times an SE(3) correction, ``nerf_T_cam = nerf_T_start @ exp(xi)``, one
twist per hypothesis. The correction is applied in the camera's own frame (right-multiplied), so a
rotation turns the camera about its centre instead of about the NeRF origin: the rotation and
translation gradients stay decoupled, which converges faster than iNeRF's left correction.

Each step renders the same ``N`` pixels for all ``K`` hypotheses in one batch (K x N rays), takes a
photometric loss per hypothesis, and moves every twist with Adam (iNeRF's schedule by default:
lr 0.01, x0.8 every 100 steps). Beyond the paper:

* parallel hypotheses with resampling: pan/tilt rings around the prior; every ``resample_every``
  steps the worst are replaced by perturbed copies of the best (K stays fixed: fixed tensor shapes);
* coarse-to-fine: the field's fine levels are blanked at first and released linearly;
* a robust loss (Huber);
* a Levenberg-Marquardt solver (``solver="lm"``): Gauss-Newton steps with an exact Jacobian built
  from per-ray gradients (3 backward passes per step, one per colour channel) and per-hypothesis
  damping. Photometric pose estimation is a small least-squares problem whose depth direction is
  badly conditioned; LM fixes the conditioning that Adam's per-coordinate steps cannot;
* convergence when the best pose moves less than the tolerances for ``converge_steps`` steps,
  an iteration cap, and a wall-clock budget;
* a 6x6 covariance: Gauss-Newton at the optimum (finite-difference Jacobian of the residuals),
  plus the spread of the hypotheses that ended near the best loss.

Frames: the public API takes and returns ``nerf_T_optical`` (the camera as a ROS optical frame,
expressed in the NeRF frame, NeRF units); the renderer works with the OpenGL camera internally.
"""
from __future__ import annotations

import dataclasses
import math
import time

import cv2
import numpy as np
import torch
from torch import Tensor

from inerf_ros import frames, lie
from inerf_ros.camera import Intrinsics
from inerf_ros.config import option
from inerf_ros.nerf.appearance import fit_affine_colour
from inerf_ros.nerf.rays import pixel_rays  # the NeRF engine's camera model
from inerf_ros.nerf.render import render_image
from inerf_ros.optim import features
from inerf_ros.optim.sampling import PixelSampler, SamplingConfig, needs_opacity


@dataclasses.dataclass
class OptimizerConfig:
    """iNeRF's optimizer settings: solver, step sizes and schedule, stopping, hypotheses, feature alignment."""

    solver: str = option("adam", "adam: iNeRF's Adam on the twist; lm: Levenberg-Marquardt (fewer, costlier steps)",
                         choices=("adam", "lm"))
    max_iterations: int = option(300, "iteration cap per estimate (iNeRF: 300)", range=(1, 100000))
    learning_rate: float = option(0.01, "Adam step size on the twist (iNeRF: 0.01)", range=(1e-6, 1.0))
    lr_schedule: str = option("step", "step: x lr_decay every lr_decay_every steps (iNeRF); cosine: from "
                                      "learning_rate down to lr_min_fraction of it at the iteration cap (Adam's "
                                      "last steps are small, so the final pose jitters less)",
                              choices=("step", "cosine"))
    lr_min_fraction: float = option(0.05, "cosine schedule: final step size as a fraction of the first",
                                    range=(0.0, 1.0))
    lr_decay: float = option(0.8, "learning-rate factor applied every lr_decay_every steps", range=(0.01, 1.0))
    lr_decay_every: int = option(100, "steps between learning-rate decays", range=(1, 100000))
    loss: str = option("mse", "photometric loss", choices=("mse", "huber"))
    exposure: str = option("fixed", "fixed: compare rendered and observed colours as they are; affine: first map "
                                    "the rendered colours by the gain and offset per channel that fit the observed "
                                    "pixels best (refitted on every batch: a camera's auto-exposure and white "
                                    "balance differ from those of the NeRF's photos, and a colour mismatch pulls "
                                    "the pose towards views with more of the brighter or darker surfaces)",
                           choices=("fixed", "affine"))
    huber_delta: float = option(0.1, "Huber loss threshold on colour residuals (0-1 scale)", range=(1e-4, 1.0))
    rotation_tolerance_deg: float = option(0.05, "convergence: best pose rotates less than this per step",
                                           range=(0.0, 10.0))
    translation_tolerance: float = option(5e-4, "convergence: best pose moves less than this per step "
                                                "(NeRF units)", range=(0.0, 10.0))
    converge_steps: int = option(10, "consecutive steps under the tolerances to stop", range=(1, 1000))
    min_iterations: int = option(20, "never stop before this many steps", range=(0, 100000))
    time_budget_s: float = option(0.0, "wall-clock budget per estimate in seconds (0: none)", range=(0.0, 3600.0))
    num_hypotheses: int = option(1, "poses optimised together in one batch", range=(1, 1024))
    hypothesis_rotation_deg: float = option(10.0, "spread of the extra hypotheses around the start (degrees)",
                                            range=(0.0, 180.0))
    hypothesis_translation: float = option(0.05, "spread of the extra hypotheses around the start "
                                                 "(NeRF units, per axis)", range=(0.0, 100.0))
    resample_every: int = option(25, "steps between replacing the worst hypotheses by copies of the best",
                                 range=(1, 100000))
    resample_fraction: float = option(0.5, "fraction of hypotheses replaced at each resampling", range=(0.0, 1.0))
    coarse_to_fine: bool = option(False, "release the field's fine levels progressively")
    coarse_to_fine_fraction: float = option(0.3, "fraction of max_iterations until all levels are on",
                                            range=(0.0, 1.0))
    coarse_levels: int = option(1, "field levels enabled at the start of coarse-to-fine", range=(1, 64))
    lm_damping: float = option(1e-3, "initial Levenberg-Marquardt damping (relative to the diagonal)",
                               range=(0.0, 1e6))
    lm_max_step_deg: float = option(3.0, "trust region: initial largest rotation of one LM step (degrees); it "
                                         "grows x1.5 (to 3x) after accepted steps and halves after rejected ones",
                                    range=(0.01, 180.0))
    lm_max_step_fraction: float = option(0.01, "trust region: initial largest translation of one LM step, as a "
                                               "fraction of the scene box diagonal", range=(1e-5, 1.0))
    ray_refresh_every: int = option(1, "steps between drawing a new batch of pixels; LM converges on a fixed "
                                       "batch (a true least-squares problem) and wanders when every step sees "
                                       "new pixels, Adam wants fresh pixels (1)", range=(1, 100000))
    samples_per_ray: int = option(0, "samples per ray on the pose path (0: the model's own setting); fewer is "
                                     "faster, the occupancy grid already skips empty space", range=(0, 1024))
    feature_align: str = option("none", "before the photometric steps, match image features (sift or orb) "
                                        "between the image and the NeRF rendered at the start, and solve the "
                                        "pose by PnP on the rendered depth: reaches far beyond the photometric "
                                        "basin (none: iNeRF as published)", choices=("none", "sift", "orb"))
    feature_align_scale: float = option(0.5, "rendering size for feature alignment, relative to the image",
                                        range=(0.1, 2.0))
    feature_align_rounds: int = option(2, "render-match-PnP rounds; later rounds start from the previous "
                                          "round's pose, whose rendering matches better", range=(1, 10))
    feature_align_pool: bool = option(True, "the aligned pose is one PnP on every round's matches together "
                                            "(steadier than the last round's few dozen)")
    feature_align_tries: int = option(1, "start renderings tried until one aligns: the start, then pan/tilt "
                                         "rings of hypothesis_rotation_deg around it", range=(1, 64))
    feature_align_min_inliers: int = option(10, "PnP inliers needed to accept a feature alignment (its pose "
                                                "must also lower the photometric loss)",
                                            range=(6, 10000))
    feature_align_retry_scale: float = option(0.0, "an alignment with fewer than feature_align_retry_inliers inliers "
                                                   "is tried once more on a kept rendering of this size near the "
                                                   "start (an earlier cold estimate's; never a new rendering); 0 or "
                                                   "not above feature_align_scale: never", range=(0.0, 2.0))
    feature_align_retry_inliers: int = option(20, "see feature_align_retry_scale", range=(6, 10000))
    feature_align_keyframes: int = option(16, "feature-alignment renderings kept and reused by later estimates whose "
                                              "start is close to one (rendering is most of a tracking estimate's "
                                              "cost; 0: render every time)", range=(0, 10000))
    keyframe_max_angle_deg: float = option(8.0, "a kept rendering serves a start whose optical axis is within this "
                                                "angle of its own (degrees)", range=(0.0, 90.0))
    keyframe_max_shift: float = option(0.15, "... and whose centre is within this fraction of the rendering's "
                                             "median scene depth", range=(0.0, 10.0))
    refine_learning_rate: float = option(0.002, "Adam step size after a feature alignment succeeded (the start "
                                                "is then within about a degree)", range=(1e-6, 1.0))
    refine_iterations: int = option(30, "iteration cap after a feature alignment succeeded", range=(1, 100000))
    covariance_rays: int = option(2048, "rays for the Gauss-Newton covariance after Adam (0: skip it); LM "
                                        "reuses its last step's Jacobian", range=(0, 65536))
    seed: int = option(0, "random seed (ray sampling, hypotheses)", range=(0, 2**31 - 1))


@dataclasses.dataclass
class PoseEstimate:
    """Result of one estimate. Poses are in the NeRF frame and NeRF units."""

    nerf_T_optical: np.ndarray
    """(4, 4) the camera as a ROS optical frame."""
    iterations: int
    final_loss: float
    converged: bool
    time_s: float
    num_hypotheses: int
    sampling_strategy: str
    covariance: np.ndarray
    """(6, 6) over (x, y, z, rot x, rot y, rot z) in the NeRF frame's axes, NeRF units and radians."""
    note: str = ""
    history: list[np.ndarray] = dataclasses.field(default_factory=list)
    """Best ``nerf_T_optical`` after each iteration (for error-vs-iteration plots)."""
    losses: list[float] = dataclasses.field(default_factory=list)
    feature_aligned: bool | None = None
    """Whether feature alignment found (or confirmed) the pose; None when it was off."""

    @property
    def nerf_T_opengl(self) -> np.ndarray:
        """(4, 4) the camera as an OpenGL frame (x right, y up, looking down -z) in the NeRF frame, NeRF units."""
        return frames.optical_to_opengl(self.nerf_T_optical)


class _Adam:
    """Adam over a (K, 6) tensor with per-row state, so rows can be replaced in place."""

    def __init__(self, shape, device, dtype, betas=(0.9, 0.999), eps=1e-8):
        self.m = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.t = torch.zeros(shape[0], 1, device=device, dtype=dtype)
        self.b1, self.b2, self.eps = betas[0], betas[1], eps

    def step(self, param: Tensor, grad: Tensor, lr: float) -> None:
        self.t += 1
        self.m.mul_(self.b1).add_(grad, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(grad, grad, value=1 - self.b2)
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        param.sub_(lr * m_hat / (v_hat.sqrt() + self.eps))

    def reset_rows(self, rows: Tensor) -> None:
        self.m[rows] = 0
        self.v[rows] = 0
        self.t[rows] = 0


class _LevenbergMarquardt:
    """Per-hypothesis Levenberg-Marquardt state. ``poses`` is the caller's (K, 4, 4) tensor, updated in
    place with accepted steps; ``candidate`` is the pose proposed for the next render.
    """

    def __init__(self, poses: Tensor, damping: float):
        k = poses.shape[0]
        options = dict(dtype=torch.float64, device=poses.device)
        self.poses = poses
        self.candidate = poses.clone()
        self.damping = torch.full((k,), damping, **options)
        self.trust = torch.ones(k, **options)  # trust-region scale: 1 = the configured step bounds
        self.loss = torch.full((k,), math.inf, **options)
        self.always_accept = torch.ones(k, dtype=torch.bool, device=poses.device)
        self.residual: Tensor | None = None
        self.jacobian: Tensor | None = None

    def judge(self, loss: Tensor, residual: Tensor | None, jacobian: Tensor | None, reset: bool) -> None:
        """Keep the candidate where it lowers the loss (or must be accepted); adapt damping and trust.

        ``residual``/``jacobian`` of the candidate are kept for the accepted rows when given (else the
        next iteration must be fresh); ``reset`` replaces them wholesale (new pixels).
        """
        better = self.always_accept | (loss < self.loss)
        improved, rejected = better & ~self.always_accept, ~better
        self.poses[better] = self.candidate[better]
        self.loss = torch.where(better, loss, self.loss)
        if residual is not None:
            if reset or self.residual is None:
                self.residual, self.jacobian = residual, jacobian
            else:
                self.residual = torch.where(better[:, None, None], residual, self.residual)
                self.jacobian = torch.where(better[:, None, None, None], jacobian, self.jacobian)
        self.damping = torch.where(improved, (self.damping / 3).clamp_min(1e-7),
                                   torch.where(rejected, (self.damping * 4).clamp_max(1e7), self.damping))
        self.trust = torch.where(improved, (self.trust * 1.5).clamp_max(3.0),
                                 torch.where(rejected, (self.trust * 0.5).clamp_min(0.01), self.trust))
        self.always_accept[:] = False


# A feature-aligned pose this close to the start confirms the start (PnP's own error is ~0.5 deg).
_AGREE_DEG = 2.0
_AGREE_FRACTION = 0.01  # of the scene box diagonal


def _lr_factor(config: OptimizerConfig, iteration: int, max_iterations: int) -> float:
    """Step-size multiplier of ``iteration`` (1-based) under the configured schedule."""
    if config.lr_schedule == "cosine":
        progress = (iteration - 1) / max(1, max_iterations - 1)
        low = config.lr_min_fraction
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))
    return config.lr_decay ** ((iteration - 1) // config.lr_decay_every)


def _residual(rendered: Tensor, target: Tensor, config: OptimizerConfig) -> Tensor:
    """Colour residuals (K, N, 3) of rendered (K, N, 3) against observed (N, 3) pixels."""
    if config.exposure == "affine":
        gain, offset = fit_affine_colour(rendered, target)
        return rendered * gain.to(rendered.dtype) + offset.to(rendered.dtype) - target[None]
    return rendered - target[None]


def _photometric_loss(residual: Tensor, config: OptimizerConfig) -> Tensor:
    """Per-hypothesis loss of residuals (K, N, 3)."""
    if config.loss == "huber":
        return torch.nn.functional.huber_loss(residual, torch.zeros_like(residual), delta=config.huber_delta,
                                              reduction="none").mean(dim=(1, 2))
    return (residual * residual).mean(dim=(1, 2))


def _hypothesis_offsets(n: int, rotation_deg: float, translation: float, generator: torch.Generator,
                        dtype=torch.float64) -> Tensor:
    """(n, 4, 4) body-frame offsets of the extra hypotheses: pan/tilt rings around the prior.

    The usual way a start fails is that the object sits outside the view, so the hypotheses aim
    the camera systematically: rings of 8 directions (pan about the camera's y axis, tilt about
    its x axis) at radii up to ``rotation_deg``, plus a small random roll and a random shift.
    """
    rings = max(1, math.ceil(n / 8))
    angles = []
    for i in range(n):
        ring, slot = divmod(i, 8)
        per_ring = min(8, n - ring * 8)
        radius = math.radians(rotation_deg) * (ring + 1) / rings
        phase = 2 * math.pi * slot / per_ring + (math.pi / 8) * ring
        angles.append((radius * math.sin(phase), radius * math.cos(phase)))  # (tilt about x, pan about y)
    tilt_pan = torch.tensor(angles, dtype=dtype)
    roll = (torch.rand(n, generator=generator, dtype=dtype) * 2 - 1) * math.radians(rotation_deg) / 4
    rotation = lie.so3_exp(torch.stack([tilt_pan[:, 0], tilt_pan[:, 1], roll], dim=-1))
    shift = (torch.rand(n, 3, generator=generator, dtype=dtype) * 2 - 1) * translation
    return lie.make_pose(rotation, shift)


def _perturbations(n: int, rotation_deg: float, translation: float, generator: torch.Generator,
                   dtype=torch.float64) -> Tensor:
    """(n, 4, 4) random rigid perturbations (random axis, angle within +-rotation_deg, box translation)."""
    rotation = lie.random_rotation_about_random_axis(rotation_deg, n, generator=generator, dtype=dtype)
    shift = (torch.rand(n, 3, generator=generator, dtype=dtype) * 2 - 1) * translation
    return lie.make_pose(rotation, shift)


PER_CALL = frozenset({"max_iterations", "num_hypotheses", "learning_rate", "feature_align", "feature_align_scale",
                      "feature_align_rounds"})
"""OptimizerConfig fields that ``PoseOptimizer.estimate`` can override for one call."""


class PoseOptimizer:
    """Inverts a NeRF for one image at a time.

    Args:
        model: a NerfModel (``inerf_ros.nerf``): ``render_rays(origins, directions, max_level=None)``.
        config: optimizer settings.
        sampling: ray sampling settings.
        device: where the optimisation runs (the model must be on the same device).
    """

    def __init__(self, model, config: OptimizerConfig | None = None, sampling: SamplingConfig | None = None,
                 device: str | torch.device = "cpu"):
        self.model = model
        self.config = config or OptimizerConfig()
        self.sampling = sampling or SamplingConfig()
        self.device = torch.device(device)
        self._pixel_rays = pixel_rays
        self._num_levels = int(model.field.n_levels)
        aabb = torch.as_tensor(model.metadata.aabb, dtype=torch.float64)
        self._scene_diagonal = float((aabb[1] - aabb[0]).norm())
        self._matcher = None  # feature detector/matcher, created on first use (OpenCV objects)
        self._keyframes = None  # feature-alignment renderings kept for reuse (features.KeyframeCache)

    # -- the loss of K hypotheses on one batch of pixels ------------------------------------------
    def _render_loss(self, start_nerf_T_gl: Tensor, xi: Tensor, intrinsics: Intrinsics, uv: Tensor,
                     target: Tensor, max_level: int | None) -> tuple[Tensor, Tensor]:
        nerf_T_gl = start_nerf_T_gl @ lie.se3_exp(xi)
        origins, directions = self._pixel_rays(intrinsics, nerf_T_gl.float(), uv)
        k, n = origins.shape[:2]
        out = self.model.render_rays(origins.reshape(-1, 3), directions.reshape(-1, 3), max_level=max_level,
                                     n_samples=self.config.samples_per_ray or None)
        residual = _residual(out["rgb"].reshape(k, n, 3), target, self.config)
        return _photometric_loss(residual, self.config), residual

    def _max_level(self, iteration: int, config: OptimizerConfig) -> float | None:
        """Highest field level for this iteration (levels count from 0; fractions fade a level in)."""
        if not config.coarse_to_fine:
            return None
        ramp = max(1, int(config.coarse_to_fine_fraction * config.max_iterations))
        first, last = min(config.coarse_levels, self._num_levels) - 1, self._num_levels - 1
        progress = min(1.0, iteration / ramp)
        return None if progress >= 1.0 else first + (last - first) * progress

    def estimate(self, image_rgb: np.ndarray, intrinsics: Intrinsics, start_nerf_T_optical: np.ndarray,
                 label_mask: np.ndarray | None = None, keep_history: bool = False, **overrides) -> PoseEstimate:
        """Find the camera pose of ``image_rgb`` starting from ``start_nerf_T_optical``.

        Args:
            image_rgb: (H, W, 3) uint8 observed image, the size given by ``intrinsics``.
            intrinsics: the observed camera's intrinsics (undistorted pinhole).
            start_nerf_T_optical: (4, 4) start pose, ROS optical camera frame in the NeRF frame.
            label_mask: (H, W) class ids for mask-region sampling.
            overrides: per-call values of the :data:`PER_CALL` config fields (tracking uses fewer
                iterations, one hypothesis, a smaller Adam step and a lighter feature alignment).
        Raises:
            ValueError: non-finite start pose, wrong image size or type.
        """
        unknown = set(overrides) - PER_CALL
        if unknown:
            raise ValueError(f"not a per-call optimizer setting: {sorted(unknown)} (per call: {sorted(PER_CALL)})")
        config = dataclasses.replace(self.config, **overrides) if overrides else self.config
        started = time.perf_counter()
        start = np.asarray(start_nerf_T_optical, dtype=np.float64)
        if start.shape != (4, 4):
            raise ValueError(f"start pose must be 4x4, got shape {start.shape}")
        if not np.isfinite(start).all():
            raise ValueError("start pose contains NaN or infinite values")
        image_rgb = np.asarray(image_rgb)
        if image_rgb.shape != (intrinsics.height, intrinsics.width, 3):
            raise ValueError(f"image shape {image_rgb.shape} does not match the intrinsics "
                             f"({intrinsics.height}, {intrinsics.width}, 3)")
        max_iterations, k, learning_rate = config.max_iterations, config.num_hypotheses, config.learning_rate

        generator = torch.Generator().manual_seed(config.seed)
        sampler = self._sampler(image_rgb, intrinsics, start, label_mask, config.seed)
        target_image = torch.from_numpy(image_rgb).to(self.device, torch.float32) / 255.0

        align_note, aligned = "", None
        if config.feature_align != "none":
            aligned, align_note = self._feature_align(config, image_rgb, intrinsics, start, sampler, target_image)
            if aligned is not None:  # now within about a degree: refine gently, one hypothesis
                start, k = aligned, 1
                max_iterations = min(max_iterations, config.refine_iterations)
                learning_rate = config.refine_learning_rate
                if needs_opacity(self.sampling):  # the foreground as seen from the aligned pose
                    sampler = self._sampler(image_rgb, intrinsics, start, label_mask, config.seed)
        start_gl = torch.from_numpy(frames.optical_to_opengl(start)).to(self.device, torch.float64)
        starts = start_gl.expand(k, 4, 4).clone()
        if k > 1:  # hypothesis 0 is the prior itself; the others spread around it
            perturb = _hypothesis_offsets(k - 1, config.hypothesis_rotation_deg, config.hypothesis_translation,
                                          generator)
            starts[1:] = starts[1:] @ perturb.to(self.device)
        xi = torch.zeros(k, 6, device=self.device, dtype=torch.float64)
        adam = _Adam(xi.shape, self.device, xi.dtype)
        lm = _LevenbergMarquardt(starts, config.lm_damping)
        smoothed = torch.full((k,), float("nan"), dtype=torch.float64, device=self.device)

        history, losses = [], []
        best, quiet_steps, converged, iteration = 0, 0, False, 0
        previous_best_pose = starts[0].clone()
        previous_max_level = None
        for iteration in range(1, max_iterations + 1):
            lr = learning_rate * _lr_factor(config, iteration, max_iterations)
            new_rays = (iteration - 1) % config.ray_refresh_every == 0
            if new_rays:
                uv = sampler.sample().uv.to(self.device)
                target = target_image[uv[:, 1].long(), uv[:, 0].long()]
            max_level = self._max_level(iteration, config)
            if config.solver == "lm":
                next_fresh = (iteration % config.ray_refresh_every == 0
                              or self._max_level(iteration + 1, config) != max_level)
                loss = self._lm_step(lm, intrinsics, uv, target, max_level,
                                     fresh=new_rays or max_level != previous_max_level, score_now=next_fresh)
            else:
                xi.requires_grad_(True)
                loss, _ = self._render_loss(starts, xi, intrinsics, uv, target, max_level)
                (grad,) = torch.autograd.grad(loss.sum(), xi)
                xi = xi.detach()
                adam.step(xi, grad, lr)
            previous_max_level = max_level
            if not bool(torch.isfinite(loss).all()):
                raise FloatingPointError(f"photometric loss became non-finite at iteration {iteration}")

            step_loss = loss.detach().double()
            smoothed = torch.where(torch.isnan(smoothed), step_loss, 0.7 * smoothed + 0.3 * step_loss)
            best = int(torch.argmin(smoothed))
            if k > 1 and iteration % config.resample_every == 0 and iteration < max_iterations:
                replaced = self._resample(starts, xi, adam, smoothed, generator)
                lm.candidate[replaced] = starts[replaced]  # re-scored as they are next iteration
                lm.always_accept[replaced] = True
                best = int(torch.argmin(smoothed))

            with torch.no_grad():
                best_pose = starts[best] @ lie.se3_exp(xi[best])
                moved_deg, moved = lie.pose_error(best_pose, previous_best_pose)
                previous_best_pose = best_pose
            losses.append(float(step_loss[best]))
            if keep_history:
                history.append(frames.opengl_to_optical(best_pose.cpu().numpy()))
            small_step = (moved_deg.item() < config.rotation_tolerance_deg
                          and moved.item() < config.translation_tolerance)
            quiet_steps = quiet_steps + 1 if small_step else 0
            if quiet_steps >= config.converge_steps and iteration >= config.min_iterations:
                converged = True
                break
            if config.time_budget_s and time.perf_counter() - started > config.time_budget_s:
                break

        with torch.no_grad():
            final_gl = starts[best] @ lie.se3_exp(xi[best])
        final_optical = frames.opengl_to_optical(final_gl.cpu().numpy())
        covariance = self._covariance(final_gl, intrinsics, sampler, target_image, starts, xi, smoothed, best, lm)
        note = "; ".join(filter(None, [align_note, sampler.note]))
        if not converged:
            note = (note + "; " if note else "") + ("time budget reached" if config.time_budget_s and
                                                    time.perf_counter() - started > config.time_budget_s
                                                    else "iteration cap reached")
        return PoseEstimate(
            nerf_T_optical=final_optical, iterations=iteration, final_loss=float(smoothed[best]),
            converged=converged, time_s=time.perf_counter() - started, num_hypotheses=k,
            sampling_strategy=sampler.strategy, covariance=covariance, note=note, history=history, losses=losses,
            feature_aligned=None if config.feature_align == "none" else aligned is not None)

    def _sampler(self, image_rgb: np.ndarray, intrinsics: Intrinsics, nerf_T_optical: np.ndarray,
                 label_mask: np.ndarray | None, seed: int) -> PixelSampler:
        """The pixel sampler of one estimate; the ``foreground`` strategy renders the opacity at the pose."""
        opacity = self._opacity(intrinsics, nerf_T_optical) if needs_opacity(self.sampling) else None
        return PixelSampler(image_rgb, self.sampling, label_mask, seed=seed, opacity=opacity)

    def _opacity(self, intrinsics: Intrinsics, nerf_T_optical: np.ndarray, factor: float = 0.25) -> np.ndarray:
        """(H, W) NeRF opacity at a pose, rendered at ``factor`` of the size (a region, not a picture:
        a 16th of the rays costs less than a few optimizer steps) and enlarged to the image.
        """
        small = intrinsics.scaled(factor)
        pose = torch.from_numpy(frames.optical_to_opengl(nerf_T_optical)).to(self.device, torch.float32)
        opacity = render_image(self.model, small, pose, n_samples=self.config.samples_per_ray or None)["opacity"]
        return cv2.resize(opacity.float().cpu().numpy(), (intrinsics.width, intrinsics.height),
                          interpolation=cv2.INTER_LINEAR)

    def _feature_align(self, config: OptimizerConfig, image_rgb: np.ndarray, intrinsics: Intrinsics,
                       start_nerf_T_optical: np.ndarray, sampler: PixelSampler,
                       target_image: Tensor) -> tuple[np.ndarray | None, str]:
        """Feature-matched pose near ``start`` (see :mod:`inerf_ros.optim.features`), or None and why not.

        Tries the start's rendering first, then pan/tilt offsets of it. A PnP pose is only taken when
        it also explains the pixels better than the start: RANSAC can agree on a wrong pose when
        the matches are few and repetitive, the photometric loss cannot be fooled that way.
        """
        if self._matcher is None or self._matcher.detector != config.feature_align:
            self._matcher = features.FeatureMatcher(config.feature_align)
        renders = [np.asarray(start_nerf_T_optical)]
        if config.feature_align_tries > 1:
            offsets = _hypothesis_offsets(config.feature_align_tries - 1, config.hypothesis_rotation_deg, 0.0,
                                          torch.Generator().manual_seed(config.seed)).numpy()
            start_gl = frames.optical_to_opengl(np.asarray(start_nerf_T_optical))
            renders += [frames.opengl_to_optical(start_gl @ offset) for offset in offsets]
        observed = self._matcher.detect(image_rgb)  # once for every try
        keyframes = self._keyframe_cache(config)
        for render_pose in renders:
            result = features.align_to_rendering(
                self.model, image_rgb, intrinsics, render_pose, self._matcher, config.feature_align_scale,
                config.feature_align_rounds, config.feature_align_min_inliers, config.samples_per_ray or None,
                self.device, observed, pool=config.feature_align_pool, keyframes=keyframes)
            if result.nerf_T_optical is not None:
                break
        if config.feature_align_retry_scale > config.feature_align_scale and \
                result.inliers < config.feature_align_retry_inliers:
            # A small rendering of a far view gives a dozen keypoints, and PnP on a dozen inliers is centimetres
            # off: a larger one kept from a cold estimate gives several times more. Only a kept one: rendering
            # anew would slow every weak frame (on a slower field it halved the estimates).
            retry = features.align_to_rendering(
                self.model, image_rgb, intrinsics, renders[0], self._matcher, config.feature_align_retry_scale, 1,
                config.feature_align_min_inliers, config.samples_per_ray or None, self.device, observed,
                keyframes=keyframes, kept_only=True)
            if retry.nerf_T_optical is not None and retry.inliers > result.inliers:
                retry.note = f"{retry.note} at {config.feature_align_retry_scale:g}x after {result.inliers} inliers"
                result = retry
        if result.nerf_T_optical is None:
            return None, f"feature alignment failed ({result.note}): photometric only"
        uv = sampler.sample().uv.to(self.device)
        target = target_image[uv[:, 1].long(), uv[:, 0].long()]
        poses = torch.from_numpy(np.stack([frames.optical_to_opengl(np.asarray(start_nerf_T_optical)),
                                           frames.optical_to_opengl(result.nerf_T_optical)])).to(self.device)
        with torch.no_grad():
            loss, _ = self._render_loss(poses, torch.zeros(2, 6, dtype=poses.dtype, device=self.device),
                                        intrinsics, uv, target, None)
        if loss[1] > loss[0]:
            rotation_deg, translation = lie.pose_error(poses[0], poses[1])
            if rotation_deg < _AGREE_DEG and translation < _AGREE_FRACTION * self._scene_diagonal:
                # The features confirm the start, which explains the pixels even better: refine it.
                return np.asarray(start_nerf_T_optical), f"feature alignment confirms the start ({result.note})"
            return None, (f"feature alignment rejected ({result.note}; its photometric loss {float(loss[1]):.4f} "
                          f"> the start's {float(loss[0]):.4f})")
        return result.nerf_T_optical, f"feature alignment: {result.note}"

    def _keyframe_cache(self, config: OptimizerConfig):
        """The kept renderings, following the configuration (None when reuse is off)."""
        if config.feature_align_keyframes <= 0:
            return None
        cache = self._keyframes
        if cache is None or cache.capacity != config.feature_align_keyframes:
            cache = self._keyframes = features.KeyframeCache(config.feature_align_keyframes)
        cache.max_angle_deg, cache.max_shift = config.keyframe_max_angle_deg, config.keyframe_max_shift
        return cache

    def residual_jacobian(self, poses: Tensor, intrinsics: Intrinsics, uv: Tensor, target: Tensor,
                          max_level: float | None = None) -> tuple[Tensor, Tensor]:
        """Residuals (K, N, 3) and their exact Jacobian (K, N, 3, 6) w.r.t. a body-frame twist at 0.

        The renderer treats rays independently, so one backward pass per colour channel gives
        every ray's gradient with respect to its own origin o and direction d; for a right-multiplied
        correction do/dv = R and dd/domega = -[d]x R, so the rows are (R^T g_o, R^T (d x g_d)).
        With ``exposure="affine"`` the fitted gain and offset are held fixed (exact for the gradient,
        J^T r; the Gauss-Newton Hessian ignores how the fit follows the pose).
        """
        origins, directions = self._pixel_rays(intrinsics, poses.float(), uv)
        origins, directions = origins.detach().requires_grad_(True), directions.detach().requires_grad_(True)
        k, n = origins.shape[:2]
        out = self.model.render_rays(origins.reshape(-1, 3), directions.reshape(-1, 3), max_level=max_level,
                                     n_samples=self.config.samples_per_ray or None)
        residual = _residual(out["rgb"].reshape(k, n, 3), target, self.config)
        rotation = poses[:, :3, :3].float()
        rows = []
        for channel in range(3):
            g_o, g_d = torch.autograd.grad(residual[..., channel].sum(), (origins, directions),
                                           retain_graph=channel < 2)
            j_v = torch.einsum("kij,kni->knj", rotation, g_o)
            j_w = torch.einsum("kij,kni->knj", rotation, torch.linalg.cross(directions.detach(), g_d))
            rows.append(torch.cat([j_v, j_w], dim=-1))
        return residual.detach().double(), torch.stack(rows, dim=2).double()

    def _lm_step(self, lm: "_LevenbergMarquardt", intrinsics: Intrinsics, uv: Tensor, target: Tensor,
                 max_level: float | None, fresh: bool, score_now: bool) -> Tensor:
        """One Levenberg-Marquardt iteration for every hypothesis; returns the accepted losses (K,).

        The Jacobian of the residuals with respect to the body-frame twist is exact (see
        :meth:`residual_jacobian`). While the pixels stay the same, one render per iteration does
        two jobs: it scores the step proposed last iteration (kept only where it lowers the loss,
        else the damping grows and a shorter step is solved from the kept residuals) and, when kept,
        gives the residuals and Jacobian of the next step. ``fresh`` (new pixels or field levels:
        losses not comparable with the last ones) re-evaluates the current poses instead;
        ``score_now`` (the next iteration is fresh) scores the new step with an extra render now.
        """
        if fresh:
            lm.candidate = lm.poses.clone()
            lm.always_accept[:] = True
        r, jacobian = self.residual_jacobian(lm.candidate, intrinsics, uv, target, max_level)
        with torch.no_grad():
            lm.judge(_photometric_loss(r, self.config), r, jacobian, reset=fresh)
            lm.candidate = lm.poses @ lie.se3_exp(self._lm_solve(lm))
            if score_now:
                no_twist = torch.zeros(lm.candidate.shape[0], 6, dtype=torch.float64, device=self.device)
                trial_loss, _ = self._render_loss(lm.candidate, no_twist, intrinsics, uv, target, max_level)
                lm.judge(trial_loss, None, None, reset=False)
        return lm.loss

    def _lm_solve(self, lm: "_LevenbergMarquardt") -> Tensor:
        """The damped Gauss-Newton step (K, 6) from the kept residuals, bounded by the trust region."""
        config = self.config
        r, jacobian = lm.residual, lm.jacobian
        weights = torch.ones_like(r)
        if config.loss == "huber":  # iteratively reweighted least squares
            weights = (config.huber_delta / r.abs().clamp_min(1e-12)).clamp(max=1.0)
        jw = jacobian * weights[..., None]
        hessian = torch.einsum("knci,kncj->kij", jw, jacobian)
        gradient = torch.einsum("knci,knc->ki", jw, r)
        diagonal = torch.diagonal(hessian, dim1=-2, dim2=-1).clamp_min(1e-9)
        system = hessian + torch.diag_embed(lm.damping[:, None] * diagonal)
        step = -torch.linalg.solve(system, gradient[..., None])[..., 0]
        # Trust region: a Gauss-Newton step on a photometric loss can leap into the wide basin of
        # views that see only background; bound each step, keeping its direction.
        max_rotation = math.radians(config.lm_max_step_deg) * lm.trust
        max_translation = config.lm_max_step_fraction * self._scene_diagonal * lm.trust
        shrink = torch.minimum(max_rotation / step[:, 3:].norm(dim=-1).clamp_min(1e-12),
                               max_translation / step[:, :3].norm(dim=-1).clamp_min(1e-12)).clamp(max=1.0)
        return step * shrink[:, None]

    def _resample(self, starts: Tensor, xi: Tensor, adam: _Adam, smoothed: Tensor,
                  generator: torch.Generator) -> Tensor:
        """Replace the worst hypotheses by perturbed copies of the best (parallel inversion).

        Returns the indices of the replaced hypotheses.
        """
        k = starts.shape[0]
        n_replace = int(k * self.config.resample_fraction)
        if n_replace == 0:
            return torch.zeros(0, dtype=torch.long, device=starts.device)
        order = torch.argsort(smoothed)
        worst, donors = order[k - n_replace:], order[: max(1, k - n_replace)]
        chosen = donors[torch.arange(n_replace) % donors.numel()]
        with torch.no_grad():
            donor_poses = starts[chosen] @ lie.se3_exp(xi[chosen])
            # Shrinking jitter: copies explore the best basin instead of the whole prior volume.
            jitter = _perturbations(n_replace, self.config.hypothesis_rotation_deg / 4,
                                    self.config.hypothesis_translation / 4, generator).to(starts.device)
            starts[worst] = donor_poses @ jitter
            xi[worst] = 0
            smoothed[worst] = smoothed[chosen]
        adam.reset_rows(worst)
        return worst

    def _covariance(self, final_gl: Tensor, intrinsics: Intrinsics, sampler: PixelSampler, target_image: Tensor,
                    starts: Tensor, xi: Tensor, smoothed: Tensor, best: int,
                    lm: _LevenbergMarquardt) -> np.ndarray:
        """Gauss-Newton covariance at the optimum plus the spread of near-best hypotheses.

        Body-frame twist covariance S becomes world-axes covariance R S R^T per 3x3 block (the
        correction is right-multiplied, so small body motions map through the camera rotation).
        """
        cov_body = np.zeros((6, 6))
        n = self.config.covariance_rays
        residual = jacobian = None
        if self.config.solver == "lm" and lm.residual is not None:
            # The kept residuals and Jacobian are those of the final pose: no extra render.
            residual, jacobian = lm.residual[best], lm.jacobian[best]
        elif n:
            uv = sampler.sample(n).uv.to(self.device)
            target = target_image[uv[:, 1].long(), uv[:, 0].long()]
            residual, jacobian = self.residual_jacobian(final_gl[None].clone(), intrinsics, uv, target)
        if jacobian is not None:
            jacobian = jacobian.reshape(-1, 6).cpu().numpy()
            sigma_sq = float((residual**2).mean())
            information = jacobian.T @ jacobian / max(sigma_sq, 1e-12)
            cov_body = np.linalg.pinv(information + 1e-9 * np.eye(6))
        rotation = final_gl[:3, :3].double().cpu().numpy()
        block = np.zeros((6, 6))
        block[:3, :3] = block[3:, 3:] = rotation
        covariance = block @ cov_body @ block.T
        k = starts.shape[0]
        if k > 1:
            near = torch.nonzero(smoothed <= smoothed[best] * 1.5).flatten()
            if near.numel() > 1:
                with torch.no_grad():
                    poses = starts[near] @ lie.se3_exp(xi[near])
                    twists = lie.se3_log(lie.invert_pose(final_gl)[None] @ poses).cpu().numpy()
                twists[:, :3] = twists[:, :3] @ rotation.T
                twists[:, 3:] = twists[:, 3:] @ rotation.T
                covariance = covariance + np.cov(twists.T)
        return 0.5 * (covariance + covariance.T)
