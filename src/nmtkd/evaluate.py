"""Scoring with sacreBLEU: BLEU, chrF and TER with their signatures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sacrebleu.metrics import BLEU, CHRF, TER

from nmtkd.errors import NmtkdError
from nmtkd.textio import atomic_writer, read_lines


def score(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    if len(hypotheses) != len(references):
        raise NmtkdError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    results: dict[str, Any] = {"sentences": len(hypotheses)}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF()), ("ter", TER())):
        result = metric.corpus_score(hypotheses, [references])
        results[name] = round(result.score, 2)
        results[f"{name}_signature"] = str(metric.get_signature())
    return results


def evaluate_files(hyp_path: Path, ref_path: Path, output: Path,
                   metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    hyps, refs = read_lines(hyp_path), read_lines(ref_path)
    if len(hyps) != len(refs):
        raise NmtkdError(f"line counts differ: {hyp_path} has {len(hyps)} lines, {ref_path} has "
                         f"{len(refs)} lines")
    results = {**(metadata or {}), **score(hyps, refs), "hypotheses": str(hyp_path),
               "references": str(ref_path)}
    with atomic_writer(output) as handle:
        json.dump(results, handle, indent=2)
    return results
