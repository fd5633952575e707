"""Config safety through Snakemake: overrides own their data, plain experiment names, shell
values quoted, losses checked at parse time, config problems as one line."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil

import pandas as pd
import pytest
import yaml
from test_config_files import en_fr_override
from workflow_config import (
    REPO,
    assert_dry_run_fails,
    base_config,
    run_snakemake,
    synthetic_data,
    tiny_config,
    with_default_students,
)


def one_line_failure(result) -> str:
    """A failed run's error: exactly one line, no traceback."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    return lines[0]


def test_en_fr_override_fetches_only_its_own_data(tmp_path):
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(en_fr_override()))
    target = "results/multi30k_en_fr/config.yaml"
    run_snakemake(tmp_path, base_config(), "--cores", "1", target, "--configfile", "my.yaml")
    saved = yaml.safe_load((tmp_path / target).read_text())
    assert saved["data"]["tgt_lang"] == "fr"
    assert list(saved["data"]["test"]) == ["test_2016_flickr"]
    assert ".de.gz" not in json.dumps(saved["data"]) and "sha256" not in json.dumps(saved["data"])
    plan = run_snakemake(tmp_path, base_config(), "-n", "-p",
                         "results/multi30k_en_fr/data/raw/test_2016_flickr.fr",
                         "--configfile", "my.yaml").stdout
    assert "test_2016_flickr.fr.gz" in plan and "test_2016_flickr.de.gz" not in plan


def test_experiment_must_be_a_plain_name(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = base_config()
    config["experiment"] = ".."
    result = run_snakemake(workdir, config, "-n", check=False)
    assert "config error at experiment: '..' is not a plain name" in one_line_failure(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_yaml_syntax_error_and_duplicate_key_in_config_yaml_name_the_line(tmp_path):
    run_snakemake(tmp_path, base_config(), "-n", "--quiet")  # writes a valid config.yaml
    config_file = tmp_path / "config.yaml"
    text = config_file.read_text()
    config_file.write_text(text.replace("experiment: multi30k_en_de\n",
                                        "experiment: multi30k_en_de\nexperiment: other\n", 1))
    line = one_line_failure(run_snakemake(tmp_path, {}, "-n", check=False, write=False))
    assert line == "config.yaml, line 2, column 1: duplicate key 'experiment' (first on line 1)"
    config_file.write_text("experiment: x\ndata:\n  src_lang: en\n   tgt_lang: fr\n")
    line = one_line_failure(run_snakemake(tmp_path, {}, "-n", check=False, write=False))
    assert line.startswith("config.yaml, line 4, column 12: ")


def test_schema_error_is_one_line(tmp_path):
    config = base_config()
    config["training"]["lr"] = "fast"
    line = one_line_failure(run_snakemake(tmp_path, config, "-n", check=False))
    assert line == "config error at training.lr: 'fast' is not of type 'number'"


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["teachers"][0].setdefault("training", {}).update(
        loss={"name": "nll", "label_smothing": 0.1}),
     "config error at teachers[0].training.loss: loss 'nll': "),
    (lambda c: c["training"].update(loss={"name": "word_kd"}),
     "config error at training.loss.name: the teacher cannot train with 'word_kd'"),
    (lambda c: c["students"][0].update(init="baseline"),
     "config error at students[0].init: 'baseline' cannot initialise from itself"),
])
def test_parse_time_checks(tmp_path, change, message):
    config = base_config()
    change(config)
    assert_dry_run_fails(tmp_path, config, message)


@pytest.mark.parametrize(("config_args", "change", "message"), [
    (["training={lr: 0.1}"], None,
     "config error at training.lr: '0.1' is not of type 'number' (from --config, which gives "
     "the values inside {...} as text: set nested keys in a --configfile)"),
    ([], lambda c: c["evaluation"].update(length_penalty=float("inf")),
     "config error at evaluation.length_penalty: must be a finite number, got inf"),
])
def test_config_refusals_in_a_dry_run_are_one_line(tmp_path, config_args, change, message):
    config = base_config()
    if change:
        change(config)
    args = ["--config", *config_args] if config_args else []
    result = run_snakemake(tmp_path, config, "-n", *args, check=False)
    assert result.returncode == 1 and one_line_failure(result) == message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # nothing written


OWN_STUDENTS = {"students": [{"name": "gold_only", "data": "gold"},
                             {"name": "distilled", "data": "seqkd"}]}


def test_a_configfile_with_its_own_students_owns_the_studies(tmp_path):
    """config.yaml's studies name students the file does not have: they are dropped, and the
    file's students make one study (or its own studies)."""
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(OWN_STUDENTS))
    result = run_snakemake(tmp_path, base_config(), "-n", "--quiet", "rules",
                           "--configfile", "config.yaml", "my.yaml")
    counts = dict(line.split() for line in result.stdout.splitlines()
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    assert counts["train_model"] == "3"  # the teacher, gold_only, distilled
    assert counts["comparison_tables"] == "1" and counts["build_student_corpus"] == "1"
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(
        {**OWN_STUDENTS, "studies": {"mine": {"students": ["distilled", "gold_only"]}}}))
    plan = run_snakemake(tmp_path, base_config(), "-n", "--configfile", "config.yaml",
                         "my.yaml").stdout
    assert "results/multi30k_en_de/tables/mine.csv" in plan and "kim_rush" not in plan
    checked = nmtkd_main("check-config", tmp_path / "config.yaml", tmp_path / "my.yaml")
    assert checked == (0, f"{tmp_path}/config.yaml + {tmp_path}/my.yaml: valid (experiment "
                          "multi30k_en_de; studies mine)\n", "")


