"""``inerf-ros train-nerf DATA --out MODEL_DIR``: train a NeRF on posed images (transforms.json).

Every ``holdout_every``-th view is held out of training and used for evaluation (PSNR / SSIM). The
model directory gets ``model.safetensors`` + ``model.json`` (see :mod:`inerf_ros.nerf.checkpoint`),
``report.md``, ``metrics.json`` and ``previews/*.png`` (ground truth | render | depth).

Settings come from a preset (``--preset``, see :mod:`inerf_ros.nerf.presets`; ``auto`` picks it from
the data and says why) under the flags the user gave. A ``capture`` is trained as an unbounded field:
its box is the region of interest from the SfM points (:mod:`inerf_ros.nerf.bounds`) and space beyond
is contracted, which ``model.json`` records so that every renderer of the model does the same.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from inerf_ros import config as cfg
from inerf_ros.datasets.transforms import PosedImages, load_transforms, read_transforms_json, resolve_transforms_path
from inerf_ros.nerf import bounds, presets
from inerf_ros.nerf.appearance import PhotoAppearance, psnr_affine
from inerf_ros.nerf.checkpoint import save_model
from inerf_ros.nerf.field import CONTRACTIONS, FieldConfig, density_threshold
from inerf_ros.nerf.metrics import psnr, psnr_from_mse, ssim
from inerf_ros.nerf.model import NerfMetadata, NerfModel
from inerf_ros.nerf.rays import image_pixels, pixel_rays
from inerf_ros.nerf.render import distortion_loss, lindisp_coordinate, render_image


@dataclasses.dataclass
class TrainConfig:
    """How ``train-nerf`` trains: preset, budget, batch, sampling, losses, data handling."""

    preset: str = cfg.option("auto", "settings for the kind of data (flags given override them): object (one object on "
                             "a plain background), capture (a real hand-held or arm capture: unbounded field, "
                             "per-photo colour, SfM depth supervision), inward (a real capture with every camera "
                             "outside the scene box: bounded, lightfield background, per-photo colour, SfM depth "
                             "supervision), tabletop (the demo world), auto (chosen "
                             "from the data, printed), none (the flags' defaults only)",
                             choices=("auto", "none") + presets.PRESET_NAMES)
    contraction: str = cfg.option("none", "none: a bounded scene box; linf: an unbounded scene, the box is the region "
                                  "of interest (SfM points, else the data's aabb, else the camera frusta) and "
                                  "space beyond it is contracted into the field (mip-NeRF 360 / nerfacto)",
                                  choices=CONTRACTIONS)
    steps: int = cfg.option(0, "optimisation steps (0: until --minutes run out)", range=(0, 10_000_000))
    minutes: float = cfg.option(0.0, "training budget in minutes (0: until --steps); see --budget-clock",
                                range=(0.0, 1e5))
    budget_clock: str = cfg.option("cpu", "what --minutes counts: 'cpu' = this process's CPU time / torch threads "
                                   "(the wall time of a dedicated machine; fair on a shared one) or 'wall'",
                                   choices=("cpu", "wall"))
    batch_rays: int = cfg.option(2048, "rays per step", range=(16, 1 << 20))
    n_samples: int = cfg.option(128, "samples per ray over the scene box", range=(8, 4096))
    sampling: str = cfg.option("box", "sample bins: box (n_samples across each ray's chord through the box) or "
                                      "camera (bins of box diagonal / n_samples at fixed distances from the "
                                      "camera: renders change smoothly with the pose, which pose "
                                      "estimation needs when cameras are outside a tight box)",
                               choices=("box", "camera"))
    lr_planes: float = cfg.option(0.2, "Adam learning rate of the feature planes", range=(0.0, 1.0))
    lr_mlp: float = cfg.option(0.01, "Adam learning rate of the MLPs", range=(0.0, 1.0))
    lr_final_factor: float = cfg.option(0.1, "learning rates decay exponentially to this factor", range=(1e-4, 1.0))
    tv_weight: float = cfg.option(0.0, "weight of the plane total-variation regulariser", range=(0.0, 10.0))
    distortion_weight: float = cfg.option(0.01, "weight of mip-NeRF 360's distortion loss (concentrates each ray's "
                                          "weight on a surface: no haze, fewer samples to render)",
                                          range=(0.0, 10.0))
    appearance: str = cfg.option("none", "none, or affine: a colour gain and offset per training photo, learned "
                                 "with the field (phone cameras change exposure and white balance between shots; "
                                 "without it the field bakes those changes into view-dependent colour and "
                                 "floaters); renders use the neutral appearance",
                                 choices=("none", "affine"))
    appearance_weight: float = cfg.option(0.01, "affine appearance: weight of the pull of every photo's gain and "
                                          "offset towards neutral (fixes the common scale the field could "
                                          "trade against them)", range=(0.0, 100.0))
    depth_weight: float = cfg.option(0.0, "weight of the SfM depth supervision (0: off): a ray from each training "
                                     "camera through a sparse point it observed (the data's sparse_points, written "
                                     "by inerf-ros sfm) must stop there; without it few-view fields place surfaces "
                                     "a few percent off in depth, which pose estimation reads as translation",
                                     range=(0.0, 100.0))
    depth_sigma: float = cfg.option(0.02, "depth supervision: tolerance as a fraction of the point's distance "
                                    "(weight beyond ~2 sigma costs as much as missing the point)", range=(1e-4, 1.0))
    depth_rays: int = cfg.option(256, "depth-supervised rays per step", range=(1, 1 << 20))
    alpha_threshold: float = cfg.option(0.0, "training differentiates only samples with opacity above this (and "
                                        "transmittance above 1e-4)", range=(0.0, 0.5))
    downscale: float = cfg.option(0.0, "shrink images by this factor (e.g. 4: 800x800 -> 200x200); 0: the smallest "
                                  f"integer that brings the longest side to {presets.AUTO_LONGEST_SIDE} pixels or less",
                                  range=(0.0, 64.0))
    holdout_every: int = cfg.option(8, "every k-th view (0, k, 2k, ...) is held out for evaluation", range=(2, 1000))
    background: list = cfg.option([1.0, 1.0, 1.0], "RGB behind the scene / under transparent pixels")
    background_model: str = cfg.option("constant", "'constant' (--background), 'learned' (colour of the view "
                                       "direction outside the box: real or rendered surroundings) or 'lightfield' "
                                       "(of the direction and the camera position: surroundings at a finite "
                                       "distance, e.g. a floor's far edge)",
                                       choices=("constant", "learned", "lightfield"))
    aabb: list = cfg.option([], "scene box override: xmin ymin zmin xmax ymax zmax in NeRF units (empty: the data's)")
    aabb_grow: float = cfg.option(1.0, "grow the scene box about its centre by this factor", range=(0.1, 100.0))
    view_stride: int = cfg.option(1, "use every k-th frame of the data set only", range=(1, 10000))
    half_planes: bool = cfg.option(True, "store the feature planes as float16 in the model file (half the size)")
    near: float = cfg.option(0.05, "nearest sample distance, NeRF units", range=(0.0, 1e6))
    occupancy_resolution: int = cfg.option(64, "occupancy grid cells per axis", range=(8, 512))
    occupancy_every: int = cfg.option(16, "refresh the occupancy grid every N steps", range=(1, 100000))
    occupancy_warmup: int = cfg.option(32, "steps before the first occupancy refresh", range=(0, 100000))
    occupancy_alpha: float = cfg.option(0.01, "a cell is occupied when its density gives this opacity over one "
                                        "sample spacing of the box diagonal", range=(1e-6, 0.5))
    occupancy_decay: float = cfg.option(0.8, "a cell's remembered density decays by this factor per refresh "
                                        "(lower: the grid follows the field's emptying faster)", range=(0.0, 1.0))
    coarse_fraction: float = cfg.option(0.125, "share of rays rendered with fine levels masked (coarse-to-fine)",
                                        range=(0.0, 0.9))
    eval_views: int = cfg.option(0, "held-out views to evaluate at the end (0: all)", range=(0, 100000))
    preview_every: int = cfg.option(0, "write a preview every N steps (0: only at the end)", range=(0, 10_000_000))
    device: str = cfg.option("cpu", "torch device", choices=("cpu", "cuda"))
    threads: int = cfg.option(0, "CPU threads for torch (0: all cores)", range=(0, 512))
    seed: int = cfg.option(0, "random seed", range=(0, 2 ** 31 - 1))


@dataclasses.dataclass
class RaySet:
    """All training pixels as rays: origins (P, 3), directions (P, 3), colours (P, 3), photo index (P,)."""

    origins: torch.Tensor
    directions: torch.Tensor
    colors: torch.Tensor
    photos: torch.Tensor


def build_rays(data: PosedImages) -> RaySet:
    """Every valid training pixel of ``data`` as a ray with its colour and photo index."""
    origins, directions, colors, photos = [], [], [], []
    for i in range(len(data)):
        intr = data.intrinsics[i]
        pixels = image_pixels(intr)
        keep = data.valid[i].reshape(-1)
        o, d = pixel_rays(intr, data.nerf_T_cam[i], pixels[keep])
        origins.append(o)
        directions.append(d)
        colors.append(data.images[i].reshape(-1, 3)[keep])
        photos.append(torch.full((o.shape[0],), i, dtype=torch.long))
    return RaySet(torch.cat(origins), torch.cat(directions), torch.cat(colors), torch.cat(photos))


@dataclasses.dataclass
class DepthRays:
    """Rays from training cameras through the SfM points they observed: origins, unit directions (R, 3)
    and the points' distances (R,).
    """

    origins: torch.Tensor
    directions: torch.Tensor
    distances: torch.Tensor


def build_depth_rays(data: PosedImages, bounded: bool = True) -> DepthRays | None:
    """Depth rays of the points inside the scene box (a bounded field can only put weight there;
    ``bounded=False``: all points, an unbounded field reaches everywhere).
    """
    if data.sparse_points is None:
        return None
    origins, directions, distances = [], [], []
    for pose, points in zip(data.nerf_T_cam, data.sparse_points):
        points = torch.from_numpy(points).float()
        if bounded:
            points = points[((points >= data.aabb[0]) & (points <= data.aabb[1])).all(-1)]
        if len(points) == 0:
            continue
        centre = pose[:3, 3]
        offsets = points - centre
        distance = offsets.norm(dim=-1)
        origins.append(centre.expand_as(offsets))
        directions.append(offsets / distance[:, None])
        distances.append(distance)
    if not origins:
        return None
    return DepthRays(torch.cat(origins), torch.cat(directions), torch.cat(distances))


def depth_loss(weights: torch.Tensor, t: torch.Tensor, distances: torch.Tensor, sigma: float) -> torch.Tensor:
    """Mean over rays of ``sum_i w_i min(((t_i - D) / (sigma D))^2, 1) + (1 - sum_i w_i)``.

    Weight near the point's distance D is free, weight elsewhere costs up to 1, and so does the
    weight the ray leaves to the background (a point means a surface is there). Bounded per ray, so a
    wrong SfM point costs no more than a missed one.
    """
    error = ((t - distances[:, None]) / (sigma * distances[:, None])) ** 2
    return ((weights * error.clamp(max=1.0)).sum(-1) + (1.0 - weights.sum(-1))).mean()


def _sample_step(aabb, train: TrainConfig) -> float:
    """Camera-anchored bins as long as the box diagonal / n_samples (any chord fits); 0: box-relative."""
    return float((aabb[1] - aabb[0]).norm()) / train.n_samples if train.sampling == "camera" else 0.0


def make_model(data: PosedImages, train: TrainConfig, field: FieldConfig) -> NerfModel:
    """A fresh model for ``data``'s box, with the sampling and contraction the configs ask for."""
    unbounded = train.contraction != "none"
    metadata = NerfMetadata(
        aabb=data.aabb.tolist(), near=train.near, metres_per_unit=data.metres_per_unit,
        background=tuple(float(c) for c in train.background), background_model=train.background_model,
        field=dataclasses.asdict(field),
        n_samples=train.n_samples, occupancy_resolution=train.occupancy_resolution,
        sample_step=0.0 if unbounded else _sample_step(data.aabb, train), contraction=train.contraction,
        lindisp_scale=bounds.lindisp_scale(data.aabb.numpy(), data.nerf_T_cam.numpy()) if unbounded else 0.0)
    return NerfModel(metadata)


