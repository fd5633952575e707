"""Word-KD with information removed from the teacher's soft targets (Zhang et al. 2023, the
analysis behind TIE-KD; ../shared/docs/kd_methods.md §5.2). With t* the teacher's top-1 and
y the gold token, the KD term of a target position is −Σ_v q'(v)·log p(v) for

- `vanilla`:             q' = q (Word-KD);
- `without_correlation`: q' = q(t*) on t* only; the rest of the mass is dropped, not moved;
- `without_top1`:        q' = q with q(t*) moved onto y (q' = q when t* = y), so the gold token
                         takes the teacher's top-1 place and the other candidates keep theirs;
- `topk_info`:           q' = q on the teacher's `topk` largest entries only (unnormalised).

The loss is (1−α)·LS-NLL + α·KD as in the paper's Word-KD (α = 0.5, ε = 0.1), at
temperature 1. The reference writes KD as KL(q'‖p); the cross-entropy used here has the same
gradient. "Without KD" (the paper's (d)) is the label-smoothed baseline, `loss: nll`.

q is exact by default: the live teacher's softmax over the full vocabulary
(`teacher_topk: 0`). With `teacher_topk: k`, q is the cached top-k renormalised, an
approximation in which tokens outside the teacher's top-k (the gold one included) have q = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nmtkd.batching import Batch
from nmtkd.criteria.registry import register
from nmtkd.criteria.word_kd import WordKD, teacher_logit_slices
from nmtkd.errors import NmtkdError

VARIANTS = ("vanilla", "without_correlation", "without_top1", "topk_info")


def variant_cross_entropy(log_p: Tensor, q: Tensor, support: Tensor | None, gold: Tensor,
                          variant: str, topk: int = 5) -> Tensor:
    """−Σ_v q'(v)·log p(v) per position, [batch, time].

    log_p: the student's log-probabilities [batch, time, vocab]; q: the teacher's
    probabilities over `support` ([batch, time, K] token ids; None: the whole vocabulary, in
    order); gold: [batch, time]."""
    def log_p_of(ids: Tensor) -> Tensor:
        return log_p.gather(-1, ids)

    top_q, top_positions = q.topk(topk if variant == "topk_info" else 1, dim=-1)
    top_ids = top_positions if support is None else support.gather(-1, top_positions)
    if variant in ("vanilla", "without_top1"):
        on_support = log_p if support is None else log_p_of(support)
        cross_entropy = -(q * on_support).sum(dim=-1)
        if variant == "vanilla":
            return cross_entropy
        # q' = q − q(t*)·[t*] + q(t*)·[y]: the difference is linear in q'
        moved = top_q[..., 0]
        return cross_entropy + moved * (log_p_of(top_ids[..., :1]).squeeze(-1)
                                        - log_p_of(gold[..., None]).squeeze(-1))
    return -(top_q * log_p_of(top_ids)).sum(dim=-1)


@register
class SoftTargetKD(WordKD):
    name = "soft_target_kd"

    def __init__(self, variant: str = "vanilla", topk: int = 5, alpha: float = 0.5,
                 label_smoothing: float = 0.1, teacher_topk: int = 0, time_chunk: int = 64):
        if variant not in VARIANTS:
            raise NmtkdError(f"loss.variant must be one of {', '.join(VARIANTS)}, got "
                             f"{variant!r}")
        if topk < 1:
            raise NmtkdError(f"loss.topk must be at least 1, got {topk}")
        if variant == "topk_info" and teacher_topk and topk > teacher_topk:
            raise NmtkdError(f"loss.topk ({topk}) cannot exceed loss.teacher_topk "
                             f"({teacher_topk}), the cached entries")
        super().__init__(alpha=alpha, temperature=1.0, label_smoothing=label_smoothing,
                         time_chunk=time_chunk, teacher_topk=teacher_topk)
        self.variant, self.info_topk = variant, topk

    def _teacher_term(self, logits: Tensor, log_probs: Tensor, batch: Batch,
                      mask: Tensor) -> Tensor:
        gold = batch.target_out
        if self.topk:
            if self.signals is None:
                raise NmtkdError("soft_target_kd with teacher_topk needs the teacher signals")
            ids, teacher_logits = self.signals.lookup(batch.lines, logits.size(1), self.topk,
                                                      logits.device)
            q = F.softmax(teacher_logits.float(), dim=-1)
            per_position = variant_cross_entropy(log_probs, q, ids, gold, self.variant,
                                                 self.info_topk)
            return per_position[mask].sum()
        if self.teacher is None:
            raise NmtkdError("soft_target_kd with teacher_topk 0 needs the teacher's torch "
                             "model (train --teacher)")
        distill = logits.new_zeros((), dtype=torch.float32)
        for start, stop, teacher_logits in teacher_logit_slices(self.teacher, batch,
                                                                self.time_chunk):
            q = F.softmax(teacher_logits.float(), dim=-1)
            per_position = variant_cross_entropy(log_probs[:, start:stop], q, None,
                                                 gold[:, start:stop], self.variant,
                                                 self.info_topk)
            distill = distill + per_position[mask[:, start:stop]].sum()
        return distill
