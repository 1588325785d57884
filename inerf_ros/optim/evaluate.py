"""``inerf-ros eval-poses``: the iNeRF pose-estimation benchmark on views held out of NeRF training.

Protocols (start pose = ground truth perturbed):

* ``inerf``: rotation about a random axis by an angle uniform in [-40, 40] degrees, translation
  uniform in [-0.2, 0.2] per axis, scaled to the scene (NeRF units x mean camera distance / 4).
* ``prior``: a PoseCNN-like prior: 10 degrees about a random axis and a 5 cm translation in a
  random direction.

Methods (``--method``): ``shipped`` (default) runs the optimizer and sampling settings of the
``inerf_node`` section of ``config/localize.yaml``, what the nodes run (feature alignment first, then a
short photometric refinement); ``inerf`` runs the paper's plain iNeRF (Adam on all pixels' photometric
loss, 300 steps, no feature alignment: the dataclass defaults). Flags given override either.

Reports, per sampling strategy and hypothesis count: success rates, median errors, iterations to
converge and seconds per estimate, as Markdown, JSON and an error-vs-iteration plot.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from inerf_ros import config as config_tools
from inerf_ros import evaluation, frames, lie, params_yaml
from inerf_ros.datasets.transforms import load_transforms, resolve_transforms_path
from inerf_ros.nerf.checkpoint import load_model
from inerf_ros.optim.inerf import OptimizerConfig, PoseOptimizer
from inerf_ros.optim.sampling import SamplingConfig

PROTOCOLS = {
    # name: (rotation deg, translation, fixed: exactly that rotation and shift length (the prior: a
    # detector's typical error) rather than iNeRF's uniform angle in +-deg and shift in +-t per axis)
    "inerf": (40.0, 0.2, False),
    "prior": (10.0, 0.05, True),
}
METHODS = ("shipped", "inerf")
# The paper's comparison of pixel sampling strategies (its Table 1).
INERF_STRATEGIES = "random,interest_regions"
OPTIMIZER_SKIP = ("seed", "num_hypotheses")
SAMPLING_SKIP = ("strategy",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``eval-poses`` flags: model, data, protocol, method, and the optimizer and sampling options."""
    parser.add_argument("model_dir", help="trained NeRF (train-nerf --out)")
    parser.add_argument("data", help="transforms.json (or its folder) with the held-out views")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="inerf",
                        help="start-pose perturbation (default: inerf, 40 deg / 0.2 units)")
    parser.add_argument("--trials", type=int, default=50, help="trials per configuration (default 50)")
    parser.add_argument("--method", choices=METHODS, default="shipped",
                        help="shipped: the optimizer and sampling settings of inerf_node in config/localize.yaml "
                             "(feature alignment, then a short refinement: what the nodes run); inerf: the paper's "
                             "plain iNeRF (the option defaults below); flags given override either (default: shipped)")
    parser.add_argument("--strategies", default=None,
                        help="comma-separated sampling strategies to compare (default: the node's strategy for "
                             f"--method shipped, {INERF_STRATEGIES} for --method inerf)")
    parser.add_argument("--hypotheses", default="1", help="comma-separated hypothesis counts (default: 1)")
    parser.add_argument("--split", default=None,
                        help="use transforms_SPLIT.json of the data folder (e.g. test); default: the views "
                             "train-nerf held out (every --holdout-every-th)")
    parser.add_argument("--holdout-every", type=int, default=8, help="hold-out rule of train-nerf (default 8)")
    parser.add_argument("--downscale", type=float, default=None,
                        help="image downscale (default: the one the model was trained at)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--out", default=None, help="report folder (default: MODEL_DIR/eval_poses_PROTOCOL)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the perturbations")
    config_tools.add_arguments(parser, OptimizerConfig, skip=OPTIMIZER_SKIP)
    config_tools.add_arguments(parser, SamplingConfig, skip=SAMPLING_SKIP)
    # A flag left out reads None, so that the method's value takes its place (method_configs tells them apart).
    parser.set_defaults(**{f.name: None for cls, skip in ((OptimizerConfig, OPTIMIZER_SKIP),
                                                          (SamplingConfig, SAMPLING_SKIP))
                           for f in config_tools.fields(cls) if f.name not in skip})


