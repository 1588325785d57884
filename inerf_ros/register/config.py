"""The registration's configuration (``inerf-ros register`` flags) and its error."""
from __future__ import annotations

import dataclasses

from inerf_ros import config as cfg


class RegistrationError(RuntimeError):
    """The registration cannot run at all (no model, no data, no images); the message says why."""


@dataclasses.dataclass
class RegisterConfig:
    """What to register and how: one field per ``inerf-ros register`` flag."""

    images: list = cfg.option([], "photos to register: folders and/or image files")
    out: str = cfg.option("", "output data folder (NEW_DATA): transforms.json, images, registration.md/json")
    downscale: float = cfg.option(0.0, "shrink photos by this factor (0: the model's training downscale)",
                                  range=(0.0, 64.0))
    neighbours: int = cfg.option(4, "starts from this many registered views nearest in appearance (thumbnail) "
                                    "and, with PnP, as many with the most SIFT matches", range=(1, 100))
    pnp_starts: bool = cfg.option(True, "also start from PnP: SIFT matches to each neighbour lifted to 3-D "
                                        "with the NeRF's depth")
    matcher: str = cfg.option("asift", "features for the PnP starts: asift (SIFT under simulated tilts: matches "
                                       "photos taken from far apart, ~1.5 s per photo) or sift",
                              choices=("asift", "sift"))
    chain: bool = cfg.option(True, "accepted photos become views to start from, and the rejected ones are tried "
                                   "again against them (photos that share features only with other new photos)")
    chain_passes: int = cfg.option(3, "with chain: passes over the still rejected photos, while a pass accepts "
                                      "some", range=(1, 100))
    match_scale: float = cfg.option(2.0, "SIFT matching for the PnP starts at this multiple of the working size "
                                         "(at most the photos' size)", range=(0.25, 16.0))
    min_inliers: int = cfg.option(12, "with PnP starts: at least this many SIFT matches to one neighbour must "
                                      "reproject within 6 px (at 270 px wide) at the final pose (0: no check; "
                                      "skipped when no neighbour has this many matches)",
                                  range=(0, 100000))
    triangulate_views: int = cfg.option(8, "with PnP starts: also PnP on points triangulated from pairs of the "
                                           "this many registered views with the most matches, through the "
                                           "photo's keypoints (the photos' own geometry, where the NeRF's depth "
                                           "is poor: surfaces it saw from few directions; 0: off)",
                                        range=(0, 100))
    starts_refined: int = cfg.option(2, "best-scoring starts refined by iNeRF: this many PnP starts and as many "
                                        "others", range=(1, 100))
    solver: str = cfg.option("lm", "iNeRF solver", choices=("adam", "lm"))
    max_iterations: int = cfg.option(30, "iNeRF iterations per refined start", range=(1, 100000))
    learning_rate: float = cfg.option(0.02, "Adam step size (solver adam)", range=(1e-6, 1.0))
    num_hypotheses: int = cfg.option(2, "iNeRF hypotheses around each refined start", range=(1, 256))
    hypothesis_rotation_deg: float = cfg.option(8.0, "spread of the hypotheses (degrees)", range=(0.0, 180.0))
    hypothesis_translation: float = cfg.option(0.02, "spread of the hypotheses, fraction of the scene-box "
                                                     "diagonal (per axis)", range=(0.0, 1.0))
    num_rays: int = cfg.option(512, "rays per iNeRF step and for scoring the starts", range=(16, 65536))
    samples_per_ray: int = cfg.option(0, "samples per ray on the pose path (0: the model's)", range=(0, 1024))
    check_stride: int = cfg.option(4, "verdict PSNR on every k-th pixel in both directions", range=(1, 64))
    min_psnr: float = cfg.option(0.0, "accept at this PSNR or above (0: automatic, see --psnr-margin-db)",
                                 range=(0.0, 100.0))
    psnr_margin_db: float = cfg.option(3.0, "automatic threshold: the model's PSNR at the known poses of the "
                                            "data's held-out views minus this", range=(0.0, 100.0))
    verdict_pixels: str = cfg.option("all", "pixels the PSNR verdict (and its reference) is measured on: all, or "
                                            "foreground, where the NeRF renders its own surfaces at the pose "
                                            "(opacity >= 0.5: for a backdrop the capture never saw, which renders "
                                            "as a blur whatever the pose)",
                                     choices=("foreground", "all"))
    min_foreground: float = cfg.option(0.05, "verdict_pixels foreground: reject a pose at which the NeRF's surfaces "
                                             "cover less than this fraction of the photo", range=(0.0, 1.0))
    geometric_support: int = cfg.option(100, "also accept a photo under the PSNR threshold when at least this many "
                                             "feature matches to one view (or tracks "
                                             "triangulated from the views) agree with its pose and the PSNR is "
                                             "within geometric_margin_db of the threshold: a view from a side the "
                                             "capture did not cover renders worse at the right pose (0: the "
                                             "photometric verdict only)", range=(0, 1000000))
    geometric_margin_db: float = cfg.option(6.0, "how far under the PSNR threshold a photo accepted on geometry may be",
                                            range=(0.0, 100.0))
    max_ambiguity_deg: float = cfg.option(0.0, "reject an accepted photo when candidate poses this many degrees "
                                               "apart fit its matches about equally well (see the report's "
                                               "ambiguity column; 0: report only)", range=(0.0, 180.0))
    min_gain_db: float = cfg.option(2.0, "the render must beat the photo's flat mean colour by this (dB)",
                                    range=(0.0, 100.0))
    skip_registered: bool = cfg.option(True, "skip photos whose file name is already a frame of DATA")
    check_views: int = cfg.option(0, "also re-register this many of the data's held-out views (poses known) "
                                     "and report their errors", range=(0, 1000))
    metres_per_unit: float = cfg.option(0.0, "metres per NeRF unit for the check errors (0: the data's "
                                             "metres_per_unit when it has one, else NeRF units only)",
                                        range=(0.0, 1e6))
    holdout_every: int = cfg.option(0, "held-out split of the data (0: the model's training setting, else 8)",
                                    range=(0, 1000))
    copy_images: bool = cfg.option(True, "copy every image into NEW_DATA (else relative paths to the originals)")
    retrain_minutes: float = cfg.option(0.0, "train a new NeRF on NEW_DATA for this many minutes (the model's "
                                             "training settings) and report held-out PSNR before/after",
                                        range=(0.0, 1e5))
    retrain_out: str = cfg.option("", "model folder of the retrained NeRF (default NEW_DATA/model)")
    threads: int = cfg.option(1, "torch CPU threads (0: torch's default)", range=(0, 512))
    device: str = cfg.option("cpu", "torch device", choices=("cpu", "cuda"))
    seed: int = cfg.option(0, "random seed", range=(0, 2**31 - 1))
    progress: bool = cfg.option(True, "progress bar over the photos")

    def check(self) -> None:
        """Raise ValueError naming the flag when no images or no output folder are given."""
        if not self.images:
            raise ValueError("--images: give at least one folder or image file")
        if not self.out:
            raise ValueError("--out: give the output data folder")
