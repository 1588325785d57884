"""Soak: inerf_node and posecnn_node, in this process, flooded for minutes with frames a tenth of which
are faulty (oversize images, absurd camera_infos, NaN priors, wrong-size masks, time jumps back).

Reports the resident memory (start after warm-up, peak, end), the frames sent, localised and
dropped, and whether both nodes are still answering at the end. The short version runs in the
test suite (test/faults/test_fault_flood.py).

    python bench/soak.py [--seconds 600] [--rate-hz 100]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test" / "faults"))

from fault_utils import Flood, rss_bytes, spin_until, tiny_detector, tiny_pipeline  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="flood duration (default: 600)")
    parser.add_argument("--rate-hz", type=float, default=100.0, help="frames per second offered (default: 100)")
    parser.add_argument("--domain-id", type=int, default=77, help="ROS domain of the soak (default: 77)")
    args = parser.parse_args(argv)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile

    from inerf_ros.msg import LocalizationStatus, ObjectPoseArray
    from inerf_ros.nodes.inerf_node import InerfNode
    from inerf_ros.nodes.posecnn_node import PosecnnNode

    context = rclpy.context.Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    limit = [Parameter("max_image_pixels", value=100_000)]
    inerf = InerfNode(tiny_pipeline(), context=context, parameter_overrides=limit + [
        Parameter("max_iterations", value=3), Parameter("num_rays", value=64), Parameter("covariance_rays", value=64),
        Parameter("overlay_scale", value=0.0), Parameter("prior_wait_s", value=0.05)])
    posecnn = PosecnnNode(tiny_detector(), context=context, parameter_overrides=limit)
    flood = Flood(context)
    counts = {"status": 0, "localised": 0, "detections": 0}

    def on_status(msg):
        counts["status"] += 1
        counts["localised"] += msg.iterations > 0

    flood.node.create_subscription(LocalizationStatus, "localization_status", on_status, QoSProfile(depth=50))
    flood.node.create_subscription(ObjectPoseArray, "detections",
                                   lambda msg: counts.__setitem__("detections", counts["detections"] + 1),
                                   QoSProfile(depth=50))
    executor = SingleThreadedExecutor(context=context)
    for node in (inerf, posecnn, flood.node):
        executor.add_node(node)
    spin_until(executor, lambda: False, timeout_s=1.0)
    period = 1.0 / args.rate_hz
    k = 0
    for k in range(200):   # warm-up
        flood.publish(k)
        executor.spin_once(timeout_sec=period)
    start_rss = peak = rss_bytes()
    start = time.monotonic()
    next_report = start + 60.0
    while time.monotonic() - start < args.seconds:
        k += 1
        flood.publish(k)
        executor.spin_once(timeout_sec=period)
        if k % 50 == 0:
            peak = max(peak, rss_bytes())
        if time.monotonic() > next_report:
            next_report += 60.0
            print(f"{time.monotonic() - start:6.0f} s: {flood.sent} frames, RSS {rss_bytes() / 2 ** 20:.0f} MiB "
                  f"(peak {peak / 2 ** 20:.0f} MiB)", flush=True)
    before = counts["status"]
    flood.publish(k + 1)
    alive = spin_until(executor, lambda: counts["status"] > before, timeout_s=30)
    end_rss = rss_bytes()
    peak = max(peak, end_rss)
    elapsed = time.monotonic() - start
    print(f"soak: {elapsed:.0f} s, {flood.sent} frames offered ({flood.sent / elapsed:.0f} Hz, 10 % faulty), "
          f"{counts['localised']} localised, {inerf.dropped_frames} dropped while busy, "
          f"{counts['detections']} detection messages")
    mib = 2 ** 20
    print(f"RSS after warm-up {start_rss / mib:.0f} MiB, peak {peak / mib:.0f} MiB, end {end_rss / mib:.0f} MiB "
          f"(growth {(peak - start_rss) / mib:.1f} MiB); nodes answering at the end: {alive}")
    inerf.close()
    for node in (inerf, posecnn, flood.node):
        executor.remove_node(node)
        node.destroy_node()
    rclpy.shutdown(context=context)
    return 0 if alive else 1


if __name__ == "__main__":
    raise SystemExit(main())
