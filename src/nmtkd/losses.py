"""Training losses: each is one small unit, selected by name from config.

A loss receives the student's logits and the batch and returns the summed loss to optimise
plus the summed NLL (for perplexity) and the token count. Losses that need a teacher hold it
themselves, so the trainer never changes when a distillation method is added.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from nmtkd.batching import Batch, ParallelData, token_batches
from nmtkd.errors import NmtkdError
from nmtkd.model import Transformer
from nmtkd.spm import PAD_ID


@dataclass
class LossOutput:
    loss: Tensor  # summed over target tokens; the trainer normalises
    nll: Tensor  # summed negative log-likelihood of the references (no smoothing)
    tokens: int


class TrainingLoss(Protocol):
    def __call__(self, logits: Tensor, batch: Batch) -> LossOutput: ...


def prepare_loss(loss: TrainingLoss, data: ParallelData, device: torch.device,
                 max_tokens: int) -> None:
    """Let a loss precompute what it needs from the training data (e.g. teacher outputs)."""
    prepare = getattr(loss, "prepare", None)
    if prepare is not None:
        prepare(data, device, max_tokens)


def token_nll(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token NLL, the uniform smoothing term and the non-pad mask (all [batch*len])."""
    return nll_terms(F.log_softmax(logits.float(), dim=-1), target)


def nll_terms(log_probs: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """`token_nll` from log-probabilities that are already computed ([..., vocab])."""
    log_probs = log_probs.reshape(-1, log_probs.size(-1))
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
        return self.from_log_probs(F.log_softmax(logits.float(), dim=-1), batch)

    def from_log_probs(self, log_probs: Tensor, batch: Batch) -> LossOutput:
        nll, smooth, mask = nll_terms(log_probs, batch.target_out)
        loss = (1.0 - self.epsilon) * nll + self.epsilon * smooth
        return LossOutput(loss=loss[mask].sum(), nll=nll[mask].sum().detach(),
                          tokens=int(mask.sum()))


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor,
                       temperature: float = 1.0, student_log_p: Tensor | None = None) -> Tensor:
    """T²·Σ_positions Σ_k q_k·(−log p_k) over the masked positions, softmaxes in fp32
    (`student_log_p`: the student's log-softmax at this temperature, if already computed).

    T² keeps the gradient scale independent of the temperature (Hinton et al. 2015)."""
    q = F.softmax(teacher_logits.detach().float() / temperature, dim=-1)
    log_p = student_log_p if student_log_p is not None else F.log_softmax(
        student_logits.float() / temperature, dim=-1)
    return -(q * log_p).sum(dim=-1)[mask].sum() * temperature**2


