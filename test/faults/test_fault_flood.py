"""A flood of frames, a tenth of them faulty, through inerf_node and posecnn_node: memory stays bounded.

Every per-message allocation is bounded (max_image_pixels, the stamp caches' size, one pending frame
in inerf_node), so after a warm-up the resident memory of this process, which runs both nodes, must
not grow with the number of messages. The 10-minute version is bench/soak.py.
"""
import pytest

from fault_utils import Flood, rss_bytes, spin_until, tiny_detector, tiny_pipeline

rclpy = pytest.importorskip("rclpy")

RSS_GROWTH_LIMIT = 64 * 2 ** 20


def test_flooding_both_nodes_keeps_memory_bounded(ros_context):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from inerf_ros.nodes.inerf_node import InerfNode
    from inerf_ros.nodes.posecnn_node import PosecnnNode

    limit = [Parameter("max_image_pixels", value=100_000)]   # the flood's 400x300 images are over it
    inerf = InerfNode(tiny_pipeline(), context=ros_context, parameter_overrides=limit + [
        Parameter("max_iterations", value=3), Parameter("num_rays", value=64), Parameter("covariance_rays", value=64),
        Parameter("overlay_scale", value=0.0), Parameter("prior_wait_s", value=0.05)])
    posecnn = PosecnnNode(tiny_detector(), context=ros_context, parameter_overrides=limit)
    flood = Flood(ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    for node in (inerf, posecnn, flood.node):
        executor.add_node(node)
    try:
        spin_until(executor, lambda: False, timeout_s=0.5)
        for k in range(100):   # warm-up: allocators, DDS history, torch's caches
            flood.publish(k)
            executor.spin_once(timeout_sec=0.0)
        spin_until(executor, lambda: False, timeout_s=0.5)
        before = rss_bytes()
        peak = before
        for k in range(100, 500):
            flood.publish(k)
            executor.spin_once(timeout_sec=0.0)
            peak = max(peak, rss_bytes()) if k % 20 == 0 else peak
        spin_until(executor, lambda: False, timeout_s=0.5)
        peak = max(peak, rss_bytes())
        assert peak - before < RSS_GROWTH_LIMIT, f"RSS grew by {(peak - before) / 2 ** 20:.1f} MiB"
        assert len(inerf._priors) <= 30 and len(inerf._masks) <= 30 and len(inerf._camera_infos) <= 30
        assert inerf.dropped_frames > 0   # frames were dropped, not queued
    finally:
        inerf.close()
        for node in (inerf, posecnn, flood.node):
            executor.remove_node(node)
            node.destroy_node()
