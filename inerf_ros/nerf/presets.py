"""``train-nerf --preset``: the measured settings for each kind of data, and the choice from the data.

* ``object``: one object on a plain background (Blender's lego): a bounded box, a constant
  background, no regularisers (RESULTS.md: lego 29.6 dB in 15 min).
* ``capture``: a real hand-held or arm capture (a subject with a room behind it, SfM poses): an
  unbounded field (the box is the SfM points' region, space beyond it contracted), a colour gain and
  offset per photo, depth supervision from the SfM points when there are any, the distortion loss
  and a little plane smoothness (RESULTS.md: watch).
* ``inward``: a real capture photographed from outside its scene box (a subject on a table or a wall,
  cameras on an arc or a ring around it: instant-ngp's fox, the watch): a *bounded* box (the data's,
  grown 1.5x) with a lightfield background for what lies beyond, and the ``capture`` preset's
  per-photo colour, depth supervision and regularisers. On the watch photos, where every camera is
  outside the box, the contracted field left floaters in front of the clock in the held-out views
  (20.8 dB in 15 CPU minutes, the same with the points' box grown 1.9x); the bounded field, whose
  resolution all goes to the box the photos look into, reached 24.7 dB (RESULTS.md).
* ``tabletop``: the demo world rendered by ``inerf-ros make-scene`` (hemisphere views of the table):
  the settings of the shipped ``models/nerf_tabletop`` (big box, learned background).

``auto`` picks one from the data (:func:`choose_preset`); flags given on the command line override
the preset's values.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from inerf_ros.datasets.transforms import find_image

PRESET_NAMES = ("object", "capture", "inward", "tabletop")

# Values each preset sets (TrainConfig and FieldConfig field names); fields not named keep their defaults.
PRESETS: dict[str, dict] = {
    "object": {"batch_rays": 1024, "max_resolution": 256, "distortion_weight": 0.0, "occupancy_decay": 0.95,
               "occupancy_warmup": 8, "background_model": "constant", "contraction": "none"},
    "capture": {"contraction": "linf", "appearance": "affine", "depth_weight": 0.02, "tv_weight": 1e-4,
                "background_model": "constant", "batch_rays": 2048, "max_resolution": 512},
    "tabletop": {"contraction": "none", "background_model": "learned", "aabb": [-1.6, -1.4, -0.8, 1.6, 1.4, 0.8],
                 "batch_rays": 1024, "max_resolution": 512, "occupancy_warmup": 8},
}
# ``inward`` is ``capture`` (colour, depth, regularisers, batch, resolution) in a bounded, grown box.
PRESETS["inward"] = {**PRESETS["capture"], "contraction": "none", "aabb_grow": 1.5, "background_model": "lightfield"}

# A border pixel "is background" within this of the background colour (8-bit rounding and antialiasing).
BACKGROUND_TOLERANCE = 0.02
# Share of border pixels on the background colour above which a data set shows an object on a plain background.
PLAIN_BACKGROUND_SHARE = 0.9
# Cameras "surround" the scene when the mean of their horizontal unit directions from its centre is
# shorter than this (0 for views all around, ~0.9 for a 100 degree arc in front).
SURROUND_RESULTANT = 0.5
# ``inward``: no camera inside the data's box grown by the preset's factor (the box then holds what the
# photos look at, and nothing the cameras stand in).
INWARD_BOX_GROWTH = PRESETS["inward"]["aabb_grow"]
# Longest image side that an automatic downscale aims for: enough texels per pixel for a 15 minute CPU budget.
AUTO_LONGEST_SIDE = 400


def auto_downscale(json_path: Path) -> float:
    """Smallest integer factor that brings the images' longest side to at most ``AUTO_LONGEST_SIDE`` pixels.

    The size comes from the json's ``w``/``h`` or else the first frame's image header.
    """
    data = json.loads(Path(json_path).read_text())
    width, height = data.get("w"), data.get("h")
    if not (width and height):
        frame = data["frames"][0]
        with Image.open(find_image(Path(json_path).parent, str(frame["file_path"]), Path(json_path))) as image:
            width, height = image.size
    return float(max(1, math.ceil(max(int(width), int(height)) / AUTO_LONGEST_SIDE)))


def plain_background_share(images, background) -> float:
    """Share of the border pixels of ``images`` (N, H, W, 3) within ``BACKGROUND_TOLERANCE`` of ``background``."""
    images = np.asarray(images)
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    close = np.abs(border - np.asarray(background, dtype=np.float32)).max(-1) <= BACKGROUND_TOLERANCE
    return float(close.mean())


def surround_resultant(nerf_T_cams: np.ndarray, centre: np.ndarray) -> float:
    """Length of the mean horizontal unit direction from ``centre`` to the cameras (OpenGL poses (N, 4, 4));
    "horizontal" is orthogonal to the cameras' mean up axis.
    """
    poses = np.asarray(nerf_T_cams, dtype=np.float64)
    up = poses[:, :3, 1].mean(0)
    up /= max(np.linalg.norm(up), 1e-9)
    offsets = poses[:, :3, 3] - np.asarray(centre, dtype=np.float64)
    flat = offsets - (offsets @ up)[:, None] * up
    norms = np.linalg.norm(flat, axis=1)
    flat = flat[norms > 1e-9] / norms[norms > 1e-9, None]
    return float(np.linalg.norm(flat.mean(0))) if len(flat) else 1.0


def cameras_inside(nerf_T_cams: np.ndarray, aabb, growth: float = 1.0) -> int:
    """How many cameras (OpenGL poses (N, 4, 4)) stand inside ``aabb`` (2, 3) grown ``growth``x about its centre."""
    box = np.asarray(aabb, dtype=np.float64)
    centre, half = box.mean(0), 0.5 * (box[1] - box[0]) * growth
    centres = np.asarray(nerf_T_cams, dtype=np.float64)[:, :3, 3]
    return int(np.all(np.abs(centres - centre) <= half, axis=1).sum())


def choose_preset(data, json_keys: set[str]) -> tuple[str, str]:
    """The preset for a loaded data set (:class:`inerf_ros.datasets.transforms.PosedImages`) and why.

    In order: SfM points -> ``inward`` when no camera stands in the data's box grown
    ``INWARD_BOX_GROWTH``x, else ``capture`` (a real capture; unbounded around the cameras); images
    mostly on the plain background colour -> ``object``; the demo world's json (``world_frame``) with
    cameras all around -> ``tabletop``; anything else (a forward-facing or otherwise unknown capture)
    -> ``capture``.
    """
    if data.sparse_points is not None and any(len(p) for p in data.sparse_points):
        inside = cameras_inside(data.nerf_T_cam.numpy(), data.aabb.numpy(), INWARD_BOX_GROWTH)
        if inside == 0:
            return "inward", (f"the data has SfM points and all {len(data.nerf_T_cam)} cameras stand outside its box "
                              f"grown {INWARD_BOX_GROWTH:g}x (a real capture looking in: bounded, lightfield "
                              "background, per-photo colour, depth supervision)")
        return "capture", (f"the data has SfM points and {inside} of {len(data.nerf_T_cam)} cameras stand inside its "
                           f"box grown {INWARD_BOX_GROWTH:g}x (a real capture: unbounded, per-photo colour, depth "
                           "supervision)")
    share = plain_background_share(data.images.numpy(), data.background)
    if share >= PLAIN_BACKGROUND_SHARE:
        return "object", f"{100 * share:.0f} % of the image borders are the plain background colour (an object)"
    resultant = surround_resultant(data.nerf_T_cam.numpy(), data.aabb.numpy().mean(0))
    if "world_frame" in json_keys and resultant < SURROUND_RESULTANT:
        return "tabletop", (f"the demo world's data (make-scene) with cameras all around the table "
                            f"(mean horizontal direction {resultant:.2f})")
    layout = "cameras all around" if resultant < SURROUND_RESULTANT else "forward-facing cameras"
    return "capture", (f"a textured background and {layout} (mean horizontal direction {resultant:.2f}), "
                       "no SfM points: an unbounded capture")