@dataclasses.dataclass
class Settings:
    """The configuration a run trains with, and how it was arrived at (for the report)."""

    train: TrainConfig
    field: FieldConfig
    preset: str
    reason: str
    box_source: str


def field_names(config_class) -> set[str]:
    """Names of the fields of a config dataclass."""
    return {f.name for f in dataclasses.fields(config_class)}


def apply_preset(name: str, train_cfg: TrainConfig, field_cfg: FieldConfig, explicit: set[str],
                 has_points: bool) -> tuple[TrainConfig, FieldConfig]:
    """``train_cfg`` / ``field_cfg`` with preset ``name``'s values for every field not in ``explicit``.

    A ``capture`` without SfM points gets no depth supervision (there is nothing to supervise with).
    """
    values = dict(presets.PRESETS.get(name, {}))
    if name in ("capture", "inward") and not has_points:
        values["depth_weight"] = 0.0
    values = {k: v for k, v in values.items() if k not in explicit}
    train_values = {k: v for k, v in values.items() if k in field_names(TrainConfig)}
    field_values = {k: v for k, v in values.items() if k in field_names(FieldConfig)}
    train_cfg = dataclasses.replace(train_cfg, preset=name, **train_values)
    field_cfg = dataclasses.replace(field_cfg, **field_values)
    cfg.validate(train_cfg)
    cfg.validate(field_cfg)
    return train_cfg, field_cfg


