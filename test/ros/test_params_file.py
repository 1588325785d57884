"""rcl itself parses config/localize.yaml and each node reads its section."""
from pathlib import Path

import rclpy

ROOT = Path(__file__).resolve().parents[2]


def test_nodes_read_the_generated_params_file(ros_domain_id):
    from inerf_ros.nodes.initializer_node import InitializerNode

    context = rclpy.context.Context()
    rclpy.init(context=context, domain_id=ros_domain_id,
               args=["--ros-args", "--params-file", str(ROOT / "config" / "localize.yaml")])
    try:
        node = InitializerNode(context=context)
        poses = node.get_parameter("object_poses").value
        assert len(poses) == 7 and poses[0].startswith("cracker_box ")
        assert node.get_parameter("mode").value == "full"
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
