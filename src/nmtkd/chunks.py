"""Scatter / gather of a corpus for parallel decoding jobs, keeping input order."""

from __future__ import annotations

from pathlib import Path

from nmtkd.errors import NmtkdError
from nmtkd.textio import atomic_paths, atomic_writer, count_lines, iter_lines


def split_file(source: Path, outputs: list[Path]) -> list[int]:
    """Split `source` into len(outputs) contiguous, near-equal chunks; return their sizes."""
    total = count_lines(source)
    if total == 0:
        raise NmtkdError(f"{source}: file is empty")
    if total < len(outputs):
        raise NmtkdError(f"{source}: {total} lines cannot fill {len(outputs)} chunks")
    sizes = [total // len(outputs) + (i < total % len(outputs)) for i in range(len(outputs))]
    lines = iter_lines(source)
    with atomic_paths(outputs) as temporaries:  # all chunks or none
        for output, size in zip(temporaries, sizes, strict=True):
            with output.open("w", encoding="utf-8") as handle:
                for _ in range(size):
                    handle.write(next(lines) + "\n")
    return sizes


def gather_files(texts: list[Path], output: Path, expected: Path | None = None) -> int:
    """Concatenate chunk outputs in order; the total must match `expected`'s line count."""
    count = 0
    with atomic_writer(output) as handle:
        for path in texts:
            for line in iter_lines(path):
                handle.write(line + "\n")
                count += 1
        if expected is not None and count != count_lines(expected):
            raise NmtkdError(f"gathered {count} lines from {len(texts)} chunks, but {expected} "
                             f"has {count_lines(expected)}")
    return count


def gather_nbest(tables: list[Path], output: Path, expected_sentences: int | None = None) -> int:
    """Concatenate n-best TSVs, renumbering sentence ids to run on across chunks."""
    offset = 0
    with atomic_writer(output) as handle:
        for path in tables:
            last = -1
            for number, line in enumerate(iter_lines(path), start=1):
                sentence, tab, rest = line.partition("\t")
                if not tab:
                    raise NmtkdError(f"{path}, line {number}: not an n-best line (sentence id, "
                                     "tab, rank, score, text)")
                if not sentence.isdigit():
                    raise NmtkdError(f"{path}, line {number}: bad sentence id {sentence!r}")
                last = int(sentence)
                handle.write(f"{offset + last}\t{rest}\n")
            offset += last + 1
        if expected_sentences is not None and offset != expected_sentences:
            raise NmtkdError(f"gathered n-best lists for {offset} sentences into {output}, "
                             f"expected {expected_sentences}")
    return offset
