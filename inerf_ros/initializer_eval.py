"""``inerf-ros eval-prior``: how far the fused camera prior is from the true camera, on held-out frames.

Runs PoseCNN (or, with ``--detections ground_truth``, the true object poses: a check of the
geometry) on each frame, fuses the detections with :class:`~inerf_ros.initializer.CameraPriorEstimator`
and compares ``nerf_T_cam`` with the true ``world_T_cam`` (the scene's NeRF frame is its world
frame). Errors: geodesic rotation angle of ``R_est^T R_gt`` (degrees) and the distance between the
camera centres (metres). A frame without a prior counts as a failure of the 15 deg / 10 cm rate.

Object poses in the NeRF frame come from ``--config`` (an initializer YAML) or, by default, from
the scene's ``objects.yaml`` (its ``continuous_z`` classes become ``symmetric_classes``). In
``distance_only`` mode the camera hint is the true camera pose perturbed by a rotation of
``--hint-rotation-deg`` about a random axis and a shift of ``--hint-translation-m`` in a random
direction (a stand-in for the previous estimate).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from inerf_ros import config as config_tools
from inerf_ros.config import option
from inerf_ros.initializer import CameraPriorEstimator, InitializerConfig, load_config, rotation_angle_deg
from inerf_ros.object_table import initializer_config
from inerf_ros.posecnn.model import load_posecnn
from inerf_ros.posecnn.refine import SilhouetteRefineConfig
from inerf_ros.posecnn.types import Detection
from inerf_ros.scene.dataset import load_class_table, load_frames
from inerf_ros.evaluation import print_and_save_report


@dataclasses.dataclass
class PriorEvalConfig:
    """Evaluation of the camera prior on a rendered scene's held-out split."""

    scene: str = option("", "scene directory (make-scene --out)", read_only=True)
    model: str = option("models/posecnn_tabletop", "PoseCNN model directory", read_only=True)
    split: str = option("posecnn_test", "held-out split")
    detections: str = option("posecnn", "where detections come from", choices=("posecnn", "ground_truth"))
    config: str = option("", "initializer YAML (default: the scene's objects.yaml with default options)")
    mode: str = option("", "override the initializer mode (full | distance_only; empty: from the config)")
    fusion: str = option("", "override the fusion (average | alignment | auto; empty: from the config)")
    hint_rotation_deg: float = option(10.0, "distance_only: rotation error of the camera hint, degrees",
                                      range=(0.0, 180.0))
    hint_translation_m: float = option(0.1, "distance_only: position error of the camera hint, metres",
                                       range=(0.0, 1e6))
    max_frames: int = option(0, "evaluate at most this many frames (0: all)", range=(0, 10**9))
    threads: int = option(2, "torch CPU threads", range=(1, 256))
    seed: int = option(0, "seed of the hint perturbations", range=(0, 2**31 - 1))
    out: str = option("", "write the figures to this JSON file too")


def initializer_config_from_scene(scene_dir) -> InitializerConfig:
    """Default options with the scene's object poses (``objects.yaml``: NeRF frame = world frame)."""
    path = Path(scene_dir) / "objects.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {scene_dir} written by `inerf-ros make-scene`?")
    return initializer_config(path)


def _perturbed(pose: np.ndarray, rotation_deg: float, translation: float, rng: np.random.Generator) -> np.ndarray:
    axis = rng.normal(size=3)
    out = pose.copy()
    out[:3, :3] = Rotation.from_rotvec(axis / np.linalg.norm(axis) * math.radians(rotation_deg)).as_matrix() @ pose[
        :3, :3]
    direction = rng.normal(size=3)
    out[:3, 3] += translation * direction / np.linalg.norm(direction)
    return out


