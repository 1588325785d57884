"""TfTree against hand-computed cases: chains, interpolation, static + dynamic, errors, jumps, parents."""
import math
import time

import numpy as np
import pytest

from inerf_ros.tf_tree import (ConnectivityError, ExtrapolationError, FrameNotFoundError, FutureExtrapolationError,
                               PastExtrapolationError, TfTree, TimeJump, TransformError, correction_attachment,
                               matrix_to_quat, quat_to_matrix, slerp, tree_root)


def rot_z(angle_rad, translation=(0.0, 0.0, 0.0)):
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    out = np.eye(4)
    out[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    out[:3, 3] = translation
    return out


def rot_x(angle_rad, translation=(0.0, 0.0, 0.0)):
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    out = np.eye(4)
    out[:3, :3] = [[1, 0, 0], [0, c, -s], [0, s, c]]
    out[:3, 3] = translation
    return out


def test_quaternion_round_trip_including_half_turns():
    for rotation in (rot_z(0.3), rot_x(math.pi), rot_z(math.pi) @ rot_x(0.5), rot_x(-2.0) @ rot_z(3.1)):
        quat = matrix_to_quat(rotation[:3, :3])
        assert quat[3] >= 0 and math.isclose(np.linalg.norm(quat), 1.0, abs_tol=1e-12)
        np.testing.assert_allclose(quat_to_matrix(quat), rotation[:3, :3], atol=1e-12)
    # A quarter turn about z is (0, 0, sin 45, cos 45); halfway to it by SLERP is an eighth turn.
    np.testing.assert_allclose(matrix_to_quat(rot_z(math.pi / 2)[:3, :3]), [0, 0, math.sqrt(0.5), math.sqrt(0.5)])
    np.testing.assert_allclose(slerp(np.array([0, 0, 0, 1.0]), np.array([0, 0, math.sqrt(0.5), math.sqrt(0.5)]), 0.5),
                               [0, 0, math.sin(math.pi / 8), math.cos(math.pi / 8)], atol=1e-12)


def test_chain_and_its_inverse():
    tree = TfTree()
    # base -> tool: 1 m along x, quarter turn about z; tool -> cam: 0.1 m along the tool's x, half turn about x.
    tree.set_transform("base", "tool", 5.0, rot_z(math.pi / 2, (1.0, 0.0, 0.0)))
    tree.set_transform("tool", "cam", 5.0, rot_x(math.pi, (0.1, 0.0, 0.0)), static=True)
    base_T_cam = tree.lookup("base", "cam", 5.0)
    # The camera origin: tool's x axis is base's y, so (1, 0.1, 0); cam's z axis is -tool z = -base z.
    np.testing.assert_allclose(base_T_cam[:3, 3], [1.0, 0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(base_T_cam[:3, 2], [0.0, 0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(base_T_cam[:3, 0], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(tree.lookup("cam", "base", 5.0) @ base_T_cam, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(tree.lookup("tool", "cam", 5.0), rot_x(math.pi, (0.1, 0.0, 0.0)), atol=1e-12)
    np.testing.assert_array_equal(tree.lookup("cam", "cam", 5.0), np.eye(4))


def test_siblings_meet_at_their_common_parent():
    tree = TfTree()
    tree.set_transform("world", "base", 1.0, rot_z(0.0, (10.0, 0.0, 0.0)), static=True)
    tree.set_transform("base", "left", 1.0, rot_z(0.0, (0.0, 1.0, 0.0)), static=True)
    tree.set_transform("base", "right", 1.0, rot_z(math.pi, (0.0, -1.0, 0.0)), static=True)
    left_T_right = tree.lookup("left", "right", 1.0)
    np.testing.assert_allclose(left_T_right, rot_z(math.pi, (0.0, -2.0, 0.0)), atol=1e-12)


def test_interpolation_slerps_rotation_and_lerps_translation():
    tree = TfTree()
    tree.set_transform("base", "tool", 1.0, rot_z(0.0, (0.0, 0.0, 0.0)))
    tree.set_transform("base", "tool", 2.0, rot_z(math.pi / 2, (2.0, 0.0, -4.0)))
    np.testing.assert_allclose(tree.lookup("base", "tool", 1.5), rot_z(math.pi / 4, (1.0, 0.0, -2.0)), atol=1e-12)
    np.testing.assert_allclose(tree.lookup("base", "tool", 1.25), rot_z(math.pi / 8, (0.5, 0.0, -1.0)), atol=1e-12)
    # Exact stamps return the samples themselves; so does the inverse direction at the midpoint.
    np.testing.assert_allclose(tree.lookup("base", "tool", 2.0), rot_z(math.pi / 2, (2.0, 0.0, -4.0)), atol=1e-12)
    np.testing.assert_allclose(tree.lookup("tool", "base", 1.5) @ rot_z(math.pi / 4, (1.0, 0.0, -2.0)), np.eye(4),
                               atol=1e-12)
    # Out of order insertion is sorted in.
    tree.set_transform("base", "tool", 1.5, rot_z(0.0, (7.0, 0.0, 0.0)))
    np.testing.assert_allclose(tree.lookup("base", "tool", 1.75)[:3, 3], [4.5, 0.0, -2.0], atol=1e-12)


def test_static_and_dynamic_mix_and_latest_common_time():
    tree = TfTree()
    tree.set_transform("nerf", "base", 0.0, rot_z(0.0, (0.0, 0.0, 1.0)), static=True)
    for stamp, x in ((1.0, 0.0), (2.0, 1.0), (3.0, 2.0)):
        tree.set_transform("base", "tool", stamp, rot_z(0.0, (x, 0.0, 0.0)))
    for stamp, y in ((1.0, 0.0), (2.5, 3.0)):
        tree.set_transform("tool", "cam", stamp, rot_z(0.0, (0.0, y, 0.0)))
    # The static link is valid at any time; the dynamic ones interpolate.
    np.testing.assert_allclose(tree.lookup("nerf", "cam", 2.0)[:3, 3], [1.0, 2.0, 1.0], atol=1e-12)
    # Latest common time: min over the dynamic links' newest samples (2.5), static ignored.
    matrix, used = tree.lookup_stamped("nerf", "cam", 0)
    assert used == 2.5
    np.testing.assert_allclose(matrix[:3, 3], [1.5, 3.0, 1.0], atol=1e-12)
    assert tree.lookup_stamped("nerf", "tool", None)[1] == 3.0
    assert tree.latest_common_time("tool", "base") == 3.0
    # Only static links: time 0 means "whatever is stored".
    assert tree.lookup_stamped("base", "nerf", 0)[1] == 0.0
    # Same frame: the frame's own newest stamp, as tf2.
    assert tree.latest_common_time("cam", "cam") == 2.5


def test_errors_name_frames_and_times():
    tree = TfTree()
    tree.set_transform("base", "tool", 1.0, np.eye(4))
    tree.set_transform("base", "tool", 2.0, np.eye(4))
    tree.set_transform("island", "rock", 1.0, np.eye(4), static=True)
    with pytest.raises(FrameNotFoundError, match='"nowhere" passed to lookup argument source_frame'):
        tree.lookup("base", "nowhere", 1.0)
    with pytest.raises(ConnectivityError, match="'base' and 'rock'"):
        tree.lookup("base", "rock", 1.0)
    with pytest.raises(FutureExtrapolationError, match=r"future.*2\.500000000.*2\.000000000.*\[tool\]"):
        tree.lookup("base", "tool", 2.5)
    with pytest.raises(PastExtrapolationError, match=r"past.*0\.500000000.*1\.000000000"):
        tree.lookup("tool", "base", 0.5)
    for error in (FrameNotFoundError, ConnectivityError, ExtrapolationError):
        assert issubclass(error, TransformError) and issubclass(error, LookupError)
    assert tree.can_lookup("base", "tool", 1.5) == (True, "")
    ok, reason = tree.can_lookup("base", "tool", 9.0)
    assert not ok and "future" in reason


def test_extrapolation_tolerance_holds_the_nearest_sample():
    tree = TfTree(extrapolation_tolerance_s=0.01)
    tree.set_transform("base", "tool", 1.0, rot_z(0.0, (1.0, 0.0, 0.0)))
    tree.set_transform("base", "tool", 2.0, rot_z(0.0, (2.0, 0.0, 0.0)))
    np.testing.assert_allclose(tree.lookup("base", "tool", 2.005)[:3, 3], [2.0, 0.0, 0.0])  # held, not extrapolated
    np.testing.assert_allclose(tree.lookup("base", "tool", 0.995)[:3, 3], [1.0, 0.0, 0.0])
    with pytest.raises(FutureExtrapolationError):
        tree.lookup("base", "tool", 2.02)


def test_a_stale_link_above_the_common_ancestor_does_not_matter():
    # As in tf2: world -> base stopped at t=1, but base -> tool -> cam is fresh; base <- cam at t=5 works.
    tree = TfTree()
    tree.set_transform("world", "base", 1.0, np.eye(4))
    for stamp in (4.0, 6.0):
        tree.set_transform("base", "tool", stamp, rot_z(0.0, (stamp, 0.0, 0.0)))
        tree.set_transform("tool", "cam", stamp, rot_z(0.0, (0.0, stamp, 0.0)))
    np.testing.assert_allclose(tree.lookup("base", "cam", 5.0)[:3, 3], [5.0, 5.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(tree.lookup("cam", "base", 5.0)[:3, 3], [-5.0, -5.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(tree.lookup("tool", "cam", 5.0)[:3, 3], [0.0, 5.0, 0.0], atol=1e-12)
    with pytest.raises(FutureExtrapolationError, match=r"\[base\].*from frame \[cam\] to frame \[world\]"):
        tree.lookup("world", "cam", 5.0)


def test_cache_time_bounds_the_history():
    tree = TfTree(cache_time_s=2.0)
    for k in range(101):
        tree.set_transform("base", "tool", 10.0 + 0.1 * k, np.eye(4))  # 10 s of samples at 10 Hz
    assert tree.lookup("base", "tool", 18.0) is not None
    with pytest.raises(PastExtrapolationError, match=r"earliest data is at time 18\.0"):
        tree.lookup("base", "tool", 17.9)


def test_time_jump_back_clears_dynamic_history_and_is_reported():
    jumps = []
    tree = TfTree(time_jump_back_s=1.0, on_time_jump=jumps.append)
    tree.set_transform("nerf", "base", 0.0, rot_z(0.0, (0.0, 0.0, 1.0)), static=True)
    for stamp in (100.0, 100.5, 101.0):
        tree.set_transform("base", "tool", stamp, rot_z(0.0, (stamp, 0.0, 0.0)))
    tree.set_transform("base", "tool", 100.2, np.eye(4))  # late by 0.8 s: out of order, not a jump
    assert tree.time_jumps == 0 and jumps == []
    tree.set_transform("base", "tool", 3.0, rot_z(0.0, (3.0, 0.0, 0.0)))  # the bag looped
    assert tree.time_jumps == 1
    assert jumps == [TimeJump("tool", 3.0, 101.0)]
    with pytest.raises(FutureExtrapolationError):  # the old history is gone
        tree.lookup("base", "tool", 100.5)
    np.testing.assert_allclose(tree.lookup("nerf", "tool", 3.0)[:3, 3], [3.0, 0.0, 1.0])  # static survived


def test_parent_changes_are_recorded_and_not_interpolated_across():
    tree = TfTree()
    tree.set_transform("tool0", "cam", 1.0, rot_z(0.0, (1.0, 0.0, 0.0)))
    tree.set_transform("nerf", "cam", 2.0, rot_z(0.0, (5.0, 0.0, 0.0)))  # a second publisher hijacks cam
    tree.set_transform("nerf", "tool0", 0.0, np.eye(4), static=True)
    assert tree.parents_seen("cam") == {"tool0", "nerf"}
    assert tree.multi_parent_frames() == {"cam"}
    assert tree.parent("cam", 1.5) == "tool0" and tree.parent("cam", 2.0) == "nerf"
    # Between the two samples the older one holds, as tf2 (no interpolation across a parent change).
    np.testing.assert_allclose(tree.lookup("nerf", "cam", 1.5)[:3, 3], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(tree.lookup("nerf", "cam", 2.0)[:3, 3], [5.0, 0.0, 0.0])
    assert tree.parents_seen("tool0") == {"nerf"} and tree.parents_seen("nerf") == set()


def test_bad_transforms_are_rejected():
    tree = TfTree()
    nan = np.eye(4)
    nan[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tree.set_transform("base", "tool", 1.0, nan)
    shear = np.eye(4)
    shear[0, 1] = 0.1
    with pytest.raises(ValueError, match="not a rigid transform"):
        tree.set_transform("base", "tool", 1.0, shear)
    with pytest.raises(ValueError, match="not a rigid transform"):
        tree.set_transform("base", "tool", 1.0, np.diag([1.0, 1.0, -1.0, 1.0]))  # a mirror
    with pytest.raises(ValueError, match="norm"):
        tree.set_transform_quat("base", "tool", 1.0, (0, 0, 0), (0, 0, 0, 0.9))
    with pytest.raises(ValueError, match="its own parent"):
        tree.set_transform("tool", "tool", 1.0, np.eye(4))
    with pytest.raises(ValueError, match="cannot start with '/'"):
        tree.set_transform("/base", "tool", 1.0, np.eye(4))
    with pytest.raises(ValueError, match="invalid stamp"):
        tree.set_transform("base", "tool", float("nan"), np.eye(4))
    assert tree.frames() == set()  # nothing half-inserted


def test_ten_link_chain_lookup_is_well_under_a_millisecond():
    tree = TfTree()
    frames = ["base_link"] + [f"link{i}" for i in range(10)]
    for k in range(300):  # 3 s of a 100 Hz robot_state_publisher
        for i, (parent, child) in enumerate(zip(frames[:-1], frames[1:])):
            tree.set_transform(parent, child, 100.0 + 0.01 * k, rot_z(0.01 * (k + i), (0.1, 0.0, 0.05)))
    durations = []
    for i in range(300):
        start = time.perf_counter()
        tree.lookup("base_link", "link9", 100.5 + 0.0077 * i)
        durations.append(time.perf_counter() - start)
    assert float(np.median(durations)) < 1e-3, f"median lookup {np.median(durations) * 1e3:.3f} ms"


def test_the_correction_joins_the_robot_tree_where_no_frame_gets_a_second_parent():
    chain = {"shoulder_link": "base_link", "tool0": "shoulder_link", "camera": "tool0"}
    alone = correction_attachment(chain, "base_link", "world")
    assert (alone.frame, alone.nerf_is_child) == ("base_link", False)
    urdf_world = correction_attachment({**chain, "base_link": "world"}, "base_link", "world")
    assert (urdf_world.frame, urdf_world.nerf_is_child) == ("world", True)  # nerf -> world would close a loop
    other_root = correction_attachment({**chain, "base_link": "table", "table": "cell"}, "base_link", "world")
    assert (other_root.frame, other_root.nerf_is_child) == ("cell", False)
    # world_frame somewhere below the robot's root is in the same tree: the edge hangs nerf below it
    inside = correction_attachment({**chain, "base_link": "cell", "world": "cell"}, "base_link", "world")
    assert (inside.frame, inside.nerf_is_child) == ("world", True)
    with pytest.raises(ValueError, match="loop"):
        correction_attachment({**chain, "base_link": "camera"}, "base_link", "world")
    assert tree_root({}, "base_link") == "base_link"
