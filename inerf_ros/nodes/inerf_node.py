"""inerf_node: image (+ camera prior, + PoseCNN mask) -> camera pose on TF, with covariance and status.

Callbacks only file messages away; a worker thread optimises the newest frame (older ones are
dropped when it falls behind), so the executor never blocks on the optimizer.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from inerf_ros import frames
from inerf_ros.config import option
from inerf_ros.msg import LocalizationStatus, ObjectPoseArray
from inerf_ros.optim.correction import CorrectionConfig
from inerf_ros.optim.inerf import OptimizerConfig
from inerf_ros.optim.localizer import LocalizerConfig, Prior
from inerf_ros.optim.sampling import SamplingConfig
from inerf_ros.pipeline import FrameInput, InerfPipeline, PlausibilityConfig
from inerf_ros.ros import camera_info as camera_info_conv
from inerf_ros.ros import image as image_conv
from inerf_ros.ros import node_main, parameters, pose_msgs
from inerf_ros.ros.qos import RESULT_QOS
from inerf_ros.ros.stamp_cache import LatestSlot, StampCache
from inerf_ros.ros.robot_frames import RobotFrames
from inerf_ros.ros.stamps import stamp_to_seconds
from inerf_ros.ros.tf import StaticTransformBroadcaster, TransformBroadcaster


@dataclasses.dataclass
class InerfNodeConfig:
    """inerf_node's own parameters: model, device, frames, TF output and the input caches."""

    model_dir: str = option("", "NeRF model directory (model.safetensors + model.json)", read_only=True)
    device: str = option("cpu", "torch device: cpu, cuda or cuda:N", read_only=True)
    nerf_frame: str = option("nerf", "TF frame of the NeRF (metric: NeRF axes, metres)", read_only=True)
    world_frame: str = option("world", "parent of the static world -> nerf transform", read_only=True)
    world_T_nerf: list = option([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
                                "static world -> nerf transform: x y z (m) qx qy qz qw", read_only=True)
    metres_per_unit: float = option(0.0, "metres per NeRF unit (0: take it from the model)", range=(0.0, 1e6),
                                    read_only=True)
    publish_tf: bool = option(True, "publish on /tf: nerf -> camera (no base_frame) or the nerf -> base correction")
    base_frame: str = option("", "the robot's base frame (e.g. base_link): TF has its chain to the camera, so the "
                                 "node publishes the correction nerf -> base_frame (REP 105) and never gives the "
                                 "camera frame a second parent; if the robot's TF already gives base_frame a "
                                 "parent (a URDF's world -> base_link), the correction goes to the root of that "
                                 "tree, or is published as world_frame -> nerf when world_frame is in it; empty: "
                                 "a hand-held camera, nerf -> camera",
                             read_only=True)
    odom_frame: str = option("", "mobile base: publish the correction nerf -> odom_frame (odometry moves odom -> "
                                 "base_frame); empty: the correction goes to base_frame", read_only=True)
    initial_nerf_T_base: list[float] = option(
        [], "believed placement of the correction's child frame in the NeRF frame, x y z (m) qx qy qz qw: on TF "
            "until the first estimate, and a start when no prior comes; empty: none", read_only=True)
    initial_nerf_T_base_sigma: list[float] = option(
        [], "1-sigma of initial_nerf_T_base, translation (m) and rotation (deg): the correction filter starts from "
            "that placement with this covariance and fuses (and gates) every estimate against it, as befits a "
            "measured calibration; empty: the first estimate anchors the correction",
        read_only=True)
    tf_timeout_s: float = option(0.5, "how long a frame waits for TF to reach its stamp (s); the chain's /tf can "
                                      "arrive after the image", range=(0.0, 10.0))
    correction_rate_hz: float = option(20.0, "rate at which the nerf -> base correction is republished (Hz)",
                                       range=(0.1, 1000.0), read_only=True)
    correction_future_dating_s: float = option(0.1, "the republished correction is stamped this far ahead of now "
                                                    "(AMCL's transform_tolerance): a lookup at a stamp newer than "
                                                    "the last republish still succeeds; more delays a new "
                                                    "correction's effect on lookups at image stamps (s)",
                                               range=(0.0, 10.0))
    use_prior: bool = option(True, "wait for camera priors (from initializer_node) to start estimates")
    prior_wait_s: float = option(3.0, "how long a frame waits for its prior before tracking/skipping (s)",
                                 range=(0.0, 60.0))
    stamp_tolerance_s: float = option(0.02, "max stamp difference when matching a prior, mask or camera_info to "
                                            "an image (s); with no camera_info that close the latest one is used "
                                            "(a camera's intrinsics are static: the stamp matters only when they "
                                            "change)", range=(0.0, 10.0))
    cache_size: int = option(30, "stamped priors / masks / camera_infos kept for matching", range=(1, 1000))
    time_jump_back_s: float = option(1.0, "an image or message stamped this much before the newest one means time "
                                          "went backwards (bag loop, sim reset): the caches and the tracker are "
                                          "cleared (s)", range=(1e-3, 1e6))
    max_image_pixels: int = option(16_777_216, "images (and camera_infos) with more pixels are refused before "
                                               "decoding: every stage allocates per pixel (4096x4096)",
                                   range=(1, 1_000_000_000))
    overlay_scale: float = option(0.25, "debug overlay size relative to the image (0: no overlay)",
                                  range=(0.0, 1.0))
    overlay_period_s: float = option(1.0, "least time between two debug overlays (s); rendering one costs "
                                          "about as much as an estimate on a CPU, so it is rate-limited and "
                                          "skipped while nobody subscribes", range=(0.0, 3600.0))


class InerfNode(Node):
    """Localizes the camera of each image by iNeRF, on a worker thread; publishes camera_pose, localization_status,
    overlay and TF.
    """

    def __init__(self, pipeline: InerfPipeline | None = None, **node_kwargs):
        super().__init__("inerf_node", **node_kwargs)
        self._config = parameters.declare_config(self, InerfNodeConfig)
        optimizer = parameters.declare_config(self, OptimizerConfig)
        sampling = parameters.declare_config(self, SamplingConfig)
        localizer = parameters.declare_config(self, LocalizerConfig)
        correction = parameters.declare_config(self, CorrectionConfig)
        plausibility = parameters.declare_config(self, PlausibilityConfig)
        if pipeline is None:
            if not self._config.model_dir:
                raise ValueError("parameter model_dir is empty: point it at a NeRF model directory")
            pipeline = InerfPipeline.from_model_dir(self._config.model_dir, self._config.device, optimizer,
                                                    sampling, localizer, plausibility)
        else:  # an injected pipeline (tests, offline replay) still follows this node's parameters
            for config in (optimizer, sampling, localizer, plausibility):
                pipeline.update_config(config)
        self._pipeline = pipeline
        for cls in (OptimizerConfig, SamplingConfig, LocalizerConfig, PlausibilityConfig):  # safe to change live
            parameters.on_parameters_updated(self, cls, lambda c=cls: pipeline.config_of(c), pipeline.update_config)
        parameters.on_parameters_updated(self, InerfNodeConfig, lambda: self._config, self._set_config)
        self._metres_per_unit = self._config.metres_per_unit or pipeline.metres_per_unit

        size, jump = self._config.cache_size, self._config.time_jump_back_s
        self._camera_infos: StampCache[CameraInfo] = StampCache(size, jump)
        self._priors: StampCache = StampCache(size, jump)  # nerf_T_optical in metres, validated on arrival
        self._prior_error = ""
        self._last_overlay_time = -math.inf
        self._masks: StampCache[ObjectPoseArray] = StampCache(size, jump)
        self._last_image_s: float | None = None
        self._frames: LatestSlot[Image] = LatestSlot()

        self._tf = TransformBroadcaster(self)
        self._world_T_nerf = self._parse_world_T_nerf()
        self._static_tf = StaticTransformBroadcaster(self)
        self._robot = RobotFrames(self, self._config, correction, enabled=lambda: self._config.publish_tf,
                                  on_attached=self.on_correction_attached) if self._config.base_frame else None
        self._pose_pub = self.create_publisher(PoseWithCovarianceStamped, "camera_pose", RESULT_QOS)
        self._status_pub = self.create_publisher(LocalizationStatus, "localization_status", RESULT_QOS)
        self._overlay_pub = self.create_publisher(Image, "overlay", qos_profile_sensor_data)
        if self._robot is None:  # on a robot, world -> nerf waits until the robot's tree is known
            self._publish_world_T_nerf()

        self.create_subscription(CameraInfo, "camera_info", self.on_camera_info, qos_profile_sensor_data)
        self.create_subscription(Image, "image_raw", self.on_image, qos_profile_sensor_data)
        self.create_subscription(PoseWithCovarianceStamped, "camera_prior", self.on_prior, RESULT_QOS)
        self.create_subscription(ObjectPoseArray, "detections", self.on_detections, RESULT_QOS)
        self._running = True
        self._worker = threading.Thread(target=self._work, name="inerf_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(f"iNeRF ready on {self._config.device}; NeRF frame '{self._config.nerf_frame}', "
                               f"{self._metres_per_unit:g} m per NeRF unit")

    def _caches(self) -> tuple[StampCache, ...]:
        return self._camera_infos, self._priors, self._masks

    def _set_config(self, config: InerfNodeConfig) -> None:
        self._config = config
        for cache in self._caches():
            cache.set_capacity(config.cache_size)

    def _parse_world_T_nerf(self) -> np.ndarray:
        values = [float(v) for v in self._config.world_T_nerf]
        if len(values) != 7:
            raise ValueError(f"world_T_nerf needs 7 numbers (x y z qx qy qz qw), got {len(values)}")
        return pose_msgs.xyz_quat_to_matrix(values[:3], values[3:])

    def _publish_world_T_nerf(self) -> None:
        self._static_tf.send_transform(pose_msgs.matrix_to_transform_stamped(
            self._world_T_nerf, self._config.world_frame, self._config.nerf_frame, self.get_clock().now().to_msg()))

    def on_correction_attached(self, attachment) -> None:
        """The correction's place in the robot's tree is known: publish the static world -> nerf unless the
        correction itself is that edge (``world_frame`` is in the robot's tree).
        """
        if not attachment.nerf_is_child:
            self._publish_world_T_nerf()

    # -- callbacks: file the message away, never compute ------------------------------------------
    def on_camera_info(self, msg: CameraInfo) -> None:
        """File a CameraInfo away by its stamp, for the image with the same stamp."""
        self._camera_infos.add(stamp_to_seconds(msg.header.stamp), msg)

    def on_prior(self, msg: PoseWithCovarianceStamped) -> None:
        """File a camera prior away by its stamp (metres, NeRF frame); one in another frame or with NaNs is dropped with
        a warning.
        """
        if msg.header.frame_id and msg.header.frame_id != self._config.nerf_frame:
            self.get_logger().warning(f"prior in frame '{msg.header.frame_id}', expected "
                                      f"'{self._config.nerf_frame}': ignored", throttle_duration_sec=5.0)
            return
        try:
            nerf_T_optical, covariance = pose_msgs.pose_with_covariance_to_numpy(msg)
        except ValueError as error:
            self._prior_error = f"prior rejected: {error}"
            self.get_logger().warning(self._prior_error, throttle_duration_sec=2.0)
            return
        self._prior_error = ""
        self._priors.add(stamp_to_seconds(msg.header.stamp), (nerf_T_optical, covariance))

    def on_detections(self, msg: ObjectPoseArray) -> None:
        """File PoseCNN's detections (with their label image, for the mask region) away by their stamp."""
        self._masks.add(stamp_to_seconds(msg.header.stamp), msg)

    def on_image(self, msg: Image) -> None:
        """Hand the image to the worker; an image still waiting is dropped (counted in :attr:`dropped_frames`)."""
        self._frames.put(msg)

    # -- worker --------------------------------------------------------------------------------------
    def _work(self) -> None:
        while self._running:
            msg = self._frames.take(timeout_s=0.2)
            if msg is None:
                continue
            try:
                self._process(msg)
            except Exception as error:  # noqa: BLE001 - one bad frame must never stop the node
                self.get_logger().error(f"frame skipped: {type(error).__name__}: {error}")
                self._publish_status(msg.header, None, message=f"{type(error).__name__}: {error}")

    def _frame_input(self, msg: Image) -> FrameInput | str:
        """Decode and match one frame; a string says why it cannot be used.

        The camera_info is the one nearest the image's stamp within ``stamp_tolerance_s``, else the
        latest: a camera's intrinsics are static, so most drivers publish them rarely or at another
        rate than the images, and the stamp matters only when they change (a resolution switch); an
        image that does not fit the latest camera_info is refused by the size check below.
        """
        config = self._config
        stamp_s = stamp_to_seconds(msg.header.stamp)
        jump_note = self._check_time_jump(stamp_s)
        info = self._camera_infos.nearest(stamp_s, config.stamp_tolerance_s) or self._camera_infos.latest()
        if info is None:
            return "no camera_info received yet"
        try:
            intrinsics = camera_info_conv.camera_info_to_intrinsics(info[1], config.max_image_pixels)
            rgb = image_conv.image_to_rgb(msg, config.max_image_pixels)
            camera_info_conv.check_image_matches(intrinsics, rgb.shape[1], rgb.shape[0])
        except ValueError as error:
            return str(error)
        root_T_cam, chain_note = None, ""
        if self._robot is not None:  # the arm's kinematic chain at the image's stamp, from TF
            root_T_cam, chain_note = self._robot.root_T_camera(msg.header.frame_id, msg.header.stamp)
        base_T_optical = None if root_T_cam is None else frames.metres_to_nerf(root_T_cam, self._metres_per_unit)
        prior, prior_note, prior_covariance = None, "", None
        if config.use_prior and self._pipeline.wants_prior(stamp_s, base_T_optical):
            # With the arm's chain and a correction to move it by, the frame need not wait for PoseCNN:
            # a prior already here re-anchors, else the kinematics start the estimate.
            kinematics_ready = self._robot is not None and self._robot.kinematic_start(root_T_cam) is not None
            wait_s = 0.0 if kinematics_ready else config.prior_wait_s
            match = self._priors.wait_for(stamp_s, config.stamp_tolerance_s, wait_s)
            match = match or self._priors.latest()  # the localizer decides whether it is too old
            if match is not None:
                prior = Prior(frames.metres_to_nerf(match[1][0], self._metres_per_unit), match[0], "posecnn")
                prior_covariance = frames.covariance_metres_to_nerf(match[1][1], self._metres_per_unit)
            prior_note = self._prior_error
        fresh = prior is not None and abs(prior.stamp_s - stamp_s) <= self._max_prior_age_s()
        if not fresh and self._robot is not None and not self._pipeline.can_track(stamp_s, base_T_optical):
            start = self._robot.kinematic_start(root_T_cam)  # held correction (or believed placement) + chain
            if start is not None:
                prior = Prior(frames.metres_to_nerf(start, self._metres_per_unit), stamp_s, "kinematics")
        label_mask = None
        detections = self._masks.nearest(stamp_s, config.stamp_tolerance_s)
        if detections is not None and detections[1].label_image.width:
            try:  # a bad mask is a side input: the frame is localised without it
                label_mask = image_conv.image_to_numpy(detections[1].label_image, config.max_image_pixels)
                if label_mask.shape != rgb.shape[:2] or label_mask.dtype.kind not in "ui":
                    raise ValueError(f"mask is {label_mask.shape[1]}x{label_mask.shape[0]} "
                                     f"{detections[1].label_image.encoding}, expected an integer {rgb.shape[1]}x"
                                     f"{rgb.shape[0]} label image")
            except ValueError as error:
                label_mask = None
                prior_note = "; ".join(filter(None, [prior_note, f"mask rejected: {error}"]))
        note = "; ".join(filter(None, [jump_note, chain_note, prior_note]))
        return FrameInput(rgb, intrinsics, stamp_s, prior, label_mask, note, base_T_optical, prior_covariance)

    def _max_prior_age_s(self) -> float:
        return self._pipeline.config_of(LocalizerConfig).max_prior_age_s

    def _check_time_jump(self, stamp_s: float) -> str:
        """After a jump back in time, forget the old time base (caches, tracker); return the note."""
        last, self._last_image_s = self._last_image_s, stamp_s
        if last is None or stamp_s >= last - self._config.time_jump_back_s:
            return ""
        dropped = sum(cache.drop_newer_than(stamp_s + self._config.time_jump_back_s) for cache in self._caches())
        self._pipeline.reset()
        if self._robot is not None:
            self._robot.reset()
        note = (f"time jumped back {last - stamp_s:.2f} s (bag loop or clock reset): tracker reset, "
                f"{dropped} cached messages dropped")
        self.get_logger().warning(note)
        return note

    def _process(self, msg: Image) -> None:
        frame = self._frame_input(msg)
        if isinstance(frame, str):
            self.get_logger().warning(f"image skipped: {frame}", throttle_duration_sec=2.0)
            self._publish_status(msg.header, None, message=frame)
            return
        result = self._pipeline.localize(frame)
        if result.estimate is None:
            self._publish_status(msg.header, result)
            return
        nerf_T_cam = frames.nerf_to_metres(result.estimate.nerf_T_optical, self._metres_per_unit)
        header = msg.header  # outputs carry the image's stamp, never now()
        covariance = frames.covariance_nerf_to_metres(result.estimate.covariance, self._metres_per_unit)
        if self._robot is not None:  # the camera has a parent in the robot's tree: correct the root instead
            # Only estimates that the features anchored in the NeRF move the robot's frame: a photometric
            # fallback from a kinematic start stays near that start and would confirm the believed error.
            if result.trusted and result.estimate.feature_aligned is not False and frame.base_T_optical is not None:
                root_T_cam = frames.nerf_to_metres(frame.base_T_optical, self._metres_per_unit)
                note = self._robot.add_estimate(frame.stamp_s, nerf_T_cam, covariance, root_T_cam)
                result.message = "; ".join(filter(None, [result.message, note]))
        elif self._config.publish_tf:
            self._tf.send_transform(pose_msgs.matrix_to_transform_stamped(
                nerf_T_cam, self._config.nerf_frame, header.frame_id, header.stamp))
        self._pose_pub.publish(pose_msgs.pose_with_covariance_stamped(
            nerf_T_cam, covariance, self._config.nerf_frame, header.stamp))
        self._publish_status(header, result)
        if self._overlay_due():
            overlay = self._pipeline.overlay(frame, result.estimate, self._config.overlay_scale)
            self._overlay_pub.publish(image_conv.numpy_to_image(overlay, "rgb8", header))

    def _overlay_due(self) -> bool:
        config = self._config
        if config.overlay_scale <= 0 or self._overlay_pub.get_subscription_count() == 0:
            return False
        if self._frames.pending:  # a debug picture never delays the next pose
            return False
        now = time.monotonic()
        if now - self._last_overlay_time < config.overlay_period_s:
            return False
        self._last_overlay_time = now
        return True

    def _publish_status(self, header, result, message: str = "") -> None:
        status = LocalizationStatus()
        status.header.stamp = header.stamp
        status.header.frame_id = self._config.nerf_frame
        status.prior_source = LocalizationStatus.PRIOR_NONE
        status.message = message
        if result is not None:
            status.prior_source = result.prior_source
            status.message = "; ".join(filter(None, [message, result.message]))
            estimate = result.estimate
            if estimate is not None:
                status.iterations = int(estimate.iterations)
                status.final_loss = float(estimate.final_loss)
                status.converged = bool(estimate.converged)
                status.time_spent = float(estimate.time_s)
                status.num_hypotheses = int(estimate.num_hypotheses)
                status.sampling_strategy = estimate.sampling_strategy
                status.message = "; ".join(filter(None, [status.message, estimate.note]))
        self._status_pub.publish(status)

    def close(self) -> None:
        """Stop the worker (it finishes the frame it is localizing) and the robot frames' TF listener."""
        self._running = False
        self._worker.join(timeout=5.0)
        if self._robot is not None:
            self._robot.close()

    @property
    def dropped_frames(self) -> int:
        """How many images arrived while an older one still waited for the worker (and were dropped)."""
        return self._frames.dropped


def main(args=None) -> int:
    """Entry point of ``ros2 run inerf_ros inerf_node``: spin the node until shutdown; return the exit status."""
    return node_main.run(InerfNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
