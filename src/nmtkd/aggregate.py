"""Seeds in the tables: the per-run rows of the comparison summarised per student and test set
(mean, standard deviation over seeds, their number), Δ against the baseline's mean, and the
cells as printed: `mean ± std` (n > 1 seeds), significance marks from the paired tests."""

from __future__ import annotations

import math

import pandas as pd

# metrics shown as mean ± std over seeds
MEAN_STD = ("bleu_k1", "bleu_beam", "chrf", "ter", "top1_agreement", "top1_reference",
            "test_ppl", "bleu_beam_int8", "runaway")
DESCRIPTIVE = ("data", "loss", "init")
SIGNIFICANCE_LEVEL = 0.05


def summarise(frame: pd.DataFrame, baseline: str | None, teacher: str) -> pd.DataFrame:
    """One row per (student, test set), in the frame's order: the mean of every number over
    the student's runs, `<metric>_std` (sample std, NaN for one run) and `seeds`."""
    grouped = frame.groupby(["student", "testset"], sort=False)
    numeric = [c for c in frame.select_dtypes("number").columns if c != "seed"]
    stds = grouped[list(MEAN_STD)].std(ddof=1).add_suffix("_std")
    summary = pd.concat([grouped[list(DESCRIPTIVE)].first(), grouped[numeric].mean(), stds,
                         grouped.size().rename("seeds")], axis=1).reset_index()
    add_derived(summary, baseline, teacher)
    return summary


def add_derived(table: pd.DataFrame, baseline: str | None, teacher: str) -> None:
    """The columns computed from others, per run or per student: Δ against the baseline, the
    int8 BLEU drop, and the int8 speed-up over the teacher (at fixed lengths, where measured)."""
    add_deltas(table, baseline)
    table["int8_bleu_drop"] = table["bleu_beam"] - table["bleu_beam_int8"]
    # at fixed lengths (model cost); speed files written before that have free decoding only
    speed = "tok_s_fixed_int8" if table["tok_s_fixed_int8"].notna().any() else "tok_s_int8"
    teacher_speed = table.loc[table["student"] == teacher, speed].iloc[0]
    table["speedup_int8"] = table[speed] / teacher_speed


def add_deltas(table: pd.DataFrame, baseline: str | None) -> None:
    """Δ BLEU K=1 and K=beam: the row minus the baseline student's mean on its test set."""
    for metric in ("bleu_k1", "bleu_beam"):
        if baseline is None:
            table[f"delta_{metric}"] = float("nan")
            continue
        rows = table[table["student"] == baseline]
        reference = rows.groupby("testset")[metric].mean()
        table[f"delta_{metric}"] = table[metric] - table["testset"].map(reference)


def cell(mean: float, std: float, seeds: int) -> str:
    """`mean ± std` over several seeds, the mean alone for one; empty where not measured."""
    if mean is None or math.isnan(mean):
        return ""
    if seeds > 1 and not math.isnan(std):
        return f"{mean:.2f} ± {std:.2f}"
    return f"{mean:.2f}"


def marked(delta: float, p_value: float) -> str:
    """A Δ with `*` where the paired bootstrap gives p < 0.05."""
    if delta is None or math.isnan(delta):
        return ""
    mark = "*" if p_value is not None and not math.isnan(p_value) and (
        p_value < SIGNIFICANCE_LEVEL) else ""
    return f"{delta:+.2f}{mark}"


def printed(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with the metric cells as printed (strings)."""
    shown = summary.copy()
    for metric in MEAN_STD:
        shown[metric] = [cell(m, s, n) for m, s, n in zip(
            summary[metric], summary[f"{metric}_std"], summary["seeds"], strict=True)]
    p_values = summary.get("p_bleu_bootstrap", pd.Series(float("nan"), index=summary.index))
    shown["delta_bleu_beam"] = [marked(d, p) for d, p in zip(
        summary["delta_bleu_beam"], p_values, strict=True)]
    shown["delta_bleu_k1"] = [marked(d, float("nan")) for d in summary["delta_bleu_k1"]]
    return shown
