"""On a real rendered scene (make-scene --quick): training targets, Hough voting and the camera prior."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from inerf_ros.posecnn.data import load_split, vertex_targets
from inerf_ros.posecnn.evaluate import add_s_distance, auc
from inerf_ros.posecnn.hough import hough_vote


@pytest.fixture(scope="module")
def quick_scene(tmp_path_factory):
    # A separate process: the renderer picks its OpenGL back end when mujoco is first imported.
    out = tmp_path_factory.mktemp("scene") / "quick"
    done = subprocess.run([sys.executable, "-m", "inerf_ros.cli", "make-scene", "--quick", "--out", str(out),
                           "--splits", "posecnn_train", "posecnn_test", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_vertex_targets_vote_for_the_projected_centres(quick_scene):
    data = load_split(quick_scene, "posecnn_train", 80, 60, min_pixels=8, progress=False)
    assert data.objects.shape[0] > 0
    frames = torch.arange(data.rgb.shape[0])
    targets = vertex_targets(data, frames, reference_focal=100.0)
    for row in data.objects:
        frame, instance_id = int(row[0]), int(row[1])
        vs, us = torch.nonzero(data.instance[frame] == instance_id, as_tuple=True)
        vote = hough_vote(torch.stack([us, vs], 1), targets[frame, :2, vs, us].T, 80, 60, stride=4, margin=40)
        np.testing.assert_allclose(vote.centre.numpy(), row[3:5].numpy(), atol=1e-3)
        depth = targets[frame, 2, vs, us]
        np.testing.assert_allclose(depth.numpy(), float(row[5]) * 100.0 / float(data.K[frame, 1, 1]), rtol=1e-5)


def test_prior_from_ground_truth_objects_is_exact(quick_scene):
    from inerf_ros.initializer_eval import PriorEvalConfig, evaluate

    for mode in ("full", "distance_only"):
        report = evaluate(PriorEvalConfig(scene=str(quick_scene), detections="ground_truth", mode=mode,
                                          hint_rotation_deg=0.0, hint_translation_m=0.0), progress=False)
        assert report["frames"] == 2 and report["with_prior"] == 2
        assert report["rotation_deg"]["p90"] < 1e-4 and report["translation_m"]["p90"] < 1e-6, report


def test_add_s_and_auc():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 3)) * 0.05
    pose = np.eye(4)
    pose[:3, 3] = [0.0, 0.0, 0.8]
    shifted = pose.copy()
    shifted[0, 3] += 0.02
    assert add_s_distance(points, shifted, pose, symmetric=False) == pytest.approx(0.02)
    assert add_s_distance(points, pose, pose, symmetric=True) == pytest.approx(0.0, abs=1e-7)
    assert add_s_distance(points, shifted, pose, symmetric=True) < 0.02
    assert auc([0.0, 0.0]) == pytest.approx(1.0)
    assert auc([0.05]) == pytest.approx(0.5, abs=1e-3)
    assert auc([float("inf")]) == 0.0
