"""``inerf-ros register MODEL_DIR DATA --images MORE --out NEW_DATA``: pose new photos by inverting a NeRF.

Self-supervised registration: every new photo gets a pose from the current NeRF, a photometric
verdict, and the accepted ones join the data set (a new ``transforms.json``); optionally a new
NeRF is trained on it and the held-out PSNR before / after is reported.

Per photo:

1. **Starts.** The ``neighbours`` registered views nearest in appearance (cosine similarity of a
   32x24 grey, zero-mean thumbnail) give their poses as starts; with ``pnp_starts`` the
   ``neighbours`` views with the most SIFT matches to the photo (matched at ``match_scale`` x the
   working size) give their poses and a PnP start each: the matched pixels of the view lifted to 3-D
   with the NeRF's rendered depth, ``solvePnPRansac``. Every start is scored by the photometric
   error of ``num_rays`` pixels (forward renders only).
2. **Refinement.** The best ``starts_refined`` starts are refined by iNeRF
   (:class:`inerf_ros.optim.inerf.PoseOptimizer`, ``num_hypotheses`` pan/tilt hypotheses around each).
3. **Verdict.** The refined pose with the lowest photometric error on a pixel grid (every
   ``check_stride``-th pixel in both directions) wins. Accepted when its PSNR reaches ``min_psnr``
   (0: automatic, the model's PSNR at the known poses of the data's held-out views minus
   ``psnr_margin_db``) *and* beats the photo's own flat mean colour by ``min_gain_db`` (a render
   that explains the photo no better than one grey level has not found it) *and*, when the photo
   has at least ``min_inliers`` SIFT matches to some view, that many of them reproject within 6 px
   (at 270 px wide) at the final pose (on a weak NeRF a wrong pose can reach a similar PSNR: a wall
   is a wall; features tell the basins apart).

Frames: transforms.json poses are OpenGL camera-to-NeRF; the optimizer works with ROS optical poses
(:mod:`inerf_ros.frames` converts). Photos go through the loader's path: undistorted with the data's
``k1, k2, p1, p2`` at full resolution, then shrunk by the model's training ``downscale``. A photo of
another size but the same aspect ratio uses scaled intrinsics (and is written resized to the data's
size); another aspect ratio is rejected.

Output ``NEW_DATA/transforms.json``: the original frames plus the accepted ones, ordered so that
``train-nerf --holdout-every k`` (k: the model's) holds out the same original views as before (new
frames fill any extra held-out slot); the images are copied to ``NEW_DATA`` (or referenced by
relative paths with ``--no-copy-images``). ``NEW_DATA/registration.md`` / ``.json``: the verdict table;
``NEW_DATA/previews/*.png``: photo | render at the final pose (verdict pixel grid).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from inerf_ros import config as cfg
from inerf_ros import evaluation, frames, lie
from inerf_ros.camera import Intrinsics
from inerf_ros.nerf.metrics import psnr_from_mse
from inerf_ros.optim import features

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class RegistrationError(RuntimeError):
    """The registration cannot run at all (no model, no data, no images); the message says why."""


@dataclasses.dataclass
class RegisterConfig:
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
        if not self.images:
            raise ValueError("--images: give at least one folder or image file")
        if not self.out:
            raise ValueError("--out: give the output data folder")


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


# --------------------------------------------------------------------------------------------- inputs
def list_images(sources) -> tuple[list[Path], list[Verdict]]:
    """Image files named by ``sources`` (folders and files, in order); missing ones come back as rejections."""
    found, missing = [], []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise RegistrationError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            missing.append(Verdict(image=path.name or str(path), accepted=False, reason=f"not found: {path}",
                                   source_path=str(path)))
    if not found and not missing:
        raise RegistrationError("no images to register")
    return found, missing


def thumbnail(image: np.ndarray, size=(32, 24)) -> np.ndarray:
    """A unit-norm, zero-mean grey thumbnail of an (H, W, 3) float image: the global appearance descriptor."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    width, height = size if image.shape[1] >= image.shape[0] else size[::-1]
    small = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA).astype(np.float64).reshape(-1)
    small -= small.mean()
    return small / max(np.linalg.norm(small), 1e-9)


@dataclasses.dataclass
class _Camera:
    """The data's shared camera at full resolution and at the working resolution."""

    full: Intrinsics
    work: Intrinsics


def _data_camera(json_path: Path, data_json: dict) -> Intrinsics:
    """Full-resolution intrinsics (with distortion) of the data's camera, read as the loader reads them."""
    from inerf_ros.datasets.transforms import find_image, frame_intrinsics

    top = {k: v for k, v in data_json.items() if k != "frames"}
    first = data_json["frames"][0]
    meta = {**top, **first}
    if meta.get("w") and meta.get("h"):
        width, height = int(meta["w"]), int(meta["h"])
    else:
        from PIL import Image

        with Image.open(find_image(json_path.parent, str(first["file_path"]), json_path)) as im:
            width, height = im.size
    return frame_intrinsics(meta, width, height, json_path, 0)


def _scaled_to(intr: Intrinsics, width: int, height: int) -> Intrinsics:
    """Intrinsics for the same camera at another image size (pixel-centre convention kept)."""
    return intr.resized(width, height)


def load_photo(path: Path, camera: _Camera, background) -> tuple[np.ndarray, list | None]:
    """A photo as the loader would give it at the working resolution: (H, W, 3) float32 in [0, 1].

    Returns the image and, when its size differed from the data's, its original [width, height].
    Raises ``ValueError`` with the reason when the photo cannot be used.
    """
    from inerf_ros.datasets.transforms import DatasetError, load_image, resize_image, undistort_image

    try:
        rgb = load_image(path, np.asarray(background, dtype=np.float32))
    except DatasetError as error:
        raise ValueError(f"unreadable image ({str(error).split(': ', 1)[-1]})") from None
    height, width = rgb.shape[:2]
    full = camera.full
    resized_from = None
    if (width, height) != (full.width, full.height):
        if abs(width / height - full.width / full.height) > 0.01 * full.width / full.height:
            raise ValueError(f"image is {width}x{height}, the data's camera is {full.width}x{full.height}: "
                             "another aspect ratio, its intrinsics are unknown")
        full = _scaled_to(full, width, height)
        resized_from = [width, height]
    valid = np.ones((height, width), dtype=bool)
    if full.is_distorted:
        rgb, valid = undistort_image(rgb, full)
    if (width, height) != (camera.work.width, camera.work.height):
        rgb, _ = resize_image(rgb, valid, camera.work.width, camera.work.height)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32), resized_from


