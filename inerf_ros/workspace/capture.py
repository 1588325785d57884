"""Reading a capture: a robot bag (images + camera_info + the arm's TF) or a plain photo folder.

From a bag, every ``every``-th image is kept, the sharpest of each run of ``every`` (motion blur
ruins SfM's features before anything else), with its intrinsics from camera_info and the arm's
*believed* camera pose ``base_T_cam`` looked up on the bag's own /tf + /tf_static at the image's
stamp: the chain robot_state_publisher published, as a user's bag holds it. Ground-truth frames
and topics are never read here. Distorted images are undistorted to the same camera matrix, so
that SfM can hold a PINHOLE camera fixed.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from inerf_ros.camera import Intrinsics
from inerf_ros.datasets.sfm import IMAGE_SUFFIXES


class CaptureError(ValueError):
    """A capture that cannot make a workspace; the message names what to record again."""


@dataclasses.dataclass
class CaptureImage:
    """One kept image of the capture."""

    name: str
    """File name under the capture's image folder (frame_<bag index>.png, or the photo's name)."""
    rgb: np.ndarray
    intrinsics: Intrinsics | None
    """Pinhole intrinsics (undistorted), None for a photo folder (SfM calibrates the camera)."""
    index: int = -1
    """Position among the bag's images (-1 for photos)."""
    stamp_s: float = 0.0
    base_T_cam: np.ndarray | None = None
    """(4, 4) the arm's believed optical camera pose in its base frame at the stamp (metres)."""
    base_T_tool: np.ndarray | None = None
    """(4, 4) the believed flange pose at the stamp, when the tool frame is on TF."""
    tool_T_cam: np.ndarray | None = None
    """(4, 4) the believed hand-eye transform (tool -> optical camera), when the tool frame is on TF."""
    sharpness: float = 0.0


@dataclasses.dataclass
class Capture:
    """The kept images of a capture and where they came from."""

    source: str
    kind: str
    """'bag' or 'photos'."""
    images: list[CaptureImage]
    camera_frame: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def has_arm(self) -> bool:
        """Whether the images carry the arm's camera poses (a bag), so scale and frame come from the arm."""
        return self.kind == "bag"


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: drops sharply with motion blur."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def undistort(rgb: np.ndarray, intrinsics: Intrinsics) -> tuple[np.ndarray, Intrinsics]:
    """The image as a pinhole camera with the same camera matrix would see it, and those intrinsics."""
    if not intrinsics.is_distorted:
        return rgb, dataclasses.replace(intrinsics, distortion_model="none", distortion=())
    k, d = intrinsics.K, np.asarray(intrinsics.distortion, dtype=np.float64)
    if intrinsics.distortion_model == "equidistant":
        out = cv2.fisheye.undistortImage(rgb, k, d[:4], Knew=k)
    else:
        out = cv2.undistort(rgb, k, d)
    return out, dataclasses.replace(intrinsics, distortion_model="none", distortion=())


def _check_chain(tree, base_frame: str, camera_frame: str, stamp_s: float) -> None:
    frames = tree.frames()
    if base_frame not in frames or camera_frame not in frames:
        missing = [f for f in (base_frame, camera_frame) if f not in frames]
        raise CaptureError(
            f"the bag's TF has no {' and no '.join(missing)} frame, so no {base_frame} -> {camera_frame} chain "
            f"(frames on TF: {', '.join(sorted(frames)) or 'none'}): record /tf and /tf_static with "
            "robot_state_publisher running and the camera mounted in the URDF, or pass --base-frame")
    ok, why = tree.can_lookup(base_frame, camera_frame, stamp_s)
    if not ok:
        raise CaptureError(f"TF cannot give {base_frame} -> {camera_frame} at the first image: {why}; record "
                           "/tf, /tf_static and /joint_states together with the images")


