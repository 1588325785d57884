"""Camera prior from object poses: exact on ground truth (all modes), gates, robust fusion."""
import math

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from inerf_ros.frames import look_at
from inerf_ros import config as config_tools
from inerf_ros.initializer import CameraPriorEstimator, InitializerConfig, load_config, rotation_angle_deg
from inerf_ros.posecnn.types import Detection

METRES_PER_UNIT = 0.25  # one NeRF unit is 25 cm: catches a missing unit conversion


def _pose(rotvec, translation):
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    pose[:3, 3] = translation
    return pose


def _entry(name, nerf_T_obj, position_only=False):
    values = list(nerf_T_obj[:3, 3])
    if not position_only:
        values += list(Rotation.from_matrix(nerf_T_obj[:3, :3]).as_quat())
    return name + " " + " ".join(repr(float(v)) for v in values)


def _looking_at_origin(centre) -> np.ndarray:
    """nerf_T_cam of a ROS optical camera at ``centre`` whose z axis points at the origin (z up, no roll)."""
    return look_at(centre, np.zeros(3))


@pytest.fixture
def world():
    rng = np.random.default_rng(3)
    nerf_T_objects = {name: _pose(rng.normal(size=3), rng.uniform(-1, 1, size=3))
                      for name in ("cracker_box", "mustard_bottle", "tuna_can")}
    # A camera about 4 units (1 m) away, looking at the objects (optical z towards the origin).
    centre = np.array([0.5, -3.5, 2.0])
    nerf_T_cam = _looking_at_origin(centre)
    nerf_T_cam = nerf_T_cam @ _pose([0.0, 0.0, 0.3], [0.0, 0.0, 0.0])  # some roll
    return nerf_T_objects, nerf_T_cam


def _detections(nerf_T_objects, nerf_T_cam, score=0.9):
    out = []
    for k, (name, nerf_T_obj) in enumerate(nerf_T_objects.items()):
        cam_T_obj = np.linalg.inv(nerf_T_cam) @ nerf_T_obj
        cam_T_obj[:3, 3] *= METRES_PER_UNIT  # the detector speaks metres
        out.append(Detection(k + 1, name, score, cam_T_obj, 0.8))
    return out


def test_full_mode_reproduces_ground_truth(world):
    nerf_T_objects, nerf_T_cam = world
    config = InitializerConfig(metres_per_unit=METRES_PER_UNIT,
                               object_poses=[_entry(n, p) for n, p in nerf_T_objects.items()])
    detections = _detections(nerf_T_objects, nerf_T_cam)
    assert all(d.cam_T_obj[2, 3] > 0 for d in detections)
    estimator = CameraPriorEstimator(config)
    for one in detections:  # every single detection alone
        prior = estimator.estimate([one])
        assert prior.status == "ok", prior.reason
        np.testing.assert_allclose(prior.nerf_T_cam, nerf_T_cam, atol=1e-9)
        np.testing.assert_allclose(np.diag(prior.covariance)[:3], (0.05 / METRES_PER_UNIT) ** 2)
    prior = estimator.estimate(detections)
    assert prior.status == "ok" and prior.used == [0, 1, 2] and not prior.rejected
    np.testing.assert_allclose(prior.nerf_T_cam, nerf_T_cam, atol=1e-9)
    # No spread: the covariance is the floor.
    floor = [(0.01 / METRES_PER_UNIT) ** 2] * 3 + [math.radians(1.0) ** 2] * 3
    np.testing.assert_allclose(prior.covariance, np.diag(floor), atol=1e-12)


