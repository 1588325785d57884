"""A short training run on a tiny generated scene must reach a PSNR threshold on held-out views."""
from __future__ import annotations

import json
import subprocess
import sys

from inerf_ros.nerf.checkpoint import load_model
from inerf_ros.nerf.field import FieldConfig
from inerf_ros.nerf.train import TrainConfig, train


def test_short_training_reaches_psnr(sphere_scene, tmp_path):
    train_cfg = TrainConfig(steps=150, batch_rays=1024, n_samples=48, lr_planes=0.2, lr_mlp=0.01,
                            occupancy_resolution=16, holdout_every=6, coarse_fraction=0.0, seed=0)
    field_cfg = FieldConfig(n_levels=2, base_resolution=16, max_resolution=32, channels=4, hidden=32,
                            geo_features=7, sh_degree=1)
    metrics = train(sphere_scene, tmp_path / "model", train_cfg, field_cfg, progress=False)
    assert metrics["held_out_views"] == 4 and metrics["steps"] == 150
    assert metrics["heldout_psnr"] > 26.0, metrics["heldout_psnr"]
    model = load_model(tmp_path / "model")
    assert model.metadata.extra["training"]["heldout_psnr"] == metrics["heldout_psnr"]
    assert (tmp_path / "model" / "report.md").read_text().count("held-out PSNR") == 1
    assert (tmp_path / "model" / "previews" / "heldout_00.png").is_file()
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["model_bytes"] < 20e6
    # The render command reads the model back and compares with the json's images.
    from inerf_ros.cli import main
    assert main(["render", str(tmp_path / "model"), "--out", str(tmp_path / "renders"), "--poses",
                 str(sphere_scene), "--limit", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "renders").iterdir()) == [
        "depth_0000.png", "depth_0001.png", "rgb_0000.png", "rgb_0001.png"]


def test_commands_have_help():
    for command in ("train-nerf", "render", "sfm"):
        out = subprocess.run([sys.executable, "-m", "inerf_ros.cli", command, "--help"], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0 and "usage: inerf-ros " + command in out.stdout, out.stderr


def test_per_photo_appearance_absorbs_exposure_changes(sphere_scene, tmp_path):
    """Every other training photo exposed darker (the held-out views, 0, 6, 12, 18, are not): the
    per-photo affine appearance learns the darkening instead of baking it into the field.
    """
    import numpy as np
    from PIL import Image

    for i in range(1, 24, 2):
        path = sphere_scene.parent / "train" / f"r_{i}.png"
        rgba = np.asarray(Image.open(path)).astype(np.float64) / 255
        rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])  # the photo a camera would take (white)
        Image.fromarray((rgb * 0.6 * 255).round().astype(np.uint8)).save(path)
    field_cfg = FieldConfig(n_levels=2, base_resolution=16, max_resolution=32, channels=4, hidden=32,
                            geo_features=7, sh_degree=1)
    psnr = {}
    for appearance in ("none", "affine"):
        train_cfg = TrainConfig(steps=150, batch_rays=1024, n_samples=48, lr_planes=0.2, lr_mlp=0.01,
                                occupancy_resolution=16, holdout_every=6, coarse_fraction=0.0, seed=0,
                                appearance=appearance)
        metrics = train(sphere_scene, tmp_path / appearance, train_cfg, field_cfg, progress=False)
        psnr[appearance] = metrics["heldout_psnr_affine"]  # which exposure is neutral is a convention
    assert psnr["affine"] > psnr["none"] + 2.0, psnr
    summary = metrics["appearance"]
    assert summary["gain_max"] / summary["gain_min"] > 1.25, summary  # offsets take part of the 1 / 0.6


def test_depth_loss_rewards_weight_at_the_point_only():
    import torch

    from inerf_ros.nerf.train import depth_loss

    t = torch.linspace(0.5, 2.5, 21)[None].expand(3, -1)  # samples every 0.1
    weights = torch.zeros(3, 21)
    weights[0, 10] = 1.0   # all weight at the point's distance, 1.5
    weights[1, 2] = 1.0    # all weight 0.8 in front of it
    distances = torch.full((3,), 1.5)    # ray 2 has no weight at all: it sees the background
    per_ray = [float(depth_loss(weights[i:i + 1], t[i:i + 1], distances[i:i + 1], sigma=0.02)) for i in range(3)]
    assert per_ray[0] == 0.0 and per_ray[1] == 1.0 and per_ray[2] == 1.0
    weights[0, 10:12] = 0.5  # half the weight a sample further (0.1 = 3.3 sigma): costs that half
    assert float(depth_loss(weights[:1], t[:1], distances[:1], sigma=0.02)) == 0.5


def test_depth_rays_pass_through_their_points(tmp_path):
    import numpy as np
    import torch

    from inerf_ros.datasets.transforms import PosedImages
    from inerf_ros.nerf.train import build_depth_rays
    from nerf_test_utils import look_at

    poses = torch.from_numpy(np.stack([look_at((0.0, -3.0, 1.0)), look_at((2.0, 2.0, 0.5))])).float()
    points = [np.array([[0.1, 0.2, 0.3], [5.0, 0.0, 0.0]], np.float32), np.array([[-0.2, 0.0, 0.1]], np.float32)]
    data = PosedImages(images=torch.zeros(2, 4, 4, 3), nerf_T_cam=poses, intrinsics=[None, None],
                       file_names=["a", "b"], valid=torch.ones(2, 4, 4, dtype=torch.bool),
                       aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]), sparse_points=points)
    rays = build_depth_rays(data)
    assert rays.distances.shape == (2,)  # the point outside the box is left out
    ends = rays.origins + rays.directions * rays.distances[:, None]
    torch.testing.assert_close(ends, torch.tensor([[0.1, 0.2, 0.3], [-0.2, 0.0, 0.1]]))


def test_depth_supervision_without_sparse_points_is_a_clear_error(sphere_scene, tmp_path):
    out = subprocess.run([sys.executable, "-m", "inerf_ros.cli", "train-nerf", str(sphere_scene), "--out",
                          str(tmp_path / "model"), "--steps", "1", "--depth-weight", "0.02", "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "sparse points" in out.stderr and "Traceback" not in out.stderr, out.stderr
