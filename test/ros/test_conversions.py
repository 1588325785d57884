"""Image / CameraInfo / pose message conversions: known values, round trips and bad inputs."""
import math

import numpy as np
import pytest
from geometry_msgs.msg import Pose
from sensor_msgs.msg import CameraInfo, Image

from inerf_ros.camera import Intrinsics
from inerf_ros.ros import camera_info, image, pose_msgs


def make_image(array, encoding, step_padding=0, big_endian=False):
    array = np.asarray(array)
    h, w = array.shape[:2]
    raw = array.astype(array.dtype.newbyteorder(">" if big_endian else "<")).reshape(h, -1).view(np.uint8)
    rows = np.zeros((h, raw.shape[1] + step_padding), np.uint8)
    rows[:, : raw.shape[1]] = raw
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(big_endian), step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


@pytest.mark.parametrize("encoding, shape, dtype", [
    ("rgb8", (4, 5, 3), np.uint8), ("bgr8", (4, 5, 3), np.uint8), ("rgba8", (4, 5, 4), np.uint8),
    ("bgra8", (4, 5, 4), np.uint8), ("mono8", (4, 5), np.uint8), ("mono16", (4, 5), np.uint16),
    ("16UC1", (4, 5), np.uint16), ("32FC1", (4, 5), np.float32)])
def test_round_trip_every_encoding(encoding, shape, dtype):
    rng = np.random.default_rng(0)
    array = (rng.random(shape) * 1000).astype(dtype)
    msg = image.numpy_to_image(array, encoding)
    assert msg.step == shape[1] * (shape[2] if len(shape) == 3 else 1) * np.dtype(dtype).itemsize
    out = image.image_to_numpy(msg)
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_array_equal(out, array)


def test_unpadded_native_decode_is_zero_copy():
    msg = image.numpy_to_image(np.zeros((3, 4, 3), np.uint8), "rgb8")
    out = image.image_to_numpy(msg)
    assert not out.flags.owndata  # a view on the message buffer


def test_row_padding_is_dropped():
    array = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = image.image_to_numpy(make_image(array, "rgb8", step_padding=7))
    np.testing.assert_array_equal(out, array)


def test_big_endian_16_bit():
    array = np.array([[1, 256], [513, 65535]], dtype=np.uint16)
    out = image.image_to_numpy(make_image(array, "mono16", big_endian=True))
    np.testing.assert_array_equal(out, array)
    assert out.dtype == np.uint16


def test_bgr_and_mono_become_rgb():
    bgr = np.zeros((1, 2, 3), np.uint8)
    bgr[0, 0] = (255, 0, 0)  # blue in BGR
    rgb = image.image_to_rgb(image.numpy_to_image(bgr, "bgr8"))
    np.testing.assert_array_equal(rgb[0, 0], (0, 0, 255))
    mono = image.image_to_rgb(image.numpy_to_image(np.full((2, 2), 7, np.uint8), "mono8"))
    assert mono.shape == (2, 2, 3) and (mono == 7).all()


@pytest.mark.parametrize("mutate, match", [
    (lambda m: setattr(m, "encoding", "yuv422"), "unsupported image encoding 'yuv422'"),
    (lambda m: setattr(m, "step", 5), "step 5 is smaller than one row"),
    (lambda m: setattr(m, "height", 9), "expected height\\*step"),
    (lambda m: setattr(m, "width", 0), "zero size"),
])
def test_bad_images_raise_clear_errors(mutate, match):
    msg = image.numpy_to_image(np.zeros((4, 5, 3), np.uint8), "rgb8")
    mutate(msg)
    with pytest.raises(image.ImageEncodingError, match=match):
        image.image_to_numpy(msg)


def test_depth_is_not_a_colour_image():
    with pytest.raises(image.ImageEncodingError, match="not a colour encoding"):
        image.image_to_rgb(image.numpy_to_image(np.zeros((2, 2), np.float32), "32FC1"))


