"""A world built in the test: a small NeRF fitted to an analytic textured box, short bags of views of
it (written here with rosbags, the layout of `inerf-ros make-bag`), and a PoseCNN stand-in.

The stand-in detector is a test double, said so: it knows the truth of the frames it was built
for (looked up by the image's bytes) and returns the box's pose perturbed by a fixed, known error,
so the prior is realistic (a few degrees and centimetres off) and its effect is exactly known.
"""
import dataclasses
import hashlib
import math

import numpy as np
import pytest
import torch

from inerf_ros import frames, lie
from inerf_ros.camera import Intrinsics
from inerf_ros.posecnn.types import Detection, DetectionResult

START_STAMP_S = 1_700_000_000.0
INTRINSICS = Intrinsics(64, 48, 56.0, 56.0, 31.5, 23.5)
OBJECTS_YAML = """frame: world
metres_per_unit: 1.0
objects:
  box:
    class_id: 1
    position: [0.0, 0.0, 0.0]
    quaternion_xyzw: [0.0, 0.0, 0.0, 1.0]
"""


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine this is ~10x faster than two (measured: 4 s vs 40 s
    for the fit below); restored afterwards so other test areas keep their setting.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def box_nerf(one_torch_thread):
    from inerf_ros.testing import fit_nerf

    return fit_nerf(steps=100, n_samples=32)


@dataclasses.dataclass
class View:
    stamp_s: float
    rgb: np.ndarray
    label: np.ndarray
    world_T_cam: np.ndarray


@pytest.fixture(scope="session")
def box_views(box_nerf):
    """Four views on an arc around the box, 0.1 s apart (rendered by the NeRF itself: exact truth)."""
    from inerf_ros.nerf.render import render_image

    views = []
    for k in range(4):
        angle = math.radians(-30 + 12 * k)
        eye = [2.3 * math.cos(angle), 2.3 * math.sin(angle), 1.2]
        world_T_cam = frames.look_at(eye, (0.0, 0.0, 0.0))
        with torch.no_grad():
            out = render_image(box_nerf, INTRINSICS, torch.from_numpy(frames.optical_to_opengl(world_T_cam)).float())
        rgb = (out["rgb"].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        label = (out["opacity"].numpy() > 0.5).astype(np.uint8)
        views.append(View(START_STAMP_S + 0.1 * k, rgb, label, world_T_cam))
    return views


PRIOR_ERROR_DEG, PRIOR_SHIFT_M = 3.0, (0.02, -0.015, 0.01)


class OracleDetector:
    """Test double of PoseCNN: the true box pose of a known frame, off by a fixed rotation and shift."""

    class_names = ["box"]

    def __init__(self, views):
        self._truth = {hashlib.sha1(v.rgb.tobytes()).hexdigest(): v for v in views}

    def detect(self, rgb, K):
        view = self._truth.get(hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest())
        if view is None:
            return DetectionResult([], np.zeros(rgb.shape[:2], np.uint8))
        cam_T_obj = np.linalg.inv(view.world_T_cam)  # world = nerf, the box frame is the world frame
        rotation = lie.axis_angle_rotation(torch.tensor([0.3, 1.0, 0.2], dtype=torch.float64),
                                           torch.tensor(math.radians(PRIOR_ERROR_DEG), dtype=torch.float64)).numpy()
        cam_T_obj[:3, :3] = rotation @ cam_T_obj[:3, :3]
        cam_T_obj[:3, 3] += PRIOR_SHIFT_M
        return DetectionResult([Detection(1, "box", 0.9, cam_T_obj, 1.0)], view.label.copy())


TOOL0_T_CAMERA = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, -0.07], [0.0, 0.0, 1.0, 0.035], [0, 0, 0, 1.0]])


def _between(a_T_b: np.ndarray, a_T_c: np.ndarray, fraction: float) -> np.ndarray:
    """A pose ``fraction`` of the way from one pose to another (SLERP and linear)."""
    from scipy.spatial.transform import Rotation, Slerp

    out = np.eye(4)
    out[:3, :3] = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a_T_b[:3, :3], a_T_c[:3, :3]])))(
        [fraction]).as_matrix()[0]
    out[:3, 3] = (1 - fraction) * a_T_b[:3, 3] + fraction * a_T_c[:3, 3]
    return out


