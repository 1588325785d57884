"""Live replay: the bag's images and camera_info played over DDS into the three live nodes.

The nodes (posecnn_node, initializer_node, inerf_node: the list and remappings of
:mod:`inerf_ros.launch_description`) run in this process on one executor, with the launch file's
parameter file plus overrides (models, the object table, the optimizer settings, ``use_sim_time``).
A player publishes ``/clock`` from the bag's stamps, then each image's camera_info and the image
itself (the bag's bytes, unchanged), and, from a robot's bag, ``/tf``, ``/tf_static`` and
``/joint_states`` each at its own time, all paced at ``rate`` times bag time. A collector records what
the nodes publish (camera_pose, localization_status, overlay, detections) by image stamp, and every
transform on ``/tf`` and ``/tf_static`` into one tree: with a robot (``base_frame`` on TF) the report
scores the camera *through TF* at every frame's stamp (:mod:`inerf_ros.replay.tf_score`). inerf_node
drops frames when it falls behind (the newest image wins), so the report says how many of the
played frames got an estimate.
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
import yaml
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image, JointState
from tf2_msgs.msg import TFMessage
from tqdm import tqdm

from inerf_ros import launch_description, paths
from inerf_ros.msg import LocalizationStatus, ObjectPoseArray
from inerf_ros.nodes.inerf_node import InerfNode
from inerf_ros.nodes.initializer_node import InitializerNode
from inerf_ros.nodes.posecnn_node import PosecnnNode
from inerf_ros.optim.localizer import LocalizerConfig
from inerf_ros.pipeline import InerfPipeline
from inerf_ros.replay import tf_score
from inerf_ros.replay.offline import FrameRecord, errors
from inerf_ros.ros import image as image_conv
from inerf_ros.ros import pose_msgs
from inerf_ros.ros.node_main import DDS_TRANSPORT, DDS_TRANSPORT_ENV, large_data_environment
from inerf_ros.ros.pose_msgs import xyz_quat_to_matrix
from inerf_ros.ros.stamps import seconds_to_stamp, stamp_to_seconds
from inerf_ros.ros.tf import TF_QOS, TF_STATIC_QOS
from inerf_ros.tf_tree import TfTree

COLUMN = "live"
TITLE = "live nodes: PoseCNN prior + mask region (+ tracking)"


def _ros_value(value):
    """A config value as a ROS parameter value (None for values ROS cannot type, such as [])."""
    if isinstance(value, (list, tuple)):
        if not value:
            return None
        if all(isinstance(v, str) for v in value):
            return [str(v) for v in value]
        if all(isinstance(v, bool) for v in value):
            return list(value)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [int(v) for v in value]
        return [float(v) for v in value]
    return value


def _overrides(*configs, **extra) -> list:
    values = {}
    for config in configs:
        values.update(dataclasses.asdict(config))
    values.update(extra)
    out = []
    for name, value in values.items():
        value = _ros_value(value)
        if value is not None:
            out.append(Parameter(name, value=value))
    return out


class _Collector:
    """Records the nodes' outputs by image stamp (nanoseconds), with the wall time they arrived."""

    def __init__(self, node):
        self.lock = threading.Lock()
        self.poses, self.statuses, self.overlays, self.detections = {}, {}, {}, {}
        # Everything TF carried during the replay, kept whole (no cache horizon) for scoring afterwards.
        self.tf = TfTree(cache_time_s=1e9, time_jump_back_s=1e9)
        self.tf_rejected: list[str] = []
        reliable = QoSProfile(depth=100)
        node.create_subscription(TFMessage, "/tf", lambda msg: self._on_tf(msg, False), TF_QOS)
        node.create_subscription(TFMessage, "/tf_static", lambda msg: self._on_tf(msg, True), TF_STATIC_QOS)
        node.create_subscription(PoseWithCovarianceStamped, "camera_pose", self._on("poses"), reliable)
        node.create_subscription(LocalizationStatus, "localization_status", self._on("statuses"), reliable)
        node.create_subscription(ObjectPoseArray, "detections", self._on("detections"), reliable)
        node.create_subscription(Image, "overlay", self._on("overlays"), qos_profile_sensor_data)

    def _on(self, kind: str):
        def callback(msg) -> None:
            key = int(msg.header.stamp.sec) * 10 ** 9 + int(msg.header.stamp.nanosec)
            with self.lock:
                getattr(self, kind)[key] = (time.perf_counter(), msg)
        return callback

    def _on_tf(self, msg, static: bool) -> None:
        with self.lock:
            for transform in msg.transforms:
                t, q = transform.transform.translation, transform.transform.rotation
                try:
                    self.tf.set_transform_quat(transform.header.frame_id, transform.child_frame_id,
                                               stamp_to_seconds(transform.header.stamp), (t.x, t.y, t.z),
                                               (q.x, q.y, q.z, q.w), static=static)
                except ValueError as error:
                    self.tf_rejected.append(str(error))

    def count(self, kind: str) -> int:
        with self.lock:
            return len(getattr(self, kind))

    def has(self, kind: str, key: int) -> bool:
        with self.lock:
            return key in getattr(self, kind)


