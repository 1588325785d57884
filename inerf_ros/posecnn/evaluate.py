"""``inerf-ros eval-posecnn``: PoseCNN on held-out rendered frames.

Reports per class and overall: mask IoU (pixels summed over the split), the share of visible
objects within 5 deg / 5 cm (a missed object counts as a failure; for ``continuous_z`` classes
the rotation error is the angle between the symmetry axes), ADD (ADD-S for symmetric classes) AUC
over 0-10 cm as in YCB-Video, and seconds per frame (at the split's size and at 640x480).

``--out DIR`` writes ``report.md`` (per-class tables: IoU, 5deg/5cm, 5 deg, 5 cm, median errors,
ADD(-S)), ``metrics.json`` (the same numbers) and ``frames_NN.png``: a few evaluated frames per image,
each as input | labels | poses (estimates as projected model outlines in the class colour, the truth
as thin white outlines), drawn by :mod:`inerf_ros.posecnn.draw` as ``inerf-ros detect`` draws photos.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from inerf_ros import config as config_tools
from inerf_ros.config import option
from inerf_ros.posecnn import draw
from inerf_ros.posecnn.data import rotation_error_deg
from inerf_ros.posecnn.model import load_posecnn, scaled_K
from inerf_ros.posecnn.refine import SilhouetteRefineConfig
from inerf_ros.scene.dataset import load_class_table, load_frames, load_model
from inerf_ros.evaluation import print_and_save_report


@dataclasses.dataclass
class EvalConfig:
    """Evaluation of a PoseCNN model on a rendered scene's held-out split."""

    model: str = option("models/posecnn_tabletop", "model directory (train-posecnn --out)", read_only=True)
    scene: str = option("", "scene directory (make-scene --out)", read_only=True)
    split: str = option("posecnn_test", "held-out split")
    max_frames: int = option(0, "evaluate at most this many frames (0: all)", range=(0, 10**9))
    min_visible_fraction: float = option(0.1, "objects less visible than this are not scored", range=(0.0, 1.0))
    timing_frames: int = option(10, "frames timed again at 640x480 (upscaled)", range=(0, 10**6))
    threads: int = option(2, "torch CPU threads", range=(1, 256))
    device: str = option("cpu", "torch device")
    out: str = option("", "output folder: report.md, metrics.json and frames_NN.png (a path ending in .json: "
                          "only that JSON file)")
    grid_frames: int = option(12, "evaluated frames drawn into the frames_NN.png images (the first ones)",
                              range=(0, 1000))
    frames_per_image: int = option(4, "frames (rows) per frames_NN.png", range=(1, 100))


def add_s_distance(points: np.ndarray, pose_est: np.ndarray, pose_gt: np.ndarray, symmetric: bool) -> float:
    """ADD (mean distance of corresponding model points) or ADD-S (to the closest point), metres."""
    est = points @ pose_est[:3, :3].T + pose_est[:3, 3]
    gt = points @ pose_gt[:3, :3].T + pose_gt[:3, 3]
    if not symmetric:
        return float(np.linalg.norm(est - gt, axis=1).mean())
    distances = torch.cdist(torch.from_numpy(gt), torch.from_numpy(est))
    return float(distances.min(dim=1).values.mean())


def auc(errors: list[float], max_threshold: float = 0.10, steps: int = 1000) -> float:
    """Area under the accuracy-vs-threshold curve over [0, max_threshold], normalised to [0, 1]."""
    if not errors:
        return float("nan")
    errors = np.asarray(errors)
    thresholds = np.linspace(0, max_threshold, steps + 1)
    accuracy = (errors[None, :] <= thresholds[:, None]).mean(1)
    return float(np.trapezoid(accuracy, thresholds) / max_threshold)


