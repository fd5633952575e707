"""kNN-MT's decoding speed against the same model without retrieval: both run the project's
torch beam search on the same sentences, each warmed up by one untimed pass, then timed in
interleaved rounds (the protocol of `nmtkd.speed`); tokens/s counts each one's own output
pieces (+ </s>), and the ratio is the price of a search per step and per beam."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from nmtkd.errors import NmtkdError
from nmtkd.speed import protocol_text, timed_calls, timing
from nmtkd.spm import Tokenizer
from nmtkd.textio import atomic_writer, read_lines
from nmtkd.translate import DecodeOptions, KnnFiles, torch_translator


def output_tokens(tokenizer: Tokenizer, texts: list[list[str]]) -> int:
    return sum(len(pieces) + 1 for pieces in tokenizer.encode_pieces([t[0] for t in texts]))


def measure_knn_speed(checkpoint: Path, spm: Path, knn: KnnFiles, input_path: Path,
                      output: Path, options: DecodeOptions, repeats: int = 3,
                      sentences: int = 500) -> dict[str, Any]:
    """Time `checkpoint` with and without kNN-MT; write and return both and their ratio."""
    if repeats < 1 or sentences < 1:
        raise NmtkdError("repeats and sentences must be at least 1")
    options = replace(options, nbest=1, fixed_length=False)
    lines = read_lines(input_path)[:sentences]
    if not lines:
        raise NmtkdError(f"{input_path}: file is empty")
    translators = {"base": torch_translator(checkpoint, spm, options),
                   "knn": torch_translator(checkpoint, spm, options, knn)}
    tokenizer = Tokenizer(spm)
    tokens = {name: output_tokens(tokenizer, translate(lines, options).texts)  # warm-up
              for name, translate in translators.items()}
    seconds = timed_calls({name: (lambda t=translate: t(lines, options))
                           for name, translate in translators.items()}, repeats)
    results = {name: timing(tokens[name], len(lines), seconds[name]) for name in translators}
    report = {"input": str(input_path), "sentences": len(lines), "repeats": repeats,
              "protocol": protocol_text(repeats, len(lines)).replace(
                  ", free and at fixed lengths", ", torch beam search"),
              "options": asdict(options), "knn": {"k": knn.k, "lambda": knn.lam,
                                                  "temperature": knn.temperature},
              "models": results,
              "ratio": results["knn"]["tokens_per_second"]
              / results["base"]["tokens_per_second"]}
    with atomic_writer(output) as handle:
        json.dump(report, handle, indent=2)
    return report
