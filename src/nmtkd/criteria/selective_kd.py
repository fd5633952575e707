"""Selective knowledge distillation (Wang et al. 2021): distil only the hard target tokens.

A token's difficulty is the student's own unsmoothed NLL of the gold token in the training
forward pass (train mode, detached). Every non-pad token gets the label-smoothed NLL; only the
selected ones also get the teacher term, 1:1 as in the reference code:

    L = Σ_j LS-NLL_j + Σ_{j selected} CE(q_j, p_j)

(`alpha` gives (1−α)·Σ LS-NLL + α·Σ_selected CE instead). CE(q, p) has the gradient of the
reference's KL(q‖p); the two differ by the teacher's entropy, a constant.

- `strategy: batch`: the ⌈r·N⌉ hardest of the batch's N non-pad tokens, ties at the threshold
  included.
- `strategy: global`: a FIFO queue of recent difficulties. The batch is pushed first; once the
  queue would reach `queue_size`, the batch's N oldest entries leave as it enters, so the queue
  keeps its length. The threshold is the ⌈r·|Q|⌉-th largest value of the queue. The queue is
  criterion state, saved with the trainer's, and per process under DDP, as in the reference.

q is the teacher's top-k softmax from the cached teacher signals (`teacher_topk`, default 8),
or the live teacher's full-vocabulary softmax (`teacher_topk: 0`).

Logged terms, per target token: `kd`; `selected` (the selected share); `threshold` (logged as
threshold × tokens, so its per-token value is the token-weighted mean threshold).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nmtkd.criteria.base import TEACHER_MODEL, TEACHER_SIGNALS, CriterionOutput, TrainingStep
from nmtkd.criteria.registry import register
from nmtkd.criteria.word_kd import WordKD
from nmtkd.errors import NmtkdError
from nmtkd.spm import PAD_ID

STRATEGIES = ("batch", "global")


def kth_largest(values: Tensor, rate: float) -> Tensor:
    """The ⌈rate·n⌉-th largest of the n values."""
    count = max(1, math.ceil(rate * values.numel()))
    return values.topk(count, largest=True, sorted=True).values[-1]


def push_first(queue: Tensor, difficulties: Tensor, capacity: int) -> Tensor:
    """The queue after pushing the batch: when it would reach `capacity`, its N oldest
    entries leave first (N: the batch's size), as the reference code does."""
    if queue.numel() + difficulties.numel() >= capacity:
        queue = queue[difficulties.numel():]
    return torch.cat([queue, difficulties])


@register
class SelectiveKD(WordKD):
    name = "selective_kd"

    def __init__(self, strategy: str = "batch", rate: float = 0.5, queue_size: int = 30000,
                 label_smoothing: float = 0.1, alpha: float | None = None,
                 temperature: float = 1.0, teacher_topk: int = 8, time_chunk: int = 64):
        if strategy not in STRATEGIES:
            raise NmtkdError(f"loss.strategy must be one of {', '.join(STRATEGIES)}, got "
                             f"{strategy!r}")
        if not 0.0 < rate <= 1.0:
            raise NmtkdError(f"loss.rate must be in (0, 1], got {rate}")
        if queue_size < 1:
            raise NmtkdError(f"loss.queue_size must be at least 1, got {queue_size}")
        super().__init__(alpha=0.5 if alpha is None else alpha, temperature=temperature,
                         label_smoothing=label_smoothing, time_chunk=time_chunk,
                         teacher_topk=teacher_topk)
        self.summed = alpha is None  # the reference's 1:1 sum
        self.strategy, self.rate, self.queue_size = strategy, rate, queue_size
        self.queue = torch.zeros(0, dtype=torch.float32)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({TEACHER_SIGNALS if self.topk else TEACHER_MODEL})

    def select(self, difficulty: Tensor, non_pad: Tensor) -> tuple[Tensor, Tensor]:
        """The mask of the tokens to distil and the threshold (difficulty: [batch, time])."""
        values = difficulty[non_pad].detach().float().cpu()
        if self.strategy == "global":
            self.queue = push_first(self.queue, values, self.queue_size)
            values = self.queue
        threshold = kth_largest(values, self.rate)
        return non_pad & (difficulty >= threshold.to(difficulty.device)), threshold

    def __call__(self, step: TrainingStep) -> CriterionOutput:
        logits, batch = step.logits(), step.batch
        log_probs = F.log_softmax(logits.float(), dim=-1)
        base = self.nll.from_log_probs(log_probs, batch)
        non_pad = batch.target_out != PAD_ID
        difficulty = -log_probs.detach().gather(-1, batch.target_out[..., None]).squeeze(-1)
        selected, threshold = self.select(difficulty, non_pad)
        distill = self._teacher_term(logits, log_probs, batch, selected)
        if self.summed:
            loss = base.loss + distill
        else:
            loss = (1.0 - self.alpha) * base.loss + self.alpha * distill
        terms = {**base.terms, "kd": float(distill.detach()),
                 "selected": float(selected.sum()),
                 "threshold": float(threshold) * base.normaliser}
        return CriterionOutput(loss=loss, normaliser=base.normaliser, terms=terms)

    def state_dict(self) -> dict[str, Any]:
        return {"queue": self.queue.clone()} if self.strategy == "global" else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.strategy == "global":
            self.queue = state.get("queue", torch.zeros(0)).float().cpu()
        elif state:
            raise ValueError(f"batch-level selection keeps no state, but got {sorted(state)}")
