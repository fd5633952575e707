"""The project's own torch decoding: greedy search with a key/value cache, and scoring."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nmtkd.batching import encode_source, pad
from nmtkd.model import Transformer
from nmtkd.spm import BOS_ID, EOS_ID, PAD_ID


@torch.inference_mode()
def greedy_search(model: Transformer, sources: list[list[int]], max_length: int = 256,
                  device: torch.device | str = "cpu") -> list[list[int]]:
    """Greedy decoding of raw source ids (</s> appended here); returns ids without specials."""
    model.eval()
    source = pad([encode_source(s) for s in sources]).to(device)
    memory, mask = model.encode(source)
    memory_kv = model.memory_kv(memory)
    caches: list[dict[str, Tensor]] = [{} for _ in model.decoder_layers]
    batch = source.size(0)
    step_input = torch.full((batch, 1), BOS_ID, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    outputs: list[Tensor] = []
    for step in range(max_length):
        logits = model.decode(step_input, memory_kv, mask, caches=caches, offset=step)
        next_token = logits[:, -1].argmax(dim=-1)
        next_token = next_token.masked_fill(finished, PAD_ID)
        outputs.append(next_token)
        finished |= next_token == EOS_ID
        if bool(finished.all()):
            break
        step_input = next_token[:, None]
    tokens = torch.stack(outputs, dim=1).tolist()
    results = []
    for row in tokens:
        hyp = []
        for token in row:
            if token in (EOS_ID, PAD_ID):
                break
            hyp.append(token)
        results.append(hyp)
    return results


@torch.inference_mode()
def score_targets(model: Transformer, sources: list[list[int]], targets: list[list[int]],
                  device: torch.device | str = "cpu") -> list[list[float]]:
    """Teacher-forced log-probabilities of each target token and the final </s>."""
    model.eval()
    source = pad([encode_source(s) for s in sources]).to(device)
    target_in = pad([[BOS_ID] + t for t in targets]).to(device)
    target_out = pad([t + [EOS_ID] for t in targets]).to(device)
    log_probs = F.log_softmax(model(source, target_in).float(), dim=-1)
    picked = log_probs.gather(2, target_out[..., None]).squeeze(-1)
    return [picked[row, : len(t) + 1].tolist() for row, t in enumerate(targets)]


def length_bound(source_lengths: list[int], max_length: int, max_len_a: float = 0.0,
                 max_len_b: int = 0) -> int:
    """The most target tokens a batch may generate: fairseq's max_len_a·|x| + max_len_b for
    the batch's longest source (|x| in tokens), never above `max_length`; with a = b = 0,
    `max_length` alone."""
    if max_len_a == 0 and max_len_b == 0:
        return max_length
    return max(1, min(max_length, math.ceil(max_len_a * max(source_lengths) + max_len_b)))


def sorted_chunks(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Index chunks of similar length (longest first) to reduce padding during decoding."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def bounded_chunks(lengths: list[int], batch_size: int, max_length: int,
                   max_len_a: float = 0.0, max_len_b: int = 0) -> list[tuple[list[int], int]]:
    """`sorted_chunks` of the source lengths, each with its batch's `length_bound`."""
    return [(chunk, length_bound([lengths[i] for i in chunk], max_length, max_len_a, max_len_b))
            for chunk in sorted_chunks(lengths, batch_size)]


def greedy_translate_ids(model: Transformer, sources: list[list[int]], batch_size: int = 64,
                         max_length: int = 256, device: torch.device | str = "cpu"
                         ) -> list[list[int]]:
    """Greedy-decode many sentences in length-sorted batches; results in input order."""
    results: list[list[int]] = [[] for _ in sources]
    for chunk in sorted_chunks([len(s) for s in sources], batch_size):
        for index, hyp in zip(chunk, greedy_search(model, [sources[i] for i in chunk],
                                                    max_length, device), strict=True):
            results[index] = hyp
    return results
