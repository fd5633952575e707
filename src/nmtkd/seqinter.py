"""Seq-Inter target selection (Kim & Rush 2016): from a teacher's n-best list, keep per sentence
the candidate most similar to the reference; ties go to the better model score."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF

from nmtkd.errors import NmtkdError
from nmtkd.textio import atomic_writer, iter_lines, read_lines

METRICS = ("bleu", "chrf")


@dataclass(frozen=True)
class Candidate:
    rank: int
    score: float  # the model's score
    text: str


def read_nbest(path: Path) -> list[list[Candidate]]:
    """Read the `nmtkd translate --nbest-output` TSV: sentence id, rank, score, text."""
    sentences: list[list[Candidate]] = []
    for number, line in enumerate(iter_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) != 4:
            raise NmtkdError(f"{path}, line {number}: expected 4 tab-separated fields "
                             f"(id, rank, score, text), got {len(fields)}")
        try:
            sentence, rank, score = int(fields[0]), int(fields[1]), float(fields[2])
        except ValueError:
            raise NmtkdError(f"{path}, line {number}: id and rank must be integers and the "
                             "score a number") from None
        if sentence == len(sentences):
            sentences.append([])
        elif sentence != len(sentences) - 1:
            raise NmtkdError(f"{path}, line {number}: sentence id {sentence} out of order "
                             f"(expected {len(sentences) - 1} or {len(sentences)})")
        sentences[-1].append(Candidate(rank, score, fields[3]))
    return sentences


def similarity_function(metric: str):
    if metric == "bleu":
        scorer = BLEU(effective_order=True)  # smoothed (exp) sentence-BLEU
    elif metric == "chrf":
        scorer = CHRF()
    else:
        raise NmtkdError(f"similarity metric must be one of {', '.join(METRICS)}, got {metric!r}")

    def similarity(hypothesis: str, reference: str) -> float:
        return scorer.sentence_score(hypothesis, [reference]).score

    return similarity


def select_closest(candidates: list[Candidate], reference: str, similarity) -> Candidate:
    """The most similar candidate; among equally similar ones the best model score, then the
    best rank."""
    return max(candidates,
               key=lambda c: (similarity(c.text, reference), c.score, -c.rank))


def select_file(nbest_path: Path, reference_path: Path, output: Path, metric: str = "bleu"
                ) -> list[Candidate]:
    similarity = similarity_function(metric)
    nbest, references = read_nbest(nbest_path), read_lines(reference_path)
    if len(nbest) != len(references):
        raise NmtkdError(f"{nbest_path} has n-best lists for {len(nbest)} sentences, "
                         f"{reference_path} has {len(references)} lines")
    chosen = [select_closest(c, r, similarity) for c, r in zip(nbest, references, strict=True)]
    with atomic_writer(output) as handle:
        for candidate in chosen:
            handle.write(candidate.text + "\n")
    return chosen
