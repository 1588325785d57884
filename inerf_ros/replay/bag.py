"""Reading a camera bag for replay: images, camera_info, ground truth and the world -> nerf transform.

Any rosbag2 bag that ``rosbags`` opens works (a single ``.mcap`` file or a bag directory); topic and
frame names come from :class:`BagTopics`. Nothing here raises on bad content: a message that does
not deserialise or decode, a missing camera_info or a missing ground truth becomes a ``problem``
(per frame and per bag) that the report prints, so one bad message never ends a replay.

Ground truth is either a TF transform ``world_frame -> gt_frame`` (on ``/tf``, the layout of
``inerf-ros make-bag``) or a pose topic (``gt_topic``: PoseStamped, PoseWithCovarianceStamped,
Odometry or TransformStamped; the pose of the camera's optical frame in ``world_frame``).
Samples are matched to an image by stamp: the nearest within ``gt_tolerance_s``, else interpolated
between the two neighbours (linear translation, slerp rotation) when they are at most
``gt_max_gap_s`` apart.
"""
from __future__ import annotations

import bisect
import dataclasses
from pathlib import Path
from typing import Iterator

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation, Slerp

from inerf_ros.camera import Intrinsics
from inerf_ros.config import option
from inerf_ros.ros.camera_info import camera_info_to_intrinsics, check_image_matches
from inerf_ros.ros.image import image_to_rgb
from inerf_ros.ros.pose_msgs import xyz_quat_to_matrix

MAX_PROBLEM_EXAMPLES = 5


@dataclasses.dataclass
class BagTopics:
    """Topic and frame names of the bag (defaults: the layout ``inerf-ros make-bag`` writes)."""

    image_topic: str = option("/camera/image_raw", "sensor_msgs/Image topic of the camera")
    camera_info_topic: str = option("/camera/camera_info", "sensor_msgs/CameraInfo topic of the camera")
    world_frame: str = option("world", "frame the ground truth is given in (TF parent)")
    nerf_frame: str = option("nerf", "the NeRF frame; world -> nerf is read from /tf_static or /tf")
    gt_frame: str = option("camera_optical_gt", "TF child frame of the ground-truth camera (optical) pose")
    gt_topic: str = option("", "ground truth on a pose topic instead of TF (PoseStamped, PoseWithCovarianceStamped, "
                               "Odometry or TransformStamped: the optical camera in world_frame); empty: use TF")
    world_T_nerf: list = option([], "world -> nerf as x y z qx qy qz qw (metres) when the bag has no such "
                                    "transform (empty: take it from the bag, else identity)")
    base_gt_frame: str = option("base_link_gt", "TF child (of world_frame) of the robot base's true placement, "
                                                "when the bag has it (robot replays score the corrected base)")
    joint_states_topic: str = option("/joint_states", "sensor_msgs/JointState topic of the arm (live replay plays it "
                                                      "with /tf and /tf_static)")
    gt_tolerance_s: float = option(0.005, "a ground-truth sample this close to an image stamp is used as is (s)",
                                   range=(0.0, 10.0))
    gt_max_gap_s: float = option(0.2, "interpolate ground truth only between samples at most this far apart (s)",
                                 range=(0.0, 60.0))


@dataclasses.dataclass
class BagFrame:
    """One image of the bag, decoded and matched."""

    index: int
    """Position of the image among the bag's images (0-based)."""
    stamp_s: float
    rgb: np.ndarray | None = None
    """(H, W, 3) uint8, None when the image could not be decoded."""
    raw: bytes = b""
    """The image's serialised message (live replay republishes it unchanged)."""
    intrinsics: Intrinsics | None = None
    camera_info_raw: bytes = b""
    world_T_cam_gt: np.ndarray | None = None
    """(4, 4) ground-truth optical camera in the world frame (metres), None when not available."""
    problem: str = ""
    """Why this frame cannot be localized (empty when it can)."""
    frame_id: str = ""
    """The image's ``header.frame_id`` (the camera's optical frame on TF)."""
    stamp_ns: int = 0
    """The image's stamp in integer nanoseconds: the key its outputs are matched by (float seconds at
    1.7e9 s round to ~0.2 us, and ``round(stamp_s * 1e9)`` then misses the stamp a node copies)."""


