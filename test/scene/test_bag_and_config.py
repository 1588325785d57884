"""make-bag agrees with the scene; configs fail clearly; same config and seed give the same bytes."""
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from inerf_ros.lie import quat_to_matrix
from inerf_ros.scene.commands import make_scene
from inerf_ros.scene.config import load_scene_config
from inerf_ros.scene.dataset import load_frames

from scene_testdata import REPO_ROOT, SMALL, read_bag


def test_bag_camera_poses_agree_with_transforms_json(small_scene, tmp_path):
    from inerf_ros.frames import opengl_to_optical
    from inerf_ros.scene.bag_command import BagConfig, write_bag

    out = tmp_path / "demo.mcap"
    count = write_bag(small_scene, out, BagConfig(), progress=False)
    assert out.is_file() and count == 6
    types, messages = read_bag(out)
    assert types == {"/camera/image_raw": "sensor_msgs/msg/Image", "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
                     "/tf_static": "tf2_msgs/msg/TFMessage", "/tf": "tf2_msgs/msg/TFMessage",
                     "/joint_states": "sensor_msgs/msg/JointState"}
    meta = json.loads((small_scene / "arm" / "transforms.json").read_text())
    frames = list(load_frames(small_scene, "arm"))
    static = messages["/tf_static"][0][2].transforms[0]
    assert (static.header.frame_id, static.child_frame_id) == ("world", "nerf")
    gt_tf = [m for m in messages["/tf"] if m[2].transforms[0].child_frame_id == "camera_optical_gt"]
    assert len(messages["/camera/image_raw"]) == len(frames) == len(gt_tf)
    for frame, entry, (t_img, _, image), (_, _, info), (t_tf, _, tf) in zip(
            frames, meta["frames"], messages["/camera/image_raw"], messages["/camera/camera_info"], gt_tf):
        expected_ns = 1_700_000_000 * 10 ** 9 + round(frame.time * 1e9)
        assert t_img == t_tf == expected_ns
        assert image.header.stamp.sec * 10 ** 9 + image.header.stamp.nanosec == expected_ns
        assert image.header.frame_id == "camera_color_optical_frame" and image.encoding == "rgb8"
        np.testing.assert_array_equal(np.asarray(image.data).reshape(image.height, image.width, 3), frame.rgb)
        np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), frame.intrinsics.K)
        assert info.distortion_model == "plumb_bob" and not np.any(info.d)
        transform = tf.transforms[0]
        assert (transform.header.frame_id, transform.child_frame_id) == ("world", "camera_optical_gt")
        q = transform.transform.rotation
        world_T_gt = np.eye(4)
        world_T_gt[:3, :3] = quat_to_matrix(torch.tensor([q.x, q.y, q.z, q.w], dtype=torch.float64)).numpy()
        v = transform.transform.translation
        world_T_gt[:3, 3] = [v.x, v.y, v.z]
        world_T_json = opengl_to_optical(np.array(entry["transform_matrix"]))
        np.testing.assert_allclose(world_T_gt, world_T_json, atol=1e-9)


def test_bag_deserialises_with_ros2_message_classes(small_scene, tmp_path):
    """The bag's CDR bytes are what real ROS 2 (rclpy) deserialises into standard messages."""
    rclpy_serialization = pytest.importorskip("rclpy.serialization")
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    tf2_msgs = pytest.importorskip("tf2_msgs.msg")
    from inerf_ros.scene.bag_command import BagConfig, write_bag

    out = tmp_path / "demo.mcap"
    write_bag(small_scene, out, BagConfig(), progress=False)
    _, messages = read_bag(out)
    image = rclpy_serialization.deserialize_message(messages["/camera/image_raw"][0][1], sensor_msgs.Image)
    info = rclpy_serialization.deserialize_message(messages["/camera/camera_info"][0][1], sensor_msgs.CameraInfo)
    tf = rclpy_serialization.deserialize_message(messages["/tf"][0][1], tf2_msgs.TFMessage)
    joints = rclpy_serialization.deserialize_message(messages["/joint_states"][0][1], sensor_msgs.JointState)
    assert (image.width, image.height, image.encoding) == (320, 240, "rgb8")
    assert info.k[0] == pytest.approx(messages["/camera/camera_info"][0][2].k[0])
    assert [t.child_frame_id for t in tf.transforms][0] == "shoulder_link"
    assert joints.name[0] == "shoulder_pan_joint" and len(joints.position) == 6


