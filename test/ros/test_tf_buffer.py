"""The TF buffer and listener: the fallback against hand-computed cases, tf2_ros on the same cases
where it imports, and the listener over real DDS.
"""
import math
import threading
import time

import numpy as np
import pytest
import rclpy
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.time import Time
from tf2_msgs.msg import TFMessage

from ros_test_utils import spin_until
from inerf_ros import tf_tree
from inerf_ros.ros import tf
from inerf_ros.ros.pose_msgs import matrix_to_transform_stamped, transform_to_matrix
from inerf_ros.ros.stamps import seconds_to_stamp

T0 = 1700000000.0  # wall-clock magnitudes, where a float second has only ~0.2 us resolution


def rot_z(angle_rad, translation=(0.0, 0.0, 0.0)):
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    out = np.eye(4)
    out[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    out[:3, 3] = translation
    return out


def stamped(parent, child, stamp_s, parent_T_child):
    return matrix_to_transform_stamped(parent_T_child, parent, child, seconds_to_stamp(stamp_s))


def at(stamp_s):
    return Time.from_msg(seconds_to_stamp(stamp_s))


def make_buffer(kind):
    if kind == "fallback":
        return tf.FallbackBuffer()
    tf2_ros = pytest.importorskip("tf2_ros", reason="tf2_ros does not import here (ROS 2 from PyPI has none)")
    return tf2_ros.Buffer()


def expected_errors(kind):
    """(not found, connectivity, extrapolation) exception types of each implementation."""
    if kind == "fallback":
        return tf_tree.FrameNotFoundError, tf_tree.ConnectivityError, tf_tree.ExtrapolationError
    import tf2_ros

    return tf2_ros.LookupException, tf2_ros.ConnectivityException, tf2_ros.ExtrapolationException


def matrix(buffer, target, source, stamp_s):
    time_arg = Time() if stamp_s == 0 else at(stamp_s)
    return transform_to_matrix(buffer.lookup_transform(target, source, time_arg).transform)


KINDS = ["fallback", "tf2_ros"]


@pytest.fixture(params=KINDS)
def robot(request):
    """nerf -(static)-> base -> tool (dynamic: two samples) -> cam (static), and a detached island."""
    buffer = make_buffer(request.param)
    buffer.set_transform_static(stamped("nerf", "base", T0, rot_z(0.0, (0.0, 0.0, 1.0))), "test")
    buffer.set_transform(stamped("base", "tool", T0 + 1.0, rot_z(0.0, (0.0, 0.0, 0.0))), "test")
    buffer.set_transform(stamped("base", "tool", T0 + 2.0, rot_z(math.pi / 2, (2.0, 0.0, 0.0))), "test")
    buffer.set_transform_static(stamped("tool", "cam", T0, rot_z(0.0, (0.1, 0.0, 0.0))), "test")
    buffer.set_transform_static(stamped("island", "rock", T0, np.eye(4)), "test")
    return request.param, buffer


def test_chain_interpolates_at_the_midpoint(robot):
    _, buffer = robot
    # At T0 + 1.5: tool is at (1, 0, 0) turned 45 deg, so cam (0.1 along tool x) is at (1 + 0.1 cos 45, 0.1 sin 45).
    nerf_T_cam = matrix(buffer, "nerf", "cam", T0 + 1.5)
    expected = rot_z(math.pi / 4, (1.0 + 0.1 * math.sqrt(0.5), 0.1 * math.sqrt(0.5), 1.0))
    np.testing.assert_allclose(nerf_T_cam, expected, atol=1e-6)  # 1e-6: the stamp's float resolution
    np.testing.assert_allclose(matrix(buffer, "cam", "nerf", T0 + 1.5) @ expected, np.eye(4), atol=1e-6)


def test_time_zero_is_the_latest_common_time(robot):
    _, buffer = robot
    msg = buffer.lookup_transform("nerf", "cam", Time())
    assert abs(msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec - (T0 + 2.0)) < 1e-6
    assert (msg.header.frame_id, msg.child_frame_id) == ("nerf", "cam")
    np.testing.assert_allclose(transform_to_matrix(msg.transform), rot_z(math.pi / 2, (2.0, 0.1, 1.0)), atol=1e-9)
    np.testing.assert_allclose(matrix(buffer, "tool", "cam", 0), rot_z(0.0, (0.1, 0.0, 0.0)), atol=1e-12)


def test_errors_match(robot):
    kind, buffer = robot
    not_found, connectivity, extrapolation = expected_errors(kind)
    with pytest.raises(not_found):
        buffer.lookup_transform("nerf", "nowhere", at(T0 + 1.5))
    with pytest.raises(connectivity):
        buffer.lookup_transform("nerf", "rock", at(T0 + 1.5))
    with pytest.raises(extrapolation):
        buffer.lookup_transform("nerf", "cam", at(T0 + 2.5))
    with pytest.raises(extrapolation):
        buffer.lookup_transform("cam", "nerf", at(T0 + 0.5))
    for error in (not_found, connectivity, extrapolation):
        assert issubclass(error, tf.TRANSFORM_ERRORS)
    assert buffer.can_transform("nerf", "cam", at(T0 + 1.5))
    assert not buffer.can_transform("nerf", "cam", at(T0 + 2.5))


def test_a_second_parent_holds_the_older_sample(robot):
    _, buffer = robot
    buffer.set_transform(stamped("nerf", "tool", T0 + 3.0, rot_z(0.0, (5.0, 0.0, 0.0))), "hijacker")
    # Between T0+2 (parent base) and T0+3 (parent nerf) tf2 holds the older sample, no interpolation.
    np.testing.assert_allclose(matrix(buffer, "nerf", "tool", T0 + 2.5), rot_z(math.pi / 2, (2.0, 0.0, 1.0)),
                               atol=1e-9)
    np.testing.assert_allclose(matrix(buffer, "nerf", "tool", T0 + 3.0), rot_z(0.0, (5.0, 0.0, 0.0)), atol=1e-9)


def test_fallback_records_parents_and_clears_on_a_jump_back():
    jumps = []
    buffer = tf.FallbackBuffer(on_time_jump=jumps.append)
    buffer.set_transform_static(stamped("nerf", "base", T0, np.eye(4)), "test")
    buffer.set_transform(stamped("base", "tool", T0 + 10.0, np.eye(4)), "test")
    buffer.set_transform(stamped("nerf", "tool", T0 + 10.5, np.eye(4)), "test")
    assert buffer.tree.multi_parent_frames() == {"tool"}
    buffer.set_transform(stamped("base", "tool", T0, rot_z(0.0, (1.0, 0.0, 0.0))), "test")  # the bag looped
    assert buffer.time_jumps == 1 and len(jumps) == 1 and jumps[0].frame == "tool"
    assert not buffer.can_transform("nerf", "tool", at(T0 + 10.0))
    np.testing.assert_allclose(matrix(buffer, "nerf", "tool", T0), rot_z(0.0, (1.0, 0.0, 0.0)), atol=1e-12)
    nan = stamped("base", "tool", T0 + 1.0, np.eye(4))
    nan.transform.translation.x = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        buffer.set_transform(nan, "test")


def test_fallback_timeout_waits_for_the_data():
    buffer = tf.FallbackBuffer()
    buffer.set_transform(stamped("base", "tool", T0, np.eye(4)), "test")
    late = threading.Timer(0.2, buffer.set_transform,
                           (stamped("base", "tool", T0 + 1.0, rot_z(0.0, (1.0, 0.0, 0.0))), "test"))
    start = time.monotonic()
    late.start()
    try:
        base_T_tool = tf.lookup_matrix(buffer, "base", "tool", T0 + 0.5, timeout_s=5.0)
    finally:
        late.join()
    waited = time.monotonic() - start
    assert 0.15 < waited < 2.0, waited
    np.testing.assert_allclose(base_T_tool[:3, 3], [0.5, 0.0, 0.0], atol=1e-6)
    start = time.monotonic()
    with pytest.raises(tf_tree.FutureExtrapolationError, match="future"):
        tf.lookup_matrix(buffer, "base", "tool", T0 + 2.0, timeout_s=0.1)
    assert 0.09 < time.monotonic() - start < 1.0
    assert not buffer.can_transform("base", "tool", at(T0 + 2.0), timeout=Duration(seconds=0.05))


@pytest.mark.ros
def test_listener_hears_tf_and_tf_static_over_dds(ros_context):
    talker = rclpy.create_node("tf_talker", context=ros_context)
    listener_node = rclpy.create_node("tf_listener", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    try:
        static_pub = talker.create_publisher(TFMessage, "/tf_static", tf.TF_STATIC_QOS)
        tf_pub = talker.create_publisher(TFMessage, "/tf", tf.TF_QOS)
        # Latched before the listener exists: TRANSIENT_LOCAL must still deliver it.
        static_pub.publish(TFMessage(transforms=[stamped("tool", "cam", T0, rot_z(0.0, (0.1, 0.0, 0.0)))]))
        buffer = tf.FallbackBuffer(node=listener_node)
        listener = tf.FallbackTransformListener(buffer, listener_node)
        executor.add_node(talker)
        executor.add_node(listener_node)
        bad = stamped("base", "tool", T0 + 0.5, np.eye(4))
        bad.transform.rotation.w = 2.0  # a malformed message from another node is dropped, not raised
        tf_pub.publish(TFMessage(transforms=[bad]))

        def publish_and_check():
            for stamp in (T0 + 1.0, T0 + 2.0):
                tf_pub.publish(TFMessage(transforms=[stamped("base", "tool", stamp, rot_z(0.0, (stamp - T0, 0, 0)))]))
            return buffer.can_transform("base", "cam", at(T0 + 1.5))

        assert spin_until(executor, publish_and_check, timeout_s=10.0)
        np.testing.assert_allclose(tf.lookup_matrix(buffer, "base", "cam", T0 + 1.5)[:3, 3], [1.6, 0.0, 0.0],
                                   atol=1e-6)
        assert buffer.tree.parents_seen("tool") == {"base"}
        assert not buffer.can_transform("base", "tool", at(T0 + 0.5))  # the malformed sample never got in
        listener.unregister()
    finally:
        executor.shutdown()
        talker.destroy_node()
        listener_node.destroy_node()


@pytest.mark.ros
def test_listener_spin_thread_lets_a_lookup_wait(ros_context):
    talker = rclpy.create_node("tf_talker2", context=ros_context)
    listener_node = rclpy.create_node("tf_listener2", context=ros_context)
    try:
        buffer = tf.FallbackBuffer()
        listener = tf.FallbackTransformListener(buffer, listener_node, spin_thread=True)
        static_pub = talker.create_publisher(TFMessage, "/tf_static", tf.TF_STATIC_QOS)
        static_pub.publish(TFMessage(transforms=[stamped("base", "cam", T0, rot_z(0.0, (0.0, 0.3, 0.0)))]))
        # Nobody spins here: the listener's own thread must deliver while lookup_transform waits.
        msg = buffer.lookup_transform("base", "cam", Time(), timeout=Duration(seconds=10.0))
        np.testing.assert_allclose(transform_to_matrix(msg.transform)[:3, 3], [0.0, 0.3, 0.0], atol=1e-12)
        listener.unregister()
    finally:
        talker.destroy_node()
        listener_node.destroy_node()
