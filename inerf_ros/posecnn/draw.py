"""Pictures of PoseCNN's output: input | labels | poses drawn as projected model outlines.

Shared by ``inerf-ros detect`` (any photo) and ``inerf-ros eval-posecnn --out`` (rendered frames, with
the true poses beside the estimates), so that a user sees the same picture for both. Everything is
numpy + OpenCV on RGB uint8 images; poses are ``cam_T_obj`` (object model frame -> ROS optical
camera frame, metres) and ``K`` is the image's 3x3 camera matrix ((0, 0) = centre of the top-left pixel).

The outline of a pose is the model's projected silhouette: exact (rasterised triangles) when the
mesh is given, else the convex hull of the checkpoint's model points, the silhouette that the
detector's refinement fits. The model's bounding box and its axes (x red, y green, z blue) are
drawn thin on top so that a rotation error shows even where the outline is symmetric.
"""
from __future__ import annotations

import colorsys
import dataclasses
import math

import cv2
import numpy as np

_SHIFT = 4                      # fixed-point bits of OpenCV's drawing: sub-pixel outlines
_WHITE = (255, 255, 255)
_AXIS_COLOURS = ((230, 40, 40), (40, 200, 40), (60, 90, 255))  # x, y, z


@dataclasses.dataclass
class DrawnPose:
    """One pose to draw: its class (1-based, as in the label mask), name, pose and optional score."""

    class_id: int
    name: str
    cam_T_obj: np.ndarray       # (4, 4)
    score: float | None = None


def class_colours(count: int) -> np.ndarray:
    """(count + 1, 3) uint8 RGB, one bright colour per class; row 0 (background) is black.

    Hues are spread evenly (``count`` slots), visited with a stride so that consecutive class ids
    differ clearly, and neighbouring hue slots alternate in brightness: no two classes look alike.
    """
    colours = np.zeros((count + 1, 3), np.uint8)
    stride = max(1, round(0.382 * count))
    while math.gcd(stride, count) != 1:
        stride += 1
    for k in range(1, count + 1):
        slot = ((k - 1) * stride) % count
        value = 1.0 if slot % 2 == 0 else 0.7
        colours[k] = np.round(np.array(colorsys.hsv_to_rgb(0.02 + slot / count, 0.85, value)) * 255)
    return colours


def _font_scale(width: int) -> float:
    return max(0.35, min(1.0, width / 1000))


def _text(canvas: np.ndarray, text: str, origin, colour, scale: float) -> None:
    """Text on a dark box so that it reads on any background (``origin``: left end of the baseline)."""
    x, y = int(origin[0]), int(origin[1])
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(canvas, (x - 2, y - height - 2), (x + width + 2, y + baseline), (0, 0, 0), -1)
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, tuple(int(c) for c in colour), 1, cv2.LINE_AA)


def label_panel(image_rgb: np.ndarray, label_mask: np.ndarray, class_names: list[str]) -> np.ndarray:
    """The image dimmed, each class's pixels in its colour, and a legend of the classes present."""
    if label_mask.shape != image_rgb.shape[:2]:
        raise ValueError(f"label mask {label_mask.shape} does not match the image {image_rgb.shape[:2]}")
    colours = class_colours(len(class_names))
    labels = np.clip(label_mask.astype(np.int64), 0, len(class_names))
    dimmed = (0.45 * image_rgb.astype(np.float32)).astype(np.uint8)
    painted = np.where(labels[..., None] > 0, (0.35 * image_rgb + 0.65 * colours[labels]).astype(np.uint8), dimmed)
    present = [int(c) for c in np.unique(labels) if c > 0]
    scale = _font_scale(image_rgb.shape[1])
    step = int(22 * scale / 0.5)
    for row, class_id in enumerate(present):
        y = 8 + row * step
        cv2.rectangle(painted, (6, y), (6 + step - 6, y + step - 6), tuple(int(c) for c in colours[class_id]), -1)
        _text(painted, class_names[class_id - 1], (10 + step, y + step - 8), _WHITE, scale)
    if not present:
        _text(painted, "no object pixels", (8, 8 + step), _WHITE, scale)
    return painted


