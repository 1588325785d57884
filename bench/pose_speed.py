"""Seconds per iNeRF iteration and per estimate, next to the original 8x256 NeRF in the same run.

One iteration = render a batch of rays, back-propagate the photometric loss to the 6-DoF pose, one
optimizer step. The reference is the original NeRF/iNeRF network (8 layers x 256, positional
encoding, 64 coarse + 128 fine samples), built here (bench/field_speed.py) and timed on the same
rays; the ratio is the point (machines here are noisy, so both run side by side).

    python bench/pose_speed.py [--model models/nerf_tabletop] [--rays 1024] [--device cpu|cuda]

Per estimate: a view rendered from the model itself, the start perturbed by 10 deg / 5 cm (a
PoseCNN-like prior), solved with Adam (iNeRF's schedule) and with Levenberg-Marquardt.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from field_speed import OriginalNerf, reference_render  # noqa: E402

from inerf_ros import frames, lie  # noqa: E402
from inerf_ros.camera import Intrinsics  # noqa: E402
from inerf_ros.optim.inerf import OptimizerConfig, PoseOptimizer  # noqa: E402
from inerf_ros.optim.sampling import SamplingConfig  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn, repeats: int, device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_or_build_model(path: str | None, device):
    from inerf_ros.nerf.checkpoint import load_model
    from inerf_ros.nerf.model import NerfMetadata, NerfModel

    if path and Path(path, "model.json").is_file():
        return load_model(path, device=device), f"trained model {path}"
    torch.manual_seed(0)
    model = NerfModel(NerfMetadata(aabb=[[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])).to(device)
    return model, "untrained default field (no model given): occupancy skipping cannot help it"


def reference_iteration(rays: int, device):
    torch.manual_seed(0)
    coarse, fine = OriginalNerf().to(device), OriginalNerf().to(device)
    xi = torch.zeros(6, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([xi], lr=0.01)
    directions_cam = torch.nn.functional.normalize(torch.randn(rays, 3, device=device), dim=-1)
    target = torch.rand(rays, 3, device=device)
    start = torch.eye(4, device=device)
    start[2, 3] = 4.0

    def step():
        pose = start @ lie.se3_exp(xi)
        origins = pose[:3, 3].expand(rays, 3)
        directions = directions_cam @ pose[:3, :3].T
        rgb = reference_render(coarse, fine, origins, directions)
        loss = ((rgb - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def ours_iteration(model, rays: int, solver: str, device, view):
    image, intrinsics, nerf_T_optical = view
    optimizer = PoseOptimizer(model, OptimizerConfig(solver=solver, max_iterations=1, covariance_rays=0),
                              SamplingConfig(num_rays=rays), device=device)

    def step():
        optimizer.estimate(image, intrinsics, nerf_T_optical, max_iterations=1)

    return step


def rendered_view(model, device):
    """A 320x240 view of the model's scene from outside its box, looking at the box centre."""
    from inerf_ros.nerf.render import render_image

    aabb = np.asarray(model.metadata.aabb, dtype=np.float64)
    centre, size = aabb.mean(0), np.linalg.norm(aabb[1] - aabb[0])
    eye = centre + np.array([0.45, -0.55, 0.5]) * size
    forward = (centre - eye) / np.linalg.norm(centre - eye)
    up = np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    nerf_T_optical = np.eye(4)
    nerf_T_optical[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)
    nerf_T_optical[:3, 3] = eye
    intrinsics = Intrinsics(320, 240, 300.0, 300.0, 159.5, 119.5)
    with torch.no_grad():
        rgb = render_image(model, intrinsics,
                           torch.from_numpy(frames.optical_to_opengl(nerf_T_optical)).float().to(device))["rgb"]
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy(), intrinsics, nerf_T_optical


def estimate_times(model, view, rays: int, device, trials: int, metres_per_unit: float):
    image, intrinsics, gt = view
    rng = np.random.default_rng(0)
    rows = []
    for solver, iterations in (("adam", 300), ("lm", 60)):
        seconds, its, rot_errors, trans_errors = [], [], [], []
        optimizer = PoseOptimizer(model, OptimizerConfig(solver=solver, max_iterations=iterations),
                                  SamplingConfig(num_rays=rays), device=device)
        for _ in range(trials):
            axis = rng.normal(size=3)
            rotation = lie.axis_angle_rotation(torch.from_numpy(axis), torch.tensor(math.radians(10.0))).numpy()
            shift = rng.normal(size=3)
            start = gt.copy()
            start[:3, :3] = rotation @ gt[:3, :3]
            start[:3, 3] += shift / np.linalg.norm(shift) * 0.05 / metres_per_unit
            estimate = optimizer.estimate(image, intrinsics, start)
            rot, trans = lie.pose_error(torch.from_numpy(estimate.nerf_T_optical), torch.from_numpy(gt))
            seconds.append(estimate.time_s)
            its.append(estimate.iterations)
            rot_errors.append(float(rot))
            trans_errors.append(float(trans) * metres_per_unit)
        rows.append((solver, statistics.median(seconds), statistics.median(its), max(rot_errors),
                     100 * max(trans_errors)))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "nerf_tabletop"), help="NeRF model directory")
    parser.add_argument("--rays", type=int, default=1024, help="rays per iteration (default 1024)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per measurement")
    parser.add_argument("--trials", type=int, default=3, help="estimates per solver")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    model, description = load_or_build_model(args.model, device)
    view = rendered_view(model, device)
    print(f"device {device}, {args.rays} rays per iteration, {description}")
    reference = median_time(reference_iteration(args.rays, device), max(2, args.repeats // 2), device)
    print(f"{'iteration':<42} {'s/iter':>9} {'reference / this':>17}")
    print(f"{'original NeRF 8x256, 64+128 samples (Adam)':<42} {reference:9.4f} {1.0:17.1f}")
    for solver in ("adam", "lm"):
        ours = median_time(ours_iteration(model, args.rays, solver, device, view), args.repeats, device)
        print(f"{'inerf_ros field, ' + solver:<42} {ours:9.4f} {reference / ours:17.1f}")

    print(f"\nper estimate from a 10 deg / 5 cm prior ({args.trials} trials, {args.rays} rays):")
    print(f"{'solver':<8} {'median s':>9} {'median iters':>13} {'max rot err (deg)':>18} {'max trans err (cm)':>19}")
    for solver, seconds, its, rot, trans in estimate_times(model, view, args.rays, device, args.trials,
                                                           float(model.metadata.metres_per_unit)):
        print(f"{solver:<8} {seconds:9.2f} {its:13.0f} {rot:18.3f} {trans:19.3f}")
    print(f"reference iNeRF estimate (300 iterations at the reference speed): {300 * reference:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