def nmtkd_main(*args) -> tuple[int, str, str]:
    """`nmtkd <args>` in-process: exit status, stdout, stderr."""
    from nmtkd.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(arg) for arg in args])
    return status, out.getvalue(), err.getvalue()


def test_compare_and_plots_read_a_source_config(tmp_path, monkeypatch):
    """A source config (the schema's defaults not filled in) is planned like the workflow
    plans it; without results, compare stops at the first missing file, in one line."""
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(REPO / "config.yaml", tmp_path / "config.yaml")
    status, _, err = nmtkd_main("compare", "--config", "config.yaml", "--markdown", "t.md",
                                "--csv", "t.csv", "--latex", "t.tex")
    assert status == 2 and err.count("\n") == 1 and err.startswith(
        "nmtkd compare: error: results/multi30k_en_de/eval/teacher/test_2016_flickr.float32."
        "beam1.json: ")  # the first file of the teacher's row: planned from the config
    (tmp_path / "config.yaml").write_text(
        (REPO / "config.yaml").read_text().replace("study: kim_rush", "study: kim_rsh"))
    (tmp_path / "t.csv").write_text("model\nteacher\n")
    status, _, err = nmtkd_main("plots", "--config", "config.yaml", "--comparison", "t.csv",
                                "--outputs", "p/bleu_size.png")
    assert status == 2 and err == (
        "nmtkd plots: error: config.yaml: config error at study: unknown study 'kim_rsh' "
        "(known: kim_rush, word_level, tie_kd_ablation, soft_targets, knn)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "t.csv"]


def student_settings(plan: str, student: str) -> dict:
    """The --settings JSON of a student's training command in a printed dry run."""
    for command in (line for line in plan.splitlines() if "nmtkd train " in line):
        if f"--output results/multi30k_en_de/models/{student}/model.pt" in command:
            return json.loads(re.search(r"--settings '([^']*)'", command).group(1))
    raise AssertionError(f"no training command for {student}")


def test_a_student_without_loss_trains_like_loss_nll(tmp_path):
    config = base_config()
    config["losses"]["nll"] = {"label_smoothing": 0.2}
    config["students"] = [{"name": "implicit", "data": "gold"},
                          {"name": "explicit", "data": "gold", "loss": "nll"}]
    config["comparison"] = {}
    del config["studies"], config["study"]  # one study of both
    plan = run_snakemake(tmp_path, config, "-n", "-p").stdout
    implicit, explicit = student_settings(plan, "implicit"), student_settings(plan, "explicit")
    assert implicit["training"]["loss"] == {"name": "nll", "label_smoothing": 0.2}
    assert implicit == explicit


@pytest.mark.e2e
def test_own_students_file_runs_its_study_with_quoted_paths(synthetic, synthetic_spm,
                                                            trained_tiny, tmp_path):
    """A --configfile with its own two students and study, run to the study's tables on top
    of a config.yaml whose study names other students; the existing teacher's paths, odd
    enough to run commands if a shell line left them unquoted, reach every rule."""
    odd = tmp_path / "teacher dir $(touch PWNED) 'q\""
    odd.mkdir()
    checkpoint, spm = odd / "m $(touch PWNED).pt", odd / "spm's.model"
    shutil.copyfile(trained_tiny, checkpoint)
    shutil.copyfile(synthetic_spm, spm)
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = with_default_students(tiny_config("quoted", synthetic_data(synthetic)))
    config["studies"] = {"kim_rush": base_config()["studies"]["kim_rush"]}
    config["study"] = "kim_rush"
    config["teacher"]["existing"] = {"checkpoint": str(checkpoint), "spm": str(spm)}
    config["evaluation"].update(max_length=60, significance={"bootstrap_samples": 100,
                                                             "ar_trials": 100})
    (workdir / "my.yaml").write_text(yaml.safe_dump({
        **OWN_STUDENTS, "studies": {"mine": {"students": ["gold_only", "distilled"]}},
        "student_defaults": {"training": {"max_updates": 40, "valid_interval": 20}}}))
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run_snakemake(workdir, config, "--cores", "2", "results/quoted/tables/mine.csv",
                  "--configfile", "config.yaml", "my.yaml", write=False)
    frame = pd.read_csv(workdir / "results/quoted/tables/mine.csv")
    assert list(frame["model"]) == ["teacher", "gold_only", "distilled"]
    by_model = frame.set_index("model")
    assert by_model.loc["teacher", "bleu_beam"] > 30  # the existing teacher's, not a blank one
    assert frame[["bleu_beam", "test_ppl", "tok_s_int8"]].notna().all().all()
    tests = [c for c in frame if c.startswith("p_")]
    assert by_model.loc[["teacher", "gold_only"], tests].isna().all().all()  # the baseline
    assert by_model.loc["distilled", tests].between(0, 1).all()  # tested against gold_only
    assert by_model.loc["distilled", "data"] == "seqkd"
    models = workdir / "results/quoted/models"
    assert sorted(p.name for p in models.iterdir()) == ["distilled", "gold_only", "teacher"]
    assert json.loads((models / "distilled/training.json").read_text())["updates"] == 40
    assert not (models / "teacher/model.pt").exists()  # the existing teacher, not trained
    assert (models / "teacher/ct2_float32/model.bin").is_file()
    assert not list(tmp_path.rglob("PWNED")) and not (REPO / "PWNED").exists()
