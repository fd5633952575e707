"""Training losses: each is one small unit, selected by name from config.

A loss receives the student's logits and the batch and returns the summed loss to optimise
plus the summed NLL (for perplexity) and the token count. Losses that need a teacher hold it
themselves, so the trainer never changes when a distillation method is added.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch.nn.functional as F
from torch import Tensor

from nmtkd.batching import Batch
from nmtkd.errors import NmtkdError
from nmtkd.spm import PAD_ID


@dataclass
class LossOutput:
    loss: Tensor  # summed over target tokens; the trainer normalises
    nll: Tensor  # summed negative log-likelihood of the references (no smoothing)
    tokens: int


class TrainingLoss(Protocol):
    def __call__(self, logits: Tensor, batch: Batch) -> LossOutput: ...


def token_nll(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token NLL, the uniform smoothing term and the non-pad mask (all [batch*len])."""
    log_probs = F.log_softmax(logits.float(), dim=-1).view(-1, logits.size(-1))
    flat = target.reshape(-1)
    mask = flat != PAD_ID
    nll = -log_probs.gather(1, flat[:, None]).squeeze(1)
    smooth = -log_probs.mean(dim=-1)
    return nll, smooth, mask


class LabelSmoothedNLL:
    """Cross-entropy with label smoothing: (1-ε)·NLL + ε·mean_k(−log p_k)."""

    def __init__(self, label_smoothing: float = 0.1):
        if not 0.0 <= label_smoothing < 1.0:
            raise NmtkdError(f"loss.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.epsilon = label_smoothing

    def __call__(self, logits: Tensor, batch: Batch) -> LossOutput:
        nll, smooth, mask = token_nll(logits, batch.target_out)
        loss = (1.0 - self.epsilon) * nll + self.epsilon * smooth
        return LossOutput(loss=loss[mask].sum(), nll=nll[mask].sum().detach(),
                          tokens=int(mask.sum()))


LOSSES: dict[str, Callable[..., TrainingLoss]] = {
    "nll": LabelSmoothedNLL,
}


def build_loss(spec: dict[str, Any]) -> TrainingLoss:
    """Build a loss from its config entry: {name: ..., <its parameters>}."""
    spec = dict(spec)
    name = spec.pop("name", "nll")
    if name not in LOSSES:
        raise NmtkdError(f"loss.name: unknown loss {name!r} (known: {', '.join(sorted(LOSSES))})")
    try:
        return LOSSES[name](**spec)
    except TypeError as error:
        raise NmtkdError(f"loss {name!r}: {error}") from None
