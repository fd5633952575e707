"""Scale-out: the SLURM profile against a real (local, one-node) SLURM, and GPU claiming for the
local profile."""

from __future__ import annotations

import json
import multiprocessing
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from slurm_cluster import local_slurm, unavailable_reason
from workflow_config import REPO, run_snakemake, synthetic_data, tiny_config

from nmtkd.errors import NmtkdError
from nmtkd.gpus import claim_gpus, release_all
from nmtkd.synthetic import write_corpus


def synthetic_config(directory: Path, experiment: str) -> dict:
    paths = write_corpus(directory, {"train": 1500, "valid": 100, "test": 100},
                         src_lang="xx", tgt_lang="yy")
    data = synthetic_data(paths)
    config = tiny_config(experiment, data, max_updates=150, valid_interval=75, lr=0.002,
                         max_tokens=1500)
    config["sentencepiece"]["vocab_size"] = 120
    config["evaluation"]["max_length"] = 60
    config["resources"]["mem_mb"] = 1000
    config["teacher"]["resources"]["mem_mb"] = 1500
    return config


def test_profiles_are_valid_yaml_with_the_expected_keys():
    slurm = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert slurm["executor"] == "slurm" and slurm["rerun-incomplete"] is True
    assert slurm["slurm-status-command"] == "squeue" and slurm["retries"] >= 1
    local = yaml.safe_load((REPO / "profiles/local/config.yaml").read_text())
    assert local["resources"] == ["gpu=1"]


def test_gpu_rule_requests_gpus_only_on_cuda(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    plan = run_snakemake(tmp_path, config, "-n", "--forceall")
    assert "gpu=0" in plan.stdout
    config["training"]["device"] = "cuda"
    config["teachers"][0]["processes"] = 2
    plan = run_snakemake(tmp_path, config, "-n", "--forceall")
    assert "gpu=2" in plan.stdout


def _claim_and_report(lock_dir, queue, hold):
    devices = claim_gpus(1, available=["0", "1"], lock_dir=lock_dir, poll=0.05)
    queue.put((time.monotonic(), devices))
    time.sleep(hold)


def test_concurrent_jobs_claim_different_gpus(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_claim_and_report, args=(tmp_path, queue, 1.5))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    results = sorted(queue.get(timeout=30) for _ in workers)
    for worker in workers:
        worker.join()
    first_two = {tuple(devices) for _, devices in results[:2]}
    assert first_two == {("0",), ("1",)}  # never the same device at once
    assert results[2][0] - results[0][0] > 1.0  # the third waited for a device to free up


def test_claim_respects_scheduler_and_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert claim_gpus(1, lock_dir=tmp_path) == ["3"]  # SLURM already chose: nothing claimed
    with pytest.raises(NmtkdError, match="3 GPU\\(s\\) requested but only 2 visible"):
        claim_gpus(3, available=["0", "1"], lock_dir=tmp_path)
    assert claim_gpus(0) == []
    assert claim_gpus(2, available=["0", "1"], lock_dir=tmp_path) == ["0", "1"]
    release_all()


@pytest.mark.e2e
def test_slurm_profile_runs_the_workflow_through_sbatch(tmp_path):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm"
    local_dir.mkdir()
    slurm_dir.mkdir()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = synthetic_config(data_dir, "cluster")
    started = time.monotonic()
    local = run_snakemake(local_dir, config, "--cores", "2")
    steps = int(re.findall(r"(\d+) of \1 steps \(100%\) done", local.stderr)[-1])
    local_elapsed = time.monotonic() - started
    with local_slurm(tmp_path / "slurm-state", cpus=2, memory_mb=8000):
        started = time.monotonic()
        slurm_run = run_snakemake(
            slurm_dir, config, "--profile", str(REPO / "profiles/slurm"),
            "--slurm-no-account", "--jobs", "2", "--latency-wait", "5",
            "--slurm-init-seconds-before-status-checks", "1", "--slurm-keep-successful-logs")
        elapsed = time.monotonic() - started
        jobs = subprocess.run(["scontrol", "show", "jobs", "-o"], capture_output=True,
                              text=True, check=True).stdout.splitlines()
    completed = [line for line in jobs if "JobState=COMPLETED" in line]
    log_root = slurm_dir / ".snakemake" / "slurm_logs"
    logs = [p.relative_to(log_root) for p in log_root.rglob("*.log")]
    # every job of a rule but the localrules ran as its own sbatch job, with SLURM's log
    local_jobs = re.findall(r"^localrule (\w+):", slurm_run.stderr, re.MULTILINE)
    assert "all" in local_jobs and "evaluate_testset" in local_jobs
    assert len(completed) == len(logs) == steps - len(local_jobs), (jobs, logs, local_jobs)
    assert not {p.parts[0] for p in logs} & {f"rule_{name}" for name in local_jobs}
    assert {p.parts[0] for p in logs} >= {"rule_train_model", "rule_export_ct2",
                                          "rule_translate_testset"}
    results = "results/cluster"
    for relative in ("translations/teacher/synthetic.float32.beam5.yy", "data/spm/train.xx"):
        assert (slurm_dir / results / relative).read_text() == (
            local_dir / results / relative).read_text()
    local_eval = json.loads(
        (local_dir / results / "eval/teacher/synthetic.float32.beam5.json").read_text())
    slurm_eval = json.loads(
        (slurm_dir / results / "eval/teacher/synthetic.float32.beam5.json").read_text())
    assert slurm_eval["bleu"] == local_eval["bleu"] and slurm_eval["chrf"] == local_eval["chrf"]
    print(f"\ntiny workflow: local {local_elapsed:.1f} s, through SLURM {elapsed:.1f} s")
