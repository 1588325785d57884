"""``inerf-ros build-workspace CAPTURE --out WS``: from one capture to everything ``localize.launch.py`` needs.

CAPTURE is a robot bag (rosbag2 directory or ``.mcap``: images, camera_info, the arm's /tf + /tf_static)
or a folder of photos. Steps: the capture's images (:mod:`.capture`), SfM (pycolmap, the camera held
fixed at camera_info's intrinsics when known), metric scale and the robot's frame (:mod:`.alignment`;
for photos, from the objects), object anchors (:mod:`.anchors`, PoseCNN on the posed images), the
NeRF (``train-nerf`` on the SfM data), and the outputs (:mod:`.report`).

The workspace is built in ``WS.partial`` and renamed to ``WS`` only when everything is written: a run
that fails leaves no ``WS`` a launch would accept (and removes its partial folder).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from inerf_ros import config as cfg
from inerf_ros import frames
from inerf_ros.workspace import report
from inerf_ros.workspace.alignment import AlignmentConfig, fit_with_hand_eye, robust_similarity, rotation_residuals_deg
from inerf_ros.workspace.anchors import (AnchorConfig, fuse_anchors, observations_from_detections,
                                         scale_from_objects)
from inerf_ros.workspace.capture import (Capture, CaptureError, known_intrinsics, read_bag, read_photos,
                                         write_images)
from inerf_ros.workspace.config import WorkspaceConfig

MIN_REGISTERED_IMAGES = 8


def is_bag(path: Path) -> bool:
    """A single MCAP file or a rosbag2 folder (it has metadata.yaml)."""
    return path.suffix == ".mcap" or (path.is_dir() and (path / "metadata.yaml").is_file())


def read_capture(path: Path, config: WorkspaceConfig) -> Capture:
    """The capture at ``path``: a robot bag or a photo folder."""
    from inerf_ros.replay.bag import BagTopics  # the bag reader (rosbags) loads only for bag input

    if not path.exists():
        raise FileNotFoundError(f"capture {path} does not exist")
    if is_bag(path):
        topics = BagTopics(image_topic=config.image_topic, camera_info_topic=config.camera_info_topic)
        return read_bag(path, topics, config.base_frame, config.tool_frame, config.every, config.max_images)
    if path.is_dir():
        return read_photos(path, config.max_images)
    raise CaptureError(f"{path}: neither a ROS 2 bag (.mcap, or a folder with metadata.yaml) nor a folder of photos")


def run_or_reuse_sfm(capture: Capture, sfm_dir: Path, config: WorkspaceConfig) -> dict:
    """SfM on the kept images (or an earlier run's folder); refuses too few registered images."""
    from inerf_ros.datasets.sfm import SfmConfig, run_sfm  # pycolmap loads only when SfM runs

    if config.sfm:
        shutil.copytree(config.sfm, sfm_dir)
        data = json.loads((sfm_dir / "transforms.json").read_text())
    else:
        write_images(capture, sfm_dir / "images")
        sfm_config = SfmConfig(max_image_size=config.sfm_max_image_size, max_num_features=config.sfm_max_features,
                               known_intrinsics=known_intrinsics(capture), threads=config.threads)
        run_sfm(sfm_dir / "images", sfm_dir, sfm_config)
        data = json.loads((sfm_dir / "transforms.json").read_text())
    registered = len(data["frames"])
    needed = max(MIN_REGISTERED_IMAGES, int(np.ceil(config.min_registered * len(capture.images))))
    if registered < needed:
        raise CaptureError(f"SfM registered only {registered} of {len(capture.images)} images (need {needed}): "
                           "record again with slower motion, more overlap between neighbouring views (a turn of "
                           "10 deg or less per kept image) and textured surfaces in view")
    return data


def sfm_poses(data: dict) -> dict[str, np.ndarray]:
    """image name -> nerf_T_cam of the optical camera (NeRF units) from a transforms.json."""
    return {Path(f["file_path"]).name: frames.opengl_to_optical(np.asarray(f["transform_matrix"], dtype=np.float64))
            for f in data["frames"]}


def sfm_intrinsics(data: dict) -> np.ndarray:
    """K of the SfM camera in CameraInfo's pixel convention (transforms.json's cx is COLMAP's, +0.5)."""
    return np.array([[data["fl_x"], 0.0, data["cx"] - 0.5], [0.0, data["fl_y"], data["cy"] - 0.5], [0, 0, 1.0]])


def align_to_arm(capture: Capture, poses: dict[str, np.ndarray], alignment: AlignmentConfig) -> dict:
    """metres_per_unit and world_T_nerf from the SfM and arm camera centres, with the residuals."""
    pairs = [im for im in capture.images if im.name in poses]
    src = np.stack([poses[im.name][:3, 3] for im in pairs])
    base_T_cams = np.stack([im.base_T_cam for im in pairs])
    similarity = robust_similarity(src, base_T_cams[:, :3, 3], alignment)
    hand_eye = None
    if alignment.fit_hand_eye and all(im.base_T_tool is not None for im in pairs):
        fit = fit_with_hand_eye(src, np.stack([im.base_T_tool for im in pairs]), pairs[0].tool_T_cam, similarity,
                                alignment)
        similarity = fit.similarity
        hand_eye = {"tool_t_cam": fit.tool_t_cam.tolist(), "believed_tool_t_cam": fit.believed_tool_t_cam.tolist(),
                    "change_m": fit.change_m}
    nerf_T_cams = np.stack([poses[im.name] for im in pairs])
    rotation_deg = rotation_residuals_deg(similarity, nerf_T_cams, base_T_cams)
    return {"similarity": similarity, "hand_eye": hand_eye, "frames": len(pairs),
            "frames_used": int(similarity.inliers.sum()), "rms_m": similarity.rms,
            "max_m": float(similarity.residuals[similarity.inliers].max()),
            "rotation_median_deg": float(np.median(rotation_deg[similarity.inliers])),
            "per_frame": [{"image": im.name, "stamp_s": im.stamp_s, "residual_m": float(r), "rotation_deg": float(a),
                           "inlier": bool(ok)}
                          for im, r, a, ok in zip(pairs, similarity.residuals, rotation_deg, similarity.inliers)]}


def drop_misregistered(data: dict, poses: dict, aligned: dict, notes: list[str]) -> dict:
    """Leave the frames whose SfM centre disagrees with the arm's out of the NeRF data and the anchors:
    SfM misregisters a view now and then (a fast sweep), and one such view ruins a NeRF's surfaces.
    """
    bad = {row["image"] for row in aligned["per_frame"] if not row["inlier"]}
    if bad:
        data["frames"] = [f for f in data["frames"] if Path(f["file_path"]).name not in bad]
        notes.append(f"{len(bad)} SfM poses disagree with the arm's (alignment outliers) and were left out of "
                     f"the NeRF and the anchors: {', '.join(sorted(bad))}")
    return {name: pose for name, pose in poses.items() if name not in bad}


def detect_objects(capture: Capture, poses: dict, k_sfm: np.ndarray, config: WorkspaceConfig,
                   anchor_config: AnchorConfig):
    """PoseCNN on every posed image: {class name: [Observation]}, and the detector (for its model points)."""
    # torch and the detector load only when detections run, not for --help.
    from inerf_ros.posecnn.model import load_posecnn
    from inerf_ros.replay import default_model_dir

    model_dir = config.posecnn_model or str(default_model_dir("posecnn_tabletop"))
    detector = load_posecnn(model_dir, config.device)
    observations: dict[str, list] = {}
    posed = [image for image in capture.images if image.name in poses]
    if config.anchor_images and len(posed) > config.anchor_images:
        posed = [posed[int(k)] for k in np.linspace(0, len(posed) - 1, config.anchor_images).round()]
    for image in posed:
        k = image.intrinsics.K if image.intrinsics is not None else k_sfm
        result = detector.detect(image.rgb, k)
        for name, observation in observations_from_detections(image.name, poses[image.name], result.objects,
                                                              anchor_config):
            observations.setdefault(name, []).append(observation)
    return observations, detector, str(Path(model_dir).resolve())


def default_symmetric_classes() -> list[str]:
    """The symmetric classes of the shipped config/initializer.yaml (the demo world's objects)."""
    # The initializer package loads only when no --symmetric-classes were given.
    from inerf_ros import paths
    from inerf_ros.initializer import load_config

    for path in (paths.config_file("initializer.yaml"), paths.SOURCE_ROOT / "config" / "initializer.yaml"):
        if path.is_file():
            return list(load_config(path).symmetric_classes)
    return []


def train_command(sfm_dir: Path, nerf_dir: Path, config: WorkspaceConfig) -> list[str]:
    """The ``train-nerf`` command line, ``--preset auto``: an SfM capture gets ``capture`` (unbounded around the
    cameras: an arm moving through its workspace) or ``inward`` (every camera outside the scene box: photos
    taken around a table from outside), whichever its camera placement asks for; ``--nerf-args`` win.
    """
    return [sys.executable, "-m", "inerf_ros.cli", "train-nerf", str(sfm_dir), "--out", str(nerf_dir),
            "--minutes", repr(config.nerf_minutes), "--threads", str(config.threads), "--device", config.device,
            "--downscale", repr(config.nerf_downscale), "--quiet", "--preset", "auto",
            *[str(a) for a in config.nerf_args]]


def train_or_reuse_nerf(sfm_dir: Path, nerf_dir: Path, config: WorkspaceConfig, notes: list[str]) -> dict:
    """Train the NeRF on the SfM data with ``train-nerf`` (or copy ``--nerf``); its held-out PSNR."""
    if config.nerf:
        shutil.copytree(config.nerf, nerf_dir)
        if not config.sfm:
            notes.append(f"--nerf {config.nerf} reused without --sfm: it must have been trained in this run's SfM "
                         "frame, or every pose and anchor is in another frame than the model")
        return {"model_dir": config.nerf, "heldout_psnr": None}
    command = train_command(sfm_dir, nerf_dir, config)
    print(f"[build-workspace] training the NeRF: {' '.join(command[1:])}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"train-nerf failed (exit {done.returncode}): {tail[0]}")
    metrics = json.loads((nerf_dir / "metrics.json").read_text())
    return {"model_dir": "", "heldout_psnr": float(metrics["heldout_psnr"]), "command": " ".join(command[1:])}


def write_previews(capture: Capture, poses: dict, k_sfm: np.ndarray, anchors: dict, detector, mpu: float,
                   folder: Path, count: int) -> list[str]:
    """Up to ``count`` posed images spread over the capture, with every anchor drawn; their file names."""
    if not count or not anchors:
        return []
    posed = [im for im in capture.images if im.name in poses]
    picks = [posed[int(k)] for k in np.unique(np.linspace(0, len(posed) - 1, count).round())]
    names = {i + 1: n for i, n in enumerate(detector.class_names)}
    points = {names[cid]: p for cid, p in detector.model_points.items() if cid in names}
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for image in picks:
        k = image.intrinsics.K if image.intrinsics is not None else k_sfm
        drawn = report.draw_anchors(image.rgb, k, np.linalg.inv(poses[image.name]), anchors, points, mpu)
        cv2.imwrite(str(folder / image.name), drawn)
        written.append(image.name)
    return written


def build(capture_path: Path, final: Path, partial: Path, config: WorkspaceConfig, alignment: AlignmentConfig,
          anchor_config: AnchorConfig, truth: str = "") -> dict:
    """Everything into ``partial`` (paths inside it name ``final``); returns the workspace.json content."""
    start = time.time()
    capture = read_capture(capture_path, config)
    print(f"[build-workspace] {len(capture.images)} images kept from {capture_path} ({capture.kind})", flush=True)
    sfm_dir = partial / "sfm"
    data = run_or_reuse_sfm(capture, sfm_dir, config)
    poses, k_sfm = sfm_poses(data), sfm_intrinsics(data)
    notes = list(capture.notes)
    result: dict = {"capture": {"source": str(capture_path.resolve()), "kind": capture.kind,
                                "kept": len(capture.images), "every": config.every if capture.has_arm else 1},
                    "sfm": {**data["sfm"], "unregistered": data.get("unregistered", [])},
                    "base_frame": config.base_frame if capture.has_arm else "", "notes": notes}
    mpu = None
    if capture.has_arm:
        aligned = align_to_arm(capture, poses, alignment)
        similarity = aligned.pop("similarity")
        mpu = similarity.scale
        world_T_nerf = similarity.rigid
        hand_eye = aligned.pop("hand_eye")
        poses = drop_misregistered(data, poses, aligned, notes)
        if hand_eye:
            hand_eye["tool_frame"] = config.tool_frame
        result.update(scale_source="arm", alignment_rms_m=aligned["rms_m"], alignment=aligned, hand_eye=hand_eye)
    print("[build-workspace] detecting the objects on the posed images", flush=True)
    symmetric = list(config.symmetric_classes) or default_symmetric_classes()
    observations, detector, posecnn_dir = detect_objects(capture, poses, k_sfm, config, anchor_config)
    anchors, skipped = fuse_anchors(observations, symmetric, mpu, anchor_config)
    if not capture.has_arm:
        spread = scale_from_objects(anchors)
        mpu = spread["metres_per_unit"]
        world_T_nerf = np.eye(4)
        result.update(scale_source="objects", alignment_rms_m=None, scale_spread=spread)
    for line in skipped:
        print(f"[build-workspace] {line}", flush=True)
    data["metres_per_unit"] = mpu  # the model carries its scale (inerf_node's metres_per_unit 0 reads it)
    (sfm_dir / "transforms.json").write_text(json.dumps(data, indent=2))
    nerf = train_or_reuse_nerf(sfm_dir, partial / "nerf", config, notes)
    nerf["model_dir"] = str(final / "nerf")
    result.update(
        metres_per_unit=mpu, posecnn_model=posecnn_dir, nerf_model=str(final / "nerf"), nerf=nerf,
        localize_yaml=str(final / "localize.yaml"), symmetric_classes=symmetric, skipped_objects=skipped,
        world_T_nerf={"xyz_quat": report.xyz_quat(world_T_nerf), "matrix": world_T_nerf.tolist()},
        anchors={name: {"pose": report.xyz_quat(a.nerf_T_obj), "entry": a.initializer_entry(),
                        "nerf_T_obj": a.nerf_T_obj.tolist(), "spread_m": a.spread_m, "spread_deg": a.spread_deg,
                        "n_views": a.n_views, "n_inliers": a.n_inliers, "symmetric": a.symmetric}
                 for name, a in anchors.items()},
        capture_poses={name: pose.tolist() for name, pose in poses.items()})
    if capture.has_arm:
        result["initial_nerf_T_base"] = report.xyz_quat(np.linalg.inv(world_T_nerf))
    if truth:
        from inerf_ros.workspace.check import check_against_truth  # the truth is read only with --truth

        result["truth_check"] = check_against_truth(result, Path(truth))
    drawn = {name: {"nerf_T_obj": a.nerf_T_obj} for name, a in anchors.items()}
    previews = write_previews(capture, poses, k_sfm, drawn, detector, mpu, partial / "previews", config.previews)
    (partial / "localize.yaml").write_text(report.localize_yaml(result))
    (partial / "initializer.yaml").write_text(report.initializer_yaml(result))
    result["seconds"] = round(time.time() - start, 1)
    report.write_json(partial / "workspace.json", result)
    (partial / "workspace.md").write_text(report.markdown(result, previews))
    return result


def build_workspace(capture_path, out, config: WorkspaceConfig, alignment: AlignmentConfig | None = None,
                    anchor_config: AnchorConfig | None = None, truth: str = "") -> dict:
    """Build ``out`` atomically (see the module docstring); returns the workspace.json content."""
    capture_path, final = Path(capture_path), Path(out).resolve()
    if final.exists() and not config.force:
        raise FileExistsError(f"{final} exists: choose another --out or pass --force to replace it")
    partial = final.with_name(final.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        result = build(capture_path, final, partial, config, alignment or AlignmentConfig(),
                       anchor_config or AnchorConfig(), truth)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags: the capture, --out, --truth and one flag per config field."""
    parser.add_argument("capture", type=Path, help="a robot bag (.mcap or rosbag2 folder: images, camera_info, the "
                                                   "arm's /tf + /tf_static) or a folder of photos")
    parser.add_argument("--out", type=Path, required=True, help="the workspace folder to write (WS)")
    parser.add_argument("--truth", default="", help="a make-scene folder: compare the workspace with the world's "
                                                    "truth (read only for this check)")
    cfg.add_arguments(parser, WorkspaceConfig)
    cfg.add_arguments(parser, AlignmentConfig)
    cfg.add_arguments(parser, AnchorConfig)


def run(args: argparse.Namespace) -> int:
    """Build the workspace and print its headline figures."""
    config = cfg.from_args(WorkspaceConfig, args)
    alignment, anchor_config = cfg.from_args(AlignmentConfig, args), cfg.from_args(AnchorConfig, args)
    if config.threads:
        import torch  # heavy: only when the command runs, not for --help

        torch.set_num_threads(config.threads)
    result = build_workspace(args.capture, args.out, config, alignment, anchor_config, args.truth)
    scale = (f"{result['metres_per_unit']:.6f} m per unit from the arm (alignment rms "
             f"{100 * result['alignment_rms_m']:.2f} cm)" if result["scale_source"] == "arm" else
             f"{result['metres_per_unit']:.6f} m per unit from the objects (MAD "
             f"{100 * result['scale_spread']['mad_fraction']:.1f} %)")
    print(f"[build-workspace] {scale}; {len(result['anchors'])} anchors ({', '.join(result['anchors'])})")
    for line in result.get("truth_check", {}).get("lines", []):
        print(f"[build-workspace] truth: {line}")
    print(f"[build-workspace] wrote {Path(args.out).resolve()} (workspace.md, workspace.json, localize.yaml, nerf/) "
          f"in {result['seconds']:.0f} s")
    return 0
