"""``inerf-ros sfm IMAGES_DIR OUT_DIR``: pose photos with structure from motion and write a transforms.json.

Runs pycolmap (COLMAP's Python bindings, imported lazily): SIFT features, exhaustive matching,
incremental mapping with one shared camera. The largest reconstruction is converted to the
nerfstudio flavour of ``transforms.json`` (``fl_x, fl_y, cx, cy, k1, k2, p1, p2, w, h``; OpenGL
camera-to-world matrices), re-centred and rescaled so that the scene's points fit in about
[-1, 1]^3. The copied images sit in ``OUT_DIR/images``; photos that could not be registered are
listed under ``"unregistered"`` so that a later step can localize them against the NeRF.

The scale of an SfM reconstruction is arbitrary: ``metres_per_unit`` is written only when the user
gives a known size (``--metres-per-unit``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np

from inerf_ros import config as cfg

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


@dataclasses.dataclass
class SfmConfig:
    """SfM settings of ``inerf-ros sfm`` (and of build-workspace's SfM step)."""

    camera_model: str = cfg.option("SIMPLE_RADIAL", "COLMAP camera model shared by all photos",
                                   choices=("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV"))
    max_image_size: int = cfg.option(1600, "longest side used for feature extraction, pixels", range=(200, 10000))
    max_num_features: int = cfg.option(8192, "SIFT features per image", range=(500, 100000))
    metres_per_unit: float = cfg.option(0.0, "metres per output unit when known (0: unknown, not written)",
                                        range=(0.0, 1e6))
    copy_images: bool = cfg.option(True, "copy the photos into OUT_DIR/images (else link to IMAGES_DIR)")
    min_track_length: int = cfg.option(3, "sparse points written for depth supervision (OUT_DIR/sparse_points.npz) "
                                          "must be seen in at least this many photos", range=(2, 1000))
    points_only: bool = cfg.option(False, "only (re)write OUT_DIR/sparse_points.npz from the reconstruction already "
                                          "in OUT_DIR (for data made before the file existed)")
    known_intrinsics: list = cfg.option([], "fx fy cx cy of a calibrated camera (pixels, (0, 0) = the top-left "
                                            "pixel's centre, as in CameraInfo.k): a PINHOLE camera held fixed "
                                            "(far steadier than self-calibration); empty: --camera-model, refined")
    threads: int = cfg.option(0, "CPU threads of feature extraction, matching and mapping (0: all)",
                              range=(0, 1024))
    seed: int = cfg.option(0, "random seed of the mapper (RANSAC)", range=(0, 2 ** 31 - 1))
    colmap_log: bool = cfg.option(False, "print COLMAP's own log (several lines per photo) besides the summary")


def _import_pycolmap():
    try:
        import pycolmap  # noqa: F401 - heavy optional dependency
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise SystemExit("inerf-ros sfm needs pycolmap: pip install pycolmap "
                         f"(it is listed in requirements/core.txt); import failed: {error}")
    return pycolmap


def _camera_json(camera) -> dict:
    """COLMAP camera -> transforms.json intrinsics (COLMAP and transforms.json share the pixel convention)."""
    name = camera.model_name if hasattr(camera, "model_name") else str(camera.model)
    name = name.split(".")[-1]
    p = [float(v) for v in camera.params]
    out = {"w": int(camera.width), "h": int(camera.height), "camera_model": "OPENCV"}
    if name == "SIMPLE_PINHOLE":
        f, cx, cy = p
        out.update(fl_x=f, fl_y=f, cx=cx, cy=cy)
    elif name == "PINHOLE":
        fx, fy, cx, cy = p
        out.update(fl_x=fx, fl_y=fy, cx=cx, cy=cy)
    elif name == "SIMPLE_RADIAL":
        f, cx, cy, k = p
        out.update(fl_x=f, fl_y=f, cx=cx, cy=cy, k1=k, k2=0.0, p1=0.0, p2=0.0)
    elif name == "RADIAL":
        f, cx, cy, k1, k2 = p
        out.update(fl_x=f, fl_y=f, cx=cx, cy=cy, k1=k1, k2=k2, p1=0.0, p2=0.0)
    elif name == "OPENCV":
        fx, fy, cx, cy, k1, k2, p1, p2 = p
        out.update(fl_x=fx, fl_y=fy, cx=cx, cy=cy, k1=k1, k2=k2, p1=p1, p2=p2)
    else:
        raise ValueError(f"unsupported COLMAP camera model {name}")
    return out


def normalise_scene(world_T_cams: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate, centre and scale an SfM scene: up = mean camera up, centre = median point, points in ~[-1, 1].

    Args:
        world_T_cams: (N, 4, 4) OpenGL camera-to-world poses.
        points: (P, 3) sparse points.
    Returns:
        ``(nerf_T_cams (N, 4, 4), nerf_T_world (4, 4) similarity, aabb (2, 3))``.
    """
    up = world_T_cams[:, :3, 1].mean(0)  # OpenGL camera y is up in the image
    up /= np.linalg.norm(up)
    # Rotation taking `up` to +z (Rodrigues).
    z = np.array([0.0, 0.0, 1.0])
    v, c = np.cross(up, z), float(up @ z)
    if np.linalg.norm(v) < 1e-8:
        rot = np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    else:
        vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
        rot = np.eye(3) + vx + vx @ vx * (1.0 / (1.0 + c))
    pts = points @ rot.T
    lo, hi = np.percentile(pts, 2, axis=0), np.percentile(pts, 98, axis=0)
    centre = 0.5 * (lo + hi)
    scale = 1.0 / max(float(np.max(hi - lo)) * 0.5, 1e-9)
    nerf_T_world = np.eye(4)
    nerf_T_world[:3, :3] = scale * rot
    nerf_T_world[:3, 3] = -scale * centre
    nerf_T_cams = np.einsum("ij,njk->nik", nerf_T_world, world_T_cams)
    nerf_T_cams[:, :3, :3] /= scale  # keep rotations orthonormal
    half = 0.5 * (hi - lo) * scale * 1.25  # a margin around the robust point bounds
    aabb = np.stack([-half, half])
    return nerf_T_cams, nerf_T_world, aabb


def write_sparse_points(recon, nerf_T_world: np.ndarray, out_dir: Path, min_track_length: int) -> dict:
    """``OUT_DIR/sparse_points.npz``: ``xyz`` (P, 3) SfM points in the NeRF frame and, per registered
    photo, ``frame/<file name>`` the indices of the points it observes (for depth supervision: a ray
    from the camera through its own observed point must stop there). Points seen by fewer than
    ``min_track_length`` photos are left out (two-view points are the least reliable).
    """
    kept = {pid: p for pid, p in recon.points3D.items() if p.track.length() >= min_track_length}
    ids = sorted(kept)
    row = {pid: i for i, pid in enumerate(ids)}
    xyz = np.array([kept[pid].xyz for pid in ids], dtype=np.float64).reshape(-1, 3)
    xyz = xyz @ nerf_T_world[:3, :3].T + nerf_T_world[:3, 3]
    arrays = {"xyz": xyz.astype(np.float32)}
    for image in recon.images.values():
        if not image.has_pose:
            continue
        seen = sorted({row[p.point3D_id] for p in image.points2D if p.has_point3D() and p.point3D_id in row})
        arrays[f"frame/{image.name}"] = np.asarray(seen, dtype=np.int64)
    np.savez_compressed(out_dir / "sparse_points.npz", **arrays)
    return {"points": len(ids), "photos": len(arrays) - 1}


def rewrite_sparse_points(out_dir: Path, config: SfmConfig) -> dict:
    """Re-export ``sparse_points.npz`` of an existing ``inerf-ros sfm`` folder and name it in its json."""
    pycolmap = _import_pycolmap()
    out_dir = Path(out_dir)
    json_path, sparse = out_dir / "transforms.json", out_dir / "colmap" / "sparse"
    not_sfm = f"{out_dir}: not an inerf-ros sfm folder"
    if not json_path.is_file() or not sparse.is_dir():
        raise SystemExit(f"{not_sfm} (needs transforms.json and colmap/sparse/)")
    try:
        data = json.loads(json_path.read_text())
    except json.JSONDecodeError as error:
        raise SystemExit(f"{json_path}: not valid JSON ({error})") from None
    models = [pycolmap.Reconstruction(d) for d in sorted(sparse.iterdir()) if d.is_dir()]
    if not models or "applied_transform" not in data:
        raise SystemExit(f"{not_sfm} (no COLMAP reconstruction or no 'applied_transform')")
    recon = max(models, key=lambda r: r.num_reg_images())
    nerf_T_world = np.vstack([np.asarray(data["applied_transform"], dtype=np.float64), [0.0, 0.0, 0.0, 1.0]])
    summary = write_sparse_points(recon, nerf_T_world, out_dir, config.min_track_length)
    data["sparse_points"] = "sparse_points.npz"
    json_path.write_text(json.dumps(data, indent=2))
    return summary


def _known_camera(config: SfmConfig, reader, mapping) -> None:
    """Fix a PINHOLE camera to ``config.known_intrinsics`` (CameraInfo's pixel convention -> COLMAP's,
    whose (0, 0) is the top-left pixel's corner: cx + 0.5).
    """
    values = [float(v) for v in config.known_intrinsics]
    if len(values) != 4 or not np.all(np.isfinite(values)) or values[0] <= 0 or values[1] <= 0:
        raise ValueError(f"known_intrinsics needs 4 finite numbers fx fy cx cy with fx, fy > 0, got {values}")
    fx, fy, cx, cy = values
    reader.camera_model = "PINHOLE"
    reader.camera_params = f"{fx!r},{fy!r},{cx + 0.5!r},{cy + 0.5!r}"
    mapping.ba_refine_focal_length = False
    mapping.ba_refine_principal_point = False
    mapping.ba_refine_extra_params = False


def run_sfm(images_dir: Path, out_dir: Path, config: SfmConfig) -> dict:
    """Reconstruct ``images_dir`` and write ``out_dir/transforms.json``; returns a summary dict.

    Raises ``ValueError`` when there are fewer than 3 photos or none could be registered.
    """
    pycolmap = _import_pycolmap()
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    names = sorted(p.name for p in images_dir.iterdir() if p.suffix in IMAGE_SUFFIXES)
    if len(names) < 3:
        raise ValueError(f"{images_dir}: need at least 3 photos (.jpg/.png), found {len(names)}")
    work = out_dir / "colmap"
    if work.exists():
        shutil.rmtree(work)
    (work / "sparse").mkdir(parents=True)
    database = work / "database.db"
    start = time.time()
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = config.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = config.max_image_size
    extraction.sift.max_num_features = config.max_num_features
    pycolmap.logging.minloglevel = 0 if config.colmap_log else 1  # 1: warnings and errors only
    matching = pycolmap.FeatureMatchingOptions()
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.random_seed = config.seed
    if config.threads:
        extraction.num_threads = matching.num_threads = mapping.num_threads = config.threads
    if config.known_intrinsics:
        _known_camera(config, reader, mapping)
    print(f"[sfm] extracting features from {len(names)} photos")
    pycolmap.extract_features(database, images_dir, image_names=names, camera_mode=pycolmap.CameraMode.SINGLE,
                              reader_options=reader, extraction_options=extraction)
    print("[sfm] exhaustive matching")
    pycolmap.match_exhaustive(database, matching_options=matching)
    print("[sfm] incremental mapping")
    models = pycolmap.incremental_mapping(database, images_dir, work / "sparse", options=mapping)
    if not models:
        raise ValueError(f"{images_dir}: structure from motion registered no images (too few matches)")
    recon = max(models.values(), key=lambda r: r.num_reg_images())
    print(f"[sfm] {recon.num_reg_images()}/{len(names)} photos registered, "
          f"{recon.num_points3D()} points, {time.time() - start:.0f} s")
    images = sorted(recon.images.values(), key=lambda im: im.name)
    images = [im for im in images if im.has_pose]
    world_T_cams = []
    for im in images:
        cam_from_world = im.cam_from_world()
        cam_T_world = np.eye(4)
        cam_T_world[:3, :4] = np.asarray(cam_from_world.matrix())
        world_T_cam_optical = np.linalg.inv(cam_T_world)
        world_T_cams.append(world_T_cam_optical @ np.diag([1.0, -1.0, -1.0, 1.0]))  # OpenCV -> OpenGL
    world_T_cams = np.stack(world_T_cams)
    points = np.array([p.xyz for p in recon.points3D.values()], dtype=np.float64)
    nerf_T_cams, nerf_T_world, aabb = normalise_scene(world_T_cams, points)
    camera_ids = {im.camera_id for im in images}
    shared = len(camera_ids) == 1
    data: dict = {}
    if shared:
        data.update(_camera_json(recon.cameras[images[0].camera_id]))
    image_out = out_dir / "images"
    image_out.mkdir(parents=True, exist_ok=True)
    frames = []
    for im, pose in zip(images, nerf_T_cams):
        src = images_dir / im.name
        dst = image_out / im.name
        if not dst.exists():
            if config.copy_images:
                shutil.copy2(src, dst)
            else:
                dst.symlink_to(src.resolve())
        frame = {"file_path": f"images/{im.name}", "transform_matrix": pose.tolist()}
        if not shared:
            frame.update(_camera_json(recon.cameras[im.camera_id]))
        frames.append(frame)
    registered = {im.name for im in images}
    data.update({
        "aabb": aabb.tolist(),
        "applied_transform": nerf_T_world[:3].tolist(),
        "sfm": {"tool": f"pycolmap {pycolmap.__version__}", "registered": len(images), "photos": len(names),
                "points": int(recon.num_points3D()),
                "mean_reprojection_error_px": float(recon.compute_mean_reprojection_error()),
                "seconds": round(time.time() - start, 1)},
        "unregistered": [n for n in names if n not in registered],
        "frames": frames,
    })
    if config.metres_per_unit > 0:
        data["metres_per_unit"] = config.metres_per_unit
    write_sparse_points(recon, nerf_T_world, out_dir, config.min_track_length)
    data["sparse_points"] = "sparse_points.npz"
    (out_dir / "transforms.json").write_text(json.dumps(data, indent=2))
    return data["sfm"] | {"unregistered": data["unregistered"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags: the photo folder, the output folder and one flag per config field."""
    parser.add_argument("images_dir", type=Path, help="folder of photos (.jpg / .png)")
    parser.add_argument("out_dir", type=Path, help="output folder: transforms.json, images/, colmap/")
    cfg.add_arguments(parser, SfmConfig)


def run(args: argparse.Namespace) -> int:
    """Run SfM (or only rewrite the sparse points) and print the summary."""
    config = cfg.from_args(SfmConfig, args)
    if config.points_only:
        print(json.dumps(rewrite_sparse_points(args.out_dir, config), indent=2))
        print(f"wrote {args.out_dir / 'sparse_points.npz'}")
        return 0
    if not args.images_dir.is_dir():
        raise SystemExit(f"{args.images_dir}: not a folder of photos")
    summary = run_sfm(args.images_dir, args.out_dir, config)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out_dir / 'transforms.json'}")
    return 0
