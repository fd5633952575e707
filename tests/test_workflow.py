"""The Snakemake workflow: config validation, the CLI, and end-to-end runs with snakemake."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import require_multi30k
from workflow_config import (
    assert_dry_run_fails,
    assert_plan_fails,
    base_config,
    multi30k_subset,
    run_snakemake,
    synthetic_data,
    tiny_config,
)

from nmtkd.cli import build_parser
from nmtkd.synthetic import write_corpus

COMMANDS = ["fetch", "clean", "spm-train", "spm-encode", "train", "export", "translate",
            "evaluate", "report", "write-config"]
TEST_2016_URL = ("https://github.com/multi30k/dataset/raw/master/data/task1/raw/"
                 "test_2016_flickr.{}.gz")


def test_every_command_has_help():
    for command in COMMANDS:
        result = subprocess.run([sys.executable, "-m", "nmtkd.cli", command, "--help"],
                                capture_output=True, text=True, check=True)
        assert f"usage: nmtkd {command}" in result.stdout
    assert set(COMMANDS) <= set(build_parser()._subparsers._group_actions[0].choices)


def test_cli_error_is_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nmtkd.cli", "clean", "--src", str(tmp_path / "nope.en"),
         "--tgt", str(tmp_path / "nope.de"), "--out-src", str(tmp_path / "a"),
         "--out-tgt", str(tmp_path / "b"), "--report", str(tmp_path / "r.json")],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(f"nmtkd clean: error: {tmp_path / 'nope.en'}: "
                                          "file not found")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("change", "expected"), [
    (lambda c: c["training"].update(lr=-1),
     "config error at training.lr: -1 is less than or equal to the minimum of 0"),
    (lambda c: c["data"].pop("train"), "config error at data: 'train' is a required property"),
    (lambda c: c["data"]["test"].update(bad={"src": "x"}),
     "config error at data.test.bad: 'tgt' is a required property"),
    (lambda c: c["presets"]["tiny"].update(layers=3), "'layers' was unexpected"),
    (lambda c: c["teachers"][0].update(preset="huge"), "config error at teachers[0].preset"),
    (lambda c: c["training"]["loss"].update(name="wordkd"),
     "config error at training.loss.name: unknown loss 'wordkd'"),
    (lambda c: c["data"]["test"].update(valid={"src": "a", "tgt": "b"}),
     "config error at data.test.valid"),
    (lambda c: c["export"].update(quantizations=["int8"]),
     "config error at export.quantizations: ['int8'] does not contain items"),
])
def test_bad_config_fails_validation_naming_the_key(change, expected):
    config = base_config()
    change(config)
    assert_plan_fails(config, expected)


def test_a_bad_config_stops_a_dry_run_with_one_line(tmp_path):
    config = base_config()
    config["teachers"][0]["preset"] = "huge"
    assert_dry_run_fails(tmp_path, config,
                         "config error at teachers[0].preset: unknown preset 'huge'")


def test_default_config_plans_the_whole_chain(tmp_path):
    result = run_snakemake(tmp_path, base_config(), "-n", "--quiet", "rules")
    for rule in ("fetch_dataset", "clean_train", "train_spm", "encode_spm", "train_model",
                 "export_ct2", "translate_testset", "evaluate_testset", "teacher_table",
                 "save_config"):
        assert rule in result.stdout


@pytest.mark.e2e
def test_multi30k_tiny_end_to_end_and_single_stage_rerun(tmp_path):
    mirror = require_multi30k()
    data = multi30k_subset(tmp_path, train=3000, other=200)
    # one test set through the canonical URL, served offline by the mirror
    data["mirror"] = str(mirror)
    data["test"]["test_2016_flickr"] = {
        "src": TEST_2016_URL.format("en"), "tgt": TEST_2016_URL.format("de"),
        "src_sha256": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
        "tgt_sha256": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8"}
    config = tiny_config("tiny", data, max_updates=400, valid_interval=200, lr=0.002)
    config["data"]["mirror"] = str(mirror)
    config["evaluation"]["max_length"] = 60
    run_snakemake(tmp_path, config, "--cores", "2")
    results = tmp_path / "results" / "tiny"

    report = json.loads((results / "data/clean/train.report.json").read_text())
    assert report["input"] == 3000 and 2900 < report["kept"] <= 3000
    assert sum(report["dropped"].values()) == 3000 - report["kept"]
    assert yaml.safe_load((results / "config.yaml").read_text())["experiment"] == "tiny"
    summary = json.loads((results / "models/teacher/training.json").read_text())
    assert summary["updates"] == 400 and [h["update"] for h in summary["history"]] == [200, 400]
    assert summary["final_valid"]["valid_nll"] < 4.5  # a blank model is at log(500) = 6.2
    evaluation = json.loads(
        (results / "eval/teacher/test_2016_flickr.float32.beam5.json").read_text())
    assert evaluation["sentences"] == 1000
    assert evaluation["chrf"] > 12.0 and evaluation["bleu"] > 1.0  # a blank model: ~2 and 0
    table = (results / "tables/teacher.md").read_text()
    assert "| test_2016_flickr |" in table and "BLEU signature: `nrefs:1" in table
    for quant in ("float32", "int8"):
        assert (results / f"models/teacher/ct2_{quant}/spm.model").is_file()
    benchmark = results / "benchmarks/train_model/teacher.tsv"
    assert benchmark.read_text().startswith("s\th:m:s")

    # rerun one stage alone: re-export the CT2 model without retraining the teacher
    model = results / "models/teacher/model.pt"
    model_time = model.stat().st_mtime_ns
    export_time = (results / "models/teacher/ct2_float32/model.bin").stat().st_mtime_ns
    rerun = run_snakemake(tmp_path, config, "results/tiny/models/teacher/ct2_float32",
                          "--cores", "2", "--forcerun", "export_ct2")
    assert "rule export_ct2" in rerun.stdout + rerun.stderr
    assert "rule train_model" not in rerun.stdout + rerun.stderr
    assert model.stat().st_mtime_ns == model_time
    assert (results / "models/teacher/ct2_float32/model.bin").stat().st_mtime_ns > export_time
    # the downstream steps of the re-exported model are now out of date, nothing upstream is
    plan = run_snakemake(tmp_path, config, "--cores", "2", "-n", "--quiet", "rules")
    assert "translate_testset" in plan.stdout and "train_model" not in plan.stdout


@pytest.mark.e2e
def test_synthetic_task_is_learned_to_90_bleu_and_its_seq_kd_student_follows(tmp_path):
    paths = write_corpus(tmp_path, {"train": 4000, "valid": 200, "test": 300},
                         src_lang="xx", tgt_lang="yy")
    data = synthetic_data(paths)
    config = tiny_config("synthetic", data, max_updates=800, valid_interval=200, lr=0.002,
                         warmup=200, max_tokens=1500)
    config["sentencepiece"]["vocab_size"] = 120
    config["presets"]["tiny"]["dropout"] = 0.0
    config["students"] = [{"name": "seq_kd", "data": "seqkd", "loss": "nll",
                           "training": {"seed": 2}}]
    config["student_defaults"]["resources"]["threads"] = 2
    config["distill"].update({"chunks": 2, "max_length": 60})
    run_snakemake(tmp_path, config, "--cores", "2")
    results = tmp_path / "results/synthetic"
    teacher = json.loads((results / "eval/teacher/synthetic.float32.beam5.json").read_text())
    assert teacher["bleu"] >= 90.0, teacher
    student = json.loads((results / "eval/seq_kd/synthetic.float32.beam5.json").read_text())
    assert student["bleu"] >= teacher["bleu"] - 3.0, (student, teacher)
    agreement = json.loads((results / "eval/seq_kd/synthetic.agreement.json").read_text())
    assert agreement["top1_agreement"] > 90.0
    # the teacher's top-1 on its training data and the test set (tables/teacher.md)
    train = json.loads((results / "eval/teacher/train.agreement.json").read_text())
    assert train["top1_reference"] > 90.0 and train["top1_agreement"] == 100.0
    assert "| train.xx " in (results / "tables/teacher.md").read_text().split(
        "## Top-1 = reference")[1]
