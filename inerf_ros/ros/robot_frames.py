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

Where the edge goes is read from the tree the robot already publishes, before anything is published
(:func:`inerf_ros.tf_tree.correction_attachment`): a UR or Franka URDF often has ``world -> base_link``,
and ``nerf -> base_link`` would then give ``base_link`` a second parent (and, with the node's static
``world -> nerf``, close a loop). The correction then goes to the root of the robot's tree, or, when
the node's ``world_frame`` is in that tree, is published the other way round, ``world -> nerf``. A
parent that appears later (a robot_state_publisher started after this node) moves the edge and
restarts the filter, with the reason in the log and in ``localization_status``.
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import rclpy
from tf2_msgs.msg import TFMessage

from inerf_ros import tf_tree
from inerf_ros.optim.correction import CorrectionFilter, base_covariance_from_camera
from inerf_ros.ros import pose_msgs
from inerf_ros.ros.stamps import seconds_to_stamp, stamp_to_seconds
from inerf_ros.ros.tf import (TF_QOS, TF_STATIC_QOS, TRANSFORM_ERRORS, Buffer, TransformBroadcaster,
                              TransformListener, lookup_matrix)


# How often a frame waiting for the robot's tree looks again (s): TF arrives on the listener's own thread.
_TREE_POLL_S = 0.005


def _pose_from_list(values, name: str) -> np.ndarray | None:
    """x y z qx qy qz qw -> 4x4; an empty list is None (no value given)."""
    values = [float(v) for v in values]
    if not values:
        return None
    if len(values) != 7:
        raise ValueError(f"{name} needs 7 numbers (x y z qx qy qz qw) or none, got {len(values)}")
    return pose_msgs.xyz_quat_to_matrix(values[:3], values[3:])


def _initial_covariance(sigma, initial_nerf_T_base) -> np.ndarray | None:
    """``initial_nerf_T_base_sigma`` [m, deg] as the correction filter's 6x6 covariance (None when not given)."""
    values = [float(v) for v in sigma]
    if not values:
        return None
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"initial_nerf_T_base_sigma needs 2 positive numbers (m, deg) or none, got {values}")
    if initial_nerf_T_base is None:
        raise ValueError("initial_nerf_T_base_sigma is given but initial_nerf_T_base is not")
    return np.diag([values[0] ** 2] * 3 + [math.radians(values[1]) ** 2] * 3)


def root_covariance(covariance_nerf_axes: np.ndarray, nerf_T_cam: np.ndarray, root_T_cam: np.ndarray) -> np.ndarray:
    """The correction filter's covariance of ``nerf_T_root`` from an estimate's covariance.

    The estimate's is over (x, y, z, rot x, rot y, rot z) in the NeRF frame's axes at the camera; the
    filter's is a right (body) perturbation in the root frame: rotate each block into the camera's
    axes, then carry it through ``inv(root_T_cam)`` (``base_covariance_from_camera``).
    """
    rotation = np.zeros((6, 6))
    rotation[:3, :3] = rotation[3:, 3:] = nerf_T_cam[:3, :3]
    return base_covariance_from_camera(root_T_cam, rotation.T @ covariance_nerf_axes @ rotation)


class TreeMonitor:
    """Who is whose parent on TF, as the *other* publishers give it (every edge touching ``nerf_frame`` is ours).

    tf2's buffer keeps one parent per frame, the newest, so it cannot tell a robot's ``world -> base_link``
    from the correction that would replace it: this records the robot's tree as published, on the
    listener's own node and thread.
    """

    def __init__(self, node, nerf_frame: str):
        self._nerf_frame = nerf_frame
        self._lock = threading.Lock()
        self._parents: dict[str, str] = {}
        self._frames: set[str] = set()
        self._subscriptions = [node.create_subscription(TFMessage, "/tf", self.on_tf, TF_QOS),
                               node.create_subscription(TFMessage, "/tf_static", self.on_tf, TF_STATIC_QOS)]

    def on_tf(self, msg: TFMessage) -> None:
        """Record the parent of every child frame in the message (edges to or from the NeRF frame excepted)."""
        with self._lock:
            for transform in msg.transforms:
                parent, child = transform.header.frame_id, transform.child_frame_id
                if self._nerf_frame in (parent, child) or not parent or not child or parent == child:
                    continue
                self._parents[child] = parent
                self._frames.update((parent, child))

    def snapshot(self) -> tuple[dict[str, str], set[str]]:
        """(child -> parent, every frame named) as published so far."""
        with self._lock:
            return dict(self._parents), set(self._frames)


