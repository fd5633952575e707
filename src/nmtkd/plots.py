"""Plots of an experiment's comparison (matplotlib, no display needed): BLEU against decoding
speed with the Pareto front marked, BLEU against parameters and size on disk, every model's
validation BLEU and loss against updates, Top-1 Agreement against BLEU. Each plot is rendered
in the format its file name asks for (PNG or SVG)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: render to files only
# SVG text stays text (searchable, editable in a paper), and ids are stable across reruns
matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "nmtkd"})

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from nmtkd.errors import NmtkdError  # noqa: E402
from nmtkd.safepaths import atomic_paths  # noqa: E402

FORMATS = ("png", "svg")
QUANT_LABEL = {"float32": "float32", "int8": "int8"}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (as fast or faster and as good or better,
    strictly in one), ordered by speed. Points with a NaN coordinate are never on it."""
    valid = [i for i, (x, y) in enumerate(points) if not (math.isnan(x) or math.isnan(y))]

    def dominated(i: int) -> bool:
        xi, yi = points[i]
        return any(points[j][0] >= xi and points[j][1] >= yi and points[j] != points[i]
                   for j in valid)

    return sorted((i for i in valid if not dominated(i)), key=lambda i: points[i][0])


def student_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per student, in the comparison's order: each run's values averaged over the
    test sets, then mean and sample standard deviation (`*_std`, 0 for one run) over runs."""
    per_run = frame.groupby(["student", "model"], sort=False).agg(
        bleu_beam=("bleu_beam", "mean"), bleu_beam_int8=("bleu_beam_int8", "mean"),
        top1_agreement=("top1_agreement", "mean"), tok_s_float32=("tok_s_float32", "first"),
        tok_s_int8=("tok_s_int8", "first"), tok_s_fixed_float32=("tok_s_fixed_float32", "first"),
        tok_s_fixed_int8=("tok_s_fixed_int8", "first"), params=("params", "first"),
        size_float32_mb=("size_float32_mb", "first"), size_int8_mb=("size_int8_mb", "first"))
    grouped = per_run.groupby(level="student", sort=False)
    stds = grouped.std(ddof=1).fillna(0.0).add_suffix("_std")
    return pd.concat([grouped.mean(), stds, grouped.size().rename("runs")], axis=1)


def _labelled_points(axes: plt.Axes, x: pd.Series, y: pd.Series, yerr: pd.Series,
                     **style: Any) -> None:
    """Points with their seed spread as error bars, each labelled with its student's name."""
    shown = ~(x.isna() | y.isna())
    axes.errorbar(x[shown], y[shown], yerr=yerr[shown], fmt="o", capsize=3, **style)
    for name, (dx, dy, align) in label_offsets(x[shown], y[shown]).items():
        axes.annotate(name, (x[name], y[name]), textcoords="offset points", xytext=(dx, dy),
                      ha=align, fontsize=8)


# label positions around a point (offset points, alignment), tried in this order
LABEL_OFFSETS = ((4, 4, "left"), (4, -11, "left"), (-4, 4, "right"), (-4, -11, "right"))


def label_offsets(x: pd.Series, y: pd.Series, near_x: float = 0.15,
                  near_y: float = 0.05) -> dict[Any, tuple[int, int, str]]:
    """Each point's label position: the first of LABEL_OFFSETS on a side (right/left,
    above/below) that no earlier point within `near_x` × `near_y` of the axes' span (in data
    units scaled to [0, 1]) has taken, so that labels of close points do not overlap."""
    def scaled(values: pd.Series) -> pd.Series:
        span = values.max() - values.min()
        return (values - values.min()) / span if span > 0 else values * 0.0

    sx, sy = scaled(x), scaled(y)
    placed: list[tuple[float, float, int, int]] = []
    offsets = {}
    for name in x.index:
        def free(dx: int, dy: int, name: Any = name) -> bool:
            return not any(abs(sx[name] - px) < near_x and abs(sy[name] - py) < near_y
                           and (dx > 0) == (pdx > 0) and (dy > 0) == (pdy > 0)
                           for px, py, pdx, pdy in placed)

        dx, dy, align = next((offset for offset in LABEL_OFFSETS if free(*offset[:2])),
                             LABEL_OFFSETS[0])
        placed.append((sx[name], sy[name], dx, dy))
        offsets[name] = (dx, dy, align)
    return offsets


def speed_column(summary: pd.DataFrame, quant: str) -> str:
    """tokens/s at fixed lengths where measured (older speed files: free decoding only)."""
    fixed = f"tok_s_fixed_{quant}"
    return fixed if summary[fixed].notna().any() else f"tok_s_{quant}"


def bleu_column(quant: str) -> str:
    return "bleu_beam" if quant == "float32" else "bleu_beam_int8"


