"""Image-in to TF-out latency of the live inerf_node (real DDS), cold and in tracking mode.

    python bench/pipeline_latency.py [--world data_cache/demo_world] [--model models/nerf_tabletop]

* cold: a frame with a PoseCNN-like prior (truth perturbed by 10 deg / 5 cm) after a pause long
  enough that nothing can be tracked: the time from publishing the image to receiving its TF;
* tracking: consecutive arm-trajectory frames published at camera rate with no further priors,
  after one frame whose prior is the ground truth (tracking is timed apart from how well a cold
  estimate went); throughput = TF messages received per second (the node drops frames it cannot
  keep up with).

The node runs with the shipped parameters (``config/localize.yaml``, as ``ros2 launch inerf_ros
localize.launch.py`` does); flags override single values. The errors of the received poses against
the ground truth are printed next to the times, so speed is never bought with wrong poses.
Frames come from the demo world's ``arm`` split (``inerf-ros make-scene``), ground truth from it
(the demo NeRF frame is the world frame, in metres).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRACKING_RATE_HZ = 15.0


def perturbed(pose: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import torch

    from inerf_ros import lie

    rotation = lie.axis_angle_rotation(torch.from_numpy(rng.normal(size=3)), torch.tensor(np.radians(10.0))).numpy()
    shift = rng.normal(size=3)
    out = pose.copy()
    out[:3, :3] = rotation @ pose[:3, :3]
    out[:3, 3] += shift / np.linalg.norm(shift) * 0.05
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default=str(ROOT / "data_cache" / "demo_world"), help="demo world folder")
    parser.add_argument("--model", default=str(ROOT / "models" / "nerf_tabletop"), help="NeRF model folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cold", type=int, default=3, help="cold estimates to time")
    parser.add_argument("--tracking-frames", type=int, default=30, help="frames published in tracking mode")
    parser.add_argument("--tracking-start", type=int, default=150,
                        help="arm frame that tracking starts from, with a prior (default 150: mid-trajectory, "
                             "past the approach from 1.35 m)")
    parser.add_argument("--params", default=str(ROOT / "config" / "localize.yaml"),
                        help="parameter file whose inerf_node section the node starts from")
    parser.add_argument("--solver", choices=("adam", "lm"), help="override: solver")
    parser.add_argument("--rays", type=int, help="override: num_rays")
    parser.add_argument("--max-iterations", type=int, help="override: max_iterations (cold estimates)")
    parser.add_argument("--tracking-iterations", type=int, help="override: tracking_iterations")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)

    import rclpy
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from inerf_ros.nodes.inerf_node import InerfNode
    from inerf_ros.ros import camera_info, image, pose_msgs
    from inerf_ros.ros.stamps import seconds_to_stamp, stamp_to_seconds
    from inerf_ros.ros.tf import TF_QOS
    from inerf_ros.scene.dataset import load_frames

    frames = list(load_frames(args.world, "arm"))
    if not frames:
        print(f"no arm frames in {args.world}: run `inerf-ros make-scene --out {args.world}`")
        return 1
    import torch
    import yaml

    from inerf_ros import lie

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    shipped = yaml.safe_load(Path(args.params).read_text())["inerf_node"]["ros__parameters"]
    flags = {"solver": args.solver, "num_rays": args.rays, "max_iterations": args.max_iterations,
             "tracking_iterations": args.tracking_iterations}
    # The bench publishes no detections; no re-anchoring so that tracking is what is timed.
    values = {**shipped, **{k: v for k, v in flags.items() if v is not None},
              "model_dir": args.model, "device": args.device, "overlay_scale": 0.0, "prior_wait_s": 0.5,
              "reanchor_every_s": 1000.0}
    overrides = [Parameter(name, value=value) for name, value in values.items()
                 if not (isinstance(value, list) and not value)]  # empty lists carry no type
    os.environ.setdefault("ROS_DOMAIN_ID", "77")
    with rclpy.init():
        node = InerfNode(parameter_overrides=overrides)
        probe = rclpy.create_node("latency_probe")
        image_pub = probe.create_publisher(Image, "image_raw", qos_profile_sensor_data)
        info_pub = probe.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        prior_pub = probe.create_publisher(PoseWithCovarianceStamped, "camera_prior", QoSProfile(depth=5))
        received: dict[float, float] = {}
        poses: dict[float, np.ndarray] = {}

        def on_tf(msg) -> None:
            stamp = stamp_to_seconds(msg.transforms[0].header.stamp)
            received.setdefault(stamp, time.perf_counter())
            poses[stamp] = pose_msgs.transform_to_matrix(msg.transforms[0].transform)

        probe.create_subscription(TFMessage, "/tf", on_tf, TF_QOS)
        truth: dict[float, np.ndarray] = {}
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        executor.add_node(probe)

        def spin_for(seconds: float) -> None:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                executor.spin_once(timeout_sec=0.01)

        def publish(frame, stamp_s: float, prior: bool, exact_prior: bool = False) -> float:
            truth[round(stamp_s, 6)] = frame.world_T_cam_optical
            stamp = seconds_to_stamp(stamp_s)
            info = camera_info.intrinsics_to_camera_info(frame.intrinsics)
            info.header.stamp, info.header.frame_id = stamp, "camera_optical"
            info_pub.publish(info)
            if prior:
                start = frame.world_T_cam_optical if exact_prior else perturbed(frame.world_T_cam_optical, rng)
                prior_pub.publish(pose_msgs.pose_with_covariance_stamped(start, np.eye(6) * 1e-3, "nerf", stamp))
            msg = image.numpy_to_image(frame.rgb, "rgb8")
            msg.header.stamp, msg.header.frame_id = stamp, "camera_optical"
            sent = time.perf_counter()
            image_pub.publish(msg)
            return sent

        spin_for(1.0)
        cold, cold_stamps = [], []
        stamp_s = 1000.0
        for i in range(args.cold):
            stamp_s += 100.0  # far from the last estimate: nothing to track
            sent = publish(frames[(i * 37) % len(frames)], stamp_s, prior=True)
            deadline = time.perf_counter() + 120
            while stamp_s not in received and time.perf_counter() < deadline:
                executor.spin_once(timeout_sec=0.01)
            cold.append(received.get(stamp_s, float("nan")) - sent)
            cold_stamps.append(stamp_s)

        stamp_s += 100.0
        publish(frames[args.tracking_start], stamp_s, prior=True, exact_prior=True)
        while stamp_s not in received:
            executor.spin_once(timeout_sec=0.01)
        start = time.perf_counter()
        count_before = len(received)
        tracking_start_stamp = stamp_s
        for frame in frames[args.tracking_start + 1: args.tracking_start + 1 + args.tracking_frames]:
            stamp_s += 1.0 / TRACKING_RATE_HZ
            publish(frame, stamp_s, prior=False)
            spin_for(1.0 / TRACKING_RATE_HZ)
        # The node works through what it kept; wait until it has been quiet for a while.
        last_count, last_change = len(received), time.perf_counter()
        while time.perf_counter() - last_change < 20.0 and time.perf_counter() - start < 600:
            executor.spin_once(timeout_sec=0.05)
            if len(received) != last_count:
                last_count, last_change = len(received), time.perf_counter()
        tracked = len(received) - count_before
        elapsed = (max(received.values()) if tracked else time.perf_counter()) - start
        node.close()
        node.destroy_node()
        probe.destroy_node()

    def error_summary(stamps) -> str:
        errors = [lie.pose_error(torch.from_numpy(poses[s]), torch.from_numpy(truth[round(s, 6)]))
                  for s in stamps if s in poses]
        if not errors:
            return "no poses received"
        rot = [float(r) for r, _ in errors]
        cm = [100 * float(t) for _, t in errors]
        within = sum(r < 5 and c < 5 for r, c in zip(rot, cm)) / len(errors)
        return (f"errors: median {statistics.median(rot):.2f} deg / {statistics.median(cm):.2f} cm, max "
                f"{max(rot):.2f} deg / {max(cm):.2f} cm, {within:.0%} within 5 deg / 5 cm")

    print(f"inerf_node on {args.device}, solver {values['solver']}, {values['num_rays']} rays, "
          f"{values['samples_per_ray'] or 'model'} samples per ray, {args.threads} torch thread(s), "
          f"model {args.model}")
    print(f"cold estimate (prior 10 deg / 5 cm, <= {values['max_iterations']} iterations): image-in to TF-out "
          f"median {statistics.median(cold):.2f} s over {len(cold)} frames ({', '.join(f'{c:.2f}' for c in cold)}); "
          f"{error_summary(cold_stamps)}")
    tracked_stamps = [s for s in received if s > tracking_start_stamp]
    print(f"tracking ({values['tracking_iterations']} iterations per frame, frames at {TRACKING_RATE_HZ:g} Hz): "
          f"{tracked} TF in {elapsed:.1f} s = {tracked / elapsed:.2f} Hz "
          f"({args.tracking_frames - tracked} frames dropped as the node kept the newest); "
          f"{error_summary(tracked_stamps)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
