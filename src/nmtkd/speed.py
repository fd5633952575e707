"""Decoding speed of a CTranslate2 model on CPU: target tokens and sentences per second on a
test set, with a fixed number of threads, so every model is measured the same way."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from nmtkd.errors import NmtkdError
from nmtkd.textio import atomic_writer, read_lines
from nmtkd.translate import DecodeOptions, load_translator, translate_lines


def measure_speed(model_dir: Path, input_path: Path, output: Path, options: DecodeOptions,
                  repeats: int = 1) -> dict[str, Any]:
    """Translate the whole input `repeats` times after a warm-up batch; keep the fastest run."""
    options = replace(options, nbest=1)  # speed of the 1-best search
    lines = read_lines(input_path)
    if not lines:
        raise NmtkdError(f"{input_path}: file is empty")
    translator, tokenizer = load_translator(model_dir, options)
    translate_lines(translator, tokenizer, lines[: options.batch_size], options, progress=False)
    best = None
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        hyps = translate_lines(translator, tokenizer, lines, options, progress=False)
        seconds = time.perf_counter() - started
        best = seconds if best is None else min(best, seconds)
    outputs = [texts[0] for texts in hyps.texts]
    tokens = sum(len(p) + 1 for p in tokenizer.encode_pieces(outputs))  # pieces + </s>
    size = sum(f.stat().st_size for f in Path(model_dir).iterdir() if f.is_file())
    result = {"model": str(model_dir), "input": str(input_path), "sentences": len(lines),
              "target_tokens": tokens, "seconds": best,
              "tokens_per_second": tokens / best, "sentences_per_second": len(lines) / best,
              "model_bytes": size, "repeats": repeats, "options": asdict(options)}
    with atomic_writer(output) as handle:
        json.dump(result, handle, indent=2)
    return result
