"""``inerf-ros detect IMAGE... --model M --out DIR``: try the detector on your own camera frames.

For every image it writes ``DIR/NAME_detect.png`` (input | labels | poses drawn as projected model
outlines) and, for all of them, ``DIR/detections.json`` (per detection: class, score, ``cam_T_obj``
as ``[x, y, z, qx, qy, qz, qw]`` in metres in the camera's optical frame, visible mask area). The
detector runs as ``posecnn_node`` runs it: the same loader, the silhouette refinement with the same
flags and defaults, and the node's ``score_threshold`` decides what counts as reported.

Intrinsics, by priority: ``--camera-info FILE.yaml`` (the ``ost.yaml`` of ROS camera_calibration, or
``ros2 topic echo --once /camera/camera_info`` saved to a file; distortion is removed first), else
``--fx`` (``--fy``, ``--cx``, ``--cy``), else a guess from ``--fov-x-deg`` (60 deg) that the output
says: PoseCNN's distances scale with the focal length, so with a guess only the image-space
results (labels, outlines) are trustworthy.

An image that cannot be used (unreadable, grey or depth, too small, another size than the
camera_info's) is skipped with one line saying why; the others are still processed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np
import yaml

from inerf_ros import config as config_tools
from inerf_ros.camera import Intrinsics
from inerf_ros.config import option
from inerf_ros.posecnn import draw
from inerf_ros.posecnn.refine import SilhouetteRefineConfig
from inerf_ros.ros.camera_info import CameraInfoError, camera_info_to_intrinsics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MIN_SIDE = 32          # pixels: smaller images hold nothing a detector can find
ASPECT_TOLERANCE = 0.15  # relative: wider or narrower images than the network's input are stretched


@dataclasses.dataclass
class DetectConfig:
    """PoseCNN on photos: where the model and the camera's intrinsics come from, where results go."""

    model: str = option("models/posecnn_tabletop", "model directory (train-posecnn --out)", read_only=True)
    out: str = option("detections", "output folder: NAME_detect.png per image and detections.json")
    camera_info: str = option("", "camera_info YAML (camera_calibration's ost.yaml or a saved "
                                  "`ros2 topic echo --once` of sensor_msgs/CameraInfo)")
    fx: float = option(0.0, "focal length x, pixels, when there is no --camera-info (0: guess from --fov-x-deg)",
                       range=(0.0, 1e6))
    fy: float = option(0.0, "focal length y, pixels (0: = fx)", range=(0.0, 1e6))
    cx: float = option(-1.0, "principal point x, pixels, (0, 0) = centre of the top-left pixel (-1: image centre)")
    cy: float = option(-1.0, "principal point y, pixels (-1: image centre)")
    fov_x_deg: float = option(60.0, "horizontal field of view assumed without --camera-info or --fx, degrees",
                              range=(1.0, 170.0))
    score_threshold: float = option(0.5, "detections scoring below this are listed but not drawn (as posecnn_node "
                                         "drops them)", range=(0.0, 1.0))
    threads: int = option(1, "torch CPU threads", range=(1, 256))
    device: str = option("cpu", "torch device")
    max_image_pixels: int = option(16_777_216, "larger images are refused (every stage allocates per pixel)",
                                   range=(1, 10**9))


class ImageError(ValueError):
    """One image cannot be used; the command goes on with the next."""


def read_image(path: Path, max_pixels: int) -> np.ndarray:
    """An RGB uint8 image from a PNG/JPEG (or any colour image OpenCV decodes), with a reason when not."""
    if not path.is_file():
        raise ImageError("no such file")
    # imdecode (not imread) so that an undecodable file gives None quietly instead of an OpenCV warning.
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageError("not an image OpenCV can decode (PNG or JPEG expected)")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ImageError(f"{image.shape[1]}x{image.shape[0]} is more than max_image_pixels = {max_pixels}")
    if image.ndim == 2 or image.shape[2] == 1:
        what = "16-bit single-channel (a depth image?)" if image.dtype == np.uint16 else \
            "single-channel (grey or raw Bayer)"
        raise ImageError(f"a {what} image: the detector needs the camera's colour image")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.dtype != np.uint8:
        raise ImageError(f"{image.dtype} pixels are not supported (8 or 16-bit colour expected)")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ImageError(f"{image.shape[1]}x{image.shape[0]} is too small (at least {MIN_SIDE} pixels a side)")
    return np.ascontiguousarray(image[:, :, 2::-1])  # BGR(A) -> RGB