def project(points_obj: np.ndarray, cam_T_obj: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (n, 2) and depths (n,) of object-frame points (n, 3)."""
    p_cam = np.asarray(points_obj, float) @ cam_T_obj[:3, :3].T + cam_T_obj[:3, 3]
    z = p_cam[:, 2]
    uv = (p_cam @ np.asarray(K, float).T)[:, :2] / np.where(np.abs(z) < 1e-9, 1e-9, z)[:, None]
    return uv, z


def _fixed(uv: np.ndarray) -> np.ndarray:
    return np.round(uv * (1 << _SHIFT)).astype(np.int32)


def outline(cam_T_obj: np.ndarray, K: np.ndarray, size: tuple[int, int], points: np.ndarray | None = None,
            mesh: tuple[np.ndarray, np.ndarray] | None = None) -> list[np.ndarray]:
    """Closed polygons (each (k, 2) float pixels) of the model's projected silhouette; [] when behind the camera.

    ``mesh`` (vertices, faces): the exact silhouette (``size`` = the image's (width, height)); else the
    convex hull of ``points``.
    """
    if mesh is not None:
        vertices, faces = mesh
        uv, z = project(vertices, cam_T_obj, K)
        if np.any(z <= 1e-3):
            return []
        # Rasterised at 4x over the projection's box (clipped to half an image around the image, so that
        # an object at the border keeps its outline); the contour of the fine pixels is then within a
        # quarter pixel of the true silhouette.
        width, height = size
        lo = np.maximum(np.floor(uv.min(axis=0)) - 2, [-width / 2, -height / 2])
        hi = np.minimum(np.ceil(uv.max(axis=0)) + 2, [1.5 * width, 1.5 * height])
        if np.any(hi <= lo):
            return []
        fine = 4
        cols, rows = ((hi - lo) * fine).astype(int) + 1
        canvas = np.zeros((rows, cols), np.uint8)
        cv2.fillPoly(canvas, list(_fixed((uv - lo + 0.5) * fine - 0.5)[faces]), 1, lineType=cv2.LINE_8, shift=_SHIFT)
        contours, _ = cv2.findContours(canvas, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        # Straighten the fine pixels' staircase (else an anti-aliased line frays along it).
        contours = [cv2.approxPolyDP(c, 1.0, True) for c in contours]
        return [(c[:, 0, :].astype(float) + 0.5) / fine - 0.5 + lo for c in contours if len(c) >= 3]
    if points is None:
        raise ValueError("outline needs the model's points or its mesh")
    uv, z = project(points, cam_T_obj, K)
    if np.any(z <= 1e-3):
        return []
    return [cv2.convexHull(uv.astype(np.float32))[:, 0, :].astype(float)]


def _box_corners(points: np.ndarray) -> np.ndarray:
    lo, hi = points.min(axis=0), points.max(axis=0)
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


_BOX_EDGES = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)]


def draw_pose(canvas: np.ndarray, cam_T_obj: np.ndarray, K: np.ndarray, colour, points: np.ndarray,
              mesh: tuple[np.ndarray, np.ndarray] | None = None, text: str = "", thickness: int = 2,
              details: bool = True) -> None:
    """Draw one pose into ``canvas`` (H, W, 3) in place: outline, and (``details``) box, axes and ``text``."""
    colour = tuple(int(c) for c in colour)
    height, width = canvas.shape[:2]
    polygons = outline(cam_T_obj, K, (width, height), points=points, mesh=mesh)
    if not polygons:
        return
    cv2.polylines(canvas, [_fixed(p) for p in polygons], True, colour, thickness, cv2.LINE_AA, shift=_SHIFT)
    if not details:
        return
    corners, _ = project(_box_corners(points), cam_T_obj, K)
    for a, b in _BOX_EDGES:
        cv2.line(canvas, tuple(_fixed(corners[a])), tuple(_fixed(corners[b])), colour, 1, cv2.LINE_AA, _SHIFT)
    length = 0.5 * float(np.ptp(points, axis=0).max())
    axes, z = project(np.vstack([np.zeros(3), length * np.eye(3)]), cam_T_obj, K)
    if np.all(z > 1e-3):
        for k in range(3):
            cv2.line(canvas, tuple(_fixed(axes[0])), tuple(_fixed(axes[k + 1])), _AXIS_COLOURS[k], 2,
                     cv2.LINE_AA, _SHIFT)
    if text:
        every = np.vstack(polygons)
        x = float(np.clip(every[:, 0].min(), 2, width - 60))
        y = float(np.clip(every[:, 1].min() - 4, 14, height - 4))
        _text(canvas, text, (x, y), colour, _font_scale(width))


def pose_panel(image_rgb: np.ndarray, poses: list[DrawnPose], K: np.ndarray, class_count: int,
               points: dict[int, np.ndarray], meshes: dict[int, tuple] | None = None,
               truth: list[DrawnPose] | None = None) -> np.ndarray:
    """The image with every pose's outline in its class colour (``truth``: thin white outlines under them)."""
    canvas = np.ascontiguousarray((0.8 * image_rgb.astype(np.float32)).astype(np.uint8))
    meshes = meshes or {}
    for pose in truth or []:
        if pose.class_id in points:
            draw_pose(canvas, pose.cam_T_obj, K, _WHITE, points[pose.class_id], meshes.get(pose.class_id),
                      thickness=1, details=False)
    colours = class_colours(class_count)
    for pose in poses:
        if pose.class_id not in points:
            continue
        text = pose.name + (f" {pose.score:.2f}" if pose.score is not None else "")
        draw_pose(canvas, pose.cam_T_obj, K, colours[pose.class_id], points[pose.class_id],
                  meshes.get(pose.class_id), text=text)
    if not poses:
        _text(canvas, "no detections", (8, 24), _WHITE, _font_scale(canvas.shape[1]))
    return canvas


def side_by_side(panels: list[tuple[str, np.ndarray]], height: int | None = None) -> np.ndarray:
    """Panels (title, RGB image) resized to one ``height`` and put in a row, each under a title bar."""
    height = height or max(p.shape[0] for _, p in panels)
    row = []
    for title, panel in panels:
        width = max(1, round(panel.shape[1] * height / panel.shape[0]))
        resized = cv2.resize(panel, (width, height), interpolation=cv2.INTER_AREA) \
            if panel.shape[0] != height else panel
        bar = np.full((max(18, height // 16), width, 3), 32, np.uint8)
        _text(bar, title, (6, bar.shape[0] - 5), _WHITE, _font_scale(width) * 0.9)
        row.append(np.vstack([bar, resized]))
        row.append(np.full((row[-1].shape[0], 4, 3), 255, np.uint8))
    return np.hstack(row[:-1])


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of panels one under another (padded to the widest), with white gaps."""
    width = max(r.shape[1] for r in rows)
    out = []
    for r in rows:
        padded = np.full((r.shape[0], width, 3), 255, np.uint8)
        padded[:, :r.shape[1]] = r
        out += [padded, np.full((4, width, 3), 255, np.uint8)]
    return np.vstack(out[:-1])


def write_png(path, image_rgb: np.ndarray) -> None:
    """Write an RGB image as PNG (OpenCV writes BGR); an unwritable path raises OSError."""
    if not cv2.imwrite(str(path), np.ascontiguousarray(image_rgb[:, :, ::-1])):
        raise OSError(f"cannot write {path}")
