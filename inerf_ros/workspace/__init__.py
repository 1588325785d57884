"""``inerf-ros build-workspace``: one capture (a robot bag or a photo folder) -> a metric, anchored workspace
(NeRF, ``localize.yaml``, report). Capture reading, alignment, anchors, report and the command live in
their own modules; this package re-exports the public names.
"""
from inerf_ros.workspace.alignment import (AlignmentConfig, DegenerateCaptureError, Similarity, fit_with_hand_eye,
                                           robust_similarity, umeyama)
from inerf_ros.workspace.anchors import AnchorConfig, Observation, fuse_anchors, scale_from_objects
from inerf_ros.workspace.capture import CaptureError
from inerf_ros.workspace.command import add_arguments, build_workspace, run
from inerf_ros.workspace.config import WorkspaceConfig

__all__ = ["AlignmentConfig", "AnchorConfig", "CaptureError", "DegenerateCaptureError", "Observation", "Similarity",
           "WorkspaceConfig", "add_arguments", "build_workspace", "fit_with_hand_eye", "fuse_anchors",
           "robust_similarity", "run", "scale_from_objects", "umeyama"]
