"""posecnn_node: image + camera_info -> ObjectPoseArray (object poses and the label mask).

As in inerf_node, callbacks only file messages away; a worker thread detects in the newest image
(older ones are dropped when it falls behind), so the executor never blocks on the network.
"""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from inerf_ros.camera import Intrinsics
from inerf_ros.config import option
from inerf_ros.msg import ObjectPose, ObjectPoseArray
from inerf_ros.posecnn.model import load_posecnn
from inerf_ros.posecnn.refine import SilhouetteRefineConfig
from inerf_ros.ros import camera_info as camera_info_conv
from inerf_ros.ros import image as image_conv
from inerf_ros.ros import node_main, parameters, pose_msgs
from inerf_ros.ros.qos import RESULT_QOS
from inerf_ros.ros.stamp_cache import LatestSlot
from inerf_ros.ros.stamps import stamp_to_seconds


@dataclasses.dataclass(frozen=True)
class _Frame:
    """An image with the camera as it was when the image arrived (a later camera_info is another camera)."""

    image: Image
    intrinsics: Intrinsics | None
    camera_info_error: str


@dataclasses.dataclass
class PosecnnNodeConfig:
    """posecnn_node's parameters: model, device, classes and the limits on input size and rate."""

    model_dir: str = option("", "PoseCNN model directory (posecnn.safetensors + posecnn.json)", read_only=True)
    device: str = option("cpu", "torch device: cpu, cuda or cuda:N", read_only=True)
    score_threshold: float = option(0.5, "drop detections scoring below this", range=(0.0, 1.0))
    classes: list = option([], "class names to report (empty: every class of the model); a name the model does "
                               "not know is refused")
    max_image_pixels: int = option(16_777_216, "images (and camera_infos) with more pixels are refused before "
                                               "decoding: every stage allocates per pixel (4096x4096)",
                                   range=(1, 1_000_000_000))
    max_rate_hz: float = option(0.0, "detect at most this often, by image stamp (0: every image it can); on an arm "
                                     "whose kinematic track inerf_node holds, detections only re-anchor, and a "
                                     "CPU is better spent on tracking", range=(0.0, 1000.0))


