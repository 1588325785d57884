"""Plain result types of the detector, free of torch so that the ROS-free initializer can import them."""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass
class Detection:
    """One object found in an image.

    ``cam_T_obj`` (4x4, float64) maps points of the object's model frame into the ROS optical camera
    frame (x right, y down, z forward), translation in metres. ``score`` is in [0, 1];
    ``visible_fraction`` (in [0, 1], or None when unknown) is the share of the object's projected
    silhouette that the label mask covers.
    """

    class_id: int
    class_name: str
    score: float
    cam_T_obj: np.ndarray
    visible_fraction: Optional[float] = None


@dataclasses.dataclass
class DetectionResult:
    """All detections of one image plus the per-pixel class labels (0 = background), image-sized."""

    objects: list[Detection]
    label_mask: np.ndarray
