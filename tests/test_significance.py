"""Paired significance on constructed outputs whose answer is known."""

import random

import pytest

from nmtkd.errors import NmtkdError
from nmtkd.significance import pooled, significance


def references(count=200, seed=0):
    rng = random.Random(seed)
    words = ["a", "man", "woman", "dog", "runs", "sits", "on", "the", "street", "park", "red",
             "blue"]
    return [" ".join(rng.choice(words) for _ in range(10)) for _ in range(count)]


def test_identical_systems_are_not_significantly_different():
    refs = references()
    hyps = [" ".join(r.split()[:7]) for r in refs]  # not perfect, but the same on both sides
    result = significance([hyps], [hyps], refs, bootstrap_samples=200, ar_trials=200)
    for metric in ("bleu", "chrf"):
        assert result[metric]["delta"] == 0.0
        assert result[metric]["p_bootstrap"] == 1.0 and result[metric]["p_ar"] == 1.0


def test_a_system_better_on_every_sentence_is_significant():
    refs = references()
    better = [" ".join(r.split()[:9]) for r in refs]  # one word short of the reference
    worse = [" ".join(r.split()[:5]) for r in refs]  # five words short, on every sentence
    result = significance([better], [worse], refs, bootstrap_samples=1000, ar_trials=1000)
    for metric in ("bleu", "chrf"):
        assert result[metric]["delta"] > 0
        # no resample can reverse a difference that holds on every sentence: the smallest
        # p-value 1000 samples can give is 1/1001
        assert result[metric]["p_bootstrap"] < 0.01 and result[metric]["p_ar"] < 0.01


def test_a_difference_on_few_sentences_is_not_significant():
    refs = references()
    base = [" ".join(r.split()[:8]) for r in refs]
    system = list(base)
    system[0] = refs[0]  # better on one sentence of 200
    result = significance([system], [base], refs, bootstrap_samples=1000, ar_trials=1000)
    assert result["bleu"]["delta"] > 0 and result["bleu"]["p_bootstrap"] > 0.05
    assert result["bleu"]["p_ar"] > 0.05


def test_seeds_are_pooled_by_the_stated_protocol():
    refs = ["r1", "r2"]
    system, baseline, pooled_refs = pooled([["a", "b"], ["c", "d"], ["e", "f"]],
                                           [["x", "y"], ["z", "w"]], refs)
    assert system == ["a", "b", "c", "d", "e", "f"]
    assert baseline == ["x", "y", "z", "w", "x", "y"]  # run i with run i mod 2
    assert pooled_refs == ["r1", "r2"] * 3
    with pytest.raises(NmtkdError, match="a run has 1 lines, the references 2"):
        pooled([["a"]], [["x", "y"]], refs)
