"""Scoring a robot replay through TF: exact errors on a tree built in the test."""
import math

import numpy as np
import pytest

from inerf_ros.replay.tf_score import ArmFrames, score_frames, summarize
from inerf_ros.tf_tree import TfTree

NAMES = ArmFrames()
T0 = 1.7e9


def _pose(yaw_deg=0.0, x=0.0, y=0.0, z=0.0):
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    pose[:3, 3] = [x, y, z]
    return pose


def _tree(correction_error=np.eye(4)):
    """An arm at world_T_base_gt whose camera circles; the believed chain is exact, the correction
    (published from 1 s on) is the truth times ``correction_error``.
    """
    world_T_base_gt = _pose(30.0, 0.5, -0.2, 0.7)
    tree = TfTree(cache_time_s=1e9)
    tree.set_transform(NAMES.world, NAMES.nerf, T0, np.eye(4), static=True)
    tree.set_transform(NAMES.world, NAMES.base_gt, T0, world_T_base_gt, static=True)
    truth = []
    for k in range(31):  # 3 s at 10 Hz
        t = T0 + 0.1 * k  # stamps as a bag has them (0 means "latest" to tf2)
        base_T_cam = _pose(10.0 * k, 0.4 * math.cos(k), 0.4 * math.sin(k), 0.3)
        tree.set_transform(NAMES.base, NAMES.camera, t, base_T_cam)
        truth.append((t, world_T_base_gt @ base_T_cam))
        if k >= 10:
            tree.set_transform(NAMES.nerf, NAMES.base, t, world_T_base_gt @ correction_error)
    return tree, truth, world_T_base_gt


def test_exact_correction_scores_zero_and_frames_before_the_first_localization_are_outside_the_window():
    tree, truth, world_T_base_gt = _tree()
    believed = world_T_base_gt @ _pose(1.0, 0.03)  # 3 cm and 1 deg off
    scores = score_frames(tree, truth, NAMES, np.eye(4), believed)
    assert [s.rotation_error_deg is None for s in scores[:10]] == [True] * 10  # no correction on TF before 1 s
    assert max(s.translation_error_m for s in scores[10:]) < 1e-12
    summary = summarize(scores, tree, NAMES, np.eye(4), believed, T0 + 1.0, estimates=3, latencies_s=[0.2, 0.3, 0.4])
    assert summary["frames_total"] == 31 and summary["frames_scored"] == 21
    assert summary["frac_within_2cm_2deg"] == 1.0 and summary["p95_translation_cm"] < 1e-9
    assert summary["base_error_cm"] < 1e-9 and summary["median_latency_s"] == pytest.approx(0.3)
    assert summary["kinematics_base_error_deg"] == pytest.approx(1.0)
    assert 2.2 <= summary["kinematics_p95_translation_cm"] <= 3.8  # 3 cm, plus or minus 1 deg on a 0.5 m lever
    assert summary["kinematics_frac_within_2cm_2deg"] == 0.0 and summary["tf_single_parent"]


def test_a_known_correction_error_shows_and_a_second_parent_is_caught():
    tree, truth, _ = _tree(correction_error=_pose(3.0))  # 3 deg about the base's z axis
    scores = score_frames(tree, truth, NAMES, np.eye(4), None)
    assert all(s.rotation_error_deg == pytest.approx(3.0) for s in scores[10:])
    tree.set_transform(NAMES.nerf, NAMES.camera, T0 + 3.0, np.eye(4))  # someone publishes nerf -> camera too
    summary = summarize(scores, tree, NAMES, np.eye(4), None, T0 + 1.0, estimates=1, latencies_s=[])
    assert summary["frac_within_5cm_5deg"] == 1.0 and summary["frac_within_2cm_2deg"] == 0.0
    assert not summary["tf_single_parent"] and summary["tf_frames_with_two_parents"] == [NAMES.camera]
    assert math.isnan(summary["kinematics_p95_rotation_deg"])  # no believed placement: no baseline
