"""Annealing KD, stage I (Jafari et al. 2021): the student's logits regress onto the teacher's
logits scaled by Φ, with no gold labels. Teacher-forced on the gold prefix, per target
position:

    L_j = Σ_v (z^S_j,v − Φ·z^T_j,v)²   (`reduction: sum`, the default; `mean` divides by |V|)

Φ = c/τ_max, where c climbs from 1 to τ_max in τ_max equal blocks of the run's updates (the
reference code's "epochs" become blocks of max_updates/τ_max updates), so the last block
matches the raw teacher logits. Stage II, cross-entropy on gold from the best stage-I weights
with a fresh optimizer, is a student of its own: `loss: nll, init: <the stage-I student>`,
with the stage-I student's `average_last: 0` so that its final model is its best checkpoint.

The MSE needs the teacher's full-vocabulary logits, so by default the teacher's torch model
runs live on every batch (`teacher_topk: 0`). `teacher_topk: k` is an approximation: the MSE
over the teacher's k largest logits only, read from the cached teacher signals.

Choices the reference leaves to NMT: the reduction over the vocabulary is a sum, not the
reference's mean, because a mean over 8,000 entries shrinks the loss and its gradient by that
factor; the loss is averaged over non-pad target tokens like every criterion here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nmtkd.criteria.base import (
    TEACHER_MODEL,
    TEACHER_SIGNALS,
    Criterion,
    CriterionOutput,
    TrainingStep,
)
from nmtkd.criteria.registry import register
from nmtkd.criteria.word_kd import teacher_logit_slices
from nmtkd.errors import NmtkdError
from nmtkd.spm import PAD_ID

REDUCTIONS = ("sum", "mean")


def annealing_factor(update: int, max_updates: int, max_temperature: int) -> float:
    """Φ at `update` (counted from 1): c/τ_max with c = 1 + ⌊(update−1)·τ_max / max_updates⌋,
    i.e. τ_max equal blocks of updates, the last one at Φ = 1."""
    if max_updates < 1:
        raise NmtkdError("annealing_kd needs the run's max_updates for its schedule")
    block = 1 + (min(update, max_updates) - 1) * max_temperature // max_updates
    return block / max_temperature


@register
class AnnealingKD(Criterion):
    name = "annealing_kd"

    def __init__(self, max_temperature: int = 10, reduction: str = "sum", teacher_topk: int = 0,
                 time_chunk: int = 64):
        if max_temperature < 1:
            raise NmtkdError(f"loss.max_temperature must be at least 1, got {max_temperature}")
        if reduction not in REDUCTIONS:
            raise NmtkdError(f"loss.reduction must be one of {', '.join(REDUCTIONS)}, got "
                             f"{reduction!r}")
        if teacher_topk < 0 or time_chunk < 1:
            raise NmtkdError("loss.teacher_topk must be >= 0 and loss.time_chunk >= 1")
        self.max_temperature, self.reduction = max_temperature, reduction
        self.topk, self.time_chunk = teacher_topk, time_chunk
        self.teacher = None
        self.signals = None

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({TEACHER_SIGNALS if self.topk else TEACHER_MODEL})

    @property
    def signals_k(self) -> int:
        return self.topk

    def bind(self, teacher_model=None, teacher_signals=None, knn_targets=None) -> None:
        self.teacher, self.signals = teacher_model, teacher_signals
        if self.teacher is not None:
            self.teacher.requires_grad_(False)

    def __call__(self, step: TrainingStep) -> CriterionOutput:
        logits, batch = step.logits().float(), step.batch
        non_pad = batch.target_out != PAD_ID
        phi = annealing_factor(step.update, step.max_updates, self.max_temperature)
        if self.topk:
            squared = self._topk_squared_error(logits, batch, phi)
        else:
            squared = self._full_squared_error(logits, batch, phi)
        loss = squared[non_pad].sum()
        with torch.no_grad():  # logged only: stage I sees no gold labels
            log_probs = F.log_softmax(logits, dim=-1)
            nll = -log_probs.gather(-1, batch.target_out[..., None]).squeeze(-1)[non_pad].sum()
        tokens = int(non_pad.sum())
        return CriterionOutput(loss=loss, normaliser=tokens,
                               terms={"nll": float(nll), "mse": float(loss.detach()),
                                      "phi": phi * tokens})

    def _full_squared_error(self, logits: Tensor, batch, phi: float) -> Tensor:
        """Per position: Σ_v (or mean_v) of the squared difference, [batch, time]."""
        if self.teacher is None:
            raise NmtkdError("annealing_kd with teacher_topk 0 needs the teacher's torch model "
                             "(train --teacher)")
        parts = []
        for start, stop, teacher_logits in teacher_logit_slices(self.teacher, batch,
                                                                self.time_chunk):
            difference = logits[:, start:stop] - phi * teacher_logits.float()
            parts.append(self._reduce(difference.pow(2)))
        return torch.cat(parts, dim=1)

    def _topk_squared_error(self, logits: Tensor, batch, phi: float) -> Tensor:
        if self.signals is None:
            raise NmtkdError("annealing_kd with teacher_topk needs the teacher signals")
        ids, teacher_logits = self.signals.lookup(batch.lines, logits.size(1), self.topk,
                                                  logits.device)
        difference = logits.gather(-1, ids) - phi * teacher_logits
        return self._reduce(difference.pow(2))

    def _reduce(self, squared: Tensor) -> Tensor:
        return squared.sum(dim=-1) if self.reduction == "sum" else squared.mean(dim=-1)
