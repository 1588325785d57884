"""Field speed: training rays/s and the pose-gradient pass, ours next to the original NeRF, same run.

The reference is the network iNeRF inverted (Mildenhall et al. 2020): 8 x 256 ReLU MLP with a skip
at layer 5, positional encoding (10 frequencies for points, 4 for directions), 64 coarse samples
plus 128 importance samples evaluated by the fine network (192), built here with random weights
(speed does not depend on the values).

Pose-gradient pass = rays from a 6-DoF twist -> render N rays -> MSE -> backward to the twist.
Ours is measured with the trained model given by ``--model`` (its occupancy grid skips empty space;
``fixed-shape`` rows render every sample, as a CUDA-graph capture would) or, without one, a fresh
field (all space occupied: the worst case).

    python bench/field_speed.py --model MODEL_DIR [--rays 1024] [--device cpu|cuda|all]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inerf_ros.camera import Intrinsics  # noqa: E402
from inerf_ros.lie import se3_exp  # noqa: E402
from inerf_ros.nerf.model import NerfMetadata, NerfModel  # noqa: E402
from inerf_ros.nerf.rays import pixel_rays  # noqa: E402


def positional_encoding(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    out = [x]
    for k in range(n_freqs):
        out += [torch.sin(2.0 ** k * x), torch.cos(2.0 ** k * x)]
    return torch.cat(out, -1)


class OriginalNerf(nn.Module):
    """NeRF's MLP: 8 x 256, skip at the 5th layer, density head, 128-wide view-dependent colour branch."""

    def __init__(self, width: int = 256, depth: int = 8):
        super().__init__()
        n_pos, n_dir = 3 + 3 * 2 * 10, 3 + 3 * 2 * 4
        self.skip = 4
        self.layers = nn.ModuleList(
            [nn.Linear(n_pos, width)] + [nn.Linear(width + (n_pos if i == self.skip else 0), width)
                                         for i in range(1, depth)])
        self.sigma = nn.Linear(width, 1)
        self.feature = nn.Linear(width, width)
        self.view = nn.Linear(width + n_dir, width // 2)
        self.rgb = nn.Linear(width // 2, 3)

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pe = positional_encoding(x, 10)
        h = pe
        for i, layer in enumerate(self.layers):
            if i == self.skip:
                h = torch.cat([h, pe], -1)
            h = torch.relu(layer(h))
        sigma = torch.relu(self.sigma(h))[..., 0]
        h = torch.relu(self.view(torch.cat([self.feature(h), positional_encoding(d, 4)], -1)))
        return sigma, torch.sigmoid(self.rgb(h))


def _composite(sigma, rgb, z, background=1.0):
    deltas = torch.cat([z[:, 1:] - z[:, :-1], torch.full_like(z[:, :1], 1e10)], -1)
    alpha = 1 - torch.exp(-sigma * deltas)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha + 1e-10], -1), -1)[:, :-1]
    w = alpha * trans
    return (w[..., None] * rgb).sum(1) + (1 - w.sum(-1, keepdim=True)) * background, w


def _sample_pdf(bins, weights, n):
    pdf = (weights + 1e-5) / (weights + 1e-5).sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)
    u = torch.rand(cdf.shape[0], n, device=cdf.device)
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[-1] - 1)
    lo, hi = torch.gather(cdf, 1, idx - 1), torch.gather(cdf, 1, idx)
    b0, b1 = torch.gather(bins, 1, idx - 1), torch.gather(bins, 1, idx)
    t = (u - lo) / torch.where(hi - lo < 1e-5, torch.ones_like(hi), hi - lo)
    return b0 + t * (b1 - b0)


def reference_render(coarse: OriginalNerf, fine: OriginalNerf, o, d, near=2.0, far=6.0, n_coarse=64, n_fine=128):
    """NeRF's hierarchical render: coarse pass for the weights, fine network on 64 + 128 samples."""
    n = o.shape[0]
    z = near + (far - near) * torch.linspace(0, 1, n_coarse, device=o.device).expand(n, n_coarse)
    pts = o[:, None] + z[..., None] * d[:, None]
    dirs = (d / d.norm(dim=-1, keepdim=True))[:, None].expand_as(pts)
    sigma, rgb = coarse(pts.reshape(-1, 3), dirs.reshape(-1, 3))
    _, w = _composite(sigma.reshape(n, -1), rgb.reshape(n, -1, 3), z)
    mids = 0.5 * (z[:, 1:] + z[:, :-1])
    z_fine = _sample_pdf(mids, w[:, 1:-1].detach(), n_fine).detach()
    z_all, _ = torch.sort(torch.cat([z, z_fine], -1), -1)
    pts = o[:, None] + z_all[..., None] * d[:, None]
    dirs = (d / d.norm(dim=-1, keepdim=True))[:, None].expand_as(pts)
    sigma, rgb = fine(pts.reshape(-1, 3), dirs.reshape(-1, 3))
    color, _ = _composite(sigma.reshape(n, -1), rgb.reshape(n, -1, 3), z_all)
    return color


