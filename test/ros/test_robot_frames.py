"""inerf_node in a robot's TF tree, over real DDS: the nerf -> base correction instead of nerf -> camera.

A probe plays the robot (its chain base_link -> camera_optical on TF, as robot_state_publisher would)
and the camera; the node must look the chain up at the image's stamp, publish the correction to the
base (never a second parent for the camera), start from the kinematics when no prior comes, and say
why when the chain cannot be looked up.
"""
import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from tf2_msgs.msg import TFMessage

from ros_test_utils import spin_until
from test_nodes_dds import FAST, STAMP_S, Probe, camera_prior, tiny_pipeline
from inerf_ros.ros import pose_msgs
from inerf_ros.ros.robot_frames import root_covariance
from inerf_ros.ros.stamps import seconds_to_stamp
from inerf_ros.ros.tf import TF_STATIC_QOS


def _base_T_cam() -> np.ndarray:
    """Where the robot's chain puts the camera (metres): 0.4 m out, turned 30 deg about the base's z."""
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    pose[:3, 3] = [0.4, 0.1, 0.5]
    return pose


@pytest.fixture
def robot_graph(ros_context):
    from inerf_ros.nodes.inerf_node import InerfNode

    def make(*extra):
        executor = SingleThreadedExecutor(context=ros_context)
        inerf = InerfNode(tiny_pipeline(), context=ros_context, parameter_overrides=FAST + [
            Parameter("base_frame", value="base_link"), Parameter("correction_rate_hz", value=50.0),
            Parameter("tf_timeout_s", value=0.5),
            Parameter("max_tracking_loss", value=10.0), *extra])  # an untrained field: trust every estimate
        probe = Probe(ros_context)
        static_pub = probe.node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        for node in (inerf, probe.node):
            executor.add_node(node)
        made.append((executor, inerf, probe))
        return executor, inerf, probe, static_pub

    made = []
    yield make
    for executor, inerf, probe in made:
        inerf.close()
        for node in (inerf, probe.node):
            executor.remove_node(node)
            node.destroy_node()


def _publish_chain(static_pub):
    static_pub.publish(TFMessage(transforms=[pose_msgs.matrix_to_transform_stamped(
        _base_T_cam(), "base_link", "camera_optical", seconds_to_stamp(STAMP_S))]))


def _transforms(probe, child):
    return [t for msg in probe.received["tf"] for t in msg.transforms if t.child_frame_id == child]


def test_the_correction_goes_to_the_base_and_the_camera_keeps_its_one_parent(robot_graph):
    executor, _, probe, static_pub = robot_graph()
    spin_until(executor, lambda: False, timeout_s=0.5)
    _publish_chain(static_pub)
    probe.send_frame(prior=camera_prior())
    assert spin_until(executor, lambda: probe.received["pose"] and _transforms(probe, "base_link"), timeout_s=20)
    assert not _transforms(probe, "camera_optical")  # the robot's chain is the camera's only parent
    correction = _transforms(probe, "base_link")[-1]
    assert correction.header.frame_id == "nerf"
    nerf_T_base = pose_msgs.transform_to_matrix(correction.transform)
    nerf_T_cam, _ = pose_msgs.pose_with_covariance_to_numpy(probe.received["pose"][0])
    # the first trusted estimate anchors the filter: nerf -> base -> camera is the estimate exactly
    np.testing.assert_allclose(nerf_T_base @ _base_T_cam(), nerf_T_cam, atol=1e-6)


def test_without_a_prior_the_believed_placement_and_the_chain_start_the_estimate(robot_graph):
    nerf_T_base = camera_prior() @ np.linalg.inv(_base_T_cam())  # puts the camera at camera_prior()
    quat = pose_msgs.matrix_to_pose(nerf_T_base).orientation
    values = [float(v) for v in nerf_T_base[:3, 3]] + [quat.x, quat.y, quat.z, quat.w]
    executor, _, probe, static_pub = robot_graph(Parameter("initial_nerf_T_base", value=values),
                                                 Parameter("prior_wait_s", value=0.1))
    spin_until(executor, lambda: False, timeout_s=0.5)
    _publish_chain(static_pub)
    # before any estimate (and any image) TF already answers nerf -> base with the believed placement
    assert spin_until(executor, lambda: _transforms(probe, "base_link"), timeout_s=5)
    probe.send_frame()
    assert spin_until(executor, lambda: probe.received["status"] and probe.received["pose"], timeout_s=20)
    status = probe.received["status"][-1]
    assert status.prior_source == "kinematics", status.message
    nerf_T_cam, _ = pose_msgs.pose_with_covariance_to_numpy(probe.received["pose"][0])
    assert np.linalg.norm(nerf_T_cam[:3, 3] - camera_prior()[:3, 3]) < 0.5  # 3 small steps from that start