def test_distance_only_reproduces_ground_truth(world):
    nerf_T_objects, nerf_T_cam = world
    config = InitializerConfig(mode="distance_only", metres_per_unit=METRES_PER_UNIT,
                               object_poses=[_entry(n, p, position_only=True) for n, p in nerf_T_objects.items()])
    estimator = CameraPriorEstimator(config)
    detections = _detections(nerf_T_objects, nerf_T_cam)
    # Detected orientations are not used in this mode: scramble them.
    for d in detections:
        d.cam_T_obj[:3, :3] = Rotation.random(random_state=1).as_matrix()
    for one, p_nerf in zip(detections, [p[:3, 3] for p in nerf_T_objects.values()]):
        # A hint with the right orientation whose centre is off along the object's ray (only the
        # distance is unknown, the seed's assumption 2): the prior is exact.
        hint = nerf_T_cam.copy()
        hint[:3, 3] = p_nerf + 1.7 * (nerf_T_cam[:3, 3] - p_nerf)
        prior = estimator.estimate([one], nerf_T_cam_hint=hint)
        assert prior.status == "ok", prior.reason
        np.testing.assert_allclose(prior.nerf_T_cam, nerf_T_cam, atol=1e-9)
    # The hint itself is exact: so is the fused prior.
    prior = estimator.estimate(detections, nerf_T_cam_hint=nerf_T_cam)
    np.testing.assert_allclose(prior.nerf_T_cam, nerf_T_cam, atol=1e-9)
    # A wrong hint orientation is corrected so that the object appears at the detected bearing.
    hint = nerf_T_cam.copy()
    hint[:3, :3] = Rotation.from_rotvec([0.2, -0.1, 0.05]).as_matrix() @ hint[:3, :3]
    prior = estimator.estimate(detections[:1], nerf_T_cam_hint=hint)
    p_cam = np.linalg.inv(prior.nerf_T_cam) @ np.append(nerf_T_objects["cracker_box"][:3, 3], 1.0)
    np.testing.assert_allclose(p_cam[:3] * METRES_PER_UNIT, detections[0].cam_T_obj[:3, 3], atol=1e-9)
    # Alignment of the detected positions with the known ones needs no right hint: a 25 deg wrong
    # hint only gates outliers, the fused pose is still exact.
    aligning = CameraPriorEstimator(InitializerConfig(
        mode="distance_only", fusion="alignment", metres_per_unit=METRES_PER_UNIT, inlier_rotation_deg=60,
        inlier_translation_m=1.0, object_poses=config.object_poses))
    hint = nerf_T_cam.copy()
    hint[:3, :3] = Rotation.from_rotvec([0.3, 0.25, -0.2]).as_matrix() @ hint[:3, :3]
    prior = aligning.estimate(detections, nerf_T_cam_hint=hint)
    assert prior.status == "ok" and "alignment" in prior.reason
    np.testing.assert_allclose(prior.nerf_T_cam, nerf_T_cam, atol=1e-9)
    assert aligning.estimate(detections[:2], nerf_T_cam_hint=hint).status == "no_prior"
    # A detection 20 cm off is an outlier of the alignment (RANSAC over triplets): still exact.
    moved = Detection(9, "cracker_box", 1.0, detections[0].cam_T_obj.copy(), 0.9)
    moved.cam_T_obj[:3, 3] += [0.2, 0.0, 0.0]
    prior = aligning.estimate(detections[1:] + [moved] + [detections[0]], nerf_T_cam_hint=nerf_T_cam)
    assert prior.used == [0, 1, 3] and "outlier" in prior.rejected[2]
    np.testing.assert_allclose(prior.nerf_T_cam, nerf_T_cam, atol=1e-9)
    # Without a hint there is no prior, and the reason says why.
    prior = estimator.estimate(detections)
    assert prior.status == "no_prior" and "camera hint" in prior.reason


def test_static_hint_from_config(world):
    nerf_T_objects, nerf_T_cam = world
    hint = list(nerf_T_cam[:3, 3]) + list(Rotation.from_matrix(nerf_T_cam[:3, :3]).as_quat())
    config = config_tools.from_dict(InitializerConfig, {
        "mode": "distance_only", "metres_per_unit": METRES_PER_UNIT, "camera_hint": hint,
        "object_poses": {n: list(p[:3, 3]) for n, p in nerf_T_objects.items()}})
    prior = CameraPriorEstimator(config).estimate(_detections(nerf_T_objects, nerf_T_cam))
    np.testing.assert_allclose(prior.nerf_T_cam, nerf_T_cam, atol=1e-9)


