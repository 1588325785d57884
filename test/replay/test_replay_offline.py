"""Offline replay of short bags written here: the report's numbers against a direct computation, and
bags with missing camera_info, corrupt messages or no ground truth (a partial report, never a crash).
"""
import csv
import json
import math

import numpy as np
import pytest
import torch

from replay_fixtures import OBJECTS_YAML, OracleDetector, write_bag
from inerf_ros import lie
from inerf_ros.initializer import CameraPriorEstimator
from inerf_ros.optim.inerf import OptimizerConfig, PoseOptimizer
from inerf_ros.optim.sampling import SamplingConfig
from inerf_ros.replay import ReplayConfig, initializer_config, replay
from inerf_ros.replay.bag import BagTopics

OPTIMIZER = OptimizerConfig(solver="lm", max_iterations=8, min_iterations=4, covariance_rays=0)
SAMPLING = SamplingConfig(num_rays=128)


@pytest.fixture
def objects_file(tmp_path):
    path = tmp_path / "objects.yaml"
    path.write_text(OBJECTS_YAML)
    return path


def run_replay(bag, report, box_nerf, box_views, objects_file, **config):
    config = ReplayConfig(objects=str(objects_file), overlay_scale=0.25, **config)
    estimator = CameraPriorEstimator(initializer_config(objects_file))
    return replay(bag, report, config, BagTopics(), OPTIMIZER, SAMPLING, progress=False, model=box_nerf,
                  detector=OracleDetector(box_views), estimator=estimator)


def read_rows(report):
    with open(report / "frames.csv") as handle:
        return list(csv.DictReader(handle))


def test_report_numbers_match_a_direct_computation(tmp_path, box_nerf, box_views, objects_file):
    bag = write_bag(tmp_path / "bag", box_views[:3])
    result = run_replay(bag, tmp_path / "report", box_nerf, box_views, objects_file)
    report = tmp_path / "report"
    text = (report / "report.md").read_text()
    for row in ("translation < 5 cm", "rotation < 5 deg", "median iterations to converge"):
        assert f"| {row} |" in text
    assert "| metric | PoseCNN prior + mask region | PoseCNN prior only | iNeRF from perturbed truth |" in text
    for name in ("frames.json", "summary.json", "error_over_time.png", "error_vs_iteration.png",
                 "trajectory_top.png", "estimates.mcap"):
        assert (report / name).is_file(), name

    rows = read_rows(report)
    assert len(rows) == 9 and {r["status"] for r in rows} == {"ok"}
    # The "prior only" column, recomputed here from the same start with the same optimizer.
    estimator = CameraPriorEstimator(initializer_config(objects_file))
    detector = OracleDetector(box_views)
    optimizer = PoseOptimizer(box_nerf, OPTIMIZER, SAMPLING)
    for view, row in zip(box_views[:3], [r for r in rows if r["column"] == "prior"]):
        prior = estimator.estimate(detector.detect(view.rgb, None).objects)
        assert prior.ok
        estimate = optimizer.estimate(view.rgb, view_intrinsics(), prior.nerf_T_cam)
        rot, trans = lie.pose_error(torch.from_numpy(estimate.nerf_T_optical), torch.from_numpy(view.world_T_cam))
        assert float(row["rotation_error_deg"]) == pytest.approx(float(rot), abs=1e-6)
        assert float(row["translation_error_m"]) == pytest.approx(float(trans), abs=1e-7)
        assert int(row["iterations"]) == estimate.iterations
        start_rot, start_trans = lie.pose_error(torch.from_numpy(prior.nerf_T_cam), torch.from_numpy(view.world_T_cam))
        assert float(row["start_rotation_error_deg"]) == pytest.approx(float(start_rot), abs=1e-6)
        assert 1.0 < float(start_rot) < 6.0  # the stand-in's known prior error reached the optimizer

    # The table: fractions and medians of the per-frame rows.
    summary = json.loads((report / "summary.json").read_text())["table"]
    for title, key in (("PoseCNN prior + mask region", "mask"), ("PoseCNN prior only", "prior"),
                       ("iNeRF from perturbed truth", "plain")):
        mine = [r for r in rows if r["column"] == key]
        rot = np.array([float(r["rotation_error_deg"]) for r in mine])
        trans = np.array([float(r["translation_error_m"]) for r in mine])
        assert summary[title]["success_rotation"] == pytest.approx(np.mean(rot < 5.0))
        assert summary[title]["success_translation"] == pytest.approx(np.mean(trans < 0.05))
        assert summary[title]["median_iterations"] == pytest.approx(np.median([int(r["iterations"]) for r in mine]))
        cell = f"{np.mean(trans < 0.05):.2f}"
        assert cell in [c.strip() for c in text.split("| translation < 5 cm |")[1].split("\n")[0].split("|")]
    # The prior columns improve on their start (the box is textured and the prior is close).
    mask = [r for r in rows if r["column"] == "mask"]
    assert all(float(r["rotation_error_deg"]) < float(r["start_rotation_error_deg"]) for r in mask)
    assert result["summaries"]["PoseCNN prior + mask region"]["estimates"] == 3