def evaluate(config: EvalConfig, refine: SilhouetteRefineConfig | None = None, progress: bool = True,
             drawn: list | None = None) -> dict:
    """Run the detector over the split and score it (the report's numbers, see the module doc).

    ``drawn``: when given, the first ``config.grid_frames`` frames are appended to it as
    ``(rgb, K, label_mask, estimated DrawnPoses, true DrawnPoses)`` for :func:`frame_rows`.
    """
    torch.set_num_threads(config.threads)
    classes = load_class_table(config.scene)
    names = [classes[i].name for i in sorted(classes)]
    refine = refine or SilhouetteRefineConfig()
    detector = load_posecnn(config.model, config.device, class_names=names, refine=refine)
    symmetric = {i: classes[i].symmetry != "none" for i in classes}
    n = len(names)
    inter, union = np.zeros(n + 1), np.zeros(n + 1)
    per_class = {name: {"rot": [], "trans": [], "add": [], "found": []} for name in names}
    times, timing_inputs = [], []
    frames = load_frames(config.scene, config.split)
    for count, frame in enumerate(tqdm(frames, desc="eval-posecnn", unit="frame", disable=not progress)):
        if config.max_frames and count >= config.max_frames:
            break
        start = time.perf_counter()
        result = detector.detect(frame.rgb, frame.intrinsics.K)
        times.append(time.perf_counter() - start)
        if len(timing_inputs) < config.timing_frames:
            timing_inputs.append((frame.rgb, frame.intrinsics.K))
        if drawn is not None and len(drawn) < config.grid_frames:
            drawn.append((frame.rgb, frame.intrinsics.K, result.label_mask,
                          [draw.DrawnPose(d.class_id, d.class_name, d.cam_T_obj, d.score) for d in result.objects],
                          [draw.DrawnPose(o.class_id, o.class_name, o.cam_T_obj) for o in frame.objects
                           if o.visible_fraction >= config.min_visible_fraction]))
        for c in range(1, n + 1):
            pred, true = result.label_mask == c, frame.label == c
            inter[c] += np.logical_and(pred, true).sum()
            union[c] += np.logical_or(pred, true).sum()
        found = {d.class_id: d for d in result.objects}
        for obj in frame.objects:
            if obj.visible_fraction < config.min_visible_fraction:
                continue
            stats = per_class[obj.class_name]
            det = found.get(obj.class_id)
            stats["found"].append(det is not None)
            if det is None:
                stats["rot"].append(float("inf"))
                stats["trans"].append(float("inf"))
                stats["add"].append(float("inf"))
                continue
            stats["rot"].append(rotation_error_deg(det.cam_T_obj[:3, :3], obj.cam_T_obj[:3, :3],
                                                   classes[obj.class_id].symmetry))
            stats["trans"].append(float(np.linalg.norm(det.cam_T_obj[:3, 3] - obj.cam_T_obj[:3, 3])))
            stats["add"].append(add_s_distance(detector.model_points[obj.class_id], det.cam_T_obj, obj.cam_T_obj,
                                               symmetric[obj.class_id]))
    # Timing at the 640x480 (the split's frames upscaled, K scaled with them).
    times_640 = []
    for rgb, K in timing_inputs:
        big = cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_LINEAR)
        K_big = scaled_K(K, rgb.shape[1], rgb.shape[0], 640, 480)
        start = time.perf_counter()
        detector.detect(big, K_big)
        times_640.append(time.perf_counter() - start)

    report = {"model": config.model, "scene": config.scene, "split": config.split, "frames": len(times),
              "min_visible_fraction": config.min_visible_fraction, "classes": {}}
    all_rot, all_trans, all_add = [], [], []
    for c, name in enumerate(names, start=1):
        s = per_class[name]
        rot, trans = np.array(s["rot"]), np.array(s["trans"])
        ok = (rot < 5.0) & (trans < 0.05)
        report["classes"][name] = {
            "iou": float(inter[c] / union[c]) if union[c] else float("nan"),
            "objects": len(rot), "detected": float(np.mean(s["found"])) if s["found"] else float("nan"),
            "5deg5cm": float(ok.mean()) if len(ok) else float("nan"),
            "5deg": float((rot < 5.0).mean()) if len(rot) else float("nan"),
            "5cm": float((trans < 0.05).mean()) if len(trans) else float("nan"),
            "add_auc": auc(s["add"]),
            "add_10pct_diameter": float((np.array(s["add"]) < 0.1 * classes[c].diameter).mean())
            if s["add"] else float("nan"),
            "median_rot_deg": float(np.median(rot)) if len(rot) else float("nan"),
            "median_trans_m": float(np.median(trans)) if len(trans) else float("nan"),
            "symmetric": symmetric[c]}
        all_rot += s["rot"]
        all_trans += s["trans"]
        all_add += s["add"]
    rot, trans = np.array(all_rot), np.array(all_trans)
    ious = [v["iou"] for v in report["classes"].values() if np.isfinite(v["iou"])]
    report["overall"] = {
        "mean_iou": float(np.mean(ious)) if ious else float("nan"),
        "5deg5cm": float(((rot < 5.0) & (trans < 0.05)).mean()) if len(rot) else float("nan"),
        "5deg": float((rot < 5.0).mean()) if len(rot) else float("nan"),
        "5cm": float((trans < 0.05).mean()) if len(trans) else float("nan"),
        "add_s_auc": auc(all_add), "objects": len(rot),
        "seconds_per_frame": float(np.median(times)) if times else float("nan"),
        "seconds_per_frame_640x480": float(np.median(times_640)) if times_640 else float("nan"),
        "input_size": list(detector.input_size), "threads": config.threads, "device": config.device,
        "silhouette_refine": refine.silhouette_refine}
    return report


