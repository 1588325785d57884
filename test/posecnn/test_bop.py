"""BOP datasets: a hand-written BOP folder read as training frames, PLY variants, clear errors, and the
round trip scene split -> export-bop -> read_bop giving the same training tensors.
"""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from inerf_ros.posecnn import bop
from inerf_ros.scene.dataset import write_ply

CUBE_V = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
CUBE_F = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                   [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])


def _write_bop(root, obj_ids=(1, 5), half_mm=30.0, suffix=".jpg"):
    """Two models, one scene of two 64x48 frames; frame 1 shows obj 5 twice (two instances)."""
    models = root / "models"
    models.mkdir(parents=True)
    info = {}
    for obj_id in obj_ids:
        write_ply(models / f"obj_{obj_id:06d}.ply", CUBE_V * half_mm, CUBE_F)
        info[str(obj_id)] = {"diameter": 2 * half_mm * 3 ** 0.5}
    info[str(obj_ids[1])]["symmetries_continuous"] = [{"axis": [0, 0, 1], "offset": [0, 0, 0]}]
    (models / "models_info.json").write_text(json.dumps(info))
    scene = root / "train_pbr" / "000000"
    for sub in ("rgb", "mask_visib"):
        (scene / sub).mkdir(parents=True)
    K = [60.0, 0, 31.5, 0, 60.0, 23.5, 0, 0, 1]
    gts, cams = {}, {}
    boxes = {0: [(obj_ids[0], (5, 5, 20, 20))], 1: [(obj_ids[1], (30, 10, 45, 30)), (obj_ids[1], (2, 30, 12, 45))]}
    for frame, objects in boxes.items():
        cv2.imwrite(str(scene / "rgb" / f"{frame:06d}{suffix}"), np.full((48, 64, 3), 40 * (frame + 1), np.uint8))
        gts[str(frame)] = []
        for k, (obj_id, (x0, y0, x1, y1)) in enumerate(objects):
            mask = np.zeros((48, 64), np.uint8)
            mask[y0:y1, x0:x1] = 255
            cv2.imwrite(str(scene / "mask_visib" / f"{frame:06d}_{k:06d}.png"), mask)
            gts[str(frame)].append({"obj_id": obj_id, "cam_R_m2c": np.eye(3).ravel().tolist(),
                                    "cam_t_m2c": [10.0 * k, 0.0, 500.0 + 100 * frame]})
        cams[str(frame)] = {"cam_K": K, "depth_scale": 1.0}
    (scene / "scene_gt.json").write_text(json.dumps(gts))
    (scene / "scene_camera.json").write_text(json.dumps(cams))
    return root


def test_a_bop_folder_reads_as_training_frames(tmp_path):
    root = _write_bop(tmp_path / "ds")
    data, classes = bop.read_bop(root, 32, 24, min_pixels=2)
    assert [c.obj_id for c in classes] == [1, 5]                      # gaps in BOP ids: classes 1..N
    assert [c.symmetry for c in classes] == ["none", "continuous_z"]
    assert classes[0].diameter == pytest.approx(0.06 * 3 ** 0.5)     # millimetres -> metres
    np.testing.assert_allclose(np.ptp(classes[0].vertices, axis=0), [0.06] * 3)
    assert data.rgb.shape == (2, 24, 32, 3) and data.label.shape == (2, 24, 32)
    assert set(data.label[0].unique().tolist()) == {0, 1} and set(data.label[1].unique().tolist()) == {0, 2}
    assert set(data.instance[1].unique().tolist()) == {0, 1, 2}      # two instances of one class
    rows = data.objects.numpy()
    assert rows.shape == (3, 11)
    np.testing.assert_allclose(rows[:, 5], [0.5, 0.6, 0.6])          # depth, metres
    np.testing.assert_allclose(data.K[0].numpy(), [[30, 0, 15.5], [0, 30, 11.5], [0, 0, 1]])  # K at 32x24


