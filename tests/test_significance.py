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


def test_two_different_outputs_that_both_score_zero_are_not_significantly_different():
    refs = ["a b c d e", "f g h i j", "a c e g i"]
    # no character of either output occurs in the references: BLEU and chrF are 0 on both
    # sides, so the difference is 0 in every resample (sacreBLEU alone would say 1/1001)
    system, baseline = ["x y z", "z y x", "x x"], ["q r s", "s r q", "q q"]
    result = significance([system], [baseline], refs, bootstrap_samples=1000, ar_trials=1000)
    for metric in ("bleu", "chrf"):
        assert result[metric]["system"] == result[metric]["baseline"] == 0.0
        assert result[metric]["p_bootstrap"] == 1.0 and result[metric]["p_ar"] == 1.0


@pytest.mark.parametrize(("files", "message"), [
    ({"sys": [], "base": [], "ref": []}, "sys: empty file"),
    ({"sys": ["a"] * 3, "base": ["b"] * 3, "ref": ["", " ", ""]},
     "ref: every reference line is blank"),
    ({"sys": ["a"], "base": ["b"], "ref": ["a"]}, "ref: one sentence"),
])
def test_inputs_that_make_a_p_value_meaningless_are_refused(tmp_path, files, message):
    from nmtkd.evaluate import Scoring
    from nmtkd.significance import significance_files

    for name, lines in files.items():
        (tmp_path / name).write_text("".join(line + "\n" for line in lines))
    with pytest.raises(NmtkdError, match=message):
        significance_files([tmp_path / "sys"], [tmp_path / "base"], tmp_path / "ref",
                           tmp_path / "out.json", {}, 100, 100, Scoring())
    assert not (tmp_path / "out.json").exists()
