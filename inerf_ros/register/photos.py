"""Photos and cameras: the images to register, read and undistorted the way the data loader reads a
data set's own images, and the data's camera at the full and the working resolution.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from inerf_ros.camera import Intrinsics
from inerf_ros.datasets.transforms import (DatasetError, find_image, frame_intrinsics, load_image, resize_image,
                                           undistort_image)
from inerf_ros.register.config import RegistrationError
from inerf_ros.register.verdict import Verdict

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


@dataclasses.dataclass
class Camera:
    """The data's shared camera at full resolution and at the working resolution."""

    full: Intrinsics
    work: Intrinsics


def list_images(sources) -> tuple[list[Path], list[Verdict]]:
    """Image files named by ``sources`` (folders and files, in order); missing ones come back as rejections."""
    found, missing = [], []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise RegistrationError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            missing.append(Verdict(image=path.name or str(path), accepted=False, reason=f"not found: {path}",
                                   source_path=str(path)))
    if not found and not missing:
        raise RegistrationError("no images to register")
    return found, missing


def thumbnail(image: np.ndarray, size=(32, 24)) -> np.ndarray:
    """A unit-norm, zero-mean grey thumbnail of an (H, W, 3) float image: the global appearance descriptor."""
    grey = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    width, height = size if image.shape[1] >= image.shape[0] else size[::-1]
    small = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA).astype(np.float64).reshape(-1)
    small -= small.mean()
    return small / max(np.linalg.norm(small), 1e-9)


def data_camera(json_path: Path, data_json: dict) -> Intrinsics:
    """Full-resolution intrinsics (with distortion) of the data's camera, read as the loader reads them."""
    top = {k: v for k, v in data_json.items() if k != "frames"}
    first = data_json["frames"][0]
    meta = {**top, **first}
    if meta.get("w") and meta.get("h"):
        width, height = int(meta["w"]), int(meta["h"])
    else:
        with Image.open(find_image(json_path.parent, str(first["file_path"]), json_path)) as im:
            width, height = im.size
    return frame_intrinsics(meta, width, height, json_path, 0)


def load_photo(path: Path, camera: Camera, background) -> tuple[np.ndarray, list | None]:
    """A photo as the loader would give it at the working resolution: (H, W, 3) float32 in [0, 1].

    Returns the image and, when its size differed from the data's, its original [width, height].
    Raises ``ValueError`` with the reason when the photo cannot be used.
    """
    try:
        rgb = load_image(path, np.asarray(background, dtype=np.float32))
    except DatasetError as error:
        raise ValueError(f"unreadable image ({str(error).split(': ', 1)[-1]})") from None
    height, width = rgb.shape[:2]
    full = camera.full
    resized_from = None
    if (width, height) != (full.width, full.height):
        if abs(width / height - full.width / full.height) > 0.01 * full.width / full.height:
            raise ValueError(f"image is {width}x{height}, the data's camera is {full.width}x{full.height}: "
                             "another aspect ratio, its intrinsics are unknown")
        full = full.resized(width, height)
        resized_from = [width, height]
    valid = np.ones((height, width), dtype=bool)
    if full.is_distorted:
        rgb, valid = undistort_image(rgb, full)
    if (width, height) != (camera.work.width, camera.work.height):
        rgb, _ = resize_image(rgb, valid, camera.work.width, camera.work.height)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32), resized_from
