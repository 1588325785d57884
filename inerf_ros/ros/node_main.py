"""The fixed ``main()`` of every node: init, spin, quiet on Ctrl-C and on launch shutdown."""
from __future__ import annotations

import os
import sys

DEBUG_ENV = "INERF_DEBUG"
"""Set to 1 to get the traceback of a start-up failure instead of its one-line reason."""


def run(node_factory, args=None, executor_threads: int = 2) -> int:
    """Create the node with ``node_factory()`` and spin it; a start-up error exits 1 with the reason.

    Every start-up failure (a bad model file or its metadata, a parameter of the wrong type or out of
    range) is one line on stderr, ``[inerf_ros] cannot start <node>: <reason>``, whatever raised it:
    a launcher shows that line, and a traceback would bury it (``INERF_DEBUG=1`` shows one).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    name = getattr(node_factory, "__name__", "node")
    with rclpy.init(args=args):
        try:
            node = node_factory()
        except Exception as error:  # noqa: BLE001 - see the docstring
            if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            if not isinstance(error, (OSError, ValueError)):
                reason = f"{type(error).__name__}: {reason}"
            print(f"[inerf_ros] cannot start {name}: {reason}", file=sys.stderr)
            return 1
        executor = MultiThreadedExecutor(num_threads=executor_threads)
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception as error:  # noqa: BLE001 - a callback raised: say so in one line, exit non-zero
            if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            print(f"[inerf_ros] {name} stopped: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        finally:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
    return 0
