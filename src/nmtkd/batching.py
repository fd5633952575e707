"""Parallel data in memory and length-bucketed batches by token count."""

from __future__ import annotations

import hashlib
import logging
import random
from array import array
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from nmtkd.errors import NmtkdError
from nmtkd.spm import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer
from nmtkd.textio import read_lines

log = logging.getLogger("nmtkd")


@dataclass
class Batch:
    source: Tensor  # [batch, src_len], source ids + </s>, padded
    target_in: Tensor  # [batch, tgt_len], <s> + target ids
    target_out: Tensor  # [batch, tgt_len], target ids + </s>
    indices: list[int]  # positions of the examples in the dataset
    lines: list[int] | None = None  # their line numbers in the corpus files

    @property
    def target_tokens(self) -> int:
        return int((self.target_out != PAD_ID).sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(self.source.to(device), self.target_in.to(device),
                     self.target_out.to(device), self.indices, self.lines)


def encode_source(ids: list[int]) -> list[int]:
    return list(ids) + [EOS_ID]


# Above this share of <unk> pieces a file is not encoded with the model's SentencePiece (raw
# text, or another model's pieces): training or storing it would be silent nonsense. A corpus
# encoded with its own model has none, except characters outside the model's coverage.
MAX_UNKNOWN_SHARE = 0.01
WARN_UNKNOWN_SHARE = 0.001


def piece_ids(line: str, tokenizer: Tokenizer) -> list[int]:
    """The ids of a line of space-separated SentencePiece pieces."""
    piece_to_id = tokenizer.processor.piece_to_id
    return [piece_to_id(piece) for piece in line.split()]


def check_known_pieces(path: Path, lines: list[list[int]], tokenizer: Tokenizer) -> None:
    """Refuse a file whose pieces are mostly unknown to `tokenizer`; warn about a few."""
    total = sum(len(ids) for ids in lines)
    unknown = sum(ids.count(UNK_ID) for ids in lines)
    share = unknown / max(1, total)
    if share > MAX_UNKNOWN_SHARE:
        raise NmtkdError(f"{path}: {100 * share:.1f}% of its {total} pieces are unknown to "
                         f"{tokenizer.path} (<unk>); give text encoded with that model "
                         "(nmtkd spm-encode), not raw text or another model's pieces")
    if share > WARN_UNKNOWN_SHARE:
        log.warning("%s: %.2f%% of its %d pieces are unknown to %s (<unk>)", path, 100 * share,
                    total, tokenizer.path)


class ParallelData:
    """Token ids of a parallel corpus, source with </s> appended, target without specials."""

    def __init__(self, sources: list[list[int]], targets: list[list[int]], name: str = "data",
                 lines: list[int] | None = None):
        if len(sources) != len(targets):
            raise NmtkdError(f"{name}: {len(sources)} source and {len(targets)} target sentences")
        if not sources:
            raise NmtkdError(f"{name}: no sentences")
        self.sources = [encode_source(s) for s in sources]
        self.targets = [list(t) for t in targets]
        self.name = name
        # line numbers (0-based) in the original files, which may hold skipped pairs
        self.lines = lines if lines is not None else list(range(len(sources)))
        self.skipped = 0

    @classmethod
    def from_piece_files(cls, src_path: Path, tgt_path: Path, tokenizer: Tokenizer,
                         max_length: int | None = None) -> ParallelData:
        """Read SentencePiece-encoded files (space-separated pieces) into ids.

        Pairs longer than `max_length` tokens on either side are skipped (the model's positions
        are bounded); the count of skipped pairs is kept in `skipped`.
        """
        src_lines, tgt_lines = read_lines(src_path), read_lines(tgt_path)
        if len(src_lines) != len(tgt_lines):
            raise NmtkdError(f"line counts differ: {src_path} has {len(src_lines)} lines, "
                             f"{tgt_path} has {len(tgt_lines)} lines")
        src_all = [piece_ids(line, tokenizer) for line in src_lines]
        tgt_all = [piece_ids(line, tokenizer) for line in tgt_lines]
        check_known_pieces(src_path, src_all, tokenizer)
        check_known_pieces(tgt_path, tgt_all, tokenizer)
        sources, targets, lines = [], [], []
        for line, (src_ids, tgt_ids) in enumerate(zip(src_all, tgt_all, strict=True)):
            if max_length and (len(src_ids) + 1 > max_length or len(tgt_ids) + 1 > max_length):
                continue
            sources.append(src_ids)
            targets.append(tgt_ids)
            lines.append(line)
        data = cls(sources, targets, name=str(src_path), lines=lines)
        data.skipped = len(src_lines) - len(lines)
        return data

    def __len__(self) -> int:
        return len(self.sources)

    def content_hash(self) -> str:
        """A hash of every token id (sources and targets, in order)."""
        digest = hashlib.sha256()
        for sequences in (self.sources, self.targets):
            for sequence in sequences:
                digest.update(array("i", sequence).tobytes())
                digest.update(b"|")
        return digest.hexdigest()[:16]

    def target_token_count(self) -> int:
        return sum(len(t) + 1 for t in self.targets)

    def collate(self, indices: list[int]) -> Batch:
        src = [self.sources[i] for i in indices]
        tgt = [self.targets[i] for i in indices]
        return Batch(
            source=pad([s for s in src]),
            target_in=pad([[BOS_ID] + t for t in tgt]),
            target_out=pad([t + [EOS_ID] for t in tgt]),
            indices=list(indices),
            lines=[self.lines[i] for i in indices],
        )


def pad(sequences: list[list[int]]) -> Tensor:
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), PAD_ID, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


def token_batches(
    data: ParallelData, max_tokens: int, seed: int, epoch: int, shuffle: bool = True
) -> list[list[int]]:
    """Group examples of similar length into batches of at most `max_tokens` padded tokens.

    The order depends only on (seed, epoch): a resumed run rebuilds the same list and skips to
    its saved position. Shuffling happens within length ties and over whole batches.
    """
    rng = random.Random(seed * 100_003 + epoch)
    lengths = [max(len(s), len(t) + 1) for s, t in zip(data.sources, data.targets, strict=True)]
    order = list(range(len(data)))
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])  # stable: random order within equal lengths
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        longest_if_added = max(longest, lengths[index])
        if current and longest_if_added * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, longest_if_added = [], lengths[index]
        current.append(index)
        longest = longest_if_added
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches
