"""Teacher signals: the teacher's k largest logits and their ids at every target position of a
corpus, teacher-forced on the corpus's own targets, written once as a workflow artifact.

A directory holds memory-mapped arrays (numpy .npy) and a fingerprint:
  ids.npy      [positions, k] int32    vocabulary ids, largest logit first
  logits.npy   [positions, k] float32  the teacher's logits (not probabilities) for those ids
  lengths.npy  [lines] int32           target positions per corpus line (target + </s>);
                                       0 for a line the teacher could not read (too long)
  meta.json    format, k, teacher and corpus hashes, counts
Rows follow the corpus's line order, so every reader (each student, each DDP rank, each
resume) maps the lines it trains on to rows without recomputing anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from nmtkd.batching import ParallelData, token_batches
from nmtkd.errors import NmtkdError
from nmtkd.model import Transformer
from nmtkd.textio import sha256_files

FORMAT = 1


def files_sha256(*paths: Path) -> str:
    """The short checksum of a corpus's files, the signals' fingerprint of their corpus."""
    return sha256_files(*paths)[:16]


def row_offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def line_lengths(data: ParallelData, lines: int) -> np.ndarray:
    """Target positions (target + </s>) per corpus line; 0 for the lines `data` skipped."""
    lengths = np.zeros(lines, dtype=np.int32)
    for index, line in enumerate(data.lines):
        lengths[line] = len(data.targets[index]) + 1
    return lengths


def write_line_rows(outputs: Sequence[np.ndarray], batch_rows: Sequence[np.ndarray],
                    indices: list[int], data: ParallelData, offsets: np.ndarray) -> None:
    """Scatter one batch into per-position arrays: row r of each of `batch_rows` [batch,
    time, ...] fills its corpus line's positions offsets[line]:offsets[line + 1] of the
    matching output."""
    for row, index in enumerate(indices):
        line = data.lines[index]
        start, stop = offsets[line], offsets[line + 1]
        for output, rows in zip(outputs, batch_rows, strict=True):
            output[start:stop] = rows[row, : stop - start]


@torch.no_grad()
def write_signals(teacher: Transformer, data: ParallelData, lines: int, k: int,
                  max_tokens: int, directory: Path, device: torch.device,
                  meta: dict[str, Any]) -> dict[str, Any]:
    """Run `teacher` over `data` (a corpus of `lines` lines, some maybe skipped) in batches
    of `max_tokens` padded tokens and write its top-k into the empty `directory`."""
    teacher.to(device).eval()
    k = min(k, teacher.cfg.vocab_size)
    lengths = line_lengths(data, lines)
    offsets = row_offsets(lengths)
    positions = int(offsets[-1])
    directory.mkdir(parents=True, exist_ok=True)
    ids = np.lib.format.open_memmap(directory / "ids.npy", "w+", np.int32, (positions, k))
    values = np.lib.format.open_memmap(directory / "logits.npy", "w+", np.float32,
                                       (positions, k))
    batches = token_batches(data, max_tokens, 0, 0, shuffle=False)
    for indices in tqdm(batches, desc="teacher top-k", unit=" batch", mininterval=2.0):
        batch = data.collate(indices).to(device)
        top = teacher(batch.source, batch.target_in).float().topk(k, dim=-1)
        top_ids = top.indices.to(torch.int32).cpu().numpy()
        write_line_rows((ids, values), (top_ids, top.values.cpu().numpy()), indices, data,
                        offsets)
    ids.flush()
    values.flush()
    np.save(directory / "lengths.npy", lengths)
    meta = {"format": FORMAT, "k": k, "lines": lines, "positions": positions,
            "skipped_lines": int((lengths == 0).sum()), **meta}
    (directory / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


class TeacherSignals:
    """A signals directory, memory-mapped for reading."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        try:
            self.meta = json.loads((self.directory / "meta.json").read_text(encoding="utf-8"))
            self.ids = np.load(self.directory / "ids.npy", mmap_mode="r")
            self.logits = np.load(self.directory / "logits.npy", mmap_mode="r")
            self.lengths = np.load(self.directory / "lengths.npy")
        except (OSError, ValueError) as error:
            raise NmtkdError(f"{self.directory}: not a teacher-signals directory "
                             f"({error})") from None
        if self.meta.get("format") != FORMAT:
            raise NmtkdError(f"{self.directory}: teacher-signals format "
                             f"{self.meta.get('format')}, this version reads {FORMAT}")
        self.offsets = row_offsets(self.lengths)

    @property
    def k(self) -> int:
        return int(self.meta["k"])

    @property
    def fingerprint(self) -> str:
        """What a resumed training run must find unchanged: for kNN targets also the key, the
        index and whether each token's own entry is kept."""
        base = f"{self.meta['teacher']}:{self.meta['corpus']}:{self.k}"
        if self.meta.get("kind") == "knn":
            return (f"{base}:{self.meta['state']}:{self.meta['index']}:"
                    f"{'self' if self.meta['keep_self'] else 'noself'}")
        return base

    def check_corpus(self, corpus_hash: str, data: ParallelData) -> None:
        """Fail unless these signals were computed on this corpus and cover its lines."""
        if self.meta["corpus"] != corpus_hash:
            raise NmtkdError(f"{self.directory}: computed on another corpus (hash "
                             f"{self.meta['corpus']}, the training data has {corpus_hash}); "
                             "recompute them with `nmtkd teacher-signals`")
        for index, line in enumerate(data.lines):
            if self.lengths[line] != len(data.targets[index]) + 1:
                raise NmtkdError(f"{self.directory}: line {line + 1} of the corpus has no "
                                 "signals (too long for the teacher's max_positions)")

    def lookup(self, lines: list[int], width: int, k: int,
               device: torch.device) -> tuple[Tensor, Tensor]:
        """[batch, width, k] ids and logits for corpus `lines` (zeros at padding); the first
        `k` of the stored ones (they are sorted, largest first)."""
        if k > self.k:
            raise NmtkdError(f"{self.directory}: holds the teacher's top-{self.k}, "
                             f"top-{k} was asked for")
        ids = torch.zeros(len(lines), width, k, dtype=torch.long)
        values = torch.zeros(len(lines), width, k, dtype=torch.float32)
        for row, line in enumerate(lines):
            start, stop = self.offsets[line], self.offsets[line + 1]
            ids[row, : stop - start] = torch.from_numpy(np.array(self.ids[start:stop, :k]))
            values[row, : stop - start] = torch.from_numpy(np.array(self.logits[start:stop, :k]))
        return ids.to(device), values.to(device)