def method_configs(args) -> tuple[OptimizerConfig, SamplingConfig, list[str]]:
    """(optimizer config, sampling config, strategies) of ``args.method`` with the flags given over it."""
    if args.method == "shipped":
        optimizer = params_yaml.node_config(OptimizerConfig)
        sampling = params_yaml.node_config(SamplingConfig)
        strategies = args.strategies or sampling.strategy
    else:
        optimizer, sampling = OptimizerConfig(), SamplingConfig()
        strategies = args.strategies or INERF_STRATEGIES

    def given(cls, skip) -> dict:
        return {f.name: getattr(args, f.name) for f in config_tools.fields(cls)
                if f.name not in skip and getattr(args, f.name, None) is not None}

    optimizer = dataclasses.replace(optimizer, seed=args.seed, **given(OptimizerConfig, OPTIMIZER_SKIP))
    sampling = dataclasses.replace(sampling, **given(SamplingConfig, SAMPLING_SKIP))
    config_tools.validate(optimizer)
    config_tools.validate(sampling)
    return optimizer, sampling, [s.strip() for s in strategies.split(",") if s.strip()]


def perturb(nerf_T_cam: np.ndarray, protocol: str, unit_scale: float, rng: np.random.Generator) -> np.ndarray:
    """Start pose: ``nerf_T_cam`` (optical) rotated about its centre and shifted per the protocol.

    ``unit_scale`` is NeRF units per protocol unit (Blender scenes: 1).
    """
    max_deg, translation, fixed_length = PROTOCOLS[protocol]
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    if fixed_length:
        axis = torch.randn(1, 3, generator=generator, dtype=torch.float64)
        rotation = lie.axis_angle_rotation(axis, torch.tensor([math.radians(max_deg)], dtype=torch.float64))[0].numpy()
    else:
        rotation = lie.random_rotation_about_random_axis(max_deg, 1, generator=generator)[0].numpy()
    if fixed_length:
        direction = rng.normal(size=3)
        shift = direction / np.linalg.norm(direction) * translation * unit_scale
    else:
        shift = rng.uniform(-translation, translation, size=3) * unit_scale
    start = nerf_T_cam.copy()
    start[:3, :3] = rotation @ nerf_T_cam[:3, :3]
    start[:3, 3] = nerf_T_cam[:3, 3] + shift
    return start


def protocol_unit(protocol: str, scale: evaluation.TranslationScale) -> float:
    """NeRF units per unit of the protocol's start translation.

    iNeRF's +-0.2 is in Blender units, whose cameras sit 4 units from the object: "scaled to the
    scene" it becomes +-0.2 x (mean camera distance / 4) on every scene (5 % of the distance), metric
    or not. A prior's 5 cm is a detector's error, so it stays 5 cm where the scene is metric.
    """
    if protocol == "prior" and scale.metric:
        return 1.0 / scale.metres_per_unit
    return scale.mean_camera_distance / 4.0


def describe_protocol(protocol: str, scale: evaluation.TranslationScale) -> str:
    """One sentence saying how the start poses of ``protocol`` are drawn, in NeRF units."""
    max_deg, translation, fixed_length = PROTOCOLS[protocol]
    shift = translation * protocol_unit(protocol, scale)
    if fixed_length:
        return (f"starts: the truth rotated by {max_deg:g} deg about a random axis and shifted by {shift:.3g} "
                f"NeRF units in a random direction")
    return (f"starts: the truth rotated by up to {max_deg:g} deg about a random axis and shifted uniformly "
            f"within +-{shift:.3g} NeRF units per axis")


def translation_scale(data, model, metric: bool) -> evaluation.TranslationScale:
    """Reporting scale: metres when the data has a metric scale, else relative to the camera distance."""
    centres = data.nerf_T_cam[:, :3, 3].double().numpy()
    aabb = np.asarray(model.metadata.aabb, dtype=np.float64)
    mean_distance = float(np.linalg.norm(centres - aabb.mean(axis=0), axis=1).mean())
    return evaluation.TranslationScale(float(data.metres_per_unit), metric, mean_distance)


def has_metric_scale(data_path, split) -> bool:
    """A transforms.json is metric when it says so (``metres_per_unit``); SfM and Blender files do not."""
    return "metres_per_unit" in json.loads(resolve_transforms_path(data_path, split).read_text())