class Problems:
    """Counts of things that went wrong, by kind, with a few example messages."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, example: str) -> None:
        """Count one problem of ``kind``, keeping ``example`` if there are few examples of it yet."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < MAX_PROBLEM_EXAMPLES:
            examples.append(example)

    def lines(self) -> list[str]:
        """One line per kind of problem: its count and the first example."""
        return [f"{kind}: {count} (e.g. {self.examples[kind][0]})" for kind, count in self.counts.items()]


def _stamp_s(header_stamp) -> float:
    return float(header_stamp.sec) + 1e-9 * float(header_stamp.nanosec)


def _xyz_quat_matrix(translation, rotation) -> np.ndarray:
    q = [float(rotation.x), float(rotation.y), float(rotation.z), float(rotation.w)]
    t = [float(translation.x), float(translation.y), float(translation.z)]
    if not np.isfinite(q + t).all() or np.linalg.norm(q) < 1e-9:
        raise ValueError(f"not a valid pose: translation {t}, quaternion {q}")
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_quat(q).as_matrix()
    pose[:3, 3] = t
    return pose


def pose_of_message(msg) -> np.ndarray:
    """4x4 pose of a PoseStamped / PoseWithCovarianceStamped / Odometry / TransformStamped."""
    if hasattr(msg, "transform"):
        return _xyz_quat_matrix(msg.transform.translation, msg.transform.rotation)
    pose = msg.pose
    if hasattr(pose, "pose"):  # PoseWithCovariance (PoseWithCovarianceStamped, Odometry)
        pose = pose.pose
    return _xyz_quat_matrix(pose.position, pose.orientation)


class PoseTrack:
    """Stamped poses of one frame, looked up by time (nearest, else interpolated)."""

    def __init__(self):
        self._stamps: list[float] = []
        self._poses: list[np.ndarray] = []

    def add(self, stamp_s: float, pose: np.ndarray) -> None:
        """Add a pose (4x4) at ``stamp_s``, in stamp order."""
        k = bisect.bisect_right(self._stamps, stamp_s)
        self._stamps.insert(k, stamp_s)
        self._poses.insert(k, pose)

    def __len__(self) -> int:
        return len(self._stamps)

    def at(self, stamp_s: float, tolerance_s: float, max_gap_s: float) -> np.ndarray | None:
        """The pose at ``stamp_s``: the nearest within ``tolerance_s``, else interpolated between neighbours at most
        ``max_gap_s`` apart, else None.
        """
        if not self._stamps:
            return None
        k = bisect.bisect_left(self._stamps, stamp_s)
        nearest = min((j for j in (k - 1, k) if 0 <= j < len(self._stamps)),
                      key=lambda j: abs(self._stamps[j] - stamp_s))
        if abs(self._stamps[nearest] - stamp_s) <= tolerance_s:
            return self._poses[nearest]
        if k == 0 or k == len(self._stamps):
            return None
        t0, t1 = self._stamps[k - 1], self._stamps[k]
        if t1 - t0 > max_gap_s:
            return None
        a = (stamp_s - t0) / (t1 - t0)
        p0, p1 = self._poses[k - 1], self._poses[k]
        pose = np.eye(4)
        pose[:3, :3] = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([p0[:3, :3], p1[:3, :3]])))([a]).as_matrix()[0]
        pose[:3, 3] = (1 - a) * p0[:3, 3] + a * p1[:3, 3]
        return pose


