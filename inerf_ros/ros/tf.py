"""TF publishing: tf2_ros' broadcasters when importable, else tf2_msgs/TFMessage publishers.

ROS 2 from PyPI has no tf2_ros; tf2_msgs is built by the set-up when missing. The fallback
publishes exactly what tf2_ros does: ``/tf`` with depth 100, and ``/tf_static`` with
TRANSIENT_LOCAL durability and depth 1 (late joiners still receive static transforms). Static
transforms sent in several calls are accumulated, as tf2_ros' StaticTransformBroadcaster does.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
TF_STATIC_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _tf2_ros():
    try:
        import tf2_ros
        return tf2_ros
    except ImportError:
        return None


class _Broadcaster:
    """tf2_ros' broadcaster of ``kind`` when tf2_ros imports, else a TFMessage publisher on ``topic``."""

    def __init__(self, node, kind: str, topic: str, qos: QoSProfile):
        tf2_ros = _tf2_ros()
        self._impl = getattr(tf2_ros, kind)(node, qos=qos) if tf2_ros is not None else None
        if self._impl is None:
            from tf2_msgs.msg import TFMessage
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
        self._publish(list(transforms) if isinstance(transforms, (list, tuple)) else [transforms])


class StaticTransformBroadcaster(_Broadcaster):
    """Publishes static transforms on ``/tf_static`` (latched); keeps all frames sent so far."""

    def __init__(self, node, qos: QoSProfile | None = None):
        super().__init__(node, "StaticTransformBroadcaster", "/tf_static", qos or TF_STATIC_QOS)
        self._by_child: dict[str, object] = {}

    def send_transform(self, transforms) -> None:
        transforms = list(transforms) if isinstance(transforms, (list, tuple)) else [transforms]
        if self._impl is not None:  # tf2_ros accumulates by itself
            self._publish(transforms)
            return
        for transform in transforms:
            self._by_child[transform.child_frame_id] = transform
        self._publish(list(self._by_child.values()))
