"""``inerf-ros train-posecnn``: train PoseCNN on a rendered scene's ``posecnn_train`` split.

Example (the shipped model, see inerf_ros/posecnn/RESULTS.md for the exact command)::

    inerf-ros train-posecnn --scene demo_world --out models/posecnn_tabletop --max-minutes 40
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from inerf_ros import config as config_tools
from inerf_ros.config import option
from inerf_ros.posecnn.bop import read_bop
from inerf_ros.posecnn.data import SceneTensors, augment, jitter_boxes, load_split, sample_surface, vertex_targets
from inerf_ros.posecnn.losses import label_loss, point_matching_loss, vertex_loss
from inerf_ros.posecnn.model import WEIGHTS_FILE, check_class_table, load_posecnn, read_meta, save_checkpoint
from inerf_ros.posecnn.network import BACKBONES, PoseCNN, normalise, quat_to_matrix, ray_rotation
from inerf_ros.posecnn.randomize import CameraEffects, camera_effects, load_photos
from inerf_ros.scene.dataset import load_class_table, load_model


@dataclasses.dataclass
class TrainConfig:
    """Training of PoseCNN on a scene written by ``inerf-ros make-scene``."""

    scene: str = option("", "scene directory (make-scene / make-posecnn-data --out)", read_only=True)
    bop: str = option("", "train on a BOP dataset instead of --scene: the folder holding models/ and a split "
                      "folder (train_pbr, ...) of scene folders with rgb/, mask_visib/ and the json files")
    bop_split: str = option("", "split folder of --bop (empty: the first of train_pbr, train_synt, train_real, "
                            "train, test, val)")
    meshes: str = option("", "one command from meshes to a model: render domain-randomized frames of this mesh "
                         "folder (ycb_sim layout, BOP models/, OBJ/PLY files) into --data-dir, train, evaluate on "
                         "its held-out split into OUT/eval; OUT appears only when all of it worked")
    data_dir: str = option("", "--meshes: where the rendered frames go (empty: OUT_data); reused when complete")
    views: int = option(1500, "--meshes: randomized training frames to render (plus 100 held out)",
                        range=(1, 1000000))
    out: str = option("models/posecnn", "model directory to write (posecnn.safetensors + posecnn.json)")
    split: str = option("posecnn_train", "split to train on")
    backbone: str = option("light", "network backbone (light: for CPUs; vgg16: the paper's)", choices=BACKBONES)
    width: int = option(16, "base channels of the backbone (light 16, vgg16 64)", range=(4, 256))
    decoder_width: int = option(32, "channels of the label / vertex branches and RoI features", range=(8, 512))
    fc_width: int = option(256, "width of the rotation head's fully connected layers", range=(16, 4096))
    input_width: int = option(320, "network input width, pixels (images are resized)", range=(32, 4096))
    input_height: int = option(240, "network input height, pixels", range=(32, 4096))
    batch_size: int = option(8, "frames per step", range=(1, 1024))
    crop_width: int = option(192, "train on random crops this wide (0: whole frames); a multiple of 16 saves "
                             "the most time", range=(0, 4096))
    crop_height: int = option(144, "height of the random training crops (0: whole frames)", range=(0, 4096))
    learning_rate: float = option(2e-3, "AdamW peak learning rate (cosine decay)", range=(0.0, 1.0))
    max_steps: int = option(20000, "stop after this many steps", range=(1, 10**9))
    max_minutes: float = option(30.0, "stop after this much wall time (the cosine schedule follows whichever "
                                "of steps / minutes runs out first)", range=(0.0, 1e6))
    max_frames: int = option(0, "use at most this many training frames (0: all)", range=(0, 10**9))
    augment: bool = option(True, "photometric augmentation (brightness, contrast, saturation, noise)")
    vertex_weight: float = option(1.0, "weight of the centre-direction / depth loss", range=(0.0, 1e6))
    pose_weight: float = option(10.0, "weight of the point-matching rotation loss", range=(0.0, 1e6))
    model_points: int = option(500, "surface points per class for the point-matching loss", range=(10, 100000))
    threads: int = option(2, "torch CPU threads", range=(1, 256))
    seed: int = option(0, "random seed", range=(0, 2**31 - 1))
    resume: bool = option(False, "start from the weights in --out (same class table required)")
    init_from: str = option("", "start from the tensors of this model directory that fit (same names and "
                            "shapes: the backbone and the class-independent layers of another class table)")
    camera_effects: bool = option(False, "real-camera effects on the fly: exposure, white balance, shot + read "
                                  "noise, motion / defocus blur, JPEG (inerf_ros/posecnn/randomize.py)")
    background_share: float = option(0.0, "share of frames whose background (no trained object) is replaced "
                                     "by a photo of --backgrounds or a procedural photo-like image", range=(0.0, 1.0))
    backgrounds: str = option("", "folder of background photos (JPEG/PNG; cropped and flipped); empty: procedural")


@dataclasses.dataclass
class ClassSpec:
    """What the trainer needs per class (label id i+1 for index i)."""

    name: str
    symmetry: str
    diameter: float
    points: np.ndarray  # (m, 3) metres, object frame


def classes_from_scene(scene_dir, n_points: int) -> list[ClassSpec]:
    """The class table of a scene directory, with ``n_points`` surface points per class model."""
    table = load_class_table(scene_dir)
    ids = sorted(table)
    if ids != list(range(1, len(ids) + 1)):
        raise ValueError(f"{scene_dir}/classes.json: class ids must be 1..N, got {ids}")
    specs = []
    for class_id in ids:
        info = table[class_id]
        vertices, faces = load_model(scene_dir, class_id)
        specs.append(ClassSpec(info.name, info.symmetry, info.diameter, sample_surface(vertices, faces, n_points)))
    return specs


def fit(config: TrainConfig, data: SceneTensors, classes: list[ClassSpec], network: PoseCNN | None = None,
        reference_focal: float | None = None, progress: bool = True, log_every: int = 50, on_checkpoint=None,
        checkpoint_minutes: float = 10.0):
    """Train ``network`` (new unless given) on ``data``; returns (network, meta, history of losses).

    ``on_checkpoint(network, meta)`` (optional) is called every ``checkpoint_minutes`` of training.
    """
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    generator = torch.Generator().manual_seed(config.seed)
    n_classes = len(classes)
    if network is None:
        network = PoseCNN(n_classes, config.backbone, config.width, config.decoder_width, fc_width=config.fc_width)
    if reference_focal is None:
        reference_focal = float(data.K[0, 1, 1])
    photos = []
    if config.backgrounds:
        photos = load_photos(config.backgrounds)
        if not photos:
            raise ValueError(f"--backgrounds {config.backgrounds}: no JPEG/PNG photos in it")
    scale = max(c.diameter for c in classes)  # point-matching loss on points / largest diameter: O(1)
    points = torch.tensor(np.stack([c.points for c in classes]) / scale, dtype=torch.float32)
    symmetric = torch.tensor([c.symmetry != "none" for c in classes])
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    n_frames = data.rgb.shape[0]
    history = []
    start = time.monotonic()
    limit_s = config.max_minutes * 60 if config.max_minutes > 0 else math.inf
    bar = tqdm(total=config.max_steps, desc="train-posecnn", unit="step", disable=not progress)
    network.train()
    step = 0
    last_checkpoint = start
    while step < config.max_steps:
        elapsed = time.monotonic() - start
        fraction = max(step / config.max_steps, elapsed / limit_s)
        if fraction >= 1.0:
            break
        warmup = min(1.0, (step + 1) / min(100, max(1, config.max_steps // 10)))
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * warmup * 0.5 * (1 + math.cos(math.pi * fraction))
        frames = torch.randperm(n_frames, generator=generator)[:config.batch_size]
        losses = _step(network, data, frames, points, symmetric, reference_focal, config, generator, photos)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 10.0)
        optimizer.step()
        record = {k: float(v.detach()) for k, v in losses.items()}
        if not math.isfinite(record["total"]):
            raise FloatingPointError(f"training diverged at step {step}: {record}")
        history.append(record)
        step += 1
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix({k: f"{np.mean([h[k] for h in history[-10:]]):.3f}" for k in record})
        if progress and log_every and step % log_every == 0:
            bar.write(f"step {step} {elapsed / 60:.1f} min " + " ".join(
                f"{k}={np.mean([h[k] for h in history[-log_every:]]):.4f}" for k in record))
        if on_checkpoint is not None and time.monotonic() - last_checkpoint > checkpoint_minutes * 60:
            network.eval()
            on_checkpoint(network, _meta(config, network, classes, reference_focal, step, start, history))
            network.train()
            last_checkpoint = time.monotonic()
    bar.close()
    network.eval()
    return network, _meta(config, network, classes, reference_focal, step, start, history), history


def _meta(config, network, classes, reference_focal, step, start, history) -> dict:
    return {
        "classes": [{"id": i + 1, "name": c.name, "symmetry": c.symmetry, "diameter": c.diameter}
                    for i, c in enumerate(classes)],
        "backbone": config.backbone, "width": config.width, "decoder_width": config.decoder_width,
        "fc_width": config.fc_width, "roi_size": network.roi_size,
        "input_width": config.input_width, "input_height": config.input_height,
        "reference_focal": reference_focal,
        "training": {"steps": step, "minutes": round((time.monotonic() - start) / 60, 2),
                     "config": dataclasses.asdict(config),
                     "final_losses": {k: float(np.mean([h[k] for h in history[-20:]])) for k in history[-1]}
                     if history else {}},
    }


def _step(network, data, frames, points, symmetric, reference_focal, config, generator, photos=()):
    n_classes = network.num_classes
    rgb = data.rgb[frames]
    if config.camera_effects or config.background_share > 0:
        rgb = _camera_effects(rgb, data.label[frames], config, generator, photos)
    rgb = augment(rgb, generator) if config.augment else rgb.float()
    label = data.label[frames].long()
    target = vertex_targets(data, frames, reference_focal)
    height, width = label.shape[-2:]
    crop_w = min(config.crop_width or width, width)
    crop_h = min(config.crop_height or height, height)
    # One random crop per frame: the objects keep their scale, the step costs crop / frame area.
    x0 = torch.randint(0, width - crop_w + 1, (len(frames),), generator=generator)
    y0 = torch.randint(0, height - crop_h + 1, (len(frames),), generator=generator)
    rgb = torch.stack([r[y:y + crop_h, x:x + crop_w] for r, x, y in zip(rgb, x0, y0)])
    label = torch.stack([m[y:y + crop_h, x:x + crop_w] for m, x, y in zip(label, x0, y0)])
    target = torch.stack([t[:, y:y + crop_h, x:x + crop_w] for t, x, y in zip(target, x0, y0)])
    outputs = network(normalise(rgb))
    losses = {"label": label_loss(outputs["logits"], label),
              "vertex": vertex_loss(outputs["vertex"], target, label, n_classes)}
    rows_mask = torch.isin(data.objects[:, 0].long(), frames)
    position = {int(f): k for k, f in enumerate(frames.tolist())}
    batch_index = torch.tensor([position[int(f)] for f in data.objects[rows_mask, 0]], dtype=torch.long)
    boxes = data.objects[rows_mask, 7:11] - torch.stack([x0, y0, x0, y0], 1)[batch_index].double()
    clipped = torch.stack([boxes[:, 0].clamp(-0.5, crop_w - 0.5), boxes[:, 1].clamp(-0.5, crop_h - 0.5),
                           boxes[:, 2].clamp(-0.5, crop_w - 0.5), boxes[:, 3].clamp(-0.5, crop_h - 0.5)], 1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1]) >= 0.7 * area
    rows_mask[rows_mask.clone()] = kept  # RoIs mostly inside their crop
    rows = data.objects[rows_mask]
    if rows.shape[0]:
        batch_index, boxes = batch_index[kept], clipped[kept]
        class_index = rows[:, 2].long() - 1
        boxes = jitter_boxes(boxes, generator) if config.augment else boxes
        quats = network.quaternions(outputs, boxes.float(), batch_index, class_index)
        ray_R = ray_rotation(rows[:, 3:5], data.K[rows[:, 0].long()]).float()
        pred_R = ray_R @ quat_to_matrix(quats)
        true_R = data.rotations[rows_mask].float()
        losses["pose"] = point_matching_loss(pred_R, true_R, points[class_index], symmetric[class_index])
    else:
        losses["pose"] = outputs["roi8"].sum() * 0.0
    losses["total"] = losses["label"] + config.vertex_weight * losses["vertex"] + config.pose_weight * losses["pose"]
    return losses


def _camera_effects(rgb, label, config, generator, photos):
    """Per-frame image-space randomization (numpy), seeded from the training generator."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    effects = CameraEffects() if config.camera_effects else None
    out = [camera_effects(image.numpy(), mask.numpy(), rng, background_share=config.background_share,
                          photos=photos, effects=effects) for image, mask in zip(rgb, label)]
    return torch.from_numpy(np.stack(out))


