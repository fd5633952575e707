"""Streaming parallel-corpus cleaning with a count per drop reason."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from nmtkd.errors import NmtkdError
from nmtkd.textio import atomic_writer, count_lines, iter_raw_lines

REASONS = ("invalid_utf8", "empty", "too_long", "length_ratio", "src_equals_tgt", "duplicate")


@dataclass(frozen=True)
class CleaningRules:
    max_tokens: int = 100
    max_length_ratio: float = 3.0
    drop_src_equals_tgt: bool = False
    deduplicate: bool = True


def iter_pairs(src_path: Path, tgt_path: Path) -> Iterator[tuple[bytes, bytes]]:
    """Zip two files line by line; a line-count mismatch is an error naming both files."""
    sentinel = object()
    for src, tgt in itertools.zip_longest(
        iter_raw_lines(src_path), iter_raw_lines(tgt_path), fillvalue=sentinel
    ):
        if src is sentinel or tgt is sentinel:
            raise NmtkdError(
                f"line counts differ: {src_path} has {count_lines(src_path)} lines, "
                f"{tgt_path} has {count_lines(tgt_path)} lines"
            )
        yield src, tgt  # type: ignore[misc]


def check_parallel(src_path: Path, tgt_path: Path) -> int:
    """Check that two files exist, are non-empty and have equal line counts; return the count."""
    for path in (src_path, tgt_path):
        if not Path(path).is_file():
            raise NmtkdError(f"{path}: file not found")
    count = sum(1 for _ in iter_pairs(src_path, tgt_path))
    if count == 0:
        raise NmtkdError(f"{src_path}: file is empty")
    return count


def drop_reason(
    src: bytes, tgt: bytes, rules: CleaningRules, seen: set[int]
) -> tuple[str | None, str, str]:
    """The reason to drop a pair (None to keep it) and the decoded, whitespace-normalised sides."""
    try:
        src_text, tgt_text = src.decode("utf-8"), tgt.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8", "", ""
    src_text, tgt_text = " ".join(src_text.split()), " ".join(tgt_text.split())
    if not src_text or not tgt_text:
        return "empty", src_text, tgt_text
    src_len, tgt_len = len(src_text.split(" ")), len(tgt_text.split(" "))
    if max(src_len, tgt_len) > rules.max_tokens:
        return "too_long", src_text, tgt_text
    if max(src_len, tgt_len) / min(src_len, tgt_len) > rules.max_length_ratio:
        return "length_ratio", src_text, tgt_text
    if rules.drop_src_equals_tgt and src_text == tgt_text:
        return "src_equals_tgt", src_text, tgt_text
    if rules.deduplicate:
        # 8-byte digests keep the duplicate check's memory small: about 70 bytes per kept pair.
        key = int.from_bytes(
            hashlib.blake2b(src_text.encode() + b"\t" + tgt_text.encode(), digest_size=8).digest()
        )
        if key in seen:
            return "duplicate", src_text, tgt_text
        seen.add(key)
    return None, src_text, tgt_text


def clean_corpus(
    src_path: Path,
    tgt_path: Path,
    out_src: Path,
    out_tgt: Path,
    report_path: Path,
    rules: CleaningRules,
) -> dict:
    """Stream the pair of files, write the kept pairs and a JSON count per drop reason."""
    counts: Counter[str] = Counter({reason: 0 for reason in REASONS})
    seen: set[int] = set()
    total = kept = 0
    with atomic_writer(out_src) as src_out, atomic_writer(out_tgt) as tgt_out:
        for src, tgt in tqdm(iter_pairs(src_path, tgt_path), desc="clean", unit=" pairs",
                             mininterval=2.0):
            total += 1
            reason, src_text, tgt_text = drop_reason(src, tgt, rules, seen)
            if reason:
                counts[reason] += 1
                continue
            kept += 1
            src_out.write(src_text + "\n")
            tgt_out.write(tgt_text + "\n")
        if total == 0:
            raise NmtkdError(f"{src_path}: file is empty")
        if kept == 0:
            raise NmtkdError(f"{src_path}: cleaning dropped every line ({dict(counts)})")
        report = {"input": total, "kept": kept, "dropped": dict(counts),
                  "source": str(src_path), "target": str(tgt_path)}
        with atomic_writer(report_path) as handle:
            json.dump(report, handle, indent=2)
    return report
