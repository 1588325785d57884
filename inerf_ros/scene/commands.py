"""``inerf-ros make-scene``: render the tabletop demo world with full ground truth (layout: README.md here)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from tqdm import tqdm

from inerf_ros import config as cfg
from inerf_ros.frames import optical_to_opengl
from inerf_ros.lie import matrix_to_quat
from inerf_ros.scene import cameras
from inerf_ros.scene.config import QUICK, QUICK_WIDTH, SceneConfig, config_to_yaml, load_scene_config, shrink_image
from inerf_ros.scene.dataset import DEPTH_SCALE_MM, write_ply
from inerf_ros.scene.world import SceneRenderer, World

_SKIP_FLAGS = ("objects", "robot")


def _rows(matrix: np.ndarray) -> list:
    return [[float(v) for v in row] for row in np.asarray(matrix)]


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [-1, -1, -1, -1]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _projected_bbox(world, obj, world_T_cam, intrinsics) -> list[int]:
    """Box of the projected model vertices in front of the camera (BOP ``bbox_obj``), unclipped."""
    cam_T_obj = np.linalg.inv(world_T_cam) @ obj.world_T_obj
    p = obj.model.vertices @ cam_T_obj[:3, :3].T + cam_T_obj[:3, 3]
    p = p[p[:, 2] > 1e-3]
    if len(p) == 0:
        return [-1, -1, -1, -1]
    u = intrinsics.fx * p[:, 0] / p[:, 2] + intrinsics.cx
    v = intrinsics.fy * p[:, 1] / p[:, 2] + intrinsics.cy
    x0, y0 = int(np.floor(u.min() + 0.5)), int(np.floor(v.min() + 0.5))
    return [x0, y0, int(np.floor(u.max() + 0.5)) - x0 + 1, int(np.floor(v.max() + 0.5)) - y0 + 1]


def write_models(world, out_dir: Path) -> None:
    """classes.json, models/ (PLY + BOP models_info.json) and objects.yaml (nerf_T_obj per class)."""
    models_dir = out_dir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    classes, models_info, objects_yaml = [], {}, {}
    for obj in world.objects:
        model = obj.model
        lo, hi = model.bbox
        model_file = f"models/obj_{obj.class_id:06d}.ply"
        write_ply(out_dir / model_file, model.vertices, model.faces, model.uv)
        cv2.imwrite(str(models_dir / f"obj_{obj.class_id:06d}.png"), model.texture[:, :, ::-1])
        classes.append({"id": obj.class_id, "name": obj.name, "kind": model.params.get("type", "mesh"),
                        "size": [float(v) for v in hi - lo], "diameter": model.diameter, "symmetry": model.symmetry,
                        "bbox_min": [float(v) for v in lo], "bbox_max": [float(v) for v in hi],
                        "model_file": model_file, "texture_file": f"models/obj_{obj.class_id:06d}.png",
                        "params": model.params})
        info = {"diameter": 1000 * model.diameter,
                "min_x": 1000 * float(lo[0]), "min_y": 1000 * float(lo[1]), "min_z": 1000 * float(lo[2]),
                "size_x": 1000 * float(hi[0] - lo[0]), "size_y": 1000 * float(hi[1] - lo[1]),
                "size_z": 1000 * float(hi[2] - lo[2])}
        if model.symmetry == "continuous_z":
            info["symmetries_continuous"] = [{"axis": [0, 0, 1], "offset": [0, 0, 0]}]
        models_info[str(obj.class_id)] = info
        quat = matrix_to_quat(torch.from_numpy(obj.world_T_obj[:3, :3]).double()).tolist()
        objects_yaml[obj.name] = {"class_id": obj.class_id, "nerf_T_obj": _rows(obj.world_T_obj),
                                  "position": [float(v) for v in obj.world_T_obj[:3, 3]], "quaternion_xyzw": quat}
    (out_dir / "classes.json").write_text(json.dumps({"classes": classes}, indent=1))
    (models_dir / "models_info.json").write_text(json.dumps(models_info, indent=1))
    header = ("# Object poses in the world frame = the NeRF frame of this scene (metres_per_unit 1.0):\n"
              "# nerf_T_obj maps object-model points into the NeRF frame. Paste into an initializer config.\n")
    body = {"frame": "world", "metres_per_unit": 1.0, "objects": objects_yaml}
    (out_dir / "objects.yaml").write_text(header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None))


def write_robot(config, split_dir: Path) -> None:
    """``robot.json``: the true arm that moved the camera and the robot's believed model of itself.

    ``believed.world_T_base`` is the base placement a user would configure (``believed_world_T_base``,
    the start of the localizer's correction); the true placement is the ground truth it is scored on.
    """
    truth, believed = cameras.arm_robot(config)
    robot = config.robot_config()
    content = {"frames": "world_T_base: base_link in the world; tool0_T_camera_optical: camera_color_optical_frame "
                         "in tool0; metres. Joint angles per frame: scene_camera.json `joints`, radians.",
               "truth": truth.to_dict(), "believed": believed.to_dict(),
               "believed_world_T_base": believed.world_T_base.tolist(),
               "encoder_noise_deg": robot.encoder_noise_deg, "seed": robot.seed,
               "base_error": robot.base_error, "hand_eye_error": robot.hand_eye_error}
    (split_dir / "robot.json").write_text(json.dumps(content, indent=1))


def _scene_aabb(world) -> list[list[float]]:
    sx, sy = world.config.table_size
    top = max(float((o.model.vertices @ o.world_T_obj[:3, :3].T + o.world_T_obj[:3, 3])[:, 2].max())
              for o in world.objects)
    return [[-sx / 2, -sy / 2, -0.05], [sx / 2, sy / 2, top + 0.05]]


def render_split(world, renderer, split: str, views, out_dir: Path, progress: bool = True) -> None:
    """Render one camera set into ``out_dir/split`` (PNGs, BOP json, transforms.json)."""
    intrinsics = cameras.split_intrinsics(world.config, split)
    split_dir = out_dir / split
    for sub in ("rgb", "depth", "label", "instance"):
        (split_dir / sub).mkdir(parents=True, exist_ok=True)
    scene_gt, scene_camera, scene_gt_info, frames = {}, {}, {}, []
    for index, view in enumerate(tqdm(views, desc=f"make-scene {split}", disable=not progress, unit="frame")):
        world.set_lighting(view.lighting)
        world.set_distractors(view.distractors)
        world.forward()
        out = renderer.render(view.world_T_cam, intrinsics)
        name = f"{index:06d}.png"
        cv2.imwrite(str(split_dir / "rgb" / name), out.rgb[:, :, ::-1])
        depth_units = np.round(out.depth.astype(np.float64) * 1000.0 / DEPTH_SCALE_MM)
        depth_units[depth_units > 65535] = 0  # beyond the PNG's range: no depth
        cv2.imwrite(str(split_dir / "depth" / name), depth_units.astype(np.uint16))
        cv2.imwrite(str(split_dir / "label" / name), out.label)
        cv2.imwrite(str(split_dir / "instance" / name), out.instance)
        cam_T_world = np.linalg.inv(view.world_T_cam)
        camera = {"cam_K": [float(v) for v in intrinsics.K.ravel()], "depth_scale": DEPTH_SCALE_MM,
                  "cam_R_w2c": [float(v) for v in cam_T_world[:3, :3].ravel()],
                  "cam_t_w2c": [1000.0 * float(v) for v in cam_T_world[:3, 3]],
                  "width": intrinsics.width, "height": intrinsics.height}
        if view.time is not None:
            camera["time"] = float(view.time)
        if view.joints is not None:
            camera["joints"] = [float(v) for v in view.joints]  # true joint angles, radians (robot.json)
        gts, infos = [], []
        for obj in world.objects:
            cam_T_obj = cam_T_world @ obj.world_T_obj
            gts.append({"obj_id": obj.class_id, "inst_id": obj.instance_id,
                        "cam_R_m2c": [float(v) for v in cam_T_obj[:3, :3].ravel()],
                        "cam_t_m2c": [1000.0 * float(v) for v in cam_T_obj[:3, 3]]})
            visible = out.instance == obj.instance_id
            px_visib = int(np.count_nonzero(visible))
            px_all = int(out.px_all.get(obj.instance_id, 0))
            infos.append({"visib_fract": float(px_visib / px_all) if px_all else 0.0, "px_count_visib": px_visib,
                          "px_count_all": px_all, "bbox_visib": _bbox(visible),
                          "bbox_obj": _projected_bbox(world, obj, view.world_T_cam, intrinsics)})
        key = str(index)
        scene_gt[key], scene_gt_info[key], scene_camera[key] = gts, infos, camera
        frame = {"file_path": f"rgb/{name}", "depth_file_path": f"depth/{name}", "mask_path": f"label/{name}",
                 "transform_matrix": _rows(optical_to_opengl(view.world_T_cam)), "index": index}
        if view.time is not None:
            frame["time"] = float(view.time)
        frames.append(frame)
    for filename, content in (("scene_gt.json", scene_gt), ("scene_camera.json", scene_camera),
                              ("scene_gt_info.json", scene_gt_info)):
        (split_dir / filename).write_text(json.dumps(content))
    meta = {"camera_model": "OPENCV", "fl_x": intrinsics.fx, "fl_y": intrinsics.fy,
            "cx": intrinsics.cx + 0.5, "cy": intrinsics.cy + 0.5, "w": intrinsics.width, "h": intrinsics.height,
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "metres_per_unit": 1.0,
            "depth_unit_scale_factor": DEPTH_SCALE_MM / 1000.0, "scene_aabb": _scene_aabb(world),
            "world_frame": "world: z up, table top at z = 0, metres (README: inerf_ros/scene/README.md)"}
    (split_dir / "transforms.json").write_text(json.dumps({**meta, "frames": frames}, indent=1))
    if split == "arm":
        write_robot(world.config, split_dir)
    if split == "nerf":
        every = world.config.nerf_test_every
        test = [f for f in frames if f["index"] % every == every - 1]
        train = [f for f in frames if f["index"] % every != every - 1]
        (split_dir / "transforms_train.json").write_text(json.dumps({**meta, "frames": train}, indent=1))
        (split_dir / "transforms_test.json").write_text(json.dumps({**meta, "frames": test}, indent=1))


def make_scene(config: SceneConfig, out_dir, progress: bool = True) -> dict:
    """Build the world, check every camera, render every split; returns seconds per stage."""
    out_dir = Path(out_dir)
    timings = {}
    start = time.perf_counter()
    sizes = [cameras.split_intrinsics(config, s) for s in config.splits] or [cameras.base_intrinsics(config)]
    world = World(config, max_size=(max(k.width for k in sizes), max(k.height for k in sizes)))
    views = {split: cameras.make_views(config, world, split) for split in config.splits}
    for split, split_views in views.items():
        cameras.check_views(world, split, split_views)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scene.yaml").write_text("# resolved config written by inerf-ros make-scene\n" + config_to_yaml(config))
    write_models(world, out_dir)
    timings["build"] = time.perf_counter() - start
    with SceneRenderer(world) as renderer:
        for split, split_views in views.items():
            t0 = time.perf_counter()
            render_split(world, renderer, split, split_views, out_dir, progress)
            timings[split] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    return timings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``inerf-ros make-scene``: the scene YAML, the output, and SceneConfig's flags."""
    parser.add_argument("--config", default=None, help="scene YAML (default: config/scenes/tabletop.yaml)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--quick", action="store_true", help="tiny images and few frames (smoke tests)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    cfg.add_arguments(parser, SceneConfig, skip=_SKIP_FLAGS)
    # Flags override the YAML only when given: their parsed default is None (help shows the real default).
    parser.set_defaults(**{f.name: None for f in dataclasses.fields(SceneConfig) if f.name not in _SKIP_FLAGS})


def config_from_args(args: argparse.Namespace) -> SceneConfig:
    """The scene YAML with the flags given on the command line (and ``--quick``'s settings) applied."""
    overrides = dict(QUICK) if args.quick else {}
    for f in dataclasses.fields(SceneConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            overrides[f.name] = value
    config = load_scene_config(args.config, overrides)
    if args.quick and args.width is None:
        config = shrink_image(config, QUICK_WIDTH)
    return config


def run(args: argparse.Namespace) -> int:
    """``inerf-ros make-scene``: render, then one summary line (or one error line)."""
    try:
        config = config_from_args(args)
        timings = make_scene(config, args.out, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as err:
        print(f"make-scene: error: {err}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    print(f"make-scene: wrote {args.out} ({summary})")
    return 0
