"""Real nodes over real DDS in this process: Image + CameraInfo in, ObjectPoseArray and TF out.

The networks here are small and untrained: these tests check the plumbing (topics, QoS, stamps,
frames, message contents and the node's survival), not accuracy (see test_localize_scene.py).
"""
import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from ros_test_utils import spin_until
from inerf_ros.camera import Intrinsics
from inerf_ros.msg import LocalizationStatus, ObjectPoseArray
from inerf_ros.ros import camera_info, image, pose_msgs
from inerf_ros.ros.stamps import seconds_to_stamp
from inerf_ros.ros.tf import TF_QOS
from inerf_ros.testing import tiny_detector, tiny_pipeline  # noqa: F401 - re-exported to the tests

INTRINSICS = Intrinsics(64, 48, 60.0, 60.0, 31.5, 23.5)
STAMP_S = 1700000000.25


# The untrained network detects nothing: this known object must come through the node intact.
KNOWN_CAM_T_OBJ = np.array([[0.0, -1.0, 0.0, 0.1], [1.0, 0.0, 0.0, -0.05], [0.0, 0.0, 1.0, 0.8], [0.0, 0.0, 0.0, 1.0]])


class DetectorWithKnownObject:
    """The tiny detector (its label mask and anything it finds) plus one known object."""

    def __init__(self, detector):
        self._detector = detector

    def __getattr__(self, name):
        return getattr(self._detector, name)

    def detect(self, image_rgb, K):
        from inerf_ros.posecnn.types import Detection, DetectionResult

        result = self._detector.detect(image_rgb, K)
        known = Detection(class_id=2, class_name="box", score=0.75, cam_T_obj=KNOWN_CAM_T_OBJ, visible_fraction=0.5)
        return DetectionResult(objects=result.objects + [known], label_mask=result.label_mask)


FAST = [Parameter("max_iterations", value=3), Parameter("num_rays", value=64),
        Parameter("covariance_rays", value=64), Parameter("overlay_scale", value=0.25),
        Parameter("prior_wait_s", value=2.0)]


class Probe:
    """A test node: publishes camera data and a prior, records everything the pipeline sends back."""

    def __init__(self, context):
        self.node = rclpy.create_node("probe", context=context)
        self.image_pub = self.node.create_publisher(Image, "image_raw", qos_profile_sensor_data)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.prior_pub = self.node.create_publisher(PoseWithCovarianceStamped, "camera_prior", QoSProfile(depth=5))
        self.received = {"detections": [], "tf": [], "status": [], "pose": [], "overlay": []}
        self.node.create_subscription(ObjectPoseArray, "detections", self.received["detections"].append,
                                      QoSProfile(depth=5))
        self.node.create_subscription(TFMessage, "/tf", self.received["tf"].append, TF_QOS)
        self.node.create_subscription(LocalizationStatus, "localization_status", self.received["status"].append,
                                      QoSProfile(depth=5))
        self.node.create_subscription(PoseWithCovarianceStamped, "camera_pose", self.received["pose"].append,
                                      QoSProfile(depth=5))
        self.node.create_subscription(Image, "overlay", self.received["overlay"].append, qos_profile_sensor_data)

    def send_frame(self, stamp_s=STAMP_S, rgb=None, encoding="rgb8", info=INTRINSICS, prior=None):
        stamp = seconds_to_stamp(stamp_s)
        header_info = camera_info.intrinsics_to_camera_info(info)
        header_info.header.stamp, header_info.header.frame_id = stamp, "camera_optical"
        self.info_pub.publish(header_info)
        if prior is not None:
            self.prior_pub.publish(pose_msgs.pose_with_covariance_stamped(prior, np.eye(6) * 1e-3, "nerf", stamp))
        rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8) if rgb is None else rgb
        msg = image.numpy_to_image(rgb, encoding)
        msg.header.stamp, msg.header.frame_id = stamp, "camera_optical"
        self.image_pub.publish(msg)


@pytest.fixture
def graph(ros_context):
    from inerf_ros.nodes.inerf_node import InerfNode
    from inerf_ros.nodes.posecnn_node import PosecnnNode

    executor = SingleThreadedExecutor(context=ros_context)
    posecnn = PosecnnNode(DetectorWithKnownObject(tiny_detector()), context=ros_context, parameter_overrides=[
        Parameter("score_threshold", value=0.0)])
    inerf = InerfNode(tiny_pipeline(), context=ros_context, parameter_overrides=FAST)
    probe = Probe(ros_context)
    for node in (posecnn, inerf, probe.node):
        executor.add_node(node)
    yield executor, probe, posecnn, inerf
    inerf.close()
    for node in (posecnn, inerf, probe.node):
        executor.remove_node(node)
        node.destroy_node()


