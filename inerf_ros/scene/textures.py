"""Procedural textures drawn in numpy/OpenCV from a seed: nothing third-party ships with the demo world.

Every function takes a ``numpy.random.Generator`` and returns an ``(H, W, 3)`` uint8 RGB image; the
same generator state gives the same bytes. Row 0 is the top of the image (as in a PNG).
"""
from __future__ import annotations

import cv2
import numpy as np

_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX)


def _rgb255(color) -> tuple[int, int, int]:
    return tuple(int(round(255 * float(np.clip(c, 0.0, 1.0)))) for c in color)


def random_color(rng: np.random.Generator, saturation=(0.5, 1.0), value=(0.4, 1.0)) -> np.ndarray:
    """A random saturated colour, rgb in [0, 1]."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64) / 255.0


def value_noise(rng: np.random.Generator, height: int, width: int, cells: int, octaves: int = 3) -> np.ndarray:
    """Smooth noise in [0, 1] (sum of bicubically upsampled random grids)."""
    out = np.zeros((height, width), np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        n = cells * 2 ** octave
        grid = rng.random((n + 1, n + 1)).astype(np.float32)
        out += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= 0.5
    out /= total
    return np.clip((out - out.min()) / max(float(np.ptp(out)), 1e-6), 0.0, 1.0)


def wood(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """Wood grain: distorted rings along x, with noise."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    warp = value_noise(rng, size, size, 3)
    rings = np.sin((ys * rng.uniform(18, 30) + 2.5 * warp + 0.3 * np.sin(xs * 6.0)) * np.pi) * 0.5 + 0.5
    fine = value_noise(rng, size, size, 24, octaves=2)
    shade = 0.55 + 0.3 * rings ** 3 + 0.15 * fine
    base = np.array([0.62, 0.42, 0.24]) * rng.uniform(0.85, 1.1)
    img = np.clip(shade[..., None] * base[None, None, :], 0, 1)
    return (img * 255).astype(np.uint8)


def tiles(rng: np.random.Generator, size: int = 512, n: int = 8) -> np.ndarray:
    """Floor tiles: a grid of slightly different stone colours with grout lines and noise."""
    base = np.array([0.55, 0.55, 0.52]) * rng.uniform(0.8, 1.1)
    tile_shade = rng.uniform(0.75, 1.1, size=(n, n)).astype(np.float32)
    shade = cv2.resize(tile_shade, (size, size), interpolation=cv2.INTER_NEAREST)
    shade *= 0.85 + 0.15 * value_noise(rng, size, size, 16)
    img = np.clip(shade[..., None] * base, 0, 1)
    step = size // n
    img[::step, :] *= 0.4
    img[:, ::step] *= 0.4
    return (img * 255).astype(np.uint8)


def _text(img, text, rng, org, scale, color, thickness=2):
    cv2.putText(img, text, org, _FONTS[int(rng.integers(len(_FONTS)))], scale, _rgb255(color), thickness,
                cv2.LINE_AA)


