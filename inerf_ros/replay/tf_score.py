"""Scoring a robot replay *through TF*: the camera at every frame's stamp as a consumer would see it.

During a live replay everything on ``/tf`` and ``/tf_static`` (the bag's robot chain, the localizer's
``nerf -> base`` correction, the ground-truth frames) goes into one :class:`~inerf_ros.tf_tree.TfTree`.
For every camera frame of the bag the camera pose is then looked up the way MoveIt or a grasp
planner would at that stamp, ``nerf -> base -> ... -> camera`` (the latest correction composed with
the kinematics), and compared with the truth. The baseline a user has without this package is the
robot's believed base placement composed with the same chain (``kinematics_`` keys).

ROS-free: the tree, the frames and the stamps are all it needs.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from inerf_ros.replay.offline import errors
from inerf_ros.tf_tree import TfTree

SUMMARY_THRESHOLDS = ((0.02, 2.0), (0.05, 5.0))


@dataclasses.dataclass
class ArmFrames:
    """Frame names of a robot replay."""

    world: str = "world"
    nerf: str = "nerf"
    base: str = "base_link"
    camera: str = "camera_color_optical_frame"
    base_gt: str = "base_link_gt"


@dataclasses.dataclass
class TfFrameScore:
    """One camera frame's pose through TF against the truth (errors None where TF had no answer)."""

    stamp_s: float
    rotation_error_deg: float | None = None
    translation_error_m: float | None = None
    kinematics_rotation_error_deg: float | None = None
    kinematics_translation_error_m: float | None = None
    why_not: str = ""


def _lookup(tree: TfTree, target: str, source: str, stamp_s: float) -> tuple[np.ndarray | None, str]:
    try:
        return tree.lookup(target, source, stamp_s), ""
    except LookupError as error:
        return None, str(error)


def score_frames(tree: TfTree, stamps_and_truth, names: ArmFrames, world_T_nerf: np.ndarray,
                 believed_nerf_T_base: np.ndarray | None) -> list[TfFrameScore]:
    """Score every camera frame: ``stamps_and_truth`` is [(stamp_s, world_T_cam_gt or None)]."""
    scores = []
    for stamp_s, world_T_cam_gt in stamps_and_truth:
        score = TfFrameScore(float(stamp_s))
        scores.append(score)
        if world_T_cam_gt is None:
            score.why_not = "no ground truth"
            continue
        nerf_T_cam, score.why_not = _lookup(tree, names.nerf, names.camera, stamp_s)
        if nerf_T_cam is not None:
            score.rotation_error_deg, score.translation_error_m = errors(world_T_nerf @ nerf_T_cam, world_T_cam_gt)
        base_T_cam, why = _lookup(tree, names.base, names.camera, stamp_s)
        if base_T_cam is not None and believed_nerf_T_base is not None:
            world_T_cam = world_T_nerf @ believed_nerf_T_base @ base_T_cam
            kinematic = errors(world_T_cam, world_T_cam_gt)
            score.kinematics_rotation_error_deg, score.kinematics_translation_error_m = kinematic
        elif not score.why_not:
            score.why_not = why
    return scores


def _fraction_within(translations_m, rotations_deg, metres: float, degrees: float, total: int) -> float:
    good = sum(1 for t, r in zip(translations_m, rotations_deg) if t <= metres and r <= degrees)
    return good / total if total else 0.0


def _column(scores: list[TfFrameScore], prefix: str, first_s: float | None) -> dict:
    """The summary keys of one column over the frames from ``first_s`` (the first localization) on.

    A frame after ``first_s`` without a TF answer is a miss: it counts in the denominator.
    """
    rot_key, trans_key = f"{prefix}rotation_error_deg", f"{prefix}translation_error_m"
    window = [s for s in scores if first_s is not None and s.stamp_s >= first_s and s.why_not != "no ground truth"]
    rotations = [getattr(s, rot_key) for s in window if getattr(s, rot_key) is not None]
    translations = [getattr(s, trans_key) for s in window if getattr(s, trans_key) is not None]
    out = {"frames_scored": len(rotations), "frames_in_window": len(window)}
    for metres, degrees in SUMMARY_THRESHOLDS:
        key = f"frac_within_{round(100 * metres)}cm_{degrees:g}deg"
        out[key] = _fraction_within(translations, rotations, metres, degrees, len(window))
    out["p95_translation_cm"] = float(100 * np.percentile(translations, 95)) if translations else math.nan
    out["p95_rotation_deg"] = float(np.percentile(rotations, 95)) if rotations else math.nan
    out["median_translation_cm"] = float(100 * np.median(translations)) if translations else math.nan
    out["median_rotation_deg"] = float(np.median(rotations)) if rotations else math.nan
    return {prefix + key: value for key, value in out.items()}


def base_error(tree: TfTree, names: ArmFrames, world_T_nerf: np.ndarray, stamp_s: float,
               nerf_T_base: np.ndarray | None = None) -> tuple[float, float] | None:
    """(cm, deg) of the base placement (the correction on TF at ``stamp_s``, or ``nerf_T_base``) vs the truth."""
    world_T_base_gt, _ = _lookup(tree, names.world, names.base_gt, stamp_s)
    if world_T_base_gt is None:
        return None
    if nerf_T_base is None:
        nerf_T_base, _ = _lookup(tree, names.nerf, names.base, stamp_s)
        if nerf_T_base is None:
            return None
    rotation_deg, translation_m = errors(world_T_nerf @ nerf_T_base, world_T_base_gt)
    return 100 * translation_m, rotation_deg