def _transform(types, stamp, parent, child, pose):
    from inerf_ros.scene.bag_command import tf_stamped as make

    return make(types, stamp, parent, child, pose)


# A robot bag's arm: its true base placement in the world (= NeRF) frame, and the one it believes.
WORLD_T_BASE = frames.look_at([1.5, -1.0, 0.0], (0.0, 0.0, 0.0))
BELIEVED_SHIFT_M = (0.03, 0.0, -0.02)


def write_bag(path, views, camera_info=True, ground_truth=True, corrupt=(), intrinsics=INTRINSICS, robot=False):
    """A bag in make-bag's layout; images whose index is in ``corrupt`` are written truncated.

    ``robot``: images in ``camera_color_optical_frame`` with an arm's chain on TF as robot_state_publisher
    would publish it (``base_link -> tool0`` dynamic at each image and between images, ``tool0 ->
    camera_color_optical_frame`` static) and the true base as ``world -> base_link_gt``.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = store.types
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        image_conn = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        info_conn = writer.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=store)
        static_conn = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=store)
        tf_conn = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=store)
        for k, view in enumerate(views):
            ns = int(round(view.stamp_s * 1e9))
            stamp = types["builtin_interfaces/msg/Time"](sec=ns // 10 ** 9, nanosec=ns % 10 ** 9)
            camera_frame = "camera_color_optical_frame" if robot else "camera_optical"
            if k == 0:
                static = [_transform(types, stamp, "world", "nerf", np.eye(4))]
                if robot:
                    static += [_transform(types, stamp, "world", "base_link_gt", WORLD_T_BASE),
                               _transform(types, stamp, "tool0", camera_frame, TOOL0_T_CAMERA)]
                writer.write(static_conn, ns, store.serialize_cdr(types["tf2_msgs/msg/TFMessage"](
                    transforms=static), "tf2_msgs/msg/TFMessage"))
            if robot:  # the chain at the image, and half-way to the next one (robot_state_publisher's rate)
                following = views[min(k + 1, len(views) - 1)]
                for fraction in (0.0, 0.5):
                    at_ns = ns + int(round(fraction * (following.stamp_s - view.stamp_s) * 1e9))
                    world_T_cam = _between(view.world_T_cam, following.world_T_cam, fraction)
                    base_T_tool0 = np.linalg.inv(WORLD_T_BASE) @ world_T_cam @ np.linalg.inv(TOOL0_T_CAMERA)
                    at = types["builtin_interfaces/msg/Time"](sec=at_ns // 10 ** 9, nanosec=at_ns % 10 ** 9)
                    writer.write(tf_conn, at_ns, store.serialize_cdr(types["tf2_msgs/msg/TFMessage"](
                        transforms=[_transform(types, at, "base_link", "tool0", base_T_tool0)]),
                        "tf2_msgs/msg/TFMessage"))
            header = types["std_msgs/msg/Header"](stamp=stamp, frame_id=camera_frame)
            h, w = view.rgb.shape[:2]
            image = store.serialize_cdr(types["sensor_msgs/msg/Image"](
                header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w,
                data=np.ascontiguousarray(view.rgb).reshape(-1)), "sensor_msgs/msg/Image")
            if k in corrupt:
                image = image[: len(image) // 3]
            writer.write(image_conn, ns, image)
            if camera_info:
                p = np.zeros((3, 4))
                p[:3, :3] = intrinsics.K
                roi = types["sensor_msgs/msg/RegionOfInterest"](
                    x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
                info = types["sensor_msgs/msg/CameraInfo"](
                    header=header, height=intrinsics.height, width=intrinsics.width, distortion_model="plumb_bob",
                    d=np.zeros(5), k=intrinsics.K.ravel().astype(np.float64), r=np.eye(3).ravel(), p=p.ravel(),
                    binning_x=0, binning_y=0, roi=roi)
                writer.write(info_conn, ns, store.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            if ground_truth:
                writer.write(tf_conn, ns, store.serialize_cdr(types["tf2_msgs/msg/TFMessage"](
                    transforms=[_transform(types, stamp, "world", "camera_optical_gt", view.world_T_cam)]),
                    "tf2_msgs/msg/TFMessage"))
    return path
