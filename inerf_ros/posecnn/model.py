"""PoseCNN inference: image (+ K) -> [(class, score, cam_T_obj)] + label mask; checkpoints (safetensors + JSON).

How intrinsics are used (also written into every checkpoint's JSON, ``intrinsics_usage``):
the image is resized to the network's input size and K is scaled with it (pixel centres kept,
(0, 0) = centre of the top-left pixel). The 2D centre comes from Hough voting in input pixels.
The depth head predicts a *normalised* depth ``d = z * f_ref / fy_in`` (``fy_in`` = the focal
length at the input size, ``f_ref`` stored in the checkpoint), because an object's apparent size
depends on ``z / f``: ``z = d * fy_in / f_ref``, so a camera with another focal length keeps
working. Then ``t = z * K_in^-1 [u, v, 1]`` and ``cam_R_obj = ray_rotation(u, v) @ allo_R_obj``.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from inerf_ros.camera import Intrinsics
from inerf_ros.posecnn.hough import hough_vote
from inerf_ros.posecnn.network import BACKBONES, PoseCNN, normalise, quat_to_matrix, ray_rotation
from inerf_ros.posecnn.refine import SilhouetteRefineConfig, SilhouetteRefiner
from inerf_ros.posecnn.types import Detection, DetectionResult

__all__ = ["Detection", "DetectionResult", "PoseCNNDetector", "load_posecnn", "save_checkpoint",
           "check_class_table", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "inerf_ros.posecnn/1"
WEIGHTS_FILE = "posecnn.safetensors"
META_FILE = "posecnn.json"
INTRINSICS_USAGE = (
    "image resized to input_width x input_height, K scaled with it (pixel (0,0) = centre of the top-left "
    "pixel); centre (u, v) by Hough voting in input pixels; depth z = d * fy_in / reference_focal where d is "
    "the network's normalised depth and fy_in the focal length at the input size; t = z K_in^-1 [u v 1]; "
    "cam_R_obj = R(optical axis -> ray through (u, v)) @ allocentric rotation")


def scaled_K(K: np.ndarray, width: int, height: int, new_width: int, new_height: int) -> np.ndarray:
    """K of an image resized from width x height to new_width x new_height (pixel centres kept)."""
    return Intrinsics(width, height, K[0, 0], K[1, 1], K[0, 2], K[1, 2]).resized(new_width, new_height).K


def check_class_table(meta: dict, class_names, source: str) -> None:
    """Raise ValueError unless the checkpoint's classes are exactly ``class_names`` (in label order)."""
    have = [c["name"] for c in meta["classes"]]
    want = list(class_names)
    if have != want:
        raise ValueError(
            f"{source}: this checkpoint was trained for the classes {have} (label ids 1..{len(have)}), but "
            f"the scene/config expects {want}; train a model for this class table (inerf-ros train-posecnn) "
            f"or pass the matching model directory")


