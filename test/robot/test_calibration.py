"""Hand-eye / base calibration: exact on noise-free poses, accurate under noise, outliers rejected,
degenerate motion refused; the command on a small robot bag written here.
"""
import dataclasses
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from inerf_ros.calibration import (CalibrationConfig, CalibrationError, DegenerateMotionError, calibrate,
                                   closed_form, pose_difference, second_axis_deg)
from inerf_ros.robot.model import RobotModel, rpy_pose

START_STAMP_S = 1_700_000_000.0


def _pose(rotvec, translation):
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    pose[:3, 3] = translation
    return pose


TOOL0_T_CAM = _pose([0.05, -0.1, 0.02], [0.012, -0.071, 0.036])
NERF_T_BASE = _pose([0.0, 0.0, 1.4], [0.3, -0.45, 0.02])


def _flange_poses(rng, n, spread_rad=0.5):
    return np.stack([_pose(rng.normal(0.0, spread_rad, 3), rng.normal(0.0, 0.2, 3) + [0.6, 0.0, 0.5])
                     for _ in range(n)])


def _noise(rng, n, degrees, metres):
    return np.stack([_pose(rng.normal(0.0, math.radians(degrees), 3), rng.normal(0.0, metres, 3))
                     for _ in range(n)])


def test_noise_free_poses_give_the_exact_transforms():
    base_T_tool0 = _flange_poses(np.random.default_rng(1), 12)
    nerf_T_cam = NERF_T_BASE @ base_T_tool0 @ TOOL0_T_CAM
    x, z = closed_form(nerf_T_cam, base_T_tool0)
    np.testing.assert_allclose(x, TOOL0_T_CAM, atol=1e-9)
    np.testing.assert_allclose(z, NERF_T_BASE, atol=1e-9)
    result = calibrate(nerf_T_cam, base_T_tool0)
    np.testing.assert_allclose(result.tool0_T_cam, TOOL0_T_CAM, atol=1e-9)
    np.testing.assert_allclose(result.nerf_T_base, NERF_T_BASE, atol=1e-9)
    assert result.inliers.all() and result.closed_form_rejected == []
    assert result.residual_translation_m.max() < 1e-9 and result.residual_rotation_deg.max() < 1e-6
    assert result.sigma_tool0_T_cam[0] < 1e-9 and result.jackknife_tool0_T_cam[0] < 1e-9


def test_noisy_estimates_give_the_transform_within_their_noise():
    rng = np.random.default_rng(2)
    base_T_tool0 = _flange_poses(rng, 30)
    # iNeRF-like noise: 0.5 deg and 5 mm per axis on every camera estimate.
    nerf_T_cam = NERF_T_BASE @ base_T_tool0 @ TOOL0_T_CAM @ _noise(rng, 30, 0.5, 0.005)
    result = calibrate(nerf_T_cam, base_T_tool0)
    translation, rotation = pose_difference(result.tool0_T_cam, TOOL0_T_CAM)
    assert translation < 0.006 and rotation < 0.4
    assert 0.3 * translation < result.sigma_tool0_T_cam[0] < 0.01  # the reported spread is of the right size
    assert 0.3 * translation < result.jackknife_tool0_T_cam[0] < 0.01
    assert 0.3 * rotation < result.jackknife_tool0_T_cam[1] < 0.5
    # Residuals: the noise itself (sqrt(3) * 5 mm RMS), no frame rejected.
    assert result.inliers.all()
    assert 0.004 < np.median(result.residual_translation_m) < 0.015


def _biased_run():
    """40 frames, 1 mm / 0.1 deg noise, and the first 8 (one run of views) biased together by 1.1 cm / 0.2 deg."""
    rng = np.random.default_rng(9)
    base_T_tool0 = _flange_poses(rng, 40)
    noise = _noise(rng, 40, 0.1, 0.001)
    noise[:8] = noise[:8] @ _pose([0.004, 0.0, 0.0], [0.0, 0.008, 0.008])
    return NERF_T_BASE @ base_T_tool0 @ TOOL0_T_CAM @ noise, base_T_tool0


def test_cauchy_weights_discount_a_biased_run_of_frames_below_the_rejection_limit():
    nerf_T_cam, base_T_tool0 = _biased_run()
    plain = calibrate(nerf_T_cam, base_T_tool0, CalibrationConfig(cauchy_scale=0.0))
    robust = calibrate(nerf_T_cam, base_T_tool0)
    assert plain.inliers.all()  # the biased frames pass the hard limit...
    plain_m, robust_m = (pose_difference(r.tool0_T_cam, TOOL0_T_CAM)[0] for r in (plain, robust))
    assert plain_m > 0.001 and robust_m < 0.15 * plain_m  # ...but barely count with Cauchy's weights


