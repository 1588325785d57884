"""initializer_node: ObjectPoseArray -> camera prior (PoseWithCovarianceStamped in the NeRF frame).

``nerf_T_cam = nerf_T_obj @ inv(cam_T_obj)`` per detection, fused (see :mod:`inerf_ros.initializer`).
Messages are metric: the prior leaves in metres, like every pose this package publishes.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.node import Node

from inerf_ros import frames
from inerf_ros.config import option
from inerf_ros.initializer import CameraPriorEstimator, InitializerConfig
from inerf_ros.msg import ObjectPoseArray
from inerf_ros.ros import node_main, parameters, pose_msgs
from inerf_ros.ros.qos import RESULT_QOS


@dataclasses.dataclass
class InitializerNodeConfig:
    """initializer_node's own parameters (the fusion's are :class:`InitializerConfig`)."""

    nerf_frame: str = option("nerf", "frame_id of the published prior (the metric NeRF frame)", read_only=True)


class InitializerNode(Node):
    """Fuses each ObjectPoseArray on detections into a camera prior on camera_prior (metres, NeRF frame)."""

    def __init__(self, **node_kwargs):
        super().__init__("initializer_node", **node_kwargs)
        self._node_config = parameters.declare_config(self, InitializerNodeConfig)
        self._config = parameters.declare_config(self, InitializerConfig)
        self._estimator = CameraPriorEstimator(self._config)
        parameters.on_parameters_updated(self, InitializerConfig, lambda: self._config, self._set_config)
        self._hint = None  # the last camera estimate, for the distance_only mode
        self._prior_pub = self.create_publisher(PoseWithCovarianceStamped, "camera_prior", RESULT_QOS)
        self.create_subscription(ObjectPoseArray, "detections", self.on_detections, RESULT_QOS)
        self.create_subscription(PoseWithCovarianceStamped, "camera_pose", self.on_camera_pose, RESULT_QOS)
        known = sorted(self._config.nerf_T_objects())
        self.get_logger().info(f"initializer ready ({self._config.mode}); objects in the NeRF frame: {known}")

    def _set_config(self, config: InitializerConfig) -> None:
        self._config = config
        self._estimator = CameraPriorEstimator(config)

    def on_camera_pose(self, msg: PoseWithCovarianceStamped) -> None:
        """Keep iNeRF's camera estimate as the hint of the distance_only mode; a pose with NaNs is ignored."""
        try:
            nerf_T_cam, _ = pose_msgs.pose_with_covariance_to_numpy(msg)
        except ValueError:
            return
        self._hint = frames.metres_to_nerf(nerf_T_cam, self._config.metres_per_unit)

    def on_detections(self, msg: ObjectPoseArray) -> None:
        """Fuse the detections into a prior and publish it with the detections' stamp; a bad pose drops that object with
        a warning.
        """
        detections = []
        for obj in msg.objects:
            try:
                cam_T_obj = pose_msgs.pose_to_matrix(obj.pose)
            except ValueError as error:
                self.get_logger().warning(f"{obj.class_name}: pose rejected: {error}", throttle_duration_sec=2.0)
                continue
            visible = float(obj.visible_fraction)
            detections.append({"class_name": obj.class_name, "score": float(obj.score), "cam_T_obj": cam_T_obj,
                               "visible_fraction": visible if np.isfinite(visible) else None})
        try:
            prior = self._estimator.estimate(detections, nerf_T_cam_hint=self._hint)
        except Exception as error:  # noqa: BLE001 - one bad message must never stop the node
            self.get_logger().error(f"no prior: the fusion failed: {type(error).__name__}: {error}",
                                    throttle_duration_sec=2.0)
            return
        if not prior.ok:
            self.get_logger().info(f"no prior: {prior.reason}", throttle_duration_sec=2.0)
            return
        mpu = self._config.metres_per_unit
        self._prior_pub.publish(pose_msgs.pose_with_covariance_stamped(
            frames.nerf_to_metres(prior.nerf_T_cam, mpu), frames.covariance_nerf_to_metres(prior.covariance, mpu),
            self._node_config.nerf_frame, msg.header.stamp))


def main(args=None) -> int:
    """Entry point of ``ros2 run inerf_ros initializer_node``: spin the node until shutdown; return the exit status."""
    return node_main.run(InitializerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
