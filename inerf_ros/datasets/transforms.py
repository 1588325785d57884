"""Load posed images from a ``transforms.json`` (Blender, instant-ngp and nerfstudio flavours).

What is read:

* Intrinsics, shared (top level) or per frame (a frame's keys override the top level):
  ``camera_angle_x`` (+ optional ``camera_angle_y``; Blender: principal point at the image centre) or
  ``fl_x, fl_y, cx, cy`` (+ ``w, h``). transforms.json puts the centre of the top-left pixel at
  (0.5, 0.5); :class:`inerf_ros.camera.Intrinsics` puts it at (0, 0), so ``cx = cx_json - 0.5``.
* Distortion ``k1, k2, p1, p2`` (+ ``k3``, OpenCV ``plumb_bob``): the images are undistorted on load
  (same camera matrix; pixels that fall outside the photo are flagged in ``valid``).
* ``transform_matrix``: camera-to-world, OpenGL camera axes (x right, y up, z back) = ``nerf_T_cam``.
* ``aabb_scale`` (instant-ngp), optional ``scale``/``offset``; our own optional keys ``aabb`` (or
  ``scene_aabb``: [[xmin, ymin, zmin], [xmax, ymax, zmax]] in NeRF units) and ``metres_per_unit``
  (default 1.0).
* RGBA images are composited over ``background``; ``downscale`` shrinks images and intrinsics.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from inerf_ros.camera import Intrinsics

IMAGE_EXTENSIONS = ("", ".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG")
DISTORTION_KEYS = ("k1", "k2", "p1", "p2", "k3")


class DatasetError(ValueError):
    """A transforms.json or one of its images is malformed; the message names the file and the problem."""


@dataclasses.dataclass
class PosedImages:
    """Images with poses and intrinsics, in NeRF units.

    Attributes:
        images: (N, H, W, 3) float32 in [0, 1], composited over ``background``.
        nerf_T_cam: (N, 4, 4) float32 camera-to-NeRF poses, OpenGL camera axes.
        intrinsics: one pinhole :class:`Intrinsics` per frame (after undistortion and downscaling).
        file_names: image paths as written in the json, one per frame.
        valid: (N, H, W) bool, False where undistortion left no photo data.
        aabb: (2, 3) float32 scene bounds [min, max] in NeRF units.
        aabb_scale: instant-ngp's ``aabb_scale`` (1 when absent).
        metres_per_unit: metres per NeRF unit (json key ``metres_per_unit``; 1.0 when absent).
        background: RGB the transparent pixels were composited over.
        source: the json file.
        sparse_points: per frame, the (M, 3) float32 SfM points (NeRF frame) that the frame's photo
            observes, from the json's ``sparse_points`` file (written by ``inerf-ros sfm``); None without.
    """

    images: Tensor
    nerf_T_cam: Tensor
    intrinsics: list[Intrinsics]
    file_names: list[str]
    valid: Tensor
    aabb: Tensor
    aabb_scale: float = 1.0
    metres_per_unit: float = 1.0
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    source: str = ""
    sparse_points: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices) -> "PosedImages":
        """The frames at ``indices`` (a list of ints), everything else shared."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return dataclasses.replace(
            self, images=self.images[idx], nerf_T_cam=self.nerf_T_cam[idx], valid=self.valid[idx],
            intrinsics=[self.intrinsics[i] for i in idx.tolist()],
            file_names=[self.file_names[i] for i in idx.tolist()],
            sparse_points=None if self.sparse_points is None else [self.sparse_points[i] for i in idx.tolist()])

    def holdout_indices(self, every: int = 8) -> tuple[list[int], list[int]]:
        """Deterministic split: frame i is held out when ``i % every == 0``; returns (train, held_out)."""
        if every < 2:
            raise ValueError(f"every must be >= 2, got {every}")
        held = [i for i in range(len(self)) if i % every == 0]
        return [i for i in range(len(self)) if i % every != 0], held

    def split_holdout(self, every: int = 8) -> tuple["PosedImages", "PosedImages"]:
        """(training views, held-out views) with :meth:`holdout_indices`."""
        train, held = self.holdout_indices(every)
        return self.subset(train), self.subset(held)