def label_panel(rng: np.random.Generator, width: int, height: int, text: str, base=None, accent=None) -> np.ndarray:
    """A printed package panel: a base colour, bands, a logo disc, a name and lines of small "text"."""
    base = random_color(rng) if base is None else np.asarray(base, float)
    accent = random_color(rng) if accent is None else np.asarray(accent, float)
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = _rgb255(base)
    # Bands and a gradient give gradients for keypoints and PoseCNN features.
    for _ in range(int(rng.integers(1, 4))):
        y0 = int(rng.uniform(0, height * 0.9))
        cv2.rectangle(img, (0, y0), (width, y0 + int(rng.uniform(0.03, 0.15) * height)),
                      _rgb255(accent * rng.uniform(0.6, 1.0)), -1)
    centre = (int(rng.uniform(0.2, 0.8) * width), int(rng.uniform(0.2, 0.5) * height))
    radius = int(rng.uniform(0.08, 0.2) * min(width, height))
    cv2.circle(img, centre, radius, _rgb255(1.0 - base), -1, cv2.LINE_AA)
    cv2.circle(img, centre, max(2, radius // 2), _rgb255(accent), -1, cv2.LINE_AA)
    scale = max(0.4, width / max(1, len(text)) / 22.0)
    _text(img, text.upper(), rng, (int(0.06 * width), int(rng.uniform(0.6, 0.75) * height)), scale,
          1.0 - accent, thickness=max(1, int(scale * 2.5)))
    dark = np.array([0.08, 0.08, 0.08]) if base.mean() > 0.45 else np.array([0.95, 0.95, 0.95])
    for k in range(int(rng.integers(2, 5))):
        y = int((0.8 + 0.045 * k) * height)
        if y < height - 2:
            words = "".join(rng.choice(list("ABCDEFGHKLMNOPRSTUVW0123456789 "), size=int(rng.integers(8, 20))))
            _text(img, words, rng, (int(0.05 * width), y), scale * 0.3, dark, thickness=1)
    return img


def box_atlas(rng: np.random.Generator, size: tuple[float, float, float], text: str, color=None,
              resolution: int = 1024) -> np.ndarray:
    """Texture atlas of a box (3 columns x 2 rows of cells, see ``objects.box_mesh``): faces +x, -x, +y / -y, +z, -z."""
    cell = resolution // 3
    base = random_color(rng) if color is None else np.asarray(color, float)
    accent = random_color(rng)
    atlas = np.zeros((2 * cell, 3 * cell, 3), np.uint8)
    sx, sy, sz = size
    # Aspect of each face (width along u, height along v) to draw undistorted-looking panels.
    faces = [(sy, sz), (sy, sz), (sx, sz), (sx, sz), (sx, sy), (sx, sy)]
    for k, (fw, fh) in enumerate(faces):
        w = max(8, int(cell * min(1.0, fw / max(fw, fh))))
        h = max(8, int(cell * min(1.0, fh / max(fw, fh))))
        panel = label_panel(rng, w, h, text if k in (0, 2) else text[:8], base, accent)
        panel = cv2.resize(panel, (cell, cell), interpolation=cv2.INTER_AREA)
        r, c = divmod(k, 3)
        atlas[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = panel
    return atlas


def lathe_texture(rng: np.random.Generator, bands: list[tuple[float, float, str]], text: str, color=None,
                  resolution: int = 1024) -> np.ndarray:
    """Texture of a surface of revolution: u = angle, v = arc length along the profile (row 0 = v 0).

    ``bands``: (v0, v1, kind) with kind "label" (a wrapped printed label), "metal", "plastic", "glaze".
    """
    height, width = resolution, resolution
    img = np.zeros((height, width, 3), np.uint8)
    base = random_color(rng) if color is None else np.asarray(color, float)
    accent = random_color(rng)
    for v0, v1, kind in bands:
        r0, r1 = int(round(v0 * height)), max(int(round(v0 * height)) + 1, int(round(v1 * height)))
        h = r1 - r0
        if kind == "label":
            panel = label_panel(rng, width // 2, max(8, h), text, base, accent)
            img[r0:r1] = cv2.resize(np.concatenate([panel, panel], axis=1), (width, h))  # two labels around
        elif kind == "metal":
            shade = 0.6 + 0.25 * value_noise(rng, h, width, 4)[..., None]
            rings = (0.9 + 0.1 * np.sin(np.linspace(0, 40 * np.pi, h)))[:, None, None]
            img[r0:r1] = np.clip(255 * shade * rings * np.array([0.85, 0.86, 0.9]), 0, 255).astype(np.uint8)
        elif kind == "glaze":
            shade = 0.85 + 0.15 * value_noise(rng, h, width, 8)[..., None]
            band = np.clip(255 * shade * base, 0, 255).astype(np.uint8)
            for _ in range(12):
                cv2.circle(band, (int(rng.integers(width)), int(rng.integers(max(1, h)))), int(0.02 * width),
                           _rgb255(accent), -1, cv2.LINE_AA)
            img[r0:r1] = band
        else:  # plastic
            shade = 0.8 + 0.2 * value_noise(rng, h, width, 6)[..., None]
            img[r0:r1] = np.clip(255 * shade * accent, 0, 255).astype(np.uint8)
    return img


def distractor_texture(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Random stripes / checks / noise for distractor shapes."""
    kind = int(rng.integers(3))
    c1, c2 = random_color(rng), random_color(rng)
    if kind == 0:
        n = int(rng.integers(2, 10))
        ys, xs = np.mgrid[0:size, 0:size]
        mask = ((xs * n // size + ys * n // size) % 2).astype(np.float32)
    elif kind == 1:
        mask = (np.sin(np.arange(size) / size * np.pi * rng.integers(4, 20)) > 0).astype(np.float32)[None, :]
        mask = np.repeat(mask, size, axis=0)
    else:
        mask = value_noise(rng, size, size, int(rng.integers(3, 12)))
    img = mask[..., None] * c1 + (1 - mask[..., None]) * c2
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def clutter(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A photo-like cluttered backdrop: a lit wall gradient with overlapping printed boxes, discs and strokes,
    slightly blurred. Stands in for real photos behind the table (none ship with the package).
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    c1, c2 = random_color(rng, (0.0, 0.6), (0.2, 1.0)), random_color(rng, (0.0, 0.6), (0.2, 1.0))
    ramp = (xs * np.cos(rng.uniform(0, np.pi)) + ys * np.sin(rng.uniform(0, np.pi))) / max(height, width)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    shade = 0.8 + 0.2 * value_noise(rng, height, width, 4)
    img = (ramp[..., None] * c1 + (1 - ramp[..., None]) * c2) * shade[..., None]
    img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    for _ in range(int(rng.integers(4, 14))):
        kind = int(rng.integers(3))
        w = int(rng.uniform(0.08, 0.45) * width)
        h = int(rng.uniform(0.08, 0.45) * height)
        x, y = int(rng.integers(-w // 2, width)), int(rng.integers(-h // 2, height))
        if kind == 0:  # a printed package seen face on
            panel = label_panel(rng, max(8, w), max(8, h), "".join(rng.choice(list("ABCDEFGHKMNOPRSTUW"), 6)))
            x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
            if x1 > x0 and y1 > y0:
                img[y0:y1, x0:x1] = panel[y0 - y:y1 - y, x0 - x:x1 - x]
        elif kind == 1:
            cv2.ellipse(img, (x + w // 2, y + h // 2), (max(1, w // 2), max(1, h // 2)), float(rng.uniform(0, 180)),
                        0, 360, _rgb255(random_color(rng)), -1, cv2.LINE_AA)
        else:
            cv2.line(img, (x, y), (x + w, y + h), _rgb255(random_color(rng)), int(rng.integers(2, 12)), cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 1.5)))


def random_surface(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A texture for a table, floor or distractor: wood, tiles, noise, stripes, a plain colour or clutter."""
    kind = int(rng.integers(6))
    if kind == 0:
        img = wood(rng, size)
        tint = rng.uniform(0.6, 1.3, size=3)  # light / dark / reddish woods
        return np.clip(img * tint, 0, 255).astype(np.uint8)
    if kind == 1:
        return tiles(rng, size, int(rng.integers(2, 12)))
    if kind == 2:
        noise = value_noise(rng, size, size, int(rng.integers(2, 24)))[..., None]
        img = noise * random_color(rng) + (1 - noise) * random_color(rng, (0.0, 0.5))
        return (np.clip(img, 0, 1) * 255).astype(np.uint8)
    if kind == 3:
        return distractor_texture(rng, size)
    if kind == 4:
        shade = 0.9 + 0.1 * value_noise(rng, size, size, 8)[..., None]
        return (np.clip(shade * random_color(rng, (0.0, 0.7), (0.15, 1.0)), 0, 1) * 255).astype(np.uint8)
    return clutter(rng, size, size)
