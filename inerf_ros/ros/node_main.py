"""The fixed ``main()`` of every node: init, spin, quiet on Ctrl-C and on launch shutdown."""
from __future__ import annotations

import os
import sys

DEBUG_ENV = "INERF_DEBUG"
"""Set to 1 to get the traceback of a start-up failure instead of its one-line reason."""

DDS_TRANSPORT_ENV = "FASTDDS_BUILTIN_TRANSPORTS"
DDS_TRANSPORT = "LARGE_DATA"
"""Fast DDS' transports for camera images. With its default (shared memory, then UDP), 640x480 rgb8
images at 15 Hz choked the transport here: 50 of 300 images arrived, and a 30 Hz /tf from the same
process reached the subscriber 1-3 s late (a kinematic chain "in the future" for every image).
``LARGE_DATA`` (shared memory + TCP, Fast DDS >= 2.14, what ROS 2 recommends for large messages):
223 of 300 images, /tf 22 ms behind. Measured with two processes on the 2-core machine (README)."""


def large_data_environment(environ=None) -> dict:
    """``environ`` (default: this process') with Fast DDS' large-data transports unless the user chose."""
    out = dict(os.environ if environ is None else environ)
    out.setdefault(DDS_TRANSPORT_ENV, DDS_TRANSPORT)
    return out


def run(node_factory, args=None, executor_threads: int = 1) -> int:
    """Create the node with ``node_factory()`` and spin it; a start-up error exits 1 with the reason.

    Every start-up failure (a bad model file or its metadata, a parameter of the wrong type or out of
    range) is one line on stderr, ``[inerf_ros] cannot start <node>: <reason>``, whatever raised it:
    a launcher shows that line, and a traceback would bury it (``INERF_DEBUG=1`` shows one).

    One executor thread by default: rclpy's multi-threaded executor spends a core of its own polling
    its futures, and our nodes do their heavy work in threads of their own (inerf_node's worker, the
    TF listener) so that callbacks only file messages away.
    """
    # lazy: rclpy needs a sourced ROS; the launcher imports this module for large_data_environment only
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

    name = getattr(node_factory, "__name__", "node")
    # A compute thread (inerf_node's worker) holds the GIL between torch calls; with the default 5 ms
    # switch interval a message thread waits up to 5 ms for every re-acquisition, and a 30 Hz /tf
    # listener fell seconds behind (the convoy effect). 1 ms costs the compute thread ~nothing.
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
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
        executor = SingleThreadedExecutor() if executor_threads <= 1 else \
            MultiThreadedExecutor(num_threads=executor_threads)
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
