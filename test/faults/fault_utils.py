"""Shared inputs of the fault suite: a known table of objects, a camera seeing them, good detections."""
import time

import numpy as np
from scipy.spatial.transform import Rotation

from inerf_ros.frames import look_at
from inerf_ros.testing import tiny_detector, tiny_pipeline  # noqa: F401 - re-exported to the tests

# Seven objects on a table, NeRF units = metres (metres_per_unit 1).
OBJECTS = {
    "cracker_box": ([-0.17, 0.12, 0.105], 0.35), "sugar_box": ([0.0, -0.15, 0.0875], -0.6),
    "soup_can": ([0.13, 0.04, 0.051], 0.0), "coffee_can": ([-0.22, -0.13, 0.07], 0.0),
    "mug": ([0.22, -0.16, 0.0475], 2.1), "bottle": ([0.03, 0.2, 0.11], 0.0), "tea_box": ([0.26, 0.17, 0.02], 1.0),
}


def nerf_T_objects() -> dict:
    out = {}
    for name, (position, yaw) in OBJECTS.items():
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_rotvec([0.0, 0.0, yaw]).as_matrix()
        pose[:3, 3] = position
        out[name] = pose
    return out


def object_poses_parameter() -> list:
    """The ``object_poses`` parameter of the table above."""
    entries = []
    for name, pose in nerf_T_objects().items():
        values = list(pose[:3, 3]) + list(Rotation.from_matrix(pose[:3, :3]).as_quat())
        entries.append(name + " " + " ".join(repr(float(v)) for v in values))
    return entries


def camera() -> np.ndarray:
    """nerf_T_cam of a ROS optical camera 0.8 m from the table, looking at its centre."""
    return look_at([0.3, -0.6, 0.5], np.zeros(3))


def good_detections(nerf_T_cam=None) -> list[dict]:
    """Exact detections of every object from ``nerf_T_cam`` (default :func:`camera`)."""
    nerf_T_cam = camera() if nerf_T_cam is None else nerf_T_cam
    cam_T_nerf = np.linalg.inv(nerf_T_cam)
    return [{"class_name": name, "score": 0.9, "cam_T_obj": cam_T_nerf @ pose, "visible_fraction": 0.9}
            for name, pose in nerf_T_objects().items()]


def spin_until(executor, condition, timeout_s=10.0):
    """Spin ``executor`` until ``condition()`` is true; return whether it became true in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if condition():
            return True
    return condition()


# -- tiny real nodes, in-process ------------------------------------------------------------------
def camera_prior(z=-3.0) -> np.ndarray:
    """A camera ``-z`` units in front of the box, looking along +z (optical)."""
    nerf_T_cam = np.eye(4)
    nerf_T_cam[:3, 3] = [0.0, 0.0, z]
    return nerf_T_cam


def rss_bytes() -> int:
    """Resident set size of this process (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Flood:
    """Publishes camera frames as fast as asked, most of them good and some bad (oversize images,
    absurd camera_infos, wrong-size masks, NaN priors, jumps back in time), for the memory tests and
    the soak (bench/soak.py). Every message is small except the oversize images, which the nodes
    must refuse before decoding.
    """

    def __init__(self, context, width=64, height=48, oversize=(400, 300)):
        import rclpy
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image

        from inerf_ros.camera import Intrinsics
        from inerf_ros.msg import ObjectPoseArray

        self.node = rclpy.create_node("flood", context=context)
        self.image_pub = self.node.create_publisher(Image, "image_raw", qos_profile_sensor_data)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.prior_pub = self.node.create_publisher(PoseWithCovarianceStamped, "camera_prior", QoSProfile(depth=5))
        self.mask_pub = self.node.create_publisher(ObjectPoseArray, "detections", QoSProfile(depth=5))
        self.size, self.oversize = (width, height), oversize
        self.intrinsics = Intrinsics(width, height, 60.0, 60.0, (width - 1) / 2, (height - 1) / 2)
        rng = np.random.default_rng(0)
        self.rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        self.big = rng.integers(0, 255, (oversize[1], oversize[0], 3), dtype=np.uint8)
        self.sent = 0
        self.stamp_s = 1700000000.0

    def publish(self, k: int) -> None:
        """Frame number ``k``: every 10th carries a fault, in turn."""
        from inerf_ros.camera import Intrinsics
        from inerf_ros.msg import ObjectPoseArray
        from inerf_ros.ros import camera_info, image, pose_msgs
        from inerf_ros.ros.stamps import seconds_to_stamp

        self.stamp_s += 0.01
        fault = (k // 10) % 5 if k % 10 == 9 else None
        if fault == 4:                      # a bag loop: time goes back 100 s
            self.stamp_s -= 100.0
        stamp = seconds_to_stamp(self.stamp_s)
        intrinsics, rgb = self.intrinsics, self.rgb
        if fault == 0:                      # oversize image with its matching camera_info
            w, h = self.oversize
            intrinsics, rgb = Intrinsics(w, h, 300.0, 300.0, (w - 1) / 2, (h - 1) / 2), self.big
        info = camera_info.intrinsics_to_camera_info(intrinsics)
        if fault == 1:                      # absurd focal length
            info.k = [1e300, 0.0, 31.5, 0.0, 1e300, 23.5, 0.0, 0.0, 1.0]
        info.header.stamp, info.header.frame_id = stamp, "camera_optical"
        self.info_pub.publish(info)
        prior = camera_prior()
        msg = pose_msgs.pose_with_covariance_stamped(prior, np.eye(6) * 1e-2, "nerf", stamp)
        if fault == 2:
            msg.pose.pose.orientation.w = float("nan")
        self.prior_pub.publish(msg)
        mask = ObjectPoseArray()
        mask.header.stamp = stamp
        shape = (self.size[1] // 2, self.size[0] // 2) if fault == 3 else (self.size[1], self.size[0])
        mask.label_image = image.numpy_to_image(np.ones(shape, np.uint8), "mono8")
        self.mask_pub.publish(mask)
        frame = image.numpy_to_image(rgb, "rgb8")
        frame.header.stamp, frame.header.frame_id = stamp, "camera_optical"
        self.image_pub.publish(frame)
        self.sent += 1
