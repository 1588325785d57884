"""`inerf-ros detect` on photos, and the drawing it shares with eval-posecnn."""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from inerf_ros.camera import Intrinsics
from inerf_ros.cli import main
from inerf_ros.posecnn import draw
from inerf_ros.posecnn.detect_command import load_camera_info_yaml, pose_xyz_quat
from inerf_ros.scene import objects as obj_lib

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "posecnn_tabletop"


def _pose(rpy_deg, xyz):
    pose = np.eye(4)
    pose[:3, :3] = obj_lib.rpy_matrix(rpy_deg)
    pose[:3, 3] = xyz
    return pose


def _distances_to_polygon(pixels_xy, polygon):
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    return np.array([abs(cv2.pointPolygonTest(contour, (float(x), float(y)), True)) for x, y in pixels_xy])


@pytest.mark.parametrize("use_mesh", [False, True])
def test_outline_lies_on_the_projected_silhouette(use_mesh):
    """A box's silhouette is the hull of its projected corners: the drawn outline must trace it."""
    K = Intrinsics(320, 240, 300.0, 310.0, 150.3, 125.7).K
    cam_T_obj = _pose([35.0, -20.0, 50.0], [0.03, -0.02, 0.55])
    vertices, faces, _ = obj_lib.box_mesh(0.12, 0.07, 0.2)
    corners = draw.project(vertices, cam_T_obj, K)[0]
    expected = cv2.convexHull(corners.astype(np.float32))[:, 0, :]
    canvas = np.zeros((240, 320, 3), np.uint8)
    draw.draw_pose(canvas, cam_T_obj, K, (255, 0, 0), vertices, (vertices, faces) if use_mesh else None,
                   thickness=1, details=False)
    ys, xs = np.nonzero(canvas[:, :, 0] >= 64)  # the line, not the faint fringe of its anti-aliasing
    assert len(xs) > 200
    assert _distances_to_polygon(np.stack([xs, ys], 1), expected).max() <= 1.6
    # ... and it goes all the way round: every corner of the silhouette has a drawn pixel beside it.
    for corner in expected:
        assert np.min(np.hypot(xs - corner[0], ys - corner[1])) <= 1.6
    # Moved by 2 cm sideways, it follows: the outline shifts by fx * 0.02 / z pixels.
    moved = cam_T_obj.copy()
    moved[0, 3] += 0.02
    shifted = np.zeros_like(canvas)
    draw.draw_pose(shifted, moved, K, (255, 0, 0), vertices, thickness=1, details=False)
    _, xs2 = np.nonzero(shifted[:, :, 0] >= 64)
    assert np.mean(xs2) - np.mean(xs) == pytest.approx(300.0 * 0.02 / 0.55, abs=1.0)


def test_outline_behind_the_camera_draws_nothing_and_labels_get_their_colour():
    K = Intrinsics(64, 48, 50.0, 50.0, 31.5, 23.5).K
    canvas = np.zeros((48, 64, 3), np.uint8)
    draw.draw_pose(canvas, _pose([0, 0, 0], [0, 0, -0.5]), K, (255, 0, 0), np.eye(3) * 0.05)
    assert not canvas.any()
    image = np.full((48, 64, 3), 128, np.uint8)
    labels = np.zeros((48, 64), np.uint8)
    labels[30:40, 40:60] = 2
    panel = draw.label_panel(image, labels, ["a", "b", "c"])
    colour = draw.class_colours(3)[2].astype(float)
    expected = 0.35 * 128 + 0.65 * colour
    np.testing.assert_allclose(panel[35, 50].astype(float), expected, atol=1.0)
    assert np.all(panel[45, 5] < 70)  # background dimmed


@pytest.mark.parametrize("count", [1, 7, 10, 20])
def test_class_colours_are_told_apart(count):
    colours = draw.class_colours(count).astype(int)
    assert colours.shape == (count + 1, 3) and not colours[0].any()
    distances = [np.abs(a - b).sum() for k, a in enumerate(colours[1:]) for b in colours[k + 2:]]
    assert min(distances, default=255) >= 80   # L1 over RGB: clearly different at a glance


def test_camera_info_yaml_in_both_formats(tmp_path):
    ost = tmp_path / "ost.yaml"
    ost.write_text("image_width: 640\nimage_height: 480\ncamera_name: rgb\n"
                   "camera_matrix: {rows: 3, cols: 3, data: [615.1, 0, 322.4, 0, 615.9, 241.2, 0, 0, 1]}\n"
                   "distortion_model: plumb_bob\n"
                   "distortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}\n")
    intrinsics = load_camera_info_yaml(ost)
    assert (intrinsics.width, intrinsics.fx, intrinsics.cy, intrinsics.is_distorted) == (640, 615.1, 241.2, False)
    echo = tmp_path / "echo.yaml"
    echo.write_text("header: {frame_id: camera_color_optical_frame}\nheight: 480\nwidth: 640\n"
                    "distortion_model: plumb_bob\nd: [0.1, -0.2, 0.0, 0.0, 0.0]\n"
                    "k: [600.0, 0.0, 320.0, 0.0, 601.0, 240.0, 0.0, 0.0, 1.0]\n")
    intrinsics = load_camera_info_yaml(echo)
    assert intrinsics.fy == 601.0 and intrinsics.is_distorted
    bad = tmp_path / "bad.yaml"
    bad.write_text("k: [0, 0, 320, 0, 0, 240, 0, 0, 1]\nwidth: 640\nheight: 480\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: .*focal length"):
        load_camera_info_yaml(bad)
    bad.write_text("width: 640\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: needs camera_matrix"):
        load_camera_info_yaml(bad)