def read_transforms_json(path: Path) -> dict:
    """The parsed transforms.json at ``path``; DatasetError unless it has a non-empty ``frames`` list."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: malformed JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise DatasetError(f"{path}: expected an object with a non-empty 'frames' list")
    return data


def resolve_transforms_path(path_or_dir, split: str | None = None) -> Path:
    """The json for ``path_or_dir``: the file itself, or ``transforms[_split].json`` in a folder."""
    path = Path(path_or_dir)
    if path.is_file():
        return path
    if not path.is_dir():
        raise DatasetError(f"{path}: no such file or folder")
    names = ([f"transforms_{split}.json"] if split else []) + ["transforms.json", "transforms_train.json"]
    for name in names:
        if (path / name).is_file():
            return path / name
    raise DatasetError(f"{path}: no {' / '.join(names)} in this folder")


def find_image(base: Path, file_path: str, json_path: Path) -> Path:
    """The image file of a frame's ``file_path`` (relative to ``base``; the extension may be omitted)."""
    candidate = (base / file_path)
    for ext in IMAGE_EXTENSIONS:
        p = candidate.with_name(candidate.name + ext) if ext else candidate
        if p.is_file():
            return p
    raise DatasetError(f"{json_path}: image {file_path!r} not found (looked for {candidate}[.png|.jpg])")


def frame_intrinsics(meta: dict, width: int, height: int, json_path: Path, index: int) -> Intrinsics:
    """Intrinsics in the OpenCV pixel convention for one frame (``meta`` = top level merged with frame)."""
    where = f"{json_path}: frame {index}"
    w, h = meta.get("w"), meta.get("h")
    if w is not None and h is not None and (int(w), int(h)) != (width, height):
        raise DatasetError(f"{where}: image is {width}x{height} but the json says w={w}, h={h}")
    try:
        if "fl_x" in meta:
            fx = float(meta["fl_x"])
            fy = float(meta.get("fl_y", fx))
            cx = float(meta.get("cx", width / 2)) - 0.5
            cy = float(meta.get("cy", height / 2)) - 0.5
        elif "camera_angle_x" in meta:
            fx = 0.5 * width / math.tan(0.5 * float(meta["camera_angle_x"]))
            fy = 0.5 * height / math.tan(0.5 * float(meta["camera_angle_y"])) if "camera_angle_y" in meta else fx
            cx, cy = (width - 1) / 2, (height - 1) / 2
        else:
            raise DatasetError(f"{where}: no intrinsics (need 'camera_angle_x' or 'fl_x', 'fl_y', 'cx', 'cy')")
        distortion = tuple(float(meta.get(k, 0.0)) for k in DISTORTION_KEYS)
    except (TypeError, ValueError) as error:
        if isinstance(error, DatasetError):
            raise
        raise DatasetError(f"{where}: bad intrinsics value ({error})") from None
    model = "plumb_bob" if any(abs(c) > 0 for c in distortion) else "none"
    # OpenCV's plumb_bob order is k1, k2, p1, p2, k3 (same as DISTORTION_KEYS).
    try:
        return Intrinsics(width, height, fx, fy, cx, cy, model, distortion if model != "none" else ())
    except ValueError as error:
        raise DatasetError(f"{where}: {error}") from None


def load_image(path: Path, background: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]; transparent pixels composited over ``background`` (3,)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P") or "transparency" in im.info:
                rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
                rgb = rgba[..., :3] * rgba[..., 3:] + background * (1.0 - rgba[..., 3:])
            else:
                rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, SyntaxError) as error:
        raise DatasetError(f"{path}: cannot read image ({error})") from None
    return rgb


