"""Paired significance of a student against the baseline on one test set, with sacreBLEU's
paired bootstrap resampling (Koehn 2004) and paired approximate randomisation.

Several seeds, the stated protocol: run i of the student is paired with run i of the baseline
(cycling through the baseline's runs when it has fewer), and the pairs are concatenated into
one paired sample of (runs × sentences) segments against the references repeated as often.
The test then resamples segments of that pooled sample, so a difference must hold across the
seeds' outputs, not in one lucky run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sacrebleu.significance import PairedTest

from nmtkd.errors import NmtkdError
from nmtkd.evaluate import Scoring, check_not_empty, check_references
from nmtkd.textio import atomic_writer, read_lines

PROTOCOL = ("run i of the system paired with run i mod B of the baseline's B runs; pairs "
            "concatenated into one sample; sacreBLEU paired tests over its segments")


def pooled(system_runs: list[list[str]], baseline_runs: list[list[str]],
           references: list[str]) -> tuple[list[str], list[str], list[str]]:
    """The pooled paired sample: (system segments, baseline segments, references)."""
    for run in [*system_runs, *baseline_runs]:
        if len(run) != len(references):
            raise NmtkdError(f"a run has {len(run)} lines, the references {len(references)}")
    system, baseline, refs = [], [], []
    for index, run in enumerate(system_runs):
        system += run
        baseline += baseline_runs[index % len(baseline_runs)]
        refs += references
    return system, baseline, refs


def bootstrap_test(system: list[str], baseline: list[str], references: list[str],
                   samples: int, scoring: Scoring) -> dict[str, dict[str, Any]]:
    """Per metric: the p-value of sacreBLEU's paired bootstrap resampling (its RNG seed is
    fixed: SACREBLEU_SEED, default 12345) with the test's signature.

    Equal scores (identical outputs, or two outputs that both score 0) get p = 1: a zero
    difference is reached by every resample. (sacreBLEU follows MultEval there and counts only
    larger differences, so where every resample differs by 0 as well it reports 1/(samples+1),
    which in a table would mark a system as significantly different from itself.)"""
    test = PairedTest([("baseline", baseline), ("system", system)], scoring.metrics(),
                      [references], test_type="bs", n_samples=samples)
    signatures, scores = test()
    names = {"bleu": "BLEU", "chrf": "chrF2++" if scoring.chrf_word_order else "chrF2"}
    results = {}
    for key, name in names.items():
        theirs, ours = scores[name]
        results[key] = {"p_value": 1.0 if ours.score == theirs.score else ours.p_value,
                        "signature": str(signatures[name])}
    return results


def randomisation_test(system: list[str], baseline: list[str], references: list[str],
                       trials: int, scoring: Scoring, seed: int = 12345) -> dict[str, Any]:
    """Per metric: the p-value of paired approximate randomisation (Riezler & Maxwell 2005):
    each trial swaps each segment pair with probability 1/2; p = (#trials whose absolute
    difference reaches the observed one + 1) / (trials + 1). Computed on sacreBLEU's
    sufficient statistics. Unlike sacreBLEU's own AR (which counts only strictly larger
    differences), ties count, as the definition says: swapping segments that are equal, or
    one lone differing pair, cannot make a difference significant."""
    rng = np.random.default_rng(seed)
    results = {}
    for key, metric in scoring.metrics().items():
        ours = np.array(metric._extract_corpus_statistics(system, [references]), dtype=float)
        theirs = np.array(metric._extract_corpus_statistics(baseline, [references]),
                          dtype=float)

        def score(stats: np.ndarray, metric=metric) -> float:
            return metric._compute_score_from_stats(list(stats)).score

        observed = abs(score(ours.sum(0)) - score(theirs.sum(0)))
        swap = rng.random((trials, len(system))) < 0.5
        totals = ours.sum(0)
        delta = theirs - ours  # what a swap moves from one side to the other
        side_a = totals + swap.astype(float) @ delta
        side_b = totals + theirs.sum(0) - ours.sum(0) - swap.astype(float) @ delta
        differences = np.array([abs(score(a) - score(b)) for a, b in zip(side_a, side_b,
                                                                         strict=True)])
        reached = int((differences >= observed - 1e-9).sum())
        results[key] = {"p_value": (reached + 1) / (trials + 1),
                        "signature": f"ar:{trials}|seed:{seed}|ties:count|{metric.get_signature()}"}
    return results


def significance(system_runs: list[list[str]], baseline_runs: list[list[str]],
                 references: list[str], bootstrap_samples: int = 1000, ar_trials: int = 1000,
                 scoring: Scoring | None = None) -> dict[str, Any]:
    scoring = scoring or Scoring()
    system, baseline, refs = pooled(system_runs, baseline_runs, references)
    result: dict[str, Any] = {"runs": len(system_runs), "baseline_runs": len(baseline_runs),
                              "sentences": len(references), "protocol": PROTOCOL}
    for key, metric in scoring.metrics().items():
        ours = metric.corpus_score(system, [refs]).score
        theirs = metric.corpus_score(baseline, [refs]).score
        result[key] = {"system": ours, "baseline": theirs, "delta": ours - theirs}
    tests = {"bootstrap": (bootstrap_test, bootstrap_samples),
             "ar": (randomisation_test, ar_trials)}
    for label, (test, samples) in tests.items():
        if samples > 0:
            for key, values in test(system, baseline, refs, samples, scoring).items():
                result[key][f"p_{label}"] = values["p_value"]
                result[key][f"signature_{label}"] = values["signature"]
    return result


def check_inputs(outputs: dict[Path, list[str]], references: Path, refs: list[str]) -> None:
    """Refuse what makes a p-value meaningless: an empty file, blank references, a single
    sentence (every bootstrap resample is that sentence, so any difference looks certain)."""
    for path, lines in [*outputs.items(), (references, refs)]:
        check_not_empty(path, lines)
    for path, lines in outputs.items():
        if len(lines) != len(refs):
            raise NmtkdError(f"line counts differ: {path} has {len(lines)} lines, {references} "
                             f"has {len(refs)}")
    check_references(references, refs)
    if len(refs) < 2:
        raise NmtkdError(f"{references}: one sentence; a paired significance test needs at "
                         "least 2")


def significance_files(system: list[Path], baseline: list[Path], references: Path,
                       output: Path, metadata: dict[str, Any], bootstrap_samples: int,
                       ar_trials: int, scoring: Scoring) -> dict[str, Any]:
    refs = read_lines(references)
    runs = [read_lines(path) for path in system]
    baseline_runs = [read_lines(path) for path in baseline]
    check_inputs(dict(zip([*system, *baseline], [*runs, *baseline_runs], strict=True)),
                 references, refs)
    result = {**metadata, **significance(runs, baseline_runs, refs, bootstrap_samples,
                                         ar_trials, scoring)}
    with atomic_writer(output) as handle:
        json.dump(result, handle, indent=2)
    return result