def replay_live(bag, model, detector, init_config, config, optimizer, sampling, progress: bool = True,
                model_dirs: dict[str, str] | None = None):
    """Play ``bag`` into the nodes; returns (records, overlays, names, info).

    With ``model_dirs`` ({"nerf": dir, "posecnn": dir}) each node runs in a process of its own and loads
    its model, as under ``ros2 launch`` (no interpreter, GIL or executor shared with the player: the
    timings are a robot's); without, the nodes run in this process on the given ``model``/``detector``.
    """
    if detector is None or init_config is None:
        raise ValueError("live replay runs PoseCNN and the initializer: it needs a PoseCNN model and --objects")
    topics = bag.topics
    values = {arg.name: arg.default for arg in launch_description.launch_arguments()}
    values.update(image_topic=topics.image_topic, camera_info_topic=topics.camera_info_topic, use_sim_time="true",
                  device=config.device)
    if config.params_file:
        if not Path(config.params_file).is_file():
            raise FileNotFoundError(f"--params-file {config.params_file}: no such file")
        values["params_file"] = str(config.params_file)
    nodes_to_start, remaps = launch_description.resolve(values)
    cli_args = ["--ros-args"]
    for params_file in (Path(values["params_file"]), paths.SOURCE_ROOT / "config" / "localize.yaml"):
        if params_file.is_file():  # an install space built before the file existed lacks it
            cli_args += ["--params-file", str(params_file)]
            break
    for topic, target in remaps:
        cli_args += ["-r", f"{topic}:={target}"]
    world_T_nerf = bag.world_T_nerf
    quat = Rotation.from_matrix(world_T_nerf[:3, :3]).as_quat()
    world_T_nerf_list = [float(v) for v in list(world_T_nerf[:3, 3]) + list(quat)]
    specific = {
        # On a robot, detections only re-anchor a held kinematic track: PoseCNN at 0.25 Hz leaves the CPU to it.
        "posecnn_node": {"max_rate_hz": 0.25} if _robot_parameters(bag, config) else {},
        "initializer_node": dataclasses.asdict(init_config),
        "inerf_node": {**dataclasses.asdict(optimizer),
                       **dataclasses.asdict(dataclasses.replace(sampling, strategy="mask_region")),
                       "nerf_frame": topics.nerf_frame, "world_frame": topics.world_frame,
                       "world_T_nerf": world_T_nerf_list, "overlay_scale": float(config.overlay_scale),
                       **_robot_parameters(bag, config)},
    }
    if model_dirs is not None:  # the player publishes camera images to other processes (node_main.DDS_TRANSPORT)
        os.environ.setdefault(DDS_TRANSPORT_ENV, DDS_TRANSPORT)
    context = rclpy.context.Context()
    rclpy.init(context=context, domain_id=config.domain_id if config.domain_id >= 0 else None)
    # The nodes in this process need threads of their own; with node processes only the light player and
    # collector are here, and rclpy's multi-threaded executor would spend a core polling.
    executor = MultiThreadedExecutor(num_threads=4, context=context) if model_dirs is None else \
        SingleThreadedExecutor(context=context)
    nodes, inerf, spinner, processes = [], None, None, None
    try:
        if model_dirs is not None:
            processes = _NodeProcesses(nodes_to_start, remaps, cli_args, specific, model_dirs, config)
        for spec, launch_overrides in ([] if processes is not None else nodes_to_start):
            params = _overrides(**{**launch_overrides, **specific[spec.name]})
            params = [p for p in params if p.name not in ("model_dir",)]
            kwargs = dict(context=context, parameter_overrides=params, cli_args=cli_args)
            if spec.name == "posecnn_node":
                node = PosecnnNode(detector, **kwargs)
            elif spec.name == "initializer_node":
                node = InitializerNode(**kwargs)
            else:
                pipeline = InerfPipeline(model, config.device, optimizer, sampling, LocalizerConfig())
                node = inerf = InerfNode(pipeline, **kwargs)
            nodes.append(node)
            executor.add_node(node)
        player = rclpy.create_node("replay_player", context=context, cli_args=cli_args)
        nodes.append(player)
        collector = _Collector(player)
        clock_pub = player.create_publisher(Clock, "/clock", 10)
        image_pub = player.create_publisher(Image, topics.image_topic, qos_profile_sensor_data)
        info_pub = player.create_publisher(CameraInfo, topics.camera_info_topic, qos_profile_sensor_data)
        executor.add_node(player)
        spinner = threading.Thread(target=executor.spin, name="replay_executor", daemon=True)
        spinner.start()
        # Node processes import torch and load their models first.
        _wait_for_subscribers(image_pub, 2, timeout_s=10.0 if processes is None else 120.0,
                              check=processes.check if processes is not None else None)

        robot = _RobotPlayer(player, bag.robot_messages, clock_pub)
        robot.wait_for_listeners(2 if _robot_parameters(bag, config) else 0, timeout_s=30.0)
        published: dict[int, tuple[float, object]] = {}  # stamp ns -> (wall time, frame)
        total = len(range(0, bag.num_images, config.every))
        total = min(total, config.max_frames) if config.max_frames else total
        bar = tqdm(total=total, desc=f"replay (live, rate {config.rate:g})", unit="frame", disable=not progress)
        pace = _Pace(config.rate)
        skipped = []
        for frame in bag.frames(config.every, config.max_frames, decode=False):
            if not math.isfinite(frame.stamp_s):
                skipped.append(frame)
                bar.update(1)
                continue
            robot.play_until(frame.stamp_s, pace)  # the arm's TF and joint states up to this image
            pace.wait_for(frame.stamp_s)
            stamp = seconds_to_stamp(frame.stamp_s)
            clock_pub.publish(Clock(clock=stamp))
            if frame.camera_info_raw:
                info_pub.publish(frame.camera_info_raw)
            image_pub.publish(frame.raw)
            published[frame.stamp_ns] = (time.perf_counter(), frame)
            bar.update(1)
            bar.set_postfix(estimates=collector.count("poses"))
        bar.close()
        deadline = time.perf_counter() + config.drain_s
        while time.perf_counter() < deadline:
            if inerf is not None and collector.count("statuses") + inerf.dropped_frames >= len(published):
                break
            # A node in another process: the newest frame is never dropped, so its status comes last.
            if inerf is None and (not published or collector.has("statuses", max(published))):
                break
            if processes is not None:
                processes.check()
            time.sleep(0.2)
        if published:  # the last correction republished past the last image (TF answers at its stamp)
            robot.play_until(max(published) * 1e-9 + 1.0, pace)
            clock_pub.publish(Clock(clock=seconds_to_stamp(max(published) * 1e-9 + 1.0)))
            time.sleep(0.3)
        time.sleep(0.5)  # the last overlay follows its status
        dropped = inerf.dropped_frames if inerf is not None else len(published) - collector.count("statuses")
    finally:
        if processes is not None:
            processes.close()
        for node in nodes:
            getattr(node, "close", lambda: None)()
        executor.shutdown(timeout_sec=5.0)
        if spinner is not None:
            spinner.join(timeout=5.0)  # no callback may run on a node being destroyed
        for node in nodes:
            node.destroy_node()
        rclpy.shutdown(context=context)

    records, overlays = [], {}
    for key, (sent, frame) in sorted(published.items()):
        gt = frame.world_T_cam_gt
        record = FrameRecord(COLUMN, frame.index, frame.stamp_s,
                             world_T_cam_gt=None if gt is None else gt.tolist())
        detection = collector.detections.get(key)
        if detection is not None:
            record.detector_s = detection[0] - sent
            record.detections = len(detection[1].objects)
        status = collector.statuses.get(key)
        pose = collector.poses.get(key)
        if status is None:
            record.status, record.message = "dropped", "inerf_node was busy (newest frame wins) or no output in time"
        else:
            s = status[1]
            record.status = "ok" if pose is not None else ("no prior" if s.prior_source == "none" else "no estimate")
            record.message = f"prior: {s.prior_source}; {s.message}".strip("; ")
            record.iterations, record.converged = int(s.iterations), bool(s.converged)
            record.final_loss, record.optimizer_s = float(s.final_loss), float(s.time_spent)
            record.sampling = s.sampling_strategy
        if pose is not None:
            nerf_T_cam, _ = pose_msgs.pose_with_covariance_to_numpy(pose[1])
            world_T_cam = world_T_nerf @ nerf_T_cam
            record.world_T_cam = world_T_cam.tolist()
            record.latency_s = pose[0] - sent
            if gt is not None:
                record.rotation_error_deg, record.translation_error_m = errors(world_T_cam, gt)
        overlay = collector.overlays.get(key)
        if overlay is not None:
            overlays[frame.index] = image_conv.image_to_rgb(overlay[1])
        records.append(record)
    for frame in skipped:
        records.append(FrameRecord(COLUMN, frame.index, frame.stamp_s, status="image rejected", message=frame.problem))
    sources = {}
    for r in records:
        source = r.message.split(";")[0].replace("prior: ", "") if r.message.startswith("prior:") else r.status
        sources[source] = sources.get(source, 0) + 1
    info = {"live_published": len(published), "live_estimates": sum(r.has_estimate for r in records),
            "live_dropped": dropped, "live_rate": config.rate, "live_sources": sources,
            "live_bag_duration_s": (max(published) - min(published)) * 1e-9 if published else 0.0}
    info["notes"] = [f"live: {info['live_estimates']} of {info['live_published']} played frames got an estimate "
                     f"({dropped} dropped by inerf_node while busy) at rate {config.rate:g}"]
    if _robot_parameters(bag, config):
        info["arm"] = _score_through_tf(bag, config, collector, records)
        info["notes"].append(f"robot replay: the camera scored through TF at all {info['arm']['frames_total']} bag "
                             f"frames (nerf -> {config.base_frame} correction + the arm's chain)")
    return records, overlays, {COLUMN: TITLE}, info