def camera_prior():
    nerf_T_cam = np.eye(4)
    nerf_T_cam[:3, 3] = [0.0, 0.0, -3.0]  # 3 units in front of the box, looking along +z (optical)
    return nerf_T_cam


def test_image_and_camera_info_in_detections_and_tf_out(graph):
    executor, probe, _, _ = graph
    spin_until(executor, lambda: False, timeout_s=0.5)  # discovery
    probe.send_frame(prior=camera_prior())
    assert spin_until(executor, lambda: probe.received["detections"] and probe.received["tf"], timeout_s=20)

    detections = probe.received["detections"][0]
    assert (detections.header.stamp.sec, detections.header.stamp.nanosec) == (1700000000, 250000000)
    assert detections.header.frame_id == "camera_optical"
    assert (detections.label_image.width, detections.label_image.height) == (64, 48)
    assert detections.label_image.encoding == "mono8"
    known = [o for o in detections.objects if o.score == 0.75]
    assert len(known) == 1 and (known[0].class_id, known[0].class_name) == (2, "box")
    assert known[0].visible_fraction == pytest.approx(0.5)
    np.testing.assert_allclose(pose_msgs.pose_to_matrix(known[0].pose), KNOWN_CAM_T_OBJ, atol=1e-12)
    assert all(0 <= o.score <= 1 and o.class_name in ("mug", "box") for o in detections.objects)

    transform = probe.received["tf"][0].transforms[0]
    assert transform.header.frame_id == "nerf" and transform.child_frame_id == "camera_optical"
    assert transform.header.stamp == detections.header.stamp  # outputs carry the input's stamp
    nerf_T_cam = pose_msgs.transform_to_matrix(transform.transform)
    assert np.isfinite(nerf_T_cam).all()
    assert np.linalg.norm(nerf_T_cam[:3, 3] - camera_prior()[:3, 3]) < 0.5  # 3 small steps from the prior

    assert spin_until(executor, lambda: probe.received["status"] and probe.received["overlay"], timeout_s=10)
    status = probe.received["status"][0]
    assert status.iterations == 3 and status.prior_source == "posecnn" and status.num_hypotheses == 1
    overlay = probe.received["overlay"][0]
    assert (overlay.width, overlay.height, overlay.encoding) == (16, 12, "rgb8")
    covariance = np.array(probe.received["pose"][0].pose.covariance).reshape(6, 6)
    assert np.allclose(covariance, covariance.T) and np.isfinite(covariance).all()


def test_bad_frames_are_reported_and_the_node_keeps_running(graph):
    executor, probe, _, _ = graph
    spin_until(executor, lambda: False, timeout_s=0.5)
    probe.send_frame(stamp_s=STAMP_S, rgb=np.zeros((48, 64), np.float32), encoding="32FC1", prior=camera_prior())
    assert spin_until(executor, lambda: probe.received["status"], timeout_s=10)
    assert "not a colour encoding" in probe.received["status"][-1].message

    small = Intrinsics(32, 24, 30.0, 30.0, 15.5, 11.5)
    probe.send_frame(stamp_s=STAMP_S + 1, info=small, prior=camera_prior())
    assert spin_until(executor, lambda: len(probe.received["status"]) >= 2, timeout_s=10)
    assert "image is 64x48 but camera_info says 32x24" in probe.received["status"][-1].message

    nan_prior = camera_prior()
    nan_prior[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):  # a NaN prior cannot even be encoded by our helpers
        pose_msgs.matrix_to_pose(nan_prior)

    probe.send_frame(stamp_s=STAMP_S + 2, prior=camera_prior())  # a good frame is still localized
    assert spin_until(executor, lambda: probe.received["tf"], timeout_s=20)
    assert probe.received["tf"][-1].transforms[0].header.stamp.sec == 1700000002


def test_no_prior_is_an_outcome_not_a_crash(graph):
    executor, probe, _, inerf = graph
    inerf.set_parameters([Parameter("prior_wait_s", value=0.1)])
    spin_until(executor, lambda: False, timeout_s=0.5)
    probe.send_frame(stamp_s=STAMP_S + 10)
    assert spin_until(executor, lambda: probe.received["status"], timeout_s=10)
    status = probe.received["status"][-1]
    assert status.prior_source == "none" and "no prior" in status.message
    assert not probe.received["tf"]