class CameraBag:
    """A bag opened for replay. The small topics (camera_info, TF, ground truth) are read at once;
    images are streamed by :meth:`frames`.
    """

    def __init__(self, path, topics: BagTopics | None = None):
        self.path = Path(path)
        self.topics = topics or BagTopics()
        self.problems = Problems()
        self.notes: list[str] = []
        if not self.path.exists():
            raise FileNotFoundError(f"bag {self.path} does not exist")
        self._reader_args = ([self.path], get_typestore(Stores.ROS2_KILTED))
        try:
            reader = AnyReader([self.path], default_typestore=self._reader_args[1])
            reader.open()
        except Exception as error:  # noqa: BLE001 - rosbags raises several unrelated types for bad files
            raise ValueError(f"{self.path}: cannot open as a ROS 2 bag: {type(error).__name__}: {error}") from error
        self._reader = reader
        self.topic_types = {c.topic: c.msgtype for c in reader.connections}
        self._image_connections = [c for c in reader.connections if c.topic == self.topics.image_topic]
        self.num_images = sum(c.msgcount for c in self._image_connections)
        self._infos: list[tuple[float, Intrinsics | None, bytes]] = []
        self._gt = PoseTrack()
        self.world_T_nerf: np.ndarray | None = None
        self.robot_messages: list[tuple[int, str, str, bytes]] = []
        self.tf_frames: set[str] = set()
        """Every frame named on the bag's /tf and /tf_static."""
        """(log time ns, topic, type, serialised bytes) of /tf, /tf_static and the joint states, in bag order."""
        self._read_small_topics()
        self._describe()

    def close(self) -> None:
        """Close the bag file."""
        self._reader.close()

    def __enter__(self) -> "CameraBag":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- first pass: camera_info, TF, ground truth ---------------------------------------------------
    def _deserialize(self, raw: bytes, connection):
        try:
            return self._reader.deserialize(raw, connection.msgtype)
        except Exception as error:  # noqa: BLE001 - corrupt bytes raise anything from struct to IndexError
            self.problems.add(f"corrupt messages on {connection.topic}", f"{type(error).__name__}: {error}")
            return None

    def _read_small_topics(self) -> None:
        topics = self.topics
        wanted = {topics.camera_info_topic, "/tf", "/tf_static", topics.joint_states_topic}
        wanted |= {topics.gt_topic} if topics.gt_topic else set()
        connections = [c for c in self._reader.connections if c.topic in wanted]
        for connection, log_ns, raw in self._reader.messages(connections=connections):
            if connection.topic in ("/tf", "/tf_static", topics.joint_states_topic):  # live replay plays them
                self.robot_messages.append((log_ns, connection.topic, connection.msgtype, bytes(raw)))
                if connection.topic == topics.joint_states_topic:
                    continue
            msg = self._deserialize(raw, connection)
            if msg is None:
                continue
            if connection.topic == topics.camera_info_topic:
                try:
                    intrinsics = camera_info_to_intrinsics(msg)
                except ValueError as error:
                    self.problems.add("camera_info rejected", str(error))
                    intrinsics = None
                self._infos.append((_stamp_s(msg.header.stamp), intrinsics, bytes(raw)))
            elif connection.topic == topics.gt_topic:
                try:
                    self._gt.add(_stamp_s(msg.header.stamp), pose_of_message(msg))
                except (ValueError, AttributeError) as error:
                    self.problems.add(f"ground truth rejected on {topics.gt_topic}", str(error))
            else:
                self._read_tf(msg)
        self._infos.sort(key=lambda item: item[0])
        if self.world_T_nerf is None and topics.world_T_nerf:
            values = [float(v) for v in topics.world_T_nerf]
            if len(values) != 7:
                raise ValueError(f"world_T_nerf needs 7 numbers (x y z qx qy qz qw), got {len(values)}")
            self.world_T_nerf = xyz_quat_to_matrix(values[:3], values[3:])

    def _read_tf(self, msg) -> None:
        topics = self.topics
        for transform in getattr(msg, "transforms", []):
            parent, child = transform.header.frame_id.lstrip("/"), transform.child_frame_id.lstrip("/")
            pair = (parent, child)
            self.tf_frames.update(pair)
            try:
                if pair == (topics.world_frame, topics.nerf_frame) and self.world_T_nerf is None:
                    self.world_T_nerf = pose_of_message(transform)
                elif pair == (topics.nerf_frame, topics.world_frame) and self.world_T_nerf is None:
                    self.world_T_nerf = np.linalg.inv(pose_of_message(transform))
                elif pair == (topics.world_frame, topics.gt_frame) and not topics.gt_topic:
                    self._gt.add(_stamp_s(transform.header.stamp), pose_of_message(transform))
            except ValueError as error:
                self.problems.add(f"transform {parent} -> {child} rejected", str(error))

    def _describe(self) -> None:
        topics = self.topics
        if not self._image_connections:
            images = [t for t, ty in self.topic_types.items() if ty == "sensor_msgs/msg/Image"]
            self.notes.append(f"no images on {topics.image_topic}" + (
                f" (image topics in the bag: {', '.join(images)}; pass --image-topic)" if images else
                " (the bag has no sensor_msgs/Image topic at all)"))
        if not self._infos:
            infos = [t for t, ty in self.topic_types.items() if ty == "sensor_msgs/msg/CameraInfo"]
            self.notes.append(f"no camera_info on {topics.camera_info_topic}" + (
                f" (CameraInfo topics in the bag: {', '.join(infos)}; pass --camera-info-topic)" if infos else
                ": without intrinsics no frame can be localized"))
        if not self.has_ground_truth:
            where = (f"pose topic {topics.gt_topic}" if topics.gt_topic
                     else f"TF {topics.world_frame} -> {topics.gt_frame}")
            self.notes.append(f"no ground truth ({where} not in the bag): runtime figures only, no accuracy")
        if self.world_T_nerf is None:
            self.world_T_nerf = np.eye(4)
            if self.has_ground_truth:
                self.notes.append(f"no {topics.world_frame} -> {topics.nerf_frame} transform in the bag: "
                                  "identity assumed (pass --world-T-nerf)")

    @property
    def has_ground_truth(self) -> bool:
        """Whether the bag has ground-truth camera poses (accuracy can be reported)."""
        return len(self._gt) > 0

    @property
    def has_camera_info(self) -> bool:
        """Whether the bag has at least one usable camera_info."""
        return any(intrinsics is not None for _, intrinsics, _ in self._infos)

    def ground_truth(self, stamp_s: float) -> np.ndarray | None:
        """world_T_cam (optical, metres) at ``stamp_s``, or None."""
        return self._gt.at(stamp_s, self.topics.gt_tolerance_s, self.topics.gt_max_gap_s)

    def _camera_info(self, stamp_s: float) -> tuple[Intrinsics | None, bytes]:
        """The camera_info nearest in time (the latest one before, as a node would have, when none matches)."""
        if not self._infos:
            return None, b""
        stamps = [s for s, _, _ in self._infos]
        k = bisect.bisect_left(stamps, stamp_s)
        candidates = [j for j in (k - 1, k) if 0 <= j < len(stamps)]
        j = min(candidates, key=lambda j: abs(stamps[j] - stamp_s))
        return self._infos[j][1], self._infos[j][2]

    # -- second pass: images --------------------------------------------------------------------------
    def frames(self, every: int = 1, max_frames: int = 0, decode: bool = True) -> Iterator[BagFrame]:
        """Every ``every``-th image (at most ``max_frames``; 0: all), decoded and matched."""
        every = max(1, int(every))
        yielded = 0
        for index, (connection, log_ns, raw) in enumerate(self._reader.messages(connections=self._image_connections)):
            if index % every:
                continue
            if max_frames and yielded >= max_frames:
                return
            yielded += 1
            msg = self._deserialize(raw, connection)
            if msg is None:  # the bag's log time stands in for the unreadable header stamp
                yield BagFrame(index, log_ns * 1e-9, raw=bytes(raw), world_T_cam_gt=self.ground_truth(log_ns * 1e-9),
                               problem="image message does not deserialise", stamp_ns=int(log_ns))
                continue
            stamp_s = _stamp_s(msg.header.stamp)
            intrinsics, info_raw = self._camera_info(stamp_s)
            frame = BagFrame(index, stamp_s, raw=bytes(raw), intrinsics=intrinsics, camera_info_raw=info_raw,
                             world_T_cam_gt=self.ground_truth(stamp_s), frame_id=str(msg.header.frame_id),
                             stamp_ns=int(msg.header.stamp.sec) * 10 ** 9 + int(msg.header.stamp.nanosec))
            if decode:
                try:
                    frame.rgb = np.array(image_to_rgb(msg))  # writable (the bag buffer is read-only)
                    if intrinsics is not None:
                        check_image_matches(intrinsics, frame.rgb.shape[1], frame.rgb.shape[0])
                except ValueError as error:
                    self.problems.add("images rejected", str(error))
                    frame.problem = f"image rejected: {error}"
            if not frame.problem and intrinsics is None:
                frame.problem = "no camera_info"
            yield frame

    def stamps(self) -> tuple[float, float]:
        """(first, last) image stamp of the bag in seconds, from the bag's index."""
        return self._reader.start_time * 1e-9, self._reader.end_time * 1e-9