def _timeit(fn, repeats: int, device) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_device(device: torch.device, args) -> list[tuple[str, float, float]]:
    torch.manual_seed(0)
    if args.model:
        from inerf_ros.nerf.checkpoint import load_model

        model = load_model(args.model, device=device)
    else:
        model = NerfModel(NerfMetadata(aabb=[[-1.5] * 3, [1.5] * 3])).to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    aabb = model.aabb.cpu()
    radius = 2.2 * float((aabb[1] - aabb[0]).abs().max()) / 2 + 1.0
    # A camera looking at the scene centre from the +x/+z side; pixels spread over a 200x200 image.
    centre = aabb.mean(0)
    eye = centre + radius * torch.nn.functional.normalize(torch.tensor([1.0, -1.0, 0.8]), dim=0)
    back = torch.nn.functional.normalize(eye - centre, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]), back), dim=0)
    pose = torch.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, torch.linalg.cross(back, right), back, eye
    pose = pose.to(device)
    intr = Intrinsics.from_fov(200, 200, 0.69)
    gen = torch.Generator().manual_seed(1)
    uv = (torch.rand(args.rays, 2, generator=gen) * 199).to(device)
    target = torch.rand(args.rays, 3, generator=gen).to(device)
    rows = []

    def ours_pose(skip_empty):
        def step():
            twist = torch.zeros(6, device=device, requires_grad=True)
            o, d = pixel_rays(intr, pose @ se3_exp(twist), uv)
            out = model.render_rays(o, d, skip_empty=skip_empty, n_samples=args.samples)
            torch.nn.functional.mse_loss(out["rgb"], target).backward()
            assert twist.grad is not None and torch.isfinite(twist.grad).all()
        return step

    coarse, fine = OriginalNerf().to(device), OriginalNerf().to(device)
    for p in list(coarse.parameters()) + list(fine.parameters()):
        p.requires_grad_(False)
    near, far = max(radius - 2.0, 0.1), radius + 2.0

    def ref_pose():
        twist = torch.zeros(6, device=device, requires_grad=True)
        o, d = pixel_rays(intr, pose @ se3_exp(twist), uv)
        color = reference_render(coarse, fine, o, d, near, far)
        torch.nn.functional.mse_loss(color, target).backward()
        assert twist.grad is not None

    ours_skip = ours_pose(True)
    ours_dense = ours_pose(False)
    ours_skip()
    ours_dense()
    t_skip = _timeit(ours_skip, args.repeats, device)
    t_dense = _timeit(ours_dense, args.repeats, device)
    ref_repeats = args.ref_repeats if device.type == "cpu" else args.repeats
    ref_pose()
    t_ref = _timeit(ref_pose, ref_repeats, device)
    rows.append((f"pose-gradient pass, {args.rays} rays: ours (occupancy skip)", t_skip, t_ref))
    rows.append((f"pose-gradient pass, {args.rays} rays: ours (fixed shape, {args.samples} samples)", t_dense, t_ref))

    # Training throughput: a full optimisation step (weights get gradients) per batch of rays.
    train_model = model
    for p in train_model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(train_model.parameters(), lr=1e-3)
    o_all, d_all = pixel_rays(intr, pose, uv)

    def ours_train():
        out = train_model.render_rays(o_all, d_all, jitter=True, n_samples=train_model.metadata.n_samples)
        loss = torch.nn.functional.mse_loss(out["rgb"], target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    params = list(coarse.parameters()) + list(fine.parameters())
    for p in params:
        p.requires_grad_(True)
    ref_opt = torch.optim.Adam(params, lr=5e-4)
    n_ref = min(args.rays, args.ref_train_rays)

    def ref_train():
        color = reference_render(coarse, fine, o_all[:n_ref], d_all[:n_ref], near, far)
        loss = torch.nn.functional.mse_loss(color, target[:n_ref])
        ref_opt.zero_grad(set_to_none=True)
        loss.backward()
        ref_opt.step()

    ours_train()
    t_train = _timeit(ours_train, args.repeats, device)
    ref_train()
    t_ref_train = _timeit(ref_train, ref_repeats, device)
    rows.append(("training, rays/s (ours vs reference)", args.rays / t_train, n_ref / t_ref_train))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="trained model directory (default: a fresh field)")
    parser.add_argument("--rays", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=64, help="samples per ray of our fixed-shape pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ref-repeats", type=int, default=2, help="repeats of the (slow) reference on the CPU")
    parser.add_argument("--ref-train-rays", type=int, default=256, help="rays per reference training step on CPU")
    parser.add_argument("--device", default="all", choices=("cpu", "cuda", "all"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        print("CUDA: not available, skipped")
        devices.remove("cuda")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, model: {args.model or 'fresh field'}")
    for name in devices:
        device = torch.device(name)
        print(f"\n== {name} ==")
        for label, ours, ref in bench_device(device, args):
            if label.startswith("training"):
                print(f"{label}: {ours:,.0f} vs {ref:,.0f} rays/s -> {ours / ref:.1f}x")
            else:
                print(f"{label}: {ours * 1e3:.1f} ms vs reference {ref * 1e3:.0f} ms -> {ref / ours:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