def _believed_nerf_T_base(bag, config):
    """The robot's believed base placement in the NeRF frame (metres), or None when not given."""
    values = [float(v) for v in config.believed_world_T_base]
    if not values:
        return None
    if len(values) != 7:
        raise ValueError(f"believed_world_T_base needs 7 numbers (x y z qx qy qz qw), got {len(values)}")
    return np.linalg.inv(bag.world_T_nerf) @ xyz_quat_to_matrix(values[:3], values[3:])


def _robot_parameters(bag, config) -> dict:
    """inerf_node's robot parameters when the bag's TF has the robot's base frame (else none: a hand-held camera)."""
    if not config.base_frame or config.base_frame not in bag.tf_frames:
        return {}
    params = {"base_frame": config.base_frame}
    believed = _believed_nerf_T_base(bag, config)
    if believed is not None:
        params["initial_nerf_T_base"] = [float(v) for v in list(believed[:3, 3]) +
                                         list(Rotation.from_matrix(believed[:3, :3]).as_quat())]
    return params


def _score_through_tf(bag, config, collector, records) -> dict:
    """summary.json's robot keys: every camera frame of the bag looked up through the replay's TF."""
    frames = [(f.stamp_s, f.world_T_cam_gt, f.frame_id) for f in bag.frames(1, 0, decode=False)
              if math.isfinite(f.stamp_s)]
    topics = bag.topics
    names = tf_score.ArmFrames(world=topics.world_frame, nerf=topics.nerf_frame, base=config.base_frame,
                               camera=next((f[2] for f in frames if f[2]), "camera_color_optical_frame"),
                               base_gt=topics.base_gt_frame)
    believed = _believed_nerf_T_base(bag, config)
    with collector.lock:
        scores = tf_score.score_frames(collector.tf, [(f[0], f[1]) for f in frames], names, bag.world_T_nerf,
                                       believed)
        estimated = [r for r in records if r.has_estimate]
        # The window opens when the first estimate *came out* (its image's stamp plus its latency, in bag
        # time): TF cannot hold a correction for the frames that passed while it was being computed.
        first_s = min((r.stamp_s + r.latency_s * config.rate for r in estimated if math.isfinite(r.latency_s)),
                      default=None)
        latencies = [r.latency_s for r in estimated if math.isfinite(r.latency_s)]
        summary = tf_score.summarize(scores, collector.tf, names, bag.world_T_nerf, believed, first_s,
                                     len(estimated), latencies)
    summary["scores"] = scores
    summary["tf_rejected"] = collector.tf_rejected[:5]
    return summary