def set_scene_box(data: PosedImages, train_cfg: TrainConfig, json_keys: set[str]) -> str:
    """Set ``data.aabb`` from the flags (``--aabb``, ``--aabb-grow``) or, for an unbounded field, the
    region of interest (:func:`inerf_ros.nerf.bounds.region_of_interest`); returns where it came from.
    """
    if train_cfg.aabb:
        if len(train_cfg.aabb) != 6:
            raise ValueError(f"--aabb needs 6 numbers (xmin ymin zmin xmax ymax zmax), got {train_cfg.aabb}")
        data.aabb = torch.tensor([float(v) for v in train_cfg.aabb]).reshape(2, 3)
        source = "--aabb (given, or the preset's)"
    elif train_cfg.contraction != "none":
        explicit = data.aabb.numpy() if json_keys & {"aabb", "scene_aabb"} else None
        box, source = bounds.region_of_interest(data.sparse_points, explicit, data.nerf_T_cam.numpy())
        if box is None:
            box, source = data.aabb.numpy(), "the data's instant-ngp box (" + source + ")"
        data.aabb = torch.from_numpy(np.asarray(box)).float()
    else:
        source = "the data's aabb"
    if train_cfg.aabb_grow != 1.0:
        centre, half = data.aabb.mean(0), (data.aabb[1] - data.aabb[0]) / 2 * train_cfg.aabb_grow
        data.aabb = torch.stack([centre - half, centre + half])
        source += f", grown {train_cfg.aabb_grow:g}x"
    return source