def test_block_jackknife_sees_errors_shared_by_consecutive_frames():
    nerf_T_cam, base_T_tool0 = _biased_run()
    plain = CalibrationConfig(cauchy_scale=0.0)  # least squares: every frame counts fully, the bias with them
    blocks = calibrate(nerf_T_cam, base_T_tool0, plain)  # 10 blocks of 4 consecutive frames
    single = calibrate(nerf_T_cam, base_T_tool0, dataclasses.replace(plain, jackknife_blocks=40))  # leave-one-out
    np.testing.assert_allclose(blocks.tool0_T_cam, single.tool0_T_cam, atol=1e-12)
    error_m = pose_difference(blocks.tool0_T_cam, TOOL0_T_CAM)[0]
    # The covariance and leave-one-out (independent residuals) understate the error; leaving out runs does not.
    assert blocks.sigma_tool0_T_cam[0] < 0.7 * error_m and single.jackknife_tool0_T_cam[0] < 0.7 * error_m
    assert blocks.jackknife_tool0_T_cam[0] > 0.85 * error_m


def test_gross_outliers_are_rejected_and_reported():
    rng = np.random.default_rng(3)
    base_T_tool0 = _flange_poses(rng, 20)
    nerf_T_cam = NERF_T_BASE @ base_T_tool0 @ TOOL0_T_CAM @ _noise(rng, 20, 0.2, 0.002)
    bad = [4, 11, 17]  # a wrong PoseCNN prior: iNeRF converges to a pose 20-40 deg / 10-20 cm off
    nerf_T_cam[4] = nerf_T_cam[4] @ _pose([0.6, 0.0, 0.0], [0.1, 0.0, 0.0])
    nerf_T_cam[11] = nerf_T_cam[11] @ _pose([0.0, -0.35, 0.1], [0.0, 0.2, 0.05])
    nerf_T_cam[17] = nerf_T_cam[17] @ _pose([0.0, 0.0, 0.5], [0.0, 0.0, -0.15])
    result = calibrate(nerf_T_cam, base_T_tool0)
    assert sorted(np.where(~result.inliers)[0].tolist()) == bad
    assert all(result.residual_rotation_deg[k] > 15 for k in bad)
    translation, rotation = pose_difference(result.tool0_T_cam, TOOL0_T_CAM)
    assert translation < 0.003 and rotation < 0.2
    # Plain least squares over all frames is far worse on the same data: the test can tell the difference.
    keep_all = CalibrationConfig(outlier_factor=1e6, min_outlier_residual_m=1e3, cauchy_scale=0.0)
    translation_all, rotation_all = pose_difference(calibrate(nerf_T_cam, base_T_tool0, keep_all).tool0_T_cam,
                                                    TOOL0_T_CAM)
    assert translation_all > 3 * translation and rotation_all > 3 * rotation


def test_the_least_determined_direction_is_the_axis_the_flange_mostly_turns_about():
    rng = np.random.default_rng(8)
    axis = np.array([0.0, -0.8, -0.6])  # in the flange frame
    # Mostly about `axis` (+-60 deg), a few degrees about others: the demo arm's approach-and-circle.
    base_T_tool0 = np.stack([_pose([0.3, 0.2, 0.0], [0.5, 0.1, 0.4])
                             @ _pose(a * axis + rng.normal(0.0, math.radians(3.0), 3), rng.normal(0, 0.2, 3))
                             for a in np.linspace(-1.0, 1.0, 30)])
    nerf_T_cam = NERF_T_BASE @ base_T_tool0 @ TOOL0_T_CAM @ _noise(rng, 30, 0.2, 0.003)
    result = calibrate(nerf_T_cam, base_T_tool0)
    assert 2.0 < result.second_axis_deg < 6.0
    assert abs(result.weakest_direction_tool0 @ axis) > 0.95
    error = result.tool0_T_cam[:3, 3] - TOOL0_T_CAM[:3, 3]
    across = error - (error @ axis) * axis
    # The covariance says the along-axis translation is the weak one, and the error agrees.
    assert result.sigma_along_weakest_m > 3 * np.linalg.norm(across)
    assert abs(error @ axis) < 3 * result.sigma_along_weakest_m