def test_a_missing_chain_is_reported_and_publishes_no_correction(robot_graph):
    executor, _, probe, _ = robot_graph(Parameter("tf_timeout_s", value=0.05))
    spin_until(executor, lambda: False, timeout_s=0.5)
    probe.send_frame(prior=camera_prior())  # nobody publishes base_link -> camera_optical
    assert spin_until(executor, lambda: probe.received["status"], timeout_s=20)
    status = probe.received["status"][-1]
    assert "no kinematic chain base_link -> camera_optical" in status.message
    spin_until(executor, lambda: False, timeout_s=0.3)
    assert not _transforms(probe, "base_link") and not _transforms(probe, "camera_optical")


def test_root_covariance_carries_a_camera_covariance_through_the_chain():
    """A pure rotation uncertainty about the camera moves the base (0.4 m away) by the lever arm."""
    nerf_T_cam, base_T_cam = camera_prior(), _base_T_cam()
    covariance = np.zeros((6, 6))
    covariance[5, 5] = 1e-4  # 0.01 rad about the NeRF z axis, at the camera
    base = root_covariance(covariance, nerf_T_cam, base_T_cam)
    lever = np.linalg.norm(np.linalg.inv(base_T_cam)[:3, 3][:2])  # the base's distance from the camera's axis
    assert np.trace(base[3:, 3:]) == pytest.approx(1e-4)
    assert np.trace(base[:3, :3]) == pytest.approx(1e-4 * lever ** 2, rel=1e-6)


def _nan_chain():
    from geometry_msgs.msg import TransformStamped

    transform = TransformStamped()
    transform.header.frame_id, transform.child_frame_id = "base_link", "camera_optical"
    transform.header.stamp = seconds_to_stamp(STAMP_S)
    transform.transform.rotation.w = float("nan")  # a joint state with NaN reaches TF as this
    return transform


@pytest.mark.parametrize("fault", ["NaN in the chain", "stale chain", "wrong base_frame"])
def test_a_bad_chain_never_builds_a_correction_and_says_why(robot_graph, fault):
    """Each falls back to the PoseCNN prior (the frame is still localised) with the reason in the status."""
    from inerf_ros.ros.tf import TF_QOS

    extra = [Parameter("tf_timeout_s", value=0.2)]
    if fault == "wrong base_frame":
        extra.append(Parameter("base_frame", value="base_link_typo"))
    executor, _, probe, static_pub = robot_graph(*extra)
    tf_pub = probe.node.create_publisher(TFMessage, "/tf", TF_QOS)
    spin_until(executor, lambda: False, timeout_s=0.5)
    if fault == "NaN in the chain":
        static_pub.publish(TFMessage(transforms=[_nan_chain()]))
    elif fault == "stale chain":  # the arm's last joint state is 5 s older than the image
        tf_pub.publish(TFMessage(transforms=[pose_msgs.matrix_to_transform_stamped(
            _base_T_cam(), "base_link", "camera_optical", seconds_to_stamp(STAMP_S - 5.0))]))
    else:
        _publish_chain(static_pub)
    probe.send_frame(prior=camera_prior())
    assert spin_until(executor, lambda: probe.received["status"] and probe.received["pose"], timeout_s=20)
    status = probe.received["status"][-1]
    expected = {"NaN in the chain": "no kinematic chain", "stale chain": "extrapolation into the future",
                "wrong base_frame": "base_link_typo"}[fault]
    assert expected in status.message and status.prior_source == "posecnn", status.message
    spin_until(executor, lambda: False, timeout_s=0.3)
    assert not [t for msg in probe.received["tf"] for t in msg.transforms if t.header.frame_id == "nerf"]


def test_time_jumping_back_resets_the_correction_and_the_node_goes_on(robot_graph):
    executor, inerf, probe, static_pub = robot_graph()
    spin_until(executor, lambda: False, timeout_s=0.5)
    _publish_chain(static_pub)
    probe.send_frame(prior=camera_prior())
    assert spin_until(executor, lambda: len(probe.received["pose"]) >= 1, timeout_s=20)
    assert inerf._robot.nerf_T_root is not None  # the first estimate anchored the correction
    probe.send_frame(stamp_s=STAMP_S - 100.0, prior=camera_prior())  # a bag loop
    assert spin_until(executor, lambda: len(probe.received["status"]) >= 2, timeout_s=20)
    assert "time jumped back" in probe.received["status"][-1].message
    assert spin_until(executor, lambda: len(probe.received["pose"]) >= 2, timeout_s=20)


