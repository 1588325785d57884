"""inerf_node's place in a robot's TF tree (REP 105): the correction ``nerf -> base`` instead of ``nerf -> camera``.

On a robot the camera's optical frame already has a parent (``robot_state_publisher``: base_link -> ...
-> tool0 -> camera_link -> camera_color_optical_frame), and tf2 keeps a tree: one parent per frame.
So, as AMCL and robot_localization do, the localizer publishes the *correction* between its fixed
frame and the robot's root, ``nerf_T_root = nerf_T_cam(t) @ inv(root_T_cam(t))``, with
``root_T_cam(t)`` looked up from TF at the image's stamp. The root is ``base_frame`` on a fixed arm, or
``odom_frame`` on a mobile base (``map -> odom``). Between estimates the robot's own chain moves the
camera, so TF answers ``nerf -> ... -> camera`` at every stamp.

The correction is filtered over trusted estimates (:class:`inerf_ros.optim.correction.CorrectionFilter`:
one bad estimate must not yank the robot's frame) and republished at ``correction_rate_hz``, stamped
``now + correction_future_dating_s`` (AMCL's ``transform_tolerance``): a consumer's lookup at an image
stamp slightly newer than the last correction must not fail for extrapolation.
"""
from __future__ import annotations

import math

import numpy as np
import rclpy

from inerf_ros.optim.correction import CorrectionFilter, base_covariance_from_camera
from inerf_ros.ros import pose_msgs
from inerf_ros.ros.stamps import seconds_to_stamp, stamp_to_seconds
from inerf_ros.ros.tf import TRANSFORM_ERRORS, Buffer, TransformBroadcaster, TransformListener, lookup_matrix


def _pose_from_list(values, name: str) -> np.ndarray | None:
    """x y z qx qy qz qw -> 4x4; an empty list is None (no value given)."""
    values = [float(v) for v in values]
    if not values:
        return None
    if len(values) != 7:
        raise ValueError(f"{name} needs 7 numbers (x y z qx qy qz qw) or none, got {len(values)}")
    return pose_msgs.xyz_quat_to_matrix(values[:3], values[3:])


def root_covariance(covariance_nerf_axes: np.ndarray, nerf_T_cam: np.ndarray, root_T_cam: np.ndarray) -> np.ndarray:
    """The correction filter's covariance of ``nerf_T_root`` from an estimate's covariance.

    The estimate's is over (x, y, z, rot x, rot y, rot z) in the NeRF frame's axes at the camera; the
    filter's is a right (body) perturbation in the root frame: rotate each block into the camera's
    axes, then carry it through ``inv(root_T_cam)`` (``base_covariance_from_camera``).
    """
    rotation = np.zeros((6, 6))
    rotation[:3, :3] = rotation[3:, 3:] = nerf_T_cam[:3, :3]
    return base_covariance_from_camera(root_T_cam, rotation.T @ covariance_nerf_axes @ rotation)


class RobotFrames:
    """Looks the camera up in the robot's root frame and publishes the filtered ``nerf -> root`` correction."""

    def __init__(self, node, config, correction_config, enabled=lambda: True):
        self._node = node
        self._enabled = enabled
        self.root_frame = config.odom_frame or config.base_frame
        self._nerf_frame = config.nerf_frame
        self._timeout_s = config.tf_timeout_s
        self._future_dating_s = config.correction_future_dating_s
        self._initial_nerf_T_root = _pose_from_list(config.initial_nerf_T_base, "initial_nerf_T_base")
        self._filter = CorrectionFilter(correction_config)
        self._buffer = Buffer(node=node)
        # TF gets a node and a thread of its own (tf2_ros' spin_thread): on a busy CPU the node's executor
        # lags behind a 30-500 Hz /tf, and a chain that arrives late reads as "extrapolation into the future".
        self._tf_node = rclpy.create_node(f"{node.get_name()}_tf_listener", context=node.context,
                                          start_parameter_services=False)
        self._listener = TransformListener(self._buffer, self._tf_node, spin_thread=True)
        self._broadcaster = TransformBroadcaster(node)
        self.updates = 0
        self._published = False
        period = 1.0 / config.correction_rate_hz
        self._timer = node.create_timer(period, self.on_timer)

    @property
    def nerf_T_root(self) -> np.ndarray | None:
        """The correction TF carries now: filtered, else the initial placement, else None."""
        filtered = self._filter.nerf_T_base
        return filtered if filtered is not None else self._initial_nerf_T_root

    def root_T_camera(self, camera_frame: str, stamp) -> tuple[np.ndarray | None, str]:
        """The camera in the root frame at the image's stamp (metres), or None and the reason."""
        try:
            return lookup_matrix(self._buffer, self.root_frame, camera_frame, stamp_to_seconds(stamp),
                                 self._timeout_s), ""
        except TRANSFORM_ERRORS + (ValueError,) as error:  # tf2's exceptions, or the fallback's
            return None, f"no kinematic chain {self.root_frame} -> {camera_frame}: {error}"

    def kinematic_start(self, root_T_cam: np.ndarray | None) -> np.ndarray | None:
        """The camera in the NeRF frame predicted by the held correction and the chain (metres), or None."""
        nerf_T_root = self.nerf_T_root
        if nerf_T_root is None or root_T_cam is None:
            return None
        return nerf_T_root @ root_T_cam

    def add_estimate(self, stamp_s: float, nerf_T_cam: np.ndarray, covariance: np.ndarray,
                     root_T_cam: np.ndarray) -> str:
        """Feed one trusted estimate (metres) to the correction filter; returns a note ("" when taken)."""
        nerf_T_root = nerf_T_cam @ np.linalg.inv(root_T_cam)
        update = self._filter.update(nerf_T_root, root_covariance(covariance, nerf_T_cam, root_T_cam), stamp_s)
        self.updates += 1
        return "" if update.accepted else f"correction: {update.reason}"

    def reset(self) -> None:
        """Forget the filtered correction (after a time jump back): TF falls back to the initial placement, if any."""
        self._filter.reset()
        self._published = False

    def close(self) -> None:
        """Stop the listener's thread and node."""
        unregister = getattr(self._listener, "unregister", None)
        if unregister is not None:
            unregister()
        self._tf_node.destroy_node()

    def on_timer(self) -> None:
        """Publish the correction ``nerf -> root`` on /tf, future-dated; nothing while there is none, TF output is off
        or sim time has not started.
        """
        nerf_T_root = self.nerf_T_root
        if nerf_T_root is None or not self._enabled():
            return
        now_s = stamp_to_seconds(self._node.get_clock().now().to_msg())
        if now_s <= 0.0 or not math.isfinite(now_s):  # sim time before the first /clock message
            return
        stamps_s = [now_s + self._future_dating_s]
        if not self._published:  # TF's history of the correction starts now, not future_dating_s from now
            stamps_s.insert(0, now_s)
            self._published = True
        self._broadcaster.send_transform([pose_msgs.matrix_to_transform_stamped(
            nerf_T_root, self._nerf_frame, self.root_frame, seconds_to_stamp(stamp_s)) for stamp_s in stamps_s])
