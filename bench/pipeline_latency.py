"""Image-in to pose-out latency of the live inerf_node (real DDS, the node in a process of its own).

    python bench/pipeline_latency.py [--threads 1] [--hand-held] [--world demo_out/world]

The node runs as ``ros2 launch inerf_ros localize.launch.py`` runs it: ``python -m
inerf_ros.nodes.inerf_node`` with the shipped ``config/localize.yaml`` (flags override single values),
in a process of its own, so that the publisher here shares no interpreter, GIL or executor with it.
Frames, joint angles and ground truth come from the demo world's ``arm`` split (rendered on first use
by ``inerf_ros.demo.ensure_world``, ~1-2 min; the demo NeRF frame is the world frame, in metres).

Robot mode (default): the UR10e arm's *believed* chain (``RobotModel.tf_chain`` of ``arm/robot.json``'s
believed model at each frame's joint angles) goes on /tf at the image's stamp just before the image,
its fixed links on /tf_static; the node runs with ``base_frame:=base_link`` and the believed base
placement as ``initial_nerf_T_base``, and publishes the correction ``nerf -> base_link``.

* cold: a frame whose only start is the believed placement + the chain (prior source
  "kinematics"), after a jump back in time that resets the node's tracker and correction;
* tracking: arm frames published at camera rate (15 Hz) after one cold frame; each output is
  matched to its image by the integer nanosecond stamp. Reported: median / p90 latency from
  publishing the image to receiving its ``camera_pose`` (the node publishes it with the estimate;
  the correction reaches /tf at its next republish, <= 1 / correction_rate_hz later), the update
  rate (the node drops frames it cannot keep up with: the newest wins), and the errors of the
  received poses against the truth next to those of the kinematics alone, so speed is never bought
  with wrong poses.

Hand-held mode (``--hand-held``): no chain; cold frames get a PoseCNN-like prior (truth perturbed by
10 deg / 5 cm) on ``camera_prior``, the tracking run starts from an exact prior, and the node tracks
with constant velocity, publishing ``nerf -> camera_optical``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CAMERA_RATE_HZ = 15.0
BASE_STAMP_NS = 1_000_000 * 10 ** 9  # the bench's own time base (s = 1e6); each run starts 1000 s earlier
RUN_STEP_NS = 1000 * 10 ** 9


def perturbed(pose: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``pose`` turned by 10 deg and moved by 5 cm in random directions: a PoseCNN-like prior."""
    from inerf_ros.robot.model import axis_angle

    out = pose.copy()
    out[:3, :3] = axis_angle(rng.normal(size=3), math.radians(10.0)) @ pose[:3, :3]
    shift = rng.normal(size=3)
    out[:3, 3] += shift / np.linalg.norm(shift) * 0.05
    return out


def xyz_quat(pose: np.ndarray) -> list[float]:
    from scipy.spatial.transform import Rotation

    return [float(v) for v in list(pose[:3, 3]) + list(Rotation.from_matrix(pose[:3, :3]).as_quat())]


def percentile(values, q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class NodeProcess:
    """inerf_node in a process of its own: the shipped parameter file, then this bench's overrides."""

    def __init__(self, params_file: Path, overrides: dict, threads: int):
        import yaml

        from inerf_ros.ros.node_main import large_data_environment

        self.dir = Path(tempfile.mkdtemp(prefix="inerf_latency_"))
        override_file = self.dir / "overrides.yaml"
        override_file.write_text(yaml.safe_dump({"inerf_node": {"ros__parameters": overrides}}))
        env = dict(large_data_environment(), PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads or 1))
        self.log_path = self.dir / "inerf_node.log"
        self._log = open(self.log_path, "w")
        command = [sys.executable, "-m", "inerf_ros.nodes.inerf_node", "--ros-args",
                   "--params-file", str(params_file), "--params-file", str(override_file)]
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)

    def check(self) -> None:
        code = self.process.poll()
        if code is not None:
            self._log.flush()
            tail = "\n".join(self.log_path.read_text().splitlines()[-15:])
            raise RuntimeError(f"inerf_node exited with code {code}; its log ({self.log_path}) ends:\n{tail}")

    def close(self) -> None:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5.0)
        self._log.close()