def init_from(network: PoseCNN, model_dir, backbone: str, width: int) -> tuple[list[str], list[str]]:
    """Copy into ``network`` (a ``backbone`` of ``width`` base channels) every tensor of ``model_dir``'s
    weights with the same name and shape; returns (copied names, names of ``network`` left as initialised).
    The backbones must be the same: a few head tensors of another backbone may fit by shape, not by meaning.
    """
    meta = read_meta(model_dir)
    if (meta["backbone"], int(meta["width"])) != (backbone, width):
        raise ValueError(f"--init-from {model_dir}: its backbone is {meta['backbone']} of width {meta['width']}, "
                         f"this network's is {backbone} of width {width}: nothing to start from")
    path = Path(model_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    source = {k[4:]: v for k, v in load_file(str(path)).items() if k.startswith("net.")}
    state = network.state_dict()
    copied = [k for k, v in state.items() if k in source and source[k].shape == v.shape]
    state.update({k: source[k] for k in copied})
    network.load_state_dict(state)
    return copied, [k for k in state if k not in copied]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``inerf-ros train-posecnn`` (one per :class:`TrainConfig` field)."""
    config_tools.add_arguments(parser, TrainConfig)


def run(args: argparse.Namespace) -> int:
    """``inerf-ros train-posecnn``: from a scene, a BOP folder or a mesh folder."""
    config = config_tools.from_args(TrainConfig, args)
    if sum(map(bool, (config.scene, config.bop, config.meshes))) != 1:
        raise ValueError("give one of --scene (a directory written by `inerf-ros make-scene` or "
                         "`make-posecnn-data`), --bop (a BOP dataset folder) and --meshes (a mesh folder)")
    if config.meshes:
        return _from_meshes(config)
    return _train(config)


def _from_meshes(config: TrainConfig) -> int:
    """Render, train into OUT.partial, evaluate into OUT.partial/eval, then rename OUT.partial to OUT."""
    # lazy: randomized_scene loads mujoco, needed only to render a scene from meshes
    from inerf_ros.posecnn.randomized_scene import RandomizationConfig, make_posecnn_data, scene_config_for

    out = Path(config.out)
    if out.exists():
        raise FileExistsError(f"{out} exists: remove it or choose another --out (nothing was written)")
    if config.resume:
        raise ValueError("--meshes trains a new model: --resume does not apply")
    data_dir = Path(config.data_dir or f"{out}_data")
    if (data_dir / "posecnn_test" / "scene_camera.json").is_file():
        print(f"reusing the rendered frames in {data_dir}")
    else:
        scene_config = scene_config_for(meshes=config.meshes)  # reads every mesh first: a bad one stops here
        randomization = RandomizationConfig(train_views=config.views, test_views=100, seed=config.seed)
        timings = make_posecnn_data(scene_config, randomization, data_dir)
        print(f"rendered {config.views} + 100 frames into {data_dir} in {timings['total'] / 60:.1f} min")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # an earlier run that did not finish: ours to replace
    _train(dataclasses.replace(config, meshes="", scene=str(data_dir), out=str(partial)))
    done = subprocess.run([sys.executable, "-m", "inerf_ros.cli", "eval-posecnn", "--model", str(partial),
                           "--scene", str(data_dir), "--threads", str(config.threads), "--out",
                           str(partial / "eval")])
    if done.returncode != 0:
        raise RuntimeError(f"eval-posecnn failed (exit {done.returncode}); the trained model is in {partial}")
    partial.rename(out)
    print(f"wrote {out} (model, and its evaluation on held-out frames in {out / 'eval'})")
    return 0


def _train(config: TrainConfig) -> int:
    data = None
    if config.bop:
        data, bop_classes = read_bop(config.bop, config.input_width, config.input_height, config.bop_split,
                                     config.max_frames)
        classes = [ClassSpec(c.name, c.symmetry, c.diameter, sample_surface(c.vertices, c.faces, config.model_points))
                   for c in bop_classes]
    else:
        classes = classes_from_scene(config.scene, config.model_points)
    network, reference_focal, earlier = None, None, []
    if config.resume:
        meta = read_meta(config.out)
        check_class_table(meta, [c.name for c in classes], f"{config.out}/posecnn.json")
        network = load_posecnn(config.out).network
        reference_focal = float(meta["reference_focal"])
        # Keep the record of the runs these weights came from (oldest first); this run adds its own.
        old = dict(meta.get("training", {}))
        earlier = old.pop("earlier_stages", []) + [old]
    if config.init_from:
        if config.resume:
            raise ValueError("--init-from and --resume both choose the starting weights: pass one")
        network = PoseCNN(len(classes), config.backbone, config.width, config.decoder_width, fc_width=config.fc_width)
        copied, fresh = init_from(network, config.init_from, config.backbone, config.width)
        print(f"--init-from {config.init_from}: copied {len(copied)} tensors; initialised afresh "
              f"(other shape or name): {', '.join(fresh) or 'none'}")
    if data is None:
        data = load_split(config.scene, config.split, config.input_width, config.input_height, config.max_frames)
    print(f"{data.rgb.shape[0]} frames, {data.objects.shape[0]} visible objects, classes "
          f"{[c.name for c in classes]}")
    points = {i + 1: c.points for i, c in enumerate(classes)}

    def checkpoint(net, meta):
        meta["training"]["scene"] = str(Path(config.scene or config.bop))
        if earlier:
            meta["training"]["earlier_stages"] = earlier
        save_checkpoint(config.out, net, meta, points)

    network, meta, history = fit(config, data, classes, network, reference_focal, on_checkpoint=checkpoint)
    checkpoint(network, meta)
    n_params = sum(p.numel() for p in network.parameters())
    print(f"wrote {config.out} ({n_params / 1e6:.2f} M parameters, {meta['training']['steps']} steps, "
          f"{meta['training']['minutes']} min; final losses {meta['training']['final_losses']})")
    return 0