class _NodeProcesses:
    """The nodes, each in a process of its own with its model loaded from disk (as ``ros2 launch`` runs them).

    Parameters: the launch file's parameter file, then one of this replay's overrides; the processes'
    output goes to a log file whose tail is shown when one of them dies.
    """

    def __init__(self, nodes_to_start, remaps, cli_args, specific: dict, model_dirs: dict, config):
        self._dir = Path(tempfile.mkdtemp(prefix="inerf_replay_nodes_"))
        overrides = {}
        for spec, launch_overrides in nodes_to_start:
            values = {**launch_overrides, **specific[spec.name]}
            if spec.name in ("inerf_node", "posecnn_node"):
                values["model_dir"] = str(model_dirs["nerf" if spec.name == "inerf_node" else "posecnn"])
            values = {name: _ros_value(value) for name, value in values.items()}
            overrides[spec.name] = {"ros__parameters": {k: v for k, v in values.items() if v is not None}}
        override_file = self._dir / "replay_overrides.yaml"
        override_file.write_text(yaml.safe_dump(overrides))
        env = dict(large_data_environment(), PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(config.threads or 1))
        if config.domain_id >= 0:
            env["ROS_DOMAIN_ID"] = str(config.domain_id)
        self.log_path = self._dir / "nodes.log"
        self._log = open(self.log_path, "w")
        self._processes = {}
        for spec, _ in nodes_to_start:
            command = [sys.executable, "-m", spec.module, *cli_args, "--params-file", str(override_file)]
            self._processes[spec.name] = subprocess.Popen(command, env=env, stdout=self._log,
                                                          stderr=subprocess.STDOUT)

    def check(self) -> None:
        """Raise RuntimeError naming a node process that ended (with the log's tail)."""
        for name, process in self._processes.items():
            code = process.poll()
            if code is not None:
                self._log.flush()
                tail = self.log_path.read_text().splitlines()[-15:]
                raise RuntimeError(f"{name} exited with code {code} during the replay; its log ({self.log_path}) "
                                   "ends:\n" + "\n".join(tail))

    def close(self) -> None:
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self._processes.values():
            try:
                process.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5.0)
        self._log.close()