class Bench:
    """The publisher (camera, camera_info, the arm's TF, priors) and the collector of the node's outputs."""

    def __init__(self, robot, hand_held: bool, node: NodeProcess):
        import rclpy
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_msgs.msg import TFMessage

        from inerf_ros.msg import LocalizationStatus
        from inerf_ros.robot.model import OPTICAL_FRAME
        from inerf_ros.ros.tf import TF_QOS, TF_STATIC_QOS

        self.robot, self.hand_held, self.node_process = robot, hand_held, node
        self.camera_frame = "camera_optical" if hand_held else OPTICAL_FRAME
        self.probe = rclpy.create_node("latency_probe")
        self.image_pub = self.probe.create_publisher(Image, "image_raw", qos_profile_sensor_data)
        self.info_pub = self.probe.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.prior_pub = self.probe.create_publisher(PoseWithCovarianceStamped, "camera_prior", QoSProfile(depth=20))
        self.tf_pub = self.probe.create_publisher(TFMessage, "/tf", TF_QOS)
        self.tf_static_pub = self.probe.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self.lock = threading.Lock()
        self.poses: dict[int, tuple[float, object]] = {}     # image stamp ns -> (arrival, msg)
        self.statuses: dict[int, tuple[float, object]] = {}
        self.sent: dict[int, float] = {}                     # image stamp ns -> publish time
        self.truth: dict[int, np.ndarray] = {}
        self.kinematic: dict[int, np.ndarray] = {}           # the believed chain's camera in the world
        reliable = QoSProfile(depth=100)
        self.probe.create_subscription(PoseWithCovarianceStamped, "camera_pose", self._on(self.poses), reliable)
        self.probe.create_subscription(LocalizationStatus, "localization_status", self._on(self.statuses), reliable)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.probe)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()

    def _on(self, table: dict):
        def callback(msg) -> None:
            key = int(msg.header.stamp.sec) * 10 ** 9 + int(msg.header.stamp.nanosec)
            with self.lock:
                table.setdefault(key, (time.perf_counter(), msg))
        return callback

    def wait_for_node(self, timeout_s: float = 180.0) -> None:
        """Until the node (model loaded) hears the images and, on a robot, /tf."""
        deadline = time.perf_counter() + timeout_s
        wanted = [self.image_pub] + ([] if self.hand_held else [self.tf_pub])
        while any(p.get_subscription_count() < 1 for p in wanted):
            self.node_process.check()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"inerf_node did not subscribe within {timeout_s:.0f} s "
                                   f"(log: {self.node_process.log_path})")
            time.sleep(0.1)
        time.sleep(1.0)  # discovery of the other topics (camera_pose, status) completes too

    def publish_static_chain(self) -> None:
        from tf2_msgs.msg import TFMessage

        from inerf_ros.ros import pose_msgs

        stamp = self.probe.get_clock().now().to_msg()
        self.tf_static_pub.publish(TFMessage(transforms=[
            pose_msgs.matrix_to_transform_stamped(parent_T_child, parent, child, stamp)
            for parent, child, parent_T_child, _ in self.robot.believed.static_chain()]))

    def publish(self, frame, stamp_ns: int, prior: np.ndarray | None = None) -> None:
        """The arm's chain (robot mode), camera_info, the prior (if any), then the image, all at ``stamp_ns``."""
        from builtin_interfaces.msg import Time
        from tf2_msgs.msg import TFMessage

        from inerf_ros.ros import camera_info, image, pose_msgs

        stamp = Time(sec=stamp_ns // 10 ** 9, nanosec=stamp_ns % 10 ** 9)
        self.truth[stamp_ns] = frame.world_T_cam_optical
        if not self.hand_held:
            chain = self.robot.believed.tf_chain(frame.joints)
            self.tf_pub.publish(TFMessage(transforms=[
                pose_msgs.matrix_to_transform_stamped(parent_T_child, parent, child, stamp)
                for parent, child, parent_T_child, static in chain if not static]))
            self.kinematic[stamp_ns] = self.robot.believed.world_T_camera(frame.joints)
        info = camera_info.intrinsics_to_camera_info(frame.intrinsics)
        info.header.stamp, info.header.frame_id = stamp, self.camera_frame
        self.info_pub.publish(info)
        if prior is not None:
            self.prior_pub.publish(pose_msgs.pose_with_covariance_stamped(prior, np.eye(6) * 1e-3, "nerf", stamp))
        msg = image.numpy_to_image(frame.rgb, "rgb8")
        msg.header.stamp, msg.header.frame_id = stamp, self.camera_frame
        self.sent[stamp_ns] = time.perf_counter()
        self.image_pub.publish(msg)

    def wait_status(self, stamp_ns: int, timeout_s: float = 120.0) -> bool:
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            with self.lock:
                if stamp_ns in self.statuses:
                    return True
            self.node_process.check()
            time.sleep(0.005)
        return False

    def latency(self, stamp_ns: int) -> float:
        with self.lock:
            pose = self.poses.get(stamp_ns)
        return pose[0] - self.sent[stamp_ns] if pose is not None else float("nan")

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.spinner.join(timeout=5.0)
        self.probe.destroy_node()


def error_summary(bench: Bench, stamps) -> str:
    """Errors of the received poses (and of the kinematics alone, on a robot) against the truth."""
    from inerf_ros.robot.model import pose_difference

    from inerf_ros.ros import pose_msgs

    def summary(pairs, label: str) -> str:
        if not pairs:
            return f"{label}: none"
        cm = [100 * t for t, _ in pairs]
        deg = [r for _, r in pairs]
        within = sum(c <= 2 and d <= 2 for c, d in zip(cm, deg)) / len(pairs)
        return (f"{label}: median {statistics.median(cm):.2f} cm / {statistics.median(deg):.2f} deg, max "
                f"{max(cm):.2f} cm / {max(deg):.2f} deg, {within:.0%} within 2 cm / 2 deg")

    with bench.lock:
        received = [(s, bench.poses[s][1]) for s in stamps if s in bench.poses]
    estimated = [pose_difference(pose_msgs.pose_with_covariance_to_numpy(msg)[0], bench.truth[s])
                 for s, msg in received]
    out = summary(estimated, "iNeRF")
    if bench.kinematic:
        out += "; " + summary([pose_difference(bench.kinematic[s], bench.truth[s]) for s, _ in received],
                              "kinematics alone, same frames")
    return out


def prior_sources(bench: Bench, stamps) -> str:
    counts: dict[str, int] = {}
    with bench.lock:
        for s in stamps:
            status = bench.statuses.get(s)
            source = "dropped" if status is None else status[1].prior_source
            counts[source] = counts.get(source, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default=str(ROOT / "demo_out" / "world"),
                        help="demo world folder (default demo_out/world, rendered when missing, as `make demo` does)")
    parser.add_argument("--model", default=str(ROOT / "models" / "nerf_tabletop"), help="NeRF model folder")
    parser.add_argument("--hand-held", action="store_true",
                        help="the old mode: no arm on TF, PoseCNN-like priors, nerf -> camera on TF")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cold", type=int, default=3, help="cold estimates to time")
    parser.add_argument("--tracking-frames", type=int, default=90,
                        help="frames published at camera rate after the tracking run's first (default 90: 6 s)")
    parser.add_argument("--tracking-start", type=int, default=150,
                        help="arm frame the tracking run starts from (default 150: mid-trajectory)")
    parser.add_argument("--params", default=str(ROOT / "config" / "localize.yaml"),
                        help="parameter file whose inerf_node section the node starts from")
    parser.add_argument("--solver", choices=("adam", "lm"), help="override: solver")
    parser.add_argument("--rays", type=int, help="override: num_rays")
    parser.add_argument("--max-iterations", type=int, help="override: max_iterations (cold estimates)")
    parser.add_argument("--tracking-iterations", type=int, help="override: tracking_iterations")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of the node (default 1)")
    args = parser.parse_args(argv)

    import yaml

    from inerf_ros.scene.dataset import load_frames, load_robot

    world = Path(args.world)
    if not (world / "arm" / "scene_gt.json").is_file():
        from inerf_ros.demo import ensure_world

        if world.name != "world":
            print(f"no arm split in {world}: run `inerf-ros make-scene --out {world}` (or leave --world at "
                  "its default, which this bench renders)")
            return 1
        world.parent.mkdir(parents=True, exist_ok=True)
        ensure_world(world.parent)  # renders OUT/world (+ OUT/arm.mcap) as `make demo` does
    if not Path(args.model).is_dir() or not any(Path(args.model).glob("*.safetensors")):
        from inerf_ros.replay import missing_model_message

        print(missing_model_message("nerf", Path(args.model)))
        return 1
    frames = list(load_frames(world, "arm", images=False))  # poses only: 300 decoded frames are ~1 GB
    robot = load_robot(world, "arm")
    if not args.hand_held and (robot is None or any(f.joints is None for f in frames)):
        print(f"{world}/arm has no robot.json or no joint angles: re-render it, or use --hand-held")
        return 1
    stop = args.tracking_start + 1 + args.tracking_frames
    if stop > len(frames):
        print(f"--tracking-start + --tracking-frames reach past the {len(frames)} arm frames")
        return 1

    cold_frames = [frames[(i * 37 + 20) % len(frames)] for i in range(args.cold)]
    wanted = [f.index for f in cold_frames + frames[args.tracking_start: stop]]
    with_images = {f.index: f for f in load_frames(world, "arm", indices=wanted)}
    cold_frames = [with_images[f.index] for f in cold_frames]
    frames = [with_images.get(f.index, f) for f in frames]

    shipped = yaml.safe_load(Path(args.params).read_text())["inerf_node"]["ros__parameters"]
    flags = {"solver": args.solver, "num_rays": args.rays, "max_iterations": args.max_iterations,
             "tracking_iterations": args.tracking_iterations}
    overrides = {**{k: v for k, v in flags.items() if v is not None},
                 "model_dir": str(Path(args.model).resolve()), "device": args.device, "overlay_scale": 0.0}
    if args.hand_held:  # the bench publishes no detections; no re-anchoring, so that tracking is what is timed
        overrides.update(prior_wait_s=0.5, reanchor_every_s=1000.0)
    else:
        robot_json = json.loads((world / "arm" / "robot.json").read_text())
        believed = np.asarray(robot_json["believed_world_T_base"], dtype=np.float64)  # world == nerf in the demo
        overrides.update(base_frame="base_link", initial_nerf_T_base=xyz_quat(believed))
    values = {**shipped, **overrides}

    # Before rclpy.init: with Fast DDS' default transport 640x480 images at 15 Hz stall /tf by seconds.
    from inerf_ros.ros.node_main import DDS_TRANSPORT, DDS_TRANSPORT_ENV

    os.environ.setdefault(DDS_TRANSPORT_ENV, DDS_TRANSPORT)
    os.environ.setdefault("ROS_DOMAIN_ID", str(60 + os.getpid() % 100))  # apart from other ROS on this machine
    import rclpy

    rng = np.random.default_rng(0)
    rclpy.init()
    node = NodeProcess(Path(args.params), overrides, args.threads)
    bench = None
    try:
        bench = Bench(robot, args.hand_held, node)
        print(f"waiting for inerf_node (model load; log {node.log_path}) ...", flush=True)
        bench.wait_for_node()
        if not args.hand_held:
            bench.publish_static_chain()
            time.sleep(0.5)

        # Each run starts RUN_STEP earlier than the last: the node sees time jump back and resets its
        # tracker and correction, so a run's first frame is a cold estimate from the believed placement.
        run_base = BASE_STAMP_NS
        cold_stamps = []
        for i, frame in enumerate(cold_frames):
            stamp_ns = run_base + int(round(frame.time * 1e9))
            bench.publish(frame, stamp_ns, perturbed(frame.world_T_cam_optical, rng) if args.hand_held else None)
            if not bench.wait_status(stamp_ns):
                print(f"cold frame {frame.index}: no status within 120 s")
            cold_stamps.append(stamp_ns)
            print(f"cold {i + 1}/{args.cold} (arm frame {frame.index}): {bench.latency(stamp_ns):.2f} s", flush=True)
            run_base -= RUN_STEP_NS
            time.sleep(0.5)

        first = frames[args.tracking_start]
        first_ns = run_base + int(round(first.time * 1e9))
        bench.publish(first, first_ns, first.world_T_cam_optical if args.hand_held else None)
        bench.wait_status(first_ns)
        print(f"tracking run: first frame {first.index} in {bench.latency(first_ns):.2f} s; publishing "
              f"{args.tracking_frames} frames at {CAMERA_RATE_HZ:g} Hz", flush=True)
        tracking_stamps = []
        start = time.perf_counter()
        for k, frame in enumerate(frames[args.tracking_start + 1: stop]):
            stamp_ns = run_base + int(round(frame.time * 1e9))
            delay = start + k / CAMERA_RATE_HZ - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            bench.publish(frame, stamp_ns, None)
            tracking_stamps.append(stamp_ns)
        publish_s = time.perf_counter() - start
        # The node's newest frame is never dropped: its status closes the run.
        bench.wait_status(tracking_stamps[-1], timeout_s=60.0)
        time.sleep(0.5)
    finally:
        if bench is not None:
            bench.close()
        node.close()
        rclpy.shutdown()

    cold = [bench.latency(s) for s in cold_stamps]
    tracked = [s for s in tracking_stamps if s in bench.poses]
    latencies = [bench.latency(s) for s in tracked]
    with bench.lock:  # the run ends with the last output: a pose, or the status of a frame without one
        ends = [bench.poses[s][0] for s in tracked] + [bench.statuses[s][0] for s in tracking_stamps
                                                       if s in bench.statuses]
    window = max(ends, default=start) - bench.sent[tracking_stamps[0]]
    mode = "hand-held camera, PoseCNN-like priors" if args.hand_held else \
        "UR10e arm: believed chain on /tf, base_frame base_link, correction nerf -> base_link"
    print()
    print(f"inerf_node ({mode}) on {args.device}, {args.threads} torch thread(s), solver {values['solver']}, "
          f"{values['num_rays']} rays, model {args.model}")
    cold_prior = "PoseCNN-like prior, 10 deg / 5 cm" if args.hand_held else \
        "believed base placement + chain: prior source kinematics"
    print(f"cold estimate ({cold_prior}; {prior_sources(bench, cold_stamps)}): image-in to camera_pose median "
          f"{percentile(cold, 50):.2f} s over {len(cold)} ({', '.join(f'{c:.2f}' for c in cold)}); "
          f"{error_summary(bench, cold_stamps)}")
    rate = len(tracked) / window if window > 0 else float("nan")
    print(f"tracking ({values['tracking_iterations']} iterations per frame, {len(tracking_stamps)} frames at "
          f"{(len(tracking_stamps) - 1) / publish_s:.1f} Hz; {prior_sources(bench, tracking_stamps)}): {len(tracked)} "
          f"updates in {window:.1f} s = {rate:.2f} Hz; image-in to camera_pose median "
          f"{percentile(latencies, 50):.3f} s, p90 {percentile(latencies, 90):.3f} s, "
          f"max {max(latencies, default=float('nan')):.3f} s")
    with bench.lock:  # the optimizer's own time; the rest of a latency is waiting, decoding, TF and DDS
        optimizer_s = [float(bench.statuses[s][1].time_spent) for s in tracked if s in bench.statuses]
    print(f"tracking: of which the estimate itself (status time_spent) median {percentile(optimizer_s, 50):.3f} s; "
          f"a frame that arrives while the node is busy waits for the estimate in progress")
    print(f"tracking poses: {error_summary(bench, tracked)}")
    if not args.hand_held:
        print(f"(the correction nerf -> base_link reaches /tf at the node's next republish, "
              f"<= {1.0 / values['correction_rate_hz']:.2f} s after camera_pose)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
