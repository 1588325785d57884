"""TF publishing and listening: tf2_ros when importable, else a fallback with the same calls.

ROS 2 from PyPI has no tf2_ros; tf2_msgs is built by the set-up when missing. The fallback
publishes exactly what tf2_ros does: ``/tf`` with depth 100, and ``/tf_static`` with
TRANSIENT_LOCAL durability and depth 1 (late joiners still receive static transforms). Static
transforms sent in several calls are accumulated, as tf2_ros' StaticTransformBroadcaster does.

Listening: :data:`Buffer` and :data:`TransformListener` are tf2_ros' classes when tf2_ros imports,
else :class:`FallbackBuffer` / :class:`FallbackTransformListener`, which keep ``/tf`` and
``/tf_static`` in an ``inerf_ros.tf_tree.TfTree`` and answer ``lookup_transform`` /
``can_transform`` with tf2's semantics (SLERP / linear interpolation, latest common time for time 0,
the same extrapolation rules). Catch :data:`TRANSFORM_ERRORS` to handle a failed lookup from either.
:func:`lookup_matrix` is the one call the nodes need: ``target_T_source`` as a 4x4 at a stamp.
"""
from __future__ import annotations

import threading
import time as _time

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time

from inerf_ros import tf_tree
from inerf_ros.ros.pose_msgs import transform_to_matrix
from inerf_ros.ros.stamps import seconds_to_stamp

TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
TF_STATIC_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _tf2_ros():
    try:
        import tf2_ros  # optional: the fallback below stands in where tf2_ros is not installed
        return tf2_ros
    except ImportError:
        return None


class _Broadcaster:
    """tf2_ros' broadcaster of ``kind`` when tf2_ros imports, else a TFMessage publisher on ``topic``."""

    def __init__(self, node, kind: str, topic: str, qos: QoSProfile):
        tf2_ros = _tf2_ros()
        self._impl = getattr(tf2_ros, kind)(node, qos=qos) if tf2_ros is not None else None
        if self._impl is None:
            from tf2_msgs.msg import TFMessage  # lazy: only the fallback publishes TFMessage itself

            self._message_type = TFMessage
            self._publisher = node.create_publisher(TFMessage, topic, qos)

    def _publish(self, transforms: list) -> None:
        if self._impl is not None:
            self._impl.sendTransform(transforms)
        else:
            self._publisher.publish(self._message_type(transforms=transforms))


class TransformBroadcaster(_Broadcaster):
    """Publishes dynamic transforms on ``/tf`` (one TFMessage per call)."""

    def __init__(self, node, qos: QoSProfile | None = None):
        super().__init__(node, "TransformBroadcaster", "/tf", qos or TF_QOS)

    def send_transform(self, transforms) -> None:
        """Publish one transform or a list of them (TransformStamped) on /tf as one message."""
        self._publish(list(transforms) if isinstance(transforms, (list, tuple)) else [transforms])


class StaticTransformBroadcaster(_Broadcaster):
    """Publishes static transforms on ``/tf_static`` (latched); keeps all frames sent so far."""

    def __init__(self, node, qos: QoSProfile | None = None):
        super().__init__(node, "StaticTransformBroadcaster", "/tf_static", qos or TF_STATIC_QOS)
        self._by_child: dict[str, object] = {}

    def send_transform(self, transforms) -> None:
        """Publish one transform or a list on /tf_static, with every frame sent before (latched, one per child)."""
        transforms = list(transforms) if isinstance(transforms, (list, tuple)) else [transforms]
        if self._impl is not None:  # tf2_ros accumulates by itself
            self._publish(transforms)
            return
        for transform in transforms:
            self._by_child[transform.child_frame_id] = transform
        self._publish(list(self._by_child.values()))


# -------------------------------------------------------------------------------------------------
# Listening


def _seconds(time) -> float:
    """Seconds of an rclpy Time, a builtin_interfaces/Time, a number or None (0: latest)."""
    if time is None:
        return 0.0
    if hasattr(time, "nanoseconds"):  # rclpy.time.Time
        return time.nanoseconds * 1e-9
    if hasattr(time, "sec"):  # builtin_interfaces/Time
        return float(time.sec) + 1e-9 * float(time.nanosec)
    return float(time)


def _duration_seconds(duration) -> float:
    if duration is None:
        return 0.0
    return duration.nanoseconds * 1e-9 if hasattr(duration, "nanoseconds") else float(duration)


