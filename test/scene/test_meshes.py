"""Bring your own objects: OBJ / PLY / MuJoCo .msh meshes with textures, and the props_like config."""
import numpy as np
import pytest

from inerf_ros.scene import objects as obj_lib
from inerf_ros.scene.commands import make_scene
from inerf_ros.scene.config import load_scene_config
from inerf_ros.scene.dataset import load_class_table, load_frames, load_model, read_ply, write_ply

from scene_testdata import REPO_ROOT, SMALL, YCB_SIM, iou, project_silhouette


def _checker(size=64):
    ys, xs = np.mgrid[0:size, 0:size]
    img = np.zeros((size, size, 3), np.uint8)
    img[((xs // 8 + ys // 8) % 2) == 0] = (220, 40, 40)
    img[((xs // 8 + ys // 8) % 2) == 1] = (40, 40, 220)
    return img


def _write_obj(folder, vertices, faces, uv):
    import cv2

    cv2.imwrite(str(folder / "tex.png"), _checker()[:, :, ::-1])
    (folder / "thing.mtl").write_text("newmtl m\nmap_Kd tex.png\n")
    lines = ["mtllib thing.mtl"] + [f"v {x} {y} {z}" for x, y, z in vertices]
    lines += [f"vt {s} {1 - t}" for s, t in uv]
    # Quads where possible (two triangles sharing an edge) to exercise polygon fanning.
    lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in faces]
    (folder / "thing.obj").write_text("\n".join(lines) + "\n")


def test_msh_round_trip_and_size_check(tmp_path):
    vertices, faces, uv = obj_lib.box_mesh(0.1, 0.2, 0.3)
    path = tmp_path / "box.msh"
    path.write_bytes(obj_lib.write_msh(vertices, faces, uv))
    v, f, t = obj_lib.read_msh(path)
    np.testing.assert_allclose(v, vertices, atol=1e-7)
    np.testing.assert_array_equal(f, faces)
    np.testing.assert_allclose(t, uv, atol=1e-7)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="do not match the file size"):
        obj_lib.read_msh(path)


def test_ply_round_trip(tmp_path):
    vertices, faces, uv = obj_lib.box_mesh(0.1, 0.2, 0.3)
    write_ply(tmp_path / "m.ply", vertices, faces, uv)
    v, f = read_ply(tmp_path / "m.ply")
    np.testing.assert_allclose(v, vertices, atol=1e-7)
    np.testing.assert_array_equal(f, faces)
    v2, f2, uv2, _ = obj_lib.read_ply_any(tmp_path / "m.ply")
    np.testing.assert_allclose(uv2[:, 1], 1.0 - uv[:, 1], atol=1e-7)  # PLY t is bottom-up


def test_obj_and_ply_objects_render_on_their_masks(tmp_path):
    vertices, faces, uv = obj_lib.box_mesh(0.08, 0.12, 0.1)
    vertices = vertices + [0.0, 0.0, 0.05]  # the file's frame: origin at the bottom face
    _write_obj(tmp_path, vertices, faces, uv)
    write_ply(tmp_path / "thing.ply", vertices * 1000.0, faces, np.stack([uv[:, 0], 1 - uv[:, 1]], 1))
    objects = [
        {"name": "obj_thing", "type": "mesh", "mesh": "thing.obj", "position": [-0.1, 0.0], "rpy_deg": [0, 0, 30]},
        {"name": "ply_thing", "type": "mesh", "mesh": "thing.ply", "texture": "tex.png", "scale": 0.001,
         "position": [0.1, 0.05, 0.0], "rpy_deg": [0, 0, -20]},
    ]
    config = load_scene_config(None, {**SMALL, "objects": objects, "mesh_dir": str(tmp_path),
                                      "splits": ["nerf"], "nerf_views": 3})
    make_scene(config, tmp_path / "world", progress=False)
    classes = load_class_table(tmp_path / "world")
    assert [c.kind for c in classes.values()] == ["mesh", "mesh"]
    v_obj, _ = load_model(tmp_path / "world", 1)
    np.testing.assert_allclose(v_obj, vertices, atol=1e-6)  # the file's own frame is kept
    frames = list(load_frames(tmp_path / "world", "nerf"))
    checked = 0
    for frame in frames:
        for obj in frame.objects:
            if obj.visible_fraction >= 0.999 and obj.px_count_visib > 150:
                projected = project_silhouette(*load_model(tmp_path / "world", obj.class_id), obj.cam_T_obj,
                                               frame.intrinsics)
                assert iou(projected, frame.instance == obj.instance_id) >= 0.95
                checked += 1
    assert checked >= 2
    # The texture reached the renderer: the checker's red and blue both show on the object.
    rgb = frames[0].rgb[frames[0].instance == 1].astype(int)
    assert np.any(rgb[:, 0] > rgb[:, 2] + 40) and np.any(rgb[:, 2] > rgb[:, 0] + 40)


def test_missing_mesh_dir_is_named(tmp_path):
    config = load_scene_config(REPO_ROOT / "config" / "scenes" / "props_like.yaml", {**SMALL, "splits": ["nerf"]})
    with pytest.raises(FileNotFoundError, match="--mesh-dir"):
        make_scene(config, tmp_path / "o", progress=False)


@pytest.mark.skipif(not YCB_SIM.is_dir(), reason=f"{YCB_SIM} (the ycb_sim meshes, not shipped) is absent")
def test_props_like_scene_from_ycb_sim(tmp_path):
    config = load_scene_config(REPO_ROOT / "config" / "scenes" / "props_like.yaml", {
        "mesh_dir": str(YCB_SIM), "width": 320, "height": 240, "fx": 451.095, "fy": 451.195, "cx": 170.925,
        "cy": 125.865, "splits": ["nerf"], "nerf_views": 2, "max_texture_size": 256})
    make_scene(config, tmp_path / "props", progress=False)
    classes = load_class_table(tmp_path / "props")
    assert len(classes) == 10 and classes[1].name == "master_chef_can"
    assert classes[1].symmetry == "continuous_z"
    checked = 0
    for frame in load_frames(tmp_path / "props", "nerf"):
        assert frame.intrinsics.fx == frame.intrinsics.fy == pytest.approx(451.195)
        for obj in frame.objects:
            if obj.visible_fraction >= 0.999 and obj.px_count_visib > 150:
                projected = project_silhouette(*load_model(tmp_path / "props", obj.class_id), obj.cam_T_obj,
                                               frame.intrinsics)
                assert iou(projected, frame.instance == obj.instance_id) >= 0.95, obj.class_name
                checked += 1
    assert checked >= 3
