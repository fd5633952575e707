"""The project's own beam search over the torch model, with a key/value cache and length
normalisation, following the search that CTranslate2 runs on the exported model:

  * the first step expands only the first beam; each step keeps the 2·beam best
    (beam, word) continuations of every sentence by cumulative log-probability;
  * of the first `beam` of them, one that ends in </s> (or any, at the last step) is a
    finished hypothesis (without its </s>), and its slot goes to the next unfinished one of
    the other `beam` candidates;
  * with a length penalty, a sentence is done once `beam` hypotheses are finished; without,
    once its best candidate is finished and `nbest` are;
  * finished scores are divided by length ** length_penalty, where the length counts the
    generated tokens with the </s> (as CTranslate2 4 does), and sorted.

Teacher ensembles and kNN-MT decode through this search: they change the step's
log-probabilities, which CTranslate2 cannot do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from nmtkd.batching import encode_source, pad
from nmtkd.model import Transformer
from nmtkd.spm import BOS_ID, EOS_ID

# Turns the live beams' log-probabilities [rows, vocab] into the ones the search ranks by,
# given their decoder states [rows, d_model] (the one its `state` attribute names).
StepScorer = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]  # without </s>
    score: float  # cumulative log-probability (with </s>) / generated length ** length_penalty


@dataclass
class SentenceSearch:
    """The finished hypotheses of one sentence while its beams are still searched."""

    finished: list[tuple[float, list[int], int]] = field(default_factory=list)  # score, tokens,
    # and the generated length (the tokens and, unless cut at the length limit, the </s>)
    top_finished: bool = False

    def done(self, beam_size: int, nbest: int, length_penalty: float) -> bool:
        if length_penalty == 0:
            return self.top_finished and len(self.finished) >= nbest
        return len(self.finished) >= beam_size

    def best(self, nbest: int, length_penalty: float) -> list[Hypothesis]:
        hypotheses = [Hypothesis(tokens, normalised(score, length, length_penalty))
                      for score, tokens, length in self.finished]
        return sorted(hypotheses, key=lambda h: -h.score)[:nbest]


def normalised(score: float, length: int, length_penalty: float) -> float:
    if length_penalty == 0:
        return score
    if length == 0:
        return float("-inf")
    return score / length**length_penalty


@dataclass
class BeamState:
    """The live beams of the sentences still searched, flattened as [sentence * beam]."""

    sentences: list[int]  # the input index of each live sentence
    sequences: Tensor  # [live * beam, steps] token ids so far
    scores: Tensor  # [live, beam] cumulative log-probabilities
    memory_kv: list[tuple[Tensor, Tensor]]
    memory_mask: Tensor
    caches: list[dict[str, Tensor]]

    def keep(self, rows: Tensor, sentences: list[int]) -> None:
        """Keep the beams at flat `rows` (reordered), for the sentences `sentences`."""
        self.sentences = sentences
        self.sequences = self.sequences.index_select(0, rows)
        for cache in self.caches:
            for key in cache:
                cache[key] = cache[key].index_select(0, rows)
        self.memory_kv = [(k.index_select(0, rows), v.index_select(0, rows))
                          for k, v in self.memory_kv]
        self.memory_mask = self.memory_mask.index_select(0, rows)


@torch.inference_mode()
def beam_search(model: Transformer, sources: list[list[int]], beam_size: int = 5,
                max_length: int = 256, length_penalty: float = 1.0, nbest: int = 1,
                device: torch.device | str = "cpu",
                scorer: StepScorer | None = None) -> list[list[Hypothesis]]:
    """Beam-search raw source ids (</s> appended here); the `nbest` best per sentence. A
    `scorer` (e.g. kNN-MT's) rescores each step's log-probabilities from the decoder states."""
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be between 1 and the beam size {beam_size}, got {nbest}")
    model.eval()
    state = start(model, sources, beam_size, device)
    searches = [SentenceSearch() for _ in sources]
    for step in range(max_length):
        logits, states = model.decode_with_states(
            state.sequences[:, -1:], state.memory_kv, state.memory_mask, caches=state.caches,
            offset=step, state=getattr(scorer, "state", None))
        log_probs = F.log_softmax(logits[:, -1].float(), dim=-1)
        if scorer is not None:
            log_probs = scorer(log_probs, states[:, -1])
        advance(state, log_probs, searches, beam_size, nbest, length_penalty,
                last_step=step + 1 == max_length)
        if not state.sentences:
            break
    return [search.best(nbest, length_penalty) for search in searches]


def beam_translate_ids(model: Transformer, sources: list[list[int]], batch_size: int = 32,
                       beam_size: int = 5, max_length: int = 256, length_penalty: float = 1.0,
                       nbest: int = 1, device: torch.device | str = "cpu",
                       progress: bool = True, max_len: tuple[float, int] = (0.0, 0),
                       scorer: StepScorer | None = None) -> list[list[Hypothesis]]:
    """Beam-search many sentences in length-sorted batches; results in input order. Each
    batch generates at most max_len[0]·|x| + max_len[1] tokens (its longest source)."""
    from tqdm import tqdm

    from nmtkd.decoding import bounded_chunks

    results: list[list[Hypothesis]] = [[] for _ in sources]
    with tqdm(total=len(sources), desc="beam search", unit=" sent", mininterval=2.0,
              disable=not progress) as bar:
        for chunk, bound in bounded_chunks([len(s) for s in sources], batch_size, max_length,
                                           *max_len):
            found = beam_search(model, [sources[i] for i in chunk], beam_size, bound,
                                length_penalty, nbest, device, scorer)
            for index, hypotheses in zip(chunk, found, strict=True):
                results[index] = hypotheses
            bar.update(len(chunk))
    return results


def start(model: Transformer, sources: list[list[int]], beam_size: int,
          device: torch.device | str) -> BeamState:
    source = pad([encode_source(s) for s in sources]).to(device)
    memory, mask = model.encode(source)
    rows = torch.arange(len(sources), device=source.device).repeat_interleave(beam_size)
    memory, mask = memory.index_select(0, rows), mask.index_select(0, rows)
    scores = torch.full((len(sources), beam_size), float("-inf"), device=source.device)
    scores[:, 0] = 0.0  # the first step expands only the first beam
    return BeamState(sentences=list(range(len(sources))),
                     sequences=torch.full((len(rows), 1), BOS_ID, dtype=torch.long,
                                          device=source.device),
                     scores=scores, memory_kv=model.memory_kv(memory), memory_mask=mask,
                     caches=[{} for _ in model.decoder_layers])


def advance(state: BeamState, log_probs: Tensor, searches: list[SentenceSearch],
            beam_size: int, nbest: int, length_penalty: float, last_step: bool) -> None:
    """One step: the 2·beam best continuations per sentence, finished ones set aside."""
    live, vocab = len(state.sentences), log_probs.size(-1)
    total = (log_probs.view(live, beam_size, vocab) + state.scores[..., None]).view(live, -1)
    top_scores, top_flat = total.topk(2 * beam_size, dim=-1)
    origins, words = (top_flat // vocab).tolist(), (top_flat % vocab).tolist()
    scores, sequences = top_scores.tolist(), state.sequences.tolist()
    rows, new_words, new_scores, still_live = [], [], [], []
    for i, sentence in enumerate(state.sentences):
        search, chosen, spare = searches[sentence], [], beam_size
        for k in range(beam_size):
            slot = k
            if words[i][k] == EOS_ID or last_step:
                search.top_finished |= k == 0
                tokens = sequences[i * beam_size + origins[i][k]][1:] + [words[i][k]]
                search.finished.append((scores[i][k], tokens[:-1] if tokens[-1] == EOS_ID
                                        else tokens, len(tokens)))
                slot = next((j for j in range(spare, 2 * beam_size) if words[i][j] != EOS_ID),
                            k)
                spare = slot + 1 if slot != k else spare
            chosen.append(slot)
        if last_step or search.done(beam_size, nbest, length_penalty):
            continue
        still_live.append(sentence)
        rows += [i * beam_size + origins[i][j] for j in chosen]
        new_words += [words[i][j] for j in chosen]
        new_scores.append([scores[i][j] for j in chosen])
    if not still_live:
        state.sentences = []
        return
    device = state.sequences.device
    state.keep(torch.tensor(rows, device=device), still_live)
    state.sequences = torch.cat([state.sequences,
                                 torch.tensor(new_words, device=device)[:, None]], dim=1)
    state.scores = torch.tensor(new_scores, device=device, dtype=torch.float32)
