"""The comparison tables: one row per model (teacher and students), laid out like Kim & Rush's
Table 1, one table per test set and an overview, as Markdown, CSV and LaTeX (pandas)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from nmtkd.aggregate import add_derived, printed, summarise
from nmtkd.errors import NmtkdError
from nmtkd.textio import atomic_path, atomic_writer

MB = 1024 * 1024
NAN = float("nan")


@dataclass(frozen=True)
class Result:
    """A result file's JSON object (or one entry of it, `where` naming the entry)."""

    path: str
    data: dict[str, Any]
    where: str = ""

    def number(self, field: str, required: bool = True) -> float:
        """The finite number at `field` (dotted: `fixed.tokens_per_second`); NaN where an
        optional field is absent or null. A NaN or infinite number is a broken result."""
        value: Any = self.data
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        name = f"{self.where}{field}"
        if value is None:
            if required:
                raise NmtkdError(f"{self.path}: {name} is missing")
            return NAN
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise NmtkdError(f"{self.path}: {name} is {json.dumps(value)[:40]}, not a number")
        if not math.isfinite(value):
            raise NmtkdError(f"{self.path}: {name} is {json.dumps(value)}, not a finite number "
                             "(a broken result: rerun the step that wrote it)")
        return value

    def text(self, field: str) -> str:
        return str(self.data.get(field, ""))


def number(result: Result | None, field: str, required: bool = True) -> float:
    """A result's number, NaN without the result (not measured for this model)."""
    return result.number(field, required) if result else NAN


def read_json(path: str | None) -> Result | None:
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NmtkdError(f"{path}: result file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NmtkdError(f"{path}: not a JSON result file ({error})") from None
    except OSError as error:
        raise NmtkdError(f"{path}: cannot read the result ({error.strerror or error})") from None
    if not isinstance(data, dict):
        raise NmtkdError(f"{path}: not a JSON object")
    return Result(path, data)


def read_benchmark_seconds(path: str | None) -> float | None:
    """Wall-clock seconds of a Snakemake `benchmark:` TSV (its first row)."""
    if not path:
        return None
    try:
        with open(path, newline="") as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        seconds = float(row["s"])
    except (OSError, StopIteration, KeyError, ValueError) as error:
        raise NmtkdError(f"{path}: not a Snakemake benchmark file ({error})") from None
    if not math.isfinite(seconds):
        raise NmtkdError(f"{path}: s is {row['s']}, not a finite number")
    return seconds


def directory_megabytes(path: str | None) -> float | None:
    if not path:
        return None
    directory = Path(path)
    if not directory.is_dir():
        raise NmtkdError(f"{path}: model directory not found")
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file()) / MB


def model_speed(measured: Result | None, key: str | None) -> Result | None:
    """A model's entry of a speed file (one measured together with others), or the file."""
    if measured is None or "models" not in measured.data:
        return measured
    models = measured.data["models"]
    if not isinstance(models, dict) or not isinstance(models.get(key), dict):
        raise NmtkdError(f"speed file {measured.path}: no entry for {key!r}")
    return Result(measured.path, models[key], f"models.{key}.")