def save_checkpoint(model_dir, network: PoseCNN, meta: dict, model_points: dict[int, np.ndarray]) -> None:
    """Write ``posecnn.safetensors`` (weights + per-class model points) and ``posecnn.json``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    for class_id, points in model_points.items():
        tensors[f"points.{class_id}"] = torch.as_tensor(np.asarray(points, dtype=np.float32))
    save_file(tensors, str(model_dir / WEIGHTS_FILE))
    meta = dict(meta, format=CHECKPOINT_FORMAT, intrinsics_usage=INTRINSICS_USAGE)
    (model_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def read_meta(model_dir) -> dict:
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {model_dir} is not a PoseCNN model directory "
                                f"(train one with `inerf-ros train-posecnn`)")
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r} is not {CHECKPOINT_FORMAT!r}")
    check_meta(meta, str(path))
    return meta


# The metadata's numbers, with the ranges a real model has: the network is built from them before a
# weight is read, so a huge width would allocate gigabytes, and a zero size or focal length would
# start a node that fails or detects nothing on every frame.
META_SCHEMA = {  # key: (type, low, high, required)
    "width": (int, 1, 1024, True), "decoder_width": (int, 1, 2048, True), "fc_width": (int, 1, 8192, False),
    "roi_size": (int, 1, 64, False), "input_width": (int, 16, 4096, True), "input_height": (int, 16, 4096, True),
    "reference_focal": (float, 1e-3, 1e6, True),
}
MAX_CLASSES = 1000


def check_meta(meta: dict, source: str) -> None:
    """Raise ValueError (naming ``source`` and the field) unless ``meta`` fits :data:`META_SCHEMA`,
    names a known backbone and holds 1 to ``MAX_CLASSES`` uniquely named classes.
    """
    for key, (kind, low, high, required) in META_SCHEMA.items():
        if key not in meta:
            if required:
                raise ValueError(f"{source}: missing field {key!r}")
            continue
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise ValueError(f"{source}: {key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
        if not low <= value <= high:   # also refuses NaN
            raise ValueError(f"{source}: {key} = {value!r} is out of range [{low:g}, {high:g}]")
    if meta.get("backbone") not in BACKBONES:
        raise ValueError(f"{source}: backbone {meta.get('backbone')!r} is not one of {', '.join(BACKBONES)}")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and c["name"] for c in classes):
        raise ValueError(f"{source}: classes must be a list of 1 to {MAX_CLASSES} entries {{\"name\": ...}}")
    names = [c["name"] for c in classes]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: class names repeat: {names}")


class PoseCNNDetector:
    """A trained PoseCNN with its geometry: ``detect(image_rgb, K) -> DetectionResult``."""

    def __init__(self, network: PoseCNN, meta: dict, model_points: dict[int, np.ndarray],
                 device: str | torch.device = "cpu", min_pixels: int = 20,
                 refine: SilhouetteRefineConfig | None = None) -> None:
        self.network = network.to(device).eval()
        self.meta = meta
        self.device = torch.device(device)
        self.class_names = [c["name"] for c in meta["classes"]]
        self.model_points = model_points
        self.input_size = (int(meta["input_width"]), int(meta["input_height"]))
        self.reference_focal = float(meta["reference_focal"])
        # Minimum labelled pixels (at the input size) for an object to be voted for.
        self.min_pixels = min_pixels
        # Hough voting: a pixel votes for a candidate centre when its predicted direction is within
        # acos(cos_threshold) of the direction to the candidate.
        self.cos_threshold = 0.99
        self._generator = torch.Generator().manual_seed(0)
        self.refiner = SilhouetteRefiner(model_points, refine)

    @torch.no_grad()
    def detect(self, image_rgb: np.ndarray, K: np.ndarray) -> DetectionResult:
        """Detect the known objects in ``image_rgb`` (H, W, 3) uint8 with camera matrix ``K`` (3, 3).

        Returns poses ``cam_T_obj`` in the ROS optical frame of the camera, metres, and the label mask
        (H, W) (0 = background, i = class i, ``class_names[i - 1]``).
        """
        image_rgb = np.asarray(image_rgb)
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image_rgb.shape} {image_rgb.dtype}")
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)):
            raise ValueError(f"K must be a finite 3x3 matrix, got {K.tolist()}")
        height, width = image_rgb.shape[:2]
        in_w, in_h = self.input_size
        resized = cv2.resize(image_rgb, (in_w, in_h), interpolation=cv2.INTER_AREA)
        K_in = scaled_K(K, width, height, in_w, in_h)
        x = normalise(torch.from_numpy(resized)[None].to(self.device))
        outputs = self.network(x)
        probs = outputs["logits"][0].softmax(0)
        labels = probs.argmax(0)
        objects, rois = self._vote(probs, labels, outputs["vertex"][0], K_in)
        if rois:
            boxes = torch.tensor([r["box"] for r in rois], dtype=torch.float32, device=self.device)
            classes = torch.tensor([r["class_id"] - 1 for r in rois], device=self.device)
            quats = self.network.quaternions(outputs, boxes, torch.zeros_like(classes), classes)
            centres = torch.tensor([r["centre"] for r in rois], dtype=torch.float64)
            ray_R = ray_rotation(centres, torch.as_tensor(K_in))
            cam_R_obj = ray_R @ quat_to_matrix(quats.double().cpu())
            for det, rotation in zip(objects, cam_R_obj.numpy()):
                det.cam_T_obj[:3, :3] = rotation
            if self.refiner.config.silhouette_refine:
                refined = self.refiner.refine([d.class_id for d in objects], [d.cam_T_obj for d in objects],
                                              probs, labels, K_in)
                for det, fit in zip(objects, refined):
                    det.cam_T_obj = fit.cam_T_obj
            for det in objects:
                det.visible_fraction = self._visible_fraction(det, K_in, in_w, in_h, rois)
        # The label mask at the caller's resolution: upsample the logits, not the labels.
        full = F.interpolate(outputs["logits"], size=(height, width), mode="bilinear", align_corners=False)
        label_mask = full[0].argmax(0).to(torch.uint8).cpu().numpy()
        return DetectionResult(objects=objects, label_mask=label_mask)

    def _vote(self, probs, labels, vertex, K_in):
        in_w, in_h = self.input_size
        objects, rois = [], []
        n = len(self.class_names)
        vertex = vertex.view(n, 3, in_h, in_w)
        for class_id in range(1, n + 1):
            mask = labels == class_id
            count = int(mask.sum())
            if count < self.min_pixels:
                continue
            vs, us = torch.nonzero(mask, as_tuple=True)
            directions = vertex[class_id - 1, :2, vs, us].T
            pixels = torch.stack([us, vs], dim=1).float()
            vote = hough_vote(pixels, directions, in_w, in_h, margin=in_w // 4, max_voters=250,
                              cos_threshold=self.cos_threshold, generator=self._generator)
            if vote is None:
                continue
            depth_norm = vertex[class_id - 1, 2, vs, us][vote.inliers].mean()
            z = float(depth_norm) * K_in[1, 1] / self.reference_focal
            if not np.isfinite(z) or z <= 0:
                continue
            u, v = (float(c) for c in vote.centre)
            cam_T_obj = np.eye(4)
            cam_T_obj[:3, 3] = z * np.linalg.solve(K_in, [u, v, 1.0])
            score = float(probs[class_id][mask].mean()) * min(1.0, vote.inlier_ratio / 0.5)
            objects.append(Detection(class_id, self.class_names[class_id - 1], score, cam_T_obj, None))
            box = (float(us.min()) - 0.5, float(vs.min()) - 0.5, float(us.max()) + 0.5, float(vs.max()) + 0.5)
            rois.append({"class_id": class_id, "box": box, "centre": (u, v), "count": count})
        return objects, rois

    def _visible_fraction(self, det: Detection, K_in, in_w, in_h, rois) -> float | None:
        """Labelled pixels / area of the convex hull of the projected model points (inside the image)."""
        points = self.model_points.get(det.class_id)
        if points is None:
            return None
        p_cam = points @ det.cam_T_obj[:3, :3].T + det.cam_T_obj[:3, 3]
        if np.any(p_cam[:, 2] <= 1e-3):
            return None
        uv = (p_cam @ K_in.T)[:, :2] / p_cam[:, 2:3]
        hull = cv2.convexHull(uv.astype(np.float32))
        canvas = np.zeros((in_h, in_w), np.uint8)
        cv2.fillConvexPoly(canvas, np.round(hull).astype(np.int32), 1)
        area = int(canvas.sum())
        count = next(r["count"] for r in rois if r["class_id"] == det.class_id)
        return float(min(1.0, count / area)) if area > 0 else None


def build_network(meta: dict) -> PoseCNN:
    return PoseCNN(len(meta["classes"]), backbone=meta["backbone"], width=int(meta["width"]),
                   decoder_width=int(meta["decoder_width"]), roi_size=int(meta.get("roi_size", 7)),
                   fc_width=int(meta.get("fc_width", 256)))


def load_posecnn(model_dir, device: str | torch.device = "cpu", class_names=None,
                 refine: SilhouetteRefineConfig | None = None) -> PoseCNNDetector:
    """Load a model directory written by ``inerf-ros train-posecnn``.

    ``class_names`` (optional): the class table the caller expects (label order); a checkpoint
    trained for other classes is refused with a message naming both tables. ``refine``: the
    silhouette refinement of the detected poses (default: on, with its default settings).
    """
    meta = read_meta(model_dir)
    if class_names is not None:
        check_class_table(meta, class_names, str(Path(model_dir) / META_FILE))
    path = Path(model_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        tensors = load_file(str(path))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own types for truncated/foreign files
        raise ValueError(f"{path}: not a readable safetensors file ({type(error).__name__}: {error})") from None
    network = build_network(meta)
    state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path}: the weights do not fit the architecture in {META_FILE}: {error}") from None
    points = {int(k.split(".")[1]): v.double().numpy() for k, v in tensors.items() if k.startswith("points.")}
    return PoseCNNDetector(network, meta, points, device, refine=refine)