def _world_T_base() -> np.ndarray:
    """A URDF's fixed joint world -> base_link (the arm stands 0.2 m along x, turned 90 deg)."""
    pose = np.eye(4)
    pose[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    pose[:3, 3] = [0.2, 0.0, 0.0]
    return pose


@pytest.mark.parametrize("urdf_root", ["world", "robot_world"])
def test_a_urdf_parent_of_the_base_moves_the_correction_and_tf_stays_a_tree(robot_graph, urdf_root):
    """A UR/Franka URDF has ``world -> base_link``: nerf -> base_link would give base_link a second parent.

    ``world`` is also inerf_node's world_frame, so the correction becomes ``world -> nerf`` (no static
    world -> nerf); another root name gets ``nerf -> robot_world`` and the usual static world -> nerf.
    Either way nerf -> ... -> camera is the estimate, and the believed base placement is carried over.
    """
    initial_nerf_T_base = camera_prior() @ np.linalg.inv(_base_T_cam())
    quat = pose_msgs.matrix_to_pose(initial_nerf_T_base).orientation
    values = [float(v) for v in initial_nerf_T_base[:3, 3]] + [quat.x, quat.y, quat.z, quat.w]
    executor, _, probe, static_pub = robot_graph(Parameter("initial_nerf_T_base", value=values))
    statics = []
    probe.node.create_subscription(TFMessage, "/tf_static", statics.append, TF_STATIC_QOS)
    spin_until(executor, lambda: False, timeout_s=0.5)
    static_pub.publish(TFMessage(transforms=[
        pose_msgs.matrix_to_transform_stamped(_world_T_base(), urdf_root, "base_link", seconds_to_stamp(STAMP_S)),
        pose_msgs.matrix_to_transform_stamped(_base_T_cam(), "base_link", "camera_optical",
                                              seconds_to_stamp(STAMP_S))]))
    edge = ("world", "nerf") if urdf_root == "world" else ("nerf", "robot_world")

    def corrections():
        return [t for msg in probe.received["tf"] for t in msg.transforms
                if (t.header.frame_id, t.child_frame_id) == edge]

    def nerf_T_root(transform):
        matrix = pose_msgs.transform_to_matrix(transform.transform)
        return np.linalg.inv(matrix) if urdf_root == "world" else matrix

    assert spin_until(executor, corrections, timeout_s=5)  # the believed placement, before any image
    np.testing.assert_allclose(nerf_T_root(corrections()[0]) @ _world_T_base(), initial_nerf_T_base, atol=1e-6)
    probe.send_frame(prior=camera_prior())
    assert spin_until(executor, lambda: probe.received["pose"] and probe.received["status"], timeout_s=20)
    spin_until(executor, lambda: False, timeout_s=0.3)
    nerf_T_cam, _ = pose_msgs.pose_with_covariance_to_numpy(probe.received["pose"][0])
    np.testing.assert_allclose(nerf_T_root(corrections()[-1]) @ _world_T_base() @ _base_T_cam(), nerf_T_cam,
                               atol=1e-5)
    children = [t.child_frame_id for msg in probe.received["tf"] for t in msg.transforms]
    assert "base_link" not in children and "camera_optical" not in children  # the robot's frames keep one parent
    static_edges = {(t.header.frame_id, t.child_frame_id) for msg in statics for t in msg.transforms}
    assert (("world", "nerf") in static_edges) == (urdf_root != "world")
    assert f"correction at '{urdf_root}'" in probe.received["status"][-1].message


def test_a_measured_initial_placement_is_a_prior_the_first_estimate_does_not_replace(robot_graph):
    """With initial_nerf_T_base_sigma the filter starts from the placement: an estimate 5 cm away moves it little."""
    believed = camera_prior() @ np.linalg.inv(_base_T_cam())
    believed[:3, 3] += [0.05, 0.0, 0.0]
    quat = pose_msgs.matrix_to_pose(believed).orientation
    values = [float(v) for v in believed[:3, 3]] + [quat.x, quat.y, quat.z, quat.w]
    executor, inerf, probe, static_pub = robot_graph(Parameter("initial_nerf_T_base", value=values),
                                                     Parameter("initial_nerf_T_base_sigma", value=[0.002, 0.1]))
    spin_until(executor, lambda: False, timeout_s=0.5)
    _publish_chain(static_pub)
    probe.send_frame(prior=camera_prior())
    assert spin_until(executor, lambda: probe.received["pose"] and probe.received["status"], timeout_s=20)
    nerf_T_cam, _ = pose_msgs.pose_with_covariance_to_numpy(probe.received["pose"][0])
    assert np.linalg.norm(nerf_T_cam[:3, 3] - (believed @ _base_T_cam())[:3, 3]) > 0.02  # the estimate disagrees
    assert inerf._robot._filter.initialized
    assert np.linalg.norm(inerf._robot.nerf_T_root[:3, 3] - believed[:3, 3]) < 0.005


def test_initial_sigma_needs_two_positive_numbers_and_a_placement():
    from inerf_ros.ros.robot_frames import _initial_covariance

    assert _initial_covariance([], None) is None
    np.testing.assert_allclose(np.diag(_initial_covariance([0.01, 1.0], np.eye(4))),
                               [1e-4] * 3 + [np.radians(1.0) ** 2] * 3)
    for bad in ([0.01], [0.01, -1.0], [float("nan"), 1.0]):
        with pytest.raises(ValueError, match="2 positive numbers"):
            _initial_covariance(bad, np.eye(4))
    with pytest.raises(ValueError, match="initial_nerf_T_base is not"):
        _initial_covariance([0.01, 1.0], None)
