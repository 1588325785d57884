"""The verdict on one photo: which judged pose wins and whether it is accepted, as pure functions.

The registrar (:mod:`inerf_ros.register.registrar`) renders each refined pose and measures it into a
:class:`Candidate`; :func:`rank` orders the candidates and :func:`decide` turns the winner into an
accept / reject with its reason. Nothing here renders or reads files, so each rule is tested directly.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from inerf_ros import lie
from inerf_ros.nerf.metrics import psnr_from_mse
from inerf_ros.register.config import RegisterConfig


@dataclasses.dataclass
class Verdict:
    """One photo's outcome (a row of the table)."""

    image: str
    accepted: bool
    reason: str
    start: str = ""
    iterations: int = 0
    loss: float = float("nan")
    psnr: float = float("nan")
    flat_psnr: float = float("nan")
    seconds: float = 0.0
    nerf_T_opengl: list | None = None
    check: bool = False
    rotation_error_deg: float | None = None
    translation_error: float | None = None
    translation_error_diag: float | None = None
    translation_error_cm: float | None = None
    source_path: str = ""
    resized_from: list | None = None
    feature_support: int | None = None
    foreground_fraction: float | None = None
    """Share of the verdict grid where the NeRF renders its surfaces at the final pose."""
    accepted_by: str = ""
    """Accepted photos: "photometric" (PSNR over the threshold) or "geometry" (many agreeing matches, PSNR
    over the floor)."""
    ambiguity_deg: float | None = None
    """How far (rotation) the candidate poses that the matches support nearly as well as the best one
    (:func:`pose_ambiguity`) lie from the chosen pose; None without a geometric check."""
    ambiguity_translation: float | None = None
    """The same, translation in NeRF units."""
    candidates: list = dataclasses.field(default_factory=list)
    """Every start: label, start PSNR (scoring rays), refined PSNR (verdict grid) when refined, start pose."""


@dataclasses.dataclass
class Candidate:
    """One judged pose of a photo: a start refined by iNeRF, or a PnP start's own pose, measured on the
    verdict grid.
    """

    label: str
    """The start's label; a PnP start's own pose adds " (PnP pose)"."""
    nerf_T_gl: np.ndarray
    """(4, 4) OpenGL camera-to-NeRF pose."""
    loss: float
    """iNeRF's final photometric loss (NaN for a PnP pose, which was not refined)."""
    mse: float
    """Mean squared colour error of the render on the verdict pixels."""
    flat_mse: float
    """The same for the photo's flat mean colour on those pixels."""
    judged: float
    """Share of the verdict grid judged (the foreground share with ``verdict_pixels`` foreground)."""
    support: int | None
    """Feature matches that agree with the pose; None where the photo has too few to judge by."""

    @property
    def psnr(self) -> float:
        """PSNR (dB) of the render on the verdict pixels."""
        return psnr_from_mse(self.mse)

    @property
    def flat_psnr(self) -> float:
        """PSNR (dB) of the photo's flat mean colour on the verdict pixels (the bar a render must beat)."""
        return psnr_from_mse(self.flat_mse)


@dataclasses.dataclass(frozen=True)
class Decision:
    """Accepted or not, why, and on what: "photometric", "geometry" or "" (rejected)."""

    accepted: bool
    reason: str
    accepted_by: str = ""


def geometry_vouches(psnr: float, support: int | None, threshold: float, config: RegisterConfig) -> bool:
    """Enough matches agree with the pose for a PSNR under the threshold (but over its floor) to pass.

    The threshold comes from held-out views inside the capture; from a side it did not cover, the
    NeRF renders worse at the right pose (watch: 16-20 dB where the threshold is 20.9, and photo and
    render overlap without ghosting). Hundreds of matches within a few pixels of their reprojections
    cannot agree with a wrong pose; the floor still rejects a render that explains little.
    """
    return (config.geometric_support > 0 and support is not None and support >= config.geometric_support
            and psnr >= threshold - config.geometric_margin_db)


def rank(candidate: Candidate, threshold: float, config: RegisterConfig) -> tuple[bool, bool, float]:
    """Sort key, higher wins: over the PSNR threshold, else vouched for by geometry, then the lowest error.

    By error alone, a start that shows more of the easy white wall beats the right pose of a view the
    capture did not cover.
    """
    psnr = candidate.psnr
    return psnr >= threshold, geometry_vouches(psnr, candidate.support, threshold, config), -candidate.mse


