"""The fixed ``main()`` of every node: init, spin, quiet on Ctrl-C and on launch shutdown."""
from __future__ import annotations

import sys


def run(node_factory, args=None, executor_threads: int = 2) -> int:
    """Create the node with ``node_factory()`` and spin it; a start-up error exits 1 with the reason."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    with rclpy.init(args=args):
        try:
            node = node_factory()
        except (OSError, ValueError, RuntimeError) as error:  # bad model file, bad parameter...
            print(f"[inerf_ros] cannot start: {error}", file=sys.stderr)
            return 1
        executor = MultiThreadedExecutor(num_threads=executor_threads)
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
    return 0
