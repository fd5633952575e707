"""Decoding speed of CTranslate2 models on CPU, measured so that it reflects the model and not
the machine's noise: the models of one architecture and quantization are measured in one job,
on the same fixed subset of a test set, each first warmed up by one untimed pass, then timed
in interleaved rounds (each round times every model once, starting at a different model), and
each reports the median of its rounds and the spread (slowest ÷ fastest round).

Each model is timed twice per round: decoding freely (its own output lengths: what a user gets)
and at fixed lengths, where every hypothesis runs exactly to its batch's length bound. At fixed
lengths models of one architecture do the same work whatever they learnt, so their difference
is the machine's noise alone; the speed-ups are taken from it."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from nmtkd.errors import NmtkdError
from nmtkd.textio import atomic_writer, read_lines
from nmtkd.translate import DecodeOptions, load_translator, translate_lines


def protocol_text(repeats: int, sentences: int) -> str:
    return (f"one untimed warm-up pass, then the median of {repeats} interleaved timed "
            f"run(s) on the first {sentences} sentences, free and at fixed lengths")


Job = tuple[Any, Any, DecodeOptions]  # translator, tokenizer, decoding options


def timed_calls(calls: dict[Hashable, Callable[[], object]],
                repeats: int) -> dict[Hashable, list[float]]:
    """Seconds per round for each call; round r starts at the r-th call, so no call is always
    first (or last) after a pause."""
    names = list(calls)
    seconds: dict[Hashable, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            started = time.perf_counter()
            calls[name]()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def timed_rounds(jobs: dict[Hashable, Job], lines: list[str],
                 repeats: int) -> dict[Hashable, list[float]]:
    """`timed_calls` of CTranslate2 jobs, each translating `lines`."""
    def call(job: Job) -> Callable[[], object]:
        translator, tokenizer, options = job
        return lambda: translate_lines(translator, tokenizer, lines, options, progress=False)

    return timed_calls({name: call(job) for name, job in jobs.items()}, repeats)


def fixed_length_tokens(source_lengths: list[int], options: DecodeOptions) -> int:
    """Target tokens generated at fixed lengths: each sentence its batch's bound (no </s>)."""
    from nmtkd.decoding import bounded_chunks

    return sum(len(chunk) * bound for chunk, bound in bounded_chunks(
        source_lengths, options.batch_size, options.max_length, options.max_len_a,
        options.max_len_b))


def measure_speeds(models: dict[str, tuple[Path, str]], input_path: Path, output: Path,
                   options: DecodeOptions, repeats: int = 3,
                   sentences: int = 500) -> dict[str, Any]:
    """Measure every model of `models` (name -> (CT2 directory, compute type)) as described
    above; write and return {"protocol", "options", "models": {name: result}}, each result
    the free decoding's with the fixed-length one under "fixed"."""
    if repeats < 1 or sentences < 1:
        raise NmtkdError("repeats and sentences must be at least 1")
    options = replace(options, nbest=1, fixed_length=False)  # speed of the 1-best search
    fixed = replace(options, fixed_length=True)
    lines = read_lines(input_path)[:sentences]
    if not lines:
        raise NmtkdError(f"{input_path}: file is empty")
    jobs = {name: load_translator(directory, replace(options, compute_type=compute_type))
            for name, (directory, compute_type) in models.items()}
    tokens = {}
    for name, (translator, tokenizer) in jobs.items():  # warm-up; fixes the token counts
        hyps = translate_lines(translator, tokenizer, lines, options, progress=False)
        outputs = [texts[0] for texts in hyps.texts]
        tokens[name] = sum(len(p) + 1 for p in tokenizer.encode_pieces(outputs))  # + </s>
        lengths = [len(p) for p in tokenizer.encode_pieces(lines)]
        tokens[name, "fixed"] = fixed_length_tokens(lengths, fixed)
    runs = {(name, mode): (translator, tokenizer, mode_options)
            for name, (translator, tokenizer) in jobs.items()
            for mode, mode_options in (("free", options), ("fixed", fixed))}
    seconds = timed_rounds(runs, lines, repeats)
    results = {}
    for name in models:
        results[name] = speed_record(tokens[name], len(lines), seconds[name, "free"],
                                     models[name])
        results[name]["fixed"] = timing(tokens[name, "fixed"], len(lines),
                                        seconds[name, "fixed"])
    report = {"input": str(input_path), "sentences": len(lines), "repeats": repeats,
              "protocol": protocol_text(repeats, len(lines)), "options": asdict(options),
              "models": results}
    with atomic_writer(output) as handle:
        json.dump(report, handle, indent=2)
    return report


def timing(tokens: int, sentences: int, seconds: list[float]) -> dict[str, Any]:
    median = statistics.median(seconds)
    return {"target_tokens": tokens, "seconds": seconds, "median_seconds": median,
            "tokens_per_second": tokens / median, "sentences_per_second": sentences / median,
            "spread": max(seconds) / min(seconds)}


def speed_record(tokens: int, sentences: int, seconds: list[float],
                 model: tuple[Path, str]) -> dict[str, Any]:
    directory, compute_type = model
    size = sum(f.stat().st_size for f in Path(directory).iterdir() if f.is_file())
    return {"model": str(directory), "compute_type": compute_type,
            **timing(tokens, sentences, seconds), "model_bytes": size}
