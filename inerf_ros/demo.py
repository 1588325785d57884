"""``inerf-ros demo`` (``make demo``): the localization demo on the tabletop world, end to end.

1. the demo world: ``make-scene`` (the arm trajectory and the object table; config/scenes/tabletop.yaml)
   into ``OUT/world`` and ``make-bag`` into ``OUT/arm.mcap``, both reused when present;
2. the shipped models: ``models/nerf_tabletop`` (NeRF) and ``models/posecnn_tabletop`` (PoseCNN);
3. offline replay (Table II: PoseCNN prior + mask region / prior only / plain iNeRF) on every
   ``--every``-th frame of the arm trajectory -> ``OUT/report_offline``;
4. live replay of the arm trajectory through the three nodes over DDS (posecnn_node ->
   initializer_node -> inerf_node) -> ``OUT/report_live``;
then the tables, the targets and where the reports are.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

# The targets for the PoseCNN prior + mask region column on the arm trajectory.
TARGETS = {"success_translation": (">=", 0.99), "success_rotation": (">=", 0.98), "median_iterations": ("<=", 60)}
MASK_TITLE = "PoseCNN prior + mask region"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="working directory, reused between runs (default: demo_out)")
    parser.add_argument("--nerf-model", default="", help="NeRF model directory (default: the shipped nerf_tabletop)")
    parser.add_argument("--posecnn-model", default="",
                        help="PoseCNN model directory (default: the shipped posecnn_tabletop)")
    parser.add_argument("--every", type=int, default=10,
                        help="offline: every N-th arm frame (default 10: the 30-frame table; 20 halves the time)")
    parser.add_argument("--live-every", type=int, default=15,
                        help="live: play every N-th arm frame (default 15: 1 Hz of bag time)")
    parser.add_argument("--live-frames", type=int, default=6, help="live: frames to play (default 6; 0: all)")
    parser.add_argument("--live-rate", type=float, default=0.05,
                        help="live: playback speed relative to bag time (default 0.05: a busy 2-core CPU keeps up)")
    parser.add_argument("--num-rays", type=int, default=0,
                        help="rays per optimizer step (default 0: inerf_node's in config/localize.yaml)")
    parser.add_argument("--no-live", action="store_true", help="skip the live replay through the nodes")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline Table II")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: fastest on a shared 2-core machine; 0: torch's default)")


def _step(number: int, text: str) -> None:
    print(f"\n== [{number}/4] {text}", flush=True)


def ensure_world(out: Path) -> tuple[Path, Path]:
    """OUT/world (arm split + objects.yaml) and OUT/arm.mcap, made when missing."""
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
    from inerf_ros.replay import missing_model_message

    from inerf_ros.replay import default_model_dir

    args.nerf_model = args.nerf_model or str(default_model_dir("nerf_tabletop"))
    args.posecnn_model = args.posecnn_model or str(default_model_dir("posecnn_tabletop"))
    problems = []
    for kind, directory in (("nerf", Path(args.nerf_model)), ("posecnn", Path(args.posecnn_model))):
        if not directory.is_dir() or not any(directory.glob("*.safetensors")):
            problems.append(missing_model_message(kind, directory))
    return problems


def target_lines(summary: dict) -> list[str]:
    lines = []
    for key, (op, target) in TARGETS.items():
        value = summary.get(key, float("nan"))
        met = value >= target if op == ">=" else value <= target
        lines.append(f"  {key}: {value:.3g} (target {op} {target}): {'met' if met else 'MISSED'}")
    return lines


def replay_configs(num_rays: int = 0):
    """(OptimizerConfig, SamplingConfig) the demo replays with: inerf_node's in config/localize.yaml, with
    ``num_rays`` rays per step when it is positive."""
    from inerf_ros.replay import node_defaults

    optimizer, sampling = node_defaults()
    return optimizer, dataclasses.replace(sampling, num_rays=num_rays) if num_rays > 0 else sampling


def run(args: argparse.Namespace) -> int:
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
    if not args.no_offline:
        _step(3, f"offline replay, Table II (every {args.every}th arm frame, 3 columns)")
        config.every = args.every
        results["offline"] = replay(bag, out / "report_offline", config, BagTopics(),
                                    dataclasses.replace(optimizer, covariance_rays=0), sampling,
                                    model=model, detector=detector, estimator=estimator)
    if not args.no_live:
        _step(4, f"live replay through posecnn_node -> initializer_node -> inerf_node over DDS "
                 f"(every {args.live_every}th frame, rate {args.live_rate:g})")
        config.every, config.rate, config.max_frames = args.live_every, args.live_rate, args.live_frames
        config.drain_s = max(30.0, 3.0 / args.live_rate)
        results["live"] = replay(bag, out / "report_live", config, BagTopics(), optimizer, sampling, live=True,
                                 model=model, detector=detector, estimator=estimator)
    print()
    for name, result in results.items():
        print(f"== {name} replay ({result['report']}/report.md)")
        print(result["table"])
        for note in result["notes"]:
            print(f"note: {note}")
        print()
    if "offline" in results and MASK_TITLE in results["offline"]["summaries"]:
        print("targets (offline, PoseCNN prior + mask region):")
        print("\n".join(target_lines(results["offline"]["summaries"][MASK_TITLE])))
    for name, result in results.items():
        print(f"{name} report: {Path(result['report']).resolve()}")
    print(f"demo: done in {time.perf_counter() - started:.0f} s")
    return 0
