"""A new method is one criterion unit plus one config entry: a toy criterion, written here
into a file of its own, trains a student through the workflow. It reads the teacher's top-1
from the teacher signals, and the workflow learns that from the criterion alone."""

from __future__ import annotations

import json
import math

import pytest
from workflow_config import run_snakemake, synthetic_data, tiny_config

from nmtkd import checkpoint

TOY_CRITERION = '''
"""Toy: NLL of the reference plus NLL of the teacher's top-1 token, 1:1."""
import torch.nn.functional as F

from nmtkd.criteria import TEACHER_SIGNALS, Criterion, CriterionOutput, register
from nmtkd.criteria.base import nll_terms


@register
class TeacherTop1(Criterion):
    name = "toy_teacher_top1"

    def __init__(self, weight=1.0):
        self.weight = weight
        self.signals = None
        self.last_update = 0

    @property
    def needs(self):
        return frozenset({TEACHER_SIGNALS})

    @property
    def signals_k(self):
        return 1

    def bind(self, teacher_model=None, teacher_signals=None, knn_targets=None):
        self.signals = teacher_signals

    def __call__(self, step):
        logits = step.logits()
        log_probs = F.log_softmax(logits.float(), dim=-1)
        nll, _, mask = nll_terms(log_probs, step.batch.target_out)
        ids, _ = self.signals.lookup(step.batch.lines, logits.size(1), 1, logits.device)
        top1 = -log_probs.gather(-1, ids).reshape(-1)
        gold, teacher = nll[mask].sum(), top1[mask].sum()
        self.last_update = step.update
        return CriterionOutput(gold + self.weight * teacher, int(mask.sum()),
                               {"nll": float(gold.detach()), "top1": float(teacher.detach())})

    def state_dict(self):
        return {"last_update": self.last_update}

    def load_state_dict(self, state):
        self.last_update = state["last_update"]
'''


@pytest.mark.e2e
def test_a_toy_criterion_trains_through_the_workflow_with_its_file_and_a_config_entry(
        synthetic, synthetic_spm, trained_tiny, tmp_path):
    (tmp_path / "toy_criterion.py").write_text(TOY_CRITERION)
    config = tiny_config("toy", synthetic_data(synthetic), max_updates=100, valid_interval=50)
    config["teacher"]["existing"] = {"checkpoint": str(trained_tiny), "spm": str(synthetic_spm)}
    config["students"] = [{"name": "toy", "data": "gold",
                           "loss": {"name": "toy_teacher_top1", "module": "toy_criterion.py"}}]
    results = tmp_path / "results/toy"
    run_snakemake(tmp_path, config, "--cores", "2", "results/toy/models/toy/training.json")

    meta = json.loads((results / "signals/teacher/gold.top1/meta.json").read_text())
    assert meta["k"] == 1 and meta["skipped_lines"] == 0
    summary = json.loads((results / "models/toy/training.json").read_text())
    assert summary["criterion"] == "toy_teacher_top1" and summary["updates"] == 100
    terms = summary["train_terms"]
    assert set(terms) == {"loss", "nll", "top1"}
    assert terms["loss"] == pytest.approx(terms["nll"] + terms["top1"], rel=1e-6)
    log = [json.loads(line) for line in
           (results / "models/toy/work/train_log.jsonl").read_text().splitlines()]
    top1 = [record["train_top1"] for record in log if "train_top1" in record]
    # a blank student is about uniform, -log(1/120) = 4.79 per token; learning the teacher's
    # choices puts at least e times that probability on them (the term falls by over 1 nat)
    uniform = math.log(120)
    assert top1[0] > uniform - 0.5 and sum(top1[-10:]) / 10 < uniform - 1.0
    state = checkpoint.load(results / "models/toy/work/state.pt")
    assert state["criterion"] == [{"last_update": 100}]  # saved with the trainer's state