def evaluation_fields(model: dict[str, Any],
                      testset: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A model's scores on a test set: BLEU (K=1, K=beam, int8), chrF, TER and the share of
    runaway outputs of the beam search, Top-1 Agreement and the references' perplexity; and
    the signatures of the scores."""
    evals = model["eval"][testset]
    k1, beam, int8 = (read_json(evals.get(key)) for key in ("k1", "beam", "int8"))
    agreement = read_json(model.get("agreement", {}).get(testset))
    fields = {
        "bleu_k1": number(k1, "bleu"), "bleu_beam": number(beam, "bleu"),
        "chrf": number(beam, "chrf"), "ter": number(beam, "ter"),
        "runaway": number(beam, "runaway", required=False),
        "top1_agreement": number(agreement, "top1_agreement"),
        "top1_reference": number(agreement, "top1_reference", required=False),
        "test_ppl": number(agreement, "ppl"), "bleu_beam_int8": number(int8, "bleu")}
    signatures = {f"{key}_signature": beam.text(f"{key}_signature") if beam else ""
                  for key in ("bleu", "chrf", "ter")}
    return fields, signatures


def speed_fields(model: dict[str, Any]) -> dict[str, Any]:
    """tokens/s and sentences/s per quantization (free decoding and at fixed lengths), and
    kNN-MT's speed ratio."""
    fields = {"knn_speed_ratio": number(read_json(model.get("knn_speed")), "ratio")}
    for quant in ("float32", "int8"):
        measured = model_speed(read_json(model.get("speed", {}).get(quant)),
                               model.get("speed_key"))
        fields[f"tok_s_{quant}"] = number(measured, "tokens_per_second")
        fields[f"sent_s_{quant}"] = number(measured, "sentences_per_second")
        fields[f"tok_s_fixed_{quant}"] = number(measured, "fixed.tokens_per_second",
                                                required=False)
    return fields


def training_fields(model: dict[str, Any]) -> dict[str, Any]:
    training = read_json(model.get("training"))
    benchmark_seconds = read_benchmark_seconds(model.get("benchmark"))
    # the job's wall clock, unless the trainer's own clock (kept across resumes) is longer:
    # a resumed or rewritten run's benchmark file only times its last attempt
    clocks = [benchmark_seconds, number(training, "train_seconds") if training else None]
    clocks = [seconds for seconds in clocks if seconds is not None]
    return {"params": number(training, "parameters") if training else model.get("parameters"),
            "train_minutes": max(clocks) / 60 if clocks else NAN,
            "updates_per_second": number(training, "updates_per_second"),
            "train_ppl": number(training, "train_ppl", required=False)}


def model_record(model: dict[str, Any], testset: str, speed_testset: str) -> dict[str, Any]:
    """The flat row of one model on one test set (NaN where a measure does not apply)."""
    significance = read_json(model.get("significance", {}).get(testset))
    scores, signatures = evaluation_fields(model, testset)
    training = training_fields(model)
    record = {
        "model": model["name"], "student": model.get("student", model["name"]),
        "seed": model.get("seed", NAN), "data": model.get("data", ""),
        "loss": model.get("loss", ""), "init": model.get("init", ""), "testset": testset,
        "params": training.pop("params"),
        "size_float32_mb": directory_megabytes(model["ct2"].get("float32")),
        "size_int8_mb": directory_megabytes(model["ct2"].get("int8")),
        **scores, "speed_testset": speed_testset, **speed_fields(model), **training,
        **signatures}
    for metric in ("bleu", "chrf"):
        for test in ("bootstrap", "ar"):
            record[f"p_{metric}_{test}"] = number(significance, f"{metric}.p_{test}",
                                                  required=False)
    return {key: (NAN if value is None else value) for key, value in record.items()}


# what compare reads of a manifest: each field's JSON types (None: null)
TEXT, NUMBER, FILE = (str,), (int, float, type(None)), (str, type(None))
MANIFEST_FIELDS = {"teacher": TEXT, "models": (list,), "testsets": (list,),
                   "speed_testset": TEXT, "beam_size": (int,)}
MANIFEST_OPTIONAL = {"baseline_student": (str, type(None)), "experiment": TEXT,
                     "study": (str, type(None)), "bootstrap_samples": (int,),
                     "length_bound": TEXT, "speed_settings": TEXT, "paper": (dict, type(None))}
MODEL_FIELDS = {"name": TEXT, "eval": (dict,), "ct2": (dict,)}
MODEL_OPTIONAL = {"student": TEXT, "seed": NUMBER, "data": TEXT, "loss": TEXT, "init": TEXT,
                  "parameters": NUMBER, "training": FILE, "benchmark": FILE, "knn_speed": FILE,
                  "speed_key": TEXT, "speed": (dict,), "agreement": (dict,),
                  "significance": (dict,)}
FILE_MAPS = ("ct2", "speed", "agreement", "significance")  # objects of files (or folders)
JSON_TYPES = {str: "a string", int: "an integer", float: "a number", list: "a list",
              dict: "an object", type(None): "null"}


def check_fields(item: Any, where: str, required: dict[str, tuple[type, ...]],
                 optional: dict[str, tuple[type, ...]], source: str) -> None:
    """`item` (at `where` in the manifest) an object with each field of the JSON types given."""
    if not isinstance(item, dict):
        raise NmtkdError(f"{source}: {where or 'the manifest'} is not a JSON object")
    prefix = f"{where}." if where else ""
    for key, types in {**required, **optional}.items():
        if key not in item:
            if key in required:
                raise NmtkdError(f"{source}: {prefix}{key} is missing")
            continue
        value, expected = item[key], " or ".join(JSON_TYPES[t] for t in types)
        if isinstance(value, float) and not math.isfinite(value):
            expected = "a finite number"
        elif not isinstance(value, bool) and isinstance(value, types):
            continue
        raise NmtkdError(f"{source}: {prefix}{key} is {json.dumps(value)[:40]}, expected "
                         f"{expected}")


def check_manifest(manifest: Any, source: str) -> None:
    """Refuse a manifest that lacks a field compare reads, or holds one of the wrong type,
    naming the field's path (`models[2].eval.test_2016_flickr`)."""
    check_fields(manifest, "", MANIFEST_FIELDS, MANIFEST_OPTIONAL, source)
    if manifest.get("paper"):
        check_fields(manifest["paper"], "paper", {"rows": (dict,), "source": TEXT},
                     {"metric": TEXT}, source)
    for key in ("models", "testsets"):
        if not manifest[key]:
            raise NmtkdError(f"{source}: {key} is empty")
    for index, testset in enumerate(manifest["testsets"]):
        if not isinstance(testset, str):
            raise NmtkdError(f"{source}: testsets[{index}] is {json.dumps(testset)[:40]}, "
                             "expected a string")
    for index, model in enumerate(manifest["models"]):
        where = f"models[{index}]"
        check_fields(model, where, MODEL_FIELDS, MODEL_OPTIONAL, source)
        files = {key: model[key] for key in FILE_MAPS if key in model}
        files |= {f"eval.{testset}": model["eval"].get(testset) for testset in manifest[
            "testsets"]}
        for key, paths in files.items():
            if not isinstance(paths, dict):
                raise NmtkdError(f"{source}: {where}.{key} is "
                                 f"{'missing' if paths is None else 'not a JSON object'}")
            for name, path in paths.items():
                if not isinstance(path, FILE):
                    raise NmtkdError(f"{source}: {where}.{key}.{name} is "
                                     f"{json.dumps(path)[:40]}, expected a file name or null")


def build_frame(manifest: dict[str, Any]) -> pd.DataFrame:
    """One row per run and test set (every seed's values), with Δ against the baseline
    student's mean and the p-values of the student's paired tests."""
    teacher, baseline = manifest["teacher"], manifest.get("baseline_student")
    names = [m["name"] for m in manifest["models"]]
    students = [m.get("student", m["name"]) for m in manifest["models"]]
    for role, name, known in (("teacher", teacher, names), ("baseline", baseline, students)):
        if name and name not in known:
            raise NmtkdError(f"manifest: the {role} {name!r} is not among the models {known}")
    rows = [model_record(model, testset, manifest["speed_testset"])
            for model in manifest["models"] for testset in manifest["testsets"]]
    frame = pd.DataFrame.from_records(rows)
    add_derived(frame, baseline, teacher)
    return frame


# columns that only some studies fill (kNN-MT's speed ratio: a study with a knn_mt row); the
# CSV of a study that leaves them empty goes without them
ONLY_SOME_STUDIES = ("knn_speed_ratio",)

TABLE_COLUMNS = {
    "student": "Model", "seeds": "Seeds", "data": "Data", "loss": "Loss", "init": "Init",
    "params_m": "Params (M)", "size_float32_mb": "Size f32 (MB)", "size_int8_mb": "Size int8 (MB)",
    "bleu_k1": "BLEU K=1", "bleu_beam": "BLEU K={beam}", "delta_bleu_k1": "Δ K=1",
    "delta_bleu_beam": "Δ K={beam}", "chrf": "chrF", "ter": "TER", "runaway": "Runaway (%)",
    "top1_agreement": "TA (%)", "top1_reference": "Top-1 = ref (%)", "test_ppl": "PPL",
    "int8_bleu_drop": "int8 ΔBLEU",
    "tok_s_int8": "int8 tok/s", "sent_s_int8": "int8 sent/s",
    "tok_s_fixed_int8": "int8 tok/s fixed", "speedup_int8": "Speed-up",
    "knn_speed_ratio": "Speed ÷ no kNN", "train_minutes": "Train (min)",
    "updates_per_second": "upd/s", "train_ppl": "Train PPL",
}


def display(summary: pd.DataFrame, beam: int) -> pd.DataFrame:
    """A test set's rows as printed: mean ± std over seeds, Δ marked where significant."""
    shown = printed(summary).assign(params_m=summary["params"] / 1e6)
    headers = {key: label.format(beam=beam) for key, label in TABLE_COLUMNS.items()}
    return shown[shown_columns(summary)].rename(columns=headers)


def shown_columns(summary: pd.DataFrame) -> list[str]:
    """TABLE_COLUMNS, without kNN-MT's speed ratio in a study that has no kNN-MT row."""
    knn = summary["knn_speed_ratio"].notna().any()
    return [key for key in TABLE_COLUMNS if knn or key != "knn_speed_ratio"]


def overview(summary: pd.DataFrame, testsets: list[str], beam: int) -> pd.DataFrame:
    """One row per student: mean BLEU K=beam on each test set, the averages over test sets,
    TA, size and speed (means over seeds)."""
    wide = summary.pivot(index="student", columns="testset", values="bleu_beam")[testsets]
    wide.columns = [f"BLEU K={beam} {name}" for name in testsets]
    grouped = summary.groupby("student")
    means = grouped[["bleu_k1", "bleu_beam", "delta_bleu_beam", "top1_agreement",
                     "chrf"]].mean()
    first = grouped[["seeds", "params", "size_int8_mb", "speedup_int8", "knn_speed_ratio",
                     "train_minutes"]].first()
    if not first["knn_speed_ratio"].notna().any():
        first = first.drop(columns="knn_speed_ratio")
    table = pd.concat([wide, means, first], axis=1)
    table = table.loc[list(dict.fromkeys(summary["student"]))]  # the manifest's order
    table["params"] = table["params"] / 1e6
    return table.reset_index().rename(columns={
        "student": "Model", "seeds": "Seeds", "bleu_k1": "avg BLEU K=1",
        "bleu_beam": f"avg BLEU K={beam}",
        "delta_bleu_beam": f"avg Δ K={beam}", "top1_agreement": "avg TA (%)", "chrf": "avg chrF",
        "params": "Params (M)", "size_int8_mb": "Size int8 (MB)", "speedup_int8": "Speed-up",
        "knn_speed_ratio": "Speed ÷ no kNN", "train_minutes": "Train (min)"})


def signature_lines(frame: pd.DataFrame) -> list[str]:
    lines = []
    for metric, label in (("bleu", "BLEU"), ("chrf", "chrF"), ("ter", "TER")):
        signatures = sorted({s for s in frame[f"{metric}_signature"] if s})
        lines.append(f"{label} signature: `{'`, `'.join(signatures)}`  ")
    return lines


def table_notes(manifest: dict[str, Any]) -> str:
    beam = manifest["beam_size"]
    knn = next((m for m in manifest["models"] if m.get("knn_speed")), None)
    speed = read_json(knn["knn_speed"]) if knn else None
    used = speed.data.get("knn") if speed else None
    used_text = (f" (used: k {used['k']}, λ {used['lambda']}, T {used['temperature']})"
                 if used else "")
    knn_note = (f" {knn['name']}: {knn['loss']}{used_text}, the torch beam search with a search "
                "of the datastore at every step and beam; no export, so no int8 or size cells. "
                "Speed ÷ no kNN: its tokens/s over the same model's without retrieval (both "
                "torch, timed in one job)." if knn else "")
    return (
        f"BLEU, chrF, TER: sacreBLEU on float32 output (K=1 greedy, K={beam} beam); chrF and "
        f"TER of K={beam}. With several seeds a cell is mean ± standard deviation over the "
        "student's runs (Seeds: how many). Δ: BLEU minus the baseline student's mean "
        f"({manifest.get('baseline_student') or 'none'}); `*`: p < 0.05 in a paired bootstrap "
        f"test of BLEU K={beam} against the baseline (sacreBLEU, "
        f"{manifest.get('bootstrap_samples', 1000)} resamples; several seeds pooled: run i "
        "against the baseline's run i). p-values of the bootstrap and of approximate "
        "randomisation, for BLEU and chrF, are in the CSV. TA: Top-1 Agreement with the "
        "model's teacher, teacher-forced on the references; Top-1 = ref: the share of "
        "those positions where the model's top-1 is the reference token; PPL: perplexity of the "
        f"references. Runaway: the share of K={beam} outputs longer than 2·|source| + 10 "
        "words or repeating a word 4-gram 3+ times (every decoding job is bounded by "
        f"{manifest.get('length_bound', 'max_length')}). int8 ΔBLEU: K={beam} BLEU of float32 "
        "minus int8. Speed: CTranslate2 "
        f"int8 on CPU, {manifest['speed_testset']}, {manifest.get('speed_settings', '')}. "
        "tok/s and sent/s: free decoding, each model's own output lengths; tok/s fixed: every "
        "hypothesis forced to its batch's length bound, the same work for models of one "
        "architecture; Speed-up: tok/s fixed over the teacher's. Train: wall-clock minutes "
        "of the training job (for a fine-tuned student, the fine-tuning alone; its init "
        "model's time is in that model's row)." + knn_note)


def title(manifest: dict[str, Any]) -> str:
    study = manifest.get("study")
    suffix = f", study {study}" if study and study != "comparison" else ""
    return f"Comparison: {manifest.get('experiment', '')}{suffix}"


PAPER_HEADING = "Reported in the paper, for orientation"


def paper_section(manifest: dict[str, Any]) -> tuple[str, pd.DataFrame] | None:
    """The study's paper numbers (its own data and models: not comparable with the rows
    above), as a note and a table, or None."""
    paper = manifest.get("paper")
    if not paper:
        return None
    students = [m.get("student", m["name"]) for m in manifest["models"]]
    order = sorted(paper["rows"], key=lambda name: (
        students.index(name) if name in students else len(students)))  # the study's order
    rows = pd.DataFrame({"Model": order, f"{paper.get('metric', 'BLEU')} (paper)": [
        paper["rows"][name] for name in order]})
    note = (f"{paper['source']}. On the paper's data and models, not comparable with the "
            "numbers above: compare orderings, not values.")
    return note, rows


def markdown_table(table: pd.DataFrame) -> str:
    """A Markdown table with empty cells, not "nan", where a row has no value."""
    return table.astype(object).where(table.notna(), None).to_markdown(
        index=False, floatfmt=".2f", missingval="")


def markdown(summary: pd.DataFrame, frame: pd.DataFrame, manifest: dict[str, Any]) -> str:
    testsets, beam = manifest["testsets"], manifest["beam_size"]
    table = markdown_table(overview(summary, testsets, beam))
    lines = [f"# {title(manifest)}", "", table_notes(manifest), "",
             "## Overview", "", table, ""]
    paper = paper_section(manifest)
    if paper:
        lines += [f"## {PAPER_HEADING}", "", paper[0], "",
                  paper[1].to_markdown(index=False), ""]
    for testset in testsets:
        rows = display(summary[summary["testset"] == testset], beam)
        lines += [f"## {testset}", "", markdown_table(rows), ""]
    return "\n".join(lines + signature_lines(frame)) + "\n"


def latex_escape(text: str) -> str:
    """Escape a test set name (the schema allows letters, digits, `_`, `.` and `-`)."""
    for char in "&%$#_":
        text = text.replace(char, "\\" + char)
    return text


def latex(summary: pd.DataFrame, frame: pd.DataFrame, manifest: dict[str, Any]) -> str:
    parts = []
    for testset in manifest["testsets"]:
        rows = display(summary[summary["testset"] == testset], manifest["beam_size"])
        rows = rows.drop(columns=["Data", "Loss", "Init"])
        parts.append(rows.to_latex(index=False, float_format="%.2f", na_rep="--", escape=True,
                                   caption=latex_escape(testset), label=f"tab:{testset}"))
    overview_table = overview(summary, manifest["testsets"], manifest["beam_size"])
    parts.append(overview_table.to_latex(index=False, float_format="%.2f", na_rep="--",
                                         escape=True, caption="Overview",
                                         label="tab:overview"))
    signatures = "\n".join(f"% {line.strip()}" for line in signature_lines(frame))
    return "\n".join(parts) + signatures + "\n"


def html(summary: pd.DataFrame, frame: pd.DataFrame, manifest: dict[str, Any]) -> str:
    """The Markdown page's tables as one HTML page (the report shows it as it is)."""
    testsets, beam = manifest["testsets"], manifest["beam_size"]
    tables = [("Overview", overview(summary, testsets, beam))] + [
        (testset, display(summary[summary["testset"] == testset], beam)) for testset in testsets]
    paper = paper_section(manifest)
    if paper:
        tables.insert(1, (PAPER_HEADING, paper[1]))
    parts = [f"<h1>{escape(title(manifest))}</h1>", f"<p>{escape(table_notes(manifest))}</p>"]
    for heading, table in tables:
        parts += [f"<h2>{escape(heading)}</h2>"]
        if paper and heading == PAPER_HEADING:
            parts += [f"<p>{escape(paper[0])}</p>"]
        parts += [table.to_html(index=False, na_rep="", float_format="{:.2f}".format)]
    parts += [f"<p>{escape(line.strip())}</p>" for line in signature_lines(frame)]
    body = "\n".join(parts)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Comparison</title>"
            "<style>table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
            f"</style></head><body>\n{body}\n</body></html>\n")


def write_comparison(manifest: dict[str, Any], md_path: Path, csv_path: Path,
                     tex_path: Path, html_path: Path | None = None) -> pd.DataFrame:
    """The tables (Markdown, LaTeX, HTML: one row per student) and the CSV (one row per run)."""
    frame = build_frame(manifest)
    summary = summarise(frame, manifest.get("baseline_student"), manifest["teacher"])
    if html_path is not None:
        with atomic_writer(html_path) as handle:
            handle.write(html(summary, frame, manifest))
    with atomic_path(csv_path) as tmp:
        unfilled = [column for column in ONLY_SOME_STUDIES if frame[column].isna().all()]
        frame.drop(columns=unfilled).to_csv(tmp, index=False)
    with atomic_writer(tex_path) as handle:
        handle.write(latex(summary, frame, manifest))
    with atomic_writer(md_path) as handle:
        handle.write(markdown(summary, frame, manifest))
    return frame