def summarize(scores: list[TfFrameScore], tree: TfTree, names: ArmFrames, world_T_nerf: np.ndarray,
              believed_nerf_T_base: np.ndarray | None, first_estimate_s: float | None,
              estimates: int, latencies_s: list[float]) -> dict:
    """``summary.json``'s keys: the corrected column, the ``kinematics_`` baseline, base placement, TF health.

    ``first_estimate_s``: bag time at which the first localization was out (the scored window's start).
    """
    summary = {"frames_total": len(scores), "first_localization_s": first_estimate_s, "estimates": int(estimates),
               "median_latency_s": float(np.median(latencies_s)) if latencies_s else math.nan}
    summary.update(_column(scores, "", first_estimate_s))
    summary.update(_column(scores, "kinematics_", first_estimate_s))
    last_s = scores[-1].stamp_s if scores else 0.0
    corrected = base_error(tree, names, world_T_nerf, last_s)
    summary["base_error_cm"], summary["base_error_deg"] = corrected if corrected else (math.nan, math.nan)
    if first_estimate_s is not None:
        after_10 = base_error(tree, names, world_T_nerf, min(first_estimate_s + 10.0, last_s))
        summary["base_error_10s_cm"], summary["base_error_10s_deg"] = after_10 if after_10 else (math.nan, math.nan)
    believed = base_error(tree, names, world_T_nerf, last_s, believed_nerf_T_base) \
        if believed_nerf_T_base is not None else None
    summary["kinematics_base_error_cm"], summary["kinematics_base_error_deg"] = \
        believed if believed else (math.nan, math.nan)
    summary["kinematics_estimates"] = 0
    summary["kinematics_median_latency_s"] = 0.0
    multi = sorted(tree.multi_parent_frames())
    summary["tf_single_parent"] = not multi
    summary["kinematics_tf_single_parent"] = not multi
    summary["kinematics_frames_total"] = len(scores)
    summary["tf_frames_with_two_parents"] = multi
    return summary


def plot_errors_over_time(scores: list[TfFrameScore], path, first_estimate_s: float | None = None):
    """Plot translation and rotation error per frame over time, iNeRF-corrected vs kinematics alone (PNG)."""
    # lazy: matplotlib takes ~1 s to import and only the plots need it; Agg must be chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy, and only after use("Agg")

    if not scores:
        return None
    t0 = scores[0].stamp_s
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for prefix, label, style in (("", "iNeRF-corrected (through TF)", "-"), ("kinematics_", "kinematics alone", "--")):
        points = [(s.stamp_s - t0, 100 * getattr(s, f"{prefix}translation_error_m"),
                   getattr(s, f"{prefix}rotation_error_deg")) for s in scores
                  if getattr(s, f"{prefix}translation_error_m") is not None]
        if points:
            t, cm, deg = zip(*points)
            top.plot(t, cm, style, label=label)
            bottom.plot(t, deg, style, label=label)
    for axis, limit, unit in ((top, 2.0, "cm"), (bottom, 2.0, "deg")):
        axis.axhline(limit, color="grey", lw=0.8, ls=":")
        if first_estimate_s is not None:
            axis.axvline(first_estimate_s - t0, color="green", lw=0.8, ls=":")
        axis.set_ylabel(f"camera error [{unit}]")
        axis.grid(alpha=0.3)
    top.legend(loc="upper right")
    top.set_title("camera pose through TF at every frame (dotted: 2 cm / 2 deg; green: first localization)")
    bottom.set_xlabel("bag time [s]")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def describe(summary: dict, plot_name: str) -> list[str]:
    """The report's section on a robot replay: corrected vs kinematics alone, side by side."""
    def row(label: str, prefix: str) -> str:
        return (f"| {label} | {summary[prefix + 'frames_scored']} | {summary[prefix + 'frac_within_2cm_2deg']:.2f} | "
                f"{summary[prefix + 'frac_within_5cm_5deg']:.2f} | {summary[prefix + 'p95_translation_cm']:.2f} | "
                f"{summary[prefix + 'p95_rotation_deg']:.2f} | {summary[prefix + 'base_error_cm']:.2f} | "
                f"{summary[prefix + 'base_error_deg']:.2f} |")

    return ["## The camera through TF (robot replay)", "",
            f"Every camera frame of the bag ({summary['frames_total']}), looked up on TF at its stamp "
            "(nerf -> base correction + the arm's chain), from the first localization on; a frame without a TF "
            "answer counts as a miss.", "",
            "| column | frames | within 2 cm / 2 deg | within 5 cm / 5 deg | p95 cm | p95 deg | base cm | base deg |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            row("iNeRF-corrected", ""), row("kinematics alone (believed model)", "kinematics_"), "",
            f"Estimates: {summary['estimates']}, median latency image-in to pose-out "
            f"{summary['median_latency_s']:.2f} s; TF single parent per frame: {summary['tf_single_parent']}"
            + (f" (two parents: {', '.join(summary['tf_frames_with_two_parents'])})"
               if summary['tf_frames_with_two_parents'] else "") + ".", "",
            f"![camera error through TF]({plot_name})", ""]
