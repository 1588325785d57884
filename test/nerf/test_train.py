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
    per-photo affine appearance learns the darkening instead of baking it into the field."""
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
