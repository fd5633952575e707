"""kNN-KD (Yang, Sun, Wan 2022): the student learns kNN-MT's retrieval offline. Each target
token's k nearest datastore entries were searched once in advance (`nmtkd knn-targets`); their
values and distances give the soft target p_kNN = Σ_i 1[v_i = v]·softmax(−d/T)_i, and

  L = LS-NLL(ε) + β·KL(p_kNN ‖ p)             (the reference code, β = 1)
  L = (1 − α)·LS-NLL(ε) + α·KL(p_kNN ‖ p)      (with `alpha`, the form a paper may write)

KL is computed over the k neighbours, duplicate values merged, without a [batch, time, vocab]
target tensor: Σ_i w_i·(log m(v_i) − log p(v_i)), where m(v) is the summed weight of value v.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nmtkd.criteria.base import KNN_TARGETS, Criterion, CriterionOutput, TrainingStep
from nmtkd.criteria.nll import LabelSmoothedNLL
from nmtkd.criteria.registry import register
from nmtkd.errors import NmtkdError
from nmtkd.knn.distribution import merged_masses, neighbour_weights
from nmtkd.spm import PAD_ID


def knn_kl(log_probs: Tensor, values: Tensor, negative_distances: Tensor, temperature: float,
           mask: Tensor) -> Tensor:
    """Σ over the `mask`ed positions of KL(p_kNN ‖ p): `log_probs` [batch, time, vocab] of the
    student, neighbour `values` and −distances [batch, time, k] (value < 0: missing)."""
    missing = values < 0
    weights = neighbour_weights(negative_distances.masked_fill(missing, -torch.inf).neg(),
                                temperature)
    values = values.clamp(min=0)
    masses = merged_masses(values, weights)
    student = log_probs.gather(-1, values)
    entropy_part = torch.where(weights > 0, weights * masses.clamp(min=1e-30).log(),
                               torch.zeros_like(weights))
    per_token = (entropy_part - weights * student).sum(dim=-1)
    return per_token[mask].sum()


@register
class KnnKD(Criterion):
    name = "knn_kd"

    def __init__(self, k: int = 64, temperature: float = 100.0, beta: float = 1.0,
                 alpha: float | None = None, label_smoothing: float = 0.1):
        if k < 1:
            raise NmtkdError(f"loss.k must be at least 1, got {k}")
        if temperature <= 0:
            raise NmtkdError(f"loss.temperature must be positive, got {temperature}")
        if beta < 0:
            raise NmtkdError(f"loss.beta must be non-negative, got {beta}")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise NmtkdError(f"loss.alpha must be in [0, 1], got {alpha}")
        if alpha is not None and beta != 1.0:
            raise NmtkdError("loss: give either beta (L = LS-NLL + β·KL) or alpha "
                             "(L = (1−α)·LS-NLL + α·KL), not both")
        self.nll = LabelSmoothedNLL(label_smoothing)
        self.k, self.temperature, self.beta, self.alpha = k, temperature, beta, alpha
        self.targets = None

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({KNN_TARGETS})

    @property
    def signals_k(self) -> int:
        return self.k

    def bind(self, teacher_model=None, teacher_signals=None, knn_targets=None) -> None:
        self.targets = knn_targets

    def __call__(self, step: TrainingStep) -> CriterionOutput:
        if self.targets is None:
            raise NmtkdError("knn_kd needs the stored kNN targets (nmtkd knn-targets, then "
                             "train --knn-targets)")
        logits, batch = step.logits(), step.batch
        log_probs = F.log_softmax(logits.float(), dim=-1)
        base = self.nll.from_log_probs(log_probs, batch)
        values, negative_distances = self.targets.lookup(batch.lines, logits.size(1), self.k,
                                                         logits.device)
        kl = knn_kl(log_probs, values, negative_distances, self.temperature,
                    batch.target_out != PAD_ID)
        if self.alpha is None:
            loss = base.loss + self.beta * kl
        else:
            loss = (1.0 - self.alpha) * base.loss + self.alpha * kl
        return CriterionOutput(loss=loss, normaliser=base.normaliser,
                               terms={**base.terms, "kl": float(kl.detach())})
