"""Silhouette refinement of detected object poses: exact on rendered masks, occlusion-aware, safe."""
import math

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from inerf_ros.posecnn.refine import SilhouetteRefineConfig, SilhouetteRefiner, support_points

K = np.array([[300.0, 0.0, 159.5], [0.0, 300.0, 119.5], [0.0, 0.0, 1.0]])
WIDTH, HEIGHT = 320, 240
CLASS = 1


def _box_surface(size=(0.06, 0.16, 0.21), n=500, seed=0) -> np.ndarray:
    """Points on the surface of a box centred at the origin (like a checkpoint's model points)."""
    rng = np.random.default_rng(seed)
    half = np.asarray(size) / 2
    points = rng.uniform(-half, half, size=(n, 3))
    axis = rng.integers(0, 3, n)
    points[np.arange(n), axis] = np.where(rng.random(n) < 0.5, -half[axis], half[axis])
    return np.concatenate([points, np.array(np.meshgrid(*[[-h, h] for h in half])).reshape(3, -1).T])


def _pose(rotvec, translation) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    pose[:3, 3] = translation
    return pose


def _mask(points: np.ndarray, cam_T_obj: np.ndarray, samples: int = 4) -> np.ndarray:
    """Each pixel's coverage by the silhouette of ``points`` posed by ``cam_T_obj`` (a perfect soft mask:
    ``samples`` x ``samples`` points per pixel tested against the hull's edges).
    """
    cam = points @ cam_T_obj[:3, :3].T + cam_T_obj[:3, 3]
    uv = (cam @ K.T)[:, :2] / cam[:, 2:]
    hull = cv2.convexHull(uv.astype(np.float32))[:, 0].astype(np.float64)
    (u0, v0), (u1, v1) = np.floor(hull.min(0)).astype(int) - 1, np.ceil(hull.max(0)).astype(int) + 2
    offsets = (np.arange(samples) + 0.5) / samples - 0.5
    u = (np.arange(u0, u1)[None, :, None, None] + offsets[None, None, None, :])[None]   # (1, 1, w, 1, s)
    v = (np.arange(v0, v1)[:, None, None, None] + offsets[None, None, :, None])[None]   # (1, h, 1, s, 1)
    corner, edge = hull[:, None, None, None, None], (np.roll(hull, -1, axis=0) - hull)[:, None, None, None, None]
    cross = edge[..., 0] * (v - corner[..., 1]) - edge[..., 1] * (u - corner[..., 0])     # (edges, h, w, s, s)
    inside = np.all(cross >= 0, axis=0) | np.all(cross <= 0, axis=0)
    coverage = np.zeros((HEIGHT, WIDTH))
    coverage[v0:v1, u0:u1] = inside.mean(axis=(2, 3))
    return coverage


def _inputs(mask: np.ndarray, occluder: np.ndarray | None = None):
    labels = torch.from_numpy((mask >= 0.5).astype(np.int64) * CLASS)
    probs = torch.zeros(3, HEIGHT, WIDTH)
    probs[CLASS] = torch.from_numpy(mask.astype(np.float32))
    if occluder is not None:   # another object in front: its pixels are labelled 2
        labels[torch.from_numpy(occluder)] = 2
        probs[CLASS][torch.from_numpy(occluder)] = 0.0
    probs[0] = 1 - probs[1:].sum(0)
    return probs, labels


def _errors(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    angle = math.degrees(Rotation.from_matrix(a[:3, :3].T @ b[:3, :3]).magnitude())
    return angle, float(np.linalg.norm(a[:3, 3] - b[:3, 3]))


TRUTH = _pose([0.4, -0.9, 0.3], [0.05, -0.02, 0.8])
START = TRUTH.copy()   # ~12 deg about the object's centre; 1.5 / 1 / 6 cm off
START[:3, :3] = Rotation.from_rotvec([0.12, 0.15, -0.1]).as_matrix() @ TRUTH[:3, :3]
START[:3, 3] += [0.015, -0.01, 0.06]


@pytest.fixture(scope="module")
def points():
    return _box_surface()


def test_support_points_keep_the_silhouette_with_few_points(points):
    support = support_points(points)
    assert len(support) < len(points) / 4
    mask_all, mask_support = _mask(points, TRUTH), _mask(support, TRUTH)
    assert np.abs(mask_all - mask_support).sum() <= 0.01 * mask_all.sum()


def test_refinement_recovers_a_perturbed_pose_from_its_mask(points):
    assert _errors(START, TRUTH)[0] > 10
    probs, labels = _inputs(_mask(points, TRUTH))
    fit = SilhouetteRefiner({CLASS: points}).refine([CLASS], [START], probs, labels, K)[0]
    rotation, translation = _errors(fit.cam_T_obj, TRUTH)
    assert fit.kept and fit.iou_after > fit.iou_before + 0.1
    assert rotation < 1.0 and translation < 0.005   # the window is averaged over 2 x 2 blocks here
    assert np.allclose(fit.cam_T_obj[:3, :3] @ fit.cam_T_obj[:3, :3].T, np.eye(3), atol=1e-9)


def test_pixels_of_an_occluding_object_are_no_evidence(points):
    """A band of another class across the object: ignoring those pixels keeps the fit right; taking
    them as background would shrink and shift the silhouette.
    """
    mask = _mask(points, TRUTH)
    occluder = np.zeros_like(mask, dtype=bool)
    columns = np.nonzero((mask > 0).any(0))[0]
    occluder[:, columns[len(columns) // 3]: columns[len(columns) // 3] + 12] = True
    probs, labels = _inputs(mask, occluder)
    fit = SilhouetteRefiner({CLASS: points}).refine([CLASS], [START], probs, labels, K)[0]
    rotation, translation = _errors(fit.cam_T_obj, TRUTH)
    assert rotation < 2.0 and translation < 0.01


def test_small_masks_and_unknown_classes_come_back_unchanged(points):
    probs, labels = _inputs(_mask(points, TRUTH))
    refiner = SilhouetteRefiner({CLASS: points}, SilhouetteRefineConfig(silhouette_min_pixels=10**6))
    fit = refiner.refine([CLASS], [START], probs, labels, K)[0]
    assert not fit.kept and np.array_equal(fit.cam_T_obj, START)
    fit = SilhouetteRefiner({2: points}).refine([CLASS], [START], probs, labels, K)[0]
    assert not fit.kept and np.array_equal(fit.cam_T_obj, START)


def test_at_full_resolution_the_fit_is_exact(points):
    probs, labels = _inputs(_mask(points, TRUTH))
    config = SilhouetteRefineConfig(silhouette_max_window_pixels=10**6)
    fit = SilhouetteRefiner({CLASS: points}, config).refine([CLASS], [START], probs, labels, K)[0]
    rotation, translation = _errors(fit.cam_T_obj, TRUTH)
    assert rotation < 0.1 and translation < 0.0005


def test_a_fit_that_runs_far_away_is_not_kept(points):
    """A mask the model cannot explain (here a far smaller object's) pulls the fit far along the ray."""
    small = _box_surface(size=(0.02, 0.05, 0.07))
    probs, labels = _inputs(_mask(small, TRUTH))
    fit = SilhouetteRefiner({CLASS: points}).refine([CLASS], [TRUTH], probs, labels, K)[0]
    assert not fit.kept and np.array_equal(fit.cam_T_obj, TRUTH)
    allowed = SilhouetteRefiner({CLASS: points}, SilhouetteRefineConfig(silhouette_max_shift=10.0))
    assert allowed.refine([CLASS], [TRUTH], probs, labels, K)[0].kept
