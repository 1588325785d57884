"""What a registration writes: NEW_DATA/transforms.json (the data's frames plus the accepted photos,
ordered to keep the held-out split), the verdict tables and registration.md, and the previews.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from inerf_ros import evaluation
from inerf_ros.datasets.transforms import find_image
from inerf_ros.register.config import RegisterConfig
from inerf_ros.register.photos import Camera
from inerf_ros.register.verdict import Verdict


def save_preview(path: Path, image: np.ndarray) -> None:
    """Photo | render | blend on the verdict grid, enlarged 2x."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8).repeat(2, 0).repeat(2, 1)
    Image.fromarray(pixels).save(path)


def frame_order(original: list, new: list, every: int) -> list:
    """Original frames plus new ones, so that index % every == 0 holds the originally held-out frames."""
    held = [f for i, f in enumerate(original) if i % every == 0]
    train = [f for i, f in enumerate(original) if i % every != 0]
    pool = train + list(new)
    out = []
    while held or pool:
        if len(out) % every == 0:
            out.append(held.pop(0) if held else pool.pop())  # extra held-out slots: the last new frame
        else:
            if pool:
                out.append(pool.pop(0))
            else:  # only held-out frames left: cannot keep them at held slots; keep them anyway
                out.append(held.pop(0))
    return out


def _unique_name(directory: Path, name: str, taken: set) -> str:
    stem, suffix = os.path.splitext(name)
    candidate, n = name, 1
    while candidate in taken or (directory / candidate).exists():
        candidate = f"{stem}_{n}{suffix}"
        n += 1
    taken.add(candidate)
    return candidate


def write_transforms(json_path: Path, data_json: dict, verdicts: list[Verdict], out_dir: Path, config: RegisterConfig,
                     camera: Camera, every: int, extra: dict) -> Path:
    """NEW_DATA/transforms.json: the data's frames plus the accepted photos."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = json_path.parent
    copy = config.copy_images
    image_dir = out_dir / "images"
    taken: set = set()

    def place(source: Path, preferred: str) -> str:
        if not copy:
            return os.path.relpath(source.resolve(), out_dir.resolve())
        image_dir.mkdir(parents=True, exist_ok=True)
        name = _unique_name(image_dir, preferred, taken)
        shutil.copy2(source, image_dir / name)
        return f"images/{name}"

    originals = []
    for frame in data_json["frames"]:
        source = find_image(base, str(frame["file_path"]), json_path)
        originals.append({**frame, "file_path": place(source, source.name)})
    new_frames = []
    for verdict in verdicts:
        if not verdict.accepted or verdict.check:
            continue
        source = Path(verdict.source_path)
        if verdict.resized_from:  # write it at the data's size so one camera fits every frame
            image_dir.mkdir(parents=True, exist_ok=True)
            name = _unique_name(image_dir, Path(source.stem + ".png").name, taken)
            with Image.open(source) as im:
                im.resize((camera.full.width, camera.full.height), Image.BICUBIC).save(image_dir / name)
            file_path = f"images/{name}"
        else:
            file_path = place(source, source.name)
        new_frames.append({"file_path": file_path, "transform_matrix": verdict.nerf_T_opengl,
                           "registered_by": "inerf", "registration_psnr": round(verdict.psnr, 3)})
    doc = {k: v for k, v in data_json.items() if k != "frames"}
    if "sparse_points" in doc:  # SfM's points of the original frames (new frames have none): keep them usable
        points = base / str(doc["sparse_points"])
        if points.is_file():
            shutil.copy2(points, out_dir / points.name)
            doc["sparse_points"] = points.name
        else:
            del doc["sparse_points"]
    rejected = [v.image for v in verdicts if not v.accepted and not v.check]
    doc["unregistered"] = sorted(set(data_json.get("unregistered", [])) - {v.image for v in verdicts if v.accepted}
                                 | set(rejected))
    photos = [v for v in verdicts if not v.check]
    doc["registration"] = {**extra, "holdout_every": every, "accepted": [v.image for v in photos if v.accepted],
                           "rejected": {v.image: v.reason for v in photos if not v.accepted}}
    doc["frames"] = frame_order(originals, new_frames, every)
    path = out_dir / "transforms.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def _fmt(x, spec=".2f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def verdict_table(verdicts: list[Verdict]) -> str:
    """The verdict table (markdown), one row per photo and check view."""
    header = ["image", "start used", "iterations", "photometric loss", "PSNR dB", "flat PSNR dB",
              "poses the matches support as well, within (deg / units)", "verdict", "why"]
    return evaluation.markdown_rows(header, [
        [f"{v.image}{' (check)' if v.check else ''}", v.start or "-", str(v.iterations), _fmt(v.loss, ".5f"),
         _fmt(v.psnr), _fmt(v.flat_psnr),
         "-" if v.ambiguity_deg is None else f"{v.ambiguity_deg:.1f} / {v.ambiguity_translation:.3f}",
         "accepted" if v.accepted else "rejected", v.reason] for v in verdicts])


def check_table(verdicts: list[Verdict]) -> str:
    """The check views' pose errors (markdown); empty without check views."""
    rows = [v for v in verdicts if v.check]
    if not rows:
        return ""
    header = ["check view", "rotation error deg", "translation error (NeRF units)", "/ scene diagonal", "cm",
              "verdict"]
    return evaluation.markdown_rows(header, [
        [v.image, _fmt(v.rotation_error_deg), _fmt(v.translation_error, ".4f"), _fmt(v.translation_error_diag, ".4f"),
         _fmt(v.translation_error_cm), "accepted" if v.accepted else "rejected"] for v in rows])


