"""inerf_node and posecnn_node under bad messages: each one refused with its reason, the node alive,
and the next good frame localised. One graph per module (the cases take turns on distinct stamps),
so the suite stays fast.
"""
import math

import numpy as np
import pytest

from fault_utils import camera_prior, spin_until, tiny_detector, tiny_pipeline

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseWithCovarianceStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from inerf_ros.camera import Intrinsics  # noqa: E402
from inerf_ros.msg import LocalizationStatus, ObjectPoseArray  # noqa: E402
from inerf_ros.ros import camera_info, image, pose_msgs  # noqa: E402
from inerf_ros.ros.stamps import seconds_to_stamp, stamp_to_seconds  # noqa: E402
from inerf_ros.ros.tf import TF_QOS  # noqa: E402

INTRINSICS = Intrinsics(64, 48, 60.0, 60.0, 31.5, 23.5)
STAMP_S = 1700000000.0
MAX_PIXELS = 5000   # 64x48 = 3072 passes, 80x64 = 5120 does not


class Probe:
    def __init__(self, context):
        self.node = rclpy.create_node("fault_probe", context=context)
        self.image_pub = self.node.create_publisher(Image, "image_raw", qos_profile_sensor_data)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.prior_pub = self.node.create_publisher(PoseWithCovarianceStamped, "camera_prior", QoSProfile(depth=5))
        self.mask_pub = self.node.create_publisher(ObjectPoseArray, "detections", QoSProfile(depth=5))
        self.status, self.tf, self.detections = [], [], []
        self.node.create_subscription(LocalizationStatus, "localization_status", self.status.append,
                                      QoSProfile(depth=5))
        self.node.create_subscription(TFMessage, "/tf", self.tf.append, TF_QOS)
        self.node.create_subscription(ObjectPoseArray, "detections", self.detections.append, QoSProfile(depth=5))

    def status_at(self, stamp_s):
        return [s for s in self.status if abs(stamp_to_seconds(s.header.stamp) - stamp_s) < 1e-6]

    def tf_at(self, stamp_s):
        return [t for t in self.tf if abs(stamp_to_seconds(t.transforms[0].header.stamp) - stamp_s) < 1e-6]

    def detections_at(self, stamp_s):
        return [d for d in self.detections if abs(stamp_to_seconds(d.header.stamp) - stamp_s) < 1e-6]


def _info(stamp_s, intrinsics=INTRINSICS, **changes):
    msg = camera_info.intrinsics_to_camera_info(intrinsics)
    msg.header.stamp, msg.header.frame_id = seconds_to_stamp(stamp_s), "camera_optical"
    k = list(msg.k)
    for name, index in (("fx", 0), ("fy", 4), ("cx", 2), ("cy", 5)):
        if name in changes:
            k[index] = changes[name]
    msg.k = k
    if "d" in changes:
        msg.d = changes["d"]
    return msg


