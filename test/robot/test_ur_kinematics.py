"""UR kinematics: the DH chain by hand, Jacobian against finite differences, IK(FK(q)) == q."""
import math

import numpy as np
import pytest

from inerf_ros.robot import kinematics as kin


def _rz(t):
    m = np.eye(4)
    m[:2, :2] = [[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]
    return m


def _rx(t):
    m = np.eye(4)
    m[1:3, 1:3] = [[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]
    return m


def _trans(x, y, z):
    m = np.eye(4)
    m[:3, 3] = [x, y, z]
    return m


def _dh_product(table, q):
    """base_T_tool0 as the plain product Rz(q) Tz(d) Tx(a) Rx(alpha), one joint at a time."""
    pose = np.eye(4)
    for i in range(6):
        pose = pose @ _rz(q[i]) @ _trans(0, 0, table.d[i]) @ _trans(table.a[i], 0, 0) @ _rx(table.alpha[i])
    return pose


@pytest.mark.parametrize("name", ["ur5e", "ur10e"])
def test_all_zero_joints_give_the_documented_home_pose(name):
    """At q = 0 the arm lies stretched along -x: tool0 at (a2 + a3, -(d4 + d6), d1 - d5), z along -y."""
    t = kin.dh_table(name)
    expected = np.eye(4)
    expected[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]
    expected[:3, 3] = [t.a[1] + t.a[2], -(t.d[3] + t.d[5]), t.d[0] - t.d[4]]
    np.testing.assert_allclose(kin.tool0(t, np.zeros(6)), expected, atol=1e-15)
    if name == "ur5e":  # Universal Robots' figure for the UR5e at zero joints, millimetres
        np.testing.assert_allclose(expected[:3, 3] * 1000, [-817.2, -232.9, 62.8], atol=1e-9)


def test_vectorised_forward_matches_the_plain_product():
    t = kin.dh_table("ur10e")
    q = np.random.default_rng(0).uniform(-math.pi, math.pi, size=(4, 5, 6))
    links = kin.forward(t, q)
    assert links.shape == (4, 5, 6, 4, 4)
    for index in np.ndindex(4, 5):
        np.testing.assert_allclose(links[index][-1], _dh_product(t, q[index]), atol=1e-14)
    # Joint 1 turns everything about the base z axis: its link frame is the rotated first DH step.
    np.testing.assert_allclose(links[..., 0, :, :], kin.link_transforms(t, q)[..., 0, :, :], atol=0)


def test_jacobian_matches_finite_differences():
    t = kin.dh_table("ur5e")
    q = np.array([0.3, -1.1, 1.4, -0.8, 1.2, 0.4])
    tool0_T_point = _trans(0.02, -0.07, 0.04)
    jac = kin.jacobian(t, q, tool0_T_point)
    h = 1e-6
    for i in range(6):
        dq = np.zeros(6)
        dq[i] = h
        plus, minus = kin.tool0(t, q + dq) @ tool0_T_point, kin.tool0(t, q - dq) @ tool0_T_point
        np.testing.assert_allclose(jac[:3, i], (plus[:3, 3] - minus[:3, 3]) / (2 * h), atol=1e-8)
        np.testing.assert_allclose(jac[3:, i], kin.rotation_log(plus[:3, :3] @ minus[:3, :3].T) / (2 * h), atol=1e-8)


def test_inverse_of_forward_gives_back_the_joints():
    t = kin.dh_table("ur10e")
    rng = np.random.default_rng(3)
    checked = 0
    while checked < 20:
        q = rng.uniform(-math.pi, math.pi, size=6)
        if kin.manipulability(t, q) < 0.02:  # near a singularity the seed's branch is not unique
            continue
        seed = q + rng.uniform(-0.05, 0.05, size=6)
        solved = kin.inverse(t, kin.tool0(t, q), seed)
        np.testing.assert_allclose(solved, q, atol=1e-9, rtol=0)
        checked += 1


def test_inverse_follows_a_trajectory_without_branch_flips():
    """A sweep of joint 1 by 180 deg, solved frame by frame from the previous solution."""
    t = kin.dh_table("ur5e")
    q0 = np.array([0.0, -1.2, 1.5, -1.9, -1.57, 0.3])
    path = np.array([q0 + [s, 0, 0, 0.3 * math.sin(s), 0, 0] for s in np.linspace(0, math.pi, 60)])
    q = q0
    for target in path:
        q = kin.inverse(t, kin.tool0(t, target), q)
        np.testing.assert_allclose(q, target, atol=1e-9, rtol=0)


def test_unreachable_pose_and_bad_input_raise():
    t = kin.dh_table("ur5e")
    with pytest.raises(kin.IKError, match="did not converge"):
        kin.inverse(t, _trans(2.0, 0.0, 0.0), np.zeros(6), max_iterations=50)
    with pytest.raises(ValueError, match="NaN"):
        kin.forward(t, [0.0, np.nan, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="shape"):
        kin.forward(t, np.zeros(5))
    with pytest.raises(ValueError, match="unknown arm"):
        kin.dh_table("ur3000")


def test_rotation_log_near_pi_and_zero():
    for angle in (0.0, 1e-9, 0.5, math.pi - 1e-6, math.pi):
        axis = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rotation = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
        np.testing.assert_allclose(kin.rotation_log(rotation), angle * axis, atol=1e-7 if angle > 3 else 1e-12)
