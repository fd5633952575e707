"""Streaming parallel-corpus cleaning with a count per drop reason."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nmtkd.errors import NmtkdError
from nmtkd.safepaths import require_file
from nmtkd.textio import (
    atomic_writer,
    count_lines,
    iter_raw_lines,
    looks_cr_only,
    starts_with_bom,
)

REASONS = ("invalid_utf8", "control_character", "empty", "too_long", "length_ratio",
           "src_equals_tgt", "duplicate")
# Control characters that whitespace normalisation keeps (NUL, BEL, ESC, DEL ...): binary
# garbage in a text corpus, which SentencePiece would otherwise learn as pieces.
CONTROL_CHARACTER = re.compile(rb"[\x00-\x08\x0e-\x1b\x7f]")

# Words in segmented Chinese and Japanese corpora average roughly 1.5-2 characters, so a run of
# text in a script written without spaces is counted as one word per 2 of its characters.
CHARACTERS_PER_WORD = 2

# Han ideographs: Extension A, the unified block, compatibility ideographs, and planes 2-3
# (Extensions B-I and the compatibility supplement). Every character in them is a letter.
HAN_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF))
# Blocks of other scripts written without spaces; only their letters and digits count, not
# their punctuation, symbols or combining marks.
UNSPACED_SCRIPT_BLOCKS = (
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3000, 0x303F),  # CJK Symbols and Punctuation: 々 〆 〇 count; 。、「」 do not
    (0x3040, 0x309F),  # Hiragana
    (0x30A0, 0x30FF),  # Katakana
    (0x31F0, 0x31FF),  # Katakana Phonetic Extensions
    (0xA9E0, 0xA9FF),  # Myanmar Extended-B
    (0xAA60, 0xAA7F),  # Myanmar Extended-A
    (0xFF65, 0xFF9F),  # Halfwidth Katakana
    (0x1AFF0, 0x1B16F),  # Kana Extended-B, Kana Supplement, Kana Extended-A, Small Kana
)


def unspaced_letter_pattern() -> re.Pattern[str]:
    """A regex matching one letter or digit of a script written without spaces."""
    ranges = list(HAN_RANGES)
    for first, last in UNSPACED_SCRIPT_BLOCKS:
        for code in range(first, last + 1):
            if not chr(code).isalnum():
                continue
            if ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in ranges) + "]")


UNSPACED_LETTER = unspaced_letter_pattern()
FIRST_UNSPACED = min(first for first, _ in (*HAN_RANGES, *UNSPACED_SCRIPT_BLOCKS))
# a cheap test that rules most non-ASCII text out before the long character class runs
BEYOND_FIRST_UNSPACED = re.compile(f"[{chr(FIRST_UNSPACED)}-{chr(0x10FFFF)}]")
LETTER_OR_DIGIT = re.compile(r"[^\W_]")


def token_length(token: str) -> int:
    """Words in one whitespace token: 1, unless it holds letters of a script written without
    spaces; then ceil(those letters / CHARACTERS_PER_WORD), plus 1 if it also holds any other
    letter or digit (as in "iPhone15を")."""
    rest = UNSPACED_LETTER.sub("", token)
    unspaced = len(token) - len(rest)
    if not unspaced:
        return 1
    return math.ceil(unspaced / CHARACTERS_PER_WORD) + (1 if LETTER_OR_DIGIT.search(rest) else 0)


def sentence_length(text: str) -> int:
    """A sentence's length in words, for every script: the sum of `token_length` over its
    whitespace tokens. Text without letters of an unspaced script (English, German, Korean,
    Russian ...) gets exactly its number of whitespace tokens."""
    tokens = text.split()
    # every unspaced script lies at or above U+0E00 (Thai), so Latin, Greek, Cyrillic, Arabic,
    # Hebrew and Devanagari text skips the long pattern (0.95x the whitespace count's
    # throughput on Multi30k, bench/cleaning_length.py)
    if text.isascii() or not BEYOND_FIRST_UNSPACED.search(text) \
            or not UNSPACED_LETTER.search(text):
        return len(tokens)
    return sum(token_length(token) for token in tokens)


@dataclass(frozen=True)
class CleaningRules:
    """What `clean_corpus` drops. Lengths are words per side as `sentence_length` counts them:
    whitespace tokens, except that text in scripts written without spaces (Chinese, Japanese,
    Thai, Lao, Khmer, Myanmar, Tibetan) counts one word per CHARACTERS_PER_WORD letters.

    max_tokens: the most words either side may have.
    max_length_ratio: the most the longer side's words may be, as a multiple of the shorter's.
    """

    max_tokens: int = 100
    max_length_ratio: float = 3.0
    drop_src_equals_tgt: bool = False
    deduplicate: bool = True


CR_ONLY_ADVICE = (
    "the line endings look like CR only (classic Mac); convert them to LF, e.g. tr '\\r' '\\n'"
)


def cr_only_hint(*paths: Path, labels: tuple[str, ...] | None = None) -> str:
    """'; NAME: advice' for the first of `paths` whose line endings look like lone CRs, or ''
    (NAME: its label if given, else the path)."""
    for path, label in zip(paths, labels or paths, strict=True):
        if looks_cr_only(path):
            return f"; {label}: {CR_ONLY_ADVICE}"
    return ""


def reject_merged_cr_lines(path: Path, first_line: bytes, label: str | Path) -> None:
    """Lines are split at LF only, so a file with CR-only line endings reads as one line
    holding all of them: stop rather than clean it as a single sentence."""
    if b"\r" in first_line and looks_cr_only(path):
        raise NmtkdError(f"{label}: {CR_ONLY_ADVICE}")


def iter_pairs(src_path: Path, tgt_path: Path,
               labels: tuple[str, str] | None = None) -> Iterator[tuple[bytes, bytes]]:
    """Zip two files line by line; a line-count mismatch is an error naming both files, and
    so is a file with CR-only line endings. `labels` name the files in errors (e.g. the
    location a temporary copy was fetched from)."""
    src_name, tgt_name = labels or (src_path, tgt_path)
    sentinel = object()
    pairs = itertools.zip_longest(
        iter_raw_lines(src_path), iter_raw_lines(tgt_path), fillvalue=sentinel
    )
    for number, (src, tgt) in enumerate(pairs):
        if src is sentinel or tgt is sentinel:
            hint = cr_only_hint(src_path, tgt_path, labels=(str(src_name), str(tgt_name)))
            raise NmtkdError(
                f"line counts differ: {src_name} has {count_lines(src_path)} lines, "
                f"{tgt_name} has {count_lines(tgt_path)} lines{hint}"
            )
        if number == 0:
            reject_merged_cr_lines(src_path, src, src_name)  # type: ignore[arg-type]
            reject_merged_cr_lines(tgt_path, tgt, tgt_name)  # type: ignore[arg-type]
        yield src, tgt  # type: ignore[misc]


def check_parallel(src_path: Path, tgt_path: Path,
                   labels: tuple[str, str] | None = None) -> int:
    """Check that two files exist, are non-empty and have equal line counts; return the count.
    `labels` name the files in errors instead of their paths."""
    for path in (src_path, tgt_path):
        require_file(path)
    count = sum(1 for _ in iter_pairs(src_path, tgt_path, labels))
    if count == 0:
        raise NmtkdError(f"{(labels or (src_path,))[0]}: file is empty")
    return count


class DuplicateFilter:
    """Exact-duplicate detection in about 8 bytes per distinct pair.

    Pairs are judged a chunk at a time: their 64-bit hashes are checked against a sorted numpy
    array of the hashes seen so far, which then absorbs them. (A Python set of the same hashes
    takes about 70 bytes per pair.)
    """

    def __init__(self) -> None:
        self.seen = np.empty(0, dtype=np.uint64)

    @staticmethod
    def key(src_text: str, tgt_text: str) -> int:
        digest = hashlib.blake2b(f"{src_text}\t{tgt_text}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little")

    def first_occurrences(self, keys: list[int]) -> np.ndarray:
        """For each key in order: True if neither seen before nor earlier in `keys`."""
        batch = np.array(keys, dtype=np.uint64)
        if not len(batch):
            return np.zeros(0, dtype=bool)
        order = np.argsort(batch, kind="stable")  # equal keys keep their input order
        ordered = batch[order]
        first = np.ones(len(batch), dtype=bool)
        first[1:] = ordered[1:] != ordered[:-1]
        if len(self.seen):
            position = np.minimum(np.searchsorted(self.seen, ordered), len(self.seen) - 1)
            first &= self.seen[position] != ordered
        keep = np.zeros(len(batch), dtype=bool)
        keep[order[first]] = True
        # concatenate + sort rather than np.union1d, whose temporaries (numpy 2.4) made the
        # process grow by ~80 bytes per pair instead of 8
        merged = np.concatenate((self.seen, ordered[first]))
        merged.sort()
        self.seen = merged
        return keep


def drop_reason(src: bytes, tgt: bytes, rules: CleaningRules) -> tuple[str | None, str, str]:
    """The reason to drop a pair (None to keep it) and the decoded, whitespace-normalised sides.

    Duplicates are found afterwards, by `DuplicateFilter`."""
    try:
        src_text, tgt_text = src.decode("utf-8"), tgt.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8", "", ""
    if CONTROL_CHARACTER.search(src) or CONTROL_CHARACTER.search(tgt):
        return "control_character", "", ""
    src_text, tgt_text = " ".join(src_text.split()), " ".join(tgt_text.split())
    if not src_text or not tgt_text:
        return "empty", src_text, tgt_text
    src_len, tgt_len = sentence_length(src_text), sentence_length(tgt_text)
    if max(src_len, tgt_len) > rules.max_tokens:
        return "too_long", src_text, tgt_text
    if max(src_len, tgt_len) / min(src_len, tgt_len) > rules.max_length_ratio:
        return "length_ratio", src_text, tgt_text
    if rules.drop_src_equals_tgt and src_text == tgt_text:
        return "src_equals_tgt", src_text, tgt_text
    return None, src_text, tgt_text


def clean_corpus(
    src_path: Path,
    tgt_path: Path,
    out_src: Path,
    out_tgt: Path,
    report_path: Path,
    rules: CleaningRules,
    chunk_size: int = 65536,
) -> dict:
    """Stream the pair of files, write the kept pairs and a JSON count per drop reason; the
    report's "bom_stripped" lists the inputs whose UTF-8 byte-order mark was left out.

    Memory stays bounded by `chunk_size` pairs plus the duplicate filter's 8 bytes per pair.
    """
    counts: Counter[str] = Counter({reason: 0 for reason in REASONS})
    duplicates = DuplicateFilter()
    pending: list[tuple[str, str]] = []
    total = kept = 0

    def flush(src_out, tgt_out) -> int:
        if rules.deduplicate:
            keep = duplicates.first_occurrences([DuplicateFilter.key(*p) for p in pending])
        else:
            keep = np.ones(len(pending), dtype=bool)
        for (src_text, tgt_text), wanted in zip(pending, keep, strict=True):
            if wanted:
                src_out.write(src_text + "\n")
                tgt_out.write(tgt_text + "\n")
        counts["duplicate"] += int((~keep).sum())
        written = int(keep.sum())
        pending.clear()
        return written

    with atomic_writer(out_src) as src_out, atomic_writer(out_tgt) as tgt_out:
        for src, tgt in tqdm(iter_pairs(src_path, tgt_path), desc="clean", unit=" pairs",
                             mininterval=2.0):
            total += 1
            reason, src_text, tgt_text = drop_reason(src, tgt, rules)
            if reason:
                counts[reason] += 1
                continue
            pending.append((src_text, tgt_text))
            if len(pending) >= chunk_size:
                kept += flush(src_out, tgt_out)
        kept += flush(src_out, tgt_out)
        if total == 0:
            raise NmtkdError(f"{src_path}: file is empty")
        if kept == 0:
            raise NmtkdError(f"{src_path}: cleaning dropped every line ({dict(counts)})"
                             f"{cr_only_hint(src_path, tgt_path)}")
        report = {"input": total, "kept": kept, "dropped": dict(counts),
                  "source": str(src_path), "target": str(tgt_path),
                  "bom_stripped": [str(path) for path in (src_path, tgt_path)
                                   if starts_with_bom(path)]}
        with atomic_writer(report_path) as handle:
            json.dump(report, handle, indent=2)
    return report