def test_rotation_about_one_axis_only_is_reported_as_degenerate():
    rng = np.random.default_rng(4)
    # The flange turns about its own z axis only (a wrist_3 sweep) while translating freely.
    base_T_tool0 = np.stack([_pose([0.3, 0.2, 0.0], [0.5, 0.1, 0.4]) @ _pose([0.0, 0.0, a], rng.normal(0, 0.2, 3))
                             for a in np.linspace(-1.2, 1.2, 10)])
    assert second_axis_deg(base_T_tool0) < 1e-6
    nerf_T_cam = NERF_T_BASE @ base_T_tool0 @ TOOL0_T_CAM
    with pytest.raises(DegenerateMotionError, match="one axis"):
        calibrate(nerf_T_cam, base_T_tool0)
    translations_only = np.stack([_pose([0.1, 0.2, 0.3], rng.normal(0, 0.2, 3)) for _ in range(10)])
    with pytest.raises(DegenerateMotionError):
        calibrate(NERF_T_BASE @ translations_only @ TOOL0_T_CAM, translations_only)


def test_bad_input_raises():
    base_T_tool0 = _flange_poses(np.random.default_rng(5), 6)
    nerf_T_cam = NERF_T_BASE @ base_T_tool0 @ TOOL0_T_CAM
    with pytest.raises(CalibrationError, match="at least 4"):
        calibrate(nerf_T_cam[:3], base_T_tool0[:3])
    with pytest.raises(CalibrationError, match="6 camera poses but 5"):
        calibrate(nerf_T_cam, base_T_tool0[:5])
    nerf_T_cam[2, 0, 3] = np.nan
    with pytest.raises(CalibrationError, match="NaN"):
        calibrate(nerf_T_cam, base_T_tool0)


def test_urdf_origin_round_trips_through_rpy():
    from inerf_ros.calibrate_command import urdf_origin

    pose = _pose([0.3, -1.1, 2.0], [0.01, -0.07, 0.035])
    text = urdf_origin(pose, "tool0", "camera_link")
    assert '<parent link="tool0"/>' in text and '<child link="camera_link"/>' in text
    xyz = [float(v) for v in text.split('xyz="')[1].split('"')[0].split()]
    rpy = [float(v) for v in text.split('rpy="')[1].split('"')[0].split()]
    np.testing.assert_allclose(rpy_pose(xyz, np.degrees(rpy)), pose, atol=2e-6)


# ---------------------------------------------------------------------------------------------
# The command's pipeline on a small robot bag (the arm's TF as robot_state_publisher publishes it)


