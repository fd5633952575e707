"""Word-level distillation (Kim & Rush 2016):
(1-α)·LS-NLL + α·T²·Σ_k q_k·(−log p_k), with q = softmax(z_teacher/T), p = softmax(z/T).

The teacher sees the same prefix as the student, so on Seq-KD data this is Seq-KD + Word-KD.
`teacher_topk = k` reads the teacher's k largest logits from the teacher-signals artifact
(computed once per corpus by the workflow); q is then the softmax over those k, the
L1-renormalised top-k of pytorch/translate and Tan et al. 2019. `teacher_topk = 0` runs the
teacher's torch model live on every batch over the full vocabulary, in chunks of the time axis
so that its [batch, time, vocab] tensor never exists whole.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from nmtkd.batching import Batch
from nmtkd.criteria.base import (
    TEACHER_MODEL,
    TEACHER_SIGNALS,
    Criterion,
    CriterionOutput,
    TrainingStep,
)
from nmtkd.criteria.nll import LabelSmoothedNLL
from nmtkd.criteria.registry import register
from nmtkd.errors import NmtkdError
from nmtkd.spm import PAD_ID


@register
class WordKD(Criterion):
    name = "word_kd"

    def __init__(self, alpha: float = 0.5, temperature: float = 1.0,
                 label_smoothing: float = 0.0, time_chunk: int = 64, teacher_topk: int = 0):
        if not 0.0 <= alpha <= 1.0:
            raise NmtkdError(f"loss.alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise NmtkdError(f"loss.temperature must be positive, got {temperature}")
        if teacher_topk < 0:
            raise NmtkdError(f"loss.teacher_topk must be 0 (full vocabulary) or positive, got "
                             f"{teacher_topk}")
        if time_chunk < 1:
            raise NmtkdError(f"loss.time_chunk must be at least 1, got {time_chunk}")
        self.nll = LabelSmoothedNLL(label_smoothing)
        self.alpha, self.temperature, self.time_chunk = alpha, temperature, time_chunk
        self.topk = teacher_topk
        self.teacher = None
        self.signals = None

    @property
    def needs(self) -> frozenset[str]:
        if self.alpha == 0.0:
            return frozenset()
        return frozenset({TEACHER_SIGNALS if self.topk else TEACHER_MODEL})

    @property
    def signals_k(self) -> int:
        return self.topk

    def bind(self, teacher_model=None, teacher_signals=None, knn_targets=None) -> None:
        self.signals = teacher_signals
        self.teacher = teacher_model
        if self.teacher is not None:
            self.teacher.requires_grad_(False)

    def __call__(self, step: TrainingStep) -> CriterionOutput:
        logits, batch = step.logits(), step.batch
        # one log-softmax over the vocabulary serves the NLL and, at T = 1, the KD term: on a
        # small student these [batch, time, vocab] passes cost as much as the network
        log_probs = F.log_softmax(logits.float(), dim=-1)
        base = self.nll.from_log_probs(log_probs, batch)
        if self.alpha == 0.0:
            return base
        non_pad = batch.target_out != PAD_ID
        distill = self._teacher_term(logits, log_probs, batch, non_pad)
        loss = (1.0 - self.alpha) * base.loss + self.alpha * distill
        return CriterionOutput(loss=loss, normaliser=base.normaliser,
                               terms={**base.terms, "kd": float(distill.detach())})

    def _teacher_term(self, logits: Tensor, log_probs: Tensor, batch: Batch,
                      mask: Tensor) -> Tensor:
        """The teacher's cross-entropy summed over the `mask`ed positions: from the cached
        top-k, or from the live teacher over the full vocabulary (`log_probs`: the student's
        log-softmax at T = 1)."""
        student_log_p = log_probs if self.temperature == 1.0 else None
        if self.topk:
            return self._topk_term(logits, batch, mask, student_log_p)
        return self._full_vocabulary_term(logits, batch, mask, student_log_p)

    def _topk_term(self, logits: Tensor, batch: Batch, non_pad: Tensor,
                   student_log_p: Tensor | None) -> Tensor:
        if self.signals is None:
            raise NmtkdError("word_kd with teacher_topk needs the teacher signals "
                             "(nmtkd teacher-signals, then train --teacher-signals)")
        ids, teacher_logits = self.signals.lookup(batch.lines, logits.size(1), self.topk,
                                                  logits.device)
        return topk_cross_entropy(logits, ids, teacher_logits, non_pad, self.temperature,
                                  student_log_p)

    def _full_vocabulary_term(self, logits: Tensor, batch: Batch, non_pad: Tensor,
                              student_log_p: Tensor | None) -> Tensor:
        if self.teacher is None:
            raise NmtkdError("word_kd with teacher_topk 0 needs the teacher's torch model "
                             "(train --teacher)")
        distill = logits.new_zeros((), dtype=torch.float32)
        for start, stop, teacher_logits in teacher_logit_slices(self.teacher, batch,
                                                                self.time_chunk):
            distill = distill + soft_cross_entropy(
                logits[:, start:stop], teacher_logits, non_pad[:, start:stop], self.temperature,
                None if student_log_p is None else student_log_p[:, start:stop])
        return distill


def teacher_memory(teacher: torch.nn.Module, source: Tensor) -> tuple[list, Tensor]:
    """The live teacher's encoded source (eval mode, no gradient): its cross-attention keys
    and values per decoder layer, and the source mask."""
    teacher.to(source.device).eval()
    with torch.no_grad():
        memory, mask = teacher.encode(source)
        return teacher.memory_kv(memory), mask


def teacher_logit_slices(teacher: torch.nn.Module, batch: Batch, time_chunk: int,
                         target_in: Tensor | None = None,
                         memory: tuple[list, Tensor] | None = None,
                         ) -> Iterator[tuple[int, int, Tensor]]:
    """The live teacher's logits on `target_in` (default: the batch's gold prefix),
    [batch, slice, vocab] per slice of `time_chunk` positions (eval mode, no gradient), so that
    the whole [batch, time, vocab] tensor never exists. `memory`: the teacher's
    `teacher_memory` of the batch, if already computed."""
    target_in = batch.target_in if target_in is None else target_in
    memory_kv, mask = memory if memory is not None else teacher_memory(teacher, batch.source)
    length = target_in.size(1)
    for start in range(0, length, time_chunk):
        stop = min(start + time_chunk, length)
        with torch.no_grad():  # not around the yield: the caller's loss needs gradients
            # causal decoder: the logits of a time slice only need the prefix up to it
            sliced = teacher.decode(target_in[:, :stop], memory_kv, mask)[:, start:stop]
        yield start, stop, sliced


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor,
                       temperature: float = 1.0, student_log_p: Tensor | None = None) -> Tensor:
    """T²·Σ_positions Σ_k q_k·(−log p_k) over the masked positions, softmaxes in fp32
    (`student_log_p`: the student's log-softmax at this temperature, if already computed).

    T² keeps the gradient scale independent of the temperature (Hinton et al. 2015)."""
    q = F.softmax(teacher_logits.detach().float() / temperature, dim=-1)
    log_p = student_log_p if student_log_p is not None else F.log_softmax(
        student_logits.float() / temperature, dim=-1)
    return -(q * log_p).sum(dim=-1)[mask].sum() * temperature**2


def topk_cross_entropy(student_logits: Tensor, ids: Tensor, teacher_logits: Tensor,
                       mask: Tensor, temperature: float = 1.0,
                       student_log_p: Tensor | None = None) -> Tensor:
    """T²·Σ_positions Σ_{i∈top-k} q̃_i·(−log p_{v_i}): q̃ = softmax of the teacher's k kept
    logits / T, p = the student's full-vocabulary softmax of z / T ([batch, time, k] ids;
    `student_log_p`: that log-softmax, if already computed)."""
    q = F.softmax(teacher_logits.float() / temperature, dim=-1)
    if student_log_p is None:
        student_log_p = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p = student_log_p.gather(-1, ids)
    return -(q * log_p).sum(dim=-1)[mask].sum() * temperature**2