def test_nan_and_gated_detections_are_rejected(world):
    nerf_T_objects, nerf_T_cam = world
    config = InitializerConfig(metres_per_unit=METRES_PER_UNIT, min_score=0.5, min_visible_fraction=0.3,
                               object_poses=[_entry(n, p) for n, p in nerf_T_objects.items()])
    estimator = CameraPriorEstimator(config)
    good = _detections(nerf_T_objects, nerf_T_cam)
    nan = Detection(9, "cracker_box", 0.99, np.full((4, 4), np.nan), 1.0)
    prior = estimator.estimate([nan])
    assert prior.status == "no_prior" and "NaN" in prior.reason and prior.nerf_T_cam is None
    low_score = Detection(1, "tuna_can", 0.2, good[2].cam_T_obj, 1.0)
    hidden = Detection(1, "tuna_can", 0.9, good[2].cam_T_obj, 0.1)
    unknown = Detection(5, "drill", 0.9, good[0].cam_T_obj, 1.0)
    behind = Detection(1, "tuna_can", 0.9, good[2].cam_T_obj @ np.diag([1, 1, 1, 1.0]), None)
    behind.cam_T_obj = behind.cam_T_obj.copy()
    behind.cam_T_obj[2, 3] = -1.0
    prior = estimator.estimate([nan, low_score, good[1], hidden, unknown, behind])
    assert prior.status == "ok" and prior.used == [2]
    assert set(prior.rejected) == {0, 1, 3, 4, 5}
    assert "min_score" in prior.rejected[1] and "visible" in prior.rejected[3]
    assert "no known pose" in prior.rejected[4] and "behind" in prior.rejected[5]
    np.testing.assert_allclose(prior.nerf_T_cam, nerf_T_cam, atol=1e-9)
    assert estimator.estimate([]).status == "no_prior"


def test_fusion_rejects_an_outlier_and_reports_the_spread(world):
    nerf_T_objects, nerf_T_cam = world
    rng = np.random.default_rng(0)
    names = [f"obj{k}" for k in range(6)]
    nerf_T_objects = {n: _pose(rng.normal(size=3), rng.uniform(-1, 1, size=3)) for n in names}
    detections = _detections(nerf_T_objects, nerf_T_cam)
    noise_deg, noise_m = 2.0, 0.01
    for d in detections[:5]:  # small noise on the detected poses, in the camera frame
        d.cam_T_obj = _pose(np.radians(noise_deg) * rng.normal(size=3), noise_m * rng.normal(size=3)) @ d.cam_T_obj
    # The outlier has the highest score: a score-weighted mean alone would follow it.
    detections[5].cam_T_obj = _pose([0.0, 1.2, 0.0], [0.1, 0.0, 0.3]) @ detections[5].cam_T_obj
    detections[5].score = 1.0
    config = InitializerConfig(metres_per_unit=METRES_PER_UNIT, fusion="average",
                               object_poses=[_entry(n, p) for n, p in nerf_T_objects.items()])
    prior = CameraPriorEstimator(config).estimate(detections)
    assert prior.status == "ok"
    assert prior.used == [0, 1, 2, 3, 4] and list(prior.rejected) == [5] and "outlier" in prior.rejected[5]
    rot_err = rotation_angle_deg(prior.nerf_T_cam[:3, :3], nerf_T_cam[:3, :3])
    trans_err_m = np.linalg.norm(prior.nerf_T_cam[:3, 3] - nerf_T_cam[:3, 3]) * METRES_PER_UNIT
    assert rot_err < 3.0 and trans_err_m < 0.06
    # The covariance comes from the spread: larger than the floor, symmetric, positive definite.
    cov = prior.covariance
    np.testing.assert_allclose(cov, cov.T, atol=1e-15)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    assert np.all(np.diag(cov)[3:] > math.radians(1.0) ** 2 * 1.5)
    # Camera-centre spread: rotation noise of 2 deg at ~1 m dominates (~3.5 cm per axis).
    assert 0.005 < math.sqrt(np.diag(cov)[:3].mean()) * METRES_PER_UNIT < 0.1


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="object_poses entry"):
        CameraPriorEstimator(InitializerConfig(object_poses=["mug 1 2"]))
    with pytest.raises(ValueError, match="mode='both' is not one of"):
        CameraPriorEstimator(InitializerConfig(mode="both"))
    with pytest.raises(ValueError, match="listed twice"):
        CameraPriorEstimator(InitializerConfig(object_poses=["mug 0 0 0", "mug 1 1 1"]))
    path = tmp_path / "init.yaml"
    path.write_text(yaml.safe_dump({"initializer": {"mode": "full", "object_poses": {"mug": [0, 0, "x"]}}}))
    with pytest.raises(ValueError, match="init.yaml"):
        load_config(path)


