"""Helpers for criterion tests: a training step whose model returns given logits."""

from __future__ import annotations

from torch import Tensor

from nmtkd.batching import Batch
from nmtkd.criteria import TrainingStep


def step_with(logits: Tensor, batch: Batch, update: int = 1) -> TrainingStep:
    """A step whose model ignores its input and returns `logits` (gradients reach them)."""
    return TrainingStep(model=lambda source, target_in: logits, batch=batch, update=update)
