"""``inerf-ros register``: the whole registration (load the model and data, register the photos in
chained passes, write the output, optionally retrain) and its command line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from inerf_ros import config as cfg
from inerf_ros import lie
from inerf_ros.datasets.transforms import (DatasetError, find_image, load_transforms, read_transforms_json,
                                           resolve_transforms_path)
from inerf_ros.nerf.checkpoint import CheckpointError, load_model, read_metadata
from inerf_ros.nerf.field import FieldConfig
from inerf_ros.nerf.train import TrainConfig, evaluate, train
from inerf_ros.register.config import RegisterConfig, RegistrationError
from inerf_ros.register.output import check_table, report, save_preview, verdict_table, write_transforms
from inerf_ros.register.photos import Camera, data_camera, list_images, load_photo
from inerf_ros.register.registrar import Registrar
from inerf_ros.register.verdict import Verdict


def _model_training(model_dir: Path) -> dict:
    _, doc = read_metadata(model_dir)
    return dict(doc.get("metadata", {}).get("extra", {}) or {})


def register(model_dir, data_path, config: RegisterConfig) -> dict:
    """Run the whole registration; returns a summary dict (also written as NEW_DATA/registration.json)."""
    started = time.perf_counter()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.set_flush_denormal(True)
    model_dir, out_dir = Path(model_dir), Path(config.out)
    try:
        model = load_model(model_dir, device=config.device)
        extra = _model_training(model_dir)
    except CheckpointError as error:
        raise RegistrationError(f"model: {error}") from None
    train_config = dict(extra.get("train_config", {}))
    downscale = config.downscale or float(train_config.get("downscale", 1.0))
    every = config.holdout_every or int(train_config.get("holdout_every", 8))
    try:
        json_path = resolve_transforms_path(data_path)
        data_json = read_transforms_json(json_path)
        background = tuple(float(c) for c in model.metadata.background)
        data = load_transforms(json_path, downscale=downscale, background=background)
    except DatasetError as error:
        raise RegistrationError(f"data: {error}") from None
    if json_path.parent.resolve() == out_dir.resolve():
        raise RegistrationError(f"--out {out_dir} is the data folder itself; choose a new folder")
    files, verdicts = list_images(config.images)
    camera = Camera(full=data_camera(json_path, data_json), work=data.intrinsics[0])
    known = {Path(n).name for n in data.file_names} | {Path(n).stem for n in data.file_names}
    todo = []
    skipped = []
    for path in files:
        if config.skip_registered and (path.name in known or path.stem in known):
            skipped.append(path.name)
        else:
            todo.append(path)

    match_size = (min(camera.full.width, round(camera.work.width * config.match_scale)),
                  min(camera.full.height, round(camera.work.height * config.match_scale)))
    match_camera = Camera(full=camera.full, work=camera.work.resized(*match_size))

    def data_match_image(index: int) -> np.ndarray:
        return load_photo(find_image(json_path.parent, data.file_names[index], json_path), match_camera,
                          model.metadata.background)[0]

    registrar = Registrar(model, data, config, every, match_image=data_match_image)
    print(f"register: {len(todo)} photos ({len(skipped)} already in the data skipped), working size "
          f"{camera.work.width}x{camera.work.height} (downscale {downscale:g}); reference PSNR at known poses "
          f"{registrar.reference_psnr:.2f} dB -> accept at >= {registrar.threshold:.2f} dB", flush=True)
    checks = registrar.held_out[: config.check_views]
    if config.check_views and len(checks) < config.check_views:
        print(f"register: only {len(checks)} held-out views available as checks", file=sys.stderr)
    mpu = config.metres_per_unit or (data.metres_per_unit if "metres_per_unit" in data_json else 0.0)

    def log(verdict: Verdict) -> None:
        if verdict.iterations and registrar.last_preview is not None:
            save_preview(out_dir / "previews" / f"{Path(verdict.image).stem}{'_check' if verdict.check else ''}.png",
                         registrar.last_preview)
        tqdm.write(f"  {verdict.image}{' (check)' if verdict.check else ''}: "
                   f"{'accepted' if verdict.accepted else 'REJECTED'} - {verdict.reason}"
                   f" [start {verdict.start or '-'}, {verdict.iterations} its, {verdict.seconds:.0f} s]")

    bar = tqdm(total=len(checks) + len(todo), desc="register", unit="image", disable=not config.progress,
               dynamic_ncols=True)
    for item in checks:  # first, while the views are only the data's own
        name = Path(data.file_names[item]).name
        bar.set_postfix_str(name)
        verdict = registrar.register(data.images[item].numpy(), name, exclude=(item,),
                                     match_image=data_match_image(item) if config.pnp_starts else None)
        verdict.check = True
        rot, trans = lie.pose_error(torch.tensor(verdict.nerf_T_opengl, dtype=torch.float64),
                                    data.nerf_T_cam[item].double())
        verdict.rotation_error_deg, verdict.translation_error = float(rot), float(trans)
        verdict.translation_error_diag = float(trans) / registrar.diagonal
        if mpu:
            verdict.translation_error_cm = float(trans) * mpu * 100
        verdicts.append(verdict)
        log(verdict)
        bar.update(1)
    photo_verdicts: dict[Path, Verdict] = {}
    pending = list(todo)
    for chain_pass in range(config.chain_passes if config.chain else 1):
        if chain_pass:
            tqdm.write(f"register: pass {chain_pass + 1}: {len(pending)} rejected photos against "
                       f"{registrar.num_views - len(data)} accepted ones")
        accepted_now = 0
        for path in pending:
            bar.set_postfix_str(path.name)
            verdict, image, match = _register_photo(registrar, path, camera, match_camera, config, model)
            if chain_pass:
                verdict.reason += f" (pass {chain_pass + 1})"
            photo_verdicts[path] = verdict
            log(verdict)
            if chain_pass == 0:
                bar.update(1)
            if verdict.accepted and config.chain:
                registrar.add_view(path.name, image, verdict.nerf_T_opengl, match)
                accepted_now += 1
        # Unreadable photos (no iterations) stay rejected; the others may connect through new views.
        pending = [p for p in pending if not photo_verdicts[p].accepted and photo_verdicts[p].iterations]
        if not accepted_now or not pending:
            break
    verdicts += [photo_verdicts[p] for p in todo]
    bar.close()
    photos = [v for v in verdicts if not v.check]
    accepted = [v for v in photos if v.accepted]
    summary = {
        "model": str(model_dir), "data": str(json_path), "out": str(out_dir), "working_size": [camera.work.width,
                                                                                               camera.work.height],
        "downscale": downscale, "holdout_every": every, "reference_psnr": registrar.reference_psnr,
        "threshold_psnr": registrar.threshold, "min_gain_db": config.min_gain_db,
        "scene_diagonal": registrar.diagonal, "metres_per_unit": mpu or None,
        "photos": len(photos), "accepted": len(accepted), "skipped_already_registered": skipped,
        "accepted_photometric": sum(v.accepted_by == "photometric" for v in accepted),
        "config": dataclasses.asdict(config),
    }
    transforms = write_transforms(json_path, data_json, verdicts, out_dir, config, camera, every,
                                  {"model": str(model_dir), "data": str(json_path),
                                   "threshold_psnr": registrar.threshold})
    summary["transforms"] = str(transforms)
    if config.retrain_minutes > 0 and accepted:
        summary["retrain"] = retrain(model, data, registrar.held_out, transforms, extra, config, out_dir)
    elif config.retrain_minutes > 0:
        summary["retrain"] = {"skipped": "no photo was accepted"}
    summary["seconds"] = time.perf_counter() - started
    summary["verdicts"] = [dataclasses.asdict(v) for v in verdicts]
    (out_dir / "registration.json").write_text(json.dumps(summary, indent=2, default=str))
    (out_dir / "registration.md").write_text(report(summary, verdicts))
    return summary


def _register_photo(registrar: Registrar, path: Path, camera: Camera, match_camera: Camera,
                    config: RegisterConfig, model) -> tuple[Verdict, np.ndarray | None, np.ndarray | None]:
    """One new photo's verdict, with the photo at the working and at the matching size (None if unreadable)."""
    try:
        image, resized_from = load_photo(path, camera, model.metadata.background)
        match = load_photo(path, match_camera, model.metadata.background)[0] if config.pnp_starts else None
    except ValueError as error:
        return Verdict(image=path.name, accepted=False, reason=str(error), source_path=str(path)), None, None
    verdict = registrar.register(image, path.name, match_image=match)
    verdict.source_path, verdict.resized_from = str(path), resized_from
    if resized_from:
        verdict.reason += f"; resized from {resized_from[0]}x{resized_from[1]}"
    return verdict, image, match