def run_trials(model, data, scale: evaluation.TranslationScale, optimizer_config: OptimizerConfig,
               sampling_config: SamplingConfig, strategies, hypotheses, protocol: str, trials: int, seed: int,
               device: str) -> list[evaluation.Trial]:
    """Every (strategy, K) configuration on the same start poses, so columns compare like with like."""
    units_per_reported = scale.units_per_reported
    unit = protocol_unit(protocol, scale)
    rng = np.random.default_rng(seed)
    cases = []
    for trial in range(trials):
        view = trial % len(data)
        nerf_T_gt = frames.opengl_to_optical(data.nerf_T_cam[view].double().numpy())
        cases.append((view, nerf_T_gt, perturb(nerf_T_gt, protocol, unit, rng)))
    results = []
    combos = list(itertools.product(strategies, hypotheses))
    progress = tqdm(total=len(combos) * len(cases), desc="eval-poses", unit="trial")
    for strategy, k in combos:
        group = f"{strategy}, K={k}"
        optimizer = PoseOptimizer(model, dataclasses.replace(optimizer_config, num_hypotheses=k),
                                  dataclasses.replace(sampling_config, strategy=strategy), device=device)
        for view, nerf_T_gt, start in cases:
            image = (data.images[view].numpy() * 255).round().astype(np.uint8)
            estimate = optimizer.estimate(image, data.intrinsics[view], start, keep_history=True)
            gt = torch.from_numpy(nerf_T_gt)

            def errors(pose):
                rot, trans = lie.pose_error(torch.from_numpy(pose), gt)
                return float(rot), float(trans) / units_per_reported

            rot, trans = errors(estimate.nerf_T_optical)
            start_rot, start_trans = errors(start)
            results.append(evaluation.Trial(
                group=group, rotation_error_deg=rot, translation_error=trans, iterations=estimate.iterations,
                converged=estimate.converged, seconds=estimate.time_s, start_rotation_error_deg=start_rot,
                start_translation_error=start_trans, frame=data.file_names[view],
                error_history=[errors(p) for p in estimate.history]))
            progress.update(1)
            progress.set_postfix(group=group, rot=f"{rot:.2f}", cm=f"{100 * trans:.1f}")
    progress.close()
    return results


def run(args) -> int:
    """Run ``eval-poses``: the trials, then the Markdown / JSON report and the plot."""
    model = load_model(args.model_dir, device=args.device)
    downscale = args.downscale or float(model.metadata.extra.get("downscale", 1.0))
    data = load_transforms(args.data, downscale=downscale, background=tuple(model.metadata.background),
                           split=args.split)
    if args.split is None:
        _, held_out = data.holdout_indices(args.holdout_every)
        data = data.subset(held_out)
    if len(data) == 0:
        raise ValueError(f"{args.data}: no held-out views to evaluate")
    poses = data.nerf_T_cam.double().numpy()
    bad = [data.file_names[i] for i in range(len(data)) if not np.isfinite(poses[i]).all()
           or abs(abs(np.linalg.det(poses[i][:3, :3])) - 1.0) > 1e-3]
    if bad:  # the truth of a trial: refuse it up front rather than report NaN errors or fail mid-run
        raise ValueError(f"{args.data}: {len(bad)} views have a NaN or non-rigid transform_matrix "
                         f"(first: {bad[0]})")
    optimizer_config, sampling_config, strategies = method_configs(args)
    for strategy in strategies:
        dataclasses.replace(sampling_config, strategy=strategy).check()
    hypotheses = [int(k) for k in args.hypotheses.split(",")]
    scale = translation_scale(data, model, has_metric_scale(args.data, args.split))

    trials = run_trials(model, data, scale, optimizer_config, sampling_config, strategies, hypotheses,
                        args.protocol, args.trials, args.seed, args.device)
    out = Path(args.out or Path(args.model_dir) / f"eval_poses_{args.protocol}")
    out.mkdir(parents=True, exist_ok=True)
    summaries = evaluation.summarize_groups(trials)
    table = evaluation.markdown_table(summaries)
    plot = evaluation.plot_error_vs_iteration(trials, out / "error_vs_iteration.png",
                                              f"{Path(args.data).name}: protocol {args.protocol}")
    report = (f"# eval-poses: {args.protocol} protocol on {args.data}, method {args.method}\n\n"
              f"{len(data)} held-out views, {args.trials} trials per configuration, seed {args.seed}; "
              f"{scale.describe()}; {describe_protocol(args.protocol, scale)}.\n\n{table}\n\n"
              "![error vs iteration](error_vs_iteration.png)\n")
    (out / "report.md").write_text(report)
    evaluation.write_json(out / "results.json", {
        "protocol": args.protocol, "method": args.method, "data": str(args.data), "model": str(args.model_dir),
        "scale": dataclasses.asdict(scale), "optimizer": dataclasses.asdict(optimizer_config),
        "sampling": dataclasses.asdict(sampling_config), "summaries": summaries,
        "trials": [dataclasses.asdict(t) | {"error_history": None} for t in trials]})
    print(table)
    print(f"\nreport: {out / 'report.md'}" + (f", plot: {plot}" if plot else ""))
    return 0