def test_parameters_are_validated_at_run_time(graph):
    _, _, _, inerf = graph
    result = inerf.set_parameters([Parameter("max_iterations", value=0)])[0]
    assert not result.successful and "out of range" in result.reason  # the descriptor's range
    result = inerf.set_parameters([Parameter("strategy", value="grid")])[0]
    assert not result.successful and "unknown sampling strategy" in result.reason
    assert inerf.set_parameters([Parameter("num_rays", value=128)])[0].successful
    assert inerf.set_parameters([Parameter("model_dir", value="/elsewhere")])[0].successful is False
    posecnn = graph[2]
    result = posecnn.set_parameters([Parameter("silhouette_iterations", value=0)])[0]
    assert not result.successful and "out of range" in result.reason
    assert posecnn.set_parameters([Parameter("silhouette_refine", value=False)])[0].successful
    assert posecnn._detector.refiner.config.silhouette_refine is False   # applied to the running detector


def test_nan_prior_on_the_wire_and_stale_prior_are_refused(graph):
    executor, probe, _, inerf = graph
    inerf.set_parameters([Parameter("prior_wait_s", value=0.3)])
    spin_until(executor, lambda: False, timeout_s=0.5)
    nan_msg = pose_msgs.pose_with_covariance_stamped(camera_prior(), np.eye(6), "nerf", seconds_to_stamp(STAMP_S))
    nan_msg.pose.pose.orientation.w = float("nan")
    probe.prior_pub.publish(nan_msg)
    probe.send_frame(stamp_s=STAMP_S)
    assert spin_until(executor, lambda: probe.received["status"], timeout_s=10)
    assert "prior rejected" in probe.received["status"][-1].message and not probe.received["tf"]

    probe.prior_pub.publish(pose_msgs.pose_with_covariance_stamped(
        camera_prior(), np.eye(6) * 1e-3, "nerf", seconds_to_stamp(STAMP_S - 100)))
    probe.send_frame(stamp_s=STAMP_S + 1)
    assert spin_until(executor, lambda: len(probe.received["status"]) >= 2, timeout_s=10)
    assert "away from the image" in probe.received["status"][-1].message and not probe.received["tf"]


def test_empty_mask_falls_back_to_random_sampling(graph):
    executor, probe, _, inerf = graph
    inerf.set_parameters([Parameter("strategy", value="mask_region")])
    spin_until(executor, lambda: False, timeout_s=0.5)
    detections = ObjectPoseArray()
    detections.header.stamp, detections.header.frame_id = seconds_to_stamp(STAMP_S), "camera_optical"
    detections.label_image = image.label_mask_to_image(np.zeros((48, 64), np.uint8), detections.header)
    mask_pub = probe.node.create_publisher(ObjectPoseArray, "detections", QoSProfile(depth=5))
    spin_until(executor, lambda: False, timeout_s=0.3)
    mask_pub.publish(detections)
    probe.send_frame(prior=camera_prior())
    assert spin_until(executor, lambda: any(s.iterations for s in probe.received["status"]), timeout_s=20)
    status = [s for s in probe.received["status"] if s.iterations][-1]
    assert status.sampling_strategy == "random" and "region is empty" in status.message


def test_flooding_keeps_memory_bounded_and_the_newest_frame_wins(graph):
    executor, probe, _, inerf = graph
    inerf.set_parameters([Parameter("max_iterations", value=20), Parameter("prior_wait_s", value=0.0),
                          Parameter("overlay_scale", value=0.0)])
    spin_until(executor, lambda: False, timeout_s=0.5)
    for i in range(40):  # far faster than one estimate per frame
        probe.send_frame(stamp_s=STAMP_S + 0.01 * i, prior=camera_prior())
        executor.spin_once(timeout_sec=0.0)
    newest = seconds_to_stamp(STAMP_S + 0.39)
    assert spin_until(executor, lambda: any(t.transforms[0].header.stamp == newest for t in probe.received["tf"]),
                      timeout_s=30)
    assert inerf.dropped_frames > 0
    assert len(probe.received["tf"]) < 40  # frames were dropped, not queued
    assert len(inerf._priors) <= inerf._config.cache_size


@pytest.mark.parametrize("content, reason", [(None, "no such file|not found|No such"), (b"{not json", "JSON|json")])
def test_missing_or_corrupt_model_exits_cleanly_with_the_reason(tmp_path, ros_domain_id, content, reason):
    import os
    import re
    import subprocess
    import sys

    model_dir = tmp_path / "model"
    if content is not None:
        model_dir.mkdir()
        (model_dir / "model.json").write_bytes(content)
        (model_dir / "model.safetensors").write_bytes(b"\x00" * 10)
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_domain_id))
    result = subprocess.run([sys.executable, "-m", "inerf_ros.nodes.inerf_node", "--ros-args", "-p",
                             f"model_dir:={model_dir}"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1, result.stderr
    assert "cannot start" in result.stderr and re.search(reason, result.stderr), result.stderr
