"""Image-space domain randomization: what a real camera does to a frame that a renderer does not.

Applied on the fly in training (``train-posecnn --camera-effects``, ``--background-share``), seeded from
the trainer's generator, on ``(H, W, 3)`` uint8 RGB frames. The render-time randomization (object
layouts, surfaces, lights, camera distance) is in :mod:`inerf_ros.posecnn.randomized_scene`.

Effects, in the order a camera applies them:

- background: pixels of no trained object (label 0) replaced by a photo (cropped, flipped) or a
  procedural photo-like backdrop; the objects are pasted on a scene that was never rendered;
- optics: motion blur (a line kernel at a random angle) or defocus blur (a disc);
- sensor: white balance as gains in linear light, shot noise (variance proportional to the signal) and
  read noise (constant variance), then auto exposure with an error (dark renders come out bright and
  noisy), back to sRGB;
- encoding: JPEG at a random quality.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from inerf_ros.scene.textures import clutter

# sRGB <-> linear light via lookup tables (gamma 2.2): float pow on every pixel costs more than the step.
_TO_LINEAR = ((np.arange(256, dtype=np.float32) / 255.0) ** 2.2).astype(np.float32)
_LEVELS = 65536  # fine enough that dark values survive the round trip (4096 merged 0-6)
_TO_SRGB = np.clip(np.round(255.0 * np.linspace(0.0, 1.0, _LEVELS) ** (1 / 2.2)), 0, 255).astype(np.uint8)
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass(frozen=True)
class CameraEffects:
    """Ranges and probabilities of the effects (defaults: a consumer RGB-D camera's colour stream)."""

    brightness: tuple[float, float] = (0.3, 0.55)     # auto exposure: mean sRGB level it aims at
    exposure: tuple[float, float] = (0.6, 1.5)        # its error: a further gain in linear light
    max_gain: float = 4.0                              # the most auto exposure amplifies a dark scene
    white_balance: tuple[float, float] = (0.8, 1.25)  # red and blue gains relative to green
    shot_noise: tuple[float, float] = (0.0, 0.01)     # variance per unit of linear signal
    read_noise: tuple[float, float] = (0.0, 0.012)    # standard deviation, linear light
    noise_probability: float = 0.8
    motion_blur_probability: float = 0.25
    motion_blur_px: tuple[int, int] = (3, 9)          # kernel length, pixels
    defocus_probability: float = 0.2
    defocus_px: tuple[float, float] = (1.0, 2.5)      # disc radius, pixels
    jpeg_probability: float = 0.6
    jpeg_quality: tuple[int, int] = (30, 95)


def exposure_and_noise(image: np.ndarray, rng: np.random.Generator, effects: CameraEffects = CameraEffects()
                       ) -> np.ndarray:
    """A camera's sensor on a rendered frame, in linear light: white-balance gains, shot + read noise on the
    sensor's signal, then the exposure gain (auto exposure towards a mean level, times its error, at most
    ``max_gain``: a dark scene comes out bright and noisy, as from a real camera). uint8 in, uint8 out.
    """
    white_balance = np.array([rng.uniform(*effects.white_balance), 1.0, rng.uniform(*effects.white_balance)],
                             np.float32)
    target = rng.uniform(*effects.brightness) ** 2.2
    error = rng.uniform(*effects.exposure)
    linear = _TO_LINEAR[image] * white_balance
    gain = np.float32(min(effects.max_gain, target / max(float(linear.mean()), 1e-4)) * error)
    if rng.random() < effects.noise_probability:
        shot, read = rng.uniform(*effects.shot_noise), rng.uniform(*effects.read_noise)
        sigma = np.sqrt(shot * np.clip(linear, 0.0, None) + read ** 2)
        linear = linear + sigma * rng.standard_normal(linear.shape, dtype=np.float32)
    index = np.clip(linear * gain * (_LEVELS - 1) + 0.5, 0, _LEVELS - 1).astype(np.int32)
    return _TO_SRGB[index]


def motion_blur(image: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    """Blur along a line of ``length`` pixels at ``angle_deg`` (camera shake during the exposure)."""
    length = max(1, int(length))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return cv2.filter2D(image, -1, kernel / max(float(kernel.sum()), 1e-6), borderType=cv2.BORDER_REFLECT)


def defocus_blur(image: np.ndarray, radius: float) -> np.ndarray:
    """Blur with a disc of ``radius`` pixels (out of focus)."""
    r = int(np.ceil(radius))
    ys, xs = np.mgrid[-r:r + 1, -r:r + 1]
    kernel = (xs ** 2 + ys ** 2 <= radius ** 2 + 0.25).astype(np.float32)
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG (block artefacts, chroma subsampling)."""
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def load_photos(folder, max_photos: int = 200, max_side: int = 640) -> list[np.ndarray]:
    """RGB uint8 photos of ``folder`` (JPEG/PNG, sorted by name), downscaled so the longer side is at most
    ``max_side``. An empty list when the folder holds none; an error when it does not exist.
    """
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"background folder {folder} does not exist")
    photos = []
    for file in sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)[:max_photos]:
        bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{file}: not a readable image")
        scale = min(1.0, max_side / max(bgr.shape[:2]))
        if scale < 1.0:
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        photos.append(bgr[:, :, ::-1].copy())
    return photos


def background_image(rng: np.random.Generator, height: int, width: int, photos: list[np.ndarray] = ()
                     ) -> np.ndarray:
    """A random crop (30-100 % of the side, flipped half the time) of a photo, else a procedural backdrop."""
    if not photos:
        return clutter(rng, height, width)
    photo = photos[int(rng.integers(len(photos)))]
    h, w = photo.shape[:2]
    aspect = width / height
    crop_h = int(min(h, w / aspect) * rng.uniform(0.3, 1.0))
    crop_w = max(1, int(crop_h * aspect))
    crop_h = max(1, crop_h)
    y, x = int(rng.integers(0, h - crop_h + 1)), int(rng.integers(0, w - crop_w + 1))
    out = cv2.resize(photo[y:y + crop_h, x:x + crop_w], (width, height), interpolation=cv2.INTER_AREA)
    return out[:, ::-1].copy() if rng.random() < 0.5 else out


def paste_background(image: np.ndarray, label: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``image`` where ``label`` > 0 (the trained objects), ``background`` elsewhere."""
    if background.shape != image.shape:
        raise ValueError(f"background {background.shape} does not match the image {image.shape}")
    return np.where((label > 0)[..., None], image, background)


def camera_effects(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, *, background_share: float = 0.0,
                   photos: list[np.ndarray] = (), effects: CameraEffects | None = CameraEffects()) -> np.ndarray:
    """All effects on one frame: background (with probability ``background_share``), blur, exposure,
    white balance, noise, JPEG (``effects=None``: background only). uint8 (H, W, 3) in and out.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"camera_effects takes (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
    out = image
    if background_share > 0 and rng.random() < background_share:
        out = paste_background(out, label, background_image(rng, *image.shape[:2], photos))
    if effects is None:
        return np.ascontiguousarray(out)
    if rng.random() < effects.motion_blur_probability:
        out = motion_blur(out, int(rng.integers(effects.motion_blur_px[0], effects.motion_blur_px[1] + 1)),
                          rng.uniform(0, 180))
    elif rng.random() < effects.defocus_probability:
        out = defocus_blur(out, rng.uniform(*effects.defocus_px))
    out = exposure_and_noise(out, rng, effects)
    if rng.random() < effects.jpeg_probability:
        out = jpeg(out, int(rng.integers(effects.jpeg_quality[0], effects.jpeg_quality[1] + 1)))
    return np.ascontiguousarray(out)