def test_pose_as_xyz_quaternion():
    pose = _pose([0, 0, 90], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(pose_xyz_quat(pose), [0.1, 0.2, 0.3, 0, 0, math.sqrt(0.5), math.sqrt(0.5)], atol=1e-12)


@pytest.fixture(scope="module")
def tabletop_frame(tmp_path_factory):
    """One 320x240 frame of the demo world (the shipped model's objects) with its ground truth."""
    from inerf_ros.frames import look_at
    from inerf_ros.scene.cameras import base_intrinsics
    from inerf_ros.scene.config import load_scene_config
    from inerf_ros.scene.world import SceneRenderer, World

    config = load_scene_config(None, {"width": 320, "height": 240, "max_texture_size": 256, "max_distractors": 0})
    world = World(config)
    intrinsics = base_intrinsics(config)
    world_T_cam = look_at(np.array([0.55, -0.45, 0.5]), np.array([0.0, 0.0, 0.05]))
    with SceneRenderer(world) as renderer:
        out = renderer.render(world_T_cam, intrinsics)
    folder = tmp_path_factory.mktemp("frame")
    cv2.imwrite(str(folder / "table.png"), out.rgb[:, :, ::-1])
    truth = {o.name: np.linalg.inv(world_T_cam) @ o.world_T_obj for o in world.objects
             if np.count_nonzero(out.instance == o.instance_id) > 300}
    return folder / "table.png", intrinsics, truth


@pytest.mark.skipif(not (MODEL / "posecnn.json").is_file(), reason="models/posecnn_tabletop is not in the checkout")
def test_detect_finds_the_objects_and_goes_on_past_bad_images(tabletop_frame, tmp_path, capsys):
    image, intrinsics, truth = tabletop_frame
    assert len(truth) >= 6
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cv2.imwrite(str(tmp_path / "depth.png"), np.full((240, 320), 900, np.uint16))
    cv2.imwrite(str(tmp_path / "tiny.png"), np.zeros((20, 20, 3), np.uint8))
    info = tmp_path / "camera_info.yaml"
    info.write_text(f"image_width: 320\nimage_height: 240\ncamera_matrix: {{rows: 3, cols: 3, data: "
                    f"{intrinsics.K.ravel().tolist()}}}\ndistortion_model: plumb_bob\n")
    out = tmp_path / "out"
    inputs = [tmp_path / "broken.jpg", image, tmp_path / "depth.png", tmp_path / "tiny.png", tmp_path / "nothing.png"]
    code = main(["detect", *map(str, inputs), "--model", str(MODEL), "--out", str(out), "--camera-info", str(info)])
    captured = capsys.readouterr()
    assert code == 1
    assert "broken.jpg: skipped: not an image OpenCV can decode" in captured.err
    assert "depth.png: skipped: a 16-bit single-channel (a depth image?) image" in captured.err
    assert "tiny.png: skipped: 20x20 is too small" in captured.err
    assert "nothing.png: skipped: no such file" in captured.err
    assert "4 of 5 images skipped" in captured.err
    report = json.loads((out / "detections.json").read_text())
    assert [r.get("error") is None for r in report["images"]] == [False, True, False, False, False]
    record = report["images"][1]
    assert record["picture"] == "table_detect.png" and (out / "table_detect.png").is_file()
    picture = cv2.imread(str(out / "table_detect.png"))
    assert picture.shape[1] > 3 * 320 and picture.shape[0] >= 240
    found = {d["class"]: d for d in record["detections"] if d["reported"]}
    assert set(truth) <= set(found)
    errors = [np.linalg.norm(np.array(found[name]["cam_T_obj"][:3]) - pose[:3, 3]) for name, pose in truth.items()]
    assert np.median(errors) < 0.03 and max(errors) < 0.10, errors
    assert all(found[name]["visible_mask_area_px"] > 200 for name in truth)
    np.testing.assert_allclose(record["K"], intrinsics.K)


@pytest.mark.skipif(not (MODEL / "posecnn.json").is_file(), reason="models/posecnn_tabletop is not in the checkout")
def test_detect_guesses_intrinsics_and_refuses_another_cameras_size(tabletop_frame, tmp_path, capsys):
    image, _, _ = tabletop_frame
    code = main(["detect", str(image.parent), "--model", str(MODEL), "--out", str(tmp_path / "a"),
                 "--no-silhouette-refine"])  # a folder: its images
    assert code == 0
    assert "intrinsics: GUESSED from a 60 deg horizontal field of view" in capsys.readouterr().out
    assert (tmp_path / "a" / "table_detect.png").is_file()
    info = tmp_path / "wide.yaml"
    info.write_text("width: 640\nheight: 360\nk: [500, 0, 320, 0, 500, 180, 0, 0, 1]\n")
    code = main(["detect", str(image), "--model", str(MODEL), "--out", str(tmp_path / "b"), "--camera-info",
                 str(info), "--no-silhouette-refine"])
    assert code == 1
    assert "320x240 but the camera_info is for 640x360: another aspect ratio" in capsys.readouterr().err
