"""build-workspace end to end on a small generated arm capture (45 frames at 240x180, the demo world's arm
bag with its believed TF), compared with the world's truth; a photo folder scaled by the objects; bad input
gives one clear error and leaves no workspace.
"""
import importlib.util
import json

import cv2
import numpy as np
import pytest

from inerf_ros.workspace import CaptureError, WorkspaceConfig, build_workspace
from inerf_ros.workspace.check import check_against_truth

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pycolmap") is None, reason="pycolmap is not installed")

# A NeRF of a few seconds: the test checks the workspace, not the model.
TINY_NERF = dict(nerf_minutes=0.02, nerf_downscale=4.0, nerf_args=["--eval-views=1"])
# PoseCNN (with its silhouette refinement) takes ~1 s per image here: a dozen views anchor every object.
FEW_DETECTIONS = dict(anchor_images=12)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """(scene dir, bag): the arm's approach-and-circle in 45 frames (the whole path, 3 s of bag time)."""
    from inerf_ros.scene.bag_command import BagConfig, write_bag
    from inerf_ros.scene.commands import make_scene
    from inerf_ros.scene.config import load_scene_config, shrink_image

    scene = tmp_path_factory.mktemp("capture") / "world"
    config = load_scene_config(None, {"splits": ["arm"], "arm_duration_s": 3.0, "max_texture_size": 256})
    make_scene(shrink_image(config, 240), scene, progress=False)
    bag = scene.parent / "arm.mcap"
    write_bag(scene, bag, BagConfig(), progress=False)
    return scene, bag


@pytest.fixture(scope="module")
def workspace(capture, tmp_path_factory):
    scene, bag = capture
    out = tmp_path_factory.mktemp("ws") / "WS"
    result = build_workspace(bag, out, WorkspaceConfig(every=1, **TINY_NERF, **FEW_DETECTIONS))
    return out, result


def test_bag_capture_gives_a_metric_anchored_workspace(capture, workspace):
    scene, _ = capture
    out, result = workspace
    saved = json.loads((out / "workspace.json").read_text())
    for key in ("metres_per_unit", "scale_source", "alignment_rms_m", "world_T_nerf", "anchors"):
        assert key in saved
    assert saved["scale_source"] == "arm" and saved["alignment_rms_m"] < 0.006
    truth = check_against_truth(saved, scene)
    assert truth["metres_per_unit_error"] < 0.01, truth["lines"]
    assert truth["world_T_nerf_error_m"] < 0.015 and truth["world_T_nerf_error_deg"] < 1.0, truth["lines"]
    # The believed hand-eye is 1 cm off; the joint fit moves it, most of the way to the truth.
    truth_t = np.asarray(json.loads((scene / "arm" / "robot.json").read_text())["truth"]["tool0_T_camera_optical"])
    fitted, believed = np.array(saved["hand_eye"]["tool_t_cam"]), np.array(saved["hand_eye"]["believed_tool_t_cam"])
    assert np.linalg.norm(fitted - truth_t[:3, 3]) < np.linalg.norm(believed - truth_t[:3, 3])
    anchors = truth["anchors"]
    assert len(anchors) >= 6, saved["skipped_objects"]
    assert all(e["position_m"] < 0.015 for e in anchors.values()), truth["lines"]
    asymmetric = [e["rotation_deg"] for e in anchors.values() if not e["symmetric"]]
    assert len(asymmetric) >= 3 and np.median(asymmetric) < 4.0, truth["lines"]
    for anchor in saved["anchors"].values():
        assert anchor["n_inliers"] >= 3 and anchor["spread_m"] < 0.02