class FallbackBuffer:
    """tf2_ros.Buffer's calls over a :class:`inerf_ros.tf_tree.TfTree`, thread-safe.

    ``cache_time`` (a Duration or seconds, default 10 s as tf2) bounds the history. A dynamic sample
    older than its frame's newest by more than ``time_jump_back_s`` (a bag loop, a simulation reset)
    clears the dynamic history; ``time_jumps`` counts those and ``on_time_jump(TimeJump)`` is called
    (the node's logger warns when a node is given). A lookup with a ``timeout`` waits, without
    spinning, until a listener running in another thread brings the data or the time is up: as with
    tf2_ros, call it from a callback only under a multi-threaded executor (or with ``spin_thread``).
    """

    def __init__(self, cache_time=None, node=None, *, time_jump_back_s: float = 1.0,
                 extrapolation_tolerance_s: float = 0.0, on_time_jump=None):
        cache_time_s = _duration_seconds(cache_time) if cache_time is not None else 10.0
        self._node = node
        self._on_time_jump = on_time_jump
        self._condition = threading.Condition()
        self.tree = tf_tree.TfTree(cache_time_s, extrapolation_tolerance_s, time_jump_back_s,
                                   on_time_jump=self._time_jumped)

    @property
    def time_jumps(self) -> int:
        """How many times a jump back in time cleared the dynamic history."""
        return self.tree.time_jumps

    def _time_jumped(self, jump: tf_tree.TimeJump) -> None:
        if self._node is not None:
            self._node.get_logger().warning(
                f"TF jumped back in time ({jump.frame} at {jump.stamp_s:.3f} s after {jump.newest_s:.3f} s): "
                f"cleared the TF buffer")
        if self._on_time_jump is not None:
            self._on_time_jump(jump)

    def _store(self, transform, authority: str, static: bool) -> bool:
        t, r = transform.transform.translation, transform.transform.rotation
        with self._condition:
            self.tree.set_transform_quat(transform.header.frame_id, transform.child_frame_id,
                                         _seconds(transform.header.stamp), (t.x, t.y, t.z), (r.x, r.y, r.z, r.w),
                                         static=static, authority=authority)
            self._condition.notify_all()
        return True

    def set_transform(self, transform, authority: str) -> bool:
        """Store a dynamic TransformStamped; a NaN or non-unit quaternion raises ``ValueError``."""
        return self._store(transform, authority, static=False)

    def set_transform_static(self, transform, authority: str) -> bool:
        """Store a static TransformStamped (valid at all times)."""
        return self._store(transform, authority, static=True)

    def clear(self) -> None:
        """Forget every transform, static ones too."""
        with self._condition:
            self.tree.clear()

    def _wait(self, check, timeout) -> None:
        """Wait until ``check()`` (run under the lock) is true or ``timeout`` has passed."""
        deadline = _time.monotonic() + _duration_seconds(timeout)
        with self._condition:
            while not check():
                remaining = deadline - _time.monotonic()
                if remaining <= 0:
                    return
                self._condition.wait(remaining)

    def lookup_matrix_stamped(self, target_frame: str, source_frame: str, time, timeout=None) -> tuple:
        """(``target_T_source`` 4x4, the time in seconds it holds at); raises ``tf_tree.TransformError``."""
        stamp_s = _seconds(time)
        self._wait(lambda: self.tree.can_lookup(target_frame, source_frame, stamp_s)[0], timeout)
        with self._condition:
            return self.tree.lookup_stamped(target_frame, source_frame, stamp_s)

    def lookup_transform(self, target_frame: str, source_frame: str, time, timeout=None):
        """geometry_msgs/TransformStamped ``target_frame -> source_frame`` at ``time`` (Time() for the latest)."""
        target_T_source, stamp_s = self.lookup_matrix_stamped(target_frame, source_frame, time, timeout)
        msg = TransformStamped()
        # Echo a requested stamp as given (a float round trip could shift its nanoseconds); the latest
        # common time comes from the stored float seconds (within ~0.2 us of the message's stamp).
        if _seconds(time) != 0.0 and hasattr(time, "to_msg"):
            msg.header.stamp = time.to_msg()
        elif _seconds(time) != 0.0 and hasattr(time, "sec"):
            msg.header.stamp = time
        else:
            msg.header.stamp = seconds_to_stamp(stamp_s)
        msg.header.frame_id = target_frame
        msg.child_frame_id = source_frame
        quat = tf_tree.matrix_to_quat(target_T_source[:3, :3])
        t, r = msg.transform.translation, msg.transform.rotation
        t.x, t.y, t.z = (float(v) for v in target_T_source[:3, 3])
        r.x, r.y, r.z, r.w = (float(v) for v in quat)
        return msg

    def can_transform(self, target_frame: str, source_frame: str, time, timeout=None,
                      return_debug_tuple: bool = False):
        """Whether the lookup would succeed (waiting up to ``timeout``); with the reason if asked."""
        stamp_s = _seconds(time)
        self._wait(lambda: self.tree.can_lookup(target_frame, source_frame, stamp_s)[0], timeout)
        with self._condition:
            ok, reason = self.tree.can_lookup(target_frame, source_frame, stamp_s)
        return (ok, reason) if return_debug_tuple else ok