def decide(best: Candidate, threshold: float, config: RegisterConfig, *,
           most_supported: Candidate | None = None, pnp_notes: tuple[str, ...] = (),
           ambiguity: tuple[float, float] | None = None) -> Decision:
    """The verdict on a photo whose best judged pose is ``best``.

    Args:
        best: the winning candidate (highest :func:`rank`).
        threshold: the PSNR (dB) at which a pose is accepted on photometry alone.
        config: the registration's settings (gates and margins).
        most_supported: the candidate with the most agreeing matches, named in a rejection when it has
            more than ``best``.
        pnp_notes: why each PnP start failed, when the photo got none (appended to the reason).
        ambiguity: :func:`pose_ambiguity` of the candidates around ``best``.
    """
    psnr, flat_psnr, support, judged = best.psnr, best.flat_psnr, best.support, best.judged
    foreground = config.verdict_pixels == "foreground"
    accepted = False
    if foreground and judged < max(config.min_foreground, 1e-9):
        reason = (f"the NeRF's surfaces cover {100 * judged:.1f} % of the photo at the best pose "
                  f"(< {100 * config.min_foreground:g} %)")
    elif psnr < threshold and not geometry_vouches(psnr, support, threshold, config):
        reason = f"PSNR {psnr:.2f} dB < threshold {threshold:.2f} dB"
        if support is not None and config.geometric_support:
            reason += (f" ({support} feature matches agree; {config.geometric_support} and PSNR >= "
                       f"{threshold - config.geometric_margin_db:.2f} dB would accept it on geometry")
            if most_supported is not None and most_supported.support > support:
                reason += (f"; the best-supported pose, from {most_supported.label}, has {most_supported.support} "
                           f"at {most_supported.psnr:.2f} dB")
            reason += ")"
    elif psnr - flat_psnr < config.min_gain_db:
        reason = f"render explains the photo no better than its mean colour ({psnr:.2f} vs {flat_psnr:.2f} dB)"
    elif support is not None and support < config.min_inliers:
        reason = (f"PSNR {psnr:.2f} dB passes but only {support} feature matches agree with the "
                  f"pose (< {config.min_inliers})")
    elif psnr < threshold:
        accepted, reason = True, (f"on geometry: {support} feature matches agree; PSNR {psnr:.2f} dB is under "
                                  f"the photometric threshold {threshold:.2f} dB but over its floor "
                                  f"{threshold - config.geometric_margin_db:.2f} dB")
    else:
        where = f" on the NeRF's surfaces ({100 * judged:.0f} % of the photo)" if foreground else ""
        accepted, reason = True, f"PSNR {psnr:.2f} dB >= {threshold:.2f} dB{where}" + (
            f", {support} feature matches agree" if support is not None else
            ", too few feature matches for a geometric check" if config.pnp_starts else "")
    if pnp_notes:
        reason += "; no PnP start (" + "; ".join(pnp_notes) + ")"
    if accepted and ambiguity and 0 < config.max_ambiguity_deg < ambiguity[0]:
        accepted, reason = False, (f"{reason}, but poses {ambiguity[0]:.1f} deg apart fit the matches about "
                                   f"equally well (> {config.max_ambiguity_deg:g} deg)")
    by = ("photometric" if psnr >= threshold else "geometry") if accepted else ""
    return Decision(accepted, reason, by)


def pose_ambiguity(candidates: list[dict], chosen_nerf_T_gl, fraction: float = 0.75) -> tuple[float, float] | None:
    """(rotation deg, translation) from the chosen pose to the farthest candidate pose with agreeing
    matches at least ``fraction`` of the best candidate's; None when no candidate was checked or none has
    agreeing matches.

    ``candidates`` are the rows of :attr:`Verdict.candidates` (``refined_*`` and ``pnp_pose_*`` keys).
    Features on a compact object barely tell an orbit around it from a turn of the camera: from a side
    the capture did not cover, poses several degrees apart can fit the matches about equally well (the
    photometric error, on a blurry rendering, cannot tell them apart either). This says how far apart.
    """
    poses = [(c[f"{key}_support"], c[f"{key}_pose"]) for c in candidates for key in ("refined", "pnp_pose")
             if c.get(f"{key}_support") is not None]
    best = max((support for support, _ in poses), default=0)
    if best <= 0:
        return None
    chosen = torch.as_tensor(np.asarray(chosen_nerf_T_gl), dtype=torch.float64)
    errors = [lie.pose_error(torch.tensor(pose, dtype=torch.float64), chosen) for support, pose in poses
              if support >= fraction * best]
    return max(float(r) for r, _ in errors), max(float(t) for _, t in errors)
