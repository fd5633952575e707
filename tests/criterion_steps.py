"""Helpers for criterion tests: a training step whose model returns given logits, and a
teacher whose decoder does."""

from __future__ import annotations

import torch
from torch import Tensor

from nmtkd.batching import Batch
from nmtkd.criteria import TrainingStep


def step_with(logits: Tensor, batch: Batch, update: int = 1) -> TrainingStep:
    """A step whose model ignores its input and returns `logits` (gradients reach them)."""
    return TrainingStep(model=lambda source, target_in: logits, batch=batch, update=update)


class FixedTeacher(torch.nn.Module):
    """A 'teacher' whose decoder returns the given logits, whatever the prefix."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def encode(self, source):
        return source, None

    def memory_kv(self, memory):
        return memory

    def decode(self, target_in, memory_kv, mask):
        return self.logits[:, : target_in.size(1)]
