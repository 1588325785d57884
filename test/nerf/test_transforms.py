"""transforms.json loading: each flavour, intrinsics conventions, errors that name the file."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from inerf_ros.datasets.transforms import DatasetError, load_transforms

from nerf_test_utils import look_at


def _write(tmp_path, doc, images=None, size=(8, 6)):
    w, h = size
    for name, arr in (images or {}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path)
    if not images and isinstance(doc, dict):
        for frame in doc.get("frames", []):
            path = tmp_path / frame["file_path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps(doc) if isinstance(doc, dict) else doc)
    return path


POSE = look_at((0.0, -3.0, 1.0)).tolist()


def test_blender_rgba_camera_angle(tmp_path):
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 0] = 255           # red
    rgba[..., 3] = 0             # fully transparent ...
    rgba[0, 0, 3] = 255          # ... except the top-left pixel
    _write(tmp_path, {"camera_angle_x": 1.0, "frames": [{"file_path": "./train/r_0", "transform_matrix": POSE}]},
           images={"train/r_0.png": rgba})
    data = load_transforms(tmp_path, background=(0.0, 0.0, 1.0))
    intr = data.intrinsics[0]
    assert intr.fx == pytest.approx(0.5 * 8 / math.tan(0.5)) and intr.fy == intr.fx
    assert (intr.cx, intr.cy) == (3.5, 2.5)  # image centre in the (0, 0)-centre convention
    assert data.images.shape == (1, 6, 8, 3)
    assert torch.equal(data.images[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(data.images[0, 3, 3], torch.tensor([0.0, 0.0, 1.0]))  # composited over blue
    assert torch.allclose(data.nerf_T_cam[0], torch.tensor(POSE, dtype=torch.float32))
    assert data.metres_per_unit == 1.0 and data.aabb_scale == 1.0
    # instant-ngp's default box: scale 0.33, offset 0.5 -> half size 0.5 / 0.33 around the origin.
    assert torch.allclose(data.aabb, torch.tensor([[-1.0], [1.0]]) * (0.5 / 0.33))


def test_instant_ngp_shared_fl_and_aabb_scale(tmp_path):
    doc = {"fl_x": 10.0, "fl_y": 11.0, "cx": 4.0, "cy": 3.0, "w": 8, "h": 6, "aabb_scale": 4,
           "metres_per_unit": 0.25, "frames": [{"file_path": "images/a.png", "transform_matrix": POSE}]}
    data = load_transforms(_write(tmp_path, doc))
    intr = data.intrinsics[0]
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (10.0, 11.0, 3.5, 2.5)  # cx_json - 0.5
    assert data.aabb_scale == 4 and data.metres_per_unit == 0.25
    assert torch.allclose(data.aabb[1], torch.full((3,), 4 * 0.5 / 0.33))


def test_nerfstudio_per_frame_intrinsics_and_aabb(tmp_path):
    doc = {"aabb": [[-1, -2, -3], [1, 2, 3]], "frames": [
        {"file_path": "images/a.png", "transform_matrix": POSE, "fl_x": 9.0, "fl_y": 9.0, "cx": 4, "cy": 3},
        {"file_path": "images/b.png", "transform_matrix": POSE, "fl_x": 7.0, "fl_y": 8.0, "cx": 4.5, "cy": 3.5},
    ]}
    data = load_transforms(_write(tmp_path, doc))
    assert [i.fx for i in data.intrinsics] == [9.0, 7.0]
    assert [i.cy for i in data.intrinsics] == [2.5, 3.0]
    assert torch.equal(data.aabb, torch.tensor([[-1.0, -2.0, -3.0], [1.0, 2.0, 3.0]]))


def test_distortion_is_undistorted_on_load(tmp_path):
    doc = {"fl_x": 6.0, "fl_y": 6.0, "cx": 4, "cy": 3, "k1": 0.3, "k2": 0.0, "p1": 0.0, "p2": 0.0,
           "frames": [{"file_path": "images/a.png", "transform_matrix": POSE}]}
    data = load_transforms(_write(tmp_path, doc))
    assert data.intrinsics[0].distortion_model == "none"
    assert not bool(data.valid.all()) and bool(data.valid[0, 3, 4])  # corners lost, centre kept
    kept = load_transforms(tmp_path, undistort=False)
    assert kept.intrinsics[0].distortion_model == "plumb_bob"
    assert kept.intrinsics[0].distortion[:1] == (0.3,)


def test_downscale_shrinks_images_and_intrinsics(tmp_path):
    doc = {"fl_x": 10.0, "fl_y": 10.0, "cx": 4.0, "cy": 3.0,
           "frames": [{"file_path": "images/a.png", "transform_matrix": POSE}]}
    data = load_transforms(_write(tmp_path, doc), downscale=2)
    assert data.images.shape == (1, 3, 4, 3)
    intr = data.intrinsics[0]
    assert (intr.width, intr.height, intr.fx, intr.cx, intr.cy) == (4, 3, 5.0, 1.5, 1.0)
    assert torch.allclose(data.images, torch.full_like(data.images, 128 / 255))


def test_holdout_is_deterministic(tmp_path):
    frames = [{"file_path": f"images/{i}.png", "transform_matrix": POSE} for i in range(10)]
    data = load_transforms(_write(tmp_path, {"camera_angle_x": 1.0, "frames": frames}))
    train, held = data.holdout_indices(8)
    assert held == [0, 8] and train == [1, 2, 3, 4, 5, 6, 7, 9]
    train_set, held_set = data.split_holdout(8)
    assert held_set.file_names == ["images/0.png", "images/8.png"] and len(train_set) == 8


def test_malformed_json_names_the_file(tmp_path):
    path = _write(tmp_path, '{"frames": [')
    with pytest.raises(DatasetError, match=r"transforms\.json: malformed JSON"):
        load_transforms(path)


def test_missing_image_names_it(tmp_path):
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps({"camera_angle_x": 1.0, "frames": [{"file_path": "nope/x", "transform_matrix": POSE}]}))
    with pytest.raises(DatasetError, match=r"image 'nope/x' not found"):
        load_transforms(path)


def test_size_mismatch_is_reported(tmp_path):
    doc = {"fl_x": 10.0, "w": 16, "h": 6, "frames": [{"file_path": "images/a.png", "transform_matrix": POSE}]}
    with pytest.raises(DatasetError, match=r"frame 0: image is 8x6 but the json says w=16, h=6"):
        load_transforms(_write(tmp_path, doc))


def test_frames_of_different_sizes_are_rejected(tmp_path):
    images = {"images/a.png": np.zeros((6, 8, 3), np.uint8), "images/b.png": np.zeros((4, 8, 3), np.uint8)}
    doc = {"camera_angle_x": 1.0, "frames": [{"file_path": "images/a.png", "transform_matrix": POSE},
                                             {"file_path": "images/b.png", "transform_matrix": POSE}]}
    with pytest.raises(DatasetError, match="all frames must match"):
        load_transforms(_write(tmp_path, doc, images=images))


def test_missing_intrinsics_and_bad_matrix(tmp_path):
    with pytest.raises(DatasetError, match="no intrinsics"):
        load_transforms(_write(tmp_path, {"frames": [{"file_path": "images/a.png", "transform_matrix": POSE}]}))
    with pytest.raises(DatasetError, match="4x4"):
        load_transforms(_write(tmp_path, {"camera_angle_x": 1.0,
                                          "frames": [{"file_path": "images/a.png", "transform_matrix": [[1, 2]]}]}))
    with pytest.raises(DatasetError, match="no transforms"):
        load_transforms(tmp_path / "images")
    zero_rotation = [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 1.0]]
    with pytest.raises(DatasetError, match="no rotation"):  # refused at load, not 37 s into training
        frame = {"file_path": "images/a.png", "transform_matrix": zero_rotation}
        load_transforms(_write(tmp_path, {"camera_angle_x": 1.0, "frames": [frame]}))


def test_sparse_points_follow_their_frames(tmp_path):
    doc = {"fl_x": 10.0, "fl_y": 10.0, "cx": 4.0, "cy": 3.0, "w": 8, "h": 6, "sparse_points": "points.npz",
           "frames": [{"file_path": f"images/{name}.png", "transform_matrix": POSE} for name in ("a", "b", "c")]}
    xyz = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.savez(tmp_path / "points.npz", xyz=xyz, **{"frame/a.png": np.array([0, 2]), "frame/c.png": np.array([3])})
    data = load_transforms(_write(tmp_path, doc))
    assert [p.tolist() for p in data.sparse_points] == [xyz[[0, 2]].tolist(), [], xyz[[3]].tolist()]
    assert [p.tolist() for p in data.subset([2, 0]).sparse_points] == [xyz[[3]].tolist(), xyz[[0, 2]].tolist()]

    np.savez(tmp_path / "points.npz", xyz=xyz, **{"frame/a.png": np.array([7])})
    with pytest.raises(DatasetError, match="out of range"):
        load_transforms(tmp_path)
    (tmp_path / "points.npz").write_bytes(b"not an npz")
    with pytest.raises(DatasetError, match="points.npz"):
        load_transforms(tmp_path)
    # Pickled object arrays are refused, never loaded.
    np.savez(tmp_path / "points.npz", xyz=np.array([object()], dtype=object))
    with pytest.raises(DatasetError, match="points.npz"):
        load_transforms(tmp_path)
