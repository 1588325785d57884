"""Mesh folders users have (plain OBJ/PLY, BOP models/, ycb_sim) -> scene objects, and their bad inputs."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inerf_ros.scene import objects as obj_lib
from inerf_ros.scene.config import load_scene_config
from inerf_ros.scene.mesh_folder import is_revolution_about_z, objects_from_mesh_folder, read_mesh_folder

YCB_SIM = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ycb_sim"


def _write_textured_cube_obj(folder: Path, name: str = "cube", size: float = 0.06) -> None:
    vertices, faces, uv = obj_lib.box_mesh(size, size, size)
    texture = np.zeros((32, 48, 3), np.uint8)
    texture[:, :24] = (200, 30, 30)   # BGR on disk: a blue left half, a red right half
    texture[:, 24:] = (30, 30, 200)
    cv2.imwrite(str(folder / f"{name}.png"), texture)
    (folder / f"{name}.mtl").write_text(f"newmtl skin\nKd 1 1 1\nmap_Kd {name}.png\n")
    lines = [f"mtllib {name}.mtl", "usemtl skin"] + [f"v {x} {y} {z}" for x, y, z in vertices]
    lines += [f"vt {s} {1 - t}" for s, t in uv]
    lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in faces]
    (folder / f"{name}.obj").write_text("\n".join(lines) + "\n")


def _ply_bytes(vertices, faces, colours=None, comment: str = "") -> bytes:
    """A binary little-endian PLY with optional uchar vertex colours."""
    header = ["ply", "format binary_little_endian 1.0"] + ([comment] if comment else [])
    header += [f"element vertex {len(vertices)}", "property float x", "property float y", "property float z"]
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colours is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    block = np.zeros(len(vertices), np.dtype(fields))
    for k, axis in enumerate("xyz"):
        block[axis] = vertices[:, k]
    if colours is not None:
        for k, channel in enumerate(("red", "green", "blue")):
            block[channel] = colours[:, k]
    face_block = np.zeros(len(faces), np.dtype([("n", "u1"), ("i", "<i4", (3,))]))
    face_block["n"], face_block["i"] = 3, faces
    return ("\n".join(header) + "\n").encode() + block.tobytes() + face_block.tobytes()


def _coloured_box_mm():
    """A 80 x 40 x 120 mm box whose +x half is green and -x half is red (vertex colours)."""
    vertices, faces, _ = obj_lib.box_mesh(80.0, 40.0, 120.0)
    colours = np.where(vertices[:, :1] > 0, [[0, 255, 0]], [[255, 0, 0]]).astype(np.uint8)
    return vertices, faces, colours


def test_plain_folder_of_textured_obj_and_mm_ply_with_vertex_colours(tmp_path):
    _write_textured_cube_obj(tmp_path)
    vertices, faces, colours = _coloured_box_mm()
    # Two degenerate faces (a repeated corner, three collinear corners) that must be dropped and counted.
    vertices = np.concatenate([vertices, [[0, 0, 0], [1, 0, 0], [2, 0, 0]]])
    n = len(vertices)
    faces = np.concatenate([faces, [[0, 0, 1], [n - 3, n - 2, n - 1]]])
    colours = np.concatenate([colours, np.zeros((3, 3), np.uint8)])
    (tmp_path / "002_red_green_box.ply").write_bytes(_ply_bytes(vertices, faces, colours))
    folder = read_mesh_folder(tmp_path)
    assert folder.layout == "plain"
    assert [e.name for e in folder.entries] == ["red_green_box", "cube"]  # numeric prefix dropped
    box, cube = folder.entries
    assert box.scale == 0.001 and cube.scale == 1.0
    np.testing.assert_allclose(box.extent_m, [0.08, 0.04, 0.12], atol=1e-6)
    assert box.dropped_faces == 2 and box.faces == 12
    assert box.colour_source == "colours" and cube.colour_source == "texture"
    assert box.symmetry == "none" and cube.symmetry == "none"
    assert any("millimetres, scaled by 0.001" in note for note in folder.notes)
    assert any("dropped 2 faces" in note for note in folder.notes)
    # The baked colours: the faces of the +x side show green, those of the -x side red.
    model = obj_lib.load_mesh_model(box.mesh, scale=box.scale)
    h, w = model.texture.shape[:2]
    corners_x = model.vertices[model.faces][:, :, 0]
    corner_uv = model.uv[model.faces[:, 0]]
    texel = model.texture[(corner_uv[:, 1] * h).astype(int), (corner_uv[:, 0] * w).astype(int)].astype(int)
    green, red = texel[corners_x.min(axis=1) > 0], texel[corners_x.max(axis=1) < 0]
    assert len(green) == 2 and len(red) == 2
    assert np.all(green[:, 1] - green[:, 0] > 200) and np.all(red[:, 0] - red[:, 1] > 200)
    # The entries form a valid scene config whose objects do not overlap on the table.
    objects = folder.objects()
    config = load_scene_config(None, {"objects": objects})
    assert [s.name for s in config.object_specs()] == ["red_green_box", "cube"]
    positions = np.array([o["position"] for o in objects])
    assert np.linalg.norm(positions[0] - positions[1]) > 0.1


def test_bop_models_folder_units_and_symmetries(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    vertices, faces, colours = _coloured_box_mm()
    (models / "obj_000001.ply").write_bytes(_ply_bytes(vertices, faces, colours))
    profile = [(0.0, 0.0), (30.0, 0.0), (30.0, 100.0), (0.0, 100.0)]
    can_v, can_f, _, _ = obj_lib.lathe_mesh(profile, segments=48)
    can_v = can_v - [0, 0, 50.0]
    (models / "obj_000002.ply").write_bytes(_ply_bytes(can_v, can_f, np.full((len(can_v), 3), 128, np.uint8)))
    info = {"1": {"diameter": 150.0, "min_x": -40, "min_y": -20, "min_z": -60, "size_x": 80, "size_y": 40,
                  "size_z": 120, "symmetries_discrete": [np.diag([-1, -1, 1, 1]).ravel().tolist()]},
            "2": {"diameter": 116.6, "min_x": -30, "min_y": -30, "min_z": -50, "size_x": 60, "size_y": 60,
                  "size_z": 100, "symmetries_continuous": [{"axis": [0, 0, 1], "offset": [0, 0, 0]}]}}
    (models / "models_info.json").write_text(json.dumps(info))
    folder = read_mesh_folder(tmp_path)  # the dataset root: models/ is found
    assert folder.layout == "bop"
    assert [(e.name, e.scale, e.symmetry) for e in folder.entries] == [
        ("obj_000001", 0.001, "none"), ("obj_000002", 0.001, "continuous_z")]
    assert any("1 discrete symmetries are not expressible" in note for note in folder.notes)
    (models / "models_info.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"models_info\.json is missing"):
        objects_from_mesh_folder(models)
    info.pop("2")
    (models / "models_info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"obj_000002\.ply has no entry in .*models_info\.json"):
        objects_from_mesh_folder(models)


def test_revolution_test_tells_a_can_from_a_box():
    can_v, can_f, _, _ = obj_lib.lathe_mesh([(0.0, 0.0), (0.03, 0.0), (0.03, 0.1), (0.0, 0.1)], segments=64)
    box_v, box_f, _ = obj_lib.box_mesh(0.06, 0.06, 0.1)  # square: symmetric under quarter turns only
    assert is_revolution_about_z(can_v, can_f)
    assert not is_revolution_about_z(box_v, box_f)
    assert not is_revolution_about_z(can_v[:, [2, 1, 0]], can_f)  # the can lying along x


def test_obj_without_mtl_takes_the_image_beside_it(tmp_path):
    _write_textured_cube_obj(tmp_path)
    (tmp_path / "cube.obj").write_text("\n".join(line for line in (tmp_path / "cube.obj").read_text().splitlines()
                                                 if not line.startswith("mtllib")) + "\n")
    folder = read_mesh_folder(tmp_path)
    assert folder.entries[0].colour_source == "texture"
    assert folder.entries[0].texture == str((tmp_path / "cube.png").resolve())
    assert "cube.obj: names no texture; using cube.png beside it" in folder.notes


def test_untextured_mesh_is_accepted_flat_grey_with_a_warning(tmp_path):
    vertices, faces, _ = obj_lib.box_mesh(0.05, 0.05, 0.05)
    (tmp_path / "plain.ply").write_bytes(_ply_bytes(vertices, faces))
    folder = read_mesh_folder(tmp_path)
    assert folder.entries[0].colour_source == "flat"
    assert any(note.startswith("warning: plain.ply has no texture") for note in folder.notes)


@pytest.mark.parametrize("content, match", [
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n", "no end_header"),
    (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
     b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n", "does not match"),
    (b"solid stl pretending\n", "not a PLY file"),
])
def test_broken_ply_is_refused_naming_the_file(tmp_path, content, match):
    (tmp_path / "broken.ply").write_bytes(content)
    with pytest.raises(ValueError, match=match) as error:
        objects_from_mesh_folder(tmp_path)
    assert "broken.ply" in str(error.value)


def test_broken_obj_names_the_line_and_missing_texture_the_file(tmp_path):
    (tmp_path / "bad.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n")
    with pytest.raises(ValueError, match=r"bad\.obj:4: .*vertex index 7 out of range"):
        objects_from_mesh_folder(tmp_path)
    (tmp_path / "bad.obj").unlink()
    _write_textured_cube_obj(tmp_path)
    (tmp_path / "cube.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"cannot read texture .*cube\.png"):
        objects_from_mesh_folder(tmp_path)


def test_empty_folder_and_nan_vertices(tmp_path):
    with pytest.raises(ValueError, match="no meshes found"):
        objects_from_mesh_folder(tmp_path)
    (tmp_path / "nan.obj").write_text("v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="NaN or infinite"):
        objects_from_mesh_folder(tmp_path)


@pytest.mark.skipif(not (YCB_SIM / "meshes").is_dir(), reason="../shared/data/ycb_sim is not beside the checkout")
def test_ycb_sim_folder_matches_the_props_like_scene():
    objects = objects_from_mesh_folder(YCB_SIM)
    props_like = load_scene_config(Path(__file__).resolve().parents[2] / "config/scenes/props_like.yaml",
                                   {"mesh_dir": str(YCB_SIM)})
    want = {s.name: s.symmetry or "none" for s in props_like.object_specs()}
    assert {o["name"]: o["symmetry"] for o in objects} == want
    assert all(o["scale"] == 1.0 and o["texture"].endswith(".png") for o in objects)


def test_vertex_coloured_ply_renders_in_its_colours(tmp_path):
    from inerf_ros.frames import look_at
    from inerf_ros.scene.cameras import base_intrinsics
    from inerf_ros.scene.world import SceneRenderer, World

    vertices, faces, colours = _coloured_box_mm()
    (tmp_path / "box.ply").write_bytes(_ply_bytes(vertices, faces, colours))
    objects = objects_from_mesh_folder(tmp_path)
    config = load_scene_config(None, {"objects": [dict(objects[0], position=[0.0, 0.0])], "width": 160,
                                      "height": 120, "max_texture_size": 256, "max_distractors": 0})
    world = World(config)
    with SceneRenderer(world) as renderer:
        for eye, bright, dark in (([1.0, 0.0, 0.3], 1, 0), ([-1.0, 0.0, 0.3], 0, 1)):  # +x green, -x red
            out = renderer.render(look_at(np.array(eye), np.array([0.0, 0.0, 0.06])), base_intrinsics(config))
            pixels = out.rgb[out.instance == 1].astype(float)
            assert len(pixels) > 50
            mean = pixels.mean(axis=0)
            assert mean[bright] > 3 * mean[dark] and mean[bright] > 40, (eye, mean)