def test_shipped_config_loads():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "config" / "initializer.yaml"
    config = load_config(path)
    assert config.nerf_T_objects(), "config/initializer.yaml lists no objects"


def test_symmetric_objects_give_positions_only(world):
    nerf_T_objects, nerf_T_cam = world
    entries = [_entry(n, p) for n, p in nerf_T_objects.items()]
    detections = _detections(nerf_T_objects, nerf_T_cam)
    # The tuna can is symmetric about its z axis: its detected rotation about z is arbitrary.
    detections[2].cam_T_obj = detections[2].cam_T_obj @ _pose([0.0, 0.0, 2.0], [0.0, 0.0, 0.0])
    for fusion, used in (("average", [0, 1]), ("alignment", [0, 1, 2])):
        config = InitializerConfig(metres_per_unit=METRES_PER_UNIT, object_poses=entries, fusion=fusion,
                                   symmetric_classes=["tuna_can"])
        prior = CameraPriorEstimator(config).estimate(detections)
        assert prior.status == "ok" and prior.used == used, (fusion, prior)
        np.testing.assert_allclose(prior.nerf_T_cam, nerf_T_cam, atol=1e-9)
    # Without the symmetry declared, the scrambled can is an outlier.
    prior = CameraPriorEstimator(InitializerConfig(metres_per_unit=METRES_PER_UNIT, object_poses=entries,
                                                   fusion="average")).estimate(detections)
    assert prior.used == [0, 1] and "outlier" in prior.rejected[2]
    config = InitializerConfig(metres_per_unit=METRES_PER_UNIT, object_poses=entries, symmetric_classes=["tuna_can"])
    prior = CameraPriorEstimator(config).estimate(detections[2:])
    assert prior.status == "no_prior" and "symmetric" in prior.reason


def test_bearings_fusion_ignores_a_detectors_depth_bias_and_rejects_a_wrong_direction(world):
    """A detector trained on near views reads far objects as nearer: the directions stay right."""
    _, nerf_T_cam = world
    rng = np.random.default_rng(7)
    names = ("cracker_box", "mustard_bottle", "tuna_can", "mug", "bowl", "banana")
    nerf_T_objects = {name: _pose(rng.normal(size=3), rng.uniform(-1, 1, size=3)) for name in names}
    entries = [_entry(n, p) for n, p in nerf_T_objects.items()]
    detections = _detections(nerf_T_objects, nerf_T_cam)
    for det in detections:
        det.cam_T_obj[:3, 3] *= 0.75  # every depth 25 % short, directions unchanged
    wrong = detections[5].cam_T_obj
    wrong[:3, 3] = np.array([0.3, -0.2, 1.0]) * np.linalg.norm(wrong[:3, 3])  # one direction far off

    def errors(prior):
        rotation = rotation_angle_deg(prior.nerf_T_cam[:3, :3], nerf_T_cam[:3, :3])
        return float(rotation), float(np.linalg.norm(prior.nerf_T_cam[:3, 3] - nerf_T_cam[:3, 3]))

    bearings = CameraPriorEstimator(InitializerConfig(metres_per_unit=METRES_PER_UNIT, object_poses=entries,
                                                      fusion="bearings")).estimate(detections)
    assert bearings.status == "ok" and "bearings" in bearings.reason
    assert bearings.used == [0, 1, 2, 3, 4] and "direction" in bearings.rejected[5]
    rotation, translation = errors(bearings)
    assert rotation < 1e-4 and translation < 1e-5
    assert CameraPriorEstimator(InitializerConfig(metres_per_unit=METRES_PER_UNIT, object_poses=entries)
                                ).estimate(detections).reason.endswith("bearings)")  # auto tries it first
    alignment = CameraPriorEstimator(InitializerConfig(
        metres_per_unit=METRES_PER_UNIT, object_poses=entries, fusion="alignment",
        alignment_inlier_m=0.5)).estimate(detections)
    assert errors(alignment)[1] > 0.1  # positions carry the depth bias into the camera centre
    few = CameraPriorEstimator(InitializerConfig(metres_per_unit=METRES_PER_UNIT, object_poses=entries[:3],
                                                 fusion="bearings")).estimate(detections[:3])
    assert few.status == "no_prior" and "4 or more" in few.reason


