"""Config safety through Snakemake: overrides own their data, plain experiment names, shell
values quoted, losses checked at parse time, config problems as one line."""

from __future__ import annotations

import json
import re
import shutil

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
def test_paths_reaching_the_shell_are_quoted(synthetic, synthetic_spm, trained_tiny, tmp_path):
    odd = tmp_path / "teacher dir $(touch PWNED) 'q\""
    odd.mkdir()
    checkpoint, spm = odd / "m $(touch PWNED).pt", odd / "spm's.model"
    shutil.copyfile(trained_tiny, checkpoint)
    shutil.copyfile(synthetic_spm, spm)
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = tiny_config("quoted", synthetic_data(synthetic))
    config["teacher"]["existing"] = {"checkpoint": str(checkpoint), "spm": str(spm)}
    run_snakemake(workdir, config, "--cores", "1",
                  "results/quoted/models/teacher/ct2_float32",
                  "results/quoted/data/spm/valid.xx")
    assert (workdir / "results/quoted/models/teacher/ct2_float32/model.bin").is_file()
    assert (workdir / "results/quoted/data/spm/valid.xx").stat().st_size > 0
    assert not list(tmp_path.rglob("PWNED")) and not (REPO / "PWNED").exists()