def load_camera_info_yaml(path) -> Intrinsics:
    """Intrinsics from camera_calibration's YAML (``camera_matrix``, ``image_width``) or a CameraInfo echo
    (``k``, ``width``), checked as posecnn_node checks a CameraInfo.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"camera_info file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping (camera_calibration's ost.yaml or a CameraInfo)")

    def matrix(key):
        value = data.get(key)
        return value.get("data") if isinstance(value, dict) else value

    k = matrix("camera_matrix") or matrix("k") or matrix("K")
    width, height = data.get("image_width", data.get("width")), data.get("image_height", data.get("height"))
    if k is None or width is None or height is None:
        raise ValueError(f"{path}: needs camera_matrix (or k) and image_width/image_height (or width/height)")
    roi = data.get("roi") if isinstance(data.get("roi"), dict) else {}
    msg = types.SimpleNamespace(
        k=list(k), width=width, height=height, d=list(matrix("distortion_coefficients") or matrix("d") or []),
        distortion_model=data.get("distortion_model", "none") or "none",
        binning_x=data.get("binning_x", 0) or 0, binning_y=data.get("binning_y", 0) or 0,
        roi=types.SimpleNamespace(x_offset=roi.get("x_offset", 0), y_offset=roi.get("y_offset", 0),
                                  width=roi.get("width", 0), height=roi.get("height", 0)))
    try:
        return camera_info_to_intrinsics(msg)
    except (CameraInfoError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


def image_intrinsics(config: DetectConfig, camera_info: Intrinsics | None, width: int, height: int
                     ) -> tuple[Intrinsics, str]:
    """The intrinsics of one image and where they came from (a sentence for the output)."""
    if camera_info is not None:
        if (width, height) == (camera_info.width, camera_info.height):
            return camera_info, f"camera_info {config.camera_info}"
        if abs(width / height - camera_info.width / camera_info.height) > 0.01 * width / height:
            raise ImageError(f"{width}x{height} but the camera_info is for {camera_info.width}x"
                             f"{camera_info.height}: another aspect ratio (a crop or another camera)")
        return camera_info.resized(width, height), (f"camera_info {config.camera_info}, scaled from "
                                                    f"{camera_info.width}x{camera_info.height}")
    if config.fx > 0:
        cx = config.cx if config.cx >= 0 else (width - 1) / 2
        cy = config.cy if config.cy >= 0 else (height - 1) / 2
        return Intrinsics(width, height, config.fx, config.fy or config.fx, cx, cy), "--fx/--fy/--cx/--cy"
    guess = Intrinsics.from_fov(width, height, math.radians(config.fov_x_deg))
    return guess, (f"GUESSED from a {config.fov_x_deg:g} deg horizontal field of view (fx = fy = {guess.fx:.1f} px): "
                   "distances scale with the true focal length; pass --camera-info or --fx")


def undistort(rgb: np.ndarray, intrinsics: Intrinsics) -> tuple[np.ndarray, Intrinsics]:
    """The image a pinhole camera with the same K would see (PoseCNN's geometry is pinhole)."""
    if not intrinsics.is_distorted:
        return rgb, intrinsics
    k, d = intrinsics.K, np.asarray(intrinsics.distortion, np.float64)
    out = cv2.fisheye.undistortImage(rgb, k, d[:4], Knew=k) if intrinsics.distortion_model == "equidistant" \
        else cv2.undistort(rgb, k, d)
    return out, dataclasses.replace(intrinsics, distortion_model="none", distortion=())


def pose_xyz_quat(cam_T_obj: np.ndarray) -> list[float]:
    """``[x, y, z, qx, qy, qz, qw]`` (metres; unit quaternion with qw >= 0) of a 4x4 pose."""
    from scipy.spatial.transform import Rotation  # lazy: scipy is heavy, needed once per detection

    quat = Rotation.from_matrix(cam_T_obj[:3, :3]).as_quat()
    if quat[3] < 0:
        quat = -quat
    return [float(v) for v in cam_T_obj[:3, 3]] + [float(v) for v in quat]


def detection_records(result, threshold: float) -> list[dict]:
    """detections.json entries of a DetectionResult, best score first (``reported``: at or above ``threshold``)."""
    records = []
    for det in sorted(result.objects, key=lambda d: -d.score):
        if not np.all(np.isfinite(det.cam_T_obj)):
            raise ValueError(f"the detector returned a non-finite pose for {det.class_name}")
        records.append({
            "class": det.class_name, "class_id": int(det.class_id), "score": float(det.score),
            "reported": bool(det.score >= threshold), "cam_T_obj": pose_xyz_quat(det.cam_T_obj),
            "visible_mask_area_px": int(np.count_nonzero(result.label_mask == det.class_id)),
            "visible_fraction": None if det.visible_fraction is None else float(det.visible_fraction)})
    return records


def detect_one(detector, path: Path, config: DetectConfig, camera_info: Intrinsics | None) -> tuple[dict, np.ndarray]:
    """Detect in one image: its record for detections.json and its picture (input | labels | poses)."""
    rgb = read_image(path, config.max_image_pixels)
    height, width = rgb.shape[:2]
    intrinsics, source = image_intrinsics(config, camera_info, width, height)
    rgb, intrinsics = undistort(rgb, intrinsics)
    notes = []
    in_w, in_h = detector.input_size
    if abs((width / height) / (in_w / in_h) - 1) > ASPECT_TOLERANCE:
        notes.append(f"the image's aspect ratio {width}:{height} differs from the network's input {in_w}:{in_h}: "
                     "it is stretched to fit, and results degrade")
    start = time.perf_counter()
    result = detector.detect(rgb, intrinsics.K)
    seconds = time.perf_counter() - start
    records = detection_records(result, config.score_threshold)
    shown = [draw.DrawnPose(d.class_id, d.class_name, d.cam_T_obj, d.score) for d in result.objects
             if d.score >= config.score_threshold]
    names = detector.class_names
    picture = draw.side_by_side([
        ("input", rgb), ("labels", draw.label_panel(rgb, result.label_mask, names)),
        (f"poses (score >= {config.score_threshold:g})",
         draw.pose_panel(rgb, shown, intrinsics.K, len(names), detector.model_points))])
    record = {"image": str(path), "width": width, "height": height, "K": intrinsics.K.tolist(),
              "intrinsics": source, "seconds": seconds, "detections": records, "notes": notes}
    return record, picture


def expand_images(paths: list[Path]) -> list[Path]:
    """The paths given, each folder replaced by its PNG/JPEG files (sorted by name)."""
    images = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{path} holds no {'/'.join(IMAGE_SUFFIXES)} images")
            images += found
        else:
            images.append(path)
    return images


def _picture_name(path: Path, used: set[str]) -> str:
    stem, k = path.stem, 2
    name = f"{stem}_detect.png"
    while name in used:  # two photos of the same name from different folders
        name, k = f"{stem}_{k}_detect.png", k + 1
    used.add(name)
    return name


def run_detect(config: DetectConfig, images: list[Path], refine: SilhouetteRefineConfig) -> tuple[dict, int]:
    """Detect in every image; write the pictures and detections.json. Returns the report and the skip count."""
    import torch  # lazy: torch is heavy

    from inerf_ros.posecnn.model import load_posecnn  # lazy: the network and its torch modules

    torch.set_num_threads(config.threads)
    camera_info = load_camera_info_yaml(config.camera_info) if config.camera_info else None
    detector = load_posecnn(config.model, config.device, refine=refine)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    records, skipped, used = [], 0, set()
    for path in images:
        try:
            record, picture = detect_one(detector, path, config, camera_info)
        except ImageError as error:
            print(f"{path}: skipped: {error}", file=sys.stderr)
            records.append({"image": str(path), "error": str(error)})
            skipped += 1
            continue
        record["picture"] = _picture_name(path, used)
        draw.write_png(out / record["picture"], picture)
        records.append(record)
        print(_summary_line(record))
    timed = [r["seconds"] for r in records if "seconds" in r]
    report = {"model": config.model, "classes": detector.class_names, "score_threshold": config.score_threshold,
              "threads": config.threads, "device": config.device, "silhouette_refine": refine.silhouette_refine,
              "median_seconds_per_image": float(np.median(timed)) if timed else None, "images": records}
    temporary = out / "detections.json.tmp"
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    temporary.replace(out / "detections.json")  # never a half-written detections.json
    return report, skipped


def _summary_line(record: dict) -> str:
    found = [f"{d['class']} {d['score']:.2f} at {d['cam_T_obj'][2]:.2f} m" for d in record["detections"]
             if d["reported"]]
    line = (f"{record['image']}: {len(found)} objects{': ' + ', '.join(found) if found else ''} "
            f"({record['seconds']:.3f} s; intrinsics: {record['intrinsics']})")
    return "\n".join([line] + [f"  note: {n}" for n in record["notes"]])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The image paths, DetectConfig's flags and the silhouette refinement's flags (as posecnn_node's parameters)."""
    parser.add_argument("images", nargs="+", type=Path, help="PNG/JPEG colour images, or folders of them")
    config_tools.add_arguments(parser, DetectConfig)
    config_tools.add_arguments(parser, SilhouetteRefineConfig)


def run(args: argparse.Namespace) -> int:
    """Detect in every image; 1 when some image was skipped (each said on stderr), else 0."""
    config = config_tools.from_args(DetectConfig, args)
    images = expand_images(list(args.images))
    report, skipped = run_detect(config, images, config_tools.from_args(SilhouetteRefineConfig, args))
    done = len(report["images"]) - skipped
    median = report["median_seconds_per_image"]
    timing = f"; median {median:.3f} s per image ({config.threads} thread(s), {config.device}, refinement " \
             f"{'on' if report['silhouette_refine'] else 'off'})" if median is not None else ""
    print(f"wrote {done} pictures and {Path(config.out) / 'detections.json'}{timing}")
    if skipped:
        print(f"{skipped} of {len(report['images'])} images skipped (see above)", file=sys.stderr)
        return 1
    return 0
