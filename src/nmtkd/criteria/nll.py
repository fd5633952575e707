"""Cross-entropy on the references with label smoothing (the baseline and every teacher)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from nmtkd.batching import Batch
from nmtkd.criteria.base import Criterion, CriterionOutput, TrainingStep, nll_terms
from nmtkd.criteria.registry import register
from nmtkd.errors import NmtkdError


@register
class LabelSmoothedNLL(Criterion):
    """(1-ε)·NLL + ε·mean_k(−log p_k), summed over the target tokens."""

    name = "nll"

    def __init__(self, label_smoothing: float = 0.1):
        if not 0.0 <= label_smoothing < 1.0:
            raise NmtkdError(f"loss.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.epsilon = label_smoothing

    def __call__(self, step: TrainingStep) -> CriterionOutput:
        return self.from_log_probs(F.log_softmax(step.logits().float(), dim=-1), step.batch)

    def from_log_probs(self, log_probs: Tensor, batch: Batch) -> CriterionOutput:
        nll, smooth, mask = nll_terms(log_probs, batch.target_out)
        loss = (1.0 - self.epsilon) * nll + self.epsilon * smooth
        tokens = int(mask.sum())
        return CriterionOutput(loss=loss[mask].sum(), normaliser=tokens,
                               terms={"nll": float(nll[mask].sum().detach())})
