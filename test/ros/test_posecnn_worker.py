"""posecnn_node detects in a worker thread: the image callback only files the image away, the newest
image wins when the network falls behind, and ``max_rate_hz`` still limits detections by stamp.
"""
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402

from inerf_ros.camera import Intrinsics  # noqa: E402
from inerf_ros.posecnn.types import DetectionResult  # noqa: E402
from inerf_ros.ros import camera_info, image  # noqa: E402
from inerf_ros.ros.stamps import seconds_to_stamp  # noqa: E402

INTRINSICS = Intrinsics(64, 48, 60.0, 60.0, 31.5, 23.5)


class RecordingDetector:
    """Finds nothing, slowly if asked, and records which images it ran on (each image's tag is the
    value of its pixels) and in which threads.
    """

    class_names = ["mug"]

    def __init__(self, seconds_per_image=0.0):
        self.seconds_per_image = seconds_per_image
        self.tags: list[int] = []
        self.threads: set[str] = set()

    def detect(self, rgb, K):
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds_per_image)
        self.tags.append(int(rgb[0, 0, 0]))
        return DetectionResult([], np.zeros(rgb.shape[:2], np.uint8))


def _image(stamp_s: float, tag: int):
    rgb = np.full((48, 64, 3), tag, np.uint8)
    msg = image.numpy_to_image(rgb, "rgb8")
    msg.header.stamp, msg.header.frame_id = seconds_to_stamp(stamp_s), "camera_optical"
    return msg


def _wait(condition, timeout_s=5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not condition():
        time.sleep(0.01)
    return condition()


@pytest.fixture
def make_node(ros_context):
    from inerf_ros.nodes.posecnn_node import PosecnnNode

    nodes = []

    def make(detector, **parameters):
        node = PosecnnNode(detector, context=ros_context,
                           parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()])
        node.on_camera_info(camera_info.intrinsics_to_camera_info(INTRINSICS))
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()


def test_the_callback_never_waits_for_the_network_and_the_newest_image_wins(make_node):
    detector = RecordingDetector(seconds_per_image=0.5)
    node = make_node(detector)
    callback_s = []

    def on_image(tag):
        started = time.monotonic()
        node.on_image(_image(100.0 + tag, tag))
        callback_s.append(time.monotonic() - started)

    on_image(1)
    assert _wait(lambda: not node._frames.pending)   # the worker took it and is detecting
    for tag in (2, 3, 4):   # arrive while the network is busy: each waits in the slot, replaced by the next
        on_image(tag)
    assert max(callback_s) < 0.1, callback_s   # a callback never waits for a detection (0.5 s)
    assert _wait(lambda: len(detector.tags) == 2)
    time.sleep(0.1)
    assert detector.tags == [1, 4] and node.dropped_frames == 2
    assert detector.threads == {"posecnn_worker"}
    node.close()
    assert not node._worker.is_alive()


def test_max_rate_hz_skips_images_by_stamp_and_takes_one_after_a_jump_back(make_node):
    detector = RecordingDetector()
    node = make_node(detector, max_rate_hz=2.0)   # at most one detection per 0.5 s of stamps
    expected = []
    for tag, stamp_s in enumerate([10.0, 10.2, 10.4, 10.6, 10.7, 9.0], start=1):
        node.on_image(_image(stamp_s, tag))
        if tag in (1, 4, 6):   # 10.6 is 0.6 s after 10.0; 9.0 is before the last detection (time jumped)
            expected.append(tag)
            assert _wait(lambda: detector.tags == expected), (detector.tags, expected)
        else:
            time.sleep(0.05)
    time.sleep(0.1)
    assert detector.tags == [1, 4, 6]
