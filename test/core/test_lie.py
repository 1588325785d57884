"""SE(3)/SO(3): known values, round trips, stability near 0 and pi, gradcheck at the identity."""
import math

import pytest
import torch

from inerf_ros import lie


@pytest.fixture(autouse=True, scope="module")
def float64_by_default():
    """Exact geometry tests in float64, restored afterwards (a global default would leak into other tests)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def random_twists(n, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 6, generator=g) * 2 - 1) * scale


def test_so3_exp_known_value_quarter_turn_about_z():
    rotation = lie.so3_exp(torch.tensor([0.0, 0.0, math.pi / 2]))
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(rotation, expected, atol=1e-12, rtol=0)


def test_hat_is_cross_product_and_vee_inverts_it():
    a, b = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.3, 0.7, -1.1])
    torch.testing.assert_close(lie.hat(a) @ b, torch.linalg.cross(a, b))
    torch.testing.assert_close(lie.vee(lie.hat(a)), a)


@pytest.mark.parametrize("batch", [(), (1,), (7,), (2, 3)])
def test_se3_exp_log_round_trip_batched(batch):
    xi = random_twists(math.prod(batch) or 1, seed=1, scale=2.0).reshape(*batch, 6)
    torch.testing.assert_close(lie.se3_log(lie.se3_exp(xi)), xi, atol=1e-10, rtol=0)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-6, 1e-4, 1e-2, 1.0, math.pi - 1e-3, math.pi - 1e-7, math.pi])
def test_so3_log_exp_round_trip_across_angles(angle):
    axis = torch.tensor([0.2, -0.5, 0.84])
    axis = axis / axis.norm()
    omega = axis * angle
    recovered = lie.so3_log(lie.so3_exp(omega))
    if angle > math.pi - 1e-3:  # at pi, +axis and -axis are the same rotation
        torch.testing.assert_close(lie.so3_exp(recovered), lie.so3_exp(omega), atol=1e-7, rtol=0)
        assert recovered.norm().item() == pytest.approx(angle, abs=1e-6)
    else:
        torch.testing.assert_close(recovered, omega, atol=1e-9, rtol=0)


def test_exp_of_rotation_is_orthonormal():
    poses = lie.se3_exp(random_twists(50, seed=2, scale=3.0))
    rotation = poses[:, :3, :3]
    eye = torch.eye(3).expand_as(rotation)
    torch.testing.assert_close(rotation.transpose(-1, -2) @ rotation, eye, atol=1e-12, rtol=0)
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(50))


def test_invert_pose_composes_to_identity():
    world_T_cam = lie.se3_exp(random_twists(10, seed=3))
    cam_T_world = lie.invert_pose(world_T_cam)
    torch.testing.assert_close(world_T_cam @ cam_T_world, torch.eye(4).expand(10, 4, 4), atol=1e-12, rtol=0)


def test_gradcheck_se3_exp_at_and_near_identity():
    for xi in (torch.zeros(6), torch.full((6,), 1e-5), random_twists(1, seed=4, scale=0.5)[0]):
        xi = xi.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lie.se3_exp, (xi,), eps=1e-7, atol=1e-6)


def test_gradient_at_identity_is_finite_and_exact():
    # d(exp(xi) p)/d omega at 0 is -[p]_x, d/dv is I: the iNeRF starting point must have clean gradients.
    xi = torch.zeros(6, requires_grad=True)
    p = torch.tensor([1.0, 2.0, 3.0, 1.0])
    (lie.se3_exp(xi) @ p)[0].backward()
    torch.testing.assert_close(xi.grad, torch.tensor([1.0, 0.0, 0.0, 0.0, 3.0, -2.0]))


def test_gradcheck_so3_log_away_from_singularities():
    rotation = lie.so3_exp(torch.tensor([0.3, -0.2, 0.9])).requires_grad_(True)
    assert torch.autograd.gradcheck(lie.so3_log, (rotation,), eps=1e-7, atol=1e-6)


def test_quaternion_known_values_in_ros_order():
    # 90 degrees about z: (x, y, z, w) = (0, 0, sin 45, cos 45).
    q = torch.tensor([0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)])
    torch.testing.assert_close(lie.quat_to_matrix(q), lie.so3_exp(torch.tensor([0.0, 0.0, math.pi / 2])))
    torch.testing.assert_close(lie.quat_to_matrix(torch.tensor([0.0, 0.0, 0.0, 1.0])), torch.eye(3))


def test_quaternion_round_trip_and_sign_convention():
    rotations = lie.se3_exp(random_twists(200, seed=5, scale=math.pi))[:, :3, :3]
    quats = lie.matrix_to_quat(rotations)
    assert (quats[:, 3] >= 0).all()
    torch.testing.assert_close(quats.norm(dim=-1), torch.ones(200))
    torch.testing.assert_close(lie.quat_to_matrix(quats), rotations, atol=1e-12, rtol=0)


def test_quaternion_of_half_turns_is_stable():
    for axis in torch.eye(3):
        rotation = lie.so3_exp(axis * math.pi)
        torch.testing.assert_close(lie.quat_to_matrix(lie.matrix_to_quat(rotation)), rotation, atol=1e-12, rtol=0)


@pytest.mark.parametrize("bad", [[float("nan"), 0, 0, 1], [0, 0, 0, float("inf")], [0, 0, 0, 0]])
def test_bad_quaternions_raise(bad):
    with pytest.raises(ValueError, match="quaternion"):
        lie.quat_to_matrix(torch.tensor(bad, dtype=torch.float64))


def test_pose_error_known_values():
    world_T_gt = lie.make_pose(torch.eye(3), torch.tensor([1.0, 2.0, 3.0]))
    rotation = lie.so3_exp(torch.tensor([0.0, math.radians(5.0), 0.0]))
    world_T_est = lie.make_pose(rotation, torch.tensor([1.0, 2.0, 3.05]))
    rot_deg, trans = lie.pose_error(world_T_est, world_T_gt)
    assert rot_deg.item() == pytest.approx(5.0, abs=1e-9)
    assert trans.item() == pytest.approx(0.05, abs=1e-12)


def test_pose_error_small_angles_are_accurate():
    tiny = lie.so3_exp(torch.tensor([1e-7, 0.0, 0.0]))
    rot_deg, _ = lie.pose_error(lie.make_pose(tiny, torch.zeros(3)), torch.eye(4))
    assert rot_deg.item() == pytest.approx(math.degrees(1e-7), rel=1e-6)


def test_random_perturbation_respects_bound():
    g = torch.Generator().manual_seed(0)
    rotations = lie.random_rotation_about_random_axis(40.0, 500, generator=g)
    angles = lie.rotation_angle_deg(torch.eye(3).expand(500, 3, 3), rotations)
    assert angles.max().item() <= 40.0 + 1e-9 and angles.max().item() > 35.0


def test_shape_and_nan_checks():
    with pytest.raises(ValueError, match=r"\(\.\.\., 6\)"):
        lie.se3_exp(torch.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        lie.so3_log(torch.full((3, 3), float("nan")))