# ------------------------------------------------------------------------------------------ the core
class Registrar:
    """Registers photos against a NeRF and a posed data set (all at the working resolution).

    Args:
        model: a :class:`inerf_ros.nerf.model.NerfModel`.
        data: the posed images (:class:`inerf_ros.datasets.transforms.PosedImages`) at the working resolution.
        config: :class:`RegisterConfig`.
        holdout_every: the data's held-out split (reference PSNR and check views).
    """

    def __init__(self, model, data, config: RegisterConfig, holdout_every: int = 8, match_image=None):
        from inerf_ros.optim.inerf import OptimizerConfig, PoseOptimizer
        from inerf_ros.optim.sampling import SamplingConfig

        self.model, self.data, self.config = model, data, config
        self.device = torch.device(config.device)
        self.intrinsics = data.intrinsics[0]
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
        images = data.images.numpy()
        self.descriptors = np.stack([thumbnail(im) for im in images])
        self._images_uint8 = (images * 255 + 0.5).astype(np.uint8)
        self._match_image = match_image  # index -> larger (H', W', 3) image of a data view for matching
        # Approximate (FLANN): thousands of keypoints against thousands per pair.
        self._matcher = features.FeatureMatcher(config.matcher, exact=False, seed=config.seed)
        self._features: dict = {}
        self._view_pairs: dict = {}  # (i, j), i < j -> matches between the two views' keypoints
        self._photo_pairs: dict = {}  # view -> matches (photo keypoint, view keypoint) of the current photo
        self._added: list[tuple[str, np.ndarray]] = []  # accepted photos as views: (name, OpenGL pose)
        self._matches: list = []  # (3-D points, photo pixels) of the current photo's matches, for support
        self.holdout_every = holdout_every
        _, self.held_out = data.holdout_indices(holdout_every) if len(data) >= 2 else ([], [])
        self.reference_psnr = self._reference_psnr()
        self.threshold = config.min_psnr if config.min_psnr > 0 else self.reference_psnr - config.psnr_margin_db

    # -- rendering helpers ---------------------------------------------------------------------
    def _grid(self, intr: Intrinsics) -> torch.Tensor:
        s = self.config.check_stride
        v, u = torch.meshgrid(torch.arange(s // 2, intr.height, s, dtype=torch.float32),
                              torch.arange(s // 2, intr.width, s, dtype=torch.float32), indexing="ij")
        return torch.stack([u.reshape(-1), v.reshape(-1)], -1)

    @torch.no_grad()
    def render_pixels(self, nerf_T_gl: np.ndarray, uv: torch.Tensor, chunk: int = 8192) -> dict:
        """Colour (N, 3) and depth (N,) of pixels ``uv`` for an OpenGL camera-to-NeRF pose."""
        from inerf_ros.nerf.rays import pixel_rays

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
        verdict pixels (``verdict_pixels``) of a render of the verdict grid."""
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
        return _psnr(float(np.mean(mses)))

    # -- views to start from: the data's, then accepted photos (indices past len(data)) ---------
    @property
    def num_views(self) -> int:
        return len(self.data) + len(self._added)

    def view_name(self, index: int) -> str:
        if index < len(self.data):
            return Path(self.data.file_names[index]).name
        return self._added[index - len(self.data)][0]

    def view_pose(self, index: int) -> np.ndarray:
        """OpenGL camera-to-NeRF pose of view ``index`` (float64)."""
        if index < len(self.data):
            return self.data.nerf_T_cam[index].double().numpy()
        return self._added[index - len(self.data)][1]

    def add_view(self, name: str, image: np.ndarray, nerf_T_gl, match_image: np.ndarray | None = None) -> None:
        """An accepted photo becomes a view to start from: photos that share features only with it
        (a capture's far side, steep views) then get PnP starts too."""
        index = self.num_views
        self._added.append((name, np.asarray(nerf_T_gl, dtype=np.float64)))
        self.descriptors = np.concatenate([self.descriptors, thumbnail(image)[None]])
        self._features[index] = self.features(match_image if match_image is not None else
                                              (image * 255 + 0.5).astype(np.uint8))

    # -- starts --------------------------------------------------------------------------------
    def neighbours(self, image: np.ndarray, exclude=()) -> list[int]:
        scores = self.descriptors @ thumbnail(image)
        order = [int(i) for i in np.argsort(-scores) if int(i) not in set(exclude)]
        return order[: self.config.neighbours]

    def features(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """SIFT keypoints (K, 2) in working-resolution pixels and descriptors of an image of any size."""
        return self._matcher.detect(image, scale=self.intrinsics.width / image.shape[1])

    def _view_features(self, index: int):
        if index not in self._features:
            image = self._match_image(index) if self._match_image else self._images_uint8[index]
            self._features[index] = self.features(image)
        return self._features[index]

    def matched_views(self, image_features, exclude=(), count: int | None = None) -> list[int]:
        """The ``count`` (default ``neighbours``) registered views with the most feature matches to the
        photo, most first; the matches are kept for the PnP starts and the triangulation."""
        excluded = set(exclude)
        self._photo_pairs = {i: self._matcher.match(image_features[1], self._view_features(i)[1])
                             for i in range(self.num_views) if i not in excluded}
        ranked = sorted((i for i, pairs in self._photo_pairs.items() if pairs),
                        key=lambda i: -len(self._photo_pairs[i]))
        return ranked[: count or self.config.neighbours]

    def _optical_T_nerf(self, index: int) -> np.ndarray:
        return np.linalg.inv(frames.opengl_to_optical(self.view_pose(index)))

    def _between_views(self, a: int, b: int) -> dict[int, int]:
        """Keypoint of view ``a`` -> matching keypoint of view ``b`` (ratio test; cached per pair)."""
        key = (min(a, b), max(a, b))
        if key not in self._view_pairs:
            self._view_pairs[key] = self._matcher.match(self._view_features(key[0])[1],
                                                        self._view_features(key[1])[1])
        pairs = self._view_pairs[key]
        return dict(pairs) if a == key[0] else {m_b: m_a for m_a, m_b in pairs}

    def triangulated_start(self, image_features, views: list[int]) -> tuple[str, np.ndarray] | None:
        """PnP on 3-D points triangulated from pairs of posed views, with no NeRF depth.

        A track is a photo keypoint matched to a keypoint of view a that view b also matches; the two
        posed views triangulate it (:func:`features.triangulate`; the widest-parallax pair wins). Where the
        photo shows a side the NeRF saw from few directions, its depth there, and so the lifted points of
        :meth:`pnp_start`, are poor while the photos' own geometry still holds. The points also join the
        matches that vouch for a pose (:meth:`feature_support`).
        """
        uv_photo = image_features[0]
        optical_T_nerf = {view: self._optical_T_nerf(view) for view in views}
        tracks, points, parallaxes = [], [], []
        for a in views:
            photo_to_a = dict(self._photo_pairs.get(a, []))
            for b in views:
                if a == b:
                    continue
                a_to_b = self._between_views(a, b)
                keys = np.array([k for k, m in photo_to_a.items() if m in a_to_b], dtype=np.int64)
                if len(keys) < 6:
                    continue
                uv_a = self._view_features(a)[0][[photo_to_a[k] for k in keys]]
                uv_b = self._view_features(b)[0][[a_to_b[photo_to_a[k]] for k in keys]]
                point, keep, parallax = features.triangulate(self.intrinsics, optical_T_nerf[a], optical_T_nerf[b],
                                                             uv_a, uv_b, self.pixel_tolerance)
                tracks.append(keys[keep])
                points.append(point[keep])
                parallaxes.append(parallax[keep])
        if not tracks or sum(len(t) for t in tracks) < 12:
            return None
        tracks, points, parallaxes = np.concatenate(tracks), np.concatenate(points), np.concatenate(parallaxes)
        order = np.argsort(-parallaxes, kind="stable")
        _, first = np.unique(tracks[order], return_index=True)  # each photo keypoint once, widest parallax
        chosen = order[first]
        points, uv = points[chosen], uv_photo[tracks[chosen]]
        self._matches.append((points, uv))
        result = features.solve_pnp(points, uv, self.intrinsics, self.pixel_tolerance, min_inliers=12)
        if result.nerf_T_optical is None:
            return None
        return (f"pnp triangulated ({len(points)} tracks over {len(views)} views, {result.inliers} inliers)",
                frames.optical_to_opengl(result.nerf_T_optical))

    def pnp_start(self, image_features, index: int) -> tuple[np.ndarray | None, str]:
        """OpenGL camera-to-NeRF pose from SIFT matches to view ``index`` lifted with the NeRF depth."""
        uv_all_new, des_new = image_features
        uv_all_ref, des_ref = self._view_features(index)
        if des_new is None or des_ref is None or len(des_new) < 8 or len(des_ref) < 8:
            return None, "too few features"
        pairs = self._photo_pairs.get(index)
        if pairs is None:
            pairs = self._matcher.match(des_new, des_ref)
        if len(pairs) < 12:
            return None, f"{len(pairs)} matches"
        new_index, ref_index = np.array(pairs).T
        pose = torch.from_numpy(self.view_pose(index)).float().to(self.device)
        points, keep = features.lift(self.model, self.intrinsics, pose, uv_all_ref[ref_index],
                                     n_samples=self.config.samples_per_ray or None)
        uv_new = uv_all_new[new_index][keep]
        self._matches.append((points, uv_new))
        result = features.solve_pnp(points, uv_new, self.intrinsics, self.pixel_tolerance, min_inliers=12)
        if result.nerf_T_optical is None:
            return None, result.note
        return frames.optical_to_opengl(result.nerf_T_optical), f"{result.inliers} inliers"

    def joint_pnp_start(self) -> tuple[str, np.ndarray] | None:
        """One PnP on the lifted matches to every matched view together (as the pose optimizer pools its
        alignment rounds): a steep view shares a few dozen matches with each of several views, and each
        view's own PnP is then noisy or fails."""
        if len(self._matches) < 2:
            return None
        points = np.concatenate([p for p, _ in self._matches])
        uv = np.concatenate([u for _, u in self._matches])
        result = features.solve_pnp(points, uv, self.intrinsics, self.pixel_tolerance, min_inliers=12)
        if result.nerf_T_optical is None:
            return None
        return f"pnp joint ({len(self._matches)} views, {result.inliers} inliers)", \
            frames.optical_to_opengl(result.nerf_T_optical)

    @property
    def pixel_tolerance(self) -> float:
        """Reprojection tolerance of a feature match, working-resolution pixels (2 px at 270 wide)."""
        return features.pixel_tolerance(self.intrinsics)

    def feature_support(self, nerf_T_gl: np.ndarray) -> int:
        """Matches (to one neighbour, or the triangulated tracks: the best of these groups) that the pose
        reprojects within 3x the PnP tolerance.

        Looser than PnP's: the photometric optimum of an imperfect NeRF sits a few pixels from the
        pose that fits the matches best (0.5 degree is 2.4 px at 270 px wide); a wrong basin is off by tens.
        """
        optical_T_nerf = np.linalg.inv(frames.opengl_to_optical(np.asarray(nerf_T_gl, dtype=np.float64)))
        best = 0
        for points, uv in self._matches:
            projected, front = features.project(optical_T_nerf, points, self.intrinsics)
            ok = front & (np.linalg.norm(projected - uv, axis=1) <= 3 * self.pixel_tolerance)
            best = max(best, int(ok.sum()))
        return best

    # -- one photo -----------------------------------------------------------------------------
    def register(self, image: np.ndarray, name: str, exclude=(), match_image: np.ndarray | None = None) -> Verdict:
        """Pose one (H, W, 3) float photo at the working resolution; ``exclude``: views not to start from;
        ``match_image``: the same photo larger (more SIFT matches for the PnP starts)."""
        started = time.perf_counter()
        config = self.config
        intr = self.intrinsics
        if image.shape != (intr.height, intr.width, 3):
            raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, the working size is "
                             f"{intr.width}x{intr.height}")
        starts = []  # (label, OpenGL pose)
        notes = []
        self._matches = []
        self._photo_pairs = {}
        self.last_preview = None  # (h, 3w, 3) photo | render | blend on the verdict grid, for previews
        image_features = self.features(image if match_image is None else match_image) if config.pnp_starts else None
        by_look = self.neighbours(image, exclude)
        ranked = self.matched_views(image_features, exclude, max(config.neighbours, config.triangulate_views)) \
            if config.pnp_starts else []
        by_matches = ranked[: config.neighbours]
        for index in dict.fromkeys(by_look + by_matches):
            starts.append((f"view {self.view_name(index)}", self.view_pose(index)))
        for index in by_matches:
            view = self.view_name(index)
            pose, note = self.pnp_start(image_features, index)
            if pose is not None:
                starts.append((f"pnp {view}", pose))
            else:
                notes.append(f"pnp {view}: {note}")
        if config.pnp_starts and config.triangulate_views >= 2:
            triangulated = self.triangulated_start(image_features, ranked[: config.triangulate_views])
            if triangulated is not None:
                starts.append(triangulated)
            else:
                notes.append("pnp triangulated: no pose from the tracks")
        joint = self.joint_pnp_start()
        if joint is not None:
            starts.append(joint)
        generator = torch.Generator().manual_seed(config.seed)
        score_uv = torch.stack([torch.randint(0, intr.width, (config.num_rays,), generator=generator),
                                torch.randint(0, intr.height, (config.num_rays,), generator=generator)],
                               -1).float()
        scored = sorted(((self.photometric(image, pose, score_uv), label, pose) for label, pose in starts),
                        key=lambda s: s[0])
        image_uint8 = (image * 255 + 0.5).astype(np.uint8)
        grid = self._grid(intr)
        target = torch.from_numpy(image)[grid[:, 1].long(), grid[:, 0].long()]
        best = None
        most_support = (-1, float("nan"), "")  # (agreeing matches, PSNR, label) of the best-supported pose
        iterations = 0
        candidates = [{"start": label, "start_psnr": _psnr(loss), "pose": pose.tolist()}
                      for loss, label, pose in scored]
        # Geometric check only where the photo has enough matches to some neighbour to judge by.
        checkable = config.pnp_starts and config.min_inliers > 0 and \
            any(len(points) >= config.min_inliers for points, _ in self._matches)
        for candidate, (start_loss, label, pose) in self._starts_to_refine(candidates, scored):
            estimate = self.optimizer.estimate(image_uint8, intr, frames.opengl_to_optical(pose))
            iterations += estimate.iterations
            outcomes = [(frames.optical_to_opengl(estimate.nerf_T_optical), label, estimate.final_loss)]
            if label.startswith("pnp "):
                # From a side the capture did not cover, the photometric optimum of a blurry rendering
                # can lie away from the pose the matches give: the PnP pose itself also stands.
                outcomes.append((pose, f"{label} (PnP pose)", float("nan")))
            for final_gl, outcome_label, loss in outcomes:
                rendered = self.render_pixels(final_gl, grid)
                mse, flat_mse, judged = self.verdict_errors(rendered, target)
                support = self.feature_support(final_gl) if checkable else None
                key = "refined" if outcome_label == label else "pnp_pose"
                candidate.update({f"{key}_psnr": _psnr(mse), f"{key}_support": support,
                                  f"{key}_pose": np.asarray(final_gl).tolist()})
                # The pose the verdict can accept wins: over the PSNR threshold, else vouched for by
                # geometry, then the lowest error. By error alone, a start that shows more of the easy
                # white wall beats the right pose of a view the capture did not cover.
                rank = (_psnr(mse) >= self.threshold, self._geometry_vouches(_psnr(mse), support), -mse)
                if support is not None and support > most_support[0]:
                    most_support = (support, _psnr(mse), outcome_label)
                if best is None or rank > best[0]:
                    best = (rank, mse, outcome_label, np.asarray(final_gl), loss, flat_mse, judged, support)
                    shape = (len(range(config.check_stride // 2, intr.height, config.check_stride)), -1, 3)
                    photo, render = target.reshape(shape).numpy(), rendered["rgb"].reshape(shape).numpy()
                    # The half-and-half blend shows a wrong pose as ghosting, where PSNR cannot tell a
                    # poorly rendered right pose from a wrong one.
                    self.last_preview = np.concatenate([photo, render, 0.5 * (photo + render)], 1)
            candidate["iterations"] = estimate.iterations
        _, mse, label, final_gl, loss, flat_mse, judged, support = best
        psnr, flat_psnr = _psnr(mse), _psnr(flat_mse)
        foreground = config.verdict_pixels == "foreground"
        if foreground and judged < max(config.min_foreground, 1e-9):
            accepted, reason = False, (f"the NeRF's surfaces cover {100 * judged:.1f} % of the photo at the best pose "
                                       f"(< {100 * config.min_foreground:g} %)")
        elif psnr < self.threshold and not self._geometry_vouches(psnr, support):
            accepted, reason = False, f"PSNR {psnr:.2f} dB < threshold {self.threshold:.2f} dB"
            if support is not None and config.geometric_support:
                reason += (f" ({support} feature matches agree; {config.geometric_support} and PSNR >= "
                           f"{self.threshold - config.geometric_margin_db:.2f} dB would accept it on geometry")
                if most_support[0] > support:
                    reason += (f"; the best-supported pose, from {most_support[2]}, has {most_support[0]} at "
                               f"{most_support[1]:.2f} dB")
                reason += ")"
        elif psnr - flat_psnr < config.min_gain_db:
            accepted, reason = False, (f"render explains the photo no better than its mean colour "
                                       f"({psnr:.2f} vs {flat_psnr:.2f} dB)")
        elif support is not None and support < config.min_inliers:
            accepted, reason = False, (f"PSNR {psnr:.2f} dB passes but only {support} feature matches agree with the "
                                       f"pose (< {config.min_inliers})")
        elif psnr < self.threshold:
            accepted, reason = True, (f"on geometry: {support} feature matches agree; PSNR {psnr:.2f} dB is under "
                                      f"the photometric threshold {self.threshold:.2f} dB but over its floor "
                                      f"{self.threshold - config.geometric_margin_db:.2f} dB")
        else:
            where = f" on the NeRF's surfaces ({100 * judged:.0f} % of the photo)" if foreground else ""
            accepted, reason = True, f"PSNR {psnr:.2f} dB >= {self.threshold:.2f} dB{where}" + (
                f", {support} feature matches agree" if support is not None else
                ", too few feature matches for a geometric check" if config.pnp_starts else "")
        if notes and not any(s[0].startswith("pnp") for s in starts):
            reason += "; no PnP start (" + "; ".join(notes) + ")"
        ambiguity = pose_ambiguity(candidates, final_gl)
        if accepted and ambiguity and 0 < config.max_ambiguity_deg < ambiguity[0]:
            accepted, reason = False, (f"{reason}, but poses {ambiguity[0]:.1f} deg apart fit the matches about "
                                       f"equally well (> {config.max_ambiguity_deg:g} deg)")
        return Verdict(image=name, accepted=accepted, reason=reason, start=label, iterations=iterations,
                       loss=loss, psnr=psnr, flat_psnr=flat_psnr,
                       seconds=time.perf_counter() - started, nerf_T_opengl=final_gl.tolist(), candidates=candidates,
                       feature_support=support, foreground_fraction=judged if foreground else None,
                       accepted_by=("photometric" if psnr >= self.threshold else "geometry") if accepted else "",
                       ambiguity_deg=ambiguity[0] if ambiguity else None,
                       ambiguity_translation=ambiguity[1] if ambiguity else None)

    def _starts_to_refine(self, candidates: list, scored: list) -> list:
        """The joint and triangulated PnP starts, the ``starts_refined`` best-scoring other PnP starts and as
        many of the rest.

        PnP starts rest on matched features; their start error can still rank them under a view start
        that merely shows more of a plain backdrop."""
        pairs = list(zip(candidates, scored))
        pooled = ("pnp joint", "pnp triangulated")
        joint = [pair for pair in pairs if pair[1][1].startswith(pooled)]
        pnp = [pair for pair in pairs if pair[1][1].startswith("pnp ") and not pair[1][1].startswith(pooled)]
        other = [pair for pair in pairs if not pair[1][1].startswith("pnp ")]
        return joint + pnp[: self.config.starts_refined] + other[: self.config.starts_refined]

    def _geometry_vouches(self, psnr: float, support: int | None) -> bool:
        """Enough matches agree with the pose for a PSNR under the threshold (but over its floor) to pass.

        The threshold comes from held-out views inside the capture; from a side it did not cover, the
        NeRF renders worse at the right pose (watch: 16-20 dB where the threshold is 20.9, and photo and
        render overlap without ghosting). Hundreds of matches within a few pixels of their reprojections
        cannot agree with a wrong pose; the floor still rejects a render that explains little.
        """
        config = self.config
        return (config.geometric_support > 0 and support is not None and support >= config.geometric_support
                and psnr >= self.threshold - config.geometric_margin_db)


def pose_ambiguity(candidates: list[dict], chosen_nerf_T_gl, fraction: float = 0.75) -> tuple[float, float] | None:
    """(rotation deg, translation) from the chosen pose to the farthest candidate pose with agreeing
    matches at least ``fraction`` of the best candidate's; None when no candidate was checked or none has
    agreeing matches.

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


def _save_preview(path: Path, image: np.ndarray) -> None:
    """Photo | render | blend on the verdict grid, enlarged 2x."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8).repeat(2, 0).repeat(2, 1)
    Image.fromarray(pixels).save(path)


def _psnr(mse: float) -> float:
    return psnr_from_mse(max(mse, 0.0))


# ---------------------------------------------------------------------------------------- the output
def _frame_order(original: list, new: list, every: int) -> list:
    """Original frames plus new ones, so that index % every == 0 holds the originally held-out frames."""
    held = [f for i, f in enumerate(original) if i % every == 0]
    train = [f for i, f in enumerate(original) if i % every != 0]
    pool = train + list(new)
    out = []
    while held or pool:
        if len(out) % every == 0:
            out.append(held.pop(0) if held else pool.pop())  # extra held-out slots: the last new frame
        else:
            if pool:
                out.append(pool.pop(0))
            else:  # only held-out frames left: cannot keep them at held slots; keep them anyway
                out.append(held.pop(0))
    return out


def _unique_name(directory: Path, name: str, taken: set) -> str:
    stem, suffix = os.path.splitext(name)
    candidate, n = name, 1
    while candidate in taken or (directory / candidate).exists():
        candidate = f"{stem}_{n}{suffix}"
        n += 1
    taken.add(candidate)
    return candidate


def write_transforms(json_path: Path, data_json: dict, verdicts: list[Verdict], out_dir: Path, config: RegisterConfig,
                     camera: _Camera, every: int, extra: dict) -> Path:
    """NEW_DATA/transforms.json: the data's frames plus the accepted photos."""
    from PIL import Image

    from inerf_ros.datasets.transforms import find_image

    out_dir.mkdir(parents=True, exist_ok=True)
    base = json_path.parent
    copy = config.copy_images
    image_dir = out_dir / "images"
    taken: set = set()

    def place(source: Path, preferred: str) -> str:
        if not copy:
            return os.path.relpath(source.resolve(), out_dir.resolve())
        image_dir.mkdir(parents=True, exist_ok=True)
        name = _unique_name(image_dir, preferred, taken)
        shutil.copy2(source, image_dir / name)
        return f"images/{name}"

    originals = []
    for frame in data_json["frames"]:
        source = find_image(base, str(frame["file_path"]), json_path)
        originals.append({**frame, "file_path": place(source, source.name)})
    new_frames = []
    for verdict in verdicts:
        if not verdict.accepted or verdict.check:
            continue
        source = Path(verdict.source_path)
        if verdict.resized_from:  # write it at the data's size so one camera fits every frame
            image_dir.mkdir(parents=True, exist_ok=True)
            name = _unique_name(image_dir, Path(source.stem + ".png").name, taken)
            with Image.open(source) as im:
                im.resize((camera.full.width, camera.full.height), Image.BICUBIC).save(image_dir / name)
            file_path = f"images/{name}"
        else:
            file_path = place(source, source.name)
        new_frames.append({"file_path": file_path, "transform_matrix": verdict.nerf_T_opengl,
                           "registered_by": "inerf", "registration_psnr": round(verdict.psnr, 3)})
    doc = {k: v for k, v in data_json.items() if k != "frames"}
    if "sparse_points" in doc:  # SfM's points of the original frames (new frames have none): keep them usable
        points = base / str(doc["sparse_points"])
        if points.is_file():
            shutil.copy2(points, out_dir / points.name)
            doc["sparse_points"] = points.name
        else:
            del doc["sparse_points"]
    rejected = [v.image for v in verdicts if not v.accepted and not v.check]
    doc["unregistered"] = sorted(set(data_json.get("unregistered", [])) - {v.image for v in verdicts if v.accepted}
                                 | set(rejected))
    photos = [v for v in verdicts if not v.check]
    doc["registration"] = {**extra, "holdout_every": every, "accepted": [v.image for v in photos if v.accepted],
                           "rejected": {v.image: v.reason for v in photos if not v.accepted}}
    doc["frames"] = _frame_order(originals, new_frames, every)
    path = out_dir / "transforms.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def _fmt(x, spec=".2f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def verdict_table(verdicts: list[Verdict]) -> str:
    header = ["image", "start used", "iterations", "photometric loss", "PSNR dB", "flat PSNR dB",
              "poses the matches support as well, within (deg / units)", "verdict", "why"]
    return evaluation.markdown_rows(header, [
        [f"{v.image}{' (check)' if v.check else ''}", v.start or "-", str(v.iterations), _fmt(v.loss, ".5f"),
         _fmt(v.psnr), _fmt(v.flat_psnr),
         "-" if v.ambiguity_deg is None else f"{v.ambiguity_deg:.1f} / {v.ambiguity_translation:.3f}",
         "accepted" if v.accepted else "rejected", v.reason] for v in verdicts])


def check_table(verdicts: list[Verdict]) -> str:
    rows = [v for v in verdicts if v.check]
    if not rows:
        return ""
    header = ["check view", "rotation error deg", "translation error (NeRF units)", "/ scene diagonal", "cm",
              "verdict"]
    return evaluation.markdown_rows(header, [
        [v.image, _fmt(v.rotation_error_deg), _fmt(v.translation_error, ".4f"), _fmt(v.translation_error_diag, ".4f"),
         _fmt(v.translation_error_cm), "accepted" if v.accepted else "rejected"] for v in rows])


# ------------------------------------------------------------------------------------------- command
def _model_training(model_dir: Path) -> dict:
    from inerf_ros.nerf.checkpoint import read_metadata

    _, doc = read_metadata(model_dir)
    return dict(doc.get("metadata", {}).get("extra", {}) or {})


def register(model_dir, data_path, config: RegisterConfig) -> dict:
    """Run the whole registration; returns a summary dict (also written as NEW_DATA/registration.json)."""
    from tqdm import tqdm

    from inerf_ros.datasets.transforms import (DatasetError, load_transforms, read_transforms_json,
                                               resolve_transforms_path)
    from inerf_ros.nerf.checkpoint import CheckpointError, load_model

    started = time.perf_counter()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.set_flush_denormal(True)
    model_dir, out_dir = Path(model_dir), Path(config.out)
    try:
        model = load_model(model_dir, device=config.device)
        extra = _model_training(model_dir)
    except CheckpointError as error:
        raise RegistrationError(f"model: {error}") from None
    train_config = dict(extra.get("train_config", {}))
    downscale = config.downscale or float(train_config.get("downscale", 1.0))
    every = config.holdout_every or int(train_config.get("holdout_every", 8))
    try:
        json_path = resolve_transforms_path(data_path)
        data_json = read_transforms_json(json_path)
        background = tuple(float(c) for c in model.metadata.background)
        data = load_transforms(json_path, downscale=downscale, background=background)
    except DatasetError as error:
        raise RegistrationError(f"data: {error}") from None
    if json_path.parent.resolve() == out_dir.resolve():
        raise RegistrationError(f"--out {out_dir} is the data folder itself; choose a new folder")
    files, verdicts = list_images(config.images)
    camera = _Camera(full=_data_camera(json_path, data_json), work=data.intrinsics[0])
    known = {Path(n).name for n in data.file_names} | {Path(n).stem for n in data.file_names}
    todo = []
    skipped = []
    for path in files:
        if config.skip_registered and (path.name in known or path.stem in known):
            skipped.append(path.name)
        else:
            todo.append(path)

    match_size = (min(camera.full.width, round(camera.work.width * config.match_scale)),
                  min(camera.full.height, round(camera.work.height * config.match_scale)))
    match_camera = _Camera(full=camera.full, work=_scaled_to(camera.work, *match_size))

    def data_match_image(index: int) -> np.ndarray:
        from inerf_ros.datasets.transforms import find_image

        return load_photo(find_image(json_path.parent, data.file_names[index], json_path), match_camera,
                          model.metadata.background)[0]

    registrar = Registrar(model, data, config, every, match_image=data_match_image)
    print(f"register: {len(todo)} photos ({len(skipped)} already in the data skipped), working size "
          f"{camera.work.width}x{camera.work.height} (downscale {downscale:g}); reference PSNR at known poses "
          f"{registrar.reference_psnr:.2f} dB -> accept at >= {registrar.threshold:.2f} dB", flush=True)
    checks = registrar.held_out[: config.check_views]
    if config.check_views and len(checks) < config.check_views:
        print(f"register: only {len(checks)} held-out views available as checks", file=sys.stderr)
    mpu = config.metres_per_unit or (data.metres_per_unit if "metres_per_unit" in data_json else 0.0)

    def log(verdict: Verdict) -> None:
        if verdict.iterations and registrar.last_preview is not None:
            _save_preview(out_dir / "previews" / f"{Path(verdict.image).stem}{'_check' if verdict.check else ''}.png",
                          registrar.last_preview)
        tqdm.write(f"  {verdict.image}{' (check)' if verdict.check else ''}: "
                   f"{'accepted' if verdict.accepted else 'REJECTED'} - {verdict.reason}"
                   f" [start {verdict.start or '-'}, {verdict.iterations} its, {verdict.seconds:.0f} s]")

    bar = tqdm(total=len(checks) + len(todo), desc="register", unit="image", disable=not config.progress,
               dynamic_ncols=True)
    for item in checks:  # first, while the views are only the data's own
        name = Path(data.file_names[item]).name
        bar.set_postfix_str(name)
        verdict = registrar.register(data.images[item].numpy(), name, exclude=(item,),
                                     match_image=data_match_image(item) if config.pnp_starts else None)
        verdict.check = True
        rot, trans = lie.pose_error(torch.tensor(verdict.nerf_T_opengl, dtype=torch.float64),
                                    data.nerf_T_cam[item].double())
        verdict.rotation_error_deg, verdict.translation_error = float(rot), float(trans)
        verdict.translation_error_diag = float(trans) / registrar.diagonal
        if mpu:
            verdict.translation_error_cm = float(trans) * mpu * 100
        verdicts.append(verdict)
        log(verdict)
        bar.update(1)
    photo_verdicts: dict[Path, Verdict] = {}
    pending = list(todo)
    for chain_pass in range(config.chain_passes if config.chain else 1):
        if chain_pass:
            tqdm.write(f"register: pass {chain_pass + 1}: {len(pending)} rejected photos against "
                       f"{registrar.num_views - len(data)} accepted ones")
        accepted_now = 0
        for path in pending:
            bar.set_postfix_str(path.name)
            verdict, image, match = _register_photo(registrar, path, camera, match_camera, config, model)
            if chain_pass:
                verdict.reason += f" (pass {chain_pass + 1})"
            photo_verdicts[path] = verdict
            log(verdict)
            if chain_pass == 0:
                bar.update(1)
            if verdict.accepted and config.chain:
                registrar.add_view(path.name, image, verdict.nerf_T_opengl, match)
                accepted_now += 1
        # Unreadable photos (no iterations) stay rejected; the others may connect through new views.
        pending = [p for p in pending if not photo_verdicts[p].accepted and photo_verdicts[p].iterations]
        if not accepted_now or not pending:
            break
    verdicts += [photo_verdicts[p] for p in todo]
    bar.close()
    photos = [v for v in verdicts if not v.check]
    accepted = [v for v in photos if v.accepted]
    summary = {
        "model": str(model_dir), "data": str(json_path), "out": str(out_dir), "working_size": [camera.work.width,
                                                                                               camera.work.height],
        "downscale": downscale, "holdout_every": every, "reference_psnr": registrar.reference_psnr,
        "threshold_psnr": registrar.threshold, "min_gain_db": config.min_gain_db,
        "scene_diagonal": registrar.diagonal, "metres_per_unit": mpu or None,
        "photos": len(photos), "accepted": len(accepted), "skipped_already_registered": skipped,
        "accepted_photometric": sum(v.accepted_by == "photometric" for v in accepted),
        "config": dataclasses.asdict(config),
    }
    transforms = write_transforms(json_path, data_json, verdicts, out_dir, config, camera, every,
                                  {"model": str(model_dir), "data": str(json_path),
                                   "threshold_psnr": registrar.threshold})
    summary["transforms"] = str(transforms)
    if config.retrain_minutes > 0 and accepted:
        summary["retrain"] = retrain(model, data, registrar.held_out, transforms, extra, config, out_dir)
    elif config.retrain_minutes > 0:
        summary["retrain"] = {"skipped": "no photo was accepted"}
    summary["seconds"] = time.perf_counter() - started
    summary["verdicts"] = [dataclasses.asdict(v) for v in verdicts]
    (out_dir / "registration.json").write_text(json.dumps(summary, indent=2, default=str))
    (out_dir / "registration.md").write_text(report(summary, verdicts))
    return summary


def _register_photo(registrar: Registrar, path: Path, camera: _Camera, match_camera: _Camera,
                    config: RegisterConfig, model) -> tuple[Verdict, np.ndarray | None, np.ndarray | None]:
    """One new photo's verdict, with the photo at the working and at the matching size (None if unreadable)."""
    try:
        image, resized_from = load_photo(path, camera, model.metadata.background)
        match = load_photo(path, match_camera, model.metadata.background)[0] if config.pnp_starts else None
    except ValueError as error:
        return Verdict(image=path.name, accepted=False, reason=str(error), source_path=str(path)), None, None
    verdict = registrar.register(image, path.name, match_image=match)
    verdict.source_path, verdict.resized_from = str(path), resized_from
    if resized_from:
        verdict.reason += f"; resized from {resized_from[0]}x{resized_from[1]}"
    return verdict, image, match


def retrain(model, data, held_out: list[int], transforms: Path, extra: dict, config: RegisterConfig,
            out_dir: Path) -> dict:
    """Train a new NeRF on NEW_DATA (the model's settings) and compare held-out PSNR on the same views."""
    from inerf_ros.datasets.transforms import load_transforms
    from inerf_ros.nerf.field import FieldConfig
    from inerf_ros.nerf.train import TrainConfig, evaluate, train

    held_names = [Path(data.file_names[i]).name for i in held_out]
    before = evaluate(model, data.subset(held_out), torch.device(config.device))
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    train_values = {k: v for k, v in dict(extra.get("train_config", {})).items() if k in names}
    train_values.update(minutes=config.retrain_minutes, steps=0, threads=config.threads or 0,
                        device=config.device, eval_views=0)
    train_cfg = cfg.from_dict(TrainConfig, train_values)
    field_cfg = cfg.from_dict(FieldConfig, dict(model.metadata.field))
    model_out = Path(config.retrain_out) if config.retrain_out else out_dir / "model"
    metrics = train(transforms, model_out, train_cfg, field_cfg, progress=config.progress)
    new = load_transforms(transforms, downscale=train_cfg.downscale, background=tuple(train_cfg.background))
    _, new_held = new.holdout_indices(train_cfg.holdout_every)
    per_view = dict(zip([Path(new.file_names[i]).name for i in new_held], metrics["per_view_psnr"]))
    after = [per_view.get(n, float("nan")) for n in held_names]
    extra_views = {n: p for n, p in per_view.items() if n not in held_names}
    return {"model": str(model_out), "minutes": config.retrain_minutes, "held_out_views": held_names,
            "psnr_before": before["psnr"], "psnr_after": float(np.mean(after)),
            "per_view_before": before["per_view_psnr"], "per_view_after": after,
            "new_views_held_out_psnr": extra_views, "train_metrics": {k: v for k, v in metrics.items()
                                                                      if k != "per_view_psnr"}}


def report(summary: dict, verdicts: list[Verdict]) -> str:
    photos = summary["photos"]
    lines = ["# Registration report", "",
             f"- model `{summary['model']}`, data `{summary['data']}`, working size "
             f"{summary['working_size'][0]}x{summary['working_size'][1]}",
             f"- accepted **{summary['accepted']} of {photos}** photos "
             f"({100 * summary['accepted'] / max(photos, 1):.0f} %), {summary['accepted_photometric']} of them over "
             f"the PSNR threshold {summary['threshold_psnr']:.2f} dB (reference at known poses "
             f"{summary['reference_psnr']:.2f} dB), the others on geometry (see `why`); all >= "
             f"{summary['min_gain_db']:g} dB over the photo's flat mean colour",
             f"- skipped (already in the data): {len(summary['skipped_already_registered'])}",
             f"- output: `{summary['transforms']}`", "", verdict_table(verdicts), "",
             "*Poses the matches support as well*: the farthest candidate pose with at least 3/4 of the best "
             "candidate's agreeing matches. Several degrees mean the features cannot pin the pose down that "
             "closely (typically an orbit around the object, from a side the capture did not cover); the "
             "check views show the accuracy inside the capture.", ""]
    checks = check_table(verdicts)
    if checks:
        unit = (f"metres_per_unit {summary['metres_per_unit']:g}" if summary.get("metres_per_unit")
                else "no metric scale given: cm column empty")
        lines += ["## Check views (held-out views with known poses, registered as if new)", "",
                  f"Scene-box diagonal {summary['scene_diagonal']:.3f} NeRF units; {unit}.", "", checks, ""]
    if "retrain" in summary:
        r = summary["retrain"]
        if "skipped" in r:
            lines += [f"Retraining skipped: {r['skipped']}.", ""]
        else:
            lines += ["## Retraining", "",
                      f"- new model `{r['model']}` ({r['minutes']:g} min budget)",
                      f"- held-out PSNR on the same {len(r['held_out_views'])} views "
                      f"({', '.join(r['held_out_views'])}): before **{r['psnr_before']:.2f} dB**, after "
                      f"**{r['psnr_after']:.2f} dB**",
                      f"- newly registered views held out by the split: "
                      f"{json.dumps({k: round(v, 2) for k, v in r['new_views_held_out_psnr'].items()})}", ""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, help="NeRF model folder (inerf-ros train-nerf)")
    parser.add_argument("data", type=Path, help="the posed data set the model was trained on (transforms.json "
                                                "or its folder)")
    cfg.add_arguments(parser, RegisterConfig)


def run(args: argparse.Namespace) -> int:
    try:
        config = cfg.from_args(RegisterConfig, args)
    except ValueError as error:
        print(f"register: {error}", file=sys.stderr)
        return 2
    try:
        summary = register(args.model_dir, args.data, config)
    except RegistrationError as error:
        print(f"register: {error}", file=sys.stderr)
        return 2
    out = Path(config.out)
    verdicts = [Verdict(**v) for v in summary["verdicts"]]
    print()
    print(verdict_table(verdicts))
    checks = check_table(verdicts)
    if checks:
        print()
        print(checks)
    print(f"\naccepted {summary['accepted']} of {summary['photos']} photos ({summary['accepted_photometric']} over "
          f"the PSNR threshold, the others on geometry) -> {summary['transforms']}; table: {out / 'registration.md'}")
    retrained = summary.get("retrain")
    if retrained and "psnr_before" in retrained:
        print(f"held-out PSNR on the same views: before {retrained['psnr_before']:.2f} dB, "
              f"after {retrained['psnr_after']:.2f} dB ({retrained['model']})")
    return 0