def undistort_image(rgb: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """(undistorted image, (H, W) mask of the pixels with image content) for a distorted ``intr``."""
    import cv2  # lazy: OpenCV is heavy and only distorted data sets need it

    K = intr.K.copy()
    # OpenCV's remap uses the (0, 0)-centre convention like Intrinsics.
    dist = np.array(intr.distortion, dtype=np.float64)
    out = cv2.undistort(rgb, K, dist)
    ones = cv2.undistort(np.ones(rgb.shape[:2], np.float32), K, dist)
    return out, ones > 0.999


def resize_image(rgb: np.ndarray, valid: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, valid mask) box-filtered to ``width`` x ``height``; a pixel stays valid only if all its sources were."""
    # Resize in float to keep precision: PIL's 'F' mode, one channel at a time.
    chans = [np.asarray(Image.fromarray(rgb[..., c]).resize((width, height), Image.BOX)) for c in range(3)]
    mask = np.asarray(Image.fromarray(valid.astype(np.float32)).resize((width, height), Image.BOX)) > 0.999
    return np.stack(chans, -1).astype(np.float32), mask


def scene_aabb(data: dict, json_path: Path) -> tuple[np.ndarray, float]:
    """Scene bounds (2, 3) in NeRF units and ``aabb_scale``.

    ``aabb`` wins when present; otherwise instant-ngp's convention: its unit cube, mapped by
    ``ngp = x * scale + offset`` (defaults 0.33 and 0.5), grown ``aabb_scale`` times about its centre.
    """
    aabb_scale = float(data.get("aabb_scale", 1.0))
    key = "aabb" if "aabb" in data else "scene_aabb" if "scene_aabb" in data else None
    if key is not None:
        try:
            aabb = np.asarray(data[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise DatasetError(f"{json_path}: 'aabb' must be [[xmin, ymin, zmin], [xmax, ymax, zmax]]") from None
        if aabb.shape != (2, 3) or not np.all(aabb[1] > aabb[0]):
            raise DatasetError(f"{json_path}: 'aabb' must be [[xmin, ymin, zmin], [xmax, ymax, zmax]] with max > min")
        return aabb, aabb_scale
    scale = float(data.get("scale", 0.33))
    offset = np.asarray(data.get("offset", [0.5, 0.5, 0.5]), dtype=np.float64)
    centre = (0.5 - offset) / scale
    half = 0.5 * aabb_scale / scale
    return np.stack([centre - half, centre + half]), aabb_scale


def load_transforms(path_or_dir, downscale: float = 1, background=(1.0, 1.0, 1.0), split: str | None = None,
                    undistort: bool = True, stride: int = 1) -> PosedImages:
    """Read a transforms.json and its images.

    Args:
        path_or_dir: the json file, or a folder holding ``transforms[_split].json``.
        downscale: shrink factor (>= 1) for images and intrinsics, e.g. 4 turns 800x800 into 200x200.
        background: RGB in [0, 1] that transparent pixels are composited over.
        split: with a folder, prefer ``transforms_{split}.json``.
        undistort: undistort images with ``k1, k2, p1, p2, k3`` (otherwise keep the distortion model
            in the intrinsics, and :func:`inerf_ros.nerf.rays.pixel_rays` applies it).
        stride: keep every ``stride``-th frame only (large data sets).
    Raises:
        DatasetError: naming the file and the problem (malformed JSON, missing image, size mismatch, ...).
    """
    if downscale < 1:
        raise DatasetError(f"downscale must be >= 1, got {downscale}")
    json_path = resolve_transforms_path(path_or_dir, split)
    data = read_transforms_json(json_path)
    base = json_path.parent
    bg = np.asarray(background, dtype=np.float32).reshape(3)
    top = {k: v for k, v in data.items() if k != "frames"}
    images, poses, intrinsics, names, valids = [], [], [], [], []
    for i, frame in enumerate(data["frames"]):
        if i % stride:
            continue
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise DatasetError(f"{json_path}: frame {i} needs 'file_path' and 'transform_matrix'")
        try:
            pose = np.asarray(frame["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise DatasetError(f"{json_path}: frame {i} 'transform_matrix' is not a 4x4 matrix") from None
        if pose.shape == (3, 4):
            pose = np.vstack([pose, [0.0, 0.0, 0.0, 1.0]])
        if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise DatasetError(f"{json_path}: frame {i} 'transform_matrix' must be a finite 4x4 matrix")
        rotation = pose[:3, :3]
        # A zero or scaled rotation would only fail deep inside training (a camera with no viewing
        # direction); 1e-2 admits matrices printed with few decimals.
        if np.abs(rotation.T @ rotation - np.eye(3)).max() > 1e-2 or np.linalg.det(rotation) < 0:
            raise DatasetError(f"{json_path}: frame {i} 'transform_matrix' has no rotation in its upper-left 3x3 "
                               f"(R^T R must be the identity, det +1): {np.round(rotation, 4).tolist()}")
        image_path = find_image(base, str(frame["file_path"]), json_path)
        rgb = load_image(image_path, bg)
        height, width = rgb.shape[:2]
        intr = frame_intrinsics({**top, **frame}, width, height, json_path, i)
        valid = np.ones((height, width), dtype=bool)
        if undistort and intr.is_distorted:
            rgb, valid = undistort_image(rgb, intr)
            intr = dataclasses.replace(intr, distortion_model="none", distortion=())
        if downscale != 1:
            new_w, new_h = max(1, round(width / downscale)), max(1, round(height / downscale))
            rgb, valid = resize_image(rgb, valid, new_w, new_h)
            intr = intr.scaled(new_w / width) if new_h == round(height * new_w / width) else \
                dataclasses.replace(intr.scaled(new_w / width), height=new_h, fy=intr.fy * new_h / height,
                                    cy=(intr.cy + 0.5) * new_h / height - 0.5)
        if images and rgb.shape != images[0].shape:
            raise DatasetError(f"{json_path}: frame {i} ({image_path.name}) is {rgb.shape[1]}x{rgb.shape[0]}, "
                               f"frame 0 is {images[0].shape[1]}x{images[0].shape[0]}; all frames must match")
        images.append(rgb)
        poses.append(pose)
        intrinsics.append(intr)
        names.append(str(frame["file_path"]))
        valids.append(valid)
    aabb, aabb_scale = scene_aabb(data, json_path)
    metres_per_unit = float(data.get("metres_per_unit", 1.0))
    if not math.isfinite(metres_per_unit) or metres_per_unit <= 0:
        raise DatasetError(f"{json_path}: 'metres_per_unit' must be positive, got {metres_per_unit}")
    sparse_points = _load_sparse_points(base, data, names, json_path) if "sparse_points" in data else None
    return PosedImages(
        images=torch.from_numpy(np.stack(images)).float().clamp_(0, 1),
        nerf_T_cam=torch.from_numpy(np.stack(poses)).float(),
        intrinsics=intrinsics, file_names=names, valid=torch.from_numpy(np.stack(valids)),
        aabb=torch.from_numpy(aabb).float(), aabb_scale=aabb_scale, metres_per_unit=metres_per_unit,
        background=tuple(float(c) for c in bg), source=str(json_path), sparse_points=sparse_points)


def _load_sparse_points(base: Path, data: dict, names: list[str], json_path: Path) -> list[np.ndarray]:
    """Per frame, the SfM points its photo observes (the ``sparse_points`` npz: ``xyz`` (P, 3) in the
    NeRF frame, and per image file name ``frame/<name>`` (M,) indices into it). Read without pickle.
    """
    path = base / str(data["sparse_points"])
    try:
        with np.load(path, allow_pickle=False) as archive:
            xyz = archive["xyz"].astype(np.float32)
            index = {key[len("frame/"):]: archive[key] for key in archive.files if key.startswith("frame/")}
    except (OSError, ValueError, KeyError) as error:
        raise DatasetError(f"{json_path}: cannot read its sparse points {path} ({error})") from None
    points = []
    for name in names:
        ids = index.get(Path(name).name, np.zeros(0, dtype=np.int64))
        if ids.size and (ids.min() < 0 or ids.max() >= len(xyz)):
            raise DatasetError(f"{path}: point indices of {name} out of range")
        points.append(xyz[ids])
    return points
