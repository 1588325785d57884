"""The arm split is a UR arm's true kinematics; the bag carries its joint states and believed TF tree."""
import json

import numpy as np
import pytest
import torch

from inerf_ros.lie import quat_to_matrix
from inerf_ros.robot.model import pose_difference
from inerf_ros.scene.dataset import load_frames, load_robot

from scene_testdata import read_bag


def _matrix(transform):
    q, v = transform.transform.rotation, transform.transform.translation
    pose = np.eye(4)
    pose[:3, :3] = quat_to_matrix(torch.tensor([q.x, q.y, q.z, q.w], dtype=torch.float64)).numpy()
    pose[:3, 3] = [v.x, v.y, v.z]
    return pose


def test_arm_frames_are_the_true_forward_kinematics(small_scene):
    robot = load_robot(small_scene)
    frames = list(load_frames(small_scene, "arm", images=False))
    assert len(frames) == 6 and all(f.joints is not None and f.joints.shape == (6,) for f in frames)
    for frame in frames:
        np.testing.assert_allclose(robot.truth.world_T_camera(frame.joints), frame.world_T_cam_optical, atol=1e-9)
    assert load_robot(small_scene, "nerf") is None


def test_believed_model_is_off_by_the_configured_errors(small_scene, small_config):
    robot, rc = load_robot(small_scene), small_config.robot_config()
    content = json.loads((small_scene / "arm" / "robot.json").read_text())
    np.testing.assert_array_equal(content["believed_world_T_base"], robot.believed.world_T_base)
    dt, dr = pose_difference(robot.truth.world_T_base, robot.believed.world_T_base)
    assert (100 * dt, dr) == pytest.approx(tuple(rc.base_error), abs=1e-9)
    dt, dr = pose_difference(robot.truth.tool0_T_camera_optical, robot.believed.tool0_T_camera_optical)
    assert (100 * dt, dr) == pytest.approx(tuple(rc.hand_eye_error), abs=1e-9)
    np.testing.assert_allclose(robot.truth.world_T_base[:3, 3], rc.base_xyz, atol=1e-15)


def test_bag_tf_is_one_tree_with_the_whole_believed_chain(small_scene, tmp_path):
    from inerf_ros.scene.bag_command import BagConfig, write_bag

    out = tmp_path / "arm.mcap"
    write_bag(small_scene, out, BagConfig(), progress=False)
    _, messages = read_bag(out)
    robot = load_robot(small_scene)
    frames = list(load_frames(small_scene, "arm", images=False))
    parents, latest = {}, {}
    for topic in ("/tf_static", "/tf"):
        for _, _, msg in messages[topic]:
            for t in msg.transforms:
                assert parents.setdefault(t.child_frame_id, t.header.frame_id) == t.header.frame_id, t.child_frame_id
                latest[(t.child_frame_id, t.header.stamp.sec * 10 ** 9 + t.header.stamp.nanosec)] = _matrix(t)
    assert parents == {"nerf": "world", "base_link_gt": "world", "camera_optical_gt": "world",
                       "shoulder_link": "base_link", "upper_arm_link": "shoulder_link",
                       "forearm_link": "upper_arm_link", "wrist_1_link": "forearm_link",
                       "wrist_2_link": "wrist_1_link", "wrist_3_link": "wrist_2_link", "tool0": "wrist_3_link",
                       "camera_link": "tool0", "camera_color_optical_frame": "camera_link"}
    assert "base_link" not in parents  # its parent is the localizer's to publish
    static = {t.child_frame_id: _matrix(t) for t in messages["/tf_static"][0][2].transforms}
    np.testing.assert_allclose(static["base_link_gt"], robot.truth.world_T_base, atol=1e-12)
    states = messages["/joint_states"]
    assert len(states) == 2 * len(frames) - 1  # two per image, none after the last
    assert all(list(s.name) == list(robot.truth.joint_names) for _, _, s in states)
    noise = np.radians(robot.encoder_noise_deg)
    for frame, (stamp, _, state) in zip(frames, states[::2]):
        assert stamp == 1_700_000_000 * 10 ** 9 + round(frame.time * 1e9)
        assert np.all(np.abs(state.position - frame.joints) < 6 * noise) and np.any(state.position != frame.joints)
        # The chain at the image stamp, composed through the believed model: the kinematics-only camera.
        base_T_cam = np.eye(4)
        for child in ("shoulder_link", "upper_arm_link", "forearm_link", "wrist_1_link", "wrist_2_link",
                      "wrist_3_link"):
            base_T_cam = base_T_cam @ latest[(child, stamp)]
        for child in ("tool0", "camera_link", "camera_color_optical_frame"):
            base_T_cam = base_T_cam @ static[child]
        world_T_cam = robot.believed.world_T_base @ base_T_cam
        np.testing.assert_allclose(world_T_cam, robot.believed.world_T_camera(state.position), atol=1e-9)
        error_m, error_deg = pose_difference(world_T_cam, frame.world_T_cam_optical)
        assert 0.005 < error_m < 0.2 and 0.2 < error_deg < 5.0  # miscalibrated, but the same robot


def test_bag_of_a_split_without_robot_has_no_joint_states(small_scene, tmp_path):
    from inerf_ros.scene.bag_command import BagConfig, write_bag

    write_bag(small_scene, tmp_path / "nerf.mcap", BagConfig(trajectory="nerf"), progress=False)
    types, messages = read_bag(tmp_path / "nerf.mcap")
    assert "/joint_states" not in types
    assert [t.child_frame_id for t in messages["/tf_static"][0][2].transforms] == ["nerf"]
