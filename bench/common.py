"""Shared pieces of the benchmarks: a Multi30k-or-synthetic corpus and timing helpers."""

from __future__ import annotations

import gzip
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("NMTKD_DATA_MIRROR", REPO.parent / "shared/data/multi30k"))


def multi30k_lines(split: str, lang: str, limit: int | None = None) -> list[str]:
    path = MULTI30K / f"{split}.{lang}.gz"
    if not path.is_file():
        sys.exit(f"{path}: not found; set NMTKD_DATA_MIRROR to the Multi30k directory")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle]
    return lines[:limit] if limit else lines


def timed(function, *args, repeat: int = 1, **kwargs) -> tuple[float, object]:
    """Best wall time of `repeat` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result
