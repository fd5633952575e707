"""Text files: plain or gzip reading, and atomic writing that never leaves partial output."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from nmtkd.errors import NmtkdError


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a plain or gzip file for binary reading; gzip is detected by its magic bytes."""
    path = Path(path)
    if not path.is_file():
        raise NmtkdError(f"{path}: file not found")
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return path.open("rb")


def iter_raw_lines(path: str | Path) -> Iterator[bytes]:
    """Yield each line as bytes without its line ending (streaming, constant memory)."""
    with open_binary(path) as handle:
        try:
            for line in handle:
                yield line.rstrip(b"\r\n")
        except (EOFError, OSError, zlib.error) as error:
            raise NmtkdError(f"{path}: corrupt or truncated compressed file ({error})") from None


def iter_lines(path: str | Path) -> Iterator[str]:
    """Yield the UTF-8 lines of a file; invalid UTF-8 is an error naming the line."""
    for number, raw in enumerate(iter_raw_lines(path), start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise NmtkdError(f"{path}, line {number}: invalid UTF-8 ({error.reason})") from None


def read_lines(path: str | Path) -> list[str]:
    """Read a small UTF-8 text file into a list of lines (for test sets and decoded output)."""
    return list(iter_lines(path))


def count_lines(path: str | Path) -> int:
    return sum(1 for _ in iter_raw_lines(path))


def require_nonempty(path: str | Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise NmtkdError(f"{path}: file not found")
    if count_lines(path) == 0:
        raise NmtkdError(f"{path}: file is empty")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; move it into place only if the block succeeds.

    Works for files and directories. On any error the temporary is removed, so a failed
    step leaves neither a partial file nor a stale one in place of the target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) / target.name
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


@contextlib.contextmanager
def atomic_writer(target: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a file for writing that appears at `target` only when the block succeeds."""
    encoding = None if "b" in mode else "utf-8"
    with atomic_path(target) as tmp, open(tmp, mode, encoding=encoding) as handle:
        yield handle


def write_lines(target: str | Path, lines: list[str]) -> None:
    with atomic_writer(target) as handle:
        for line in lines:
            handle.write(line + "\n")