def resolve_settings(data_path, train_cfg: TrainConfig, field_cfg: FieldConfig,
                     explicit: set[str] | None) -> tuple[PosedImages, Settings]:
    """Load the data and settle the settings: automatic downscale, the preset, the scene box.

    Args:
        explicit: names of the fields the user set (they win over the preset); None: every field as
            given (library callers, which build their configs themselves).
    """
    json_path = resolve_transforms_path(data_path)
    json_keys = set(read_transforms_json(json_path))
    if train_cfg.downscale == 0:
        train_cfg = dataclasses.replace(train_cfg, downscale=presets.auto_downscale(json_path))
    data = load_transforms(json_path, downscale=train_cfg.downscale, background=tuple(train_cfg.background),
                           stride=train_cfg.view_stride)
    name, reason = train_cfg.preset, "given"
    if name == "auto":
        name, reason = presets.choose_preset(data, json_keys)
    if explicit is not None and name != "none":
        has_points = data.sparse_points is not None and any(len(p) for p in data.sparse_points)
        train_cfg, field_cfg = apply_preset(name, train_cfg, field_cfg, explicit, has_points)
    else:
        train_cfg = dataclasses.replace(train_cfg, preset=name)
    box_source = set_scene_box(data, train_cfg, json_keys)
    return data, Settings(train_cfg, field_cfg, name, reason, box_source)