def evaluate(config: PriorEvalConfig, refine: SilhouetteRefineConfig | None = None, progress: bool = True) -> dict:
    """``refine``: the detector's ``SilhouetteRefineConfig`` (None: its defaults)."""
    torch.set_num_threads(config.threads)
    init_config = load_config(config.config) if config.config else initializer_config_from_scene(config.scene)
    if config.mode:
        init_config = dataclasses.replace(init_config, mode=config.mode)
    if config.fusion:
        init_config = dataclasses.replace(init_config, fusion=config.fusion)
    estimator = CameraPriorEstimator(init_config)
    mpu = init_config.metres_per_unit
    detector = None
    if config.detections == "posecnn":
        classes = load_class_table(config.scene)
        detector = load_posecnn(config.model, "cpu", class_names=[classes[i].name for i in sorted(classes)],
                                refine=refine)
    rng = np.random.default_rng(config.seed)
    rows = []
    frames = load_frames(config.scene, config.split, images=detector is not None)
    for count, frame in enumerate(tqdm(frames, desc="eval-prior", unit="frame", disable=not progress)):
        if config.max_frames and count >= config.max_frames:
            break
        if detector is not None:
            detections = detector.detect(frame.rgb, frame.intrinsics.K).objects
        else:
            detections = [Detection(o.class_id, o.class_name, 1.0, o.cam_T_obj, o.visible_fraction)
                          for o in frame.objects if o.visible_fraction > 0]
        world_T_cam = frame.world_T_cam_optical
        hint = None
        if init_config.mode == "distance_only":
            hint = _perturbed(world_T_cam, config.hint_rotation_deg, config.hint_translation_m, rng)
            hint[:3, 3] /= mpu
        prior = estimator.estimate(detections, nerf_T_cam_hint=hint)
        row = {"frame": frame.index, "status": prior.status, "reason": prior.reason, "used": len(prior.used),
               "detections": len(detections)}
        if prior.ok:
            row["rot_deg"] = float(rotation_angle_deg(prior.nerf_T_cam[:3, :3], world_T_cam[:3, :3]))
            row["trans_m"] = float(np.linalg.norm(prior.nerf_T_cam[:3, 3] * mpu - world_T_cam[:3, 3]))
            row["sigma_trans_m"] = float(math.sqrt(np.trace(prior.covariance[:3, :3]) / 3) * mpu)
        rows.append(row)
    ok = [r for r in rows if r["status"] == "ok"]
    rot = np.array([r["rot_deg"] for r in ok])
    trans = np.array([r["trans_m"] for r in ok])
    within = sum(1 for r in ok if r["rot_deg"] <= 15.0 and r["trans_m"] <= 0.10)

    def percentiles(x):
        return {f"p{q}": float(np.percentile(x, q)) for q in (10, 25, 50, 75, 90)} if len(x) else {}

    return {"scene": config.scene, "split": config.split, "detections": config.detections,
            "mode": init_config.mode, "frames": len(rows), "with_prior": len(ok),
            "within_15deg_10cm": within / len(rows) if rows else float("nan"),
            "rotation_deg": percentiles(rot), "translation_m": percentiles(trans),
            "frames_detail": rows}


def format_report(report: dict) -> str:
    """The report as text: prior rate, error percentiles, and the five commonest reasons for no prior."""
    r, t = report["rotation_deg"], report["translation_m"]
    lines = [f"{report['frames']} frames ({report['detections']} detections, mode {report['mode']}): prior on "
             f"{report['with_prior']}, within 15 deg / 10 cm on {100 * report['within_15deg_10cm']:.1f}% of frames"]
    if r:
        lines.append("rotation error, deg:  " + "  ".join(f"{k} {v:.2f}" for k, v in r.items()))
        lines.append("translation error, m: " + "  ".join(f"{k} {v:.3f}" for k, v in t.items()))
    reasons = {}
    for row in report["frames_detail"]:
        if row["status"] != "ok":
            reasons[row["reason"][:60]] = reasons.get(row["reason"][:60], 0) + 1
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
        lines.append(f"no prior x{n}: {reason}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``inerf-ros eval-prior`` arguments: the evaluation's and the silhouette refinement's flags."""
    config_tools.add_arguments(parser, PriorEvalConfig)
    config_tools.add_arguments(parser, SilhouetteRefineConfig)


def run(args: argparse.Namespace) -> int:
    """``inerf-ros eval-prior``: print and save the report; 0 on success."""
    config = config_tools.from_args(PriorEvalConfig, args)
    if not config.scene:
        raise SystemExit("--scene is required (a directory written by `inerf-ros make-scene`)")
    report = evaluate(config, config_tools.from_args(SilhouetteRefineConfig, args))
    print_and_save_report(report, format_report(report), config.out)
    return 0
