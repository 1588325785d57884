"""posecnn_node: image + camera_info -> ObjectPoseArray (object poses and the label mask)."""
from __future__ import annotations

import dataclasses

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from inerf_ros.config import option
from inerf_ros.msg import ObjectPose, ObjectPoseArray
from inerf_ros.posecnn.refine import SilhouetteRefineConfig
from inerf_ros.ros import camera_info as camera_info_conv
from inerf_ros.ros import image as image_conv
from inerf_ros.ros import node_main, parameters, pose_msgs

DETECTIONS_QOS = QoSProfile(depth=5)


@dataclasses.dataclass
class PosecnnNodeConfig:
    model_dir: str = option("", "PoseCNN model directory (posecnn.safetensors + posecnn.json)", read_only=True)
    device: str = option("cpu", "torch device: cpu, cuda or cuda:N", read_only=True)
    score_threshold: float = option(0.5, "drop detections scoring below this", range=(0.0, 1.0))
    classes: list = option([], "class names to report (empty: every class of the model)")


class PosecnnNode(Node):
    def __init__(self, detector=None, **node_kwargs):
        super().__init__("posecnn_node", **node_kwargs)
        self._config = parameters.declare_config(self, PosecnnNodeConfig)
        refine = parameters.declare_config(self, SilhouetteRefineConfig)
        parameters.on_parameters_updated(self, PosecnnNodeConfig, lambda: self._config, self._set_config)
        if detector is None:
            from inerf_ros.posecnn.model import load_posecnn
            if not self._config.model_dir:
                raise ValueError("parameter model_dir is empty: point it at a PoseCNN model directory")
            detector = load_posecnn(self._config.model_dir, device=self._config.device, refine=refine)
        refiner = getattr(detector, "refiner", None)   # an injected detector may have none (tests, oracles)
        if refiner is not None:
            refiner.config = refine   # an injected detector follows this node's parameters too
            parameters.on_parameters_updated(self, SilhouetteRefineConfig, lambda: refiner.config,
                                             lambda config: setattr(refiner, "config", config))
        self._detector = detector
        self._intrinsics = None
        self._detections_pub = self.create_publisher(ObjectPoseArray, "detections", DETECTIONS_QOS)
        self._label_pub = self.create_publisher(Image, "label_image", qos_profile_sensor_data)
        self.create_subscription(CameraInfo, "camera_info", self.on_camera_info, qos_profile_sensor_data)
        self.create_subscription(Image, "image_raw", self.on_image, qos_profile_sensor_data)
        self.get_logger().info(f"PoseCNN ready: {len(detector.class_names)} classes on {self._config.device}")

    def _set_config(self, config: PosecnnNodeConfig) -> None:
        self._config = config

    def on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._intrinsics = camera_info_conv.camera_info_to_intrinsics(msg)
        except ValueError as error:
            self.get_logger().warning(f"camera_info rejected: {error}", throttle_duration_sec=5.0)

    def on_image(self, msg: Image) -> None:
        if self._intrinsics is None:
            self.get_logger().warning("no camera_info received yet: skipping image", throttle_duration_sec=5.0)
            return
        try:
            rgb = image_conv.image_to_rgb(msg)
            camera_info_conv.check_image_matches(self._intrinsics, rgb.shape[1], rgb.shape[0])
            result = self._detector.detect(rgb, self._intrinsics.K)
        except ValueError as error:
            self.get_logger().warning(f"image skipped: {error}", throttle_duration_sec=2.0)
            return
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


def main(args=None) -> int:
    return node_main.run(PosecnnNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
