"""Which pixels iNeRF renders: the one place that decides.

Strategies (iNeRF, Yen-Chen et al. 2021, and the mask region of seed 003):

* ``random``: uniform over the image.
* ``interest_points``: keypoints (ORB or SIFT) of the observed image, topped up with random pixels
  when there are fewer than asked for.
* ``interest_regions``: the keypoints dilated ``dilation_iterations`` times with a 5x5 kernel, then
  sampled uniformly from that region.
* ``mask_region``: pixels of a label mask: the chosen classes (or every object), optionally dilated.
* ``foreground``: pixels where the NeRF renders its own surfaces (opacity at the start pose), optionally
  dilated. On a scene whose backdrop the field models only as a direction-only light field (a wall
  behind the object, a room), those backdrop pixels pull the pose towards wherever the training views
  saw that direction from; the surfaces themselves carry the parallax that fixes the translation.
* unions, written with ``+``: ``mask_region+interest_regions`` samples from the union of both regions.

An empty region never fails: the sampler falls back to random pixels and says so in ``note``.
Pixels are returned as float ``(u, v)`` = (column, row) with the OpenCV pixel-centre convention.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import torch

from inerf_ros.config import option

STRATEGIES = ("random", "interest_points", "interest_regions", "mask_region", "foreground")


@dataclasses.dataclass
class SamplingConfig:
    """Which pixels iNeRF renders, and how many (see the module docstring for the strategies)."""

    strategy: str = option("random", "ray sampling: random, interest_points, interest_regions, mask_region, "
                                     "foreground, or a union joined with '+' (e.g. mask_region+interest_regions)")
    num_rays: int = option(1024, "rays rendered per optimizer step", range=(16, 65536))
    keypoint_detector: str = option("orb", "keypoint detector for interest points / regions", choices=("orb", "sift"))
    max_keypoints: int = option(1000, "keypoints detected per image", range=(1, 100000))
    dilation_iterations: int = option(3, "interest-region dilations with a 5x5 kernel (iNeRF's I)", range=(0, 50))
    mask_dilation: int = option(2, "mask-region dilations with a 5x5 kernel", range=(0, 50))
    mask_classes: list = option([], "class ids kept in the mask region (empty: every object)")
    foreground_opacity: float = option(0.5, "foreground: pixels whose rendered opacity at the start pose is at "
                                            "least this", range=(0.01, 1.0))
    foreground_dilation: int = option(0, "foreground dilations with a 5x5 kernel (0: the surfaces only; a dilated "
                                         "region takes in backdrop pixels next to the object)", range=(0, 50))

    def check(self) -> None:
        """Raise ValueError for an unknown strategy or a mask class that is not an integer id."""
        parse_strategy(self.strategy)
        bad = [c for c in self.mask_classes if not str(c).strip().lstrip("-").isdigit()]
        if bad:  # refused when set, not on every masked frame after
            raise ValueError(f"mask_classes must be integer class ids, got {bad}")


def parse_strategy(strategy: str) -> tuple[str, ...]:
    """The parts of a strategy (``a+b`` -> ``("a", "b")``); ValueError for an unknown or empty one."""
    parts = tuple(p.strip() for p in strategy.split("+") if p.strip())
    unknown = [p for p in parts if p not in STRATEGIES]
    if not parts or unknown:
        raise ValueError(f"unknown sampling strategy {strategy!r}; use one of {STRATEGIES} or a '+' union")
    if "random" in parts and len(parts) > 1:
        raise ValueError("'random' cannot be part of a union (it already covers the whole image)")
    return parts


@dataclasses.dataclass
class SampledPixels:
    """The pixels chosen for one image, and how they were chosen."""

    uv: torch.Tensor
    """(N, 2) float pixel coordinates (column, row)."""
    strategy: str
    """The strategy actually used (after any fallback)."""
    note: str = ""
    """Why a fallback happened ("" when none did)."""


_KERNEL = np.ones((5, 5), np.uint8)


def detect_keypoints(image_rgb: np.ndarray, detector: str = "orb", max_keypoints: int = 1000) -> np.ndarray:
    """(K, 2) integer (column, row) keypoint locations of an (H, W, 3) uint8 image."""
    gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    if detector == "sift":
        finder = cv2.SIFT_create(nfeatures=max_keypoints)
    else:
        finder = cv2.ORB_create(nfeatures=max_keypoints)
    keypoints = finder.detect(gray, None)
    if not keypoints:
        return np.zeros((0, 2), np.int64)
    points = np.array([kp.pt for kp in keypoints], dtype=np.float64).round().astype(np.int64)
    points[:, 0] = points[:, 0].clip(0, gray.shape[1] - 1)
    points[:, 1] = points[:, 1].clip(0, gray.shape[0] - 1)
    return np.unique(points, axis=0)


def interest_region(image_rgb: np.ndarray, config: SamplingConfig) -> np.ndarray:
    """Boolean (H, W) region: keypoints dilated ``dilation_iterations`` times with a 5x5 kernel."""
    region = np.zeros(image_rgb.shape[:2], np.uint8)
    points = detect_keypoints(image_rgb, config.keypoint_detector, config.max_keypoints)
    region[points[:, 1], points[:, 0]] = 1
    if config.dilation_iterations:
        region = cv2.dilate(region, _KERNEL, iterations=config.dilation_iterations)
    return region.astype(bool)


def mask_region(label_mask: np.ndarray, config: SamplingConfig) -> np.ndarray:
    """Boolean (H, W) region of the chosen classes (all non-zero labels when none are chosen)."""
    label_mask = np.asarray(label_mask)
    if label_mask.ndim != 2:
        raise ValueError(f"label mask must be 2-D, got shape {label_mask.shape}")
    if config.mask_classes:
        region = np.isin(label_mask, [int(c) for c in config.mask_classes])
    else:
        region = label_mask != 0
    if config.mask_dilation and region.any():
        # cv2.dilate works on the image grid, so the dilated mask never leaves the image.
        region = cv2.dilate(region.astype(np.uint8), _KERNEL, iterations=config.mask_dilation).astype(bool)
    return region


def foreground_region(opacity: np.ndarray, config: SamplingConfig) -> np.ndarray:
    """Boolean (H, W) region where the NeRF's rendered opacity reaches ``foreground_opacity``, dilated."""
    opacity = np.asarray(opacity, dtype=np.float32)
    if opacity.ndim != 2:
        raise ValueError(f"opacity must be 2-D, got shape {opacity.shape}")
    if not np.isfinite(opacity).all():
        raise ValueError("opacity contains NaN or infinite values")
    region = opacity >= config.foreground_opacity
    if config.foreground_dilation and region.any():
        region = cv2.dilate(region.astype(np.uint8), _KERNEL, iterations=config.foreground_dilation).astype(bool)
    return region


