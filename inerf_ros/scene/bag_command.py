"""``inerf-ros make-bag``: a ROS 2 bag (MCAP) of a rendered camera trajectory, standard messages only.

Topics (see ``README.md`` here): ``/camera/image_raw`` (sensor_msgs/Image, rgb8), ``/camera/camera_info``
(sensor_msgs/CameraInfo, plumb_bob, zero distortion), ``/tf_static`` (``world -> nerf``, identity) and
``/tf`` with the ground-truth camera pose as ``world -> camera_optical_gt`` (a separate child frame,
never the estimate's camera frame). Stamps = ``--start-time`` + the trajectory's ``time``.

For the arm trajectory the bag is what a real UR arm with a wrist camera records:
``/joint_states`` (the encoders: true angles + noise, ``joint_states_per_frame`` times per image,
interpolated between frames), ``/tf`` with the six joints ``base_link -> ... -> wrist_3_link`` and
``/tf_static`` with ``wrist_3_link -> tool0 -> camera_link -> camera_color_optical_frame``, both as
robot_state_publisher computes them from the robot's *believed* model (base and hand-eye slightly
off), and the true base placement as ``world -> base_link_gt`` on /tf_static. No ``world -> base_link``:
the base's parent is for the localizer to publish (``nerf -> base_link``); the believed placement a
user would start it from is ``believed_world_T_base`` in ``arm/robot.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inerf_ros.config import option
from inerf_ros import config as cfg
from inerf_ros.robot.model import reported_joints
from inerf_ros.scene.dataset import load_frames, load_robot


@dataclasses.dataclass
class BagConfig:
    """What goes into the bag and under which names."""

    trajectory: str = option("arm", "split of the scene to replay (arm: the wrist-camera trajectory)",
                             choices=("arm", "nerf", "posecnn_train", "posecnn_test"))
    start_time: float = option(1.7e9, "stamp of the first frame, seconds since the epoch (fixed: reproducible bags)",
                               range=(0.0, 4.0e9))
    fps: float = option(0.0, "stamp spacing for splits without `time` (nerf, posecnn), Hz; 0 = 15", range=(0.0, 1000.0))
    world_frame: str = option("world", "TF parent of the ground-truth camera and of the NeRF frame")
    nerf_frame: str = option("nerf", "the NeRF frame (identity to world in the demo world), on /tf_static")
    camera_frame: str = option("camera_color_optical_frame", "header.frame_id of images and camera info "
                               "(the arm's optical frame)")
    gt_frame: str = option("camera_optical_gt", "child frame of the ground-truth camera pose on /tf")
    base_gt_frame: str = option("base_link_gt", "child of world: the arm's true base placement, on /tf_static")
    joint_states_topic: str = option("/joint_states", "sensor_msgs/JointState topic of the arm")
    joint_states_per_frame: int = option(2, "joint states (and /tf of the chain) per image", range=(1, 100))
    image_topic: str = option("/camera/image_raw", "sensor_msgs/Image topic")
    info_topic: str = option("/camera/camera_info", "sensor_msgs/CameraInfo topic")


def _stamp(types, nanoseconds: int):
    return types["builtin_interfaces/msg/Time"](sec=nanoseconds // 10 ** 9, nanosec=nanoseconds % 10 ** 9)


def tf_stamped(types, stamp, parent: str, child: str, parent_T_child: np.ndarray):
    """A (rosbags) geometry_msgs/TransformStamped of ``parent_T_child`` (4, 4) at ``stamp``."""
    # lazy: torch (under inerf_ros.lie) is heavy; make-bag --help must not load it
    import torch

    from inerf_ros.lie import matrix_to_quat

    q = matrix_to_quat(torch.from_numpy(np.asarray(parent_T_child[:3, :3], dtype=np.float64))).tolist()
    t = parent_T_child[:3, 3]
    header = types["std_msgs/msg/Header"](stamp=stamp, frame_id=parent)
    transform = types["geometry_msgs/msg/Transform"](
        translation=types["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=types["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
    return types["geometry_msgs/msg/TransformStamped"](header=header, child_frame_id=child, transform=transform)


def write_bag(scene_dir, out_path, config: BagConfig | None = None, progress: bool = True) -> int:
    """Write the bag; returns the number of images. ``out_path`` ending in ``.mcap`` gives a single MCAP
    file (``ros2 bag info FILE.mcap`` and Foxglove open it); otherwise a rosbag2 directory.
    """
    # lazy: rosbags is optional; only writing a bag needs it
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    config = config or BagConfig()
    out_path = Path(out_path)
    if out_path.exists():
        raise FileExistsError(f"{out_path} exists; remove it or choose another --out")
    store = get_typestore(Stores.ROS2_KILTED)
    types = store.types
    frames = list(load_frames(scene_dir, config.trajectory, images=False))
    if not frames:
        raise ValueError(f"{scene_dir}/{config.trajectory} has no frames")
    robot = load_robot(scene_dir, config.trajectory)
    if robot is not None and any(f.joints is None or f.time is None for f in frames):
        raise ValueError(f"{scene_dir}/{config.trajectory}: robot.json without joint angles and times per frame")
    period = 1.0 / (config.fps or 15.0)
    single_file = out_path.suffix == ".mcap"
    bag_dir = Path(tempfile.mkdtemp(dir=out_path.parent or ".", prefix=".bag-")) / "bag" if single_file else out_path
    writer = Writer(bag_dir, version=9, storage_plugin=StoragePlugin.MCAP)
    with writer:
        image_conn = writer.add_connection(config.image_topic, "sensor_msgs/msg/Image", typestore=store)
        info_conn = writer.add_connection(config.info_topic, "sensor_msgs/msg/CameraInfo", typestore=store)
        static_conn = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=store)
        tf_conn = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=store)
        first_ns = int(round(config.start_time * 1e9))  # integer nanoseconds: no float rounding at 1e18
        first_stamp = _stamp(types, first_ns)
        statics = [tf_stamped(types, first_stamp, config.world_frame, config.nerf_frame, np.eye(4))]
        joint_conn, joint_samples = None, {}
        if robot is not None:
            joint_conn = writer.add_connection(config.joint_states_topic, "sensor_msgs/msg/JointState", typestore=store)
            joint_samples = _joint_samples(frames, robot, config.joint_states_per_frame)
            statics.append(tf_stamped(types, first_stamp, config.world_frame, config.base_gt_frame,
                                      robot.truth.world_T_base))
            statics += [tf_stamped(types, first_stamp, parent, child, parent_T_child)
                        for parent, child, parent_T_child, _ in robot.believed.static_chain()]
        static = types["tf2_msgs/msg/TFMessage"](transforms=statics)
        writer.write(static_conn, first_ns, store.serialize_cdr(static, "tf2_msgs/msg/TFMessage"))
        for k, frame in enumerate(tqdm(frames, desc="make-bag", disable=not progress, unit="frame")):
            offset = frame.time if frame.time is not None else k * period
            nanoseconds = first_ns + int(round(offset * 1e9))
            stamp = _stamp(types, nanoseconds)
            for time_s, q_reported in joint_samples.get(k, []):
                ns = first_ns + int(round(time_s * 1e9))
                _write_joint_state(writer, store, joint_conn, tf_conn, ns, robot.believed, q_reported)
            rgb = _read_rgb(frame.rgb_path)
            k_mat = frame.intrinsics.K
            header = types["std_msgs/msg/Header"](stamp=stamp, frame_id=config.camera_frame)
            image = types["sensor_msgs/msg/Image"](
                header=header, height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0,
                step=3 * rgb.shape[1], data=np.ascontiguousarray(rgb).reshape(-1))
            p_mat = np.zeros((3, 4))
            p_mat[:3, :3] = k_mat
            roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
            info = types["sensor_msgs/msg/CameraInfo"](
                header=header, height=rgb.shape[0], width=rgb.shape[1], distortion_model="plumb_bob",
                d=np.zeros(5), k=k_mat.ravel().astype(np.float64), r=np.eye(3).ravel(), p=p_mat.ravel(),
                binning_x=0, binning_y=0, roi=roi)
            tf = types["tf2_msgs/msg/TFMessage"](
                transforms=[tf_stamped(types, stamp, config.world_frame, config.gt_frame, frame.world_T_cam_optical)])
            writer.write(image_conn, nanoseconds, store.serialize_cdr(image, "sensor_msgs/msg/Image"))
            writer.write(info_conn, nanoseconds, store.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            writer.write(tf_conn, nanoseconds, store.serialize_cdr(tf, "tf2_msgs/msg/TFMessage"))
    if single_file:
        (mcap,) = list(bag_dir.glob("*.mcap"))
        shutil.move(str(mcap), out_path)
        shutil.rmtree(bag_dir.parent)
    return len(frames)


def _joint_samples(frames, robot, per_frame: int) -> dict[int, list[tuple[float, np.ndarray]]]:
    """Per frame index: (time, reported joint angles) of the joint states from that frame to the next.

    The true angles are interpolated linearly between frames (the frames are 1/fps apart, where the
    arm's motion is smooth); the encoder noise is drawn per sample from the robot's seed.
    """
    rng = np.random.default_rng(np.random.SeedSequence([robot.seed, zlib.crc32(b"encoder")]))
    out = {}
    for k, frame in enumerate(frames):
        samples = [(frame.time, frame.joints)]
        if k + 1 < len(frames):
            following = frames[k + 1]
            for j in range(1, per_frame):
                w = j / per_frame
                samples.append(((1 - w) * frame.time + w * following.time,
                                (1 - w) * frame.joints + w * following.joints))
        out[k] = [(t, reported_joints(q, rng, robot.encoder_noise_deg)) for t, q in samples]
    return out


def _write_joint_state(writer, store, joint_conn, tf_conn, nanoseconds: int, believed, q_reported) -> None:
    """One /joint_states message and the /tf that robot_state_publisher makes of it (believed model)."""
    types = store.types
    stamp = _stamp(types, nanoseconds)
    state = types["sensor_msgs/msg/JointState"](
        header=types["std_msgs/msg/Header"](stamp=stamp, frame_id=""), name=list(believed.joint_names),
        position=np.asarray(q_reported, dtype=np.float64), velocity=np.zeros(0), effort=np.zeros(0))
    writer.write(joint_conn, nanoseconds, store.serialize_cdr(state, "sensor_msgs/msg/JointState"))
    chain = [tf_stamped(types, stamp, parent, child, parent_T_child)
             for parent, child, parent_T_child, is_static in believed.tf_chain(q_reported) if not is_static]
    tf = types["tf2_msgs/msg/TFMessage"](transforms=chain)
    writer.write(tf_conn, nanoseconds, store.serialize_cdr(tf, "tf2_msgs/msg/TFMessage"))


def _read_rgb(path: str) -> np.ndarray:
    # lazy: cv2 is heavy; make-bag --help must not load it
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read {path}")
    return bgr[:, :, ::-1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``inerf-ros make-bag``: the scene, the output, and BagConfig's flags."""
    parser.add_argument("scene_dir", help="a directory written by `inerf-ros make-scene`")
    parser.add_argument("--out", required=True, help="output: FILE.mcap (one MCAP file) or a rosbag2 directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    cfg.add_arguments(parser, BagConfig)


def run(args: argparse.Namespace) -> int:
    """``inerf-ros make-bag``: write the bag, then one summary line (or one error line)."""
    config = cfg.from_args(BagConfig, args)
    try:
        count = write_bag(args.scene_dir, args.out, config, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"make-bag: error: {err}", file=sys.stderr)
        return 2
    print(f"make-bag: wrote {count} images of {args.scene_dir}/{config.trajectory} to {args.out}")
    return 0
