"""``WorkspaceConfig``: what ``inerf-ros build-workspace`` reads, keeps and trains (one flag per field)."""
from __future__ import annotations

import dataclasses

from inerf_ros.config import option


@dataclasses.dataclass
class WorkspaceConfig:
    """What ``inerf-ros build-workspace`` reads, keeps and trains."""

    every: int = option(5, "bag: keep one image in every N, the sharpest of each run of N", range=(1, 100000))
    max_images: int = option(0, "keep at most this many images (0: all that --every keeps)", range=(0, 100000))
    image_topic: str = option("/camera/image_raw", "bag: sensor_msgs/Image topic of the camera")
    camera_info_topic: str = option("/camera/camera_info", "bag: sensor_msgs/CameraInfo topic of the camera")
    base_frame: str = option("base_link", "bag: the robot's base frame on TF (the frame world_T_nerf is given in)")
    tool_frame: str = option("tool0", "bag: the flange frame the camera hangs below (its offset is fitted); empty: "
                                      "do not fit it")
    sfm_max_image_size: int = option(1600, "SfM: longest image side for features (pixels)", range=(100, 10000))
    sfm_max_features: int = option(8192, "SfM: SIFT features per image", range=(500, 100000))
    min_registered: float = option(0.6, "SfM must register at least this fraction of the kept images (and at "
                                        "least 8)", range=(0.0, 1.0))
    posecnn_model: str = option("", "PoseCNN model directory (empty: the shipped models/posecnn_tabletop)")
    anchor_images: int = option(0, "run PoseCNN on at most this many posed images, spread over the capture (0: "
                                   "all; about 0.5-1.5 s each on one core)", range=(0, 100000))
    symmetric_classes: list = option([], "classes symmetric about their z axis (empty: those of "
                                         "config/initializer.yaml)")
    sfm: str = option("", "reuse this SfM folder (transforms.json of an earlier run on the same capture) "
                          "instead of running SfM")
    nerf: str = option("", "reuse this NeRF model directory instead of training one (it must be trained on "
                           "this capture's SfM frame: pass --sfm with the folder it was trained on)")
    nerf_minutes: float = option(15.0, "NeRF training budget, CPU minutes", range=(0.01, 100000.0))
    nerf_downscale: float = option(2.0, "NeRF training image downscale", range=(1.0, 64.0))
    nerf_args: list = option([], "more train-nerf flags, e.g. --nerf-args=--depth-weight=0.05 (one list item "
                                 "per flag; --flag=value form)")
    previews: int = option(4, "capture images with the anchors drawn on them in workspace.md", range=(0, 100))
    threads: int = option(1, "CPU threads of torch and SfM (0: all)", range=(0, 1024))
    device: str = option("cpu", "torch device of PoseCNN and the NeRF training", choices=("cpu", "cuda"))
    force: bool = option(False, "replace an existing --out workspace")