def format_report(report: dict) -> str:
    """The console table: one line per class (``*``: symmetric, scored with ADD-S), then the overall line."""
    lines = [f"{'class':<18} {'IoU':>6} {'objs':>5} {'found':>6} {'5deg5cm':>8} {'ADD(-S) AUC':>12} "
             f"{'med rot':>8} {'med cm':>7}"]
    for name, r in report["classes"].items():
        lines.append(f"{name + ('*' if r['symmetric'] else ''):<18} {r['iou']:6.3f} {r['objects']:5d} "
                     f"{r['detected']:6.2f} {r['5deg5cm']:8.2f} {r['add_auc']:12.3f} {r['median_rot_deg']:8.1f} "
                     f"{100 * r['median_trans_m']:7.1f}")
    o = report["overall"]
    lines.append(f"overall: mean IoU {o['mean_iou']:.3f}; 5deg/5cm {o['5deg5cm']:.3f} (5deg {o['5deg']:.3f}, "
                 f"5cm {o['5cm']:.3f}) of {o['objects']} visible objects; ADD(-S) AUC {o['add_s_auc']:.3f}; "
                 f"{o['seconds_per_frame']:.3f} s/frame at the split's size, {o['seconds_per_frame_640x480']:.3f} "
                 f"s/frame at 640x480 ({o['threads']} threads, {o['device']}); silhouette refinement "
                 f"{'on' if o['silhouette_refine'] else 'off'}; * = symmetric (ADD-S)")
    return "\n".join(lines)


def _cell(value: float, percent: bool = False, digits: int = 3) -> str:
    if not np.isfinite(value):
        return "-" if np.isnan(value) else "inf"
    return f"{100 * value:.1f}" if percent else f"{value:.{digits}f}"