class WordKD:
    """Word-level distillation (Kim & Rush 2016):
    (1-α)·LS-NLL + α·T²·Σ_k q_k·(−log p_k), with q = softmax(z_teacher/T), p = softmax(z/T).

    The teacher (a torch checkpoint) runs in eval mode under no_grad on the same prefix as the
    student, so on Seq-KD data this is Seq-KD + Word-KD.

    `teacher_topk = 0` runs the teacher on every batch, over the full vocabulary, in chunks of
    the time axis so its [batch, time, vocab] tensor never exists whole. `teacher_topk = k`
    instead runs the teacher once over the training set before training (`prepare`) and keeps
    its k largest logits per target position; q is then the softmax over those k (the
    L1-renormalised top-k of pytorch/translate and Tan et al. 2019). Every later epoch costs
    no teacher compute.
    """

    needs_teacher = True

    def __init__(self, teacher: str | Transformer, alpha: float = 0.5, temperature: float = 1.0,
                 label_smoothing: float = 0.0, time_chunk: int = 64, teacher_topk: int = 0):
        from nmtkd.checkpoint import load_model

        if not 0.0 <= alpha <= 1.0:
            raise NmtkdError(f"loss.alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise NmtkdError(f"loss.temperature must be positive, got {temperature}")
        if teacher_topk < 0:
            raise NmtkdError(f"loss.teacher_topk must be 0 (full vocabulary) or positive, got "
                             f"{teacher_topk}")
        self.nll = LabelSmoothedNLL(label_smoothing)
        self.alpha, self.temperature, self.time_chunk = alpha, temperature, time_chunk
        self.topk = teacher_topk
        self.teacher = load_model(teacher)[0] if isinstance(teacher, str) else teacher
        self.teacher.requires_grad_(False)
        self.cache: TopKCache | None = None

    def prepare(self, data: ParallelData, device: torch.device, max_tokens: int) -> None:
        """With `teacher_topk`, run the teacher once over `data` and keep its top-k logits."""
        if self.topk and self.alpha > 0.0:
            self.cache = TopKCache.build(self.teacher, data, self.topk, device, max_tokens)
            self.teacher.cpu()  # not needed again; free the accelerator's memory

    def __call__(self, logits: Tensor, batch: Batch) -> LossOutput:
        # one log-softmax over the vocabulary serves the NLL and, at T = 1, the KD term: on a
        # small student these [batch, time, vocab] passes cost as much as the network
        log_probs = F.log_softmax(logits.float(), dim=-1)
        base = self.nll.from_log_probs(log_probs, batch)
        if self.alpha == 0.0:
            return base
        non_pad = batch.target_out != PAD_ID
        student_log_p = log_probs if self.temperature == 1.0 else None
        if self.topk:
            if self.cache is None:
                raise NmtkdError("word_kd with teacher_topk needs prepare() on the training data")
            ids, teacher_logits = self.cache.lookup(batch.indices, logits.size(1), logits.device)
            distill = topk_cross_entropy(logits, ids, teacher_logits, non_pad, self.temperature,
                                         student_log_p)
        else:
            distill = self._full_vocabulary_term(logits, batch, non_pad, student_log_p)
        loss = (1.0 - self.alpha) * base.loss + self.alpha * distill
        return LossOutput(loss=loss, nll=base.nll, tokens=base.tokens)

    def _full_vocabulary_term(self, logits: Tensor, batch: Batch, non_pad: Tensor,
                              student_log_p: Tensor | None) -> Tensor:
        self.teacher.to(logits.device).eval()
        with torch.no_grad():
            memory, mask = self.teacher.encode(batch.source)
            memory_kv = self.teacher.memory_kv(memory)
        distill = logits.new_zeros((), dtype=torch.float32)
        length = batch.target_in.size(1)
        for start in range(0, length, self.time_chunk):
            stop = min(start + self.time_chunk, length)
            with torch.no_grad():
                # causal decoder: the logits of a time slice only need the prefix up to it
                teacher_logits = self.teacher.decode(batch.target_in[:, :stop], memory_kv,
                                                     mask)[:, start:stop]
            distill = distill + soft_cross_entropy(
                logits[:, start:stop], teacher_logits, non_pad[:, start:stop], self.temperature,
                None if student_log_p is None else student_log_p[:, start:stop])
        return distill


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


class TopKCache:
    """The teacher's k largest logits (and their ids) at every target position of a dataset,
    teacher-forced on the dataset's own targets; rows of all sentences in one flat tensor."""

    def __init__(self, ids: Tensor, logits: Tensor, offsets: list[int]):
        self.ids, self.logits, self.offsets = ids, logits, offsets

    @classmethod
    @torch.no_grad()
    def build(cls, teacher: Transformer, data: ParallelData, k: int, device: torch.device,
              max_tokens: int) -> TopKCache:
        teacher.to(device).eval()
        k = min(k, teacher.cfg.vocab_size)
        lengths = [len(t) + 1 for t in data.targets]  # target + </s>
        offsets = [0]
        for length in lengths:
            offsets.append(offsets[-1] + length)
        ids = torch.zeros(offsets[-1], k, dtype=torch.int32)
        values = torch.zeros(offsets[-1], k, dtype=torch.float32)
        batches = token_batches(data, max_tokens, 0, 0, shuffle=False)
        for indices in tqdm(batches, desc="teacher top-k", unit=" batch", mininterval=2.0):
            batch = data.collate(indices).to(device)
            top = teacher(batch.source, batch.target_in).float().topk(k, dim=-1)
            top_ids, top_values = top.indices.cpu(), top.values.cpu()
            for row, index in enumerate(indices):
                start, stop = offsets[index], offsets[index + 1]
                ids[start:stop] = top_ids[row, : stop - start].to(torch.int32)
                values[start:stop] = top_values[row, : stop - start]
        return cls(ids, values, offsets)

    def lookup(self, indices: list[int], width: int, device: torch.device) -> tuple[Tensor,
                                                                                    Tensor]:
        """[batch, width, k] ids and logits for the examples `indices` (zeros at padding)."""
        k = self.ids.size(1)
        ids = torch.zeros(len(indices), width, k, dtype=torch.long)
        values = torch.zeros(len(indices), width, k, dtype=torch.float32)
        for row, index in enumerate(indices):
            start, stop = self.offsets[index], self.offsets[index + 1]
            ids[row, : stop - start] = self.ids[start:stop]
            values[row, : stop - start] = self.logits[start:stop]
        return ids.to(device), values.to(device)


LOSSES: dict[str, Callable[..., TrainingLoss]] = {
    "nll": LabelSmoothedNLL,
    "word_kd": WordKD,
}


def needs_teacher(name: str) -> bool:
    """Whether the loss runs the teacher's torch model (the workflow then passes its
    checkpoint); a loss declares it with a class attribute `needs_teacher = True`."""
    return bool(getattr(LOSSES.get(name), "needs_teacher", False))


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
