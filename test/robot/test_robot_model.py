"""RobotModel: the TF chain composes to the camera pose; the believed model is off by exactly the errors."""
import math

import numpy as np
import pytest

from inerf_ros.robot import model as rm


def _truth():
    return rm.RobotModel("ur10e", rm.rpy_pose([0.0, -0.47, 0.0], [0, 0, 90]),
                         rm.rpy_pose([0.0, -0.07, 0.035], [0, 0, 0]))


def test_tf_chain_composes_to_the_camera_pose_and_is_a_tree():
    robot = _truth()
    q = np.array([0.8, -1.0, 0.9, -0.4, -1.4, 2.0])
    chain = robot.tf_chain(q)
    parents = {}
    pose = {"base_link": np.eye(4)}
    for parent, child, parent_T_child, _ in chain:
        assert child not in parents  # one parent per child
        parents[child] = parent
        pose[child] = pose[parent] @ parent_T_child
    np.testing.assert_allclose(robot.world_T_base @ pose["camera_color_optical_frame"], robot.world_T_camera(q),
                               atol=1e-14)
    assert [c for _, c, _, static in chain if not static] == list(rm.LINK_NAMES[1:])
    assert [(p, c) for p, c, _, static in chain if static] == [
        ("wrist_3_link", "tool0"), ("tool0", "camera_link"), ("camera_link", "camera_color_optical_frame")]
    assert len(rm.JOINT_NAMES) == 6 and rm.JOINT_NAMES[0] == "shoulder_pan_joint"


def test_optical_frame_follows_rep_103():
    """camera_link looks along x with z up; the optical frame looks along z with x right and y down."""
    link_T_optical = rm.CAMERA_LINK_T_OPTICAL[:3, :3]
    np.testing.assert_array_equal(link_T_optical @ [0, 0, 1], [1, 0, 0])   # forward
    np.testing.assert_array_equal(link_T_optical @ [1, 0, 0], [0, -1, 0])  # right = -left
    np.testing.assert_array_equal(link_T_optical @ [0, 1, 0], [0, 0, -1])  # down = -up
    assert np.linalg.det(link_T_optical) == pytest.approx(1.0)


def test_camera_ik_round_trip():
    robot = _truth()
    q = np.array([0.8, -1.0, 0.9, -0.4, -1.4, 2.0])
    np.testing.assert_allclose(robot.camera_ik(robot.world_T_camera(q), q + 0.03), q, atol=1e-9, rtol=0)


def test_believed_model_is_off_by_exactly_the_configured_errors_and_reproducible():
    truth = _truth()
    believed = rm.perturbed(truth, np.random.default_rng(7), base_error_m=0.03, base_error_deg=2.0,
                            hand_eye_error_m=0.01, hand_eye_error_deg=1.0)
    dt, dr = rm.pose_difference(truth.world_T_base, believed.world_T_base)
    assert dt == pytest.approx(0.03, abs=1e-12) and dr == pytest.approx(2.0, abs=1e-9)
    dt, dr = rm.pose_difference(truth.tool0_T_camera_optical, believed.tool0_T_camera_optical)
    assert dt == pytest.approx(0.01, abs=1e-12) and dr == pytest.approx(1.0, abs=1e-9)
    again = rm.perturbed(truth, np.random.default_rng(7), base_error_m=0.03, base_error_deg=2.0,
                         hand_eye_error_m=0.01, hand_eye_error_deg=1.0)
    np.testing.assert_array_equal(again.world_T_base, believed.world_T_base)
    np.testing.assert_array_equal(believed.table.a, truth.table.a)  # the arm itself is not miscalibrated


def test_reported_joints_have_the_configured_noise():
    q = np.zeros((20000, 6))
    reported = rm.reported_joints(q, np.random.default_rng(1), 0.05)
    assert np.degrees(reported.std()) == pytest.approx(0.05, rel=0.02)
    np.testing.assert_array_equal(rm.reported_joints(q[:3], np.random.default_rng(1), 0.0), q[:3])


def test_model_round_trips_through_a_dict_and_rejects_nan():
    truth = _truth()
    back = rm.RobotModel.from_dict(truth.to_dict())
    np.testing.assert_array_equal(back.world_T_base, truth.world_T_base)
    assert back.joint_names == truth.joint_names
    bad = truth.world_T_base.copy()
    bad[0, 3] = math.nan
    with pytest.raises(ValueError, match="finite"):
        rm.RobotModel("ur5e", bad)