def bleu_speed(summary: pd.DataFrame, quant: str, context: dict[str, Any]) -> Figure:
    bleu, column = bleu_column(quant), speed_column(summary, quant)
    measure = "fixed" if column.startswith("tok_s_fixed") else "free"
    speed, score = summary[column], summary[bleu]
    figure, axes = plt.subplots(figsize=(7, 5))
    _labelled_points(axes, speed, score, summary[f"{bleu}_std"], color="tab:blue")
    front = pareto_front(list(zip(speed, score, strict=True)))
    axes.plot(speed.iloc[front], score.iloc[front], "s--", color="tab:red", markersize=9,
              markerfacecolor="none", label="Pareto front (no model both faster and better)")
    axes.set_xlabel(f"CTranslate2 {quant} tokens/s on CPU ({context['speed_testset']}, "
                    + ("fixed output lengths)" if measure == "fixed" else "free decoding)"))
    axes.set_ylabel(f"BLEU K={context['beam']} ({quant}, mean over test sets)")
    axes.set_title(f"BLEU against decoding speed, {quant}")
    axes.legend(loc="lower left", fontsize=8)
    return figure


def bleu_size(summary: pd.DataFrame, context: dict[str, Any]) -> Figure:
    figure, (by_params, by_size) = plt.subplots(1, 2, figsize=(11, 5), sharey=True)
    err = summary["bleu_beam_std"]
    _labelled_points(by_params, summary["params"] / 1e6, summary["bleu_beam"], err)
    by_params.set_xlabel("parameters (millions)")
    by_params.set_ylabel(f"BLEU K={context['beam']} (float32, mean over test sets)")
    for quant, bleu, color in (("float32", "bleu_beam", "tab:blue"),
                               ("int8", "bleu_beam_int8", "tab:orange")):
        sizes = summary[f"size_{quant}_mb"]
        if not sizes.isna().all():  # each export with its own BLEU
            _labelled_points(by_size, sizes, summary[bleu], summary[f"{bleu}_std"], color=color,
                             label=f"CTranslate2 {quant} (its own BLEU)")
    by_size.set_xlabel("size on disk (MB)")
    by_size.legend(fontsize=8)
    figure.suptitle("BLEU against model size")
    return figure


def two_panel_curves(series: dict[str, list[dict[str, float]]], keys: tuple[str, str],
                     labels: tuple[str, str], title: str,
                     scale: tuple[float, float] = (1.0, 1.0)) -> Figure:
    """Two quantities of each run's records against updates, one panel each; runs without
    the first key are left out."""
    figure, panels = plt.subplots(1, 2, figsize=(12, 5))
    for name, records in series.items():
        points = [record for record in records if keys[0] in record]
        updates = [record["update"] for record in points]
        for axes, key, factor in zip(panels, keys, scale, strict=True):
            if points:
                axes.plot(updates, [factor * record[key] for record in points], ".-",
                          label=name)
    for axes, label in zip(panels, labels, strict=True):
        axes.set_ylabel(label)
        axes.set_xlabel("update (a fine-tuned model counts its own)")
    panels[1].legend(fontsize=7, ncol=2)
    figure.suptitle(title)
    return figure


def validation_curves(histories: dict[str, list[dict[str, float]]],
                      context: dict[str, Any]) -> Figure:
    return two_panel_curves(histories, ("valid_bleu", "valid_nll"),
                            ("validation BLEU (greedy)", "validation loss (NLL per target token)"),
                            f"Validation during training: {context['experiment']}")


def agreement_bleu(summary: pd.DataFrame, context: dict[str, Any]) -> Figure:
    students = summary.drop(index=context["teacher"], errors="ignore")
    figure, axes = plt.subplots(figsize=(7, 5))
    _labelled_points(axes, students["top1_agreement"], students["bleu_beam"],
                     students["bleu_beam_std"], color="tab:green")
    axes.set_xlabel("Top-1 Agreement with the teacher (%, mean over test sets)")
    axes.set_ylabel(f"BLEU K={context['beam']} (float32, mean over test sets)")
    axes.set_title("Top-1 Agreement against BLEU (students)")
    return figure


def selection_curves(curves: dict[str, list[dict[str, float]]],
                     context: dict[str, Any]) -> Figure:
    """Selective KD's threshold and selected share per update (Wang et al.'s Figure 6)."""
    return two_panel_curves(
        curves, ("train_threshold", "train_selected"),
        ("selection threshold (student NLL of the gold token)", "distilled tokens (% of batch)"),
        f"Selective KD: which tokens are distilled, {context['experiment']}", scale=(1.0, 100.0))


def read_trainings(trainings: dict[str, str], key: str,
                   optional: bool = False) -> dict[str, list[dict[str, float]]]:
    """Each trained model's `key` records: its validation `history` or its `train_curve`
    (`optional`: a summary without it, e.g. written before it existed, adds nothing)."""
    found = {}
    for name, path in trainings.items():
        try:
            summary = json.loads(Path(path).read_text())
            if key in summary or not optional:
                found[name] = summary[key]
        except (OSError, json.JSONDecodeError, KeyError) as error:
            raise NmtkdError(f"{path}: no {key} ({error})") from None
    return found