class FallbackTransformListener:
    """Fills a buffer from ``/tf`` (TF_QOS) and ``/tf_static`` (TF_STATIC_QOS), as tf2_ros' listener.

    The subscriptions get a callback group of their own, so that under a multi-threaded executor TF
    keeps arriving while another callback waits in a lookup; ``spin_thread=True`` spins the node in a
    dedicated thread instead, as tf2_ros does. A malformed transform from another node (NaN, a
    non-unit quaternion) is dropped with a warning, never raised into the executor.
    """

    def __init__(self, buffer, node, *, spin_thread: bool = False, qos: QoSProfile | None = None,
                 static_qos: QoSProfile | None = None):
        from tf2_msgs.msg import TFMessage  # lazy: only the fallback subscribes to TFMessage itself

        self.buffer = buffer
        self.node = node
        self._group = MutuallyExclusiveCallbackGroup()
        self._tf_sub = node.create_subscription(TFMessage, "/tf", self.on_tf, qos or TF_QOS,
                                                callback_group=self._group)
        self._tf_static_sub = node.create_subscription(TFMessage, "/tf_static", self.on_tf_static,
                                                       static_qos or TF_STATIC_QOS, callback_group=self._group)
        self._executor = None
        self._thread = None
        if spin_thread:
            self._executor = SingleThreadedExecutor(context=node.context)
            self._executor.add_node(node)
            self._thread = threading.Thread(target=self._executor.spin, daemon=True)
            self._thread.start()

    def _store(self, msg, static: bool) -> None:
        for transform in msg.transforms:
            try:
                if static:
                    self.buffer.set_transform_static(transform, "default_authority")
                else:
                    self.buffer.set_transform(transform, "default_authority")
            except ValueError as error:
                self.node.get_logger().warning(f"dropped a TF message: {error}", throttle_duration_sec=5.0)

    def on_tf(self, msg) -> None:
        """Store a /tf message's transforms; a malformed one is dropped with a warning."""
        self._store(msg, static=False)

    def on_tf_static(self, msg) -> None:
        """Store a /tf_static message's transforms; a malformed one is dropped with a warning."""
        self._store(msg, static=True)

    def unregister(self) -> None:
        """Stop listening (and the dedicated thread, if any)."""
        if self._executor is not None:
            self._executor.shutdown()
            self._thread.join(timeout=5.0)
            self._executor = None
        self.node.destroy_subscription(self._tf_sub)
        self.node.destroy_subscription(self._tf_static_sub)


_TF2 = _tf2_ros()
Buffer = _TF2.Buffer if _TF2 is not None else FallbackBuffer
TransformListener = _TF2.TransformListener if _TF2 is not None else FallbackTransformListener
# Every exception a failed lookup raises, from either implementation.
TRANSFORM_ERRORS: tuple[type[Exception], ...] = (tf_tree.TransformError,) + (
    (_TF2.TransformException,) if _TF2 is not None else ())


def lookup_matrix(buffer, target_frame: str, source_frame: str, stamp_s: float | None,
                  timeout_s: float = 0.0) -> np.ndarray:
    """``target_T_source`` (4x4 float64) at ``stamp_s`` (None/0: latest common time), from either buffer.

    Waits up to ``timeout_s`` for the data; raises one of :data:`TRANSFORM_ERRORS` when it does not come.
    """
    if isinstance(buffer, FallbackBuffer):  # no message round trip: exact and faster
        return buffer.lookup_matrix_stamped(target_frame, source_frame, stamp_s or 0.0, timeout_s)[0]
    time = Time() if not stamp_s else Time.from_msg(seconds_to_stamp(stamp_s))
    msg = buffer.lookup_transform(target_frame, source_frame, time, timeout=Duration(nanoseconds=int(timeout_s * 1e9)))
    return transform_to_matrix(msg.transform)