def _robot_bag(path, truth: RobotModel, believed: RobotModel, joints, with_chain=True):
    """Tiny images, camera_info, the believed chain on /tf + /tf_static, and the true camera on /tf."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from inerf_ros.scene.bag_command import tf_stamped

    store = get_typestore(Stores.ROS2_KILTED)
    types = store.types
    message = types["tf2_msgs/msg/TFMessage"]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        image_conn = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        info_conn = writer.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=store)
        static_conn = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=store)
        tf_conn = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=store)
        for k, q in enumerate(joints):
            ns = int(round((START_STAMP_S + 0.1 * k) * 1e9))
            stamp = types["builtin_interfaces/msg/Time"](sec=ns // 10 ** 9, nanosec=ns % 10 ** 9)
            chain = believed.tf_chain(q) if with_chain else []
            if k == 0:
                static = [tf_stamped(types, stamp, "world", "nerf", np.eye(4))]
                static += [tf_stamped(types, stamp, p, c, pose) for p, c, pose, is_static in chain if is_static]
                writer.write(static_conn, ns, store.serialize_cdr(message(transforms=static), message.__msgtype__))
            dynamic = [tf_stamped(types, stamp, p, c, pose) for p, c, pose, is_static in chain if not is_static]
            dynamic.append(tf_stamped(types, stamp, "world", "camera_optical_gt", truth.world_T_camera(q)))
            writer.write(tf_conn, ns, store.serialize_cdr(message(transforms=dynamic), message.__msgtype__))
            header = types["std_msgs/msg/Header"](stamp=stamp, frame_id="camera_color_optical_frame")
            writer.write(image_conn, ns, store.serialize_cdr(types["sensor_msgs/msg/Image"](
                header=header, height=6, width=8, encoding="rgb8", is_bigendian=0, step=24,
                data=np.full(144, k, np.uint8)), "sensor_msgs/msg/Image"))
            k_matrix = np.array([[8.0, 0, 3.5], [0, 8.0, 2.5], [0, 0, 1]])
            p = np.zeros((3, 4))
            p[:3, :3] = k_matrix
            roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                            do_rectify=False)
            writer.write(info_conn, ns, store.serialize_cdr(types["sensor_msgs/msg/CameraInfo"](
                header=header, height=6, width=8, distortion_model="plumb_bob", d=np.zeros(5), k=k_matrix.ravel(),
                r=np.eye(3).ravel(), p=p.ravel(), binning_x=0, binning_y=0, roi=roi), "sensor_msgs/msg/CameraInfo"))
    return path


@pytest.fixture(scope="module")
def arm():
    truth = RobotModel("ur10e", rpy_pose([0.0, -0.47, 0.0], [0, 0, 90]), rpy_pose([0.0, -0.07, 0.035], [0, 0, 0]))
    # The believed model: hand-eye off by 1 cm / ~1 deg, as the demo's; the kinematics are exact.
    hand_eye_offset = rpy_pose([0.01, 0, 0], [0.6, -0.8, 0])
    believed = RobotModel("ur10e", truth.world_T_base, truth.tool0_T_camera_optical @ hand_eye_offset)
    rng = np.random.default_rng(6)
    joints = np.array([0.3, -1.2, 1.5, -1.6, -1.5, 0.2]) + rng.normal(0.0, 0.35, (10, 6))
    return truth, believed, joints


def test_calibrate_bag_recovers_the_true_hand_eye_from_true_camera_poses(arm, tmp_path):
    from inerf_ros.calibrate_command import HandEyeConfig, calibrate_bag, compare_with_truth, describe
    from inerf_ros.replay.bag import CameraBag

    truth, believed, joints = arm
    path = _robot_bag(tmp_path / "arm.mcap", truth, believed, joints)
    rng = np.random.default_rng(7)

    def localizer(frame):
        # Test double of the iNeRF estimate: the bag's true camera, 1 mm / 0.1 deg off (every third frame
        # has none, as when PoseCNN finds nothing).
        if frame.index % 3 == 2:
            return None, "no prior: no detections"
        return frame.world_T_cam_gt @ _noise(rng, 1, 0.1, 0.001)[0], ""

    with CameraBag(path) as bag:
        summary = calibrate_bag(bag, localizer, HandEyeConfig(every=1), CalibrationConfig(), progress=False)
    frames = summary["frames"]
    assert (frames["tried"], frames["estimated"], frames["used"]) == (10, 7, 7)
    assert sorted(frames["skipped"]) == ["2", "5", "8"] and summary["camera_frame"] == "camera_color_optical_frame"
    x = np.array(summary["tool0_T_camera"]["matrix"])
    translation, rotation = pose_difference(x, truth.tool0_T_camera_optical)
    assert translation < 0.002 and rotation < 0.15
    np.testing.assert_allclose(np.array(summary["world_T_base"]["matrix"]), truth.world_T_base, atol=0.003)
    # What the robot publishes now is the believed hand-eye; the change from it is reported.
    np.testing.assert_allclose(summary["tf_tool0_T_camera"]["matrix"], believed.tool0_T_camera_optical, atol=1e-9)
    assert summary["change_from_tf"]["translation_m"] == pytest.approx(
        pose_difference(x, believed.tool0_T_camera_optical)[0], abs=1e-12)
    # Each frame's pair is in the summary: the solve can be redone from hand_eye.json alone.
    again = calibrate(np.array([r["nerf_T_cam"] for r in summary["residuals"]]),
                      np.array([r["base_T_tool0"] for r in summary["residuals"]]))
    np.testing.assert_allclose(again.tool0_T_cam, x, atol=1e-12)
    # The URDF joint is tool0 -> camera_link: the camera's fixed camera_link -> optical turn stays below it.
    assert '<child link="camera_link"/>' in summary["urdf"]
    summary["truth"] = compare_with_truth(summary, _robot_json(tmp_path, truth, believed))
    assert summary["truth"]["believed_tool0_T_camera_error"]["translation_m"] == pytest.approx(0.01, abs=1e-9)
    assert summary["truth"]["tool0_T_camera_error"]["translation_m"] == pytest.approx(translation, abs=1e-12)
    assert any("believed 1.00 cm" in line for line in describe(summary))


def _robot_json(tmp_path, truth, believed):
    import json

    path = tmp_path / "robot.json"
    path.write_text(json.dumps({"truth": truth.to_dict(), "believed": believed.to_dict()}))
    return path


def test_command_without_an_arm_on_tf_fails_in_one_line(arm, tmp_path, capsys):
    from inerf_ros.cli import main

    truth, believed, joints = arm
    path = _robot_bag(tmp_path / "hand_held.mcap", truth, believed, joints[:4], with_chain=False)
    code = main(["calibrate-hand-eye", str(path), "--objects", str(tmp_path / "objects.yaml"), "--no-progress",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "no base_link and no tool0 frame" in err[0] and not (tmp_path / "out").exists()
