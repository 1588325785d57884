"""Accuracy bookkeeping shared by the benchmarks and replay: per-trial records, summaries, tables, plots.

Thresholds follow the iNeRF paper and seed 003: success is rotation < 5 degrees and translation
< 5 cm. For scenes without metric scale, "5 cm" is 1.25% of the mean camera-to-scene-centre
distance (what 5 cm is to the Blender scenes' 4-unit camera distance); summaries say which applies.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

ROTATION_THRESHOLD_DEG = 5.0
TRANSLATION_THRESHOLD_M = 0.05
UNITLESS_TRANSLATION_FRACTION = 0.0125  # 5 cm of a 4 m camera distance


@dataclasses.dataclass
class Trial:
    """One estimate compared with the truth."""

    group: str
    """Which configuration produced it (table column)."""
    rotation_error_deg: float
    translation_error: float
    """In metres, or in 'metric-equivalent' units for unitless scenes (see :class:`TranslationScale`)."""
    iterations: int
    converged: bool
    seconds: float
    start_rotation_error_deg: float = float("nan")
    start_translation_error: float = float("nan")
    frame: str = ""
    error_history: list = dataclasses.field(default_factory=list)
    """[(rotation deg, translation)] per iteration, for error-vs-iteration plots."""


@dataclasses.dataclass
class TranslationScale:
    """How NeRF units become the reported translation unit."""

    metres_per_unit: float
    metric: bool
    """False for scenes without metric scale (SfM): errors are then scaled so that the 5 cm threshold
    means 1.25% of the mean camera distance."""
    mean_camera_distance: float

    @property
    def units_per_reported(self) -> float:
        """NeRF units per reported unit (metre, or metre-equivalent)."""
        if self.metric:
            return 1.0 / self.metres_per_unit
        return self.mean_camera_distance * UNITLESS_TRANSLATION_FRACTION / TRANSLATION_THRESHOLD_M

    def describe(self) -> str:
        """A sentence for the report saying what unit the translation errors are in."""
        if self.metric:
            return f"translation in metres ({self.metres_per_unit:g} m per NeRF unit)"
        return ("scene without metric scale: '5 cm' means 1.25% of the mean camera-to-scene-centre distance "
                f"({self.mean_camera_distance:.3f} NeRF units), as 5 cm is to the Blender scenes' 4-unit distance")


def summarize(trials: list[Trial]) -> dict:
    """Success rates, median errors, iterations and time of a list of trials."""
    if not trials:
        return {"trials": 0}
    rot = np.array([t.rotation_error_deg for t in trials])
    trans = np.array([t.translation_error for t in trials])
    ok_rot, ok_trans = rot < ROTATION_THRESHOLD_DEG, trans < TRANSLATION_THRESHOLD_M
    return {
        "trials": len(trials),
        "success_rotation": float(ok_rot.mean()),
        "success_translation": float(ok_trans.mean()),
        "success": float((ok_rot & ok_trans).mean()),
        "median_rotation_error_deg": float(np.median(rot)),
        "median_translation_error": float(np.median(trans)),
        "median_iterations": float(np.median([t.iterations for t in trials])),
        "converged": float(np.mean([t.converged for t in trials])),
        "median_seconds": float(np.median([t.seconds for t in trials])),
        "mean_seconds": float(np.mean([t.seconds for t in trials])),
    }


def summarize_groups(trials: list[Trial]) -> dict[str, dict]:
    """{group: :func:`summarize` of its trials}, in the order the groups first appear."""
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        groups.setdefault(trial.group, []).append(trial)
    return {name: summarize(items) for name, items in groups.items()}


ROWS = [
    ("success (< 5 deg and < 5 cm)", "success", "{:.2f}"),
    ("translation < 5 cm", "success_translation", "{:.2f}"),
    ("rotation < 5 deg", "success_rotation", "{:.2f}"),
    ("median rotation error (deg)", "median_rotation_error_deg", "{:.3f}"),
    ("median translation error (cm)", "median_translation_error", "cm"),
    ("median iterations to converge", "median_iterations", "{:.0f}"),
    ("converged", "converged", "{:.2f}"),
    ("median seconds per estimate", "median_seconds", "{:.2f}"),
    ("trials", "trials", "{:d}"),
]


def markdown_rows(header: list[str], rows: list[list[str]]) -> str:
    """A plain Markdown table: one header row, then one row per list of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def markdown_table(summaries: dict[str, dict], rows=ROWS) -> str:
    """Rows = metrics, columns = groups (the layout of seed 003's Table II)."""
    names = list(summaries)
    lines = ["| metric | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for label, key, fmt in rows:
        cells = []
        for name in names:
            value = summaries[name].get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("–")
            elif fmt == "cm":
                cells.append(f"{100 * value:.2f}")
            else:
                cells.append(fmt.format(int(value) if fmt == "{:d}" else value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_and_save_report(report: dict, text: str, out: str | None) -> None:
    """Print a command's text report and, when ``out`` is set, write the JSON report there."""
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(out), report)
        print(f"wrote {out}")


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON (numpy values and dataclasses become plain JSON)."""
    path.write_text(json.dumps(payload, indent=2, default=_json_default))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def plot_error_vs_iteration(trials: list[Trial], path: Path, title: str = "") -> Path | None:
    """Median (and quartile band) rotation and translation error per iteration, one line per group."""
    # lazy: matplotlib takes ~1 s to import and only the plots need it; Agg must be chosen before pyplot loads
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy, and only after use("Agg")

    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        if trial.error_history:
            groups.setdefault(trial.group, []).append(trial)
    if not groups:
        return None
    fig, (ax_rot, ax_trans) = plt.subplots(1, 2, figsize=(11, 4))
    for name, items in groups.items():
        length = max(len(t.error_history) for t in items)
        # A trial that stopped early keeps its final error for the remaining iterations.
        padded = np.array([t.error_history + [t.error_history[-1]] * (length - len(t.error_history))
                           for t in items], dtype=np.float64)
        x = np.arange(1, length + 1)
        for ax, column, scale in ((ax_rot, 0, 1.0), (ax_trans, 1, 100.0)):
            values = padded[:, :, column] * scale
            median = np.median(values, axis=0)
            low, high = np.percentile(values, 25, axis=0), np.percentile(values, 75, axis=0)
            ax.plot(x, median, label=name)
            ax.fill_between(x, low, high, alpha=0.2)
    ax_rot.axhline(ROTATION_THRESHOLD_DEG, color="grey", linestyle="--", linewidth=0.8)
    ax_trans.axhline(100 * TRANSLATION_THRESHOLD_M, color="grey", linestyle="--", linewidth=0.8)
    ax_rot.set(xlabel="iteration", ylabel="rotation error (deg)", yscale="log", title="rotation")
    ax_trans.set(xlabel="iteration", ylabel="translation error (cm)", yscale="log", title="translation")
    ax_rot.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