def needs_opacity(config: SamplingConfig) -> bool:
    """Whether the sampler needs the NeRF's opacity at the start pose (the ``foreground`` strategy)."""
    return "foreground" in parse_strategy(config.strategy)


def _uniform(region: np.ndarray | None, shape: tuple[int, int], n: int, generator: torch.Generator) -> torch.Tensor:
    if region is None:
        height, width = shape
        flat = torch.randint(0, height * width, (n,), generator=generator)
        rows, cols = flat // width, flat % width
    else:
        rows_np, cols_np = np.nonzero(region)
        pick = torch.randint(0, rows_np.size, (n,), generator=generator).numpy()
        rows, cols = torch.from_numpy(rows_np[pick]), torch.from_numpy(cols_np[pick])
    return torch.stack([cols, rows], dim=-1).to(torch.float32)


class PixelSampler:
    """Chooses the pixels of one observed image; keypoint and mask regions are computed once per image.

    Args:
        image_rgb: (H, W, 3) uint8 observed image.
        config: the sampling configuration.
        label_mask: (H, W) integer class-id mask, needed for ``mask_region``.
        opacity: (H, W) NeRF opacity rendered at the start pose, needed for ``foreground``.
    """

    def __init__(self, image_rgb: np.ndarray, config: SamplingConfig, label_mask: np.ndarray | None = None,
                 seed: int = 0, opacity: np.ndarray | None = None):
        image_rgb = np.asarray(image_rgb)
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {image_rgb.shape} {image_rgb.dtype}")
        if label_mask is not None and np.asarray(label_mask).shape != image_rgb.shape[:2]:
            raise ValueError(f"label mask shape {np.asarray(label_mask).shape} does not match image "
                             f"{image_rgb.shape[:2]}")
        if opacity is not None and np.asarray(opacity).shape != image_rgb.shape[:2]:
            raise ValueError(f"opacity shape {np.asarray(opacity).shape} does not match image {image_rgb.shape[:2]}")
        self.shape = image_rgb.shape[:2]
        self.config = config
        self._generator = torch.Generator().manual_seed(seed)
        self._keypoints = np.zeros((0, 2), np.int64)
        if parse_strategy(config.strategy) == ("interest_points",):
            self._keypoints = detect_keypoints(image_rgb, config.keypoint_detector, config.max_keypoints)
        self.region, self.strategy, self.note = self._build_region(image_rgb, label_mask, opacity)

    def _build_region(self, image_rgb, label_mask, opacity) -> tuple[np.ndarray | None, str, str]:
        parts = parse_strategy(self.config.strategy)
        if parts == ("random",) or parts == ("interest_points",):
            return None, self.config.strategy, ""
        region = np.zeros(self.shape, bool)
        notes = []
        for part in parts:
            if part in ("interest_regions", "interest_points"):
                region |= interest_region(image_rgb, self.config)
            elif part == "mask_region":
                if label_mask is None:
                    notes.append("mask_region asked for but no label mask given")
                    continue
                region |= mask_region(label_mask, self.config)
            elif part == "foreground":
                if opacity is None:
                    notes.append("foreground asked for but no rendered opacity given")
                    continue
                region |= foreground_region(opacity, self.config)
        if not region.any():
            notes.append(f"{self.config.strategy} region is empty: sampling random pixels instead")
            return None, "random", "; ".join(notes)
        return region, self.config.strategy, "; ".join(notes)

    def sample(self, n: int | None = None) -> SampledPixels:
        """``n`` pixels (default ``config.num_rays``), with replacement when the region is smaller."""
        n = n or self.config.num_rays
        if self.strategy == "interest_points":
            return self._keypoints_sample(n)
        return SampledPixels(_uniform(self.region, self.shape, n, self._generator), self.strategy, self.note)

    def _keypoints_sample(self, n: int) -> SampledPixels:
        points = torch.from_numpy(self._keypoints).to(torch.float32)
        note = self.note
        if points.shape[0] >= n:
            idx = torch.randperm(points.shape[0], generator=self._generator)[:n]
            return SampledPixels(points[idx], self.strategy, note)
        extra = _uniform(None, self.shape, n - points.shape[0], self._generator)
        if points.shape[0] == 0:
            note = (note + "; " if note else "") + "no keypoints found: sampling random pixels instead"
        return SampledPixels(torch.cat([points, extra]), self.strategy, note)
