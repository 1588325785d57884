"""``inerf-ros demo`` (``make demo``): the localization demo on the tabletop world, end to end.

1. the demo world: ``make-scene`` (a UR10e arm's wrist camera and the object table;
   config/scenes/tabletop.yaml) into ``OUT/world`` and ``make-bag`` into ``OUT/arm.mcap`` (images,
   camera_info, the arm's /joint_states and believed TF chain, the truth), both reused when present;
2. the shipped models: ``models/nerf_tabletop`` (NeRF) and ``models/posecnn_tabletop`` (PoseCNN);
3. the headline: the whole bag played at its recorded rate through the three nodes, each in its own
   process as ``ros2 launch`` runs them; inerf_node publishes the ``nerf -> base_link`` correction, and
   the camera is scored *through TF* at every frame against the truth, side by side with the arm's
   kinematics alone (its believed base placement and chain) -> ``OUT/report_live``;
4. with ``--full``: the offline Table II (PoseCNN prior + mask region / prior only / plain iNeRF) on
   every ``--every``-th frame -> ``OUT/report_offline``;
then the tables, the targets and where the reports are.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

# Targets of the offline Table II (PoseCNN prior + mask region column), seed 003's to beat.
TARGETS = {"success_translation": (">=", 0.99), "success_rotation": (">=", 0.98), "median_iterations": ("<=", 60)}
MASK_TITLE = "PoseCNN prior + mask region"
# Targets of the arm in the loop (the camera through TF, live, one torch thread per node process).
ARM_TARGETS = {"frac_within_2cm_2deg": (">=", 0.95), "p95_translation_cm": ("<=", 2.0),
               "p95_rotation_deg": ("<=", 1.5), "base_error_10s_cm": ("<=", 0.5), "base_error_10s_deg": ("<=", 0.3),
               "median_latency_s": ("<=", 0.3), "tf_single_parent": ("==", True)}
ARM_ROWS = (("frames scored (from the first localization)", "frames_scored", "{:d}"),
            ("within 2 cm / 2 deg", "frac_within_2cm_2deg", "{:.3f}"),
            ("within 5 cm / 5 deg", "frac_within_5cm_5deg", "{:.3f}"),
            ("p95 translation (cm)", "p95_translation_cm", "{:.2f}"),
            ("p95 rotation (deg)", "p95_rotation_deg", "{:.2f}"),
            ("median translation (cm)", "median_translation_cm", "{:.2f}"),
            ("median rotation (deg)", "median_rotation_deg", "{:.2f}"),
            ("base placement error at the end (cm / deg)", ("base_error_cm", "base_error_deg"), "{:.2f} / {:.2f}"),
            ("estimates", "estimates", "{:d}"),
            ("median latency, image in to pose out (s)", "median_latency_s", "{:.2f}"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``inerf-ros demo`` arguments."""
    parser.add_argument("--out", default="demo_out", help="working directory, reused between runs (default: demo_out)")
    parser.add_argument("--nerf-model", default="", help="NeRF model directory (default: the shipped nerf_tabletop)")
    parser.add_argument("--posecnn-model", default="",
                        help="PoseCNN model directory (default: the shipped posecnn_tabletop)")
    parser.add_argument("--full", action="store_true",
                        help="also the offline Table II (PoseCNN prior + mask region / prior only / plain iNeRF), "
                             "~10 more minutes on one core")
    parser.add_argument("--every", type=int, default=10,
                        help="offline (--full): every N-th arm frame (default 10: the 30-frame table)")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="live: playback speed relative to bag time (default 1: as recorded; the nodes drop "
                             "what they cannot process, as on a robot)")
    parser.add_argument("--num-rays", type=int, default=0,
                        help="rays per optimizer step (default 0: inerf_node's in config/localize.yaml)")
    parser.add_argument("--no-live", action="store_true", help="skip the live replay through the nodes")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: fastest on a shared 2-core machine; 0: torch's default)")


def _step(number: int, text: str) -> None:
    print(f"\n== [{number}/4] {text}", flush=True)


def ensure_world(out: Path) -> tuple[Path, Path]:
    """OUT/world (arm split + objects.yaml) and OUT/arm.mcap, made when missing."""
    # lazy: the scene renderer (MuJoCo) is heavy; `inerf-ros demo --help` must stay instant
    from inerf_ros.scene.bag_command import BagConfig, write_bag
    from inerf_ros.scene.commands import make_scene
    from inerf_ros.scene.config import load_scene_config

    world, bag = out / "world", out / "arm.mcap"
    complete = (world / "objects.yaml").is_file() and (world / "arm" / "scene_gt.json").is_file()
    if complete:
        print(f"demo world: reusing {world}")
    else:
        print(f"demo world: rendering {world} (arm trajectory, ~1-2 min on 2 cores)", flush=True)
        timings = make_scene(load_scene_config(None, {"splits": ["arm"]}), world, progress=True)
        print(f"demo world: done in {timings['total']:.0f} s")
    if bag.is_file() and bag.stat().st_mtime >= (world / "arm" / "scene_gt.json").stat().st_mtime:
        print(f"bag: reusing {bag}")
    else:
        bag.unlink(missing_ok=True)
        count = write_bag(world, bag, BagConfig(trajectory="arm"), progress=True)
        print(f"bag: wrote {count} images to {bag}")
    return world, bag


def check_models(args) -> list[str]:
    """Fill in the shipped model directories where ``args`` gives none; return a message per missing model."""
    from inerf_ros.replay import default_model_dir, missing_model_message  # lazy: replay imports torch

    args.nerf_model = args.nerf_model or str(default_model_dir("nerf_tabletop"))
    args.posecnn_model = args.posecnn_model or str(default_model_dir("posecnn_tabletop"))
    problems = []
    for kind, directory in (("nerf", Path(args.nerf_model)), ("posecnn", Path(args.posecnn_model))):
        if not directory.is_dir() or not any(directory.glob("*.safetensors")):
            problems.append(missing_model_message(kind, directory))
    return problems


