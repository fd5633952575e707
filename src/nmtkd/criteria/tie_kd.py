"""TIE-KD (Zhang et al. 2023): Word-KD plus a hierarchical ranking loss on the teacher's top-k,
over N teacher-forced passes whose inputs are the student's own predictions
(../shared/docs/kd_methods.md §5.4, §5.5).

Per target position, with q the teacher's and p the student's probabilities, T_k = t_1…t_k the
teacher's top-k (by q, t_1 its top-1) and S_k = s_1…s_k the student's top-k (by p):

    L_top1 = Σ_i max(0, p(t_i) − p(t_1))                        (t_1 first among T_k)
    L_topk = Σ_i Σ_m [q(t_i) > q(s_m)]·max(0, p(s_m) − p(t_i))  (T_k above the student's rivals)
    ℓ = CE(q, p) + L_top1 + L_topk                              (1:1, zero margin)

Pass 1 runs on the gold prefix and also gives the label-smoothed NLL; pass n runs the student
and the teacher on [BOS, argmax of the student's pass n−1], all positions at once. The student
encodes the source once for all passes. With N passes:

    L = (1−α)·LS-NLL + α·(1/N)·Σ_n Σ_j ℓ_j^(n)     (α = 0.5, ε = 0.1, N = 3, k = 5)

`iterations: 1` is the ranking loss alone, `ranking: false` the iteration alone, and both
together are Word-KD on the full vocabulary. The reference writes the KD term as KL(q‖p); the
cross-entropy here has the same gradient.

The teacher runs live over the full vocabulary on every pass: passes 2…N see prefixes no cache
holds, and even on pass 1 the second level needs q of the student's top-k, which a top-k cache
of the teacher lacks whenever the student's rivals are not among the teacher's top-k.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from nmtkd.criteria.base import TEACHER_MODEL, Criterion, CriterionOutput, TrainingStep
from nmtkd.criteria.nll import LabelSmoothedNLL
from nmtkd.criteria.registry import register
from nmtkd.criteria.word_kd import teacher_logit_slices, teacher_memory
from nmtkd.errors import NmtkdError
from nmtkd.spm import PAD_ID


def ranking_loss(p: Tensor, q: Tensor, topk: int) -> Tensor:
    """L_top1 + L_topk per position ([..., vocab] → [...]); gradients flow through p only."""
    q = q.detach()
    teacher_q, teacher_ids = q.topk(topk, dim=-1)
    p_teacher = p.gather(-1, teacher_ids)  # p(t_i), sorted by q
    top1 = F.relu(p_teacher - p_teacher[..., :1]).sum(dim=-1)
    student_ids = p.detach().topk(topk, dim=-1).indices
    p_student, q_student = p.gather(-1, student_ids), q.gather(-1, student_ids)
    ordered = teacher_q[..., :, None] > q_student[..., None, :]  # [..., i, m]: q(t_i) > q(s_m)
    violations = F.relu(p_student[..., None, :] - p_teacher[..., :, None])
    return top1 + (violations * ordered).sum(dim=(-2, -1))


@register
class TieKD(Criterion):
    name = "tie_kd"

    def __init__(self, iterations: int = 3, ranking: bool = True, topk: int = 5,
                 alpha: float = 0.5, label_smoothing: float = 0.1, time_chunk: int = 64):
        for key, value in (("iterations", iterations), ("topk", topk)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise NmtkdError(f"loss.{key} must be a whole number of at least 1, got {value}")
        if not 0.0 <= alpha <= 1.0:
            raise NmtkdError(f"loss.alpha must be in [0, 1], got {alpha}")
        if time_chunk < 1:
            raise NmtkdError(f"loss.time_chunk must be at least 1, got {time_chunk}")
        if not isinstance(ranking, bool):
            raise NmtkdError(f"loss.ranking must be true or false, got {ranking!r}")
        self.nll = LabelSmoothedNLL(label_smoothing)
        self.iterations, self.ranking, self.topk = iterations, ranking, topk
        self.alpha, self.time_chunk = alpha, time_chunk
        self.teacher = None

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({TEACHER_MODEL})

    def bind(self, teacher_model=None, teacher_signals=None, knn_targets=None) -> None:
        self.teacher = teacher_model
        if self.teacher is not None:
            self.teacher.requires_grad_(False)

    def __call__(self, step: TrainingStep) -> CriterionOutput:
        if self.teacher is None:
            raise NmtkdError("tie_kd needs the teacher's torch model (train --teacher)")
        batch = step.batch
        passes = step.passes(self.iterations)
        non_pad = batch.target_out != PAD_ID
        memory = teacher_memory(self.teacher, batch.source)
        cross_entropy = rank = None
        for index, (decoder_in, logits) in enumerate(passes):
            log_probs = F.log_softmax(logits.float(), dim=-1)
            if index == 0:
                base = self.nll.from_log_probs(log_probs, batch)
            pass_ce, pass_rank = self._pass_terms(log_probs, decoder_in, non_pad, memory, batch)
            cross_entropy = pass_ce if cross_entropy is None else cross_entropy + pass_ce
            rank = pass_rank if rank is None else rank + pass_rank
        cross_entropy, rank = cross_entropy / self.iterations, rank / self.iterations
        loss = (1.0 - self.alpha) * base.loss + self.alpha * (cross_entropy + rank)
        return CriterionOutput(loss=loss, normaliser=base.normaliser,
                               terms={**base.terms, "kd": float(cross_entropy.detach()),
                                      "rank": float(rank.detach())})

    def _pass_terms(self, log_probs: Tensor, decoder_in: Tensor, non_pad: Tensor, memory,
                    batch) -> tuple[Tensor, Tensor]:
        """One pass's CE(q, p) and ranking loss, summed over the gold target's non-pad
        positions, against the live teacher on the same decoder input."""
        cross_entropy = log_probs.new_zeros(())
        rank = log_probs.new_zeros(())
        for start, stop, teacher_logits in teacher_logit_slices(
                self.teacher, batch, self.time_chunk, target_in=decoder_in, memory=memory):
            q = F.softmax(teacher_logits.float(), dim=-1)
            log_p, mask = log_probs[:, start:stop], non_pad[:, start:stop]
            cross_entropy = cross_entropy - (q * log_p).sum(dim=-1)[mask].sum()
            if self.ranking:
                rank = rank + ranking_loss(log_p.exp(), q, self.topk)[mask].sum()
        return cross_entropy, rank
