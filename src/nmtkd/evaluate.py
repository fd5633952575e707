"""Scoring with sacreBLEU: BLEU, chrF (or chrF++) and TER with their signatures.

BLEU's tokenizer matters for languages written without spaces: 13a leaves a Chinese or
Japanese sentence as one token, so BLEU measures almost nothing there. The default tokenizer
is chosen by the target language (`default_tokenize`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sacrebleu.metrics import BLEU, CHRF, TER

from nmtkd.errors import NmtkdError
from nmtkd.textio import atomic_writer, read_lines

TOKENIZERS = ("13a", "intl", "zh", "ja-mecab", "char", "flores200", "none")
LANGUAGE_TOKENIZERS = {"zh": "zh", "ja": "ja-mecab"}


def default_tokenize(target_language: str) -> str:
    """sacreBLEU's tokenizer for a target language: zh for Chinese, ja-mecab for Japanese,
    13a (WMT's standard) otherwise."""
    return LANGUAGE_TOKENIZERS.get(target_language, "13a")


@dataclass(frozen=True)
class Scoring:
    """How BLEU tokenizes and which chrF (chrF++ with word order 2) a score uses: the same for
    the evaluations and the significance tests."""

    tokenize: str = "13a"
    chrf_word_order: int = 0

    def __post_init__(self) -> None:
        if self.tokenize not in TOKENIZERS:
            raise NmtkdError(f"unknown BLEU tokenizer {self.tokenize!r} (known: "
                             f"{', '.join(TOKENIZERS)})")

    def metrics(self) -> dict[str, Any]:
        return {"bleu": BLEU(tokenize=self.tokenize),
                "chrf": CHRF(word_order=self.chrf_word_order)}


def score(hypotheses: list[str], references: list[str], tokenize: str = "13a",
          chrf_word_order: int = 0) -> dict[str, Any]:
    """BLEU with `tokenize`, chrF (chrF++ with word order 2) and TER, with signatures."""
    if len(hypotheses) != len(references):
        raise NmtkdError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    results: dict[str, Any] = {"sentences": len(hypotheses)}
    metrics = {**Scoring(tokenize, chrf_word_order).metrics(), "ter": TER()}
    for name, metric in metrics.items():
        result = metric.corpus_score(hypotheses, [references])
        results[name] = round(result.score, 2)
        results[f"{name}_signature"] = str(metric.get_signature())
    return results


def check_not_empty(path: Path, lines: list[str]) -> None:
    if not lines:
        raise NmtkdError(f"{path}: empty file (no lines to score)")


def check_references(path: Path, lines: list[str]) -> None:
    """A score against blank references measures nothing (BLEU and chrF are 0 for any output)."""
    if not any(line.strip() for line in lines):
        raise NmtkdError(f"{path}: every reference line is blank; a score against no reference "
                         "is not a result")


def evaluate_files(hyp_path: Path, ref_path: Path, output: Path,
                   metadata: dict[str, Any] | None = None, tokenize: str = "13a",
                   chrf_word_order: int = 0, src_path: Path | None = None) -> dict[str, Any]:
    """Scores of a hypothesis file; with the source, also the share of runaway outputs."""
    from nmtkd.runaway import runaway_share

    hyps, refs = read_lines(hyp_path), read_lines(ref_path)
    sources = read_lines(src_path) if src_path else None
    check_not_empty(hyp_path, hyps)
    for path, lines in ((ref_path, refs), (src_path, sources)):
        if lines is not None and len(lines) != len(hyps):
            raise NmtkdError(f"line counts differ: {hyp_path} has {len(hyps)} lines, {path} "
                             f"has {len(lines)} lines")
    check_references(ref_path, refs)
    extra = {"runaway": runaway_share(hyps, sources)} if sources is not None else {}
    results = {**(metadata or {}), **score(hyps, refs, tokenize, chrf_word_order), **extra,
               "hypotheses": str(hyp_path),
               "references": str(ref_path)}
    with atomic_writer(output) as handle:
        json.dump(results, handle, indent=2)
    return results
