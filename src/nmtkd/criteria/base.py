"""What a training criterion is: the contract between the trainer and a loss.

A criterion gets one training step (the model being trained, the batch, the update number)
and returns the loss summed over its normaliser's units plus named terms to log. It declares
what else it needs (the teacher's torch model, the teacher's cached top-k signals), so that
the workflow learns from the criterion, not from a list in the rules, which inputs its
training job gets. Its state (e.g. a queue of recent difficulties) is saved with the
trainer's state, so a resumed run continues exactly where the killed one stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from nmtkd.batching import Batch
from nmtkd.spm import PAD_ID

# What a criterion may need besides the batch (its `needs`).
TEACHER_MODEL = "teacher_model"  # the teacher's torch model, run live on each batch
TEACHER_SIGNALS = "teacher_signals"  # the teacher's top-k ids and logits, computed once
KNN_TARGETS = "knn_targets"  # each training token's datastore neighbours, searched once
NEEDS = (TEACHER_MODEL, TEACHER_SIGNALS, KNN_TARGETS)


@dataclass
class TrainingStep:
    """One micro-batch of an update, as a criterion sees it."""

    model: torch.nn.Module  # the network being trained (the DDP wrapper under DDP)
    batch: Batch
    update: int  # the update this batch belongs to, counted from 1
    max_updates: int = 0  # the run's planned number of updates (for schedules); 0: unknown
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    def logits(self, target_in: Tensor | None = None) -> Tensor:
        """The model's logits on the batch (teacher forcing on `target_in`, default gold)."""
        with self.autocast():
            return self.model(self.batch.source,
                              self.batch.target_in if target_in is None else target_in)

    def passes(self, count: int) -> list[tuple[Tensor, Tensor]]:
        """`count` teacher-forced passes of the model sharing one encoder output: (decoder
        input, logits) per pass, pass 1 on the gold prefix and pass n on the argmax of pass
        n−1 (see `Transformer.forward`)."""
        with self.autocast():
            return self.model(self.batch.source, self.batch.target_in, passes=count)


@dataclass
class CriterionOutput:
    loss: Tensor  # summed over the normaliser's units; the trainer divides by their total
    normaliser: int  # how many units `loss` sums over (here: target tokens)
    terms: dict[str, float] = field(default_factory=dict)  # summed, logged per unit

    def __post_init__(self) -> None:
        if "nll" not in self.terms:
            raise ValueError("a criterion must report the summed reference NLL as terms['nll']")


class Criterion:
    """Base class of the training criteria. Subclasses set `name`, take their config
    parameters as keyword arguments (checked in `__init__`, raising NmtkdError) and implement
    `__call__`; `needs` says which inputs `bind` will provide."""

    name: ClassVar[str] = ""

    @property
    def needs(self) -> frozenset[str]:
        return frozenset()

    @property
    def signals_k(self) -> int:
        """With TEACHER_SIGNALS: how many of the teacher's largest logits per position it reads
        (with KNN_TARGETS: how many stored neighbours)."""
        return 0

    def bind(self, teacher_model: torch.nn.Module | None = None,
             teacher_signals: Any | None = None, knn_targets: Any | None = None) -> None:
        """Receive what `needs` asked for (the trainer calls this before training)."""

    def normaliser(self, batch: Batch) -> int:
        """The units the loss of `batch` will be summed over (known before the forward pass,
        so that the gradient of the whole update can be scaled up front)."""
        return batch.target_tokens

    def __call__(self, step: TrainingStep) -> CriterionOutput:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """State to save with the trainer's (per process under DDP)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"criterion {self.name!r} keeps no state, but got {sorted(state)}")


def nll_terms(log_probs: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token NLL of `target`, the uniform smoothing term and the non-pad mask (all flat),
    from log-probabilities [..., vocab]."""
    log_probs = log_probs.reshape(-1, log_probs.size(-1))
    flat = target.reshape(-1)
    mask = flat != PAD_ID
    nll = -log_probs.gather(1, flat[:, None]).squeeze(1)
    smooth = -log_probs.mean(dim=-1)
    return nll, smooth, mask


def token_nll(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """`nll_terms` from logits (log-softmax in fp32)."""
    return nll_terms(F.log_softmax(logits.float(), dim=-1), target)