def test_bop_errors_name_the_missing_piece(tmp_path):
    root = _write_bop(tmp_path / "ds")
    (root / "train_pbr" / "000000" / "mask_visib" / "000001_000001.png").unlink()
    with pytest.raises(FileNotFoundError, match="000001_000001.png"):
        bop.read_bop(root, 32, 24)
    (root / "models" / "models_info.json").unlink()
    with pytest.raises(FileNotFoundError, match="models_info.json"):
        bop.read_bop(root, 32, 24)
    metres = _write_bop(tmp_path / "metres", half_mm=0.03)           # a model written in metres
    with pytest.raises(ValueError, match="millimetres"):
        bop.read_classes(metres)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bop.find_split(tmp_path / "nothing")


def test_ply_variants_ascii_and_binary_with_normals_and_colours(tmp_path):
    ascii_path = tmp_path / "a.ply"
    header = ["ply", "format ascii 1.0", "element vertex 8", "property float x", "property float y",
              "property float z", "property float nx", "property float ny", "property float nz",
              "element face 12", "property list uchar int vertex_indices", "end_header"]
    body = [" ".join(f"{v:g}" for v in list(p) + [0, 0, 1]) for p in CUBE_V]
    body += ["3 " + " ".join(map(str, f)) for f in CUBE_F]
    ascii_path.write_text("\n".join(header + body) + "\n")
    vertices, faces = bop.read_ply_mesh(ascii_path)
    np.testing.assert_allclose(vertices, CUBE_V)
    np.testing.assert_array_equal(faces, CUBE_F)
    binary_path = tmp_path / "b.ply"
    vertex = np.zeros(8, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = CUBE_V.T
    face = np.zeros(12, [("n", "u1"), ("idx", "<i4", (3,)), ("m", "u1"), ("uv", "<f4", (6,))])
    face["n"], face["idx"], face["m"] = 3, CUBE_F, 6
    head = ("ply\nformat binary_little_endian 1.0\nelement vertex 8\nproperty float x\nproperty float y\n"
            "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nelement face 12\n"
            "property list uchar int vertex_indices\nproperty list uchar float texcoord\nend_header\n")
    binary_path.write_bytes(head.encode() + vertex.tobytes() + face.tobytes())
    vertices, faces = bop.read_ply_mesh(binary_path)
    np.testing.assert_allclose(vertices, CUBE_V)
    np.testing.assert_array_equal(faces, CUBE_F)
    (tmp_path / "c.ply").write_bytes(b"not a mesh")
    with pytest.raises(ValueError, match="not a PLY"):
        bop.read_ply_mesh(tmp_path / "c.ply")


@pytest.fixture(scope="module")
def quick_scene(tmp_path_factory):
    # A separate process: the renderer picks its OpenGL back end when mujoco is first imported.
    out = tmp_path_factory.mktemp("scene") / "quick"
    done = subprocess.run([sys.executable, "-m", "inerf_ros.cli", "make-scene", "--quick", "--out", str(out),
                           "--splits", "posecnn_train", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_round_trip_scene_split_to_bop_and_back(quick_scene, tmp_path):
    from inerf_ros.posecnn.data import load_split
    from inerf_ros.scene.dataset import load_class_table

    target = bop.export_split(quick_scene, "posecnn_train", tmp_path / "bop")
    assert (target / "scene_gt.json").is_file() and any((target / "mask_visib").iterdir())
    with pytest.raises(FileExistsError):
        bop.export_split(quick_scene, "posecnn_train", tmp_path / "bop")
    data, classes = bop.read_bop(tmp_path / "bop", 80, 60, min_pixels=8)
    expected = load_split(quick_scene, "posecnn_train", 80, 60, min_pixels=8, progress=False)
    table = load_class_table(quick_scene)
    assert [c.name for c in classes] == [table[k].name for k in sorted(table)]
    assert [c.symmetry for c in classes] == [table[k].symmetry for k in sorted(table)]
    assert torch.equal(data.rgb, expected.rgb) and torch.equal(data.label, expected.label)
    torch.testing.assert_close(data.objects, expected.objects)
    torch.testing.assert_close(data.rotations, expected.rotations)
    torch.testing.assert_close(data.K, expected.K)
