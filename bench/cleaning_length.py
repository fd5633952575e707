"""Cost of measuring length for every script: `sentence_length` against the plain whitespace
count it replaced, on the real Multi30k En-De training text (German has non-ASCII tokens, so
it takes the slower path), both timed in this one run after the same warm-up.

    python bench/cleaning_length.py [--mirror ../shared/data/multi30k] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import nmtkd.cleaning
from nmtkd.cleaning import CleaningRules, clean_corpus, sentence_length
from nmtkd.textio import iter_lines


def whitespace_length(text: str) -> int:
    return len(text.split(" "))


def seconds(length: Callable[[str], int], lines: list[str]) -> float:
    start = time.perf_counter()
    for line in lines:
        length(line)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mirror", default="../shared/data/multi30k")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    lines = [" ".join(line.split()) for side in ("en", "de")
             for line in iter_lines(Path(args.mirror) / f"train.{side}.gz")]
    non_ascii = sum(not line.isascii() for line in lines)
    for length in (whitespace_length, sentence_length):  # warm-up
        seconds(length, lines)
    times: dict[str, list[float]] = {"whitespace": [], "every script": []}
    for _ in range(args.rounds):  # interleaved, so that both see the same machine state
        times["whitespace"].append(seconds(whitespace_length, lines))
        times["every script"].append(seconds(sentence_length, lines))
    print(f"{len(lines)} lines ({non_ascii} with non-ASCII characters), median of "
          f"{args.rounds} interleaved rounds")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:>12}: {1e6 * median / len(lines):.3f} µs/line")
    ratio = statistics.median(times["every script"]) / statistics.median(times["whitespace"])
    print(f"  every-script length costs {ratio:.2f}× the whitespace count")
    whole_corpus(Path(args.mirror), args.rounds)


def clean_seconds(mirror: Path, folder: Path) -> tuple[float, int]:
    start = time.perf_counter()
    report = clean_corpus(mirror / "train.en.gz", mirror / "train.de.gz", folder / "o.en",
                          folder / "o.de", folder / "r.json", CleaningRules())
    return time.perf_counter() - start, report["input"]


def whole_corpus(mirror: Path, rounds: int) -> None:
    """`nmtkd clean` over the whole training corpus, with each length measure."""
    import tempfile

    measures = {"whitespace": whitespace_length, "every script": sentence_length}
    times: dict[str, list[float]] = {name: [] for name in measures}
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(rounds + 1):  # round 0 is the warm-up
            for name, length in measures.items():
                nmtkd.cleaning.sentence_length = length
                elapsed, pairs = clean_seconds(mirror, Path(folder))
                if round_number:
                    times[name].append(elapsed)
    nmtkd.cleaning.sentence_length = sentence_length
    print(f"nmtkd clean over {pairs} pairs (gzip input), median of {rounds} rounds")
    for name, values in times.items():
        print(f"  {name:>12}: {pairs / statistics.median(values) / 1000:.0f} k pairs/s")
    ratio = statistics.median(times["whitespace"]) / statistics.median(times["every script"])
    print(f"  throughput with every-script length: {ratio:.2f}× the whitespace version's")


if __name__ == "__main__":
    main()
