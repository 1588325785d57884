"""``inerf-ros register MODEL_DIR DATA --images MORE --out NEW_DATA``: pose new photos by inverting a NeRF.

Self-supervised registration: every new photo gets a pose from the current NeRF, a photometric
verdict, and the accepted ones join the data set (a new ``transforms.json``); optionally a new
NeRF is trained on it and the held-out PSNR before / after is reported.

Per photo:

1. **Starts.** The ``neighbours`` registered views nearest in appearance (cosine similarity of a
   32x24 grey, zero-mean thumbnail) give their poses as starts; with ``pnp_starts`` the
   ``neighbours`` views with the most SIFT matches to the photo (matched at ``match_scale`` x the
   working size) give their poses and a PnP start each: the matched pixels of the view lifted to 3-D
   with the NeRF's rendered depth, ``solvePnPRansac``. Every start is scored by the photometric
   error of ``num_rays`` pixels (forward renders only).
2. **Refinement.** The best ``starts_refined`` starts are refined by iNeRF
   (:class:`inerf_ros.optim.inerf.PoseOptimizer`, ``num_hypotheses`` pan/tilt hypotheses around each).
3. **Verdict.** The refined pose with the lowest photometric error on a pixel grid (every
   ``check_stride``-th pixel in both directions) wins. Accepted when its PSNR reaches ``min_psnr``
   (0: automatic, the model's PSNR at the known poses of the data's held-out views minus
   ``psnr_margin_db``) *and* beats the photo's own flat mean colour by ``min_gain_db`` (a render
   that explains the photo no better than one grey level has not found it) *and*, when the photo
   has at least ``min_inliers`` SIFT matches to some view, that many of them reproject within 6 px
   (at 270 px wide) at the final pose (on a weak NeRF a wrong pose can reach a similar PSNR: a wall
   is a wall; features tell the basins apart).

Frames: transforms.json poses are OpenGL camera-to-NeRF; the optimizer works with ROS optical poses
(:mod:`inerf_ros.frames` converts). Photos go through the loader's path: undistorted with the data's
``k1, k2, p1, p2`` at full resolution, then shrunk by the model's training ``downscale``. A photo of
another size but the same aspect ratio uses scaled intrinsics (and is written resized to the data's
size); another aspect ratio is rejected.

Output ``NEW_DATA/transforms.json``: the original frames plus the accepted ones, ordered so that
``train-nerf --holdout-every k`` (k: the model's) holds out the same original views as before (new
frames fill any extra held-out slot); the images are copied to ``NEW_DATA`` (or referenced by
relative paths with ``--no-copy-images``). ``NEW_DATA/registration.md`` / ``.json``: the verdict table;
``NEW_DATA/previews/*.png``: photo | render at the final pose (verdict pixel grid).

The package: :mod:`.config` (the flags), :mod:`.photos` (photos and cameras), :mod:`.starts` (start
finding), :mod:`.verdict` (the verdict, pure functions), :mod:`.registrar` (refinement and judging),
:mod:`.output` (transforms.json, tables, report) and :mod:`.command` (the whole run, the CLI).
"""
from __future__ import annotations

from inerf_ros.register.command import add_arguments, register, retrain, run
from inerf_ros.register.config import RegisterConfig, RegistrationError
from inerf_ros.register.output import check_table, report, verdict_table, write_transforms
from inerf_ros.register.photos import Camera, data_camera, list_images, load_photo, thumbnail
from inerf_ros.register.registrar import Registrar
from inerf_ros.register.starts import Start, StartFinder
from inerf_ros.register.verdict import Candidate, Decision, Verdict, decide, pose_ambiguity

__all__ = ["Camera", "Candidate", "Decision", "RegisterConfig", "RegistrationError", "Registrar", "Start",
           "StartFinder", "Verdict", "add_arguments", "check_table", "data_camera", "decide", "list_images",
           "load_photo", "pose_ambiguity", "register", "report", "retrain", "run", "thumbnail", "verdict_table",
           "write_transforms"]
