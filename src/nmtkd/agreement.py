"""Teacher-forced comparison of a model with the teacher on a test set's references: Top-1
Agreement (the share of target positions where both models' argmax is the same token), the
share where the model's argmax is the reference token, and the model's perplexity of the
references."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from nmtkd.batching import ParallelData, token_batches
from nmtkd.checkpoint import load_model
from nmtkd.criteria import token_nll
from nmtkd.errors import NmtkdError
from nmtkd.model import Transformer
from nmtkd.spm import PAD_ID, Tokenizer
from nmtkd.textio import atomic_writer, read_lines


@torch.inference_mode()
def top1_agreement(model: Transformer, teacher: Transformer, data: ParallelData,
                   max_tokens: int = 4000) -> dict[str, float]:
    """Teacher-forced on the references: Top-1 Agreement with the teacher, the share of
    positions where the model's top-1 is the reference token (`top1_reference`, both in %),
    and the reference perplexity. `teacher` may be `model` itself (one forward pass)."""
    model.eval()
    teacher.eval()
    agree, correct, tokens, nll = 0, 0, 0, 0.0
    for indices in token_batches(data, max_tokens, 0, 0, shuffle=False):
        batch = data.collate(indices)
        logits = model(batch.source, batch.target_in)
        predicted = logits.argmax(-1)
        mask = batch.target_out != PAD_ID
        if teacher is model:
            agree += int(mask.sum())
        else:
            teacher_logits = teacher(batch.source, batch.target_in)
            agree += int((predicted == teacher_logits.argmax(-1))[mask].sum())
        correct += int((predicted == batch.target_out)[mask].sum())
        token_losses, _, flat_mask = token_nll(logits, batch.target_out)
        nll += float(token_losses[flat_mask].sum())
        tokens += int(mask.sum())
    return {"top1_agreement": 100.0 * agree / tokens,
            "top1_reference": 100.0 * correct / tokens, "tokens": tokens,
            "nll": nll / tokens, "ppl": math.exp(min(nll / tokens, 50))}


def agreement_files(model_path: Path, teacher_path: Path, spm_path: Path, src_path: Path,
                    ref_path: Path, output: Path, threads: int = 0) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    tokenizer = Tokenizer(spm_path)
    sources, refs = read_lines(src_path), read_lines(ref_path)
    if len(sources) != len(refs):
        raise NmtkdError(f"line counts differ: {src_path} has {len(sources)} lines, {ref_path} "
                         f"has {len(refs)}")
    model, _ = load_model(model_path)
    same = model_path.resolve() == teacher_path.resolve()
    teacher = model if same else load_model(teacher_path)[0]
    if model.cfg.vocab_size != teacher.cfg.vocab_size:
        raise NmtkdError(f"{model_path} and {teacher_path} have different vocabularies "
                         f"({model.cfg.vocab_size} vs {teacher.cfg.vocab_size})")
    limit = min(model.cfg.max_positions, teacher.cfg.max_positions) - 1
    # truncate rather than skip, so every test sentence counts
    data = ParallelData([s[:limit - 1] for s in tokenizer.encode_ids(sources)],
                        [t[:limit - 1] for t in tokenizer.encode_ids(refs)], name=str(src_path))
    result = {"model": str(model_path), "teacher": str(teacher_path), "testset": str(src_path),
              "sentences": len(data), **top1_agreement(model, teacher, data)}
    with atomic_writer(output) as handle:
        json.dump(result, handle, indent=2)
    return result
