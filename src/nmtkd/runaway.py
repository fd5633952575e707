"""Runaway outputs: hypotheses far longer than their source, or stuck repeating themselves.

An output runs away when it has more than 2·|x| + 10 words (|x|: the source's words, counted
as in cleaning, so unspaced scripts count 2 characters a word) or repeats one word 4-gram at
least 3 times. One such sentence costs BLEU and TER, and holds its whole batch in decoding."""

from __future__ import annotations

from collections import Counter

from nmtkd.cleaning import sentence_length

LENGTH_FACTOR, LENGTH_SLACK = 2, 10
NGRAM, REPEATS = 4, 3


def repeats_an_ngram(text: str, order: int = NGRAM, times: int = REPEATS) -> bool:
    words = text.split()
    grams = Counter(tuple(words[i:i + order]) for i in range(len(words) - order + 1))
    return any(count >= times for count in grams.values())


def runs_away(hypothesis: str, source: str) -> bool:
    too_long = sentence_length(hypothesis) > LENGTH_FACTOR * sentence_length(source) + (
        LENGTH_SLACK)
    return too_long or repeats_an_ngram(hypothesis)


def runaway_share(hypotheses: list[str], sources: list[str]) -> float:
    """The percentage of hypotheses that run away."""
    if not hypotheses:
        return 0.0
    count = sum(runs_away(h, s) for h, s in zip(hypotheses, sources, strict=True))
    return 100.0 * count / len(hypotheses)