def _met(value, op: str, target) -> bool:
    if op == "==":
        return value == target
    return value >= target if op == ">=" else value <= target


def target_lines(summary: dict, targets: dict = TARGETS) -> list[str]:
    """One line per target: the measured value of ``summary``, the target, and whether it was met."""
    lines = []
    for key, (op, target) in targets.items():
        value = summary.get(key, float("nan"))
        shown = value if isinstance(value, bool) else f"{value:.3g}"
        lines.append(f"  {key}: {shown} (target {op} {target}): {'met' if _met(value, op, target) else 'MISSED'}")
    return lines


def arm_table(arm: dict) -> str:
    """The headline: the camera through TF, iNeRF-corrected vs the arm's kinematics alone."""
    lines = ["| camera through TF, every frame | iNeRF-corrected | kinematics alone (believed model) |",
             "| --- | --- | --- |"]
    for label, keys, form in ARM_ROWS:
        keys = keys if isinstance(keys, tuple) else (keys,)
        cells = []
        for prefix in ("", "kinematics_"):
            values = [arm.get(prefix + key, float("nan")) for key in keys]
            cells.append(form.format(*values) if all(isinstance(v, (int, float)) for v in values) else "-")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def believed_world_T_base(world: Path) -> list[float]:
    """The arm's believed base placement (what a user configures) from the world's ``arm/robot.json``."""
    from scipy.spatial.transform import Rotation  # lazy: scipy takes a second; `demo --help` must not wait

    pose = np.asarray(json.loads((world / "arm" / "robot.json").read_text())["believed_world_T_base"], float)
    return [float(v) for v in list(pose[:3, 3]) + list(Rotation.from_matrix(pose[:3, :3]).as_quat())]


def replay_configs(num_rays: int = 0):
    """(OptimizerConfig, SamplingConfig) the demo replays with: inerf_node's in config/localize.yaml, with
    ``num_rays`` rays per step when it is positive.
    """
    from inerf_ros.replay import node_defaults  # lazy: replay imports torch

    optimizer, sampling = node_defaults()
    return optimizer, dataclasses.replace(sampling, num_rays=num_rays) if num_rays > 0 else sampling


def run(args: argparse.Namespace) -> int:
    """``inerf-ros demo``: world, bag, live and offline replays and the report; 0 when it ran through, 1 when a model is
    missing.
    """
    # lazy: torch and scipy come with these; `inerf-ros demo --help` must stay instant
    from inerf_ros.initializer import CameraPriorEstimator
    from inerf_ros.replay import ReplayConfig, initializer_config, load_models, replay
    from inerf_ros.replay.bag import BagTopics

    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _step(1, "demo world and bag")
    world, bag = ensure_world(out)
    _step(2, "models")
    problems = check_models(args)
    if problems:
        for problem in problems:
            print(f"demo: {problem}", file=sys.stderr)
        return 1
    config = ReplayConfig(nerf_model=args.nerf_model, posecnn_model=args.posecnn_model,
                          objects=str(world / "objects.yaml"), device=args.device,
                          threads=args.threads)
    model, detector = load_models(config, need_posecnn=True)
    estimator = CameraPriorEstimator(initializer_config(world / "objects.yaml", float(model.metadata.metres_per_unit)))
    print(f"models: NeRF {args.nerf_model}, PoseCNN {args.posecnn_model}")
    # No covariance offline (the table does not use it); the live node computes it as usual.
    optimizer, sampling = replay_configs(args.num_rays)
    results = {}
    if not args.no_live:
        _step(3, f"the arm in the loop: the whole bag at {args.rate:g}x its recorded rate through posecnn_node -> "
                 "initializer_node -> inerf_node (a process each), the camera scored through TF")
        live_config = dataclasses.replace(config, rate=args.rate, drain_s=30.0,
                                          believed_world_T_base=believed_world_T_base(world))
        results["live"] = replay(bag, out / "report_live", live_config, BagTopics(), optimizer, sampling, live=True,
                                 model=model, detector=detector, estimator=estimator)
    if args.full:
        _step(4, f"offline replay, Table II (every {args.every}th arm frame, 3 columns)")
        offline_config = dataclasses.replace(config, every=args.every)
        results["offline"] = replay(bag, out / "report_offline", offline_config, BagTopics(),
                                    dataclasses.replace(optimizer, covariance_rays=0), sampling,
                                    model=model, detector=detector, estimator=estimator)
    print()
    arm = results.get("live", {}).get("arm")
    if arm is not None:
        print(f"== the arm in the loop ({results['live']['report']}/report.md)")
        print(arm_table(arm))
        print(f"TF kept a tree (one parent per frame): {arm['tf_single_parent']}")
        print("targets (live, camera through TF):")
        print("\n".join(target_lines(arm, ARM_TARGETS)))
        print()
    if "offline" in results:
        result = results["offline"]
        print(f"== offline Table II ({result['report']}/report.md)")
        print(result["table"])
        if MASK_TITLE in result["summaries"]:
            print("targets (offline, PoseCNN prior + mask region):")
            print("\n".join(target_lines(result["summaries"][MASK_TITLE])))
        print()
    for name, result in results.items():
        for note in result["notes"]:
            print(f"note ({name}): {note}")
        print(f"{name} report: {Path(result['report']).resolve()}")
    print(f"demo: done in {time.perf_counter() - started:.0f} s")
    return 0