def test_make_bag_cli_writes_a_directory_bag_and_refuses_to_overwrite(small_scene, tmp_path):
    cmd = [sys.executable, "-m", "inerf_ros.cli", "make-bag", str(small_scene), "--out", str(tmp_path / "bag"),
           "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bag" / "metadata.yaml").is_file() and list((tmp_path / "bag").glob("*.mcap"))
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    assert again.returncode == 2 and "exists" in again.stderr


@pytest.mark.parametrize("overrides, message", [
    ({"objects": [{"name": "ball", "type": "sphere", "size": [0.1]}]},
     r"objects\[0\] \(ball\): type='sphere' is not one of"),
    ({"width": 0}, r"width=0 is outside \[1, 8192\]"),
    ({"height": -5}, r"height=-5 is outside"),
    ({"objects": [{"name": "box", "type": "box", "size": [0.1, 0.1]}]}, r"a box needs size \[x, y, z\]"),
    ({"objects": [{"name": "a", "type": "can", "size": [0.1, 0.1]}, {"name": "a", "type": "can", "size": [0.1, 0.1]}]},
     r"duplicate object name 'a'"),
    ({"objects": [{"name": "a", "type": "can", "size": [0.1, 0.1], "colour": [1, 0, 0]}]}, r"unknown ObjectSpec keys"),
    ({"splits": ["nerf", "bogus"]}, r"splits: unknown \['bogus'\]"),
])
def test_bad_configs_fail_with_a_clear_message(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config = load_scene_config(None, {**SMALL, **overrides})
        make_scene(config, tmp_path / "out", progress=False)


def test_camera_inside_an_object_is_refused_before_rendering(tmp_path):
    objects = [{"name": "crate", "type": "box", "size": [0.4, 0.4, 0.4], "position": [0.0, 0.0]}]
    config = load_scene_config(None, {**SMALL, "objects": objects, "nerf_radius": [0.1, 0.12], "splits": ["nerf"]})
    with pytest.raises(ValueError, match=r"nerf view \d+: camera at .* is inside object 'crate'"):
        make_scene(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_reports_bad_config_and_nonzero_status(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("objects:\n  - {name: thing, type: teapot}\n")
    done = subprocess.run([sys.executable, "-m", "inerf_ros.cli", "make-scene", "--config", str(bad), "--out",
                           str(tmp_path / "o"), "--quick"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 2
    assert "bad.yaml" in done.stderr and "type='teapot' is not one of" in done.stderr


def _digest(directory):
    h = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != "scene.yaml":
            h.update(str(path.relative_to(directory)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_same_config_and_seed_give_identical_bytes_and_another_seed_does_not(tmp_path):
    quick = {**SMALL, "width": 96, "height": 72, "nerf_views": 2, "posecnn_train_views": 2,
             "splits": ["nerf", "posecnn_train"]}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        make_scene(load_scene_config(None, {**quick, "seed": seed}), tmp_path / name, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert (tmp_path / "a" / "nerf" / "rgb" / "000000.png").read_bytes() != \
        (tmp_path / "c" / "nerf" / "rgb" / "000000.png").read_bytes()


def test_cli_flags_override_the_yaml(tmp_path):
    import yaml

    out = tmp_path / "w"
    done = subprocess.run([sys.executable, "-m", "inerf_ros.cli", "make-scene", "--out", str(out), "--quick",
                           "--splits", "nerf", "--nerf-views", "2", "--nerf-radius", "0.8", "0.9", "--seed", "3",
                           "--no-progress"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load((out / "scene.yaml").read_text())
    assert (resolved["seed"], resolved["nerf_views"], resolved["nerf_radius"]) == (3, 2, [0.8, 0.9])
    assert resolved["width"] == 80 and resolved["table_height"] == 0.74  # --quick size; the rest from the YAML
    assert len(list((out / "nerf" / "rgb").glob("*.png"))) == 2 and not (out / "arm").exists()