def test_label_mask_encoding_follows_the_largest_id():
    assert image.label_mask_to_image(np.array([[0, 3]])).encoding == "mono8"
    assert image.label_mask_to_image(np.array([[0, 300]])).encoding == "mono16"


def test_camera_info_round_trip_and_checks():
    intr = Intrinsics(640, 480, 902.19, 902.39, 342.35, 252.23)
    back = camera_info.camera_info_to_intrinsics(camera_info.intrinsics_to_camera_info(intr))
    assert back == intr
    camera_info.check_image_matches(back, 640, 480)
    with pytest.raises(camera_info.CameraInfoError, match="image is 320x240 but camera_info says 640x480"):
        camera_info.check_image_matches(back, 320, 240)
    uncalibrated = CameraInfo(width=640, height=480)
    with pytest.raises(camera_info.CameraInfoError, match="zero or negative focal length"):
        camera_info.camera_info_to_intrinsics(uncalibrated)
    no_size = camera_info.intrinsics_to_camera_info(intr)
    no_size.width = 0
    with pytest.raises(camera_info.CameraInfoError, match="zero image size"):
        camera_info.camera_info_to_intrinsics(no_size)


def test_camera_info_binning_halves_the_intrinsics():
    msg = camera_info.intrinsics_to_camera_info(Intrinsics(640, 480, 600.0, 600.0, 320.0, 240.0))
    msg.binning_x = msg.binning_y = 2
    intr = camera_info.camera_info_to_intrinsics(msg)
    assert (intr.width, intr.height, intr.fx, intr.cx) == (320, 240, 300.0, 160.0)


def test_pose_round_trip_and_known_quaternion():
    a_T_b = np.eye(4)
    a_T_b[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90 degrees about z
    a_T_b[:3, 3] = [1.0, 2.0, 3.0]
    msg = pose_msgs.matrix_to_pose(a_T_b)
    q = msg.orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], [0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)], atol=1e-12)
    np.testing.assert_allclose(pose_msgs.pose_to_matrix(msg), a_T_b, atol=1e-12)
    stamped = pose_msgs.matrix_to_transform_stamped(a_T_b, "nerf", "camera_optical", stamp=msg_stamp())
    assert (stamped.header.frame_id, stamped.child_frame_id) == ("nerf", "camera_optical")
    np.testing.assert_allclose(pose_msgs.transform_to_matrix(stamped.transform), a_T_b, atol=1e-12)


def msg_stamp():
    from builtin_interfaces.msg import Time
    return Time(sec=12, nanosec=5)


def test_nan_quaternion_and_nan_pose_raise():
    pose = Pose()
    pose.orientation.w = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        pose_msgs.pose_to_matrix(pose)
    bad = np.eye(4)
    bad[0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        pose_msgs.matrix_to_pose(bad)
    with pytest.raises(ValueError, match="covariance"):
        pose_msgs.pose_with_covariance_stamped(np.eye(4), np.full((6, 6), np.nan), "nerf", msg_stamp())


def test_static_tf_reaches_a_late_subscriber_and_accumulates(ros_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from tf2_msgs.msg import TFMessage

    from ros_test_utils import spin_until
    from inerf_ros.ros.tf import TF_STATIC_QOS, StaticTransformBroadcaster

    node = rclpy.create_node("static_tf_test", context=ros_context)
    broadcaster = StaticTransformBroadcaster(node)
    broadcaster.send_transform(pose_msgs.matrix_to_transform_stamped(np.eye(4), "world", "nerf", msg_stamp()))
    broadcaster.send_transform(pose_msgs.matrix_to_transform_stamped(np.eye(4), "world", "table", msg_stamp()))
    received = []
    late = rclpy.create_node("late_listener", context=ros_context)  # subscribes after both were sent
    late.create_subscription(TFMessage, "/tf_static", received.append, TF_STATIC_QOS)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(late)
    try:
        assert spin_until(executor, lambda: received, timeout_s=10)
        assert sorted(t.child_frame_id for t in received[-1].transforms) == ["nerf", "table"]
    finally:
        node.destroy_node()
        late.destroy_node()