class PosecnnNode(Node):
    """Detects objects in each image with PoseCNN, on a worker thread; publishes detections and label_image."""

    def __init__(self, detector=None, **node_kwargs):
        super().__init__("posecnn_node", **node_kwargs)
        self._config = parameters.declare_config(self, PosecnnNodeConfig)
        self._last_detection_s = -float("inf")
        refine = parameters.declare_config(self, SilhouetteRefineConfig)
        if detector is None:
            if not self._config.model_dir:
                raise ValueError("parameter model_dir is empty: point it at a PoseCNN model directory")
            detector = load_posecnn(self._config.model_dir, device=self._config.device, refine=refine)
        refiner = getattr(detector, "refiner", None)   # an injected detector may have none (tests, oracles)
        if refiner is not None:
            refiner.config = refine   # an injected detector follows this node's parameters too
            parameters.on_parameters_updated(self, SilhouetteRefineConfig, lambda: refiner.config,
                                             lambda config: setattr(refiner, "config", config))
        self._detector = detector
        self._check_classes(self._config)
        parameters.on_parameters_updated(self, PosecnnNodeConfig, lambda: self._config, self._set_config,
                                         check=self._check_classes)
        self._intrinsics = None
        self._camera_info_error = ""
        self._frames: LatestSlot[_Frame] = LatestSlot()
        self._detections_pub = self.create_publisher(ObjectPoseArray, "detections", RESULT_QOS)
        self._label_pub = self.create_publisher(Image, "label_image", qos_profile_sensor_data)
        self.create_subscription(CameraInfo, "camera_info", self.on_camera_info, qos_profile_sensor_data)
        self.create_subscription(Image, "image_raw", self.on_image, qos_profile_sensor_data)
        self._running = True
        self._worker = threading.Thread(target=self._work, name="posecnn_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(f"PoseCNN ready: {len(detector.class_names)} classes on {self._config.device}")

    def _set_config(self, config: PosecnnNodeConfig) -> None:
        self._config = config

    def _check_classes(self, config: PosecnnNodeConfig) -> None:
        unknown = sorted(set(config.classes) - set(self._detector.class_names))
        if unknown:  # else every frame would silently report nothing
            raise ValueError(f"classes {unknown} are not classes of the model "
                             f"(it knows {', '.join(self._detector.class_names)})")

    def on_camera_info(self, msg: CameraInfo) -> None:
        """Take the camera's intrinsics; a bad CameraInfo forgets the previous camera too (no detections until a good
        one).
        """
        try:
            self._intrinsics = camera_info_conv.camera_info_to_intrinsics(msg, self._config.max_image_pixels)
            self._camera_info_error = ""
        except ValueError as error:
            # Forget the previous one too: the camera may have changed, and a guess would publish
            # objects at wrong distances.
            self._intrinsics, self._camera_info_error = None, f"camera_info rejected: {error}"
            self.get_logger().warning(self._camera_info_error, throttle_duration_sec=5.0)

    def on_image(self, msg: Image) -> None:
        """Hand the image, with the camera as it is now, to the worker unless ``max_rate_hz`` skips it."""
        if not self._rate_limited(stamp_to_seconds(msg.header.stamp)):   # else not even filed away
            self._frames.put(_Frame(msg, self._intrinsics, self._camera_info_error))

    def _rate_limited(self, stamp_s: float) -> bool:
        """Whether ``max_rate_hz`` skips an image stamped ``stamp_s`` (an earlier stamp than the last
        detection's, after a time jump, is taken).
        """
        rate_hz = self._config.max_rate_hz
        return rate_hz > 0 and 0.0 <= stamp_s - self._last_detection_s < 1.0 / rate_hz

    # -- worker --------------------------------------------------------------------------------------
    def _work(self) -> None:
        while self._running:
            frame = self._frames.take(timeout_s=0.2)
            if frame is None:
                continue
            try:
                self._process(frame)
            except Exception as error:  # noqa: BLE001 - one bad frame must never stop the node
                self.get_logger().error(f"image skipped: {type(error).__name__}: {error}", throttle_duration_sec=2.0)

    def _process(self, frame: _Frame) -> None:
        msg = frame.image
        stamp_s = stamp_to_seconds(msg.header.stamp)
        if self._rate_limited(stamp_s):   # again: a detection may have ended since the image was filed
            return
        if frame.intrinsics is None:
            why = frame.camera_info_error or "no camera_info received yet"
            self.get_logger().warning(f"image skipped: {why}", throttle_duration_sec=5.0)
            return
        try:
            rgb = image_conv.image_to_rgb(msg, self._config.max_image_pixels)
            camera_info_conv.check_image_matches(frame.intrinsics, rgb.shape[1], rgb.shape[0])
            result = self._detector.detect(rgb, frame.intrinsics.K)
        except ValueError as error:
            self.get_logger().warning(f"image skipped: {error}", throttle_duration_sec=2.0)
            return
        self._last_detection_s = stamp_s
        self._publish(msg.header, result)

    def _publish(self, header, result) -> None:
        config = self._config
        out = ObjectPoseArray(header=header)
        for detection in sorted(result.objects, key=lambda d: -d.score):
            if detection.score < config.score_threshold:
                continue
            if config.classes and detection.class_name not in config.classes:
                continue
            if not np.isfinite(detection.cam_T_obj).all():
                self.get_logger().warning(f"non-finite pose for {detection.class_name}: dropped")
                continue
            visible = detection.visible_fraction
            out.objects.append(ObjectPose(
                class_id=int(detection.class_id), class_name=detection.class_name, score=float(detection.score),
                visible_fraction=float("nan") if visible is None else float(visible),
                pose=pose_msgs.matrix_to_pose(detection.cam_T_obj)))
        out.label_image = image_conv.label_mask_to_image(result.label_mask, header)
        self._detections_pub.publish(out)
        self._label_pub.publish(out.label_image)

    def close(self) -> None:
        """Stop the worker (it finishes the image it is detecting in)."""
        self._running = False
        self._worker.join(timeout=5.0)

    def destroy_node(self):
        """Stop the worker before the node and its publishers go."""
        self.close()   # the worker publishes: never past its publishers' end
        return super().destroy_node()

    @property
    def dropped_frames(self) -> int:
        """How many images arrived while an older one still waited for the worker (and were dropped)."""
        return self._frames.dropped


def main(args=None) -> int:
    """Entry point of ``ros2 run inerf_ros posecnn_node``: spin the node until shutdown; return the exit status."""
    return node_main.run(PosecnnNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
