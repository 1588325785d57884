"""seconds <-> builtin_interfaces/Time, at sim-time and wall-clock magnitudes."""
import math

import pytest

pytest.importorskip("builtin_interfaces", reason="ROS message packages are not installed")

from inerf_ros.ros.stamps import seconds_to_stamp, stamp_to_seconds  # noqa: E402


@pytest.mark.parametrize("seconds, expected", [
    (0.0, (0, 0)),
    (5.9999999997, (6, 0)),          # the fraction rounds up to a whole second: carry into sec
    (0.9999999996, (1, 0)),
    (5.9999999994, (5, 999_999_999)),
    (12.25, (12, 250_000_000)),
    (1_700_000_000.5, (1_700_000_000, 500_000_000)),
])
def test_seconds_to_stamp_rounds_to_the_nanosecond_and_carries(seconds, expected):
    stamp = seconds_to_stamp(seconds)
    assert (stamp.sec, stamp.nanosec) == expected


def test_stamp_round_trip_at_sim_time():
    for k in range(0, 20001, 7):
        seconds = k * 1e-3 + 1e-10 * (k % 13)
        stamp = seconds_to_stamp(seconds)
        assert 0 <= stamp.nanosec < 1_000_000_000
        assert abs(stamp_to_seconds(stamp) - seconds) <= 0.5e-9 + 1e-12


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_seconds_to_stamp_rejects_non_finite(bad):
    with pytest.raises(ValueError):
        seconds_to_stamp(bad)