def renderers(summary: pd.DataFrame, trainings: dict[str, str],
              context: dict[str, Any]) -> dict[str, Callable[[], Figure]]:
    """Each plot's name and how to draw it."""
    return {"bleu_speed_float32": lambda: bleu_speed(summary, "float32", context),
            "bleu_speed_int8": lambda: bleu_speed(summary, "int8", context),
            "bleu_size": lambda: bleu_size(summary, context),
            "validation_curves": lambda: validation_curves(
                read_trainings(trainings, "history"), context),
            "selection": lambda: selection_curves(
                read_trainings(trainings, "train_curve", optional=True), context),
            "agreement_bleu": lambda: agreement_bleu(summary, context)}


def render(figure: Figure, fmt: str) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    # SVG without a date, so that a rerun on the same results writes the same file
    figure.savefig(buffer, format=fmt, dpi=120, metadata={"Date": None} if fmt == "svg" else None)
    plt.close(figure)
    return buffer.getvalue()


# the comparison's columns the plots read (student_summary's); all but the names are numbers
NAME_COLUMNS = ("student", "model")
NUMBER_COLUMNS = ("bleu_beam", "bleu_beam_int8", "top1_agreement", "tok_s_float32", "tok_s_int8",
                  "tok_s_fixed_float32", "tok_s_fixed_int8", "params", "size_float32_mb",
                  "size_int8_mb")


def check_table(frame: pd.DataFrame, source: str) -> None:
    """Refuse a comparison the plots cannot be drawn from: a missing column, no rows, text or
    an infinite value in a column of numbers (empty cells are "not measured")."""
    missing = [column for column in (*NAME_COLUMNS, *NUMBER_COLUMNS) if column not in frame]
    if missing:
        raise NmtkdError(f"{source}: no column {', '.join(missing)} (not a table of nmtkd "
                         "compare?)")
    if frame.empty:
        raise NmtkdError(f"{source}: no rows; nothing to plot")
    for column in NUMBER_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        broken = (frame[column].notna() & ~values.abs().lt(math.inf)).to_numpy()
        if broken.any():
            row = int(broken.argmax())  # the first; the CSV's line is row + 2 (header first)
            value = frame[column].iloc[row]
            shown = repr(value) if isinstance(value, str) else str(value)
            raise NmtkdError(f"{source}, line {row + 2}: {column} is {shown}, not a finite "
                             "number")
        frame[column] = values


def drawn_columns(summary: pd.DataFrame, name: str) -> list[tuple[str, ...]]:
    """The columns of each kind of point a plot of the comparison draws; [] for the training
    curves. Top-1 Agreement is not required: without a torch teacher no model has one, and
    the plot is drawn without points, as it is today."""
    if name.startswith("bleu_speed_"):
        quant = name.removeprefix("bleu_speed_")
        return [(speed_column(summary, quant), bleu_column(quant))]
    return {"bleu_size": [("params", "bleu_beam"), ("size_float32_mb", "bleu_beam"),
                          ("size_int8_mb", "bleu_beam_int8")],
            "agreement_bleu": [("bleu_beam",)]}.get(name, [])


def check_drawable(summary: pd.DataFrame, name: str, source: str) -> None:
    """Refuse a plot that would have no point: no row with values in all of some kind's
    columns."""
    kinds = drawn_columns(summary, name)
    if kinds and not any(summary[list(columns)].notna().all(axis=1).any() for columns in kinds):
        wanted = [" and ".join(columns) for columns in kinds]
        if len(wanted) > 1:
            wanted = [", in ".join(wanted[:-1]) + f", or in {wanted[-1]}"]
        raise NmtkdError(f"{source}: nothing to draw in {name}: no row has values in "
                         f"{wanted[0]}")


def write_plots(frame: pd.DataFrame, trainings: dict[str, str], context: dict[str, Any],
                outputs: list[Path], source: str = "the comparison") -> None:
    """Render each output (`<plot>.<png|svg>`), then write them all or none. `source` names
    the comparison in errors."""
    frame = frame.copy()
    check_table(frame, source)
    summary = student_summary(frame)
    available = renderers(summary, trainings, context)
    rendered = []
    for output in outputs:
        name, fmt = output.stem, output.suffix.lstrip(".")
        if name not in available or fmt not in FORMATS:
            raise NmtkdError(f"{output}: not a plot this command draws (plots: "
                             f"{', '.join(available)}; formats: {', '.join(FORMATS)})")
        check_drawable(summary, name, source)
        rendered.append(render(available[name](), fmt))
    with atomic_paths(outputs) as temporaries:
        for temporary, content in zip(temporaries, rendered, strict=True):
            temporary.write_bytes(content)
