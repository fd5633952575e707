"""Reusing an existing teacher (torch checkpoint or CTranslate2 directory) instead of training."""

from __future__ import annotations

import json

import pytest
from workflow_config import run_snakemake, synthetic_data, tiny_config

from nmtkd.export import export_model


def config_for(synthetic, existing: dict) -> dict:
    config = tiny_config("reuse", synthetic_data(synthetic))
    config["teacher"]["existing"] = existing
    config["evaluation"]["max_length"] = 60
    return config


def planned_rules(workdir, config) -> str:
    return run_snakemake(workdir, config, "-n", "--quiet", "rules").stdout


@pytest.mark.e2e
def test_existing_checkpoint_skips_training_and_is_exported(synthetic, synthetic_spm,
                                                            trained_tiny, tmp_path):
    config = config_for(synthetic, {"checkpoint": str(trained_tiny), "spm": str(synthetic_spm)})
    plan = planned_rules(tmp_path, config)
    assert "train_model" not in plan and "train_spm" not in plan
    assert "export_ct2" in plan and "translate_testset" in plan
    run_snakemake(tmp_path, config, "--cores", "2")
    evaluation = json.loads(
        (tmp_path / "results/reuse/eval/teacher/synthetic.float32.beam5.json").read_text())
    assert evaluation["bleu"] > 30  # the briefly trained tiny model, not a blank one
    assert (tmp_path / "results/reuse/models/teacher/ct2_int8/model.bin").is_file()
    assert not (tmp_path / "results/reuse/models/teacher/model.pt").exists()


@pytest.mark.e2e
def test_existing_ct2_model_alone_is_used_for_decoding(synthetic, synthetic_spm, trained_tiny,
                                                       tmp_path):
    ct2_dir = tmp_path / "given_ct2"
    export_model(trained_tiny, synthetic_spm, ct2_dir, "float32")
    config = config_for(synthetic, {"ct2_model": str(ct2_dir)})
    plan = planned_rules(tmp_path, config)
    for rule in ("train_model", "train_spm", "export_ct2"):
        assert rule not in plan
    run_snakemake(tmp_path, config, "--cores", "2")
    evaluation = json.loads(
        (tmp_path / "results/reuse/eval/teacher/synthetic.float32.beam5.json").read_text())
    assert evaluation["bleu"] > 30


@pytest.mark.parametrize(("existing", "message"), [
    ({"checkpoint": "model.pt"}, "config error at teacher.existing.spm"),
    ({"ct2_model": "/nonexistent/ct2"}, "config error at teacher.existing.ct2_model: "
                                        "/nonexistent/ct2 does not exist"),
])
def test_bad_existing_teacher_is_named(synthetic, tmp_path, existing, message):
    result = run_snakemake(tmp_path, config_for(synthetic, existing), "-n", check=False)
    assert result.returncode != 0 and message in result.stdout + result.stderr


def test_word_level_loss_with_a_ct2_only_teacher_is_refused(synthetic, synthetic_spm,
                                                             trained_tiny, tmp_path):
    ct2_dir = tmp_path / "given_ct2"
    export_model(trained_tiny, synthetic_spm, ct2_dir, "float32")
    config = config_for(synthetic, {"ct2_model": str(ct2_dir)})
    config["training"]["loss"] = {"name": "word_kd", "alpha": 0.5}
    result = run_snakemake(tmp_path, config, "-n", check=False)
    assert result.returncode != 0
    assert ("config error at training.loss.name: 'word_kd' needs the teacher's torch "
            "checkpoint") in result.stdout + result.stderr


@pytest.mark.e2e
def test_the_torch_backend_evaluates_from_the_checkpoint(synthetic, synthetic_spm, trained_tiny,
                                                         tmp_path):
    config = config_for(synthetic, {"checkpoint": str(trained_tiny), "spm": str(synthetic_spm)})
    config["evaluation"]["backend"] = "torch"
    target = "results/reuse/eval/teacher/synthetic.float32.beam5.json"
    plan = run_snakemake(tmp_path, config, target, "-n", "--quiet", "rules").stdout
    assert "translate_testset" in plan and "export_ct2" not in plan  # no CTranslate2 model
    run_snakemake(tmp_path, config, "--cores", "2", target)
    evaluation = json.loads((tmp_path / target).read_text())
    assert evaluation["decoding"] == "torch beam search beam 5"
    assert evaluation["bleu"] > 30  # the briefly trained tiny model, not a blank one
