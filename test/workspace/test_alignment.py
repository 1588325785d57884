"""The similarity between SfM and arm camera centres: exact on clean data, robust to outliers, refuses a line,
and the joint hand-eye fit removes a believed hand-eye offset's bias.
"""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from inerf_ros.frames import look_at
from inerf_ros.workspace.alignment import (AlignmentConfig, DegenerateCaptureError, fit_with_hand_eye,
                                           robust_similarity, rotation_residuals_deg, umeyama)


def _similarity(seed: int):
    rng = np.random.default_rng(seed)
    return float(rng.uniform(0.2, 3.0)), Rotation.random(random_state=seed).as_matrix(), rng.normal(size=3)


def _arc(n: int, radius: float = 0.6, height: float = 0.4) -> np.ndarray:
    """Camera centres on 3/4 of a circle with a little height change (base frame, metres)."""
    angles = np.linspace(0.0, 1.5 * np.pi, n)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles), height + 0.1 * np.sin(3 * angles)], axis=1)


def test_umeyama_recovers_a_known_similarity_exactly():
    scale, rotation, translation = _similarity(1)
    src = np.random.default_rng(2).normal(size=(20, 3))
    s, r, t = umeyama(src, scale * src @ rotation.T + translation)
    assert s == pytest.approx(scale, rel=1e-12)
    assert np.allclose(r, rotation, atol=1e-12) and np.allclose(t, translation, atol=1e-12)


def test_robust_similarity_ignores_outliers_and_reports_them():
    # dst: metres in the base frame; src: the same centres in an SfM frame of 1/2.5 m per unit.
    dst = _arc(40)
    scale, rotation, translation = 2.5, Rotation.from_euler("xyz", [20, -40, 75], degrees=True).as_matrix(), \
        np.array([0.3, -0.2, 1.0])
    src = (dst - translation) @ rotation / scale
    rng = np.random.default_rng(3)
    noisy = dst + rng.normal(scale=0.001, size=dst.shape)
    bad = [3, 11, 12, 30]
    noisy[bad] += rng.normal(scale=0.2, size=(len(bad), 3))  # stale TF / misregistered frames
    fit = robust_similarity(src, noisy, AlignmentConfig())
    assert fit.scale == pytest.approx(scale, rel=2e-3)
    assert np.degrees(np.arccos((np.trace(fit.rotation.T @ rotation) - 1) / 2)) < 0.2
    assert np.linalg.norm(fit.translation - translation) < 0.003
    assert not fit.inliers[bad].any() and fit.inliers.sum() == 40 - len(bad)
    assert fit.rms < 0.003 and fit.residuals[bad].min() > 0.05
    # The plain least-squares fit over the same points is pulled away by the outliers.
    s_plain, _, _ = umeyama(src, noisy)
    assert abs(s_plain / scale - 1) > 5 * abs(fit.scale / scale - 1)


def test_centres_on_a_line_are_refused_naming_what_to_record():
    dst = np.stack([np.linspace(0, 1, 20), np.zeros(20), np.full(20, 0.5)], axis=1)
    dst += np.random.default_rng(0).normal(scale=1e-3, size=dst.shape)
    with pytest.raises(DegenerateCaptureError, match="lie on a line.*along a curve"):
        robust_similarity(dst * 3.0, dst)
    with pytest.raises(DegenerateCaptureError, match="need 6"):
        robust_similarity(_arc(4), _arc(4))
    with pytest.raises(DegenerateCaptureError, match="span only"):
        robust_similarity(_arc(10) * 1e-3, _arc(10) * 1e-3)


def _look_at_centre(centres: np.ndarray) -> np.ndarray:
    """Optical cameras at ``centres`` looking at the origin (z forward, y down-ish)."""
    return np.stack([look_at(c, np.zeros(3)) for c in centres])


def test_hand_eye_fit_removes_the_bias_of_a_wrong_believed_hand_eye():
    # A wrist camera circling the table: true flange poses, the true camera 7 cm below the flange, the
    # believed hand-eye 1 cm off. Fitting the centres alone biases the scale by ~1 %; the joint fit does not.
    # The camera approaches while it circles (radius 1.1 -> 0.55 m, as the demo arm does): on a circle of
    # one radius a constant sideways offset of the camera is the same as turning the circle, and a constant
    # radial offset the same as scaling it; radii that change tell them apart.
    spiral = _arc(36) * np.linspace(1.8, 0.9, 36)[:, None]
    true_cams = _look_at_centre(spiral)
    tool_T_cam = np.eye(4)
    tool_T_cam[:3, 3] = [0.0, -0.07, 0.035]
    base_T_tool = np.einsum("nij,jk->nik", true_cams, np.linalg.inv(tool_T_cam))
    believed = tool_T_cam.copy()
    believed[:3, 3] += [0.006, 0.006, -0.005]
    believed_cams = np.einsum("nij,jk->nik", base_T_tool, believed)
    scale = 0.37  # metres per SfM unit
    src = true_cams[:, :3, 3] / scale
    centres_only = robust_similarity(src, believed_cams[:, :3, 3])
    assert abs(centres_only.scale / scale - 1) > 0.005
    fit = fit_with_hand_eye(src, base_T_tool, believed, centres_only)
    assert fit.similarity.scale == pytest.approx(scale, rel=1e-4)
    assert np.allclose(fit.similarity.rotation, np.eye(3), atol=1e-4)
    assert np.linalg.norm(fit.similarity.translation) < 1e-3
    assert np.allclose(fit.tool_t_cam, tool_T_cam[:3, 3], atol=2e-3)
    assert fit.change_m == pytest.approx(np.linalg.norm([0.006, 0.006, -0.005]), abs=2e-3)
    nerf_T_cams = true_cams.copy()
    nerf_T_cams[:, :3, 3] /= scale
    assert np.allclose(rotation_residuals_deg(fit.similarity, nerf_T_cams, true_cams), 0.0, atol=0.02)


def test_bad_inputs_raise_one_clear_error():
    with pytest.raises(ValueError, match="NaN"):
        robust_similarity(np.full((8, 3), np.nan), _arc(8))
    with pytest.raises(ValueError, match="shape"):
        umeyama(np.zeros((5, 2)), np.zeros((5, 2)))
