"""The registrar: starts (:mod:`.starts`) refined by iNeRF, every judged pose measured on the verdict
grid, and the verdict (:mod:`.verdict`) on the best one.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from inerf_ros import frames
from inerf_ros.camera import Intrinsics
from inerf_ros.nerf.metrics import psnr_from_mse
from inerf_ros.nerf.rays import pixel_rays
from inerf_ros.optim.inerf import OptimizerConfig, PoseOptimizer
from inerf_ros.optim.sampling import SamplingConfig
from inerf_ros.register.config import RegisterConfig
from inerf_ros.register.starts import Start, StartFinder
from inerf_ros.register.verdict import Candidate, Verdict, decide, pose_ambiguity, rank


class Registrar(StartFinder):
    """Registers photos against a NeRF and a posed data set (all at the working resolution).

    Args:
        model: a :class:`inerf_ros.nerf.model.NerfModel`.
        data: the posed images (:class:`inerf_ros.datasets.transforms.PosedImages`) at the working resolution.
        config: :class:`RegisterConfig`.
        holdout_every: the data's held-out split (reference PSNR and check views).
        match_image: index -> larger (H', W', 3) image of a data view for matching.
    """

    def __init__(self, model, data, config: RegisterConfig, holdout_every: int = 8, match_image=None):
        super().__init__(model, data, config, match_image=match_image)
        aabb = torch.as_tensor(model.metadata.aabb, dtype=torch.float64)
        self.diagonal = float((aabb[1] - aabb[0]).norm())
        optimizer_config = OptimizerConfig(
            solver=config.solver, max_iterations=config.max_iterations, learning_rate=config.learning_rate,
            num_hypotheses=config.num_hypotheses, hypothesis_rotation_deg=config.hypothesis_rotation_deg,
            hypothesis_translation=config.hypothesis_translation * self.diagonal,
            resample_every=max(5, config.max_iterations // 4), samples_per_ray=config.samples_per_ray,
            covariance_rays=0, seed=config.seed, min_iterations=min(20, config.max_iterations))
        # Where the verdict ignores the backdrop, so do the pose steps: from a new side it is a blur.
        strategy = "foreground" if config.verdict_pixels == "foreground" else "random"
        self.optimizer = PoseOptimizer(model, optimizer_config,
                                       SamplingConfig(strategy=strategy, num_rays=config.num_rays), device=self.device)
        self.last_preview = None  # (h, 3w, 3) photo | render | blend on the verdict grid, for previews
        self.holdout_every = holdout_every
        _, self.held_out = data.holdout_indices(holdout_every) if len(data) >= 2 else ([], [])
        self.reference_psnr = self._reference_psnr()
        self.threshold = config.min_psnr if config.min_psnr > 0 else self.reference_psnr - config.psnr_margin_db

    # -- rendering -----------------------------------------------------------------------------
    def _grid(self, intr: Intrinsics) -> torch.Tensor:
        s = self.config.check_stride
        v, u = torch.meshgrid(torch.arange(s // 2, intr.height, s, dtype=torch.float32),
                              torch.arange(s // 2, intr.width, s, dtype=torch.float32), indexing="ij")
        return torch.stack([u.reshape(-1), v.reshape(-1)], -1)

    @torch.no_grad()
    def render_pixels(self, nerf_T_gl: np.ndarray, uv: torch.Tensor, chunk: int = 8192) -> dict:
        """Colour (N, 3) and depth (N,) of pixels ``uv`` for an OpenGL camera-to-NeRF pose."""
        pose = torch.as_tensor(nerf_T_gl, dtype=torch.float32, device=self.device)
        origins, directions = pixel_rays(self.intrinsics, pose, uv.to(self.device))
        rgb, depth, opacity = [], [], []
        for i in range(0, origins.shape[0], chunk):
            out = self.model.render_rays(origins[i:i + chunk], directions[i:i + chunk],
                                         n_samples=self.config.samples_per_ray or None)
            rgb.append(out["rgb"].clamp(0, 1))
            depth.append(out["depth"])
            opacity.append(out["opacity"])
        return {"rgb": torch.cat(rgb).cpu(), "depth": torch.cat(depth).cpu(), "opacity": torch.cat(opacity).cpu(),
                "origins": origins.cpu(), "directions": directions.cpu()}

    def photometric(self, image: np.ndarray, nerf_T_gl: np.ndarray, uv: torch.Tensor) -> float:
        """Mean squared colour error of the verdict pixels among ``uv`` of ``image`` (H, W, 3 float) at a pose."""
        target = torch.from_numpy(image)[uv[:, 1].long(), uv[:, 0].long()]
        return self.verdict_errors(self.render_pixels(nerf_T_gl, uv), target)[0]

    def verdict_errors(self, rendered: dict, target: torch.Tensor) -> tuple[float, float, float]:
        """(MSE of the render, MSE of the photo's flat mean colour, share of pixels judged) on the
        verdict pixels (``verdict_pixels``) of a render of the verdict grid.
        """
        if self.config.verdict_pixels == "foreground":
            keep = rendered["opacity"] >= 0.5
        else:
            keep = torch.ones(target.shape[0], dtype=torch.bool)
        if not bool(keep.any()):
            return float("inf"), float("inf"), 0.0
        judged = target[keep]
        mse = float(((rendered["rgb"][keep] - judged) ** 2).mean())
        return mse, float(((judged - judged.mean(0)) ** 2).mean()), float(keep.float().mean())

    def _reference_psnr(self) -> float:
        """The model's PSNR (verdict pixels of the grid) at the known poses of the held-out views."""
        views = self.held_out[:5] or list(range(min(3, len(self.data))))
        uv = self._grid(self.intrinsics)
        mses = [self.photometric(self.data.images[i].numpy(), self.data.nerf_T_cam[i].numpy(), uv) for i in views]
        return psnr_from_mse(float(np.mean(mses)))

    # -- one photo -----------------------------------------------------------------------------
    def register(self, image: np.ndarray, name: str, exclude=(), match_image: np.ndarray | None = None) -> Verdict:
        """Pose one (H, W, 3) float photo at the working resolution; ``exclude``: views not to start from;
        ``match_image``: the same photo larger (more SIFT matches for the PnP starts).
        """
        started = time.perf_counter()
        config = self.config
        intr = self.intrinsics
        if image.shape != (intr.height, intr.width, 3):
            raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, the working size is "
                             f"{intr.width}x{intr.height}")
        self.last_preview = None
        starts, notes = self.find_starts(image, exclude, match_image)
        generator = torch.Generator().manual_seed(config.seed)
        score_uv = torch.stack([torch.randint(0, intr.width, (config.num_rays,), generator=generator),
                                torch.randint(0, intr.height, (config.num_rays,), generator=generator)],
                               -1).float()
        # Stable: equal errors keep the order the starts were found in.
        scored = sorted(((self.photometric(image, start.nerf_T_gl, score_uv), start) for start in starts),
                        key=lambda pair: pair[0])
        image_uint8 = (image * 255 + 0.5).astype(np.uint8)
        grid = self._grid(intr)
        target = torch.from_numpy(image)[grid[:, 1].long(), grid[:, 0].long()]
        best: Candidate | None = None
        most_supported: Candidate | None = None
        iterations = 0
        rows = [{"start": start.label, "start_psnr": psnr_from_mse(loss), "pose": start.nerf_T_gl.tolist()}
                for loss, start in scored]
        # Geometric check only where the photo has enough matches to some neighbour to judge by.
        checkable = self.can_check_geometry()
        for row, start in self._starts_to_refine(rows, [start for _, start in scored]):
            estimate = self.optimizer.estimate(image_uint8, intr, frames.opengl_to_optical(start.nerf_T_gl))
            iterations += estimate.iterations
            outcomes = [("refined", start.label, frames.optical_to_opengl(estimate.nerf_T_optical),
                         estimate.final_loss)]
            if start.is_pnp:
                # From a side the capture did not cover, the photometric optimum of a blurry rendering
                # can lie away from the pose the matches give: the PnP pose itself also stands.
                outcomes.append(("pnp_pose", f"{start.label} (PnP pose)", start.nerf_T_gl, float("nan")))
            for key, label, final_gl, loss in outcomes:
                rendered = self.render_pixels(final_gl, grid)
                mse, flat_mse, judged = self.verdict_errors(rendered, target)
                support = self.feature_support(final_gl) if checkable else None
                candidate = Candidate(label, np.asarray(final_gl), loss, mse, flat_mse, judged, support)
                row.update({f"{key}_psnr": candidate.psnr, f"{key}_support": support,
                            f"{key}_pose": candidate.nerf_T_gl.tolist()})
                if support is not None and (most_supported is None or support > most_supported.support):
                    most_supported = candidate
                if best is None or rank(candidate, self.threshold, config) > rank(best, self.threshold, config):
                    best = candidate
                    shape = (len(range(config.check_stride // 2, intr.height, config.check_stride)), -1, 3)
                    photo, render = target.reshape(shape).numpy(), rendered["rgb"].reshape(shape).numpy()
                    # The half-and-half blend shows a wrong pose as ghosting, where PSNR cannot tell a
                    # poorly rendered right pose from a wrong one.
                    self.last_preview = np.concatenate([photo, render, 0.5 * (photo + render)], 1)
            row["iterations"] = estimate.iterations
        ambiguity = pose_ambiguity(rows, best.nerf_T_gl)
        got_pnp = any(start.is_pnp for start in starts)
        decision = decide(best, self.threshold, config, most_supported=most_supported,
                          pnp_notes=() if got_pnp else tuple(notes), ambiguity=ambiguity)
        foreground = config.verdict_pixels == "foreground"
        return Verdict(image=name, accepted=decision.accepted, reason=decision.reason, start=best.label,
                       iterations=iterations, loss=best.loss, psnr=best.psnr, flat_psnr=best.flat_psnr,
                       seconds=time.perf_counter() - started, nerf_T_opengl=best.nerf_T_gl.tolist(), candidates=rows,
                       feature_support=best.support, foreground_fraction=best.judged if foreground else None,
                       accepted_by=decision.accepted_by,
                       ambiguity_deg=ambiguity[0] if ambiguity else None,
                       ambiguity_translation=ambiguity[1] if ambiguity else None)

    def _starts_to_refine(self, rows: list[dict], starts: list[Start]) -> list[tuple[dict, Start]]:
        """The joint and triangulated PnP starts, the ``starts_refined`` best-scoring other PnP starts and as
        many of the rest (``starts`` best first, each with its report row).

        PnP starts rest on matched features; their start error can still rank them under a view start
        that merely shows more of a plain backdrop.
        """
        pairs = list(zip(rows, starts))
        pooled = [pair for pair in pairs if pair[1].is_pooled]
        pnp = [pair for pair in pairs if pair[1].kind == "pnp"]
        other = [pair for pair in pairs if not pair[1].is_pnp]
        return pooled + pnp[: self.config.starts_refined] + other[: self.config.starts_refined]