def evaluate(model: NerfModel, data: PosedImages, device, limit: int = 0) -> dict:
    """PSNR / SSIM on (the first ``limit`` of) ``data``'s views; also returns the renders."""
    n = len(data) if limit <= 0 else min(limit, len(data))
    scores, renders = [], []
    model.eval()
    for i in range(n):
        out = render_image(model, data.intrinsics[i], data.nerf_T_cam[i].to(device))
        rgb = out["rgb"].clamp(0, 1).cpu()
        gt = data.images[i]
        valid = data.valid[i]
        scored_rgb, scored_gt = (rgb, gt) if bool(valid.all()) else (rgb[valid], gt[valid])
        scores.append((psnr(scored_rgb, scored_gt), ssim(rgb, gt), psnr_affine(scored_rgb, scored_gt)))
        renders.append({k: v.cpu() for k, v in out.items()})
    model.train()
    psnrs = [s[0] for s in scores]
    ssims = [s[1] for s in scores]
    affine = [s[2] for s in scores]
    return {"psnr": float(np.mean(psnrs)) if psnrs else float("nan"),
            "ssim": float(np.mean(ssims)) if ssims else float("nan"),
            "psnr_affine": float(np.mean(affine)) if affine else float("nan"),
            "per_view_psnr": psnrs, "views": n, "renders": renders}


