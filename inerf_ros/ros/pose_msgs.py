"""geometry_msgs Pose / Transform <-> 4x4 numpy matrices (float64). NaNs raise."""
from __future__ import annotations

import numpy as np
import torch

from inerf_ros import lie


def xyz_quat_to_matrix(translation, quat_xyzw) -> np.ndarray:
    """4x4 from a translation (x, y, z) and a quaternion (x, y, z, w); NaN raises."""
    return _matrix(quat_xyzw, translation)


def _matrix(quat_xyzw, translation) -> np.ndarray:
    values = np.array([*quat_xyzw, *translation], dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"pose contains NaN or infinite values: quaternion={list(quat_xyzw)}, "
                         f"translation={list(translation)}")
    out = np.eye(4)
    out[:3, :3] = lie.quat_to_matrix(torch.from_numpy(values[:4])).numpy()
    out[:3, 3] = values[4:]
    return out


def _quat_and_translation(a_T_b) -> tuple[np.ndarray, np.ndarray]:
    a_T_b = np.asarray(a_T_b, dtype=np.float64)
    if a_T_b.shape != (4, 4):
        raise ValueError(f"expected a 4x4 pose, got shape {a_T_b.shape}")
    if not np.isfinite(a_T_b).all():
        raise ValueError("pose contains NaN or infinite values")
    quat = lie.matrix_to_quat(torch.from_numpy(a_T_b[:3, :3].copy())).numpy()
    return quat, a_T_b[:3, 3]


def pose_to_matrix(pose) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4."""
    q, p = pose.orientation, pose.position
    return _matrix((q.x, q.y, q.z, q.w), (p.x, p.y, p.z))


def transform_to_matrix(transform) -> np.ndarray:
    """geometry_msgs/Transform -> 4x4."""
    q, t = transform.rotation, transform.translation
    return _matrix((q.x, q.y, q.z, q.w), (t.x, t.y, t.z))


def matrix_to_pose(a_T_b):
    """4x4 -> geometry_msgs/Pose; NaN raises."""
    from geometry_msgs.msg import Pose  # lazy: the matrix conversions need no sourced ROS

    quat, translation = _quat_and_translation(a_T_b)
    msg = Pose()
    msg.position.x, msg.position.y, msg.position.z = (float(v) for v in translation)
    msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = (float(v) for v in quat)
    return msg


def matrix_to_transform_stamped(parent_T_child, parent_frame: str, child_frame: str, stamp):
    """A TransformStamped ``parent_frame -> child_frame`` (maps child points into the parent)."""
    from geometry_msgs.msg import TransformStamped  # lazy: the matrix conversions need no sourced ROS

    quat, translation = _quat_and_translation(parent_T_child)
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = parent_frame
    msg.child_frame_id = child_frame
    t, r = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = (float(v) for v in translation)
    r.x, r.y, r.z, r.w = (float(v) for v in quat)
    return msg


def pose_with_covariance_stamped(frame_T_pose, covariance_6x6, frame_id: str, stamp):
    """PoseWithCovarianceStamped; covariance rows/cols ordered (x, y, z, rot x, rot y, rot z)."""
    from geometry_msgs.msg import PoseWithCovarianceStamped  # lazy: the matrix conversions need no sourced ROS

    covariance = np.asarray(covariance_6x6, dtype=np.float64)
    if covariance.shape != (6, 6) or not np.isfinite(covariance).all():
        raise ValueError(f"covariance must be a finite 6x6 matrix, got shape {covariance.shape}")
    msg = PoseWithCovarianceStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.pose.pose = matrix_to_pose(frame_T_pose)
    msg.pose.covariance = [float(v) for v in covariance.reshape(-1)]
    return msg


def pose_with_covariance_to_numpy(msg) -> tuple[np.ndarray, np.ndarray]:
    """PoseWithCovarianceStamped -> (4x4 pose, 6x6 covariance); NaN raises."""
    pose = pose_to_matrix(msg.pose.pose)
    covariance = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6)
    if not np.isfinite(covariance).all():
        raise ValueError("covariance contains NaN or infinite values")
    return pose, covariance