def _windows(bag, every: int, max_images: int):
    """The sharpest decodable frame of each run of ``every`` consecutive images."""
    best = None
    for frame in bag.frames(1):
        if frame.problem == "no camera_info":
            raise CaptureError(f"image {frame.index} has no camera_info: record the camera's CameraInfo topic "
                               f"({bag.topics.camera_info_topic}) with the images")
        if frame.problem or frame.rgb is None:
            continue
        score = sharpness(frame.rgb)
        if best is None or score > best[1]:
            best = (frame, score)
        if frame.index % every == every - 1:
            yield best
            best = None
        if max_images and frame.index + 1 >= every * max_images:
            break
    if best is not None:
        yield best


def read_bag(path, topics, base_frame: str, tool_frame: str, every: int, max_images: int = 0) -> Capture:
    """The kept images of a robot bag with the arm's believed camera poses (see the module docstring)."""
    # The bag reader (rosbags) loads only for bag input, not for a photo folder or --help.
    from inerf_ros.calibrate_command import tf_tree_of
    from inerf_ros.replay.bag import CameraBag

    with CameraBag(path, topics) as bag:
        if bag.num_images == 0:
            raise CaptureError(f"{path}: no images on {topics.image_topic}: " + "; ".join(bag.notes))
        if not bag.has_camera_info:
            raise CaptureError(f"{path}: no usable camera_info on {topics.camera_info_topic}: record the camera's "
                               "CameraInfo topic with the images (SfM and PoseCNN need the intrinsics)")
        tree = tf_tree_of(bag)
        capture = Capture(str(path), "bag", [])
        failed: list[str] = []
        for frame, score in _windows(bag, every, max_images):
            if not capture.camera_frame:
                capture.camera_frame = frame.frame_id.lstrip("/")
                _check_chain(tree, base_frame, capture.camera_frame, frame.stamp_s)
            try:
                base_T_cam = tree.lookup(base_frame, capture.camera_frame, frame.stamp_s)
            except LookupError as error:
                failed.append(f"image {frame.index}: {error}")
                continue
            base_T_tool = tool_T_cam = None
            if tool_frame in tree.frames():
                base_T_tool = tree.lookup(base_frame, tool_frame, frame.stamp_s)
                tool_T_cam = tree.lookup(tool_frame, capture.camera_frame, frame.stamp_s)
            rgb, intrinsics = undistort(frame.rgb, frame.intrinsics)
            capture.images.append(CaptureImage(f"frame_{frame.index:06d}.png", rgb, intrinsics, frame.index,
                                               frame.stamp_s, base_T_cam, base_T_tool, tool_T_cam, score))
        capture.notes += bag.problems.lines()
    if failed:
        capture.notes.append(f"{len(failed)} kept images had no {base_frame} -> camera pose on TF and were "
                             f"dropped (e.g. {failed[0]})")
    if tool_frame and capture.images and capture.images[0].base_T_tool is None:
        capture.notes.append(f"no {tool_frame} frame on TF: the hand-eye offset is not fitted")
    return capture


def read_photos(folder, max_images: int = 0) -> Capture:
    """Every photo of a folder (sorted by name; at most ``max_images`` spread evenly when given)."""
    folder = Path(folder)
    paths = sorted(p for p in folder.iterdir() if p.suffix in IMAGE_SUFFIXES)
    if max_images and len(paths) > max_images:
        paths = [paths[int(k)] for k in np.linspace(0, len(paths) - 1, max_images).round()]
    images = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CaptureError(f"{path}: not a readable image")
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        images.append(CaptureImage(path.stem + ".png", rgb, None, sharpness=sharpness(rgb)))
    return Capture(str(folder), "photos", images)


def write_images(capture: Capture, folder: Path) -> None:
    """Every kept image as a PNG under ``folder`` (SfM's input)."""
    folder.mkdir(parents=True, exist_ok=True)
    for image in capture.images:
        cv2.imwrite(str(folder / image.name), image.rgb[:, :, ::-1])


def known_intrinsics(capture: Capture) -> list[float]:
    """fx fy cx cy shared by every kept image (CameraInfo's convention), or [] when unknown or varying."""
    values = {(k.width, k.height, k.fx, k.fy, k.cx, k.cy) for k in (im.intrinsics for im in capture.images) if k}
    if len(values) != 1 or any(im.intrinsics is None for im in capture.images):
        return []
    return list(next(iter(values))[2:])