def report(summary: dict, verdicts: list[Verdict]) -> str:
    """NEW_DATA/registration.md from the summary of :func:`inerf_ros.register.command.register`."""
    photos = summary["photos"]
    lines = ["# Registration report", "",
             f"- model `{summary['model']}`, data `{summary['data']}`, working size "
             f"{summary['working_size'][0]}x{summary['working_size'][1]}",
             f"- accepted **{summary['accepted']} of {photos}** photos "
             f"({100 * summary['accepted'] / max(photos, 1):.0f} %), {summary['accepted_photometric']} of them over "
             f"the PSNR threshold {summary['threshold_psnr']:.2f} dB (reference at known poses "
             f"{summary['reference_psnr']:.2f} dB), the others on geometry (see `why`); all >= "
             f"{summary['min_gain_db']:g} dB over the photo's flat mean colour",
             f"- skipped (already in the data): {len(summary['skipped_already_registered'])}",
             f"- output: `{summary['transforms']}`", "", verdict_table(verdicts), "",
             "*Poses the matches support as well*: the farthest candidate pose with at least 3/4 of the best "
             "candidate's agreeing matches. Several degrees mean the features cannot pin the pose down that "
             "closely (typically an orbit around the object, from a side the capture did not cover); the "
             "check views show the accuracy inside the capture.", ""]
    checks = check_table(verdicts)
    if checks:
        unit = (f"metres_per_unit {summary['metres_per_unit']:g}" if summary.get("metres_per_unit")
                else "no metric scale given: cm column empty")
        lines += ["## Check views (held-out views with known poses, registered as if new)", "",
                  f"Scene-box diagonal {summary['scene_diagonal']:.3f} NeRF units; {unit}.", "", checks, ""]
    if "retrain" in summary:
        r = summary["retrain"]
        if "skipped" in r:
            lines += [f"Retraining skipped: {r['skipped']}.", ""]
        else:
            lines += ["## Retraining", "",
                      f"- new model `{r['model']}` ({r['minutes']:g} min budget)",
                      f"- held-out PSNR on the same {len(r['held_out_views'])} views "
                      f"({', '.join(r['held_out_views'])}): before **{r['psnr_before']:.2f} dB**, after "
                      f"**{r['psnr_after']:.2f} dB**",
                      f"- newly registered views held out by the split: "
                      f"{json.dumps({k: round(v, 2) for k, v in r['new_views_held_out_psnr'].items()})}", ""]
    return "\n".join(lines)
