"""``inerf-ros render MODEL_DIR --out DIR``: render images from a trained NeRF.

Poses come from a transforms.json (``--poses``; its intrinsics too, optionally downscaled) or, without
one, from an orbit around the scene box. Writes ``rgb_XXXX.png`` (+ ``depth_XXXX.png``) and, when the
json's images are available, prints PSNR / SSIM against them.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inerf_ros.camera import Intrinsics
from inerf_ros.datasets.transforms import load_transforms
from inerf_ros.nerf.checkpoint import load_model
from inerf_ros.nerf.metrics import psnr, ssim
from inerf_ros.nerf.render import render_image


def orbit_poses(aabb: torch.Tensor, n: int, elevation_deg: float = 30.0, radius_factor: float = 1.6) -> torch.Tensor:
    """(n, 4, 4) OpenGL cameras on a circle about +z around the box centre, looking at it."""
    centre = aabb.mean(0)
    radius = radius_factor * float((aabb[1] - aabb[0]).norm()) / 2
    poses = []
    for k in range(n):
        az = 2 * math.pi * k / n
        el = math.radians(elevation_deg)
        eye = centre + radius * torch.tensor([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
        back = (eye - centre) / (eye - centre).norm()  # camera z points away from the target
        right = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]), back)
        right = right / right.norm()
        up = torch.linalg.cross(back, right)
        pose = torch.eye(4)
        pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, up, back, eye
        poses.append(pose)
    return torch.stack(poses)


def _save(path: Path, image: np.ndarray) -> None:
    Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``render`` flags: model, output folder, poses (or an orbit), size and levels."""
    parser.add_argument("model_dir", type=Path, help="model directory written by `inerf-ros train-nerf`")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--poses", type=Path, default=None, help="transforms.json with the cameras to render")
    parser.add_argument("--downscale", type=float, default=1.0, help="shrink the json's images/intrinsics")
    parser.add_argument("--limit", type=int, default=0, help="render at most this many views (0: all)")
    parser.add_argument("--orbit", type=int, default=8, help="views on an orbit when no --poses is given")
    parser.add_argument("--width", type=int, default=200, help="orbit image width")
    parser.add_argument("--height", type=int, default=200, help="orbit image height")
    parser.add_argument("--fov", type=float, default=40.0, help="orbit horizontal field of view, degrees")
    parser.add_argument("--max-level", type=float, default=None, help="mask field levels above this one")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--depth", action=argparse.BooleanOptionalAction, default=True, help="also write depth PNGs")


def run(args: argparse.Namespace) -> int:
    """Run ``render``: write RGB (and depth) PNGs of the model at the given poses or on an orbit."""
    model = load_model(args.model_dir, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    gts = None
    if args.poses is not None:
        data = load_transforms(args.poses, downscale=args.downscale, background=model.metadata.background)
        poses, intrinsics, gts = data.nerf_T_cam, data.intrinsics, data.images
    else:
        poses = orbit_poses(model.aabb.cpu(), args.orbit)
        intrinsics = [Intrinsics.from_fov(args.width, args.height, math.radians(args.fov))] * len(poses)
    n = len(poses) if args.limit <= 0 else min(args.limit, len(poses))
    scores = []
    for i in range(n):
        out = render_image(model, intrinsics[i], poses[i].to(args.device), max_level=args.max_level)
        rgb = out["rgb"].clamp(0, 1).cpu()
        _save(args.out / f"rgb_{i:04d}.png", rgb.numpy())
        if args.depth:
            depth, opacity = out["depth"].cpu(), out["opacity"].cpu()
            d = depth[opacity > 0.5]
            lo, hi = (float(d.min()), float(d.max())) if d.numel() else (0.0, 1.0)
            _save(args.out / f"depth_{i:04d}.png", (((depth - lo) / max(hi - lo, 1e-6)) * (opacity > 0.5)).numpy())
        if gts is not None:
            scores.append((psnr(rgb, gts[i]), ssim(rgb, gts[i])))
            print(f"view {i}: PSNR {scores[-1][0]:.2f} dB, SSIM {scores[-1][1]:.4f}")
    if scores:
        print(f"mean over {len(scores)} views: PSNR {np.mean([s[0] for s in scores]):.2f} dB, "
              f"SSIM {np.mean([s[1] for s in scores]):.4f}")
    print(f"wrote {n} views to {args.out}")
    return 0
