"""Structure from motion: scene normalisation (pure numpy) and, when pycolmap and the photos exist, a real run."""
from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from inerf_ros.datasets.sfm import SfmConfig, _camera_json, normalise_scene, run_sfm
from inerf_ros.datasets.transforms import load_transforms

from nerf_test_utils import SHARED, look_at


def test_normalise_scene_levels_centres_and_scales():
    rng = np.random.default_rng(0)
    points = rng.uniform(-5, 5, (500, 3)) * [1.0, 2.0, 0.5] + [10.0, -3.0, 2.0]
    # Cameras whose "up" (OpenGL y) is world -x: normalisation must rotate that to +z.
    tilt = np.array([[0, 0, -1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])  # rotation about y by 90 deg
    cams = np.stack([tilt @ look_at(np.array([30.0, 0, 0]) + rng.normal(size=3), (0, 0, 0)) for _ in range(5)])
    nerf_T_cams, nerf_T_world, aabb = normalise_scene(cams, points)
    up = nerf_T_cams[:, :3, 1].mean(0)
    assert np.allclose(up / np.linalg.norm(up), [0, 0, 1], atol=1e-9)
    for pose in nerf_T_cams:
        assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-9)
    mapped = points @ nerf_T_world[:3, :3].T + nerf_T_world[:3, 3]
    lo, hi = np.percentile(mapped, 2, axis=0), np.percentile(mapped, 98, axis=0)
    assert np.allclose((lo + hi) / 2, 0, atol=1e-9) and np.isclose(np.max(hi - lo), 2.0)
    assert np.all(aabb[0] < lo) and np.all(aabb[1] > hi)


def test_camera_json_keeps_the_pixel_convention():
    class Cam:
        model_name, width, height, params = "SIMPLE_RADIAL", 100, 80, [90.0, 50.0, 40.0, 0.01]
    out = _camera_json(Cam())
    assert out == {"w": 100, "h": 80, "camera_model": "OPENCV", "fl_x": 90.0, "fl_y": 90.0, "cx": 50.0,
                   "cy": 40.0, "k1": 0.01, "k2": 0.0, "p1": 0.0, "p2": 0.0}


@pytest.mark.skipif(importlib.util.find_spec("pycolmap") is None, reason="pycolmap is not installed")
def test_points_only_refuses_a_folder_that_is_not_an_sfm_output(tmp_path):
    from inerf_ros.datasets.sfm import rewrite_sparse_points

    with pytest.raises(SystemExit, match="not an inerf-ros sfm folder"):
        rewrite_sparse_points(tmp_path, SfmConfig(points_only=True))
    (tmp_path / "transforms.json").write_text("{not json")
    (tmp_path / "colmap" / "sparse").mkdir(parents=True)
    with pytest.raises(SystemExit, match="not valid JSON"):
        rewrite_sparse_points(tmp_path, SfmConfig(points_only=True))
    (tmp_path / "transforms.json").write_text("{}")
    with pytest.raises(SystemExit, match="no COLMAP reconstruction"):
        rewrite_sparse_points(tmp_path, SfmConfig(points_only=True))


@pytest.mark.skipif(importlib.util.find_spec("pycolmap") is None, reason="pycolmap is not installed")
def test_sfm_on_watch_photos(tmp_path):
    photos = SHARED / "data" / "watch" / "images"
    if not photos.is_dir():
        pytest.skip(f"{photos} is absent (shared data not available)")
    subset = tmp_path / "photos"
    subset.mkdir()
    for name in sorted(p.name for p in photos.glob("*.jpg"))[10:18]:
        shutil.copy(photos / name, subset / name)
    summary = run_sfm(subset, tmp_path / "out", SfmConfig(max_image_size=480, max_num_features=2000))
    assert summary["registered"] >= 5, summary
    data = load_transforms(tmp_path / "out", downscale=8)
    assert len(data) == summary["registered"] and data.images.shape[1:] == (180, 135, 3)
    # Every photo observes SfM points for depth supervision, and they lie in front of its camera.
    assert all(len(points) >= 10 for points in data.sparse_points)
    for pose, points in zip(data.nerf_T_cam.numpy(), data.sparse_points):
        in_camera = (points - pose[:3, 3]) @ pose[:3, :3]
        assert np.mean(in_camera[:, 2] < 0) > 0.95  # OpenGL cameras look down -z
    assert np.all(data.aabb.numpy()[1] > data.aabb.numpy()[0])


def test_known_intrinsics_hold_a_pinhole_camera_in_colmaps_pixel_convention():
    from types import SimpleNamespace

    from inerf_ros.datasets.sfm import _known_camera

    reader, mapping = SimpleNamespace(), SimpleNamespace()
    _known_camera(SfmConfig(known_intrinsics=["500", "510", "319.5", "239.5"]), reader, mapping)
    assert reader.camera_model == "PINHOLE"
    # CameraInfo's (0, 0) is the top-left pixel's centre, COLMAP's its corner: cx, cy + 0.5.
    assert [float(v) for v in reader.camera_params.split(",")] == [500.0, 510.0, 320.0, 240.0]
    assert not (mapping.ba_refine_focal_length or mapping.ba_refine_principal_point or mapping.ba_refine_extra_params)
    for bad in (["500", "510", "320"], ["500", "nan", "320", "240"], ["-1", "510", "320", "240"]):
        with pytest.raises(ValueError, match="known_intrinsics"):
            _known_camera(SfmConfig(known_intrinsics=bad), SimpleNamespace(), SimpleNamespace())