def view_intrinsics():
    from replay_fixtures import INTRINSICS
    return INTRINSICS


def test_missing_camera_info_gives_a_partial_report(tmp_path, box_nerf, box_views, objects_file):
    bag = write_bag(tmp_path / "bag", box_views[:2], camera_info=False)
    result = run_replay(bag, tmp_path / "report", box_nerf, box_views, objects_file)
    assert any("no camera_info on /camera/camera_info" in note for note in result["notes"])
    rows = read_rows(tmp_path / "report")
    assert len(rows) == 6 and {r["status"] for r in rows} == {"no camera_info"}
    text = (tmp_path / "report" / "report.md").read_text()
    assert "no camera_info" in text and "| frames with an estimate | 0 | 0 | 0 |" in text


def test_corrupt_messages_are_skipped_and_counted(tmp_path, box_nerf, box_views, objects_file):
    bag = write_bag(tmp_path / "bag", box_views[:3], corrupt={1})
    result = run_replay(bag, tmp_path / "report", box_nerf, box_views, objects_file, columns=["mask"])
    rows = read_rows(tmp_path / "report")
    assert [r["status"] for r in rows] == ["ok", "image message does not deserialise", "ok"]
    assert any(note.startswith("corrupt messages on /camera/image_raw: 1") for note in result["notes"])
    summary = result["summaries"]["PoseCNN prior + mask region"]
    assert summary["estimates"] == 2 and summary["frames"] == 3
    # The broken frame (stamped by the bag's log time, so its truth is known) counts as a failure: the
    # success rate is over all three frames, not over the two with an estimate.
    successes = sum(float(r["rotation_error_deg"]) < 5.0 for r in rows if r["status"] == "ok")
    assert successes >= 1
    assert summary["trials"] == 3 and summary["success_rotation"] == pytest.approx(successes / 3)


def test_no_ground_truth_reports_runtime_only(tmp_path, box_nerf, box_views, objects_file):
    bag = write_bag(tmp_path / "bag", box_views[:2], ground_truth=False)
    result = run_replay(bag, tmp_path / "report", box_nerf, box_views, objects_file)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "No ground truth: runtime figures only" in text
    assert "translation < 5 cm" not in text and "| median iterations to converge |" in text
    assert "iNeRF from perturbed truth" not in text  # it starts from the truth, so it cannot run
    assert any("no ground truth (TF world -> camera_optical_gt not in the bag)" in n for n in result["notes"])
    rows = read_rows(tmp_path / "report")
    assert {r["status"] for r in rows} == {"ok"} and all(math.isnan(float(r["rotation_error_deg"])) for r in rows)


def test_ground_truth_from_a_pose_topic_is_interpolated(tmp_path):
    """Bags from elsewhere: ground truth between two samples is interpolated (translation linearly)."""
    from inerf_ros.replay.bag import PoseTrack

    track = PoseTrack()
    a, b = np.eye(4), np.eye(4)
    b[:3, 3] = [1.0, 0.0, 0.0]
    b[:3, :3] = lie.axis_angle_rotation(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
                                        torch.tensor(math.radians(20.0), dtype=torch.float64)).numpy()
    track.add(10.0, a)
    track.add(10.1, b)
    middle = track.at(10.025, tolerance_s=0.005, max_gap_s=0.2)
    assert np.allclose(middle[:3, 3], [0.25, 0.0, 0.0])
    rot, _ = lie.pose_error(torch.from_numpy(middle), torch.from_numpy(a))
    assert float(rot) == pytest.approx(5.0, abs=1e-6)
    assert track.at(10.3, 0.005, 0.2) is None and track.at(10.1004, 0.005, 0.2) is b


def test_missing_model_names_the_command(tmp_path, box_views, capsys):
    from inerf_ros import cli

    bag = write_bag(tmp_path / "bag", box_views[:1])
    code = cli.main(["replay", str(bag), "--report", str(tmp_path / "r"), "--nerf-model", str(tmp_path / "none"),
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "nerf model missing" in err and "inerf-ros train-nerf" in err