class RobotFrames:
    """Looks the camera up in the robot's root frame and publishes the filtered ``nerf -> root`` correction."""

    def __init__(self, node, config, correction_config, enabled=lambda: True, on_attached=None):
        self._node = node
        self._enabled = enabled
        self.base_frame = config.odom_frame or config.base_frame  # the frame the user named
        self._world_frame = config.world_frame
        self._nerf_frame = config.nerf_frame
        self._timeout_s = config.tf_timeout_s
        self._future_dating_s = config.correction_future_dating_s
        self._initial_nerf_T_base = _pose_from_list(config.initial_nerf_T_base, "initial_nerf_T_base")
        self._initial_nerf_T_root: np.ndarray | None = None
        self._initial_covariance = _initial_covariance(config.initial_nerf_T_base_sigma, self._initial_nerf_T_base)
        self._filter = CorrectionFilter(correction_config)
        self._on_attached = on_attached  # called with the Attachment once the edge's place is known
        self.attachment: tf_tree.Attachment | None = None
        self._attach_lock = threading.Lock()
        self.tree_note = ""  # why the edge is where it is, or why it cannot be placed yet
        self._buffer = Buffer(node=node)
        # TF gets a node and a thread of its own (tf2_ros' spin_thread): on a busy CPU the node's executor
        # lags behind a 30-500 Hz /tf, and a chain that arrives late reads as "extrapolation into the future".
        self._tf_node = rclpy.create_node(f"{node.get_name()}_tf_listener", context=node.context,
                                          start_parameter_services=False)
        self._tree = TreeMonitor(self._tf_node, self._nerf_frame)
        self._listener = TransformListener(self._buffer, self._tf_node, spin_thread=True)
        self._broadcaster = TransformBroadcaster(node)
        self.updates = 0
        self._published = False
        period = 1.0 / config.correction_rate_hz
        self._timer = node.create_timer(period, self.on_timer)

    @property
    def root_frame(self) -> str:
        """The robot-side frame of the correction edge (``base_frame`` until the tree says otherwise)."""
        return self.attachment.frame if self.attachment is not None else self.base_frame

    @property
    def nerf_T_root(self) -> np.ndarray | None:
        """The correction TF carries now: filtered, else the initial placement, else None."""
        filtered = self._filter.nerf_T_base
        return filtered if filtered is not None else self._initial_nerf_T_root

    def update_attachment(self) -> tf_tree.Attachment | None:
        """Place the correction edge in the robot's tree as published now (None while ``base_frame`` is not on TF).

        A change of place (a parent that appeared later) restarts the filter: its state was relative to
        the old frame.
        """
        with self._attach_lock:  # the worker's lookups and the timer both place the edge
            return self._update_attachment()

    def _update_attachment(self) -> tf_tree.Attachment | None:
        parents, frames = self._tree.snapshot()
        if self.base_frame not in frames:
            self.tree_note = f"'{self.base_frame}' is not on TF yet (no correction is published until it is)"
            return None
        try:
            attachment = tf_tree.correction_attachment(parents, self.base_frame, self._world_frame)
        except ValueError as error:  # the robot's own tree has a loop: publishing anything would not mend it
            self.tree_note = f"cannot place the correction: {error}"
            return None
        if attachment == self.attachment:
            return attachment
        if self.attachment is not None:
            self._node.get_logger().warning(f"TF tree changed: the correction moves from '{self.attachment.frame}' "
                                            f"to '{attachment.frame}' ({attachment.reason}); filter restarted")
            self._filter.reset()
            self._published = False
        elif attachment.frame != self.base_frame or attachment.nerf_is_child:
            self._node.get_logger().warning(f"correction placed at '{attachment.frame}': {attachment.reason}")
        self._initial_nerf_T_root = self._initial_placement(attachment.frame)
        self.attachment = attachment
        self.tree_note = "" if attachment.frame == self.base_frame and not attachment.nerf_is_child \
            else f"correction at '{attachment.frame}': {attachment.reason}"
        if self._on_attached is not None:
            self._on_attached(attachment)
        return attachment

    def _wait_for_attachment(self, timeout_s: float) -> tf_tree.Attachment | None:
        """:meth:`update_attachment`, waiting up to ``timeout_s`` for ``base_frame`` to reach TF (as a lookup waits:
        the robot's first /tf_static may arrive just after the first image).
        """
        deadline = time.monotonic() + timeout_s
        while (attachment := self.update_attachment()) is None and time.monotonic() < deadline:
            time.sleep(_TREE_POLL_S)
        return attachment

    def _initial_placement(self, root_frame: str) -> np.ndarray | None:
        """``initial_nerf_T_base`` carried to the correction's frame (None when not given or not yet on TF)."""
        if self._initial_nerf_T_base is None or root_frame == self.base_frame:
            return self._initial_nerf_T_base
        try:
            root_T_base = lookup_matrix(self._buffer, root_frame, self.base_frame, None, 0.0)
        except TRANSFORM_ERRORS + (ValueError,) as error:
            self._node.get_logger().warning(f"initial_nerf_T_base not used: no {root_frame} -> {self.base_frame} "
                                            f"on TF ({error})")
            return None
        return self._initial_nerf_T_base @ np.linalg.inv(root_T_base)

    def root_T_camera(self, camera_frame: str, stamp) -> tuple[np.ndarray | None, str]:
        """The camera in the root frame at the image's stamp (metres), or None and the reason."""
        if self._wait_for_attachment(self._timeout_s) is None:
            return None, f"no kinematic chain {self.base_frame} -> {camera_frame}: {self.tree_note}"
        try:
            return lookup_matrix(self._buffer, self.root_frame, camera_frame, stamp_to_seconds(stamp),
                                 self._timeout_s), self.tree_note
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
        if not self._filter.initialized and self._initial_covariance is not None and \
                self._initial_nerf_T_root is not None:  # a measured placement is a prior, not a placeholder
            self._filter.initialize(self._initial_nerf_T_root, self._initial_covariance, stamp_s)
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
        if self.update_attachment() is None:
            return
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
        if self.attachment.nerf_is_child:  # the same correction, as the edge root -> nerf
            parent, child, parent_T_child = self.root_frame, self._nerf_frame, np.linalg.inv(nerf_T_root)
        else:
            parent, child, parent_T_child = self._nerf_frame, self.root_frame, nerf_T_root
        self._broadcaster.send_transform([pose_msgs.matrix_to_transform_stamped(
            parent_T_child, parent, child, seconds_to_stamp(stamp_s)) for stamp_s in stamps_s])