def _image(stamp_s, width=64, height=48, encoding="rgb8", truncate=False):
    rng = np.random.default_rng(int(stamp_s) % 1000)
    array = rng.random((height, width), dtype=np.float32) if encoding == "32FC1" else \
        rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    msg = image.numpy_to_image(array, encoding)
    msg.header.stamp, msg.header.frame_id = seconds_to_stamp(stamp_s), "camera_optical"
    if truncate:
        msg.data = bytes(msg.data)[: len(msg.data) // 2]
    return msg


def _send(executor, probe, stamp_s, info=None, img=None, prior=camera_prior(), mask=None):
    """Publish camera_info (+ mask, + prior) and let them arrive before the image, as a camera driver would."""
    probe.info_pub.publish(info if info is not None else _info(stamp_s))
    if mask is not None:
        probe.mask_pub.publish(mask)
    if prior is not None:
        probe.prior_pub.publish(pose_msgs.pose_with_covariance_stamped(
            prior, np.eye(6) * 1e-2, "nerf", seconds_to_stamp(stamp_s)))
    spin_until(executor, lambda: False, timeout_s=0.1)
    probe.image_pub.publish(img if img is not None else _image(stamp_s))


def _mask(stamp_s, array=None, encoding="mono8"):
    out = ObjectPoseArray()
    out.header.stamp = seconds_to_stamp(stamp_s)
    if encoding == "bogus":
        out.label_image = image.numpy_to_image(np.ones((48, 64), np.uint8), "mono8")
        out.label_image.encoding = "bogus"
    else:
        out.label_image = image.numpy_to_image(array, encoding)
    out.label_image.header = out.header
    return out


# name: (what to send at the bad stamp, reason expected in its status, whether that frame is still localised)
INERF_CASES = {
    "camera_info fx 1e300": (lambda s: dict(info=_info(s, fx=1e300)), "focal length", False),
    "camera_info fx 1e-300": (lambda s: dict(info=_info(s, fx=1e-300)), "focal length", False),
    "camera_info cx 1e300": (lambda s: dict(info=_info(s, cx=1e300)), "principal point", False),
    "camera_info NaN in D": (lambda s: dict(info=_info(s, d=[0.1, math.nan, 0.0, 0.0, 0.0])), "CameraInfo.d", False),
    "image over max_image_pixels": (lambda s: dict(info=_info(s, Intrinsics(80, 64, 70.0, 70.0, 39.5, 31.5)),
                                                   img=_image(s, 80, 64)), "max_image_pixels", False),
    "image of a float encoding": (lambda s: dict(img=_image(s, encoding="32FC1")), "not a colour encoding", False),
    "image size differs from camera_info": (lambda s: dict(img=_image(s, 32, 24)), "but camera_info says", False),
    "image data truncated": (lambda s: dict(img=_image(s, truncate=True)), "image data has", False),
    "mask of the wrong size": (lambda s: dict(mask=_mask(s, np.ones((24, 32), np.uint8))), "mask rejected", True),
    "mask of a float encoding": (lambda s: dict(mask=_mask(s, np.ones((48, 64), np.float32), "32FC1")),
                                 "mask rejected", True),
    "mask of an unknown encoding": (lambda s: dict(mask=_mask(s, encoding="bogus")), "mask rejected", True),
    "prior 50 m off": (lambda s: dict(prior=camera_prior(-50.0)), "outside the scene box", False),
}


@pytest.fixture(scope="module")
def module_context():
    import os
    import random

    context = rclpy.context.Context()
    domain = int(os.environ.get("INERF_TEST_DOMAIN_ID", random.Random(os.getpid()).randint(1, 101)))
    rclpy.init(context=context, domain_id=domain)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture(scope="module")
def inerf_graph(module_context):
    from inerf_ros.nodes.inerf_node import InerfNode

    executor = SingleThreadedExecutor(context=module_context)
    inerf = InerfNode(tiny_pipeline(), context=module_context, parameter_overrides=[
        Parameter("max_iterations", value=3), Parameter("num_rays", value=64),
        Parameter("covariance_rays", value=64), Parameter("overlay_scale", value=0.0),
        Parameter("prior_wait_s", value=1.0), Parameter("max_image_pixels", value=MAX_PIXELS),
        Parameter("cache_size", value=5)])
    probe = Probe(module_context)
    for node in (inerf, probe.node):
        executor.add_node(node)
    spin_until(executor, lambda: False, timeout_s=0.5)   # discovery
    yield executor, probe, inerf
    inerf.close()
    for node in (inerf, probe.node):
        executor.remove_node(node)
        node.destroy_node()


def _assert_next_good_frame_localised(executor, probe, stamp_s):
    _send(executor, probe, stamp_s)
    assert spin_until(executor, lambda: probe.tf_at(stamp_s), timeout_s=20), \
        [s.message for s in probe.status[-3:]]


@pytest.mark.parametrize("case", list(INERF_CASES))
def test_inerf_node_refuses_the_bad_input_says_why_and_localises_the_next_frame(case, inerf_graph):
    executor, probe, inerf = inerf_graph
    stamp_s = STAMP_S + 10 * list(INERF_CASES).index(case)
    make, reason, localised = INERF_CASES[case]
    _send(executor, probe, stamp_s, **make(stamp_s))
    assert spin_until(executor, lambda: probe.status_at(stamp_s), timeout_s=20), case
    message = probe.status_at(stamp_s)[-1].message
    assert reason in message, message
    spin_until(executor, lambda: False, timeout_s=0.1)
    assert bool(probe.tf_at(stamp_s)) == localised, message
    _assert_next_good_frame_localised(executor, probe, stamp_s + 0.5)


def test_time_jumping_back_clears_the_caches_and_the_next_frames_localise(inerf_graph):
    """A bag loop: the prior cache is full of the old time base (cache_size 5), yet the first frame
    after the jump finds its own prior (it once read "prior is 1000 s away" forever).
    """
    executor, probe, inerf = inerf_graph
    start = STAMP_S + 500
    for k in range(6):
        _send(executor, probe, start + 0.1 * k)
    assert spin_until(executor, lambda: probe.tf_at(start + 0.5), timeout_s=20)
    back = start - 1000.0
    for stamp_s in (back, back + 0.1):
        _send(executor, probe, stamp_s)
        assert spin_until(executor, lambda: probe.tf_at(stamp_s), timeout_s=20), \
            [s.message for s in probe.status[-3:]]
    assert "time jumped back 1000" in probe.status_at(back)[-1].message


def test_run_time_parameters_are_refused_or_applied(inerf_graph):
    executor, probe, inerf = inerf_graph
    result = inerf.set_parameters([Parameter("mask_classes", value=["abc"])])[0]
    assert not result.successful and "mask_classes must be integer" in result.reason
    assert inerf.set_parameters([Parameter("cache_size", value=2)])[0].successful
    for k in range(4):   # applied at once: the caches shrink to the new size
        probe.prior_pub.publish(pose_msgs.pose_with_covariance_stamped(
            camera_prior(), np.eye(6) * 1e-2, "nerf", seconds_to_stamp(STAMP_S + 600 + k)))
    spin_until(executor, lambda: False, timeout_s=0.3)
    assert len(inerf._priors) == 2
    assert inerf.set_parameters([Parameter("cache_size", value=5)])[0].successful


# -- posecnn_node -----------------------------------------------------------------------------------
POSECNN_CASES = {
    "camera_info fx 1e300": (lambda s: dict(info=_info(s, fx=1e300, fy=1e300)), "focal length"),
    "camera_info fx 1e-300": (lambda s: dict(info=_info(s, fx=1e-300, fy=1e-300)), "focal length"),
    "camera_info cx 1e300": (lambda s: dict(info=_info(s, cx=1e300)), "principal point"),
    "camera_info cx -1e300": (lambda s: dict(info=_info(s, cx=-1e300)), "principal point"),
    "camera_info NaN in D": (lambda s: dict(info=_info(s, d=[math.nan] * 5)), "CameraInfo.d"),
    "image over max_image_pixels": (lambda s: dict(info=_info(s, Intrinsics(80, 64, 70.0, 70.0, 39.5, 31.5)),
                                                   img=_image(s, 80, 64)), "max_image_pixels"),
}


@pytest.fixture(scope="module")
def posecnn_graph(module_context):
    from inerf_ros.nodes.posecnn_node import PosecnnNode

    executor = SingleThreadedExecutor(context=module_context)
    posecnn = PosecnnNode(tiny_detector(), context=module_context, parameter_overrides=[
        Parameter("score_threshold", value=0.0), Parameter("max_image_pixels", value=MAX_PIXELS)])
    probe = Probe(module_context)
    for node in (posecnn, probe.node):
        executor.add_node(node)
    spin_until(executor, lambda: False, timeout_s=0.5)
    yield executor, probe, posecnn
    for node in (posecnn, probe.node):
        executor.remove_node(node)
        node.destroy_node()


@pytest.mark.parametrize("case", list(POSECNN_CASES))
def test_posecnn_node_publishes_nothing_for_the_bad_input_and_detects_in_the_next_frame(case, posecnn_graph):
    executor, probe, posecnn = posecnn_graph
    stamp_s = STAMP_S + 2000 + 10 * list(POSECNN_CASES).index(case)
    make, reason = POSECNN_CASES[case]
    sent = make(stamp_s)
    with pytest.raises(ValueError, match=reason):   # the reason the node logs
        info = camera_info.camera_info_to_intrinsics(sent.get("info", _info(stamp_s)), MAX_PIXELS)
        image.image_to_rgb(sent.get("img", _image(stamp_s)), MAX_PIXELS)
        camera_info.check_image_matches(info, 64, 48)
    _send(executor, probe, stamp_s, prior=None, **sent)
    spin_until(executor, lambda: False, timeout_s=0.2)   # the bad image is handled before the good camera_info
    good = stamp_s + 0.5
    _send(executor, probe, good, prior=None)
    assert spin_until(executor, lambda: probe.detections_at(good), timeout_s=20), case
    assert not probe.detections_at(stamp_s)   # no objects at 0 m or 1e298 m


def test_posecnn_node_refuses_unknown_classes_at_run_time(posecnn_graph):
    _, _, posecnn = posecnn_graph
    result = posecnn.set_parameters([Parameter("classes", value=["nonexistent"])])[0]
    assert not result.successful and "not classes of the model" in result.reason
    assert posecnn.set_parameters([Parameter("classes", value=["mug"])])[0].successful
    assert posecnn.set_parameters([Parameter("classes", value=[""])])[0].successful is False
