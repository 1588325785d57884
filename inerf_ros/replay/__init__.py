"""``inerf-ros replay BAG --report DIR``: replay a camera bag through the localization pipeline and
report accuracy (seed 003's Table II) and speed.

``--offline`` (default) calls PoseCNN, the initializer and the optimizer directly on the bag's
images, one independent estimate per frame and column (see :mod:`inerf_ros.replay.offline`).
``--live`` plays the bag's images and camera_info over DDS into the three live nodes started in
this process (posecnn_node, initializer_node, inerf_node), with rate control and ``/clock`` from
the bag's stamps, and scores what the nodes publish (see :mod:`inerf_ros.replay.live`).
The report is described in :mod:`inerf_ros.replay.report`.

Examples::

    inerf-ros replay demo_out/arm.mcap --objects demo_out/world/objects.yaml --report out/replay --every 10
    inerf-ros replay demo_out/arm.mcap --live --rate 0.1 --objects demo_out/world/objects.yaml --report out/live
    inerf-ros replay other.mcap --image-topic /cam/image --camera-info-topic /cam/info --gt-topic /mocap/pose ...
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from inerf_ros import config as cfg
from inerf_ros import params_yaml, paths
from inerf_ros.config import option
from inerf_ros.initializer import CameraPriorEstimator
from inerf_ros.nerf.checkpoint import load_model
from inerf_ros.object_table import initializer_config
from inerf_ros.optim.inerf import OptimizerConfig
from inerf_ros.optim.sampling import SamplingConfig
from inerf_ros.posecnn.model import load_posecnn
from inerf_ros.replay import report, tf_score
from inerf_ros.replay.bag import BagTopics, CameraBag
from inerf_ros.replay.offline import COLUMNS, OfflineReplay


def node_defaults() -> tuple[OptimizerConfig, SamplingConfig]:
    """inerf_node's optimizer and sampling configuration in config/localize.yaml: replay's and the demo's,
    so that they measure what the live node runs (each offline column then picks its sampling strategy).
    """
    return params_yaml.node_config(OptimizerConfig), params_yaml.node_config(SamplingConfig)


@dataclasses.dataclass
class ReplayConfig:
    """What to replay and how."""

    nerf_model: str = option("", "NeRF model directory (empty: the shipped models/nerf_tabletop)")
    posecnn_model: str = option("", "PoseCNN model directory (empty: the shipped models/posecnn_tabletop)")
    objects: str = option("", "object poses in the NeRF frame: make-scene's objects.yaml or an initializer "
                              "config YAML (needed for the PoseCNN prior)")
    columns: list = option(["mask", "prior", "plain"], "offline table columns: mask (PoseCNN prior + mask region), "
                                                       "prior (PoseCNN prior only), plain (iNeRF from perturbed truth)")
    every: int = option(1, "use every N-th image of the bag", range=(1, 100000))
    max_frames: int = option(0, "stop after this many images (0: all)", range=(0, 10 ** 9))
    device: str = option("cpu", "torch device: cpu, cuda or cuda:N")
    threads: int = option(0, "torch CPU threads (0: torch's default; 1 is fastest on a busy 2-core machine)",
                          range=(0, 1024))
    perturbation_seed: int = option(0, "seed of the plain-iNeRF start perturbations", range=(0, 2 ** 31 - 1))
    overlay_scale: float = option(0.25, "size of the overlay images in the MCAP (0: none)", range=(0.0, 1.0))
    rate: float = option(1.0, "live: playback speed relative to bag time (0.1 = ten times slower)",
                         range=(1e-4, 100.0))
    domain_id: int = option(-1, "live: ROS_DOMAIN_ID of the replay (-1: the environment's ROS_DOMAIN_ID)",
                            range=(-1, 232))
    live_processes: bool = option(True, "live: each node in a process of its own, loading its model from disk, as "
                                        "ros2 launch runs them (false: all in this process, sharing one "
                                        "interpreter; models given in memory always run so)")
    base_frame: str = option("base_link", "live: the robot's base frame; when the bag's TF has it, inerf_node "
                                          "publishes the nerf -> base correction and the report scores the camera "
                                          "through TF at every frame (summary.json)")
    believed_world_T_base: list = option([], "live: the robot's believed base placement in the world frame, x y z "
                                             "(m) qx qy qz qw: inerf_node's initial correction, and the "
                                             "kinematics-only baseline of the report; empty: none")
    params_file: str = option("", "live: the nodes' parameter file (empty: the launch's, config/localize.yaml), e.g. "
                                  "a workspace's WS/localize.yaml; the replay's own models, objects, frames, "
                                  "believed base placement and optimizer settings still override it")
    drain_s: float = option(30.0, "live: after the last image, wait at most this long for the nodes' results (s)",
                            range=(0.0, 3600.0))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``inerf-ros replay`` arguments: the bag, live or offline, the report folder and the configs' flags."""
    parser.add_argument("bag", help="a ROS 2 bag: one .mcap file or a rosbag2 directory")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--live", dest="live", action="store_true", help="play into the live nodes over DDS")
    mode.add_argument("--offline", dest="live", action="store_false",
                      help="call the pipeline directly (default; faster)")
    parser.add_argument("--report", required=True, help="directory for the report (created)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    cfg.add_arguments(parser, ReplayConfig)
    cfg.add_arguments(parser, BagTopics)
    cfg.add_arguments(parser, OptimizerConfig)
    cfg.add_arguments(parser, SamplingConfig, skip=("strategy",))
    optimizer, sampling = node_defaults()
    shipped = {**dataclasses.asdict(optimizer), **dataclasses.asdict(sampling)}
    del shipped["strategy"]  # the columns choose it
    parser.set_defaults(**shipped)
    code_defaults = {**dataclasses.asdict(OptimizerConfig()), **dataclasses.asdict(SamplingConfig())}
    changed = ", ".join(f"{key}={value}" for key, value in shipped.items() if value != code_defaults[key])
    parser.epilog = ("optimizer and sampling defaults: inerf_node's in config/localize.yaml, which differ from the "
                     f"(default: ...) above in {changed}")


def default_model_dir(name: str) -> Path:
    """A shipped model: the source checkout's models/NAME when it holds a checkpoint, else the share directory's."""
    candidates = [paths.SOURCE_ROOT / "models" / name, paths.model_dir(name)]
    for directory in candidates:
        if directory.is_dir() and any(directory.glob("*.safetensors")):
            return directory
    return candidates[0] if candidates[0].parent.is_dir() else candidates[1]


def missing_model_message(kind: str, directory: Path) -> str:
    """Why a ``kind`` (nerf or posecnn) model is missing from ``directory``, and the commands that make it."""
    make = {
        "nerf": f"inerf-ros make-scene --out demo_world --splits nerf && inerf-ros train-nerf demo_world/nerf "
                f"--out {directory} --minutes 10 --downscale 2",
        "posecnn": f"inerf-ros make-scene --out demo_world --splits posecnn_train posecnn_test && "
                   f"inerf-ros train-posecnn --scene demo_world --out {directory}",
    }[kind]
    return f"{kind} model missing: {directory} has no checkpoint; make it with: {make}"


def load_models(config: ReplayConfig, need_posecnn: bool):
    """(nerf model, posecnn detector or None); FileNotFoundError names the missing model and the command."""
    nerf_dir = Path(config.nerf_model or default_model_dir("nerf_tabletop"))
    if not nerf_dir.is_dir() or not any(nerf_dir.glob("*.safetensors")):
        raise FileNotFoundError(missing_model_message("nerf", nerf_dir))
    model = load_model(nerf_dir, device=config.device)
    detector = None
    if need_posecnn:
        posecnn_dir = Path(config.posecnn_model or default_model_dir("posecnn_tabletop"))
        if not posecnn_dir.is_dir() or not any(posecnn_dir.glob("*.safetensors")):
            raise FileNotFoundError(missing_model_message("posecnn", posecnn_dir))
        detector = load_posecnn(posecnn_dir, device=config.device)
    return model, detector


def replay_offline(bag: CameraBag, model, detector, estimator, config: ReplayConfig, optimizer: OptimizerConfig,
                   sampling: SamplingConfig, progress: bool = True):
    """(records, overlays {frame index: rgb}, column names) of an offline replay."""
    columns = [c for c in config.columns if c in COLUMNS]
    if detector is None or estimator is None:
        columns = [c for c in columns if c == "plain"]
    if not bag.has_ground_truth:
        columns = [c for c in columns if c != "plain"]
    names = {c: COLUMNS[c] for c in columns}
    records, overlays = [], {}
    if not columns:
        return records, overlays, names
    runner = OfflineReplay(model, detector, estimator, bag.world_T_nerf, optimizer, sampling, columns,
                           device=config.device, seed=config.perturbation_seed, overlay_scale=config.overlay_scale)
    total = len(range(0, bag.num_images, config.every))
    if config.max_frames:
        total = min(total, config.max_frames)
    bar = tqdm(total=total, desc="replay (offline)", unit="frame", disable=not progress)
    for frame in bag.frames(config.every, config.max_frames):
        frame_records, overlay = runner.run_frame(frame)
        records += frame_records
        if overlay is not None:
            overlays[frame.index] = overlay
        first = frame_records[0]
        bar.set_postfix_str(", ".join(
            f"{r.column} {r.translation_error_m * 100:.1f}cm/{r.rotation_error_deg:.1f}deg" if r.has_estimate
            and np.isfinite(r.rotation_error_deg) else f"{r.column} {r.status}" for r in frame_records)
            if first else "")
        bar.update(1)
    bar.close()
    return records, overlays, names


def run(args: argparse.Namespace) -> int:
    """``inerf-ros replay``: 0 with a report, 1 when the bag had no camera_info, 2 when it cannot run."""
    config = cfg.from_args(ReplayConfig, args)
    topics = cfg.from_args(BagTopics, args)
    optimizer = cfg.from_args(OptimizerConfig, args)
    sampling = cfg.from_args(SamplingConfig, args)
    try:
        summary = replay(args.bag, Path(args.report), config, topics, optimizer, sampling, live=args.live,
                         progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as error:
        print(f"replay: error: {error}", file=sys.stderr)
        return 2
    print(summary["table"])
    for note in summary["notes"]:
        print(f"note: {note}")
    print(f"replay: report in {summary['report']}")
    missing = [note for note in summary["notes"] if note.startswith("no camera_info")]
    if missing:  # the report is all "no camera_info": not a result to exit 0 with
        print(f"replay: error: {missing[0]}", file=sys.stderr)
        return 1
    return 0


def replay(bag_path, report_dir: Path, config: ReplayConfig, topics: BagTopics, optimizer: OptimizerConfig,
           sampling: SamplingConfig, live: bool = False, progress: bool = True, model=None, detector=None,
           estimator=None) -> dict:
    """Replay a bag and write the report. ``model``/``detector``/``estimator`` may be given (tests,
    demo); otherwise they are loaded from the config. Returns {"table", "notes", "report", "summaries"}.
    """
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    with CameraBag(bag_path, topics) as bag:
        notes = list(bag.notes)
        init_config = initializer_config(config.objects) if config.objects else None
        if estimator is None and init_config is None:
            notes.append("no object table (--objects): no PoseCNN prior, the prior columns are skipped")
        injected = model is not None
        if model is None:
            model, loaded_detector = load_models(config, need_posecnn=init_config is not None)
            detector = detector or loaded_detector
        if estimator is None and init_config is not None:
            if abs(init_config.metres_per_unit - float(model.metadata.metres_per_unit)) > 1e-6:
                notes.append(f"object table in {init_config.metres_per_unit} m/unit, NeRF in "
                             f"{model.metadata.metres_per_unit} m/unit")
            estimator = CameraPriorEstimator(init_config)
        frames_info = {"images_in_bag": bag.num_images, "every": config.every, "max_frames": config.max_frames}
        extra, arm = [], None
        if live:
            from inerf_ros.replay import live as live_replay  # lazy: live replay needs a sourced ROS, offline none

            # Node processes load their models from disk: the directories replay loaded (or was told of).
            on_disk = not injected or bool(config.nerf_model and config.posecnn_model)
            model_dirs = {"nerf": str(config.nerf_model or default_model_dir("nerf_tabletop")),
                          "posecnn": str(config.posecnn_model or default_model_dir("posecnn_tabletop"))} \
                if config.live_processes and on_disk else None
            records, overlays, names, live_info = live_replay.replay_live(
                bag, model, detector, init_config, config, optimizer, sampling, progress=progress,
                model_dirs=model_dirs)
            arm = live_info.pop("arm", None)
            frames_info.update(live_info)
            notes += live_info.get("notes", [])
            extra = live_replay.describe(live_info)
            if arm is not None:
                report_dir.mkdir(parents=True, exist_ok=True)
                scores = arm.pop("scores")
                tf_score.plot_errors_over_time(scores, report_dir / "tf_error_over_time.png",
                                               arm["first_localization_s"])
                extra += tf_score.describe(arm, "tf_error_over_time.png")
        else:
            records, overlays, names = replay_offline(bag, model, detector, estimator, config, optimizer, sampling,
                                                      progress)
        if not bag.has_ground_truth and records:
            notes.append("no ground truth: the table has runtime figures only")
        notes += bag.problems.lines()
        frames_info["replayed"] = len({r.frame for r in records})
        frames_info["wall_s"] = time.perf_counter() - started
        settings = {"bag": str(bag_path), "mode": "live" if live else "offline", "replay": dataclasses.asdict(config),
                    "topics": dataclasses.asdict(topics), "optimizer": dataclasses.asdict(optimizer),
                    "sampling": dataclasses.asdict(sampling)}
        text_table, summaries = report.write_report(report_dir, records, names, notes, settings, overlays,
                                                    bag.world_T_nerf, frames_info, extra, summary_keys=arm)
    return {"table": text_table, "notes": notes, "report": report_dir, "summaries": summaries, "records": records,
            "arm": arm}
