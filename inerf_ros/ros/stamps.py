"""builtin_interfaces/Time <-> seconds."""
from __future__ import annotations

import math


def stamp_to_seconds(stamp) -> float:
    """Seconds (float) of a builtin_interfaces/Time; needs no ROS install."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def seconds_to_stamp(seconds: float):
    """The Time nearest to ``seconds`` (rounded to the nanosecond); NaN or infinity raise."""
    # A message module, imported here so that the ROS-free stamp_to_seconds needs no ROS install.
    from builtin_interfaces.msg import Time

    if not math.isfinite(seconds):
        raise ValueError(f"cannot stamp {seconds} s")
    sec = math.floor(seconds)
    # Rounding the fraction (not the whole value to ns) keeps the nanoseconds exact at wall-clock
    # magnitudes; a fraction that rounds up to a full second carries into ``sec``.
    nanosec = int(round((seconds - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Time(sec=sec, nanosec=nanosec)