def test_workspace_holds_what_the_launch_needs(workspace):
    import yaml

    from inerf_ros.initializer import InitializerConfig
    from inerf_ros.nerf.checkpoint import load_model
    from inerf_ros.nodes.inerf_node import InerfNodeConfig
    from inerf_ros.params_yaml import node_config

    out, result = workspace
    assert not out.with_name("WS.partial").exists()
    params = yaml.safe_load((out / "localize.yaml").read_text())
    inerf = node_config(InerfNodeConfig, "inerf_node", out / "localize.yaml")
    initializer = node_config(InitializerConfig, "initializer_node", out / "localize.yaml")
    assert inerf.model_dir == str(out / "nerf") and inerf.base_frame == "base_link"
    assert inerf.metres_per_unit == pytest.approx(result["metres_per_unit"])
    assert initializer.metres_per_unit == pytest.approx(result["metres_per_unit"])
    assert len(initializer.object_poses) == len(result["anchors"])
    assert np.allclose(inerf.world_T_nerf, result["world_T_nerf"]["xyz_quat"])
    assert params["posecnn_node"]["ros__parameters"]["model_dir"] == result["posecnn_model"]
    assert "# workspace: similarity of" in (out / "localize.yaml").read_text()
    from inerf_ros.object_table import initializer_config

    anchors = initializer_config(out / "initializer.yaml")
    assert anchors.metres_per_unit == pytest.approx(result["metres_per_unit"])
    assert sorted(e.split()[0] for e in anchors.object_poses) == sorted(result["anchors"])
    model = load_model(out / "nerf")
    assert model.metadata.metres_per_unit == pytest.approx(result["metres_per_unit"])
    report = (out / "workspace.md").read_text()
    assert "## What to re-capture" in report and "previews/" in report
    assert len(list((out / "previews").glob("*.png"))) == 4


def test_photo_folder_is_scaled_by_the_objects(capture, workspace, tmp_path):
    scene, _ = capture
    out, _ = workspace
    photos = scene / "arm" / "rgb"
    config = WorkspaceConfig(nerf=str(out / "nerf"), **TINY_NERF, **FEW_DETECTIONS)
    result = build_workspace(photos, tmp_path / "WS", config)
    assert result["scale_source"] == "objects" and result["scale_spread"]["detections"] >= 30
    truth = check_against_truth(result, scene)
    assert truth["metres_per_unit_error"] < 0.03, truth["lines"]
    assert "--nerf" in " ".join(result["notes"])


def test_bad_captures_give_one_clear_error_and_no_workspace(capture, tmp_path):
    scene, bag = capture
    out = tmp_path / "WS"
    with pytest.raises(CaptureError, match="no nope frame.*robot_state_publisher"):
        build_workspace(bag, out, WorkspaceConfig(base_frame="nope"))
    assert not out.exists() and not (tmp_path / "WS.partial").exists()
    blank = tmp_path / "blank"
    blank.mkdir()
    for k in range(9):  # nothing to match: SfM registers nothing
        cv2.imwrite(str(blank / f"{k:03d}.png"), np.full((60, 80, 3), 128, np.uint8))
    with pytest.raises(ValueError, match="registered no images"):
        build_workspace(blank, out, WorkspaceConfig())
    assert not out.exists() and not (tmp_path / "WS.partial").exists()
    out.mkdir()
    with pytest.raises(FileExistsError, match="--force"):
        build_workspace(blank, out, WorkspaceConfig())


def test_images_without_camera_info_are_refused(capture, tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from inerf_ros.scene.bag_command import _stamp

    store = get_typestore(Stores.ROS2_KILTED)
    types = store.types
    bag = tmp_path / "no_info"
    rgb = cv2.imread(str(capture[0] / "arm" / "rgb" / "000000.png"))[:, :, ::-1]
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        for k in range(3):
            header = types["std_msgs/msg/Header"](stamp=_stamp(types, 10 ** 9 * (k + 1)), frame_id="camera")
            image = types["sensor_msgs/msg/Image"](header=header, height=rgb.shape[0], width=rgb.shape[1],
                                                   encoding="rgb8", is_bigendian=0, step=3 * rgb.shape[1],
                                                   data=np.ascontiguousarray(rgb).reshape(-1))
            writer.write(connection, 10 ** 9 * (k + 1), store.serialize_cdr(image, "sensor_msgs/msg/Image"))
    with pytest.raises(CaptureError, match="no usable camera_info.*record the camera's CameraInfo"):
        build_workspace(bag, tmp_path / "WS", WorkspaceConfig())
    assert not (tmp_path / "WS").exists()
