"""`inerf-ros register` on a field built in the test: a rendered view the data lacks is accepted with its
true pose, a noise image is rejected, the written transforms.json loads, bad inputs say why.
"""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from inerf_ros import cli, frames, lie
from inerf_ros.camera import Intrinsics

INTRINSICS = Intrinsics(80, 60, 70.0, 70.0, 39.5, 29.5)
RING = 16  # data views around the box, every 22.5 degrees


def _eye(azimuth_deg, elevation_deg, radius=2.6):
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return [radius * math.cos(e) * math.cos(a), radius * math.cos(e) * math.sin(a), radius * math.sin(e)]


def _render(model, nerf_T_optical):
    from inerf_ros.nerf.render import render_image

    with torch.no_grad():
        out = render_image(model, INTRINSICS, torch.from_numpy(frames.optical_to_opengl(nerf_T_optical)).float())
    return (out["rgb"].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A model folder, a posed data set (16 rendered views) and photos to register."""
    from inerf_ros.nerf.checkpoint import save_model
    from inerf_ros.testing import fit_nerf

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("register")
    model = fit_nerf(steps=150, n_samples=48)
    save_model(model, root / "model")
    (root / "data" / "images").mkdir(parents=True)
    data_frames = []
    for i in range(RING):
        pose = frames.look_at(_eye(360.0 * i / RING, 25.0), (0.0, 0.0, 0.0))
        Image.fromarray(_render(model, pose)).save(root / "data" / "images" / f"view_{i:02d}.png")
        data_frames.append({"file_path": f"images/view_{i:02d}", "transform_matrix":
                            frames.optical_to_opengl(pose).tolist()})
    doc = {"fl_x": INTRINSICS.fx, "fl_y": INTRINSICS.fy, "cx": INTRINSICS.cx + 0.5, "cy": INTRINSICS.cy + 0.5,
           "w": INTRINSICS.width, "h": INTRINSICS.height, "aabb": [[-1, -1, -1], [1, 1, 1]], "frames": data_frames}
    (root / "data" / "transforms.json").write_text(json.dumps(doc))
    photos = root / "photos"
    photos.mkdir()
    truth = frames.look_at(_eye(360.0 * 3 / RING + 8.0, 31.0, 2.5), (0.05, 0.0, 0.0))
    Image.fromarray(_render(model, truth)).save(photos / "new_view.png")
    noise = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(noise).save(photos / "noise.png")
    (photos / "corrupt.png").write_bytes(b"this is not an image")
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(photos / "square.png")
    return {"root": root, "model": root / "model", "data": root / "data", "photos": photos, "truth": truth}


def _config(out, images, **overrides):
    from inerf_ros.register import RegisterConfig

    values = dict(images=[str(p) for p in images], out=str(out), neighbours=2, num_rays=256, max_iterations=40,
                  num_hypotheses=3, starts_refined=2, min_psnr=25.0, progress=False, seed=0)
    values.update(overrides)
    return RegisterConfig(**values)


@pytest.fixture(scope="module")
def registered(scene):
    from inerf_ros.register import register

    out = scene["root"] / "new_data"
    photos = scene["photos"]
    summary = register(scene["model"], scene["data"], _config(
        out, [photos, photos / "missing.png"], check_views=1))
    return out, {v["image"]: v for v in summary["verdicts"]}, summary


def test_rendered_view_is_accepted_with_its_pose(scene, registered):
    _, verdicts, _ = registered
    v = verdicts["new_view.png"]
    assert v["accepted"], v["reason"]
    rot, trans = lie.pose_error(torch.tensor(frames.opengl_to_optical(np.array(v["nerf_T_opengl"]))),
                                torch.from_numpy(scene["truth"]))
    assert float(rot) < 1.0 and float(trans) < 0.03, (float(rot), float(trans), v)
    assert v["psnr"] > 25.0 and v["iterations"] > 0 and v["start"]


def test_noise_and_bad_files_are_rejected_with_a_reason(registered):
    _, verdicts, summary = registered
    assert not verdicts["noise.png"]["accepted"] and "PSNR" in verdicts["noise.png"]["reason"]
    # Chain registration tried it again once new_view.png was accepted (unreadable files are not retried).
    assert "(pass 2)" in verdicts["noise.png"]["reason"] and "pass" not in verdicts["corrupt.png"]["reason"]
    assert not verdicts["corrupt.png"]["accepted"] and "unreadable" in verdicts["corrupt.png"]["reason"]
    assert not verdicts["square.png"]["accepted"] and "aspect ratio" in verdicts["square.png"]["reason"]
    assert not verdicts["missing.png"]["accepted"] and "not found" in verdicts["missing.png"]["reason"]
    assert summary["photos"] == 5 and summary["accepted"] == 1


def test_check_view_agrees_with_its_known_pose(registered):
    _, verdicts, _ = registered
    check = verdicts["view_00"]  # named as in the json (no extension there)
    assert check["check"] and check["accepted"], check
    assert check["rotation_error_deg"] < 1.0 and check["translation_error"] < 0.03, check


def test_written_transforms_load_with_the_loader(scene, registered):
    from inerf_ros.datasets.transforms import load_transforms

    out, verdicts, _ = registered
    data = load_transforms(out)
    names = [n.split("/")[-1] for n in data.file_names]
    assert len(data) == RING + 1 and "new_view.png" in names and "noise.png" not in names
    new = names.index("new_view.png")
    np.testing.assert_allclose(data.nerf_T_cam[new].numpy(), np.array(verdicts["new_view.png"]["nerf_T_opengl"]),
                               atol=1e-5)
    assert data.intrinsics[new] == data.intrinsics[0]
    np.testing.assert_allclose(data.images[new].numpy() * 255,
                               np.asarray(Image.open(scene["photos"] / "new_view.png")), atol=0.5)
    # The same views are held out as in the original data (every 8th: view_00, view_08), plus a new one.
    _, held = data.holdout_indices(8)
    assert [names[i] for i in held[:2]] == ["view_00.png", "view_08.png"]
    doc = json.loads((out / "transforms.json").read_text())
    assert doc["registration"]["accepted"] == ["new_view.png"] and "noise.png" in doc["unregistered"]
    table = (out / "registration.md").read_text()
    assert "| new_view.png |" in table and "accepted" in table and "| noise.png |" in table
    assert "poses the matches support as well" in table
    assert json.loads((out / "registration.json").read_text())["accepted"] == 1
    preview = np.asarray(Image.open(out / "previews" / "new_view.png"))
    assert preview.shape[1] == 3 * preview.shape[0] * 80 // 60  # photo | render | blend side by side


def test_missing_model_and_empty_folder_are_clear_errors(scene, tmp_path):
    from inerf_ros.register import RegistrationError, register

    with pytest.raises(RegistrationError, match="model"):
        register(tmp_path / "no_model", scene["data"], _config(tmp_path / "o1", [scene["photos"]]))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RegistrationError, match="no images"):
        register(scene["model"], scene["data"], _config(tmp_path / "o2", [empty]))
    with pytest.raises(RegistrationError, match="data"):
        register(scene["model"], tmp_path / "no_data", _config(tmp_path / "o3", [scene["photos"]]))


def test_cli_reports_errors_and_needs_images(scene, tmp_path, capsys):
    assert cli.main(["register", str(tmp_path / "no_model"), str(scene["data"]), "--images",
                     str(scene["photos"]), "--out", str(tmp_path / "o")]) == 2
    assert "model" in capsys.readouterr().err
    assert cli.main(["register", str(scene["model"]), str(scene["data"]), "--out", str(tmp_path / "o")]) == 2
    assert "--images" in capsys.readouterr().err


@pytest.fixture(scope="module")
def registrar_parts(scene):
    from inerf_ros.datasets.transforms import load_transforms
    from inerf_ros.nerf.checkpoint import load_model

    model = load_model(scene["model"])
    data = load_transforms(scene["data"], background=tuple(model.metadata.background))
    return model, data


def _photo_with_backdrop(model, pose):
    """The field's view at ``pose`` with its empty backdrop replaced by a colour ramp (a room the
    capture never showed).
    """
    image = _render(model, pose).astype(np.float64)
    backdrop = image.sum(-1) >= 3 * 250  # the field's white background
    ramp = np.linspace(40, 200, image.shape[1])[None, :, None] * np.array([0.6, 0.8, 1.0])
    image[backdrop] = np.broadcast_to(ramp, image.shape)[backdrop]
    return (image / 255).astype(np.float32)


def test_a_backdrop_the_nerf_never_saw_is_not_judged(scene, registrar_parts):
    """At the right pose the object matches and the backdrop does not: the foreground verdict accepts,
    one on every pixel rejects; where the field renders none of its surfaces nothing is judged.
    """
    from inerf_ros.register import Registrar

    model, data = registrar_parts
    photo = _photo_with_backdrop(model, scene["truth"])
    # No feature check: at 80 x 60 the ramp's edges against the box give the few matches there are.
    on_surfaces = Registrar(model, data, _config("unused", ["unused"], min_psnr=25.0, min_inliers=0,
                                                 verdict_pixels="foreground"))
    verdict = on_surfaces.register(photo, "room.png")
    assert verdict.accepted, verdict.reason
    assert "NeRF's surfaces" in verdict.reason and 0.05 < verdict.foreground_fraction < 0.9
    rot, trans = lie.pose_error(torch.tensor(frames.opengl_to_optical(np.array(verdict.nerf_T_opengl))),
                                torch.from_numpy(scene["truth"]))
    assert float(rot) < 1.0 and float(trans) < 0.03, (float(rot), float(trans))
    everywhere = Registrar(model, data, _config("unused", ["unused"], min_psnr=25.0, min_inliers=0,
                                                verdict_pixels="all"))
    rejected = everywhere.register(photo, "room.png")
    assert not rejected.accepted and "PSNR" in rejected.reason and rejected.psnr < 25.0
    nothing = {"rgb": torch.zeros(10, 3), "opacity": torch.zeros(10)}
    assert on_surfaces.verdict_errors(nothing, torch.ones(10, 3))[2] == 0.0


def test_an_accepted_photo_becomes_a_view_to_start_from(scene, registrar_parts):
    """Chain registration: with every data view excluded, a photo near an accepted one starts from it."""
    from inerf_ros.register import Registrar

    model, data = registrar_parts
    registrar = Registrar(model, data, _config("unused", ["unused"], min_psnr=25.0))
    accepted_pose = frames.optical_to_opengl(scene["truth"])
    registrar.add_view("new_view.png", _render(model, scene["truth"]).astype(np.float32) / 255, accepted_pose)
    assert registrar.num_views == len(data) + 1 and registrar.view_name(len(data)) == "new_view.png"
    np.testing.assert_allclose(registrar.view_pose(len(data)), accepted_pose)
    nearby = frames.look_at(_eye(360.0 * 3 / RING + 14.0, 35.0, 2.45), (0.05, 0.02, 0.0))
    image = _render(model, nearby).astype(np.float32) / 255
    verdict = registrar.register(image, "nearby.png", exclude=range(len(data)))
    assert verdict.accepted and "new_view.png" in verdict.start, (verdict.start, verdict.reason)
    rot, trans = lie.pose_error(torch.tensor(frames.opengl_to_optical(np.array(verdict.nerf_T_opengl))),
                                torch.from_numpy(nearby))
    assert float(rot) < 1.0 and float(trans) < 0.03, (float(rot), float(trans))


def test_a_darker_photo_under_the_threshold_is_accepted_on_geometry_only_when_matches_agree(scene, registrar_parts):
    """A photo exposed darker than the data: its PSNR falls under the threshold at the right pose, its
    features still match. Enough agreeing matches accept it on geometry (and say so); without the
    geometric route, or above the floor's reach, it is rejected.
    """
    from inerf_ros.register import Registrar

    model, data = registrar_parts
    photo = _render(model, scene["truth"]).astype(np.float32) / 255 * 0.9
    lenient = Registrar(model, data, _config("unused", ["unused"], min_psnr=25.0, min_inliers=3,
                                             geometric_support=3, geometric_margin_db=15.0))
    verdict = lenient.register(photo, "dark.png")
    assert verdict.psnr < 25.0 and verdict.feature_support >= 3, verdict
    assert verdict.accepted and verdict.accepted_by == "geometry" and "on geometry" in verdict.reason, verdict.reason
    rot, trans = lie.pose_error(torch.tensor(frames.opengl_to_optical(np.array(verdict.nerf_T_opengl))),
                                torch.from_numpy(scene["truth"]))
    assert float(rot) < 1.0 and float(trans) < 0.05, (float(rot), float(trans))  # fixed exposure: a small pull
    # A handful of matches on a small image pins the pose down only loosely: a user who wants it pinned
    # down to a few degrees can say so.
    assert verdict.ambiguity_deg > 5.0, verdict.ambiguity_deg
    pinned = Registrar(model, data, _config("unused", ["unused"], min_psnr=25.0, min_inliers=3, geometric_support=3,
                                            geometric_margin_db=15.0, max_ambiguity_deg=5.0))
    pinned = pinned.register(photo, "dark.png")
    assert not pinned.accepted and "fit the matches about equally well (> 5 deg)" in pinned.reason, pinned.reason
    for strict in (dict(geometric_support=0), dict(geometric_support=3, geometric_margin_db=0.5)):
        config = _config("unused", ["unused"], min_psnr=25.0, min_inliers=3, **strict)
        rejected = Registrar(model, data, config).register(photo, "dark.png")
        assert not rejected.accepted and "PSNR" in rejected.reason and not rejected.accepted_by, rejected.reason


def test_triangulated_start_poses_the_photo_from_two_posed_views_without_nerf_depth(scene, registrar_parts):
    """Keypoints the photo shares with views 2 and 4, which also match each other: triangulated from the
    two posed views, PnP gives the photo's exact pose, and the points then vouch for it.
    """
    from inerf_ros.register import Registrar

    model, data = registrar_parts
    registrar = Registrar(model, data, _config("unused", ["unused"], min_psnr=25.0))
    rng = np.random.default_rng(3)
    points = rng.uniform(-0.6, 0.6, size=(30, 3))

    def project(nerf_T_optical):
        optical_T_nerf = np.linalg.inv(nerf_T_optical)
        cam = points @ optical_T_nerf[:3, :3].T + optical_T_nerf[:3, 3]
        return cam[:, :2] / cam[:, 2:] * [INTRINSICS.fx, INTRINSICS.fy] + [INTRINSICS.cx, INTRINSICS.cy]

    no_descriptors = None
    for view in (2, 4):  # each view's keypoints in reverse order, so that indices differ from the photo's
        registrar._features[view] = (project(frames.opengl_to_optical(registrar.view_pose(view)))[::-1],
                                     no_descriptors)
    last = len(points) - 1
    registrar._view_pairs[(2, 4)] = [(last - k, last - k) for k in range(len(points))]
    registrar._photo_pairs = {2: [(k, last - k) for k in range(len(points))],
                              4: [(k, last - k) for k in range(0, len(points), 2)]}
    registrar._matches = []
    photo_uv = project(scene["truth"])
    start = registrar.triangulated_start((photo_uv, no_descriptors), [2, 4])
    assert start.kind == "triangulated" and start.is_pnp and start.is_pooled
    label, pose = start.label, start.nerf_T_gl
    assert label.startswith("pnp triangulated (30 tracks over 2 views, 30 inliers"), label
    np.testing.assert_allclose(frames.opengl_to_optical(pose), scene["truth"], atol=1e-6)
    assert registrar.feature_support(pose) == 30
    # Views that share no keypoints with each other give no tracks.
    registrar._view_pairs[(2, 4)] = []
    assert registrar.triangulated_start((photo_uv, no_descriptors), [2, 4]) is None


def test_pose_ambiguity_spans_the_candidates_the_matches_support_nearly_as_well():
    from inerf_ros.register import pose_ambiguity

    def turned(deg, shift=0.0):
        pose = np.eye(4)
        pose[:3, :3] = lie.so3_exp(torch.tensor([0.0, 0.0, math.radians(deg)], dtype=torch.float64)).numpy()
        pose[0, 3] = shift
        return pose.tolist()

    candidates = [{"refined_support": 100, "refined_pose": turned(0.0), "pnp_pose_support": 80,
                   "pnp_pose_pose": turned(10.0, 0.2)},
                  {"refined_support": 74, "refined_pose": turned(40.0, 1.0)},  # under 3/4 of the best: ignored
                  {"refined_support": None, "refined_pose": turned(90.0)}]  # not checked
    rotation, translation = pose_ambiguity(candidates, turned(0.0))
    assert rotation == pytest.approx(10.0) and translation == pytest.approx(0.2)
    assert pose_ambiguity(candidates[2:], turned(0.0)) is None
    assert pose_ambiguity([{"refined_support": 0, "refined_pose": turned(30.0)}], turned(0.0)) is None


def test_joint_pnp_start_pools_the_matches_of_every_matched_view(scene, registrar_parts):
    """Two views with 9 correct matches each (and wrong ones): neither reaches PnP's 12 inliers alone,
    together they give the exact pose.
    """
    from inerf_ros.optim import features
    from inerf_ros.register import Registrar

    model, data = registrar_parts
    registrar = Registrar(model, data, _config("unused", ["unused"], min_psnr=25.0))
    rng = np.random.default_rng(0)
    optical_T_nerf = np.linalg.inv(scene["truth"])
    matches = []
    for _ in range(2):
        points = rng.uniform(-0.6, 0.6, size=(14, 3))
        cam = points @ optical_T_nerf[:3, :3].T + optical_T_nerf[:3, 3]
        uv = cam[:, :2] / cam[:, 2:] * [INTRINSICS.fx, INTRINSICS.fy] + [INTRINSICS.cx, INTRINSICS.cy]
        uv[9:] = rng.uniform(0, 60, size=(5, 2))  # wrong matches
        matches.append((points, uv))
        single = features.solve_pnp(points, uv, INTRINSICS, registrar.pixel_tolerance, min_inliers=12)
        assert single.nerf_T_optical is None, single.note
    registrar._matches = matches
    start = registrar.joint_pnp_start()
    assert start.kind == "joint" and start.is_pooled
    label, pose = start.label, start.nerf_T_gl
    assert label.startswith("pnp joint (2 views"), label
    np.testing.assert_allclose(frames.opengl_to_optical(pose), scene["truth"], atol=1e-6)
    registrar._matches = matches[:1]
    assert registrar.joint_pnp_start() is None  # one view: its own PnP start already covers it
