"""Helpers of the NeRF tests (a module of its own: `conftest` names are ambiguous across test folders)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# One thread: on a shared 2-core machine, OpenMP's two threads wait on each other for every small op.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared"


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenGL camera-to-world pose at ``eye`` looking at ``target``."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, np.cross(back, right), back, eye
    return pose


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def sphere_image(pose: np.ndarray, width: int, height: int, focal: float, radius: float = 0.6) -> np.ndarray:
    """RGBA render of a sphere at the origin coloured by its normal (analytic ray casting, OpenCV pixel centres)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    d_cam = np.stack([(u - (width - 1) / 2) / focal, -(v - (height - 1) / 2) / focal, -np.ones_like(u)], -1)
    d = d_cam @ pose[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = pose[:3, 3]
    b = d @ o
    c = o @ o - radius ** 2
    disc = b * b - c
    hit = disc > 0
    t = -b - np.sqrt(np.where(hit, disc, 0))
    p = o + t[..., None] * d
    n = p / radius
    rgb = np.clip(0.5 + 0.5 * n, 0, 1) * hit[..., None]
    # A stripe pattern so that the fine levels have something to learn.
    rgb = rgb * (0.75 + 0.25 * np.sign(np.sin(6 * p[..., 2:3])))
    return np.concatenate([rgb, hit[..., None].astype(np.float64)], -1)


def make_sphere_scene(folder: Path, n_views: int = 24, size: int = 32, fov_x: float = 0.8) -> Path:
    """A Blender-style scene (camera_angle_x, RGBA PNGs) of a striped sphere seen from a ring of cameras."""
    focal = 0.5 * size / math.tan(0.5 * fov_x)
    frames = []
    for i in range(n_views):
        az = 2 * math.pi * i / n_views
        el = 0.5 * math.sin(3 * az)
        eye = 2.5 * np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
        pose = look_at(eye)
        write_png(folder / "train" / f"r_{i}.png", sphere_image(pose, size, size, focal))
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": pose.tolist()})
    path = folder / "transforms.json"
    path.write_text(json.dumps({"camera_angle_x": fov_x, "aabb": [[-1, -1, -1], [1, 1, 1]], "frames": frames}))
    return path