def markdown_report(report: dict, images: list[str]) -> str:
    """report.md: settings, the per-class table, the overall figures and the frame images."""
    o = report["overall"]
    lines = [f"# PoseCNN on {report['scene']} ({report['split']})", "",
             f"Model `{report['model']}`; {report['frames']} frames, {o['objects']} visible objects scored (less "
             f"visible than {report['min_visible_fraction']:g} of their silhouette: not scored; a missed object "
             f"counts as a failure); silhouette refinement {'on' if o['silhouette_refine'] else 'off'}; "
             f"{o['threads']} thread(s) on {o['device']}.", "",
             "| class | IoU | objects | found % | 5deg/5cm % | 5 deg % | 5 cm % | median rot deg | median trans cm "
             "| ADD(-S) AUC | ADD(-S) < 10% diam. % |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["classes"].items():
        lines.append(
            f"| {name}{' *' if r['symmetric'] else ''} | {_cell(r['iou'])} | {r['objects']} | "
            f"{_cell(r['detected'], True)} | {_cell(r['5deg5cm'], True)} | {_cell(r['5deg'], True)} | "
            f"{_cell(r['5cm'], True)} | {_cell(r['median_rot_deg'], digits=1)} | "
            f"{_cell(100 * r['median_trans_m'], digits=1)} | {_cell(r['add_auc'])} | "
            f"{_cell(r['add_10pct_diameter'], True)} |")
    lines += ["", "`*` symmetric (continuous_z): rotation error between the symmetry axes, ADD-S.", "",
              f"**Overall**: mean IoU {_cell(o['mean_iou'])}; 5deg/5cm {_cell(o['5deg5cm'], True)} % (5 deg "
              f"{_cell(o['5deg'], True)} %, 5 cm {_cell(o['5cm'], True)} %); ADD(-S) AUC {_cell(o['add_s_auc'])}; "
              f"{_cell(o['seconds_per_frame'])} s per frame at the split's size, "
              f"{_cell(o['seconds_per_frame_640x480'])} s at 640x480.", ""]
    if images:
        lines += ["## Frames", "", "input | labels (predicted) | poses: estimates in the class colour, the truth "
                  "as thin white outlines", ""]
        lines += [f"![frames]({name})" for name in images]
    return "\n".join(lines) + "\n"


def frame_rows(drawn: list, class_names: list[str], points: dict, meshes: dict, height: int = 240) -> list:
    """One input | labels | poses row per drawn frame (see :func:`evaluate`'s ``drawn``)."""
    rows = []
    for rgb, K, label_mask, estimates, truth in drawn:
        rows.append(draw.side_by_side([
            ("input", rgb), ("labels", draw.label_panel(rgb, label_mask, class_names)),
            ("poses (white: truth)", draw.pose_panel(rgb, estimates, K, len(class_names), points, meshes, truth))],
            height=height))
    return rows


def write_report(out_dir, report: dict, drawn: list, frames_per_image: int = 4) -> list[Path]:
    """Write report.md, metrics.json and frames_NN.png into ``out_dir``; returns the paths written.

    The outlines are the scene's own meshes (exact silhouettes), read from ``report["scene"]``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = load_class_table(report["scene"])
    names = [classes[i].name for i in sorted(classes)]
    meshes = {i: load_model(report["scene"], i) for i in classes}
    rows = frame_rows(drawn, names, {i: mesh[0] for i, mesh in meshes.items()}, meshes)
    written, images = [], []
    for k in range(0, len(rows), frames_per_image):
        name = f"frames_{k // frames_per_image:02d}.png"
        draw.write_png(out / name, draw.stack_rows(rows[k:k + frames_per_image]))
        images.append(name)
        written.append(out / name)
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown_report(report, images))
    return [out / "report.md", out / "metrics.json"] + written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """EvalConfig's flags and the silhouette refinement's flags."""
    config_tools.add_arguments(parser, EvalConfig)
    config_tools.add_arguments(parser, SilhouetteRefineConfig)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, and write the report folder (or the JSON file) given by ``--out``."""
    config = config_tools.from_args(EvalConfig, args)
    if not config.scene:
        raise SystemExit("--scene is required (a directory written by `inerf-ros make-scene`)")
    to_folder = bool(config.out) and not config.out.endswith(".json")
    drawn = [] if to_folder else None
    report = evaluate(config, config_tools.from_args(SilhouetteRefineConfig, args), drawn=drawn)
    print_and_save_report(report, format_report(report), None if to_folder else config.out)
    if to_folder:
        written = write_report(config.out, report, drawn, config.frames_per_image)
        print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
