"""The criterion API: the label-smoothed NLL, the registry, a user's criterion module."""

import math

import pytest
import torch
import torch.nn.functional as F
from criterion_steps import step_with

from nmtkd.batching import Batch
from nmtkd.criteria import (
    TEACHER_MODEL,
    TEACHER_SIGNALS,
    Criterion,
    CriterionOutput,
    build_criterion,
    known_criteria,
)
from nmtkd.criteria.nll import LabelSmoothedNLL
from nmtkd.errors import NmtkdError
from nmtkd.spm import PAD_ID


def batch_for(target_out):
    return Batch(source=torch.zeros(1, 1, dtype=torch.long), target_in=target_out.clone(),
                 target_out=target_out, indices=[0])


def test_label_smoothing_matches_hand_computation():
    logits = torch.tensor([[[2.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])
    target = torch.tensor([[3, PAD_ID]])  # second position is padding and must not count
    out = LabelSmoothedNLL(label_smoothing=0.2)(step_with(logits, batch_for(target)))
    log_z = math.log(math.exp(2) + 1 + 1 + math.exp(1))
    log_p = [2 - log_z, -log_z, -log_z, 1 - log_z]
    expected = 0.8 * -log_p[3] + 0.2 * -sum(log_p) / 4
    assert out.normaliser == 1
    assert float(out.loss) == pytest.approx(expected, abs=1e-6)
    assert out.terms == {"nll": pytest.approx(-log_p[3], abs=1e-6)}


def test_zero_smoothing_equals_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    target = torch.randint(1, 11, (2, 5))
    target[1, 3:] = PAD_ID
    out = LabelSmoothedNLL(0.0)(step_with(logits, batch_for(target)))
    expected = F.cross_entropy(logits.view(-1, 11), target.view(-1), ignore_index=PAD_ID,
                               reduction="sum")
    assert float(out.loss) == pytest.approx(float(expected), rel=1e-6)
    assert out.normaliser == 8


def test_registry_errors_name_the_key():
    with pytest.raises(NmtkdError, match="loss.name: unknown loss 'wordkd'"):
        build_criterion({"name": "wordkd"})
    with pytest.raises(NmtkdError, match="loss 'nll'"):
        build_criterion({"name": "nll", "temperature": 2})
    with pytest.raises(NmtkdError, match="label_smoothing"):
        build_criterion({"name": "nll", "label_smoothing": 1.5})


def test_built_in_criteria_declare_what_they_need():
    assert {"nll", "word_kd"} <= set(known_criteria())
    assert build_criterion({"name": "nll"}).needs == frozenset()
    assert build_criterion({"name": "word_kd"}).needs == {TEACHER_MODEL}
    top8 = build_criterion({"name": "word_kd", "teacher_topk": 8})
    assert top8.needs == {TEACHER_SIGNALS} and top8.signals_k == 8
    # alpha 0 is the plain (unsmoothed) NLL: no teacher at all
    assert build_criterion({"name": "word_kd", "alpha": 0.0, "teacher_topk": 8}).needs == set()


def test_a_criterion_must_report_the_nll_and_stateless_ones_refuse_state():
    with pytest.raises(ValueError, match="terms\\['nll'\\]"):
        CriterionOutput(loss=torch.tensor(1.0), normaliser=1, terms={"kd": 1.0})
    nll = build_criterion({"name": "nll"})
    assert nll.state_dict() == {}
    nll.load_state_dict({})
    with pytest.raises(ValueError, match="keeps no state"):
        nll.load_state_dict({"queue": [1.0]})


TOY = """
from nmtkd.criteria import Criterion, CriterionOutput, register
from nmtkd.criteria.base import nll_terms
import torch.nn.functional as F


@register
class Doubled(Criterion):
    name = "toy_doubled"

    def __init__(self, factor=2.0):
        self.factor = factor
        self.calls = 0

    def __call__(self, step):
        self.calls += 1
        nll, _, mask = nll_terms(F.log_softmax(step.logits().float(), -1), step.batch.target_out)
        total = nll[mask].sum()
        return CriterionOutput(self.factor * total, int(mask.sum()), {"nll": float(total)})

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]
"""


def test_a_criterion_from_a_users_file_is_registered_by_its_module_key(tmp_path):
    (tmp_path / "toy.py").write_text(TOY)
    criterion = build_criterion({"name": "toy_doubled", "module": str(tmp_path / "toy.py"),
                                 "factor": 3.0})
    assert isinstance(criterion, Criterion) and criterion.needs == frozenset()
    logits = torch.tensor([[[0.0, 0.0, math.log(2.0), 0.0]]])  # p(2) = 2/5
    out = criterion(step_with(logits, batch_for(torch.tensor([[2]]))))
    assert float(out.loss) == pytest.approx(3.0 * -math.log(0.4), abs=1e-6)
    assert criterion.state_dict() == {"calls": 1}
    with pytest.raises(NmtkdError, match="loss.module: .*missing.py not found"):
        build_criterion({"name": "toy_doubled", "module": str(tmp_path / "missing.py")})
    (tmp_path / "broken.py").write_text("import no_such_module_anywhere\n")
    with pytest.raises(NmtkdError, match="cannot import .*broken.py .*ModuleNotFoundError"):
        build_criterion({"name": "x", "module": str(tmp_path / "broken.py")})