def save_preview(path: Path, gt: torch.Tensor, render: dict) -> None:
    """Write ``ground truth | render | depth`` side by side as a PNG."""
    depth = render["depth"].clone()
    opacity = render["opacity"]
    d = depth[opacity > 0.5]
    lo, hi = (float(d.min()), float(d.max())) if d.numel() else (0.0, 1.0)
    depth_img = ((depth - lo) / max(hi - lo, 1e-6)).clamp(0, 1) * (opacity > 0.5)
    row = torch.cat([gt, render["rgb"].clamp(0, 1), depth_img[..., None].expand(-1, -1, 3)], 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((row.numpy() * 255 + 0.5).astype(np.uint8)).save(path)


def train(data_path, out_dir, train_cfg: TrainConfig, field_cfg: FieldConfig, progress: bool = True,
          explicit: set[str] | None = None) -> dict:
    """Train a model on ``data_path`` and write it to ``out_dir``; returns the final metrics.

    ``explicit``: the fields the user set, over the preset's values (see :func:`resolve_settings`;
    None: the configs are used as given, only an ``auto`` preset's name is settled).
    """
    if train_cfg.steps <= 0 and train_cfg.minutes <= 0:
        raise ValueError("give --steps or --minutes (or both)")
    if train_cfg.threads > 0:
        torch.set_num_threads(train_cfg.threads)
    device = torch.device(train_cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available in this torch build")
    torch.manual_seed(train_cfg.seed)
    torch.set_flush_denormal(True)  # denormals in exp(-tau) slow CPU kernels down a lot
    gen = torch.Generator().manual_seed(train_cfg.seed)
    out_dir = Path(out_dir)
    t_load = time.time()
    data, settings = resolve_settings(data_path, train_cfg, field_cfg, explicit)
    train_cfg, field_cfg = settings.train, settings.field
    print(f"train-nerf: preset {settings.preset} ({settings.reason}); scene box from {settings.box_source}"
          f"{', contracted beyond' if train_cfg.contraction != 'none' else ''}; images "
          f"{data.intrinsics[0].width}x{data.intrinsics[0].height}", flush=True)
    train_data, held_out = data.split_holdout(train_cfg.holdout_every)
    rays = build_rays(train_data)
    rays = RaySet(*(t.to(device) for t in (rays.origins, rays.directions, rays.colors, rays.photos)))
    depth_rays = build_depth_rays(train_data, bounded=train_cfg.contraction == "none") \
        if train_cfg.depth_weight > 0 else None
    if train_cfg.depth_weight > 0 and depth_rays is None:
        raise ValueError(f"--depth-weight needs the data's sparse points ('sparse_points' in {data.source}: "
                         "run inerf-ros sfm, or inerf-ros sfm --points-only on an older sfm folder)")
    if depth_rays is not None:
        depth_rays = DepthRays(depth_rays.origins.to(device), depth_rays.directions.to(device),
                               depth_rays.distances.to(device))
    load_seconds = time.time() - t_load
    model = make_model(data, train_cfg, field_cfg).to(device)
    planes = list(model.field.planes.parameters())
    mlps = list(model.field.density_mlp.parameters()) + list(model.field.color_mlp.parameters())
    if model.background_net is not None:
        mlps += list(model.background_net.parameters())
    appearance = PhotoAppearance(len(train_data)).to(device) if train_cfg.appearance == "affine" else None
    if appearance is not None:
        mlps += list(appearance.parameters())

    def observed(rgb: torch.Tensor, photos: torch.Tensor) -> torch.Tensor:
        return rgb if appearance is None else appearance(rgb, photos)
    optimizer = torch.optim.Adam([{"params": planes, "lr": train_cfg.lr_planes},
                                  {"params": mlps, "lr": train_cfg.lr_mlp}], betas=(0.9, 0.99), eps=1e-15,
                                 fused=device.type == "cpu" or None)
    base_lrs = [train_cfg.lr_planes, train_cfg.lr_mlp]
    visible = model.occupancy.mark_visible(train_data.nerf_T_cam, train_data.intrinsics, train_cfg.near)
    extent = (model.aabb[1] - model.aabb[0]).norm().item()
    threshold = density_threshold(extent / train_cfg.n_samples, train_cfg.occupancy_alpha)
    n_pixels = rays.colors.shape[0]
    budget = train_cfg.minutes * 60.0
    total_steps = train_cfg.steps if train_cfg.steps > 0 else None
    n_coarse = int(round(train_cfg.batch_rays * train_cfg.coarse_fraction))
    n_fine = train_cfg.batch_rays - n_coarse
    bar = tqdm(total=total_steps, disable=not progress, desc="train-nerf", unit="step", dynamic_ncols=True,
               mininterval=2.0)
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    start, cpu_start = time.time(), time.process_time()

    def clock() -> float:
        if train_cfg.budget_clock == "cpu":
            return (time.process_time() - cpu_start) / threads
        return time.time() - start

    step, rays_done, occupied = 0, 0, 1.0
    history = []
    # Ctrl-C / SIGTERM end training early but still evaluate and save what was learned.
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    while stop["signal"] is None:
        elapsed = clock()
        progress_frac = max(step / total_steps if total_steps else 0.0, elapsed / budget if budget > 0 else 0.0)
        if progress_frac >= 1.0:
            break
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * train_cfg.lr_final_factor ** progress_frac
        idx = torch.randint(0, n_pixels, (train_cfg.batch_rays,), generator=gen).to(device)
        origins, directions, target = rays.origins[idx], rays.directions[idx], rays.colors[idx]
        photos = rays.photos[idx]
        out = model.render_rays(origins[:n_fine], directions[:n_fine], jitter=True,
                                alpha_threshold=train_cfg.alpha_threshold)
        loss = torch.nn.functional.mse_loss(observed(out["rgb"], photos[:n_fine]), target[:n_fine])
        mse_fine = float(loss.detach())
        if train_cfg.distortion_weight > 0:
            loss = loss + train_cfg.distortion_weight * ray_distortion(model, out)
        if n_coarse > 0:
            level = float(torch.randint(0, model.field.n_levels - 1, (1,), generator=gen)) if \
                model.field.n_levels > 1 else None
            out_c = model.render_rays(origins[n_fine:], directions[n_fine:], max_level=level, jitter=True,
                                      alpha_threshold=train_cfg.alpha_threshold)
            loss = loss + torch.nn.functional.mse_loss(observed(out_c["rgb"], photos[n_fine:]),
                                                       target[n_fine:]) * (n_coarse / n_fine)
        if train_cfg.tv_weight > 0:
            loss = loss + train_cfg.tv_weight * model.field.plane_tv()
        if appearance is not None:
            loss = loss + train_cfg.appearance_weight * appearance.penalty()
        if depth_rays is not None:
            pick = torch.randint(0, depth_rays.distances.shape[0], (train_cfg.depth_rays,), generator=gen).to(device)
            out_d = model.render_rays(depth_rays.origins[pick], depth_rays.directions[pick], jitter=True,
                                      alpha_threshold=train_cfg.alpha_threshold)
            loss = loss + train_cfg.depth_weight * depth_loss(out_d["weights"], out_d["t"],
                                                              depth_rays.distances[pick], train_cfg.depth_sigma)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        rays_done += train_cfg.batch_rays
        if step == train_cfg.occupancy_warmup or \
                (step > train_cfg.occupancy_warmup and step % train_cfg.occupancy_every == 0):
            with torch.no_grad():
                occupied = model.occupancy.update(model.density_fn, threshold, decay=train_cfg.occupancy_decay,
                                                  generator=gen)
        if step % 10 == 0 or step == 1:
            elapsed = clock()
            train_psnr = psnr_from_mse(max(mse_fine, 1e-10))
            history.append({"step": step, "seconds": round(elapsed, 1), "loss": mse_fine, "psnr": train_psnr})
            bar.set_postfix(loss=f"{mse_fine:.4f}", psnr=f"{train_psnr:.2f}",
                            rays_s=f"{rays_done / max(elapsed, 1e-9):.0f}", occ=f"{occupied:.2f}")
        bar.update(1)
        if train_cfg.preview_every and step % train_cfg.preview_every == 0 and len(held_out):
            render = render_image(model, held_out.intrinsics[0], held_out.nerf_T_cam[0].to(device))
            save_preview(out_dir / "previews" / f"step_{step:06d}.png", held_out.images[0],
                         {k: v.cpu() for k, v in render.items()})
    bar.close()
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    if stop["signal"]:
        print(f"train-nerf: {stop['signal']} received after {step} steps; evaluating and saving", flush=True)
    train_seconds = clock()
    wall_seconds = time.time() - start
    cpu_seconds = time.process_time() - cpu_start
    model.eval()
    t_eval = time.time()
    result = evaluate(model, held_out, device, train_cfg.eval_views) if len(held_out) else \
        {"psnr": float("nan"), "ssim": float("nan"), "psnr_affine": float("nan"), "per_view_psnr": [], "views": 0,
         "renders": []}
    eval_seconds = time.time() - t_eval
    for i, render in enumerate(result.pop("renders")[:4]):
        save_preview(out_dir / "previews" / f"heldout_{i:02d}.png", held_out.images[i], render)
    metrics = {
        "data": str(data.source), "image_size": [data.intrinsics[0].width, data.intrinsics[0].height],
        "train_views": len(train_data), "held_out_views": len(held_out), "evaluated_views": result["views"],
        "heldout_psnr": result["psnr"], "heldout_ssim": result["ssim"], "heldout_psnr_affine": result["psnr_affine"],
        "per_view_psnr": result["per_view_psnr"],
        "steps": step, "rays": rays_done, "train_seconds": round(train_seconds, 1),
        "budget_clock": train_cfg.budget_clock,
        "wall_seconds": round(wall_seconds, 1), "cpu_seconds": round(cpu_seconds, 1),
        "rays_per_second": round(rays_done / max(train_seconds, 1e-9)), "load_seconds": round(load_seconds, 1),
        "eval_seconds": round(eval_seconds, 1), "occupied_fraction": occupied, "visible_fraction": visible,
        "device": str(device),
        "torch_threads": torch.get_num_threads(), "stopped_by": stop["signal"],
        "appearance": appearance.summary() if appearance is not None else None,
        "preset": settings.preset, "preset_reason": settings.reason, "scene_box": data.aabb.tolist(),
        "scene_box_source": settings.box_source, "contraction": train_cfg.contraction,
    }
    summary = {k: v for k, v in metrics.items() if k != "per_view_psnr"}
    json_path = save_model(model, out_dir, extra={"training": summary, "train_config": dataclasses.asdict(train_cfg)},
                           half_planes=train_cfg.half_planes)
    metrics["model_bytes"] = (out_dir / "model.safetensors").stat().st_size + json_path.stat().st_size
    (out_dir / "metrics.json").write_text(json.dumps({**metrics, "history": history}, indent=2))
    (out_dir / "report.md").write_text(_report(metrics, train_cfg, field_cfg))
    return metrics


def ray_distortion(model: NerfModel, out: dict) -> torch.Tensor:
    """The distortion loss of rendered rays; for an unbounded model in the sample-spacing coordinate
    (nerfacto), where the bins are of equal length: in NeRF units the far bins, hundreds of units long,
    would dominate it.
    """
    scale = model.metadata.lindisp_scale
    if model.metadata.contraction == "none":
        return distortion_loss(out["weights"], out["t"], out["deltas"])
    s = lindisp_coordinate(out["t"], scale)
    s_near = float(lindisp_coordinate(torch.tensor(model.metadata.near), scale))
    s_far = float(lindisp_coordinate(torch.tensor(model.metadata.far), scale))
    bin_length = (s_far - s_near) / out["t"].shape[-1]
    return distortion_loss(out["weights"], s, torch.where(out["deltas"] > 0, bin_length, 0.0))


def _report(m: dict, train_cfg: TrainConfig, field_cfg: FieldConfig) -> str:
    return "\n".join([
        "# NeRF training report", "",
        f"- data: `{m['data']}` at {m['image_size'][0]}x{m['image_size'][1]}",
        f"- views: {m['train_views']} for training, {m['held_out_views']} held out "
        f"(every {train_cfg.holdout_every}th), {m['evaluated_views']} evaluated",
        f"- held-out PSNR: **{m['heldout_psnr']:.2f} dB**, SSIM: **{m['heldout_ssim']:.4f}**; PSNR after a colour "
        f"gain and offset per view (the photos' exposure differences removed): {m['heldout_psnr_affine']:.2f} dB",
        f"- training: {m['steps']} steps, {m['rays']} rays in {m['train_seconds']:.0f} s "
        f"({m['rays_per_second']} rays/s; clock: {m['budget_clock']}; wall {m['wall_seconds']:.0f} s, "
        f"process CPU {m['cpu_seconds']:.0f} s) on {m['device']} with {m['torch_threads']} threads",
        f"- model size: {m['model_bytes'] / 1e6:.2f} MB" +
        (f"\n- stopped early by {m['stopped_by']}" if m.get("stopped_by") else ""),
        f"- preset: {m['preset']} ({m['preset_reason']})",
        f"- scene box: {[[round(v, 3) for v in c] for c in m['scene_box']]} from {m['scene_box_source']}; "
        f"contraction: {m['contraction']}",
        f"- occupied fraction of the {'box' if m['contraction'] == 'none' else 'contracted space'}: "
        f"{m['occupied_fraction']:.3f}",
        *([f"- per-photo appearance (affine): gains {m['appearance']['gain_min']:.3f}-"
           f"{m['appearance']['gain_max']:.3f}, largest offset {m['appearance']['offset_abs_max']:.3f}"]
          if m.get("appearance") else []),
        f"- field: `{json.dumps(dataclasses.asdict(field_cfg))}`", "",
        "Previews: `previews/heldout_*.png` (ground truth | render | depth).", ""])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train-nerf`` flags: data, output, and one per config field."""
    parser.add_argument("data", type=Path, help="transforms.json or the folder holding it")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    cfg.add_arguments(parser, TrainConfig)
    cfg.add_arguments(parser, FieldConfig)
    # A flag left out reads None, so that the preset's value can take its place (run() tells them apart).
    parser.set_defaults(**{name: None for name in field_names(TrainConfig) | field_names(FieldConfig)})


def configs_from_args(args: argparse.Namespace) -> tuple[TrainConfig, FieldConfig, set[str]]:
    """(train config, field config, names of the flags given) from parsed ``train-nerf`` flags."""
    explicit = {name for name in field_names(TrainConfig) | field_names(FieldConfig)
                if getattr(args, name, None) is not None}

    def given(config_class) -> dict:
        return {name: getattr(args, name) for name in field_names(config_class) & explicit}

    train_values = given(TrainConfig)
    if "background" in train_values:
        train_values["background"] = [float(c) for c in train_values["background"]]
    if "aabb" in train_values:
        train_values["aabb"] = [float(c) for c in train_values["aabb"]]
    return cfg.from_dict(TrainConfig, train_values), cfg.from_dict(FieldConfig, given(FieldConfig)), explicit


def run(args: argparse.Namespace) -> int:
    """Run ``train-nerf``: train, evaluate, save; bad data or settings exit with one line."""
    train_cfg, field_cfg, explicit = configs_from_args(args)
    if train_cfg.threads == 0:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        metrics = train(args.data, args.out, train_cfg, field_cfg, progress=not args.quiet, explicit=explicit)
    except ValueError as error:  # bad data or settings (DatasetError included): say so, no traceback
        raise SystemExit(f"train-nerf: {error}") from None
    print(f"held-out PSNR {metrics['heldout_psnr']:.2f} dB, SSIM {metrics['heldout_ssim']:.4f} on "
          f"{metrics['evaluated_views']} views; {metrics['steps']} steps in {metrics['train_seconds']:.0f} s; "
          f"model {metrics['model_bytes'] / 1e6:.2f} MB -> {args.out}")
    return 0