def _table_scene(seed: int, bearing_noise_deg: float):
    """Eight objects on a table (coplanar, within +-15 cm) seen from 1 m; detections whose directions
    carry ``bearing_noise_deg`` of noise, distances all 20 % short with 3 % noise, rotations 5 deg noise.
    """
    rng = np.random.default_rng(seed)
    nerf_T_objects = {f"object_{k}": _pose([0.0, 0.0, rng.uniform(-3, 3)],
                                           [*rng.uniform(-0.15, 0.15, 2) / METRES_PER_UNIT, 0.0]) for k in range(8)}
    centre = np.array([0.0, -0.8, 0.6]) / METRES_PER_UNIT
    nerf_T_cam = _looking_at_origin(centre)
    detections = _detections(nerf_T_objects, nerf_T_cam)
    for det in detections:
        bend = Rotation.from_rotvec(rng.normal(size=3) * math.radians(bearing_noise_deg) / math.sqrt(3))
        det.cam_T_obj[:3, 3] = bend.as_matrix() @ det.cam_T_obj[:3, 3] * 0.8 * (1 + 0.03 * rng.normal())
        det.cam_T_obj[:3, :3] = Rotation.from_rotvec(rng.normal(size=3) * math.radians(5) / math.sqrt(3)
                                                     ).as_matrix() @ det.cam_T_obj[:3, :3]
    return [_entry(n, p) for n, p in nerf_T_objects.items()], detections, nerf_T_cam


def test_bearings_on_a_table_seen_from_afar_settle_with_relative_distances_and_rotations():
    """Directions of coplanar objects across a narrow view let the camera's rotation and translation
    trade off: with 0.6 deg of direction noise, directions alone miss 15 deg / 10 cm on some of 20
    tables. The joint refinement on the relative distances (the common 20 % bias is fitted away) and
    the rotations keeps every one within it.
    """
    def errors(joint: bool):
        out = []
        for seed in range(20):
            entries, detections, nerf_T_cam = _table_scene(seed, 0.6)
            off = {} if joint else {"joint_range_sigma": 0.0, "joint_rotation_sigma_deg": 0.0}
            prior = CameraPriorEstimator(InitializerConfig(metres_per_unit=METRES_PER_UNIT, object_poses=entries,
                                                           fusion="bearings", **off)).estimate(detections)
            assert prior.status == "ok"
            out.append((float(rotation_angle_deg(prior.nerf_T_cam[:3, :3], nerf_T_cam[:3, :3])),
                        float(np.linalg.norm(prior.nerf_T_cam[:3, 3] - nerf_T_cam[:3, 3])) * METRES_PER_UNIT))
        return np.array(out)

    joint, directions_only = errors(True), errors(False)
    assert np.all((joint[:, 0] < 15) & (joint[:, 1] < 0.10))
    assert np.median(joint[:, 0]) < 3.0 and np.median(joint[:, 1]) < 0.05
    assert np.any((directions_only[:, 0] > 15) | (directions_only[:, 1] > 0.10))