class _Pace:
    """Publishes in bag time at ``rate``: the first message sets time zero."""

    def __init__(self, rate: float):
        self.rate = rate
        self._first_s: float | None = None
        self._wall0 = 0.0

    def wait_for(self, stamp_s: float) -> None:
        if self._first_s is None:
            self._first_s, self._wall0 = stamp_s, time.perf_counter()
        delay = self._wall0 + (stamp_s - self._first_s) / self.rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


class _RobotPlayer:
    """Plays a robot bag's ``/tf``, ``/tf_static`` and joint states (the bag's bytes) at their own times."""

    def __init__(self, node, messages, clock_pub):
        self._clock_pub = clock_pub
        self._messages = [m for m in messages if m[1] != "/tf_static"]
        self._next = 0
        self._publishers = {}
        for _, topic, msgtype, _ in messages:
            if topic not in self._publishers:
                kind, qos = {"/tf": (TFMessage, TF_QOS), "/tf_static": (TFMessage, TF_STATIC_QOS)}.get(
                    topic, (JointState, QoSProfile(depth=100)))
                if msgtype.replace("/msg/", "/") != f"{kind.__module__.split('.')[0]}/{kind.__name__}":
                    continue  # an unexpected type on a robot topic is not replayed
                self._publishers[topic] = node.create_publisher(kind, topic, qos)
        static = self._publishers.get("/tf_static")
        for _, topic, _, raw in messages:  # latched: all at once, before the first image
            if topic == "/tf_static" and static is not None:
                static.publish(raw)

    def wait_for_listeners(self, count: int, timeout_s: float) -> None:
        """Wait until ``count`` subscribers (inerf_node's TF listener, the collector) hear /tf."""
        if "/tf" in self._publishers:
            _wait_for_subscribers(self._publishers["/tf"], count, timeout_s)

    def play_until(self, stamp_s: float, pace: _Pace) -> None:
        while self._next < len(self._messages) and self._messages[self._next][0] <= stamp_s * 1e9:
            log_ns, topic, _, raw = self._messages[self._next]
            self._next += 1
            publisher = self._publishers.get(topic)
            if publisher is None:
                continue
            pace.wait_for(log_ns * 1e-9)  # /clock moves with the images (enough for the nodes' timers)
            publisher.publish(raw)


def _wait_for_subscribers(publisher, count: int, timeout_s: float, check=None) -> None:
    deadline = time.perf_counter() + timeout_s
    while publisher.get_subscription_count() < count and time.perf_counter() < deadline:
        if check is not None:
            check()
        time.sleep(0.05)
    time.sleep(0.3)  # let the other topics' discovery finish too


def describe(info: dict) -> list[str]:
    """The report's "Live replay" section (markdown lines); none when the replay was not live."""
    if "live_published" not in info:
        return []
    sources = ", ".join(f"{k}: {v}" for k, v in sorted(info["live_sources"].items()))
    return ["## Live replay", "",
            f"Played {info['live_published']} frames ({info['live_bag_duration_s']:.1f} s of bag time) at "
            f"{info['live_rate']:g}x; {info['live_estimates']} got an estimate, {info['live_dropped']} were dropped "
            f"by inerf_node while it was busy. Frames by prior source / outcome: {sources}.", ""]