def retrain(model, data, held_out: list[int], transforms: Path, extra: dict, config: RegisterConfig,
            out_dir: Path) -> dict:
    """Train a new NeRF on NEW_DATA (the model's settings) and compare held-out PSNR on the same views."""
    held_names = [Path(data.file_names[i]).name for i in held_out]
    before = evaluate(model, data.subset(held_out), torch.device(config.device))
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    train_values = {k: v for k, v in dict(extra.get("train_config", {})).items() if k in names}
    train_values.update(minutes=config.retrain_minutes, steps=0, threads=config.threads or 0,
                        device=config.device, eval_views=0)
    train_cfg = cfg.from_dict(TrainConfig, train_values)
    field_cfg = cfg.from_dict(FieldConfig, dict(model.metadata.field))
    model_out = Path(config.retrain_out) if config.retrain_out else out_dir / "model"
    metrics = train(transforms, model_out, train_cfg, field_cfg, progress=config.progress)
    new = load_transforms(transforms, downscale=train_cfg.downscale, background=tuple(train_cfg.background))
    _, new_held = new.holdout_indices(train_cfg.holdout_every)
    per_view = dict(zip([Path(new.file_names[i]).name for i in new_held], metrics["per_view_psnr"]))
    after = [per_view.get(n, float("nan")) for n in held_names]
    extra_views = {n: p for n, p in per_view.items() if n not in held_names}
    return {"model": str(model_out), "minutes": config.retrain_minutes, "held_out_views": held_names,
            "psnr_before": before["psnr"], "psnr_after": float(np.mean(after)),
            "per_view_before": before["per_view_psnr"], "per_view_after": after,
            "new_views_held_out_psnr": extra_views, "train_metrics": {k: v for k, v in metrics.items()
                                                                      if k != "per_view_psnr"}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``inerf-ros register`` arguments."""
    parser.add_argument("model_dir", type=Path, help="NeRF model folder (inerf-ros train-nerf)")
    parser.add_argument("data", type=Path, help="the posed data set the model was trained on (transforms.json "
                                                "or its folder)")
    cfg.add_arguments(parser, RegisterConfig)


def run(args: argparse.Namespace) -> int:
    """``inerf-ros register``: 0 on success, 2 with the reason on stderr when it cannot run."""
    try:
        config = cfg.from_args(RegisterConfig, args)
    except ValueError as error:
        print(f"register: {error}", file=sys.stderr)
        return 2
    try:
        summary = register(args.model_dir, args.data, config)
    except RegistrationError as error:
        print(f"register: {error}", file=sys.stderr)
        return 2
    out = Path(config.out)
    verdicts = [Verdict(**v) for v in summary["verdicts"]]
    print()
    print(verdict_table(verdicts))
    checks = check_table(verdicts)
    if checks:
        print()
        print(checks)
    print(f"\naccepted {summary['accepted']} of {summary['photos']} photos ({summary['accepted_photometric']} over "
          f"the PSNR threshold, the others on geometry) -> {summary['transforms']}; table: {out / 'registration.md'}")
    retrained = summary.get("retrain")
    if retrained and "psnr_before" in retrained:
        print(f"held-out PSNR on the same views: before {retrained['psnr_before']:.2f} dB, "
              f"after {retrained['psnr_after']:.2f} dB ({retrained['model']})")
    return 0
