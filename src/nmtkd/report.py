"""Result tables with pandas, from the per-model, per-test-set JSON files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from nmtkd.errors import NmtkdError
from nmtkd.textio import atomic_writer

REQUIRED = ("model", "testset", "sentences", "bleu", "chrf", "ter", "bleu_signature",
            "chrf_signature", "ter_signature")
NUMBERS = ("sentences", "bleu", "chrf", "ter")


def load_results(paths: list[Path]) -> pd.DataFrame:
    records = []
    for path in paths:
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise NmtkdError(f"{path}: cannot read evaluation result ({error})") from None
        if not isinstance(record, dict):
            raise NmtkdError(f"{path}: an evaluation result must be a JSON object")
        missing = [key for key in REQUIRED if key not in record]
        if missing:
            raise NmtkdError(f"{path}: evaluation result lacks {', '.join(missing)}")
        for key in NUMBERS:
            value = record[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value)):
                raise NmtkdError(f"{path}: {key} is {json.dumps(value)[:40]}, not a finite "
                                 "number (a broken result)")
        records.append(record)
    if not records:
        raise NmtkdError("no evaluation results to tabulate")
    return pd.DataFrame.from_records(records)


def teacher_table(frame: pd.DataFrame) -> str:
    """Markdown: one row per test set with BLEU, chrF and TER, signatures below."""
    columns = {"testset": "Test set", "sentences": "Sentences", "bleu": "BLEU", "chrf": "chrF",
               "ter": "TER"}
    ordered = frame.sort_values(["model", "testset"])
    lines = []
    for model, rows in ordered.groupby("model", sort=False):
        table = rows[list(columns)].rename(columns=columns)
        decoding = rows.iloc[0].get("decoding", "")
        lines += [f"## {model}" + (f" ({decoding})" if decoding else ""), "",
                  table.to_markdown(index=False, floatfmt=".2f"), ""]
    for metric in ("bleu", "chrf", "ter"):
        signatures = sorted(set(ordered[f"{metric}_signature"]))
        lines += [f"{metric.upper() if metric != 'chrf' else 'chrF'} signature: "
                  f"`{'`, `'.join(signatures)}`  "]
    return "\n".join(lines) + "\n"


def reference_agreement_table(paths: list[Path]) -> str:
    """Markdown: per file of `nmtkd agreement`, the share of target tokens where the model's
    top-1 (teacher-forced) is the reference token."""
    rows = []
    for path in paths:
        try:
            record = json.loads(Path(path).read_text())
            rows.append({"Data": Path(record["testset"]).name, "Tokens": record["tokens"],
                         "Top-1 = reference (%)": record["top1_reference"]})
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise NmtkdError(f"{path}: not a result of nmtkd agreement ({error})") from None
    return "\n".join([
        "## Top-1 = reference", "",
        "The share of target tokens where the teacher's top-1, teacher-forced on the "
        "reference prefix, is the reference token (Zhang et al. 2023 report 68-94 %).", "",
        pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"), ""])


def write_teacher_table(paths: list[Path], output: Path,
                        agreements: list[Path] | None = None) -> None:
    frame = load_results(paths)
    text = teacher_table(frame)
    if agreements:
        text += "\n" + reference_agreement_table(agreements)
    with atomic_writer(output) as handle:
        handle.write(text)
