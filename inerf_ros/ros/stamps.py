"""builtin_interfaces/Time <-> seconds."""
from __future__ import annotations


def stamp_to_seconds(stamp) -> float:
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def seconds_to_stamp(seconds: float):
    from builtin_interfaces.msg import Time

    sec = int(seconds // 1)
    return Time(sec=sec, nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)
